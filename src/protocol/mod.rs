//! Protocol translation: which dialect a backend is spoken to in for each
//! front door ([`wire`]), and the translators between them. OpenAI chat
//! completions is the middle: an Anthropic answer becomes a chat answer
//! (where the response parsers run) before it becomes what the client
//! asked for.
//!
//! - `anthropic`: OpenAI chat ⇄ Anthropic Messages (requests, answers,
//!   streams, errors).
//! - `gemini`: OpenAI chat ⇄ Gemini `generateContent` (requests, answers,
//!   streams, errors, embeddings), used by the Google transport.
//! - `responses`: OpenAI Responses → chat (requests), chat → Responses
//!   (answers, streams), for backends without a native `/responses`.
//! - `bedrock`: OpenAI chat ⇄ AWS Bedrock Converse, used at the upstream
//!   boundary (a Bedrock backend is a chat backend to the rest).
//! - `tokens`: the `count_tokens` estimate.

pub mod anthropic;
pub mod bedrock;
pub mod gemini;
pub mod responses;
pub mod tokens;

use bytes::Bytes;
use serde_json::Value;

use crate::config::{ApiType, Backend};
use crate::endpoint::Endpoint;

/// Anthropic's smallest thinking budget.
pub const MIN_THINKING: u64 = 1024;

/// A body that cannot be translated.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct TranslateError(pub String);

impl TranslateError {
    pub fn new(s: impl Into<String>) -> Self {
        TranslateError(s.into())
    }
}

/// A stream translator: one upstream SSE frame in, the frames of the other
/// protocol out. Pure: no I/O, so it serves any split of the input.
pub trait Convert: Send {
    fn frame(&mut self, frame: &[u8], out: &mut Vec<Bytes>);
    /// The upstream stream ended cleanly: what is still held back.
    fn end(&mut self, out: &mut Vec<Bytes>);
    /// The stream broke after its first event (the proxy's own error: a
    /// cut, a timeout, an event past the bound): the events that end it in
    /// the client's dialect. `false` when this translator has none of its
    /// own, and the relay sends its plain error event.
    fn fail(&mut self, _failure: &StreamFailure, _out: &mut Vec<Bytes>) -> bool {
        false
    }
}

/// Why a stream ends before its end: an upstream error event's error, or
/// the proxy's own (`stream_interrupted`, `upstream_timeout`,
/// `upstream_event_too_large`).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamFailure {
    /// Always a string: clients check it is one.
    pub code: String,
    /// The error's `type` (`upstream_error` for the proxy's own).
    pub kind: String,
    pub message: String,
    /// The upstream's `param`, when it named one.
    pub param: Value,
}

impl StreamFailure {
    /// The proxy's own error, with its `code`.
    pub fn proxy(code: &str, message: String) -> Self {
        StreamFailure {
            code: code.to_string(),
            kind: "upstream_error".to_string(),
            message,
            param: Value::Null,
        }
    }

    /// An upstream error object (`{"message","type","code","param"}`, each
    /// optional) with its message: a code that is a number becomes its
    /// text, a missing one the error's type, else `upstream_error`.
    pub fn upstream(message: String, e: &Value) -> Self {
        let kind = e
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .unwrap_or("upstream_error")
            .to_string();
        let code = match e.get("code") {
            Some(Value::String(c)) if !c.is_empty() => c.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => kind.clone(),
        };
        let param = match e.get("param") {
            Some(Value::String(p)) => Value::String(p.clone()),
            _ => Value::Null,
        };
        StreamFailure {
            code,
            kind,
            message,
            param,
        }
    }
}

/// A chat answer's assistant message from what a translator gathered: the
/// text (`null` when only tool calls came), the reasoning with its
/// signed blocks when any, the tool calls when any.
pub(crate) fn assistant_message(
    text: String,
    reasoning: String,
    thinking_blocks: Vec<Value>,
    calls: Vec<Value>,
) -> serde_json::Map<String, Value> {
    let mut message = serde_json::Map::new();
    message.insert("role".into(), Value::String("assistant".into()));
    message.insert(
        "content".into(),
        if text.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        },
    );
    if !reasoning.is_empty() || !thinking_blocks.is_empty() {
        message.insert("reasoning_content".into(), Value::String(reasoning));
        message.insert("thinking_blocks".into(), Value::Array(thinking_blocks));
    }
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    message
}

/// One chat stream chunk (one choice) as an SSE `data:` frame.
pub(crate) fn chat_chunk<M: serde::Serialize + ?Sized>(
    id: &str,
    created: u64,
    model: &M,
    delta: Value,
    finish: Option<&str>,
) -> Bytes {
    let c = serde_json::json!({
        "id": id, "object": "chat.completion.chunk", "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    crate::sse::data_frame(c.to_string().as_bytes())
}

/// The endpoint `backend` is sent a request for `endpoint` on, or why it
/// cannot take it.
pub fn wire(endpoint: Endpoint, backend: &Backend) -> Result<Endpoint, String> {
    use Endpoint as E;
    match backend.api_type {
        ApiType::Openai | ApiType::Stub | ApiType::Azure => match endpoint {
            E::Messages => Ok(E::ChatCompletions),
            E::Responses if !backend.supports_responses => Ok(E::ChatCompletions),
            E::CountTokens => Err("count_tokens needs an Anthropic backend".into()),
            e => Ok(e),
        },
        // Bedrock is reached through chat (translated to Converse at the
        // upstream boundary, src/upstream/bedrock.rs).
        ApiType::Bedrock => match endpoint {
            E::ChatCompletions | E::Messages | E::Responses => Ok(E::ChatCompletions),
            e => Err(format!(
                "api_type bedrock does not serve {}",
                e.path().trim_start_matches('/')
            )),
        },
        // Chat is the middle: the Gemini dialect is spoken at the transport
        // (src/upstream/google.rs), so these backends look like chat ones.
        ApiType::Gemini | ApiType::Vertex => match endpoint {
            E::ChatCompletions | E::Messages | E::Responses => Ok(E::ChatCompletions),
            E::Embeddings => Ok(E::Embeddings),
            e => Err(format!(
                "api_type {} does not serve {}",
                backend.api_type.as_str(),
                e.path().trim_start_matches('/')
            )),
        },
        ApiType::Anthropic => match endpoint {
            E::ChatCompletions | E::Messages | E::Responses => Ok(E::Messages),
            E::CountTokens => Ok(E::CountTokens),
            e => Err(format!(
                "api_type anthropic does not serve {}",
                e.path().trim_start_matches('/')
            )),
        },
    }
}

/// The client's request body in the dialect of `wire`.
pub fn request(client: Endpoint, wire: Endpoint, raw: &Bytes) -> Result<Bytes, TranslateError> {
    translate(client, wire, raw, None).map(|t| t.body)
}

/// A request translated for one backend: the body, and the client's fields
/// it does not carry (top-level names, `field.key` for part of an object,
/// `messages[i]...` for a block), which the request record lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Translated {
    pub body: Bytes,
    pub dropped: Vec<String>,
}

/// The client's request body in the dialect of `wire`, for `backend` when
/// given: to a chat backend, the effort the client asked for goes in the
/// field the backend's reasoning style reads
/// ([`crate::pipeline::reasoning::restyle`]).
pub fn translate(
    client: Endpoint,
    wire: Endpoint,
    raw: &Bytes,
    backend: Option<&Backend>,
) -> Result<Translated, TranslateError> {
    use Endpoint as E;
    let mut dropped = Vec::new();
    let mut v = match (client, wire) {
        (c, w) if c == w => {
            return Ok(Translated {
                body: raw.clone(),
                dropped,
            });
        }
        (E::ChatCompletions, E::Messages) => {
            anthropic::request::chat_to_messages(raw, &mut dropped)?
        }
        (E::Messages, E::ChatCompletions) => {
            anthropic::request::messages_to_chat(raw, &mut dropped)?
        }
        (E::Responses, E::ChatCompletions) => responses::request::to_chat(raw, &mut dropped)?,
        (E::Responses, E::Messages) => {
            let chat = responses::request::to_chat(raw, &mut dropped)?.to_string();
            anthropic::request::chat_to_messages(chat.as_bytes(), &mut dropped)?
        }
        (c, w) => {
            return Err(TranslateError::new(format!(
                "no translation from {} to {}",
                c.path(),
                w.path()
            )));
        }
    };
    if wire == E::ChatCompletions
        && let Some(b) = backend
        && let Some(obj) = v.as_object_mut()
        && !crate::pipeline::reasoning::restyle(b, obj)
    {
        dropped.push(
            match client {
                E::Messages => "output_config.effort",
                E::Responses => "reasoning.effort",
                _ => "reasoning_effort",
            }
            .into(),
        );
    }
    Ok(Translated {
        body: Bytes::from(v.to_string()),
        dropped,
    })
}

/// Whether answers pass through chat completions on the way (where the
/// response parsers apply).
pub fn via_chat(client: Endpoint, wire: Endpoint) -> bool {
    client == Endpoint::ChatCompletions || client != wire
}

/// A whole successful answer from `wire` as a chat completion, when it is
/// not one already (and the client does not speak `wire` itself).
pub fn to_chat(
    client: Endpoint,
    wire: Endpoint,
    body: &[u8],
) -> Option<Result<Bytes, TranslateError>> {
    if client == wire || wire != Endpoint::Messages {
        return None;
    }
    Some(anthropic::response::message_to_chat(body).map(|v| Bytes::from(v.to_string())))
}

/// A whole chat completion as the client's dialect, when that is not chat;
/// `model` (the requested one) names a Responses answer when the
/// completion does not.
pub fn from_chat(
    client: Endpoint,
    wire: Endpoint,
    body: &[u8],
    model: &str,
) -> Option<Result<Bytes, TranslateError>> {
    if client == wire || !via_chat(client, wire) {
        return None;
    }
    match client {
        Endpoint::Messages => {
            Some(anthropic::response::chat_to_message(body).map(|v| Bytes::from(v.to_string())))
        }
        Endpoint::Responses => {
            Some(responses::response::from_chat(body, model).map(|v| Bytes::from(v.to_string())))
        }
        _ => None,
    }
}

/// An error body from `wire` in the client's dialect.
pub fn error(client: Endpoint, wire: Endpoint, status: u16, body: &Bytes) -> Bytes {
    if client == wire {
        return body.clone();
    }
    let v = match client {
        Endpoint::Messages | Endpoint::CountTokens => {
            Some(anthropic::response::error_to_anthropic(status, body))
        }
        _ => anthropic::response::error_to_openai(body),
    };
    v.map_or_else(|| body.clone(), |v| Bytes::from(v.to_string()))
}

/// The stream translator from `wire` to chat chunks, when needed.
/// `client_body` is the client's request (for `stream_options`).
pub fn stream_to_chat(
    client: Endpoint,
    wire: Endpoint,
    client_body: &[u8],
) -> Option<Box<dyn Convert>> {
    if client == wire || wire != Endpoint::Messages {
        return None;
    }
    // A Responses client gets its usage in `response.completed`.
    let include_usage = client == Endpoint::Responses
        || serde_json::from_slice::<Value>(client_body)
            .ok()
            .and_then(|v| {
                v.pointer("/stream_options/include_usage")
                    .and_then(Value::as_bool)
            })
            == Some(true);
    Some(Box::new(anthropic::stream::MessagesToChat::new(
        include_usage,
    )))
}

/// The stream translator from chat chunks to the client's dialect;
/// `model` (the requested one) names the response when the chunks do not.
pub fn stream_from_chat(client: Endpoint, wire: Endpoint, model: &str) -> Option<Box<dyn Convert>> {
    if client == wire || !via_chat(client, wire) {
        return None;
    }
    match client {
        Endpoint::Messages => Some(Box::new(anthropic::stream::ChatToMessages::new())),
        Endpoint::Responses => Some(Box::new(
            responses::stream::ChatToResponses::new().with_model(model),
        )),
        _ => None,
    }
}

/// A chat-completions stream frame, read once for a translator out of chat.
pub(crate) enum ChatFrame {
    /// `data: [DONE]`.
    Done,
    /// A chunk.
    Chunk(Value),
    /// An error chunk (`{"error": ...}`): its message, and the error object.
    Error(String, Value),
    /// No data, or data that is not JSON: nothing to translate.
    Skip,
}

/// Reads one chat stream frame (the start of every chat → X translator).
pub(crate) fn chat_frame(frame: &[u8]) -> ChatFrame {
    let ev = crate::sse::parse(frame);
    if ev.is_done() {
        return ChatFrame::Done;
    }
    let Some(Ok(chunk)) = ev.data.as_deref().map(serde_json::from_str::<Value>) else {
        return ChatFrame::Skip;
    };
    match chunk.get("error").filter(|e| !e.is_null()) {
        Some(e) => {
            let message = e["message"]
                .as_str()
                .or(e.as_str())
                .unwrap_or("upstream error");
            ChatFrame::Error(message.to_string(), e.clone())
        }
        None => ChatFrame::Chunk(chunk),
    }
}

/// A chat → X stream translator, as [`next_chunk`] drives it.
pub(crate) trait FromChat {
    /// Its terminal event, or an `error`, went out: nothing may follow.
    fn finished(&self) -> bool;
    /// `[DONE]`: what ends the stream in its dialect (sets `finished`).
    fn finish(&mut self, out: &mut Vec<Bytes>);
    /// An upstream error chunk: its `error` event (sets `finished`).
    fn error(&mut self, message: String, error: Value, out: &mut Vec<Bytes>);
}

/// The start of every chat → X translator's `frame`: the frame's chunk to
/// translate, or `None` when there is nothing more to do with it (the
/// translator has ended, the frame ended it, or it carried no chunk).
pub(crate) fn next_chunk<T: FromChat>(
    t: &mut T,
    frame: &[u8],
    out: &mut Vec<Bytes>,
) -> Option<Value> {
    if t.finished() {
        return None;
    }
    match chat_frame(frame) {
        ChatFrame::Done => {
            t.finish(out);
            None
        }
        ChatFrame::Skip => None,
        ChatFrame::Error(message, e) => {
            t.error(message, e, out);
            None
        }
        ChatFrame::Chunk(chunk) => Some(chunk),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Runs `input` through a fresh converter, the bytes cut in two at
    /// `split` (framed by the shared SSE decoder), and returns the output.
    pub fn run_split<C: Convert, F: Fn() -> C>(
        make: F,
        input: &[u8],
        split: Option<usize>,
    ) -> Vec<Bytes> {
        let mut c = make();
        let mut d = crate::sse::Decoder::new();
        let mut out = Vec::new();
        let parts: Vec<&[u8]> = match split {
            Some(at) => vec![&input[..at], &input[at..]],
            None => vec![input],
        };
        for p in parts {
            d.push(p);
            while let Some(f) = d.next_frame() {
                c.frame(&f, &mut out);
            }
        }
        c.end(&mut out);
        // One frame per output item, whatever the grouping.
        out
    }

    fn data(frame: &Bytes) -> Option<Value> {
        let ev = crate::sse::parse(frame);
        ev.data.and_then(|d| serde_json::from_str(&d).ok())
    }

    /// Chat chunks folded into one message (plus finish_reason, usage and
    /// the last signature seen).
    pub fn assemble_chat(frames: &[Bytes]) -> Value {
        let mut content = String::new();
        let mut reasoning = String::new();
        let mut signature = Value::Null;
        let mut calls: Vec<Value> = Vec::new();
        let mut finish = Value::Null;
        let mut usage = Value::Null;
        for f in frames {
            let Some(c) = data(f) else { continue };
            if c["usage"].is_object() {
                usage = c["usage"].clone();
            }
            for ch in c["choices"].as_array().into_iter().flatten() {
                let d = &ch["delta"];
                content.push_str(d["content"].as_str().unwrap_or(""));
                reasoning.push_str(d["reasoning_content"].as_str().unwrap_or(""));
                for b in d["thinking_blocks"].as_array().into_iter().flatten() {
                    if b["signature"].is_string() {
                        signature = b["signature"].clone();
                    }
                }
                for tc in d["tool_calls"].as_array().into_iter().flatten() {
                    let i = tc["index"].as_u64().unwrap_or(0) as usize;
                    if calls.len() <= i {
                        calls.resize(i + 1, json!({"function": {"arguments": ""}}));
                    }
                    if !tc["id"].is_null() {
                        calls[i]["id"] = tc["id"].clone();
                        calls[i]["function"]["name"] = tc["function"]["name"].clone();
                    }
                    let a = calls[i]["function"]["arguments"]
                        .as_str()
                        .unwrap_or("")
                        .to_string()
                        + tc["function"]["arguments"].as_str().unwrap_or("");
                    calls[i]["function"]["arguments"] = json!(a);
                }
                if !ch["finish_reason"].is_null() {
                    finish = ch["finish_reason"].clone();
                }
            }
        }
        json!({"content": content, "reasoning_content": reasoning, "signature": signature,
               "tool_calls": calls, "finish_reason": finish, "usage": usage})
    }

    /// Anthropic events folded into one message, with the event names.
    pub fn assemble_messages(frames: &[Bytes]) -> (Value, Vec<String>) {
        let mut names = Vec::new();
        let mut msg = json!({});
        let mut partial: Vec<String> = Vec::new();
        for f in frames {
            let ev = crate::sse::parse(f);
            let name = ev.event.unwrap_or("").to_string();
            let Some(v) = data(f) else { continue };
            assert_eq!(v["type"], name.as_str(), "event name matches its type");
            names.push(name.clone());
            match name.as_str() {
                "message_start" => msg = v["message"].clone(),
                "content_block_start" => {
                    msg["content"]
                        .as_array_mut()
                        .unwrap()
                        .push(v["content_block"].clone());
                    partial.push(String::new());
                }
                "content_block_delta" => {
                    let i = v["index"].as_u64().unwrap() as usize;
                    let b = &mut msg["content"][i];
                    let d = &v["delta"];
                    match d["type"].as_str().unwrap() {
                        "text_delta" => {
                            b["text"] = json!(
                                b["text"].as_str().unwrap().to_string()
                                    + d["text"].as_str().unwrap()
                            )
                        }
                        "thinking_delta" => {
                            b["thinking"] = json!(
                                b["thinking"].as_str().unwrap().to_string()
                                    + d["thinking"].as_str().unwrap()
                            )
                        }
                        "signature_delta" => b["signature"] = d["signature"].clone(),
                        "input_json_delta" => {
                            partial[i].push_str(d["partial_json"].as_str().unwrap())
                        }
                        other => panic!("unknown delta {other}"),
                    }
                }
                "content_block_stop" => {
                    let i = v["index"].as_u64().unwrap() as usize;
                    if msg["content"][i]["type"] == "tool_use" && !partial[i].is_empty() {
                        msg["content"][i]["input"] = serde_json::from_str(&partial[i]).unwrap();
                    }
                }
                "message_delta" => {
                    msg["stop_reason"] = v["delta"]["stop_reason"].clone();
                    msg["usage"] = v["usage"].clone();
                }
                _ => {}
            }
        }
        (msg, names)
    }

    #[test]
    fn wire_per_backend() {
        let b = |t: &str| {
            let yaml = format!(
                "model_list:\n  - {{model_name: m, model_params: {{api_base: 'http://x', api_type: {t}}}}}\n"
            );
            let c = crate::Config::from_yaml(
                &yaml,
                None,
                &crate::config::Env::isolated::<[(&str, &str); 0], _, _>([]),
            )
            .unwrap();
            (*c.models[0].backends[0]).clone()
        };
        let (o, a) = (b("openai"), b("anthropic"));
        assert_eq!(wire(Endpoint::ChatCompletions, &a), Ok(Endpoint::Messages));
        assert_eq!(wire(Endpoint::Messages, &a), Ok(Endpoint::Messages));
        assert_eq!(wire(Endpoint::Messages, &o), Ok(Endpoint::ChatCompletions));
        assert!(wire(Endpoint::Embeddings, &a).is_err());
        assert_eq!(wire(Endpoint::Responses, &a), Ok(Endpoint::Messages));
        assert_eq!(wire(Endpoint::Responses, &o), Ok(Endpoint::Responses));
        let mut chat_only = o.clone();
        chat_only.supports_responses = false;
        assert_eq!(
            wire(Endpoint::Responses, &chat_only),
            Ok(Endpoint::ChatCompletions)
        );
        assert!(wire(Endpoint::CountTokens, &o).is_err());
    }
}
