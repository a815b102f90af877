//! Reading the renders: the think block around the probe's reasoning, the
//! generation prompt's opening, and the tool-call markers the assistant
//! turn gains with its call.

use super::TemplateInfo;
use super::markup::{Affix, ArgFormat, ToolFormat};
use super::probe::{ANSWER, ARG_VALUE, REASONING, RESULT, Renders, USER};

pub(super) fn from_renders(r: &Renders, source: &str) -> TemplateInfo {
    let mut info = TemplateInfo::default();
    let gen_prompt = r
        .full_no_gen
        .as_deref()
        .map(|n| after_common_prefix(&r.full, n));
    let gen_off = match (&r.full_off, &r.full_off_no_gen) {
        (Some(a), Some(b)) => Some(after_common_prefix(a, b)),
        _ => None,
    };

    // The think block around the probe's reasoning.
    let texts = [
        r.with_calls.as_deref(),
        r.up_to_tool.as_deref(),
        Some(&r.full),
    ];
    let around = texts
        .into_iter()
        .flatten()
        .find_map(|t| think_around(t, gen_prompt.unwrap_or("")));
    if let Some(found) = around {
        info.think_tag = Some(found.tag);
        info.think_open = found.open;
        info.think_close = found.close;
    } else {
        let name = gen_prompt
            .and_then(think_tag_in)
            .or_else(|| think_tag_in(&r.full))
            .or_else(|| {
                let t = think_tag_in(source);
                if t.is_some() {
                    info.notes.push(
                        "the think tag appears only in the template's text, not in what it renders"
                            .into(),
                    );
                }
                t
            });
        if let Some(name) = &name {
            info.notes.push(format!(
                "the template does not render reasoning_content inside <{name}>; the think_close suggestion is not derived from it"
            ));
            // The generation prompt's `<think>\n` still shows the opening.
            if let Some(g) = gen_prompt {
                let open = format!("<{name}>");
                if let Some(rest) = g.rfind(&open).map(|i| &g[i + open.len()..])
                    && !rest.is_empty()
                    && rest.trim().is_empty()
                {
                    info.think_open.suffix = rest.to_string();
                }
            }
        }
        info.think_tag = name;
    }

    if let Some(name) = &info.think_tag {
        let opens = |g: &str| opens_think(g, name);
        info.starts_in_reasoning = gen_prompt.is_some_and(opens);
        if let Some(off) = gen_off
            && opens(off) != info.starts_in_reasoning
        {
            info.notes.push(format!(
                    "the generation prompt opens <{name}> only with thinking {}; starts_in_reasoning assumes thinking on (enable_thinking / thinking = true)",
                    if info.starts_in_reasoning { "on" } else { "off" }
                ));
        }
    }

    read_tools(r, &mut info);
    info
}

/// What `a` adds after the text it shares with `b`.
fn after_common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let n = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or_else(|| a.len().min(b.len()), |((i, _), _)| i);
    // `b` may be the longer one; `n` is a char boundary of `a` either way.
    a.get(n..).unwrap_or("")
}

/// `a` with what it shares with `b` at both ends cut off, widened to whole
/// `<…>` tokens (`…<|a|>` and `…<|b|>` share `<|`).
fn middle<'a>(a: &'a str, b: &str) -> &'a str {
    let mut start = a.len() - after_common_prefix(a, b).len();
    if let Some(lt) = a[..start].rfind('<')
        && !a[lt..start].contains('>')
    {
        start = lt;
    }
    let (a_rest, b_rest) = (&a[start..], b.get(start..).unwrap_or(""));
    let common_end = a_rest
        .chars()
        .rev()
        .zip(b_rest.chars().rev())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x.len_utf8())
        .sum::<usize>();
    let mut end = a.len() - common_end;
    if let Some(gt) = a[end..].find('>')
        && !a[end..end + gt].contains('<')
    {
        end += gt + 1;
    }
    &a[start..end.max(start)]
}

struct ThinkFound {
    tag: String,
    open: Affix,
    close: Affix,
}

/// `<tag>` ws REASONING ws `</tag>` ws: the tag and the whitespace around.
fn think_around(text: &str, gen_prompt: &str) -> Option<ThinkFound> {
    let at = text.find(REASONING)?;
    let before = &text[..at];
    let trimmed = before.trim_end();
    let open_suffix = &before[trimmed.len()..];
    let lt = trimmed.rfind('<')?;
    let tag = trimmed[lt..].strip_prefix('<')?.strip_suffix('>')?;
    if !is_tag_name(tag) {
        return None;
    }
    let after = &text[at + REASONING.len()..];
    let rest = after.trim_start();
    let close_prefix = &after[..after.len() - rest.len()];
    let rest = rest.strip_prefix(&format!("</{tag}>"))?;
    let close_suffix = &rest[..rest.len() - rest.trim_start().len()];

    // What precedes `<tag>` after the assistant header (the generation
    // prompt up to its own think tag, if it opens one).
    let head = gen_prompt
        .find(&format!("<{tag}>"))
        .map_or(gen_prompt, |i| &gen_prompt[..i]);
    let pre = &text[..lt];
    let pre_trimmed = pre.trim_end();
    let mut open_prefix = "";
    if !head.is_empty() {
        for k in (pre_trimmed.len()..=pre.len()).rev() {
            if pre.is_char_boundary(k) && pre[..k].ends_with(head) {
                open_prefix = &pre[k..];
                break;
            }
        }
    }
    Some(ThinkFound {
        tag: tag.to_string(),
        open: Affix {
            prefix: open_prefix.into(),
            suffix: open_suffix.into(),
        },
        close: Affix {
            prefix: close_prefix.into(),
            suffix: close_suffix.into(),
        },
    })
}

fn is_tag_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.'))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
}

fn is_think_name(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.contains("think") || l == "reasoning" || l == "thought"
}

/// The first think-like tag (`<think>`, `</thinking>`, `<seed:think>`, …).
pub(super) fn think_tag_in(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let body = rest.strip_prefix('/').unwrap_or(rest);
        if let Some(end) = body.find('>') {
            let name = &body[..end];
            if is_tag_name(name) && is_think_name(name) {
                return Some(name.to_string());
            }
        }
    }
    None
}

/// The text ends inside an open think block.
pub(super) fn opens_think(text: &str, name: &str) -> bool {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    text.rfind(&open)
        .is_some_and(|i| !text[i + open.len()..].contains(&close))
}

fn read_tools(r: &Renders, info: &mut TemplateInfo) {
    if !r.full.contains(ARG_VALUE) {
        info.notes.push(
            "the template renders no tool calls for the probe's assistant turn; tool_format is left as configured"
                .into(),
        );
        return;
    }
    // The tool call: what the assistant turn gains with it.
    let segment = match (&r.with_calls, &r.without_calls) {
        (Some(w), Some(n)) if w.contains(ARG_VALUE) => {
            let m = middle(w, n);
            m.rfind(ANSWER).map_or(m, |i| &m[i + ANSWER.len()..])
        }
        _ => {
            // Else between the answer (or the user turn) and the result.
            let full = r.full.as_str();
            let p = full.find(ARG_VALUE).unwrap_or(0);
            let start = [ANSWER, USER]
                .iter()
                .filter_map(|s| full[..p].rfind(s).map(|i| i + s.len()))
                .max()
                .unwrap_or(0);
            let end = full[p..].find(RESULT).map_or(full.len(), |i| p + i);
            &full[start..end]
        }
    };
    classify_tools(segment.trim(), info);
}

fn classify_tools(seg: &str, info: &mut TemplateInfo) {
    let default_markers = |open: Option<String>, close: Option<String>| {
        (
            open.filter(|o| o != "<tool_call>"),
            close.filter(|c| c != "</tool_call>"),
        )
    };
    let format = if seg.contains("<minimax:tool_call>") {
        ToolFormat::MinimaxM2
    } else if seg.contains("<|tool_calls_section_begin|>") {
        ToolFormat::KimiK2
    } else if seg.contains("<｜tool▁calls▁begin｜>") || seg.contains("<｜tool▁call▁begin｜>")
    {
        ToolFormat::DeepseekV31
    } else if seg.contains("<function=") {
        if !seg.starts_with("<function=") {
            (info.tool_open, info.tool_close) = default_markers(first_tag(seg), last_tag(seg));
        }
        ToolFormat::Qwen3Coder
    } else if seg.contains("<arg_key>") {
        (info.tool_open, info.tool_close) = default_markers(first_tag(seg), last_tag(seg));
        ToolFormat::Glm
    } else {
        let Some(open) = first_tag(seg) else {
            info.notes.push(format!(
                "tool calls are written without a recognisable open marker: {}",
                excerpt(seg)
            ));
            return;
        };
        let close = last_tag(seg).filter(|c| *c != open || seg.len() > open.len());
        let json = json_args(seg);
        if close.is_none() {
            info.notes.push(format!(
                "no close marker after the tool call ({}); set tool_close by hand",
                excerpt(seg)
            ));
        }
        if open == "<tool_call>" && close.as_deref() == Some("</tool_call>") && json {
            ToolFormat::Hermes
        } else {
            info.tool_arg_format = Some(if json {
                ArgFormat::Json
            } else {
                ArgFormat::Xml
            });
            info.notes.push(format!(
                "tool markers {open} … {} are not a known format; check them",
                close.as_deref().unwrap_or("(none)")
            ));
            info.tool_open = Some(open);
            info.tool_close = close;
            if json {
                ToolFormat::Json
            } else {
                ToolFormat::Xml
            }
        }
    };
    info.tool_format = Some(format);
}

/// A marker-like token at the start: `<…>` without whitespace inside.
fn first_tag(s: &str) -> Option<String> {
    let end = s.find('>')?;
    let tag = &s[..=end];
    (tag.starts_with('<') && tag.len() <= 64 && !tag.contains(char::is_whitespace))
        .then(|| tag.to_string())
}

fn last_tag(s: &str) -> Option<String> {
    let start = s.rfind('<')?;
    let tag = &s[start..];
    (tag.ends_with('>') && tag.len() <= 64 && !tag.contains(char::is_whitespace))
        .then(|| tag.to_string())
}

/// The arguments are written as JSON (`"city": …`).
fn json_args(seg: &str) -> bool {
    seg.match_indices("\"city\"")
        .any(|(i, m)| seg[i + m.len()..].trim_start().starts_with(':'))
}

fn excerpt(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    format!("{cut:?}")
}
