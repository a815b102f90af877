//! Environment for a config file: the process environment over the `.env`
//! beside the config, and `${VAR}` / `$VAR` / `os.environ/VAR` substitution in
//! every string value of the parsed YAML tree.
//!
//! The `.env` file is read into a map instead of being exported into the
//! process, so that two configs loaded in one process (tests, reloads) never
//! see each other's variables.

use std::collections::HashMap;
use std::path::Path;

use super::errors::Errors;
use serde_yaml::Value;

/// Variables visible to a config: the process environment wins over `.env`.
#[derive(Debug, Clone, Default)]
pub struct Env {
    dotenv: HashMap<String, String>,
    /// Extra variables that win over everything (tests).
    overrides: HashMap<String, String>,
    /// The config's own (LiteLLM's `environment_variables`): over the
    /// process environment and `.env`, as LiteLLM sets them into its
    /// process's environment.
    config: HashMap<String, String>,
    /// When false, the process environment is not consulted (tests).
    use_process: bool,
}

impl Env {
    /// The process environment plus the `.env` file in `dir`, if there is one.
    pub fn for_config_dir(dir: &Path) -> Result<Self, String> {
        let mut env = Env {
            use_process: true,
            ..Env::default()
        };
        let path = dir.join(".env");
        if path.is_file() {
            let iter = dotenvy::from_path_iter(&path)
                .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
            for item in iter {
                let (k, v) = item.map_err(|e| format!("{}: {e}", path.display()))?;
                env.dotenv.insert(k, v);
            }
        }
        Ok(env)
    }

    /// Only the given variables (no process environment): for tests.
    pub fn isolated<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Env {
            overrides: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            ..Env::default()
        }
    }

    /// This environment with the config's own variables on top.
    pub fn with_config_vars(&self, vars: HashMap<String, String>) -> Env {
        Env {
            config: vars,
            ..self.clone()
        }
    }

    /// Looks a variable up: overrides, the config's own, the process,
    /// then `.env`.
    pub fn get(&self, name: &str) -> Option<String> {
        if let Some(v) = self.overrides.get(name) {
            return Some(v.clone());
        }
        if let Some(v) = self.config.get(name) {
            return Some(v.clone());
        }
        if self.use_process
            && let Ok(v) = std::env::var(name)
        {
            return Some(v);
        }
        self.dotenv.get(name).cloned()
    }
}

#[cfg(test)]
mod order_tests {
    use super::*;

    #[test]
    fn config_variables_win_over_dotenv_and_lose_to_overrides() {
        let base = Env {
            dotenv: HashMap::from([("A".into(), "dotenv".into()), ("B".into(), "dotenv".into())]),
            overrides: HashMap::from([("C".into(), "override".into())]),
            ..Env::default()
        };
        let env = base.with_config_vars(HashMap::from([
            ("A".into(), "config".into()),
            ("C".into(), "config".into()),
        ]));
        assert_eq!(env.get("A").as_deref(), Some("config"));
        assert_eq!(env.get("B").as_deref(), Some("dotenv"));
        assert_eq!(env.get("C").as_deref(), Some("override"));
        assert_eq!(base.get("A").as_deref(), Some("dotenv"));
    }
}

/// Substitutes variables in every string of `value`, in place. Errors name the
/// key path of each string that refers to a missing variable.
///
/// The paths of values that were one reference as a whole are added to
/// `whole`: such a value stays a string, and the loader retypes it only where
/// the schema wants a number or a boolean (`port: ${PORT}`), so
/// `api_key: ${KEY}` stays a string even when the key is all digits.
pub fn substitute_tree(
    value: &mut Value,
    env: &Env,
    path: &mut String,
    errors: &mut Errors,
    whole: &mut std::collections::HashSet<String>,
) {
    match value {
        Value::String(s) => match substitute(s, env) {
            Ok(Some((new, is_whole))) => {
                if is_whole {
                    whole.insert(path.clone());
                }
                *value = Value::String(new);
            }
            Ok(None) => {}
            Err(var) => errors.at(
                display_path(path),
                format!(
                    "environment variable {var} is not set (write ${{{var}:-default}} to give a default)"
                ),
            ),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                substitute_tree(item, env, path, errors, whole);
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                match k {
                    Value::String(k) => path.push_str(k),
                    other => path.push_str(&format!("{other:?}")),
                }
                substitute_tree(v, env, path, errors, whole);
                path.truncate(len);
            }
        }
        Value::Tagged(t) => substitute_tree(&mut t.value, env, path, errors, whole),
        _ => {}
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "(top level)" } else { path }
}

/// The YAML scalar a string spells (`8080`, `true`), if it is a number or a
/// boolean.
pub fn retype_scalar(s: &str) -> Option<Value> {
    match serde_yaml::from_str::<Value>(s) {
        Ok(v @ (Value::Bool(_) | Value::Number(_))) => Some(v),
        _ => None,
    }
}

/// Expands the references in `s`. `Ok(None)` when there are none; otherwise
/// the new text and whether the whole string was a single reference.
/// `Err(name)` names the first missing variable.
pub fn substitute(s: &str, env: &Env) -> Result<Option<(String, bool)>, String> {
    if let Some(name) = s.strip_prefix("os.environ/") {
        return match env.get(name) {
            Some(v) => Ok(Some((v, true))),
            None => Err(name.to_string()),
        };
    }
    if !s.contains('$') {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut refs = 0usize;
    let mut literal = false;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        literal |= pos > 0;
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            // `$$` is a literal dollar sign.
            out.push('$');
            literal = true;
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                out.push('$');
                literal = true;
                rest = after;
                continue;
            };
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if !is_var_name(name) {
                out.push_str(&rest[pos..pos + 2 + end + 1]);
                literal = true;
            } else {
                match (env.get(name), default) {
                    (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => return Err(name.to_string()),
                }
                refs += 1;
            }
            rest = &body[end + 1..];
        } else {
            let len = after
                .char_indices()
                .find(|&(i, c)| {
                    !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
                })
                .map_or(after.len(), |(i, _)| i);
            if len == 0 {
                out.push('$');
                literal = true;
            } else {
                let name = &after[..len];
                match env.get(name) {
                    Some(v) => out.push_str(&v),
                    None => return Err(name.to_string()),
                }
                refs += 1;
            }
            rest = &after[len..];
        }
    }
    literal |= !rest.is_empty();
    out.push_str(rest);
    Ok(Some((out, refs == 1 && !literal)))
}

/// The variables `s` refers to without a default (`${VAR}`, `$VAR`,
/// `os.environ/VAR`; not `${VAR:-...}`): a value that comes out empty from
/// one of them was asked for and not given.
pub fn required_refs(s: &str) -> Vec<String> {
    if let Some(name) = s.strip_prefix("os.environ/") {
        return vec![name.to_string()];
    }
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else { break };
            let inner = &body[..end];
            if !inner.contains(":-") && is_var_name(inner) {
                out.push(inner.to_string());
            }
            rest = &body[end + 1..];
        } else {
            let len = after
                .char_indices()
                .find(|&(i, c)| {
                    !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
                })
                .map_or(after.len(), |(i, _)| i);
            if len > 0 {
                out.push(after[..len].to_string());
            }
            rest = &after[len..];
        }
    }
    out
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env::isolated([("A", "1"), ("KEY", "sk-x"), ("EMPTY", "")])
    }

    #[test]
    fn forms() {
        let e = env();
        assert_eq!(
            substitute("${KEY}", &e).unwrap(),
            Some(("sk-x".into(), true))
        );
        assert_eq!(substitute("$KEY", &e).unwrap(), Some(("sk-x".into(), true)));
        assert_eq!(
            substitute("os.environ/KEY", &e).unwrap(),
            Some(("sk-x".into(), true))
        );
        assert_eq!(
            substitute("http://h:${A}/v1", &e).unwrap(),
            Some(("http://h:1/v1".into(), false))
        );
        assert_eq!(
            substitute("${NOPE:-dflt}", &e).unwrap(),
            Some(("dflt".into(), true))
        );
        assert_eq!(
            substitute("${EMPTY:-dflt}", &e).unwrap(),
            Some(("dflt".into(), true))
        );
        assert_eq!(substitute("a$$b", &e).unwrap(), Some(("a$b".into(), false)));
        assert_eq!(
            substitute("cost $ 5", &e).unwrap(),
            Some(("cost $ 5".into(), false))
        );
        assert_eq!(substitute("plain", &e).unwrap(), None);
        assert_eq!(substitute("${NOPE}", &e), Err("NOPE".into()));
        assert_eq!(substitute("x$NOPE", &e), Err("NOPE".into()));
        assert_eq!(substitute("os.environ/NOPE", &e), Err("NOPE".into()));
    }

    #[test]
    fn references_without_defaults() {
        assert_eq!(required_refs("${PW}"), vec!["PW"]);
        assert_eq!(required_refs("$PW"), vec!["PW"]);
        assert_eq!(required_refs("os.environ/PW"), vec!["PW"]);
        assert_eq!(required_refs("a${X}b$Y"), vec!["X", "Y"]);
        assert!(required_refs("${PW:-}").is_empty());
        assert!(required_refs("literal $$PW").is_empty());
        assert!(required_refs("plain").is_empty());
    }

    #[test]
    fn tree_paths_and_retyping() {
        let mut v: Value =
            serde_yaml::from_str("a:\n  - {port: '${A}', key: '${MISSING}'}\n").unwrap();
        let mut errors = Errors::default();
        let mut whole = std::collections::HashSet::new();
        substitute_tree(&mut v, &env(), &mut String::new(), &mut errors, &mut whole);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("a[0].key: environment variable MISSING"),
            "{errors:?}"
        );
        // Left a string; the loader retypes it where the schema wants a number.
        assert_eq!(v["a"][0]["port"], Value::String("1".into()));
        assert!(whole.contains("a[0].port"));
        assert_eq!(retype_scalar("8080"), Some(Value::Number(8080.into())));
        assert_eq!(retype_scalar("sk-1"), None);
    }
}
