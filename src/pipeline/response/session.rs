//! One response's run through the parsers ([`Session`]): a JSON answer in
//! one call ([`Session::apply_json`]), a stream frame by frame
//! ([`Session::on_frame`], [`Session::end`]), through the same stages.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::chunk::{
    chunk_frame, content_span, deltas_for, peek, restore, take_pieces, tool_call_json,
    write_message,
};
use super::swap::Swap;
use super::tags::TagParser;
use super::tools::Schemas;
use super::{ChoiceState, Delta, Kept, Piece, Pipeline, Stage, StageSpec};
use crate::sse;

impl Pipeline {
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

    /// The response parsers this session runs, in order.
    pub fn parsers(&self) -> Arc<[&'static str]> {
        self.pipeline.names()
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
