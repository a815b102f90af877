//! `parse_tags`' state machine: raw model text in, reasoning, content and
//! tool calls out. It owns no I/O and gives the same result however its
//! input is split: text leaves as soon as it cannot be part of a marker;
//! only the longest tail that could still begin one is held back, and a
//! tool block is held until its close marker (or released as text).

use std::sync::Arc;

use memchr::memmem;

use super::tools::{self, BlockKind, Schemas};
use super::{Piece, ToolCall};
use crate::config::parsers::{ParseTagsSettings, ToolFormat};

/// A tool block's markers and how its body reads.
#[derive(Debug, Clone)]
pub struct Block {
    pub open: String,
    pub close: String,
    pub kind: BlockKind,
}

/// What `tool_buffer_limit: 0` stands for: a tool block that grows past
/// this many bytes without its close marker is released as text.
pub const DEFAULT_TOOL_BUFFER_LIMIT: usize = 1024 * 1024;

/// The markers a parser looks for, compiled once per config.
#[derive(Debug)]
pub struct TagSpec {
    /// `<think>` and `</think>`, when thinking is parsed.
    pub think: Option<(String, String)>,
    pub starts_in_reasoning: bool,
    /// Only a think block at the very start of the text counts (the
    /// `content_to_reasoning` swap).
    pub think_at_start_only: bool,
    pub blocks: Vec<Block>,
    pub buffer_limit: usize,
    /// First bytes of every marker, for the scan.
    first_bytes: [bool; 256],
}

impl TagSpec {
    pub fn new(
        think: Option<(String, String)>,
        starts_in_reasoning: bool,
        think_at_start_only: bool,
        blocks: Vec<Block>,
        buffer_limit: usize,
    ) -> TagSpec {
        let mut first_bytes = [false; 256];
        let markers = think
            .iter()
            .flat_map(|(o, c)| [o.as_str(), c.as_str()])
            .chain(blocks.iter().map(|b| b.open.as_str()));
        for m in markers {
            if let Some(&b) = m.as_bytes().first() {
                first_bytes[b as usize] = true;
            }
        }
        TagSpec {
            think,
            starts_in_reasoning,
            think_at_start_only,
            blocks,
            buffer_limit,
            first_bytes,
        }
    }

    /// The spec of a `parse_tags` block. `tool_buffer_limit: 0` (the
    /// default) means [`DEFAULT_TOOL_BUFFER_LIMIT`]: an unclosed tool block
    /// never holds the rest of a stream for ever.
    pub fn from_settings(s: &ParseTagsSettings) -> TagSpec {
        let think = s
            .parse_thinking
            .then(|| (format!("<{}>", s.think_tag), format!("</{}>", s.think_tag)));
        let blocks = if s.parse_tool_calls {
            tool_blocks(s)
        } else {
            Vec::new()
        };
        TagSpec::new(
            think,
            s.parse_thinking && s.starts_in_reasoning,
            false,
            blocks,
            match s.tool_buffer_limit {
                0 => DEFAULT_TOOL_BUFFER_LIMIT,
                n => n,
            },
        )
    }

    /// Whether `text` holds a byte that could start a marker.
    pub fn may_contain_marker(&self, text: &str) -> bool {
        text.bytes().any(|b| self.first_bytes[b as usize])
    }
}

/// The tool blocks a format looks for.
fn tool_blocks(s: &ParseTagsSettings) -> Vec<Block> {
    let block = |open: &str, close: &str, kind| Block {
        open: open.into(),
        close: close.into(),
        kind,
    };
    let (open, close) = (s.tool_open(), s.tool_close());
    match s.tool_format {
        ToolFormat::Hermes | ToolFormat::Json => vec![block(&open, &close, BlockKind::Hermes)],
        ToolFormat::Qwen3Coder => vec![
            block(&open, &close, BlockKind::Qwen3Coder),
            block("<function=", "</function>", BlockKind::Qwen3Bare),
        ],
        ToolFormat::Glm => vec![block(&open, &close, BlockKind::Glm)],
        ToolFormat::Xml => vec![block(&open, &close, BlockKind::GenericXml)],
        ToolFormat::KimiK2 => vec![kimi()],
        ToolFormat::MinimaxM2 => vec![minimax()],
        ToolFormat::DeepseekV31 => vec![deepseek()],
        ToolFormat::Auto => {
            let mut v = vec![block(&open, &close, BlockKind::Sniff)];
            if open != "<tool_call>" {
                v.push(block("<tool_call>", "</tool_call>", BlockKind::Sniff));
            }
            v.extend([minimax(), kimi(), deepseek()]);
            v.push(block("<function=", "</function>", BlockKind::Qwen3Bare));
            v
        }
    }
}

fn kimi() -> Block {
    Block {
        open: "<|tool_calls_section_begin|>".into(),
        close: "<|tool_calls_section_end|>".into(),
        kind: BlockKind::KimiK2,
    }
}

fn minimax() -> Block {
    Block {
        open: "<minimax:tool_call>".into(),
        close: "</minimax:tool_call>".into(),
        kind: BlockKind::MinimaxM2,
    }
}

fn deepseek() -> Block {
    Block {
        open: "<｜tool▁calls▁begin｜>".into(),
        close: "<｜tool▁calls▁end｜>".into(),
        kind: BlockKind::DeepseekV31,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Content,
    Reasoning,
    /// Inside the tool block `blocks[i]`.
    Tool(usize),
}

/// Leading and trailing whitespace around markers: dropped where a marker
/// made it meaningless, kept elsewhere.
#[derive(Debug, Default)]
struct Channel {
    /// Trailing whitespace not sent yet (it goes out with the next text, or
    /// is dropped before a tool call or a close tag).
    pending_ws: String,
    /// Just after a marker: leading whitespace is dropped.
    at_boundary: bool,
    /// Non-whitespace text has been emitted.
    emitted: bool,
    /// Trailing whitespace waits for the next text (reasoning: so that the
    /// space before a close tag is dropped). Content goes out at once: a
    /// held newline would cost the client latency and the relay its
    /// byte-for-byte fast path.
    hold_trailing: bool,
}

/// The parser of one choice of one response.
#[derive(Debug)]
pub struct TagParser {
    spec: Arc<TagSpec>,
    schemas: Arc<Schemas>,
    mode: Mode,
    /// Text not decided yet: a held tail, or the body of a tool block.
    buf: String,
    /// In a tool block: how far `buf` has been searched for the close.
    scanned: usize,
    content: Channel,
    reasoning: Channel,
    /// `starts_in_reasoning`: an opening tag before any reasoning is dropped.
    swallow_open: bool,
    /// A think block has ended (for `think_at_start_only`).
    think_done: bool,
    out: Vec<Piece>,
    /// What could not be parsed, for the record.
    pub errors: Vec<String>,
}

impl TagParser {
    pub fn new(spec: Arc<TagSpec>, schemas: Arc<Schemas>) -> TagParser {
        let start_reasoning = spec.starts_in_reasoning && spec.think.is_some();
        TagParser {
            mode: if start_reasoning {
                Mode::Reasoning
            } else {
                Mode::Content
            },
            swallow_open: start_reasoning,
            spec,
            schemas,
            buf: String::new(),
            scanned: 0,
            content: Channel::default(),
            reasoning: Channel {
                at_boundary: true,
                hold_trailing: true,
                ..Channel::default()
            },
            think_done: false,
            out: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Nothing held and nothing that a next chunk could change: text
    /// without marker bytes would pass through as it is.
    pub fn is_idle(&self) -> bool {
        self.mode == Mode::Content
            && self.buf.is_empty()
            && self.content.pending_ws.is_empty()
            && !self.content.at_boundary
    }

    /// Feeds text; returns what can be decided now.
    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        if self.buf.is_empty() && self.mode == Mode::Content && !self.spec.may_contain_marker(text)
        {
            // Nothing held and nothing to look for: straight out.
            self.emit_text(text);
        } else {
            self.buf.push_str(text);
            self.run(false);
        }
        std::mem::take(&mut self.out)
    }

    /// The end of the text: everything held is decided.
    pub fn finish(&mut self) -> Vec<Piece> {
        self.run(true);
        if !self.content.pending_ws.is_empty() {
            let ws = std::mem::take(&mut self.content.pending_ws);
            self.out_piece(Piece::Content(ws));
        }
        self.reasoning.pending_ws.clear();
        std::mem::take(&mut self.out)
    }

    fn run(&mut self, eof: bool) {
        loop {
            match self.mode {
                Mode::Content | Mode::Reasoning => {
                    if !self.scan_text(eof) {
                        return;
                    }
                }
                Mode::Tool(i) => {
                    if !self.scan_block(i, eof) {
                        return;
                    }
                }
            }
        }
    }

    /// The markers that count in the current text mode, as (marker, what it
    /// does), for a candidate at byte `at` of the buffer.
    fn active(&self, at: usize) -> impl Iterator<Item = (&str, Marker)> {
        let spec = &self.spec;
        let content = self.mode == Mode::Content;
        let reasoning = self.mode == Mode::Reasoning;
        let open_counts = if content {
            !spec.think_at_start_only
                || (!self.think_done && !self.content.emitted && self.buf[..at].trim().is_empty())
        } else {
            reasoning && self.swallow_open
        };
        let think = spec.think.as_ref();
        let close = think
            .filter(|_| reasoning)
            .map(|t| (t.1.as_str(), Marker::ThinkClose));
        let open = think
            .filter(|_| open_counts)
            .map(|t| (t.0.as_str(), Marker::ThinkOpen));
        let blocks = spec
            .blocks
            .iter()
            .enumerate()
            .filter(move |_| content)
            .map(|(i, b)| (b.open.as_str(), Marker::Block(i)));
        close.into_iter().chain(open).chain(blocks)
    }

    /// Text mode: emits up to the first marker and acts on it, or emits all
    /// but a tail that could begin one. Returns whether to go on.
    fn scan_text(&mut self, eof: bool) -> bool {
        let bytes = self.buf.as_bytes();
        let mut pos = 0;
        while pos < bytes.len() {
            // The next byte that could begin a marker.
            let Some(off) = bytes[pos..]
                .iter()
                .position(|&b| self.spec.first_bytes[b as usize])
            else {
                break;
            };
            let at = pos + off;
            let rest = &self.buf[at..];
            let mut matched: Option<(usize, Marker)> = None;
            let mut partial = false;
            for (m, what) in self.active(at) {
                if rest.starts_with(m) {
                    if matched.is_none_or(|(len, _)| m.len() > len) {
                        matched = Some((m.len(), what));
                    }
                } else if !eof && m.starts_with(rest) {
                    partial = true;
                }
            }
            if let Some((len, what)) = matched {
                self.act(at, len, what);
                return true;
            }
            if partial {
                // Hold from here: the next chunk decides.
                let text = self.buf[..at].to_string();
                self.buf.drain(..at);
                self.emit_text(&text);
                return false;
            }
            pos = at + 1;
        }
        let text = std::mem::take(&mut self.buf);
        self.emit_text(&text);
        false
    }

    /// A marker at `at` (`len` bytes): the text before it goes out, then
    /// the mode changes.
    fn act(&mut self, at: usize, len: usize, what: Marker) {
        let before = self.buf[..at].to_string();
        self.buf.drain(..at + len);
        self.emit_text(&before);
        match what {
            Marker::ThinkOpen => {
                if self.mode == Mode::Reasoning {
                    // `starts_in_reasoning` and the model opened anyway:
                    // dropped before any reasoning, text after some.
                    if !self.swallow_open {
                        let open = self.spec.think.as_ref().map(|t| t.0.clone());
                        self.emit_text(&open.unwrap_or_default());
                    }
                    self.swallow_open = false;
                } else {
                    self.mode = Mode::Reasoning;
                    self.reasoning.at_boundary = true;
                }
            }
            Marker::ThinkClose => {
                self.mode = Mode::Content;
                self.swallow_open = false;
                self.think_done = true;
                self.reasoning.pending_ws.clear();
                self.reasoning.at_boundary = true;
                self.content.at_boundary = true;
            }
            Marker::Block(i) => {
                self.mode = Mode::Tool(i);
                self.scanned = 0;
            }
        }
    }

    /// Tool mode: waits for the close marker, then parses the block.
    /// Returns whether to go on.
    fn scan_block(&mut self, i: usize, eof: bool) -> bool {
        let block = &self.spec.blocks[i];
        let limit = self.spec.buffer_limit;
        let close_len = block.close.len();
        let from = self.scanned.saturating_sub(close_len.saturating_sub(1));
        let found =
            memmem::find(&self.buf.as_bytes()[from..], block.close.as_bytes()).map(|p| p + from);
        let over_limit = |p: usize| limit > 0 && p > limit;
        match found {
            Some(p) if !over_limit(p) => {
                let body = self.buf[..p].to_string();
                self.buf.drain(..p + close_len);
                self.finish_block(i, &body);
                true
            }
            Some(_) => {
                self.release(i);
                true
            }
            None if limit > 0 && self.buf.len() >= limit + close_len => {
                self.release(i);
                true
            }
            None if eof => {
                let block = &self.spec.blocks[i];
                let text = format!("{}{}", block.open, self.buf);
                self.errors.push(format!(
                    "unclosed tool block `{}` at the end of the response; kept as content",
                    block.open
                ));
                self.buf.clear();
                self.mode = Mode::Content;
                self.emit_literal(&text);
                false
            }
            None => {
                self.scanned = self.buf.len();
                false
            }
        }
    }

    /// A block that grew past `tool_buffer_limit` unclosed: its open marker
    /// is text, and what followed it is read again as text.
    fn release(&mut self, i: usize) {
        let open = self.spec.blocks[i].open.clone();
        self.mode = Mode::Content;
        self.scanned = 0;
        self.errors.push(format!(
            "tool block `{open}` passed tool_buffer_limit ({} bytes) unclosed; released as content",
            self.spec.buffer_limit
        ));
        self.emit_literal(&open);
    }

    fn finish_block(&mut self, i: usize, body: &str) {
        let block = &self.spec.blocks[i];
        self.mode = Mode::Content;
        self.scanned = 0;
        let why = match tools::parse_block(block.kind, body, &self.schemas) {
            Ok(calls) if !calls.is_empty() => {
                self.content.pending_ws.clear();
                self.content.at_boundary = true;
                for c in calls {
                    self.out_piece(Piece::Tool(ToolCall {
                        id: c.id.unwrap_or_else(tools::new_call_id),
                        name: c.name,
                        arguments: c.arguments,
                    }));
                }
                return;
            }
            Ok(_) => "no tool call in it".to_string(),
            Err(e) => e,
        };
        let block = &self.spec.blocks[i];
        self.errors.push(format!(
            "tool block `{}` not parsed ({why}); kept as content",
            block.open
        ));
        let text = format!("{}{}{}", block.open, body, block.close);
        self.emit_literal(&text);
    }

    /// Text of the current text mode, with whitespace rules applied.
    fn emit_text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        match self.mode {
            Mode::Reasoning => {
                if self.swallow_open && !text.trim().is_empty() {
                    self.swallow_open = false;
                }
                emit(&mut self.reasoning, text, &mut self.out, Piece::Reasoning)
            }
            _ => emit(&mut self.content, text, &mut self.out, Piece::Content),
        }
    }

    /// Markup that stays text (content).
    fn emit_literal(&mut self, text: &str) {
        emit(&mut self.content, text, &mut self.out, Piece::Content);
    }

    fn out_piece(&mut self, p: Piece) {
        push_merged(&mut self.out, p);
    }
}

#[derive(Debug, Clone, Copy)]
enum Marker {
    ThinkOpen,
    ThinkClose,
    Block(usize),
}

fn emit(ch: &mut Channel, text: &str, out: &mut Vec<Piece>, make: fn(String) -> Piece) {
    let mut t = text;
    if ch.at_boundary {
        t = t.trim_start();
        if t.is_empty() {
            return;
        }
        ch.at_boundary = false;
    }
    if !ch.hold_trailing {
        ch.emitted |= !t.trim().is_empty();
        push_merged(out, make(t.to_string()));
        return;
    }
    let end = t.trim_end().len();
    if end == 0 {
        ch.pending_ws.push_str(t);
        return;
    }
    let mut s = std::mem::take(&mut ch.pending_ws);
    s.push_str(&t[..end]);
    ch.pending_ws.push_str(&t[end..]);
    ch.emitted = true;
    push_merged(out, make(s));
}

/// Appends a piece, joining it to the last one when both are text of the
/// same kind.
pub fn push_merged(out: &mut Vec<Piece>, p: Piece) {
    match (out.last_mut(), p) {
        (Some(Piece::Content(a)), Piece::Content(b)) => a.push_str(&b),
        (Some(Piece::Reasoning(a)), Piece::Reasoning(b)) => a.push_str(&b),
        (_, p) => out.push(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The detected settings parse what such a model writes.
    #[test]
    fn detected_settings_parse_model_output() {
        use crate::config::parsers::ParseTagsSettings;
        use crate::pipeline::response::Piece;
        use crate::pipeline::response::tools::Schemas;
        use crate::template::{detect, shipped};
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
