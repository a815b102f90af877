//! The runtime overlay: models registered, replaced or deleted through the
//! admin API, kept in a YAML file beside the config
//! (`config.yaml` → `config.runtime.yaml`) and merged after the config file
//! on every load, so they survive reloads and restarts.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

pub use super::inherit::deep_merge;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    /// Model entries, in the config file's `model_list` schema. A model
    /// named here replaces every entry of that name in the file.
    #[serde(default)]
    pub models: Vec<Value>,
    /// Models of the config file that were deleted.
    #[serde(default)]
    pub deleted: Vec<String>,
}

fn name_of(entry: &Value) -> Option<&str> {
    entry.get("model_name").and_then(Value::as_str)
}

impl Overlay {
    /// Where the overlay of a config file lives.
    pub fn path_for(config: &Path) -> PathBuf {
        let stem = config
            .file_stem()
            .map_or_else(|| "config".into(), |s| s.to_string_lossy().into_owned());
        config.with_file_name(format!("{stem}.runtime.yaml"))
    }

    /// Reads an overlay; a missing file is an empty overlay.
    pub fn read(path: &Path) -> Result<Overlay, String> {
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => Ok(Overlay::default()),
            Ok(text) => serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Overlay::default()),
            Err(e) => Err(format!("{}: cannot read: {e}", path.display())),
        }
    }

    /// Writes it atomically (a temporary file renamed over), readable by
    /// the owner only: it may hold API keys.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut text = String::from(
            "# Written by yallmp: models registered, changed or deleted through the admin API.\n\
             # Merged after the config file on every load. Edit with care, or use the admin API.\n",
        );
        text.push_str(&serde_yaml::to_string(self).map_err(std::io::Error::other)?);
        let tmp = path.with_extension("yaml.tmp");
        std::fs::write(&tmp, text)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        }
        std::fs::rename(&tmp, path)
    }

    /// Applies it to a config tree; returns the names it defines.
    pub fn apply(&self, tree: &mut Value) -> HashSet<String> {
        let names: HashSet<String> = self
            .models
            .iter()
            .filter_map(name_of)
            .map(str::to_string)
            .collect();
        if !matches!(tree.get("model_list"), Some(Value::Sequence(_)))
            && let Value::Mapping(m) = tree
        {
            m.insert(Value::from("model_list"), Value::Sequence(Vec::new()));
        }
        if let Some(Value::Sequence(list)) = tree.get_mut("model_list") {
            list.retain(|e| {
                name_of(e)
                    .is_none_or(|n| !names.contains(n) && !self.deleted.iter().any(|d| d == n))
            });
            list.extend(self.models.iter().cloned());
        }
        names
    }

    /// Registers (or replaces) a model.
    pub fn upsert(&mut self, name: &str, entries: Vec<Value>) {
        self.models.retain(|e| name_of(e) != Some(name));
        self.models.extend(entries);
        self.deleted.retain(|d| d != name);
    }

    /// Deletes a model, wherever it is defined.
    pub fn delete(&mut self, name: &str, in_file: bool) {
        self.models.retain(|e| name_of(e) != Some(name));
        if in_file && !self.deleted.iter().any(|d| d == name) {
            self.deleted.push(name.to_string());
        }
    }

    /// The entries it holds for a model.
    pub fn entries(&self, name: &str) -> Vec<Value> {
        self.models
            .iter()
            .filter(|e| name_of(e) == Some(name))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_replaces_and_deletes() {
        let mut tree: Value = serde_yaml::from_str(
            "model_list:\n  - {model_name: a, x: 1}\n  - {model_name: a, x: 2}\n  - {model_name: b}\n  - {model_name: c}\n",
        )
        .unwrap();
        let mut o = Overlay::default();
        o.upsert(
            "a",
            vec![serde_yaml::from_str("{model_name: a, x: 3}").unwrap()],
        );
        o.upsert("d", vec![serde_yaml::from_str("{model_name: d}").unwrap()]);
        o.delete("c", true);
        let names = o.apply(&mut tree);
        assert_eq!(names.len(), 2);
        let got: Vec<(String, Option<u64>)> = tree["model_list"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["model_name"].as_str().unwrap().to_string(),
                    e.get("x").and_then(Value::as_u64),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("b".into(), None),
                ("a".into(), Some(3)),
                ("d".into(), None)
            ]
        );
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = Overlay::path_for(&dir.path().join("config.yaml"));
        assert!(path.ends_with("config.runtime.yaml"));
        assert_eq!(Overlay::read(&path).unwrap(), Overlay::default());
        let mut o = Overlay::default();
        o.upsert(
            "m",
            vec![serde_yaml::from_str("{model_name: m, model_params: {api_type: stub}}").unwrap()],
        );
        o.write(&path).unwrap();
        assert_eq!(Overlay::read(&path).unwrap(), o);
    }
}
