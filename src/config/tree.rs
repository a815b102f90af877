//! Surgery on the YAML tree before it is typed: deserialization that
//! reports every unknown key (removing each and trying again), strings of
//! whole `${VAR}` references retyped, LiteLLM keys taken out as warnings.

use serde_yaml::Value;

use super::errors::Errors;
use super::{env, litellm, nearest, raw};

/// Deserializes the tree; each unknown key is reported with its path and the
/// nearest known key, removed, and the rest tried again, so one run reports
/// every typo. Any other error is reported and ends the attempt.
///
/// A value that was a whole `${VAR}` reference and fails as a string where
/// the schema wants a number or a boolean is retyped and tried again.
pub(super) fn deserialize_collecting(
    mut tree: Value,
    errors: &mut Errors,
    whole: &std::collections::HashSet<String>,
) -> Option<raw::RawConfig> {
    for _ in 0..200 {
        match serde_path_to_error::deserialize::<_, raw::RawConfig>(tree.clone()) {
            Ok(raw) => return Some(raw),
            Err(e) => {
                let path = e.path().to_string();
                let msg = e.inner().to_string();
                if msg.starts_with("invalid type: string")
                    && whole.contains(&path)
                    && retype_at(&mut tree, e.path())
                {
                    continue;
                }
                let Some(unknown) = msg
                    .strip_prefix("unknown field `")
                    .and_then(|r| r.split('`').next())
                else {
                    errors.at(&path, msg);
                    return None;
                };
                let expected: Vec<&str> = msg
                    .split_once("expected")
                    .map(|(_, r)| r.split('`').skip(1).step_by(2).collect())
                    .unwrap_or_default();
                let mut what = format!("unknown key `{unknown}`");
                if let Some(s) = nearest(unknown, &expected) {
                    what.push_str(&format!("; did you mean `{s}`?"));
                } else if !expected.is_empty() {
                    what.push_str(&format!("; known keys: {}", expected.join(", ")));
                }
                errors.at(&path, what);
                if !remove_at(&mut tree, e.path()) {
                    return None;
                }
            }
        }
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

/// Removes the key at `path`.
fn remove_at(tree: &mut Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segs: Vec<&Segment> = path.iter().collect();
    let Some((Segment::Map { key }, parents)) = segs.split_last() else {
        return false;
    };
    match node_at(tree, parents) {
        Some(Value::Mapping(m)) => m.remove(key.as_str()).is_some(),
        _ => false,
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
                        warnings.push(format!(
                            "{p}: LiteLLM setting not implemented by yallmp; ignored"
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
