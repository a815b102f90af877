//! Surgery on the YAML tree before it is typed: deserialization that
//! reports every unknown key (found by `serde_ignored`, see `unknown.rs`),
//! strings of whole `${VAR}` references retyped, LiteLLM keys taken out as
//! warnings.

use serde_yaml::Value;

use super::errors::Errors;
use super::{env, litellm, raw, unknown};

/// Deserializes the tree; each unknown key is reported with its path and the
/// nearest known key (in the order they are met), so one run reports every
/// typo. Any other error is reported after them and ends the attempt.
///
/// A value that was a whole `${VAR}` reference and fails as a string where
/// the schema wants a number or a boolean is retyped and tried again.
pub(super) fn deserialize_collecting(
    mut tree: Value,
    errors: &mut Errors,
    whole: &std::collections::HashSet<String>,
) -> Option<raw::RawConfig> {
    for _ in 0..200 {
        let mut ignored = Vec::new();
        let result = {
            let mut note = |path: serde_ignored::Path<'_>| ignored.push(unknown::steps(&path));
            serde_path_to_error::deserialize::<_, raw::RawConfig>(serde_ignored::Deserializer::new(
                tree.clone(),
                &mut note,
            ))
        };
        if let Err(e) = &result
            && e.inner().to_string().starts_with("invalid type: string")
            && whole.contains(&e.path().to_string())
            && retype_at(&mut tree, e.path())
        {
            continue;
        }
        for at in &ignored {
            unknown::report::<raw::RawConfig>(at, errors);
        }
        return match result {
            Ok(raw) => Some(raw),
            Err(e) => {
                errors.at(e.path(), e.inner());
                None
            }
        };
    }
    None
}

/// The node a serde path points at.
fn node_at<'a>(
    tree: &'a mut Value,
    segs: &[&serde_path_to_error::Segment],
) -> Option<&'a mut Value> {
    use serde_path_to_error::Segment;
    let mut node = tree;
    for seg in segs {
        node = match (seg, node) {
            (Segment::Map { key }, Value::Mapping(m)) => m.get_mut(key.as_str())?,
            (Segment::Seq { index }, Value::Sequence(s)) => s.get_mut(*index)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Replaces the string at `path` with the number or boolean it spells.
fn retype_at(tree: &mut Value, path: &serde_path_to_error::Path) -> bool {
    let segs: Vec<_> = path.iter().collect();
    let Some(node) = node_at(tree, &segs) else {
        return false;
    };
    match node.as_str().and_then(env::retype_scalar) {
        Some(v) => {
            *node = v;
            true
        }
        None => false,
    }
}

/// Removes the LiteLLM keys yallmp accepts but does not implement yet, with
/// one warning for each.
pub(super) fn take_litellm_accepted(tree: &mut Value, warnings: &mut Vec<String>) {
    for (section, keys) in litellm::LITELLM_ACCEPTED {
        let segs: Vec<&str> = if section.is_empty() {
            Vec::new()
        } else {
            section.split('.').collect()
        };
        take_in(tree, &segs, keys, String::new(), warnings);
    }
}

fn take_in(
    node: &mut Value,
    segs: &[&str],
    keys: &[&str],
    path: String,
    warnings: &mut Vec<String>,
) {
    match segs.split_first() {
        None => {
            if let Value::Mapping(m) = node {
                for key in keys {
                    if m.remove(*key).is_some() {
                        let p = if path.is_empty() {
                            (*key).to_string()
                        } else {
                            format!("{path}.{key}")
                        };
                        let why = litellm::hint(key)
                            .map(|h| format!(" ({h})"))
                            .unwrap_or_default();
                        warnings.push(format!(
                            "{p}: LiteLLM setting not implemented by yallmp; ignored{why}"
                        ));
                    }
                }
            }
        }
        Some((&"*", rest)) => {
            if let Value::Sequence(items) = node {
                for (i, item) in items.iter_mut().enumerate() {
                    take_in(item, rest, keys, format!("{path}[{i}]"), warnings);
                }
            }
        }
        Some((seg, rest)) => {
            if let Value::Mapping(m) = node
                && let Some(child) = m.get_mut(*seg)
            {
                let p = if path.is_empty() {
                    (*seg).to_string()
                } else {
                    format!("{path}.{seg}")
                };
                take_in(child, rest, keys, p, warnings);
            }
        }
    }
}
