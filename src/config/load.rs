//! Loading: the file and the `.env` beside it read, then the YAML tree
//! prepared (overlay, variables, LiteLLM keys, inheritance), typed and
//! resolved, with every error collected under its key path.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde_yaml::Value;

use super::errors::Errors;
use super::{Config, Env, Origin, env, inherit, litellm_map, overlay, resolve, tree};

/// Everything wrong with a config file, each line with its key path.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub errors: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {e}", self.file)?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads `path` and the `.env` beside it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with_overlay(path, None)
    }

    /// Like [`Config::load`], with `overlay` (when given) in place of the
    /// overlay file: runtime models shared through the database.
    pub fn load_with_overlay(
        path: &Path,
        shared: Option<&overlay::Overlay>,
    ) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let fail = |e: String| ConfigError {
            file: file.clone(),
            errors: vec![e],
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let env = Env::for_config_dir(dir).map_err(fail)?;
        let from_file;
        let overlay = match shared {
            Some(o) => o,
            None => {
                from_file =
                    overlay::Overlay::read(&overlay::Overlay::path_for(path)).map_err(fail)?;
                &from_file
            }
        };
        Config::from_yaml_with(&text, Some(path), &env, Some(overlay))
    }

    /// Parses config text with the given environment.
    pub fn from_yaml(text: &str, path: Option<&Path>, env: &Env) -> Result<Config, ConfigError> {
        Config::from_yaml_with(text, path, env, None)
    }

    /// Parses config text, with the runtime overlay's models on top.
    pub fn from_yaml_with(
        text: &str,
        path: Option<&Path>,
        env: &Env,
        overlay: Option<&overlay::Overlay>,
    ) -> Result<Config, ConfigError> {
        let file = path.map_or_else(|| "<config>".to_string(), |p| p.display().to_string());
        let mut errors = Errors::default();
        let mut warnings = Vec::new();

        let mut tree: Value = match serde_yaml::from_str(text) {
            Ok(Value::Null) => Value::Mapping(Default::default()),
            Ok(v) => v,
            Err(e) => {
                return Err(ConfigError {
                    file,
                    errors: vec![format!("not valid YAML: {e}")],
                });
            }
        };
        // The overlay goes in first, so its entries (copies of file entries
        // keep their `${VAR}` references) are substituted like the file's.
        let runtime = match overlay {
            Some(o) => o.apply(&mut tree),
            None => Default::default(),
        };
        // The admin password as written: a variable it names without a
        // default must not come out empty (that would open the admin API
        // to loopback clients with no password, silently).
        let password_refs = tree
            .get("proxy_settings")
            .and_then(|p| p.get("auth"))
            .and_then(|a| a.get("admin_password"))
            .and_then(Value::as_str)
            .map(env::required_refs)
            .unwrap_or_default();
        // LiteLLM's `environment_variables`: variables the config sets for
        // itself, seen by every reference below.
        let base_env = env;
        let with_vars;
        let env = match config_vars(&mut tree, base_env, &mut errors) {
            Some(vars) => {
                with_vars = base_env.with_config_vars(vars);
                &with_vars
            }
            None => base_env,
        };
        let mut whole = std::collections::HashSet::new();
        env::substitute_tree(&mut tree, env, &mut String::new(), &mut errors, &mut whole);
        litellm_map::map(&mut tree, env, &mut warnings);
        tree::take_litellm_accepted(&mut tree, &mut warnings);
        let derived = inherit::resolve(&mut tree, &mut errors);
        let raw = tree::deserialize_collecting(tree, &mut errors, &whole);

        let sources = resolve::Sources { runtime, derived };
        let config = raw
            .and_then(|raw| resolve::resolve(raw, path, env, &sources, &mut errors, &mut warnings));
        if let Some(c) = &config
            && c.auth.admin_password.is_none()
            && !password_refs.is_empty()
        {
            errors.at("proxy_settings.auth.admin_password", format!("empty, but it names {} (set to nothing): \
                 set a password, or write ${{{}:-}} to run without one (admin API for loopback clients only)", password_refs.join(", "), password_refs[0]));
        }
        match config {
            Some(mut c) if errors.is_empty() => {
                c.warnings = warnings;
                c.origin = Origin {
                    text: Arc::new(text.to_string()),
                    env: base_env.clone(),
                    overlay: overlay.cloned().unwrap_or_default(),
                };
                Ok(c)
            }
            _ => Err(ConfigError {
                file,
                errors: errors.into_lines(),
            }),
        }
    }
}

/// The top-level `environment_variables` map (LiteLLM's), taken out of the
/// tree: names to values, each value's own references substituted from
/// `env`. `None` when there is none.
fn config_vars(
    tree: &mut Value,
    env: &Env,
    errors: &mut Errors,
) -> Option<std::collections::HashMap<String, String>> {
    let vars = tree.as_mapping_mut()?.remove("environment_variables")?;
    let Value::Mapping(vars) = vars else {
        if !vars.is_null() {
            errors.at("environment_variables", "must be a map of names to values");
        }
        return None;
    };
    let mut out = std::collections::HashMap::new();
    for (k, v) in vars {
        let Some(name) = k.as_str().map(str::to_string) else {
            errors.at("environment_variables", "names must be strings");
            continue;
        };
        let text = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => String::new(),
            _ => {
                errors.at(
                    format!("environment_variables.{name}"),
                    "must be a string, number or boolean",
                );
                continue;
            }
        };
        match env::substitute(&text, env) {
            Ok(Some((value, _))) => {
                out.insert(name, value);
            }
            Ok(None) => {
                out.insert(name, text);
            }
            Err(e) => errors.at(format!("environment_variables.{name}"), e),
        }
    }
    Some(out)
}
