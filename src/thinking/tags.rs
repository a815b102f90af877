//! Reasoning carried inside `content` as a think block: the form
//! `swap_reasoning_content` folds it into (its own open and close tags),
//! and the plain `<think>…</think>` MiniMax-M2 writes natively. Reading
//! takes the block off the start of the content; writing puts one back.

/// The open and close strings of a think block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrap {
    pub open: String,
    pub close: String,
    /// `swap_reasoning_content` adds a newline after the close tag when
    /// the content does not start with one.
    pub newline: bool,
}

impl Default for Wrap {
    fn default() -> Self {
        Wrap {
            open: "<think>".into(),
            close: "</think>".into(),
            newline: false,
        }
    }
}

impl Wrap {
    /// The think block at the start of `content`: (reasoning exactly as
    /// written between the tags, the content after the block).
    pub fn split<'a>(&self, content: &'a str) -> Option<(&'a str, &'a str)> {
        let body = content
            .strip_prefix(self.open.as_str())
            .or_else(|| content.trim_start().strip_prefix(self.open.trim_start()))?;
        let end = body.find(self.close.as_str())?;
        let reasoning = &body[..end];
        let mut rest = &body[end + self.close.len()..];
        if self.newline && !self.close.ends_with('\n') {
            rest = rest.strip_prefix('\n').unwrap_or(rest);
        }
        Some((reasoning, rest))
    }

    /// Whether `content` starts with a think block.
    pub fn starts(&self, content: &str) -> bool {
        self.split(content).is_some()
    }
}

/// MiniMax-M2's form (its chat template): `<think>\n…\n</think>\n\n`
/// before the content.
pub fn minimax(reasoning: &str, content: &str) -> String {
    let mut s = String::with_capacity(reasoning.len() + content.len() + 20);
    s.push_str("<think>\n");
    s.push_str(reasoning);
    s.push_str("\n</think>\n\n");
    s.push_str(content);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_leading_block_only() {
        let w = Wrap::default();
        assert_eq!(
            w.split("<think>a\n b </think>rest"),
            Some(("a\n b ", "rest"))
        );
        assert_eq!(w.split("  <think>x</think>"), Some(("x", "")));
        assert_eq!(w.split("text <think>x</think>"), None);
        assert_eq!(w.split("<think>unclosed"), None);
    }

    #[test]
    fn swap_form_with_newline() {
        let w = Wrap {
            open: "<think>\n".into(),
            close: "\n</think>".into(),
            newline: true,
        };
        assert_eq!(
            w.split("<think>\nwhy\n</think>\nanswer"),
            Some(("why", "answer"))
        );
        assert!(w.starts("<think>\n\n</think>"));
        assert_eq!(minimax("r", "c"), "<think>\nr\n</think>\n\nc");
    }
}
