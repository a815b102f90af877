//! Wildcard model names: a `model_name` with a `*` (`local-*`, `openai/*`,
//! `*`) serves every requested name of that shape no exact entry serves.
//! The pattern with the longest literal prefix (the text before its first
//! `*`) wins; among equal prefixes, the first in the config.

/// Whether `name` is a pattern (holds a `*`).
pub fn is_pattern(name: &str) -> bool {
    name.contains('*')
}

/// The text before the pattern's first `*` (the whole name for an exact one).
pub fn literal_prefix(pattern: &str) -> &str {
    pattern.split_once('*').map_or(pattern, |(p, _)| p)
}

/// Glob match: `*` stands for any run of characters (none included);
/// everything else matches itself.
pub fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return pattern == name;
    };
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*` at all.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The name forwarded upstream for `requested` under `pattern` with
/// `strip_prefix`: what follows the pattern's literal prefix.
pub fn stripped<'a>(pattern: &str, requested: &'a str) -> &'a str {
    requested
        .strip_prefix(literal_prefix(pattern))
        .unwrap_or(requested)
}

/// The wildcard entries of a config, best first.
#[derive(Debug, Default)]
pub struct Patterns(Vec<String>);

impl Patterns {
    /// From the model names in config order; exact names are left out.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Patterns {
        let mut patterns: Vec<String> = names
            .into_iter()
            .filter(|n| is_pattern(n))
            .map(String::from)
            .collect();
        // Stable: equal prefixes keep config order.
        patterns.sort_by_key(|p| std::cmp::Reverse(literal_prefix(p).len()));
        Patterns(patterns)
    }

    /// The pattern serving `requested`, if any.
    pub fn find(&self, requested: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|p| matches(p, requested))
            .map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(matches("*", ""));
        assert!(matches("*", "anything/at-all"));
        assert!(matches("local-*", "local-llama"));
        assert!(matches("local-*", "local-"));
        assert!(!matches("local-*", "remote-llama"));
        assert!(matches("openai/*", "openai/gpt-4o-mini"));
        assert!(!matches("openai/*", "openai"));
        assert!(matches("*-instruct", "qwen-instruct"));
        assert!(!matches("*-instruct", "qwen-instruct-x"));
        assert!(matches("a*b*c", "a-b-c"));
        assert!(matches("a*b*c", "abc"));
        assert!(!matches("a*b*c", "a-c-b"));
        assert!(
            !matches("ab*ba", "aba"),
            "prefix and suffix may not overlap"
        );
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exact2"));
    }

    #[test]
    fn longest_literal_prefix_wins_then_config_order() {
        let p = Patterns::new(["*", "local-*", "local-q*", "other-*", "local-*x"]);
        assert_eq!(p.find("local-qwen"), Some("local-q*"));
        assert_eq!(p.find("local-llama"), Some("local-*"));
        assert_eq!(
            p.find("local-llamax"),
            Some("local-*"),
            "config order among equals"
        );
        assert_eq!(p.find("gpt-4o"), Some("*"));
        assert!(Patterns::new(["a-*"]).find("b").is_none());
        assert!(Patterns::new(["exact"]).is_empty());
    }

    #[test]
    fn stripping() {
        assert_eq!(stripped("openai/*", "openai/gpt-4o-mini"), "gpt-4o-mini");
        assert_eq!(stripped("*", "m"), "m");
        assert_eq!(stripped("local-*", "local-qwen"), "qwen");
    }
}
