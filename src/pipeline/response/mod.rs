//! Response modules (`proxy_settings.parsers`): `parse_tags`,
//! `swap_reasoning_content`, `normalize_reasoning`. A response becomes a
//! sequence of [`Piece`]s per choice (reasoning, content, tool calls); each
//! module is a streaming stage over pieces; the result is written back as a
//! message (JSON) or as deltas (SSE). A JSON response is one push and a
//! finish, a stream is many pushes: the same stages, so both agree.

mod chunk;
mod session;
pub mod swap;
pub mod tags;
pub mod tools;

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::parsers::{ParsersSettings, ResponseModule};
use swap::{Swap, SwapSpec};
use tags::{TagParser, TagSpec};

pub use session::Session;

/// A piece of an answer, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Reasoning(String),
    Content(String),
    /// A call read out of the text.
    Tool(ToolCall),
    /// A `tool_calls` entry the backend sent itself (passed on as is).
    Native(Value),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments JSON, as a string.
    pub arguments: String,
}

/// A delta object.
type Delta = Map<String, Value>;

/// The reasoning fields written when `normalize_reasoning` is not listed:
/// both names, so vLLM-style and DeepSeek-style clients see it.
const DEFAULT_REASONING_FIELDS: [&str; 2] = ["reasoning_content", "reasoning"];

/// The compiled modules of one parsers block.
#[derive(Debug)]
pub struct Pipeline {
    paths: Vec<String>,
    stages: Vec<StageSpec>,
    /// Where reasoning is written.
    reasoning_fields: Vec<String>,
    /// `normalize_reasoning`: also read `reasoning_details[].text`.
    read_details: bool,
    /// `"name"` of each field reasoning is written to, and of the fields it
    /// is read from.
    quoted_fields: Vec<String>,
    /// The response parsers configured, in order (for the telemetry).
    names: Arc<[&'static str]>,
}

#[derive(Debug)]
enum StageSpec {
    Tags(Arc<TagSpec>),
    Swap(Arc<SwapSpec>),
}

impl Pipeline {
    /// The pipeline of a parsers block; `None` when it is off.
    pub fn build(s: &ParsersSettings) -> Option<Arc<Pipeline>> {
        if s.enabled != Some(true) || s.response.is_empty() {
            return None;
        }
        let mut stages = Vec::new();
        let mut reasoning_fields: Vec<String> = DEFAULT_REASONING_FIELDS
            .iter()
            .map(|f| f.to_string())
            .collect();
        let mut read_details = false;
        for m in &s.response {
            match m {
                ResponseModule::ParseTags => stages.push(StageSpec::Tags(Arc::new(
                    TagSpec::from_settings(&s.parse_tags),
                ))),
                ResponseModule::SwapReasoningContent => stages.push(StageSpec::Swap(Arc::new(
                    SwapSpec::new(&s.swap_reasoning_content),
                ))),
                ResponseModule::NormalizeReasoning => {
                    reasoning_fields = s.normalize_reasoning.fields.clone();
                    read_details = true;
                }
            }
        }
        let quoted_fields = reasoning_fields
            .iter()
            .map(String::as_str)
            .chain(["reasoning_content", "reasoning"])
            .map(|f| format!("\"{f}\""))
            .collect();
        let names = s
            .response
            .iter()
            .map(|m| match m {
                ResponseModule::ParseTags => "parse_tags",
                ResponseModule::SwapReasoningContent => "swap_reasoning_content",
                ResponseModule::NormalizeReasoning => "normalize_reasoning",
            })
            .collect();
        Some(Arc::new(Pipeline {
            names,
            quoted_fields,
            paths: s.paths.clone(),
            stages,
            reasoning_fields,
            read_details,
        }))
    }

    /// When `swap_reasoning_content` folds reasoning into content: its
    /// open and close strings, and whether a newline follows the close.
    pub fn folded_form(&self) -> Option<(&str, &str, bool)> {
        self.stages.iter().find_map(|s| match s {
            StageSpec::Swap(spec) => spec.folded_form(),
            StageSpec::Tags(_) => None,
        })
    }

    /// The response parsers it runs, in order.
    pub fn names(&self) -> Arc<[&'static str]> {
        self.names.clone()
    }

    /// Whether it runs for a request to `path`.
    pub fn applies_to(&self, path: &str) -> bool {
        self.paths.iter().any(|p| path.contains(p.as_str()))
    }
}

#[derive(Debug)]
enum Stage {
    Tags(TagParser),
    Swap(Swap),
}

impl Stage {
    fn push(&mut self, pieces: Vec<Piece>) -> Vec<Piece> {
        match self {
            Stage::Tags(p) => {
                let mut out = Vec::with_capacity(pieces.len());
                for piece in pieces {
                    match piece {
                        Piece::Content(t) => {
                            for q in p.push(&t) {
                                tags::push_merged(&mut out, q);
                            }
                        }
                        other => out.push(other),
                    }
                }
                out
            }
            Stage::Swap(s) => s.push(pieces),
        }
    }

    fn finish(&mut self) -> Vec<Piece> {
        match self {
            Stage::Tags(p) => p.finish(),
            Stage::Swap(s) => s.finish(),
        }
    }

    fn errors(&self) -> &[String] {
        match self {
            Stage::Tags(p) => &p.errors,
            Stage::Swap(s) => s.errors(),
        }
    }
}

/// One choice of a response.
#[derive(Debug)]
struct ChoiceState {
    index: u64,
    stages: Vec<Stage>,
    /// Index of the next tool call in `tool_calls`.
    next_tool: usize,
    /// Calls read out of the text so far.
    made_tools: bool,
    finished: bool,
}

impl ChoiceState {
    fn run(&mut self, mut pieces: Vec<Piece>) -> Vec<Piece> {
        for s in &mut self.stages {
            if pieces.is_empty() {
                break;
            }
            pieces = s.push(pieces);
        }
        pieces
    }

    fn finish(&mut self) -> Vec<Piece> {
        self.finished = true;
        let mut acc = Vec::new();
        for i in 0..self.stages.len() {
            let mut out = self.stages[i].finish();
            for s in &mut self.stages[i + 1..] {
                if out.is_empty() {
                    break;
                }
                out = s.push(out);
            }
            acc.extend(out);
        }
        acc
    }
}

/// What the client got, for the request log: at most `limit` bytes of
/// text and frames (the log's `max_body_bytes`), then `truncated`.
#[derive(Debug)]
struct Kept {
    /// Per choice: reasoning, content, tool calls.
    choices: Vec<(u64, String, String, Vec<Value>)>,
    frames: Vec<String>,
    /// Bytes kept so far.
    bytes: usize,
    limit: usize,
    /// Something was left out past `limit`.
    truncated: bool,
}

impl Default for Kept {
    fn default() -> Self {
        Kept {
            choices: Vec::new(),
            frames: Vec::new(),
            bytes: 0,
            limit: usize::MAX,
            truncated: false,
        }
    }
}

impl Kept {
    /// Whether `n` more bytes fit; counts them when they do, notes the
    /// truncation when they do not.
    fn room(&mut self, n: usize) -> bool {
        if self.bytes.saturating_add(n) > self.limit {
            self.truncated = true;
            return false;
        }
        self.bytes += n;
        true
    }
}
