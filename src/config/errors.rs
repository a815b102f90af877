//! Errors while resolving a config: each under the key path it is about,
//! collected in the order found so one run reports every problem, with the
//! nearest known name as a hint for a typo.

use std::fmt;

/// A key path in the config file (`model_list[0].model_params.weight`): how
/// every error names the value it is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(String);

impl KeyPath {
    pub fn new(path: impl Into<String>) -> KeyPath {
        KeyPath(path.into())
    }

    /// The path of `key` (dotted for a nested key) under this one.
    pub fn key(&self, key: &str) -> KeyPath {
        if self.0.is_empty() {
            KeyPath(key.to_string())
        } else {
            KeyPath(format!("{}.{key}", self.0))
        }
    }

    /// The path of item `i` of the list at this one.
    pub fn index(&self, i: usize) -> KeyPath {
        KeyPath(format!("{}[{i}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for KeyPath {
    fn from(path: &str) -> KeyPath {
        KeyPath::new(path)
    }
}

/// What is wrong with a config so far, one line per problem (`path: what`),
/// in the order found: resolving goes on after a problem so that one run
/// reports them all.
#[derive(Debug, Default)]
pub struct Errors {
    lines: Vec<String>,
}

impl Errors {
    /// A problem with the value at `at`: a [`KeyPath`], or a description of
    /// where the value came from (an environment variable and the key it
    /// overrides).
    pub fn at(&mut self, at: impl fmt::Display, what: impl fmt::Display) {
        self.lines.push(format!("{at}: {what}"));
    }

    /// A mark to ask later whether a part found problems ([`Errors::since`]).
    pub fn mark(&self) -> usize {
        self.lines.len()
    }

    /// Whether problems were found since `mark`.
    pub fn since(&self, mark: usize) -> bool {
        self.lines.len() > mark
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The lines, for [`ConfigError`](super::ConfigError).
    pub fn into_lines(self) -> Vec<String> {
        self.lines
    }
}

/// The lines found so far (tests read them).
impl std::ops::Deref for Errors {
    type Target = [String];
    fn deref(&self) -> &[String] {
        &self.lines
    }
}

/// The candidate closest to `word`, when it is close enough to be a typo.
pub fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
