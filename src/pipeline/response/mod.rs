//! Response modules (`proxy_settings.parsers`): `parse_tags`,
//! `swap_reasoning_content`, `normalize_reasoning`. A response becomes a
//! sequence of [`Piece`]s per choice (reasoning, content, tool calls); each
//! module is a streaming stage over pieces; the result is written back as a
//! message (JSON) or as deltas (SSE). A JSON response is one push and a
//! finish, a stream is many pushes: the same stages, so both agree.

pub mod swap;
pub mod tags;
pub mod tools;

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::config::parsers::{ParsersSettings, ResponseModule};
use crate::sse;
use swap::{Swap, SwapSpec};
use tags::{TagParser, TagSpec};
use tools::Schemas;

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
        Some(Arc::new(Pipeline {
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

    /// Whether it runs for a request to `path`.
    pub fn applies_to(&self, path: &str) -> bool {
        self.paths.iter().any(|p| path.contains(p.as_str()))
    }

    /// The state of one response. `tools` is the request's `tools` (for
    /// argument types); `keep` keeps what the client got, for the log.
    pub fn session(self: &Arc<Self>, tools: Option<&RawValue>, keep: bool) -> Session {
        Session {
            pipeline: self.clone(),
            schemas: Arc::new(Schemas::from_tools(tools)),
            choices: Vec::new(),
            envelope: None,
            keep: keep.then(Kept::default),
        }
    }
}

impl Session {
    /// Bounds what is kept for the log (`logging.max_body_bytes`): past
    /// `limit` bytes of frames and text, the rest is left out and the
    /// parsed output says `"truncated": true`.
    pub fn with_keep_limit(mut self, limit: usize) -> Session {
        if let Some(k) = &mut self.keep {
            k.limit = limit;
        }
        self
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

/// The parsers' state for one response.
#[derive(Debug)]
pub struct Session {
    pipeline: Arc<Pipeline>,
    schemas: Arc<Schemas>,
    choices: Vec<ChoiceState>,
    /// The first chunk's top-level fields (without `choices`), for chunks
    /// the parsers add at the end.
    envelope: Option<Map<String, Value>>,
    keep: Option<Kept>,
}

impl Session {
    fn choice(&mut self, index: u64) -> &mut ChoiceState {
        let pos = match self.choices.iter().position(|c| c.index == index) {
            Some(p) => p,
            None => {
                let stages = self
                    .pipeline
                    .stages
                    .iter()
                    .map(|s| match s {
                        StageSpec::Tags(spec) => {
                            Stage::Tags(TagParser::new(spec.clone(), self.schemas.clone()))
                        }
                        StageSpec::Swap(spec) => Stage::Swap(Swap::new(spec.clone())),
                    })
                    .collect();
                self.choices.push(ChoiceState {
                    index,
                    stages,
                    next_tool: 0,
                    made_tools: false,
                    finished: false,
                });
                self.choices.len() - 1
            }
        };
        &mut self.choices[pos]
    }

    /// What the parsers could not read (kept as content), for the record.
    pub fn errors(&self) -> Vec<String> {
        self.choices
            .iter()
            .flat_map(|c| c.stages.iter().flat_map(|s| s.errors().iter().cloned()))
            .collect()
    }

    /// The parsed output for the request log, when it was asked for.
    pub fn parsed(&self) -> Option<Value> {
        let k = self.keep.as_ref()?;
        let choices: Vec<Value> = k
            .choices
            .iter()
            .map(|(i, r, c, t)| {
                json!({
                    "index": i,
                    "reasoning": (!r.is_empty()).then_some(r),
                    "content": (!c.is_empty()).then_some(c),
                    "tool_calls": t,
                })
            })
            .collect();
        let mut v = json!({ "choices": choices });
        if !k.frames.is_empty() {
            v["frames"] = json!(k.frames);
        }
        if k.truncated {
            v["truncated"] = json!(true);
        }
        let errors = self.errors();
        if !errors.is_empty() {
            v["errors"] = json!(errors);
        }
        Some(v)
    }

    fn keep_pieces(&mut self, index: u64, pieces: &[Piece]) {
        let Some(k) = &mut self.keep else { return };
        let pos = match k.choices.iter().position(|c| c.0 == index) {
            Some(p) => p,
            None => {
                k.choices
                    .push((index, String::new(), String::new(), Vec::new()));
                k.choices.len() - 1
            }
        };
        for p in pieces {
            let size = match p {
                Piece::Reasoning(t) | Piece::Content(t) => t.len(),
                // About what a call costs; exactness does not matter here.
                Piece::Tool(_) | Piece::Native(_) => 256,
            };
            if !k.room(size) {
                continue;
            }
            let entry = &mut k.choices[pos];
            match p {
                Piece::Reasoning(t) => entry.1.push_str(t),
                Piece::Content(t) => entry.2.push_str(t),
                Piece::Tool(c) => entry.3.push(tool_call_json(c, None)),
                Piece::Native(v) => entry.3.push(v.clone()),
            }
        }
    }

    /// A whole JSON response: the new body, or `None` when nothing changed.
    pub fn apply_json(&mut self, body: &[u8]) -> Option<Bytes> {
        let mut v: Value = serde_json::from_slice(body).ok()?;
        let choices = v.get_mut("choices")?.as_array_mut()?;
        let mut changed = false;
        let mut results = Vec::new();
        for (pos, choice) in choices.iter_mut().enumerate() {
            let Some(obj) = choice.as_object_mut() else {
                continue;
            };
            let index = obj
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(pos as u64);
            let Some(message) = obj.get_mut("message").and_then(Value::as_object_mut) else {
                continue;
            };
            let (pieces, had_reasoning) = take_pieces(message, &self.pipeline);
            let state = self.choice(index);
            let mut out = state.run(pieces.clone());
            out.extend(state.finish());
            if out == pieces && !had_reasoning {
                restore(message, &pieces);
                results.push((index, out));
                continue;
            }
            changed = true;
            let made_tools = write_message(message, &out, &self.pipeline.reasoning_fields);
            if made_tools {
                obj.insert("finish_reason".into(), Value::from("tool_calls"));
            }
            results.push((index, out));
        }
        for (index, out) in results {
            self.keep_pieces(index, &out);
        }
        changed.then(|| Bytes::from(v.to_string()))
    }

    /// One upstream frame of a stream: appends what the client gets.
    pub fn on_frame(&mut self, frame: &Bytes, out: &mut Vec<Bytes>) {
        let start = out.len();
        self.frame(frame, out);
        if let Some(k) = &mut self.keep {
            for f in &out[start..] {
                if k.room(f.len()) {
                    k.frames.push(String::from_utf8_lossy(f).into_owned());
                }
            }
        }
    }

    fn frame(&mut self, frame: &Bytes, out: &mut Vec<Bytes>) {
        let ev = sse::parse(frame);
        let Some(data) = ev.data.as_deref() else {
            out.push(frame.clone());
            return;
        };
        if ev.is_done() {
            self.end(out);
            out.push(frame.clone());
            return;
        }
        if ev.event.is_some_and(|e| e != "message") {
            out.push(frame.clone());
            return;
        }
        // Most frames carry a bit of plain text that the stages pass on as
        // it is: a typed peek (no JSON tree) settles those, and the frame
        // goes out byte for byte.
        let mut ran: Vec<(u64, Vec<Piece>)> = Vec::new();
        if self.envelope.is_some()
            && let Ok(peek) = serde_json::from_str::<peek::Chunk>(data)
            && peek.is_plain(self.pipeline.read_details)
        {
            let mut changed = false;
            let single = peek.choices.len() == 1 && peek.usage.is_none();
            let mut splice_at: Option<(usize, usize)> = None;
            for (pos, c) in peek.choices.into_iter().enumerate() {
                let index = c.index.unwrap_or(pos as u64);
                let text = c
                    .delta
                    .and_then(|d| d.content)
                    .map(|t| t.0)
                    .unwrap_or_default();
                if single && c.finish_reason.is_none() {
                    splice_at = content_span(data, &text);
                }
                let pieces = if text.is_empty() {
                    Vec::new()
                } else {
                    vec![Piece::Content(text.to_string())]
                };
                let finish = c.finish_reason.is_some();
                let state = self.choice(index);
                let mut outp = if state.finished {
                    pieces
                } else {
                    state.run(pieces)
                };
                if finish && !state.finished {
                    outp.extend(state.finish());
                }
                let same = match outp.as_slice() {
                    [] => text.is_empty(),
                    [Piece::Content(t)] => *t == text,
                    _ => false,
                };
                changed |= !same || (finish && state.made_tools);
                ran.push((index, outp));
            }
            if !changed {
                for (index, outp) in ran {
                    self.keep_pieces(index, &outp);
                }
                out.push(frame.clone());
                return;
            }
            // One choice whose text became one piece of reasoning or other
            // content: only the `"content":"..."` member changes, so it is
            // replaced in place and the rest of the frame stays as it was.
            // A reasoning field already in the frame (DeepSeek sends
            // `"reasoning_content": null` with every delta) would be written
            // twice: such frames are rebuilt instead.
            if let (Some((start, end)), [(index, outp)]) = (splice_at, ran.as_slice())
                && let [piece @ (Piece::Reasoning(_) | Piece::Content(_))] = outp.as_slice()
                && !(matches!(piece, Piece::Reasoning(_))
                    && self
                        .pipeline
                        .quoted_fields
                        .iter()
                        .any(|f| memchr::memmem::find(data.as_bytes(), f.as_bytes()).is_some()))
            {
                let member = match piece {
                    Piece::Reasoning(t) => self
                        .pipeline
                        .reasoning_fields
                        .iter()
                        .map(|f| format!("{}:{}", Value::from(f.as_str()), Value::from(t.as_str())))
                        .collect::<Vec<_>>()
                        .join(","),
                    Piece::Content(t) => format!("\"content\":{}", Value::from(t.as_str())),
                    _ => String::new(),
                };
                let mut json = String::with_capacity(data.len() + member.len());
                json.push_str(&data[..start]);
                json.push_str(&member);
                json.push_str(&data[end..]);
                out.push(sse::data_frame(json.as_bytes()));
                let (index, outp) = (*index, outp.clone());
                self.keep_pieces(index, &outp);
                return;
            }
        }
        let Ok(Value::Object(mut chunk)) = serde_json::from_str::<Value>(data) else {
            out.push(frame.clone());
            return;
        };
        // Taken out in place (the key keeps its position for the rebuilt
        // frame).
        let choices = match chunk.get_mut("choices") {
            Some(Value::Array(c)) => std::mem::take(c),
            _ => {
                out.push(frame.clone());
                return;
            }
        };
        if self.envelope.is_none() {
            let mut env = chunk.clone();
            env.shift_remove("usage");
            self.envelope = Some(env);
        }
        let mut changed = false;
        // Per choice: the choice object (delta emptied of what the parsers
        // own) and the deltas to send for it.
        let mut per_choice: Vec<(Map<String, Value>, Vec<Delta>)> = Vec::new();
        let mut kept = Vec::new();
        for (pos, choice) in choices.into_iter().enumerate() {
            let Value::Object(mut obj) = choice else {
                changed = true;
                continue;
            };
            let index = obj
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(pos as u64);
            let finish = obj.get("finish_reason").is_some_and(|f| !f.is_null());
            let mut delta = match obj.get_mut("delta") {
                Some(Value::Object(d)) => std::mem::take(d),
                Some(_) => {
                    per_choice.push((obj, Vec::new()));
                    continue;
                }
                None => Map::new(),
            };
            let (pieces, had_reasoning) = take_pieces(&mut delta, &self.pipeline);
            let pipeline = self.pipeline.clone();
            let precomputed = ran
                .iter()
                .position(|(i, _)| *i == index)
                .map(|p| ran.swap_remove(p).1);
            let state = self.choice(index);
            let outp = match precomputed {
                Some(o) => o,
                None => {
                    let mut outp = if state.finished {
                        pieces.clone()
                    } else {
                        state.run(pieces.clone())
                    };
                    if finish && !state.finished {
                        outp.extend(state.finish());
                    }
                    outp
                }
            };
            let deltas = if outp != pieces || had_reasoning {
                changed = true;
                deltas_for(state, &outp, &pipeline.reasoning_fields)
            } else {
                restore(&mut delta, &pieces);
                Vec::new()
            };
            if finish && state.made_tools {
                let f = obj.get("finish_reason").and_then(Value::as_str);
                if f != Some("tool_calls") {
                    obj.insert("finish_reason".into(), Value::from("tool_calls"));
                    changed = true;
                }
            }
            kept.push((index, outp));
            obj.insert("delta".into(), Value::Object(delta));
            per_choice.push((obj, deltas));
        }
        for (index, outp) in kept {
            self.keep_pieces(index, &outp);
        }
        if !changed {
            out.push(frame.clone());
            return;
        }
        // Every delta but each choice's last goes in a chunk of its own;
        // the last ones go into the frame itself with the choice's other
        // fields (finish_reason, logprobs) and the chunk's usage.
        let mut last = Vec::with_capacity(per_choice.len());
        for (mut obj, mut deltas) in per_choice {
            let final_delta = deltas.pop();
            for d in deltas {
                let index = obj.get("index").cloned().unwrap_or(Value::from(0));
                out.push(chunk_frame(
                    &chunk,
                    vec![json!({"index": index, "delta": d, "finish_reason": null})],
                ));
            }
            if let (Some(fd), Some(Value::Object(delta))) = (final_delta, obj.get_mut("delta")) {
                delta.extend(fd);
            }
            last.push(Value::Object(obj));
        }
        let empty = last.iter().all(|c| {
            c.get("delta")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty)
                && c.get("finish_reason").is_none_or(Value::is_null)
        });
        if empty && !last.is_empty() && chunk.get("usage").is_none_or(Value::is_null) {
            // Everything in it is held for now.
            return;
        }
        out.push(chunk_frame(&chunk, last));
    }

    /// The end of the stream (`[DONE]`, or the upstream closed): whatever
    /// the stages still hold goes out in chunks of its own.
    pub fn end(&mut self, out: &mut Vec<Bytes>) {
        let env = self.envelope.clone().unwrap_or_default();
        let pipeline = self.pipeline.clone();
        let mut flushed = Vec::new();
        for state in &mut self.choices {
            if state.finished {
                continue;
            }
            let pieces = state.finish();
            let deltas = deltas_for(state, &pieces, &pipeline.reasoning_fields);
            for d in deltas {
                out.push(chunk_frame(
                    &env,
                    vec![json!({"index": state.index, "delta": d, "finish_reason": null})],
                ));
            }
            flushed.push((state.index, pieces));
        }
        for (index, pieces) in flushed {
            self.keep_pieces(index, &pieces);
        }
    }
}

#[allow(clippy::ptr_arg)] // borrowed or not is the point
/// Where the member `"content":"<text>"` is in `data`, when `text` was
/// borrowed from it (no escapes): (start of the key, end of the value).
fn content_span(data: &str, text: &Cow<'_, str>) -> Option<(usize, usize)> {
    let Cow::Borrowed(t) = text else {
        return None;
    };
    let off = (t.as_ptr() as usize).checked_sub(data.as_ptr() as usize)?;
    let end = off + t.len();
    if off == 0
        || end >= data.len()
        || data.as_bytes()[off - 1] != b'"'
        || data.as_bytes()[end] != b'"'
    {
        return None;
    }
    let key = data[..off - 1]
        .trim_end()
        .strip_suffix(':')?
        .trim_end()
        .strip_suffix("\"content\"")?;
    Some((key.len(), end + 1))
}

/// Typed views of a chunk that read only what the parsers need.
mod peek {
    use std::borrow::Cow;

    use serde::Deserialize;
    use serde::de::IgnoredAny;

    #[derive(Deserialize)]
    pub struct Chunk<'a> {
        #[serde(borrow)]
        pub choices: Vec<Choice<'a>>,
        pub usage: Option<IgnoredAny>,
    }

    #[derive(Deserialize)]
    pub struct Choice<'a> {
        pub index: Option<u64>,
        #[serde(borrow)]
        pub delta: Option<Delta<'a>>,
        pub finish_reason: Option<IgnoredAny>,
    }

    #[derive(Deserialize)]
    pub struct Delta<'a> {
        #[serde(borrow)]
        pub content: Option<Text<'a>>,
        reasoning_content: Option<IgnoredAny>,
        reasoning: Option<IgnoredAny>,
        reasoning_details: Option<IgnoredAny>,
        tool_calls: Option<IgnoredAny>,
    }

    /// A string borrowed from the input when it has no escapes (serde's
    /// own `Option<Cow<str>>` always copies).
    pub struct Text<'a>(pub Cow<'a, str>);

    impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Text<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                    Ok(Text(Cow::Borrowed(v)))
                }
                fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                    Ok(Text(Cow::Owned(v.to_string())))
                }
                fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                    Ok(Text(Cow::Owned(v)))
                }
            }
            d.deserialize_str(V)
        }
    }

    impl Chunk<'_> {
        /// Only text content: no reasoning or tool calls to rewrite.
        pub fn is_plain(&self, read_details: bool) -> bool {
            !self.choices.is_empty()
                && self.choices.iter().all(|c| {
                    c.delta.as_ref().is_none_or(|d| {
                        d.reasoning_content.is_none()
                            && d.reasoning.is_none()
                            && d.tool_calls.is_none()
                            && !(read_details && d.reasoning_details.is_some())
                    })
                })
        }
    }
}

fn chunk_frame(envelope: &Map<String, Value>, choices: Vec<Value>) -> Bytes {
    let mut c = envelope.clone();
    c.insert("choices".into(), Value::Array(choices));
    sse::data_frame(Value::Object(c).to_string().as_bytes())
}

/// Takes what the stages own out of a message or delta: reasoning (the
/// first of `reasoning_content`, `reasoning`, and with normalization
/// `reasoning_details[].text`), text content, and `tool_calls`. Returns
/// the pieces and whether a reasoning field was there.
fn take_pieces(obj: &mut Map<String, Value>, p: &Pipeline) -> (Vec<Piece>, bool) {
    let mut pieces = Vec::new();
    let mut had_reasoning = false;
    let mut reasoning = String::new();
    for key in ["reasoning_content", "reasoning"] {
        match obj.get(key) {
            Some(Value::String(s)) => {
                had_reasoning = true;
                if reasoning.is_empty() {
                    reasoning = s.clone();
                }
                obj.shift_remove(key);
            }
            Some(Value::Null) => {
                obj.shift_remove(key);
            }
            _ => {}
        }
    }
    if reasoning.is_empty()
        && p.read_details
        && let Some(Value::Array(details)) = obj.get("reasoning_details")
    {
        for d in details {
            if let Some(t) = d.get("text").and_then(Value::as_str) {
                reasoning.push_str(t);
            }
        }
        had_reasoning |= !reasoning.is_empty();
    }
    if !reasoning.is_empty() {
        pieces.push(Piece::Reasoning(reasoning));
    }
    if matches!(obj.get("content"), Some(Value::String(_)))
        && let Some(Value::String(s)) = obj.shift_remove("content")
        && !s.is_empty()
    {
        pieces.push(Piece::Content(s));
    }
    if matches!(obj.get("tool_calls"), Some(Value::Array(_)))
        && let Some(Value::Array(calls)) = obj.shift_remove("tool_calls")
    {
        pieces.extend(calls.into_iter().map(Piece::Native));
    }
    (pieces, had_reasoning)
}

/// Puts unchanged pieces back where they came from.
fn restore(obj: &mut Map<String, Value>, pieces: &[Piece]) {
    let mut natives = Vec::new();
    for p in pieces {
        match p {
            Piece::Content(t) => {
                obj.insert("content".into(), Value::from(t.as_str()));
            }
            Piece::Native(v) => natives.push(v.clone()),
            _ => {}
        }
    }
    if !natives.is_empty() {
        obj.insert("tool_calls".into(), Value::Array(natives));
    }
}

fn tool_call_json(c: &ToolCall, index: Option<usize>) -> Value {
    let mut v = json!({
        "id": c.id,
        "type": "function",
        "function": {"name": c.name, "arguments": c.arguments},
    });
    if let Some(i) = index {
        v["index"] = json!(i);
    }
    v
}

/// Writes a whole answer into a message; returns whether it holds tool
/// calls read from the text.
fn write_message(message: &mut Map<String, Value>, pieces: &[Piece], fields: &[String]) -> bool {
    let mut reasoning = String::new();
    let mut content = String::new();
    let mut calls = Vec::new();
    let mut made = false;
    for p in pieces {
        match p {
            Piece::Reasoning(t) => reasoning.push_str(t),
            Piece::Content(t) => content.push_str(t),
            Piece::Tool(c) => {
                made = true;
                calls.push(tool_call_json(c, None));
            }
            Piece::Native(v) => calls.push(v.clone()),
        }
    }
    message.insert(
        "content".into(),
        if content.is_empty() {
            Value::Null
        } else {
            Value::String(content)
        },
    );
    if !reasoning.is_empty() {
        for f in fields {
            message.insert(f.clone(), Value::String(reasoning.clone()));
        }
    }
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    made
}

/// The deltas for a choice's pieces, in order: one per run of text of one
/// kind; a tool call is two (name, then arguments).
fn deltas_for(
    state: &mut ChoiceState,
    pieces: &[Piece],
    fields: &[String],
) -> Vec<Map<String, Value>> {
    let mut out = Vec::new();
    for p in pieces {
        let mut d = Map::new();
        match p {
            Piece::Reasoning(t) => {
                for f in fields {
                    d.insert(f.clone(), Value::String(t.clone()));
                }
            }
            Piece::Content(t) => {
                d.insert("content".into(), Value::String(t.clone()));
            }
            Piece::Tool(c) => {
                state.made_tools = true;
                let i = state.next_tool;
                state.next_tool += 1;
                d.insert(
                    "tool_calls".into(),
                    json!([{"index": i, "id": c.id, "type": "function",
                            "function": {"name": c.name, "arguments": ""}}]),
                );
                out.push(d);
                let mut a = Map::new();
                a.insert(
                    "tool_calls".into(),
                    json!([{"index": i, "function": {"arguments": c.arguments}}]),
                );
                out.push(a);
                continue;
            }
            Piece::Native(v) => {
                if let Some(i) = v.get("index").and_then(Value::as_u64) {
                    state.next_tool = state.next_tool.max(i as usize + 1);
                }
                d.insert("tool_calls".into(), Value::Array(vec![v.clone()]));
            }
        }
        out.push(d);
    }
    out
}
