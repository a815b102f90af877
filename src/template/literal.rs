//! The literal fallback: a template minijinja cannot render is searched
//! for the markers in its text (string literals like `'<think>\n'`).

use super::TemplateInfo;
use super::markup::ToolFormat;
use super::read::{opens_think, think_tag_in};

/// The markers as written in the template's text (when it cannot render):
/// string literals like `'<think>\n'` and `'\n</think>\n\n'`.
pub(super) fn scan_literal(source: &str) -> TemplateInfo {
    let mut info = TemplateInfo::default();
    if let Some(name) = think_tag_in(source) {
        // The generation prompt: after the last `add_generation_prompt`.
        if let Some(i) = source.rfind("add_generation_prompt") {
            info.starts_in_reasoning = opens_think(&source[i..], &name);
        }
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        for (i, _) in source.match_indices(&open) {
            let after = &source[i + open.len()..];
            let (suffix, rest) = newlines_forward(after);
            if rest.starts_with(&close) || is_operand(after) {
                continue;
            }
            info.think_open.suffix = suffix;
            break;
        }
        for (i, _) in source.match_indices(&close) {
            let before = &source[..i];
            let after = &source[i + close.len()..];
            let (prefix, rest_before) = newlines_backward(before);
            if rest_before.ends_with(&open) || is_operand(after) {
                continue;
            }
            info.think_close.prefix = prefix;
            info.think_close.suffix = newlines_forward(after).0;
            break;
        }
        info.think_tag = Some(name);
    }
    let format = [
        ("<minimax:tool_call>", ToolFormat::MinimaxM2),
        ("<|tool_calls_section_begin|>", ToolFormat::KimiK2),
        ("<｜tool▁calls▁begin｜>", ToolFormat::DeepseekV31),
        ("<function=", ToolFormat::Qwen3Coder),
        ("<arg_key>", ToolFormat::Glm),
        ("<tool_call>", ToolFormat::Hermes),
    ]
    .into_iter()
    .find(|(m, _)| source.contains(m))
    .map(|(_, f)| f);
    if format.is_none() {
        info.notes
            .push("no known tool-call marker in the template's text".into());
    }
    info.tool_format = format;
    info.notes.push(
        "the template could not be rendered; values come from its literal text, check them".into(),
    );
    info
}

/// A literal used as an operand (`split('</think>')`, `'</think>' in c`),
/// not written out.
fn is_operand(after: &str) -> bool {
    let mut chars = after.chars();
    match chars.next() {
        Some('\'' | '"') => {
            let rest = chars.as_str().trim_start();
            rest.starts_with(')')
                || rest.starts_with(']')
                || rest.starts_with(',')
                || rest.starts_with("in ")
        }
        _ => false,
    }
}

/// Newlines written right after a marker: `\n` escapes and real newlines,
/// across `' ~ '` / `' + '` joins. Returns them and the text after.
fn newlines_forward(mut s: &str) -> (String, &str) {
    let mut out = String::new();
    loop {
        if let Some(r) = s.strip_prefix("\\n") {
            out.push('\n');
            s = r;
        } else if let Some(r) = s.strip_prefix('\n') {
            out.push('\n');
            s = r;
        } else if let Some(r) = join_forward(s) {
            s = r;
        } else {
            return (out, s);
        }
    }
}

fn join_forward(s: &str) -> Option<&str> {
    let q = s.chars().next().filter(|c| matches!(c, '\'' | '"'))?;
    let r = s[1..].trim_start();
    let r = r.strip_prefix('~').or_else(|| r.strip_prefix('+'))?;
    let r = r.trim_start();
    r.strip_prefix(q)
        .or_else(|| r.strip_prefix(if q == '\'' { '"' } else { '\'' }))
}

fn newlines_backward(mut s: &str) -> (String, &str) {
    let mut out = String::new();
    loop {
        if let Some(r) = s.strip_suffix("\\n") {
            out.push('\n');
            s = r;
        } else if let Some(r) = s.strip_suffix('\n') {
            out.push('\n');
            s = r;
        } else if let Some(r) = join_backward(s) {
            s = r;
        } else {
            return (out, s);
        }
    }
}

fn join_backward(s: &str) -> Option<&str> {
    let q = s.chars().next_back().filter(|c| matches!(c, '\'' | '"'))?;
    let r = s[..s.len() - 1].trim_end();
    let r = r.strip_suffix('~').or_else(|| r.strip_suffix('+'))?;
    let r = r.trim_end();
    r.strip_suffix(q)
        .or_else(|| r.strip_suffix(if q == '\'' { '"' } else { '\'' }))
}
