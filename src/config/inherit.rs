//! Model inheritance, resolved on the YAML tree before it is typed: a model
//! with `extends: BASE` (or named `Base:Variant` with no `api_base` of its
//! own, when `Base` exists) becomes one entry per backend of its base, each
//! the base entry deep-merged with the derived entry's keys. Bases are
//! expanded first, so chains work; cycles and missing bases are errors that
//! name the chain.

use std::collections::{HashMap, HashSet};

use super::errors::Errors;
use serde_yaml::{Mapping, Value};

const PARAM_KEYS: [&str; 2] = ["model_params", "litellm_params"];

fn name_of(entry: &Value) -> Option<&str> {
    entry.get("model_name").and_then(Value::as_str)
}

fn has_own_base(entry: &Value) -> bool {
    PARAM_KEYS
        .iter()
        .any(|k| entry.get(*k).and_then(|p| p.get("api_base")).is_some())
}

/// The base an entry extends, explicitly or by its name.
fn base_of(entry: &Value, names: &HashSet<String>) -> Option<String> {
    if let Some(b) = entry.get("extends").and_then(Value::as_str) {
        return Some(b.to_string());
    }
    let name = name_of(entry)?;
    let (base, _) = name.rsplit_once(':')?;
    (!has_own_base(entry) && names.contains(base)).then(|| base.to_string())
}

/// Expands every derived model in `model_list`. Returns the names of the
/// derived models.
pub fn resolve(tree: &mut Value, errors: &mut Errors) -> HashSet<String> {
    let mut derived = HashSet::new();
    let Some(Value::Sequence(list)) = tree.get_mut("model_list") else {
        return derived;
    };
    let entries = std::mem::take(list);
    let names: HashSet<String> = entries
        .iter()
        .filter_map(name_of)
        .map(str::to_string)
        .collect();
    let mut order: Vec<String> = Vec::new();
    for e in &entries {
        if let Some(n) = name_of(e)
            && !order.iter().any(|o| o == n)
        {
            order.push(n.to_string());
        }
    }
    let mut ctx = Ctx {
        entries: &entries,
        names: &names,
        memo: HashMap::new(),
        errors,
        derived: &mut derived,
    };
    let mut out = Vec::with_capacity(entries.len());
    for name in &order {
        out.extend(ctx.expand(name, &mut Vec::new()));
    }
    // Entries without a usable name stay, so the typed pass reports them.
    out.extend(entries.iter().filter(|e| name_of(e).is_none()).cloned());
    *list = out;
    derived
}

struct Ctx<'a> {
    entries: &'a [Value],
    names: &'a HashSet<String>,
    memo: HashMap<String, Vec<Value>>,
    errors: &'a mut Errors,
    derived: &'a mut HashSet<String>,
}

impl Ctx<'_> {
    fn expand(&mut self, name: &str, chain: &mut Vec<String>) -> Vec<Value> {
        if let Some(done) = self.memo.get(name) {
            return done.clone();
        }
        if chain.iter().any(|c| c == name) {
            let mut cycle = chain.clone();
            cycle.push(name.to_string());
            let start = cycle.iter().position(|c| c == name).unwrap_or(0);
            self.errors.at(
                format!("model `{name}`"),
                format!("inheritance cycle: {}", cycle[start..].join(" → ")),
            );
            return Vec::new();
        }
        chain.push(name.to_string());
        let mut result = Vec::new();
        for (i, entry) in self.entries.iter().enumerate() {
            if name_of(entry) != Some(name) {
                continue;
            }
            let Some(base) = base_of(entry, self.names) else {
                result.push(entry.clone());
                continue;
            };
            self.derived.insert(name.to_string());
            if !self.names.contains(&base) {
                let mut path = chain.clone();
                path.push(base.clone());
                self.errors.at(
                    format!("model_list[{i}].extends"),
                    format!(
                        "base model `{base}` does not exist (chain: {})",
                        path.join(" → ")
                    ),
                );
                continue;
            }
            for (k, b) in self.expand(&base, chain).into_iter().enumerate() {
                let limits_from = backend_name(&b, &base, k + 1);
                let mut merged = merge_entry(&b, entry, name);
                // The copy is the base's deployment: their limits count
                // together (the base's own `limits_from` carried, for chains).
                for key in PARAM_KEYS {
                    if let Some(Value::Mapping(p)) = merged.get_mut(key)
                        && !p.contains_key("limits_from")
                    {
                        p.insert("limits_from".into(), Value::from(limits_from.clone()));
                    }
                }
                result.push(merged);
            }
        }
        chain.pop();
        self.memo.insert(name.to_string(), result.clone());
        result
    }
}

/// The backend name the `n`th entry of model `model` gets: its `id`, else
/// `MODEL#N` (as `models.rs` names them).
fn backend_name(entry: &Value, model: &str, n: usize) -> String {
    PARAM_KEYS
        .iter()
        .find_map(|k| entry.get(*k)?.get("id")?.as_str())
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map_or_else(|| format!("{model}#{n}"), str::to_string)
}

/// The base entry with the derived one's keys on top.
fn merge_entry(base: &Value, derived: &Value, name: &str) -> Value {
    let mut out = base.clone();
    // A backend's `id` names that one backend: the derived entry's
    // backends are others (named `NAME#N` unless it gives its own).
    for k in PARAM_KEYS {
        if let Some(Value::Mapping(p)) = out.get_mut(k) {
            p.remove("id");
        }
    }
    let mut over = derived.clone();
    if let Value::Mapping(m) = &mut over {
        m.remove("extends");
        // Write the derived params under the base's dialect key.
        let base_key = PARAM_KEYS.iter().find(|k| base.get(**k).is_some()).copied();
        for k in PARAM_KEYS {
            if Some(k) != base_key
                && let Some(v) = m.remove(k)
                && let Some(bk) = base_key
            {
                m.insert(Value::from(bk), v);
            }
        }
    }
    deep_merge(&mut out, over);
    if let Value::Mapping(m) = &mut out {
        m.insert(Value::from("model_name"), Value::from(name));
        m.remove("extends");
        // A base's protection is its own; the derived entry says its own.
        if derived.get("protected").is_none() {
            m.remove("protected");
        }
    }
    out
}

/// Mappings merge key by key; anything else is replaced.
pub fn deep_merge(into: &mut Value, over: Value) {
    match (into, over) {
        (Value::Mapping(a), Value::Mapping(b)) => merge_maps(a, b),
        (slot, v) => *slot = v,
    }
}

fn merge_maps(a: &mut Mapping, b: Mapping) {
    for (k, v) in b {
        match a.get_mut(&k) {
            Some(existing) => deep_merge(existing, v),
            None => {
                a.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str) -> (Value, Vec<String>, HashSet<String>) {
        let mut v: Value = serde_yaml::from_str(yaml).unwrap();
        let mut errors = Errors::default();
        let derived = resolve(&mut v, &mut errors);
        (v, errors.into_lines(), derived)
    }

    #[test]
    fn explicit_and_implicit_with_deep_merge() {
        let (v, errors, derived) = run(r#"
model_list:
  - {model_name: base, model_params: {api_base: 'http://a', target_model: t, request_timeout: 5}, parameters: {temperature: {default: 1}}}
  - {model_name: base, model_params: {api_base: 'http://b'}}
  - {model_name: "base:Cursor", model_params: {request_timeout: 9}, parameters: {max_tokens: {default: 10}}}
  - {model_name: other, extends: "base:Cursor", model_params: {target_model: u}}
"#);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(derived.len(), 2);
        let list = v["model_list"].as_sequence().unwrap();
        let of = |n: &str| {
            list.iter()
                .filter(|e| e["model_name"] == n)
                .collect::<Vec<_>>()
        };
        let cursor = of("base:Cursor");
        assert_eq!(cursor.len(), 2);
        assert_eq!(cursor[0]["model_params"]["api_base"], "http://a");
        assert_eq!(cursor[0]["model_params"]["target_model"], "t");
        assert_eq!(cursor[0]["model_params"]["request_timeout"], 9);
        assert_eq!(cursor[0]["parameters"]["temperature"]["default"], 1);
        assert_eq!(cursor[0]["parameters"]["max_tokens"]["default"], 10);
        assert_eq!(cursor[1]["model_params"]["api_base"], "http://b");
        let other = of("other");
        assert_eq!(other.len(), 2);
        assert_eq!(other[0]["model_params"]["target_model"], "u");
        assert_eq!(other[0]["model_params"]["request_timeout"], 9);
        assert!(other[0].get("extends").is_none());
    }

    #[test]
    fn colon_names_with_their_own_base_are_plain() {
        let (v, errors, derived) = run(
            "model_list:\n  - {model_name: qwen3, model_params: {api_base: 'http://a'}}\n  - {model_name: 'qwen3:8b', model_params: {api_base: 'http://b'}}\n",
        );
        assert!(errors.is_empty() && derived.is_empty());
        assert_eq!(v["model_list"][1]["model_params"]["api_base"], "http://b");
    }

    #[test]
    fn cycles_and_missing_bases() {
        let (_, errors, _) =
            run("model_list:\n  - {model_name: a, extends: b}\n  - {model_name: b, extends: a}\n");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("inheritance cycle: a → b → a")),
            "{errors:?}"
        );
        let (_, errors, _) = run("model_list:\n  - {model_name: a, extends: nope}\n");
        assert_eq!(
            errors,
            ["model_list[0].extends: base model `nope` does not exist (chain: a → nope)"]
        );
    }
}
