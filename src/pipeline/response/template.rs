//! Chat templates: what a model's Jinja template says about its markup
//! (think tag, tool-call markers, argument format), for `tool_format: auto`
//! and `yallmp inspect-template`.
//!
//! The template renders a probe conversation (system, user, an assistant
//! turn with reasoning, an answer and a tool call, the tool's result, user
//! again, the generation prompt) with minijinja; the markers are read off
//! the text around the probe's own strings. A template minijinja cannot
//! render is searched for the same markers in its literal text instead.

use std::borrow::Cow;
use std::fmt::Write as _;

use minijinja::value::{Kwargs, Serde};
use minijinja::{Environment, Error, ErrorKind, Value as JValue};
use serde_json::{Value, json};

use crate::config::parsers::{Affix, ArgFormat, ParseTagsSettings, ToolFormat};

/// How a template was read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Method {
    /// A probe conversation was rendered with minijinja.
    #[default]
    Rendered,
    /// Rendering failed; the template's literal text was searched.
    LiteralScan,
}

impl Method {
    pub fn describe(self) -> &'static str {
        match self {
            Method::Rendered => "rendered a probe conversation (minijinja)",
            Method::LiteralScan => "scanned the template's literal text (rendering failed)",
        }
    }
}

/// What a template gives away.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateInfo {
    pub think_tag: Option<String>,
    /// The generation prompt opens the think block itself.
    pub starts_in_reasoning: bool,
    pub tool_format: Option<ToolFormat>,
    pub tool_open: Option<String>,
    pub tool_close: Option<String>,
    pub tool_arg_format: Option<ArgFormat>,
    /// Suggested `swap_reasoning_content.think_open` / `think_close`.
    pub think_open: Affix,
    pub think_close: Affix,
    /// How the values were found.
    pub method: Method,
    /// Why rendering failed (with [`Method::LiteralScan`]).
    pub render_error: Option<String>,
    /// Caveats worth showing a person (`inspect-template` prints them).
    pub notes: Vec<String>,
}

impl TemplateInfo {
    /// Fills in what the settings leave at their defaults; the tool format
    /// and its markers only when `tool_format` is `auto`.
    pub fn apply(&self, s: &mut ParseTagsSettings) {
        if let Some(t) = &self.think_tag
            && s.think_tag == "think"
        {
            s.think_tag = t.clone();
        }
        s.starts_in_reasoning |= self.starts_in_reasoning;
        if s.tool_format == ToolFormat::Auto {
            if let Some(f) = self.tool_format {
                s.tool_format = f;
            }
            if s.tool_open.is_none() {
                s.tool_open = self.tool_open.clone();
            }
            if s.tool_close.is_none() {
                s.tool_close = self.tool_close.clone();
            }
            if let Some(a) = self.tool_arg_format
                && s.tool_arg_format == ArgFormat::Xml
            {
                s.tool_arg_format = a;
            }
        }
    }
}

/// Reads a template (or a `tokenizer_config.json` holding one).
pub fn detect(template: &str) -> Result<TemplateInfo, String> {
    let source = template_source(template)?;
    if source.trim().is_empty() {
        return Err("the template is empty".into());
    }
    match render_probes(&source) {
        Ok(r) => Ok(from_renders(&r, &source)),
        Err(e) => {
            let mut info = scan_literal(&source);
            info.method = Method::LiteralScan;
            info.render_error = Some(e);
            Ok(info)
        }
    }
}

/// The template text: the file itself, or the `chat_template` of a
/// Hugging Face `tokenizer_config.json` (the `tool_use` one when it has
/// several).
fn template_source(text: &str) -> Result<Cow<'_, str>, String> {
    if !text.trim_start().starts_with('{') {
        return Ok(Cow::Borrowed(text));
    }
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
        // `{%` / `{{`: a template.
        return Ok(Cow::Borrowed(text));
    };
    match obj.get("chat_template") {
        Some(Value::String(t)) => Ok(Cow::Owned(t.clone())),
        Some(Value::Array(list)) => {
            let named = |n: &str| {
                list.iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some(n))
            };
            named("tool_use")
                .or_else(|| named("default"))
                .or_else(|| list.first())
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(|t| Cow::Owned(t.to_string()))
                .ok_or_else(|| "`chat_template` holds no template".to_string())
        }
        _ => Err("a JSON file without a `chat_template` string".into()),
    }
}

// ---- the probe -------------------------------------------------------------

const SYSTEM: &str = "PROBE_SYSTEM_TEXT";
const USER: &str = "PROBE_USER_TEXT";
const USER2: &str = "PROBE_SECOND_USER_TEXT";
const REASONING: &str = "PROBE_REASONING_TEXT";
const ANSWER: &str = "PROBE_ANSWER_TEXT";
const RESULT: &str = "PROBE_TOOL_RESULT";
const FUNCTION: &str = "get_weather";
/// Only the tool call's arguments hold it (not the tool schema).
const ARG_VALUE: &str = "Paris";

/// How the assistant's tool call is written: templates disagree on whether
/// `arguments` is an object or a JSON string and on `content` beside calls.
#[derive(Debug, Clone, Copy)]
struct Shape {
    string_args: bool,
    null_content: bool,
}

const SHAPES: [Shape; 4] = [
    Shape {
        string_args: false,
        null_content: false,
    },
    Shape {
        string_args: true,
        null_content: false,
    },
    Shape {
        string_args: false,
        null_content: true,
    },
    Shape {
        string_args: true,
        null_content: true,
    },
];

/// Where the conversation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turns {
    /// …, tool result, user again.
    Full,
    /// …, tool result.
    UpToTool,
    /// system, user, assistant (with or without its tool call).
    UpToAssistant { tool_calls: bool },
}

fn conversation(shape: Shape, turns: Turns) -> Value {
    let args = json!({"city": ARG_VALUE, "days": 3});
    let args = if shape.string_args {
        Value::String(args.to_string())
    } else {
        args
    };
    let with_calls = turns != Turns::UpToAssistant { tool_calls: false };
    let mut assistant = serde_json::Map::new();
    assistant.insert("role".into(), "assistant".into());
    assistant.insert("reasoning_content".into(), REASONING.into());
    let content = if shape.null_content && with_calls {
        Value::Null
    } else {
        ANSWER.into()
    };
    assistant.insert("content".into(), content);
    if with_calls {
        assistant.insert(
            "tool_calls".into(),
            json!([{
                "id": "call_probe_0",
                "type": "function",
                "function": {"name": FUNCTION, "arguments": args}
            }]),
        );
    }
    let mut messages = vec![
        json!({"role": "system", "content": SYSTEM}),
        json!({"role": "user", "content": USER}),
        Value::Object(assistant),
    ];
    let tool = json!({"role": "tool", "tool_call_id": "call_probe_0", "name": FUNCTION, "content": RESULT});
    match turns {
        Turns::UpToAssistant { .. } => {}
        Turns::UpToTool => messages.push(tool),
        Turns::Full => {
            messages.push(tool);
            messages.push(json!({"role": "user", "content": USER2}));
        }
    }
    Value::Array(messages)
}

fn context(messages: Value, generation_prompt: bool, thinking: bool) -> JValue {
    let tools = json!([{
        "type": "function",
        "function": {
            "name": FUNCTION,
            "description": "Get the weather forecast for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city name."},
                    "days": {"type": "integer", "description": "How many days to forecast."}
                },
                "required": ["city"]
            }
        }
    }]);
    JValue::from(Serde(json!({
        "messages": messages,
        "tools": tools,
        "add_generation_prompt": generation_prompt,
        "enable_thinking": thinking,
        "thinking": thinking,
        "bos_token": "<s>",
        "eos_token": "</s>",
    })))
}

/// An environment like the one Hugging Face renders chat templates in.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Hugging Face's environment: `trim_blocks`, `lstrip_blocks`.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("tojson", tojson);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env
}

fn raise_exception(message: String) -> Result<JValue, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("the template raised: {message}"),
    ))
}

/// A fixed date, so the probe renders the same every time.
fn strftime_now(format: String) -> String {
    let Some(t) =
        chrono::NaiveDate::from_ymd_opt(2025, 1, 15).and_then(|d| d.and_hms_opt(12, 0, 0))
    else {
        return String::new();
    };
    let mut out = String::new();
    match write!(out, "{}", t.format(&format)) {
        Ok(()) => out,
        Err(_) => format,
    }
}

/// Python's `json.dumps` as Hugging Face's `tojson` calls it: `", "` and
/// `": "` separators, non-ASCII kept; `indent`, `separators`, `sort_keys`
/// and `ensure_ascii` accepted.
fn tojson(value: &JValue, indent: Option<JValue>, kwargs: Kwargs) -> Result<JValue, Error> {
    let indent = match indent {
        Some(i) => Some(i),
        None => kwargs.get::<Option<JValue>>("indent")?,
    };
    let separators: Option<JValue> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let _: Option<JValue> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let invalid = |e: String| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}"));
    let v = serde_json::to_value(value).map_err(|e| invalid(e.to_string()))?;
    let unit = match indent {
        None => None,
        Some(i) if i.is_none() || i.is_undefined() => None,
        Some(i) => match i.as_str() {
            Some(s) => Some(s.to_string()),
            None => Some(" ".repeat(usize::try_from(i).map_err(|e| invalid(e.to_string()))?)),
        },
    };
    let (mut item, mut key) = match unit {
        Some(_) => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    if let Some(sep) = separators.filter(|s| !s.is_none() && !s.is_undefined()) {
        let seps = serde_json::to_value(&sep).map_err(|e| invalid(e.to_string()))?;
        match seps.as_array().map(Vec::as_slice) {
            Some([Value::String(i), Value::String(k)]) => {
                item = i.clone();
                key = k.clone();
            }
            _ => return Err(invalid("separators must be two strings".into())),
        }
    }
    let style = JsonStyle {
        item,
        key,
        unit,
        sort: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    write_json(&mut out, &v, &style, 0);
    Ok(JValue::from_safe_string(out))
}

struct JsonStyle {
    item: String,
    key: String,
    unit: Option<String>,
    sort: bool,
}

fn write_json(out: &mut String, v: &Value, st: &JsonStyle, depth: usize) {
    let newline = |out: &mut String, depth: usize| {
        if let Some(unit) = &st.unit {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(unit);
            }
        }
    };
    match v {
        Value::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(&st.item);
                }
                newline(out, depth + 1);
                write_json(out, x, st, depth + 1);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Object(m) if !m.is_empty() => {
            let mut entries: Vec<_> = m.iter().collect();
            if st.sort {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, x)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(&st.item);
                }
                newline(out, depth + 1);
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(&st.key);
                write_json(out, x, st, depth + 1);
            }
            newline(out, depth);
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The renders the detection reads.
#[derive(Debug, Default)]
struct Renders {
    /// The whole probe with the generation prompt, thinking on.
    full: String,
    full_no_gen: Option<String>,
    /// Thinking off (`enable_thinking` / `thinking` false).
    full_off: Option<String>,
    full_off_no_gen: Option<String>,
    up_to_tool: Option<String>,
    /// Ending with the assistant turn, with and without its tool call.
    with_calls: Option<String>,
    without_calls: Option<String>,
}

fn render_probes(source: &str) -> Result<Renders, String> {
    let env = environment();
    let tmpl = env.template_from_str(source).map_err(|e| e.to_string())?;
    let render = |shape: Shape, turns: Turns, gen_prompt: bool, thinking: bool| {
        tmpl.render(context(conversation(shape, turns), gen_prompt, thinking))
            .map_err(|e| e.to_string())
    };
    // The first shape that renders the tool call; else the first that
    // renders at all.
    let mut first_error = None;
    let mut rendered = None;
    for shape in SHAPES {
        match render(shape, Turns::Full, true, true) {
            Ok(text) if text.contains(ARG_VALUE) => {
                rendered = Some((shape, text));
                break;
            }
            Ok(text) => {
                rendered.get_or_insert((shape, text));
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let Some((shape, full)) = rendered else {
        return Err(first_error.unwrap_or_else(|| "the template did not render".into()));
    };
    Ok(Renders {
        full,
        full_no_gen: render(shape, Turns::Full, false, true).ok(),
        full_off: render(shape, Turns::Full, true, false).ok(),
        full_off_no_gen: render(shape, Turns::Full, false, false).ok(),
        up_to_tool: render(shape, Turns::UpToTool, true, true).ok(),
        with_calls: render(
            shape,
            Turns::UpToAssistant { tool_calls: true },
            false,
            true,
        )
        .ok(),
        without_calls: render(
            shape,
            Turns::UpToAssistant { tool_calls: false },
            false,
            true,
        )
        .ok(),
    })
}

// ---- reading the renders -----------------------------------------------------

fn from_renders(r: &Renders, source: &str) -> TemplateInfo {
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
fn think_tag_in(text: &str) -> Option<String> {
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
fn opens_think(text: &str, name: &str) -> bool {
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

// ---- the literal fallback ------------------------------------------------------

/// The markers as written in the template's text (when it cannot render):
/// string literals like `'<think>\n'` and `'\n</think>\n\n'`.
fn scan_literal(source: &str) -> TemplateInfo {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(name: &str) -> String {
        let path = format!(
            "{}/configs/jinja_templates/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn affix(prefix: &str, suffix: &str) -> Affix {
        Affix {
            prefix: prefix.into(),
            suffix: suffix.into(),
        }
    }

    /// (file, think tag, starts_in_reasoning, tool format, think_open, think_close)
    #[allow(clippy::type_complexity)]
    const SHIPPED: &[(
        &str,
        Option<&str>,
        bool,
        ToolFormat,
        (&str, &str),
        (&str, &str),
    )] = &[
        (
            "qwen3.jinja",
            Some("think"),
            false,
            ToolFormat::Hermes,
            ("", "\n"),
            ("\n", "\n\n"),
        ),
        (
            "qwen3_thinking.jinja",
            Some("think"),
            true,
            ToolFormat::Hermes,
            ("", "\n"),
            ("\n", "\n\n"),
        ),
        (
            "qwen3_coder.jinja",
            None,
            false,
            ToolFormat::Qwen3Coder,
            ("", ""),
            ("", ""),
        ),
        (
            "glm4.5.jinja",
            Some("think"),
            false,
            ToolFormat::Glm,
            ("\n", ""),
            ("", "\n"),
        ),
        (
            "deepseek_r1.jinja",
            Some("think"),
            true,
            ToolFormat::DeepseekV31,
            ("", "\n"),
            ("", ""),
        ),
        (
            "deepseek_v3.1.jinja",
            Some("think"),
            true,
            ToolFormat::DeepseekV31,
            ("", ""),
            ("", ""),
        ),
        (
            "kimi_k2.jinja",
            None,
            false,
            ToolFormat::KimiK2,
            ("", ""),
            ("", ""),
        ),
        (
            "minimax_m2.jinja",
            Some("think"),
            true,
            ToolFormat::MinimaxM2,
            ("", "\n"),
            ("\n", "\n\n"),
        ),
        (
            "hermes.jinja",
            None,
            false,
            ToolFormat::Hermes,
            ("", ""),
            ("", ""),
        ),
    ];

    #[test]
    fn shipped_templates_render_and_detect() {
        for &(file, tag, starts, format, open, close) in SHIPPED {
            let info = detect(&shipped(file)).unwrap();
            assert_eq!(
                info.method,
                Method::Rendered,
                "{file}: {:?}",
                info.render_error
            );
            assert_eq!(info.think_tag.as_deref(), tag, "{file}");
            assert_eq!(info.starts_in_reasoning, starts, "{file}");
            assert_eq!(info.tool_format, Some(format), "{file}");
            // The known formats keep the default `<tool_call>` markers.
            assert_eq!(
                (&info.tool_open, &info.tool_close),
                (&None, &None),
                "{file}"
            );
            assert_eq!(info.tool_arg_format, None, "{file}");
            assert_eq!(info.think_open, affix(open.0, open.1), "{file}");
            assert_eq!(info.think_close, affix(close.0, close.1), "{file}");
        }
    }

    #[test]
    fn every_shipped_template_is_covered() {
        let dir = format!("{}/configs/jinja_templates", env!("CARGO_MANIFEST_DIR"));
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().to_string();
            if name.ends_with(".jinja") {
                assert!(
                    SHIPPED.iter().any(|s| s.0 == name),
                    "{name} has no test row"
                );
            }
        }
    }

    #[test]
    fn thinking_dependent_generation_prompt_is_noted() {
        let v31 = detect(&shipped("deepseek_v3.1.jinja")).unwrap();
        assert!(
            v31.notes
                .iter()
                .any(|n| n.contains("only with thinking on")),
            "{:?}",
            v31.notes
        );
        let r1 = detect(&shipped("deepseek_r1.jinja")).unwrap();
        assert!(
            r1.notes
                .iter()
                .any(|n| n.contains("does not render reasoning_content"))
        );
        // Qwen3 hybrid writes an empty, closed think block with thinking off.
        let q = detect(&shipped("qwen3.jinja")).unwrap();
        assert!(q.notes.is_empty(), "{:?}", q.notes);
    }

    /// `{% generation %}` (transformers' assistant-mask tag) is not
    /// minijinja syntax: the literal text is searched instead.
    fn unrenderable(text: &str) -> String {
        format!("{{% generation %}}{{% endgeneration %}}\n{text}")
    }

    #[test]
    fn literal_scan_when_the_template_cannot_render() {
        let info = detect(&unrenderable(&shipped("qwen3.jinja"))).unwrap();
        assert_eq!(info.method, Method::LiteralScan);
        assert!(
            info.render_error
                .as_deref()
                .unwrap_or("")
                .contains("generation")
        );
        assert_eq!(info.think_tag.as_deref(), Some("think"));
        assert!(!info.starts_in_reasoning);
        assert_eq!(info.tool_format, Some(ToolFormat::Hermes));
        assert_eq!(info.think_open, affix("", "\n"));
        assert_eq!(info.think_close, affix("\n", "\n\n"));
        assert!(info.notes.iter().any(|n| n.contains("literal text")));

        let cases = [
            (
                "qwen3_thinking.jinja",
                Some("think"),
                true,
                Some(ToolFormat::Hermes),
            ),
            (
                "qwen3_coder.jinja",
                None,
                false,
                Some(ToolFormat::Qwen3Coder),
            ),
            ("glm4.5.jinja", Some("think"), false, Some(ToolFormat::Glm)),
            (
                "deepseek_r1.jinja",
                Some("think"),
                true,
                Some(ToolFormat::DeepseekV31),
            ),
            ("kimi_k2.jinja", None, false, Some(ToolFormat::KimiK2)),
            (
                "minimax_m2.jinja",
                Some("think"),
                true,
                Some(ToolFormat::MinimaxM2),
            ),
        ];
        for (file, tag, starts, format) in cases {
            let info = detect(&unrenderable(&shipped(file))).unwrap();
            assert_eq!(info.method, Method::LiteralScan, "{file}");
            assert_eq!(info.think_tag.as_deref(), tag, "{file}");
            assert_eq!(info.starts_in_reasoning, starts, "{file}");
            assert_eq!(info.tool_format, format, "{file}");
        }
        // MiniMax joins its literals with `~`.
        let mm = detect(&unrenderable(&shipped("minimax_m2.jinja"))).unwrap();
        assert_eq!(mm.think_open, affix("", "\n"));
        assert_eq!(mm.think_close, affix("\n", "\n\n"));
    }

    const CUSTOM: &str = r#"{%- for m in messages -%}
<|{{ m.role }}|>
{%- if m.reasoning_content %}<seed:think>{{ m.reasoning_content }}</seed:think>{% endif -%}
{{ m.content or '' }}
{%- for c in m.tool_calls or [] %}<function_call>{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}</function_call>{% endfor -%}
<|end|>
{%- endfor -%}
{%- if add_generation_prompt %}<|assistant|><seed:think>{% endif -%}"#;

    #[test]
    fn custom_markers_and_tag_names() {
        let info = detect(CUSTOM).unwrap();
        assert_eq!(info.method, Method::Rendered, "{:?}", info.render_error);
        assert_eq!(info.think_tag.as_deref(), Some("seed:think"));
        assert!(info.starts_in_reasoning);
        assert_eq!(info.tool_format, Some(ToolFormat::Json));
        assert_eq!(info.tool_open.as_deref(), Some("<function_call>"));
        assert_eq!(info.tool_close.as_deref(), Some("</function_call>"));
        assert_eq!(info.tool_arg_format, Some(ArgFormat::Json));

        let xml = CUSTOM.replace(
            r#"<function_call>{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}</function_call>"#,
            "<call><name>{{ c.function.name }}</name>{% for k, v in c.function.arguments|items %}<{{ k }}>{{ v }}</{{ k }}>{% endfor %}</call>",
        ).replace("seed:think", "thinking");
        let info = detect(&xml).unwrap();
        assert_eq!(info.think_tag.as_deref(), Some("thinking"));
        assert_eq!(info.tool_format, Some(ToolFormat::Xml));
        assert_eq!(info.tool_open.as_deref(), Some("<call>"));
        assert_eq!(info.tool_close.as_deref(), Some("</call>"));
        assert_eq!(info.tool_arg_format, Some(ArgFormat::Xml));
    }

    #[test]
    fn no_tools_no_think() {
        let plain = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
        let info = detect(plain).unwrap();
        assert_eq!(info.method, Method::Rendered);
        assert_eq!((info.think_tag, info.tool_format), (None, None));
        assert!(info.notes.iter().any(|n| n.contains("no tool calls")));
    }

    #[test]
    fn tokenizer_config_json_and_empty_input() {
        let json = serde_json::json!({
            "bos_token": "<s>",
            "chat_template": [
                {"name": "default", "template": "{{ messages[0].content }}"},
                {"name": "tool_use", "template": shipped("hermes.jinja")},
            ]
        });
        let info = detect(&json.to_string()).unwrap();
        assert_eq!(info.tool_format, Some(ToolFormat::Hermes));
        let one = serde_json::json!({"chat_template": shipped("kimi_k2.jinja")});
        assert_eq!(
            detect(&one.to_string()).unwrap().tool_format,
            Some(ToolFormat::KimiK2)
        );
        assert!(detect(r#"{"eos_token": "</s>"}"#).is_err());
        assert!(detect("  \n").is_err());
    }

    #[test]
    fn tojson_is_pythons() {
        let env = environment();
        let render = |src: &str| {
            env.template_from_str(src)
                .unwrap()
                .render(JValue::from(()))
                .unwrap()
        };
        assert_eq!(
            render(r#"{{ {"a": 1, "b": [1, "é"], "c": {}} | tojson }}"#),
            r#"{"a": 1, "b": [1, "é"], "c": {}}"#
        );
        assert_eq!(
            render(
                r#"{{ {"b": 1, "a": [2]} | tojson(separators=(',', ':'), sort_keys=true, ensure_ascii=False) }}"#
            ),
            r#"{"a":[2],"b":1}"#
        );
        assert_eq!(
            render(r#"{{ {"a": [1]} | tojson(indent=2) }}"#),
            "{\n  \"a\": [\n    1\n  ]\n}"
        );
        assert_eq!(render(r#"{{ strftime_now("%Y-%m-%d") }}"#), "2025-01-15");
        assert!(
            env.template_from_str("{{ raise_exception('no') }}")
                .unwrap()
                .render(JValue::from(()))
                .is_err()
        );
    }

    #[test]
    fn apply_fills_only_defaults() {
        let info = TemplateInfo {
            think_tag: Some("seed:think".into()),
            starts_in_reasoning: true,
            tool_format: Some(ToolFormat::Xml),
            tool_open: Some("<call>".into()),
            tool_close: Some("</call>".into()),
            tool_arg_format: Some(ArgFormat::Json),
            ..TemplateInfo::default()
        };
        let mut s = ParseTagsSettings::default();
        info.apply(&mut s);
        assert_eq!(s.think_tag, "seed:think");
        assert!(s.starts_in_reasoning);
        assert_eq!(s.tool_format, ToolFormat::Xml);
        assert_eq!(s.tool_open(), "<call>");
        assert_eq!(s.tool_close(), "</call>");
        assert_eq!(s.tool_arg_format, ArgFormat::Json);

        // Set by hand: kept. A format other than auto: no tool values at all.
        let mut s = ParseTagsSettings {
            think_tag: "reasoning".into(),
            tool_format: ToolFormat::Hermes,
            ..ParseTagsSettings::default()
        };
        info.apply(&mut s);
        assert_eq!(s.think_tag, "reasoning");
        assert_eq!(s.tool_format, ToolFormat::Hermes);
        assert_eq!(
            (s.tool_open.as_deref(), s.tool_close.as_deref()),
            (None, None)
        );
        assert_eq!(s.tool_arg_format, ArgFormat::Xml);

        // Auto with markers set by hand: the markers stay.
        let mut s = ParseTagsSettings {
            tool_open: Some("<mine>".into()),
            ..ParseTagsSettings::default()
        };
        info.apply(&mut s);
        assert_eq!(s.tool_format, ToolFormat::Xml);
        assert_eq!(s.tool_open(), "<mine>");
        assert_eq!(s.tool_close(), "</call>");

        // Nothing detected: nothing changes.
        let mut s = ParseTagsSettings::default();
        TemplateInfo::default().apply(&mut s);
        assert_eq!(s, ParseTagsSettings::default());
    }

    /// The detected settings parse what such a model writes.
    #[test]
    fn detected_settings_parse_model_output() {
        use super::super::Piece;
        use super::super::tags::{TagParser, TagSpec};
        use super::super::tools::Schemas;
        use std::sync::Arc;
        let cases = [
            (
                "qwen3_thinking.jinja",
                "plan\n</think>\n\nok\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
            ),
            (
                "glm4.5.jinja",
                "<think>plan</think>\nok\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>",
            ),
            (
                "minimax_m2.jinja",
                "plan\n</think>\n\nok\n<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"city\">Paris</parameter>\n</invoke>\n</minimax:tool_call>",
            ),
            (
                "kimi_k2.jinja",
                "ok<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Paris\"}<|tool_call_end|><|tool_calls_section_end|>",
            ),
        ];
        for (file, output) in cases {
            let mut s = ParseTagsSettings::default();
            detect(&shipped(file)).unwrap().apply(&mut s);
            let mut p = TagParser::new(
                Arc::new(TagSpec::from_settings(&s)),
                Arc::new(Schemas::default()),
            );
            let mut pieces = p.push(output);
            pieces.extend(p.finish());
            let tool = pieces.iter().find_map(|p| match p {
                Piece::Tool(t) => Some(t),
                _ => None,
            });
            let tool = tool.unwrap_or_else(|| panic!("{file}: no tool call in {pieces:?}"));
            assert_eq!(tool.name, "get_weather", "{file}");
            assert!(tool.arguments.contains("Paris"), "{file}");
            assert!(
                pieces
                    .iter()
                    .any(|p| matches!(p, Piece::Content(c) if c.trim() == "ok")),
                "{file}: {pieces:?}"
            );
        }
    }
}
