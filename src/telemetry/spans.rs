//! A finished record as spans: the request (SERVER) and one per attempt
//! (CLIENT), named and attributed after the OpenTelemetry GenAI semantic
//! conventions, plus yallmp's own `yallmp.*` attributes.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use serde_json::Value as Json;

use super::MAX_CONTENT_BYTES;
use crate::config::ApiType;
use crate::reqlog::redact::{self, Scrubber};
use crate::reqlog::{Attempt, Outcome, Record, Trace, Usage};

/// `gen_ai.provider.name` for a backend's api_type.
pub(super) fn provider(api: ApiType) -> &'static str {
    match api {
        ApiType::Openai => "openai",
        ApiType::Anthropic => "anthropic",
        ApiType::Azure => "azure.ai.openai",
        ApiType::Gemini => "gcp.gemini",
        ApiType::Vertex => "gcp.vertex_ai",
        ApiType::Stub => "yallmp.stub",
        ApiType::Bedrock => "aws.bedrock",
    }
}

/// `gen_ai.operation.name` for the client's path.
pub(super) fn operation(path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or(path);
    if path.ends_with("/chat/completions") {
        "chat"
    } else if path.ends_with("/embeddings") {
        "embeddings"
    } else if path.ends_with("/completions") {
        "text_completion"
    } else if path.ends_with("/count_tokens") {
        "count_tokens"
    } else {
        // /v1/messages, /v1/responses: a conversation turn.
        "chat"
    }
}

/// What the answer says of itself: its id, the model, the finish reasons.
#[derive(Default)]
struct Said {
    id: Option<String>,
    model: Option<String>,
    reasons: Vec<String>,
}

impl Said {
    fn read(&mut self, v: &Json) {
        if self.id.is_none() {
            self.id = [&v["id"], &v["message"]["id"], &v["response"]["id"]]
                .into_iter()
                .find_map(|m| m.as_str())
                .map(str::to_string);
        }
        if self.model.is_none() {
            self.model = [&v["model"], &v["message"]["model"], &v["response"]["model"]]
                .into_iter()
                .find_map(|m| m.as_str())
                .map(str::to_string);
        }
        let mut reason = |r: &Json| {
            if let Some(r) = r.as_str()
                && !self.reasons.iter().any(|x| x == r)
            {
                self.reasons.push(r.to_string());
            }
        };
        if let Some(choices) = v["choices"].as_array() {
            for c in choices {
                reason(&c["finish_reason"]);
            }
        }
        reason(&v["stop_reason"]);
        reason(&v["delta"]["stop_reason"]);
    }
}

/// The data of a stream frame, parsed (`None`: not JSON, or `[DONE]`).
fn frame_json(frame: &[u8]) -> Option<Json> {
    let text = std::str::from_utf8(frame).ok()?;
    let data: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&data).ok()
}

fn kv(key: &'static str, value: impl Into<Value>) -> KeyValue {
    KeyValue::new(key, value)
}

/// `text` scrubbed as the request log is (secret fields, known secrets,
/// credential-like tokens) and cut to [`MAX_CONTENT_BYTES`].
fn content(bytes: &[u8], scrubber: &Scrubber) -> String {
    let redacted = redact::body(bytes);
    let text = String::from_utf8_lossy(&redacted).into_owned();
    let mut text = scrubber.scrub_upstream(text);
    if text.len() > MAX_CONTENT_BYTES {
        let mut end = MAX_CONTENT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("…[truncated]");
    }
    text
}

fn host_port(url: &str) -> Option<(String, i64)> {
    let u = reqwest::Url::parse(url).ok()?;
    Some((
        u.host_str()?.to_string(),
        i64::from(u.port_or_known_default()?),
    ))
}

/// A span of `trace` with no parent, attributes or status yet.
fn span(
    trace: &Trace,
    id: SpanId,
    kind: SpanKind,
    name: String,
    (start, end): (SystemTime, SystemTime),
    scope: &InstrumentationScope,
) -> SpanData {
    SpanData {
        span_context: SpanContext::new(
            trace.context.trace_id(),
            id,
            trace.context.trace_flags(),
            false,
            trace.context.trace_state().clone(),
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: kind,
        name: Cow::Owned(name),
        start_time: start,
        end_time: end.max(start),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope.clone(),
    }
}

/// The spans of a finished, sampled record. `content`: the scrubber, when
/// prompts and completions go in as events.
pub(super) fn spans(
    r: &Record,
    trace: &Trace,
    content_scrubber: Option<&Scrubber>,
    scrubber: &Scrubber,
    scope: &InstrumentationScope,
) -> Vec<SpanData> {
    let op = operation(&r.path);
    let start = SystemTime::from(r.started_at);
    let end = start + r.total;
    // What the answer said (a whole body, or the stream's frames).
    let mut said = Said::default();
    let mut frames: Vec<Json> = Vec::new();
    if let Some(body) = &r.response_body {
        if let Ok(v) = serde_json::from_slice::<Json>(body) {
            said.read(&v);
        }
    } else {
        for f in &r.frames {
            if let Some(v) = frame_json(&f.bytes) {
                said.read(&v);
                if content_scrubber.is_some() {
                    frames.push(v);
                }
            }
        }
    }
    let usage = Usage::of(r);
    let cost = match (r.price, &usage) {
        (Some(p), Some(u)) => Some(p.cost(u)),
        _ => None,
    };
    let answered = r
        .backend
        .as_deref()
        .and_then(|b| r.attempts.iter().rposition(|a| a.backend == b));
    let success = r.status.is_some_and(|s| s < 400);
    // The GenAI attributes of the answer, on the request span and on the
    // attempt that gave it.
    let mut answer_attrs = Vec::new();
    if let Some(id) = &said.id {
        answer_attrs.push(kv("gen_ai.response.id", id.clone()));
    }
    if let Some(m) = &said.model {
        answer_attrs.push(kv("gen_ai.response.model", m.clone()));
    }
    if let Some(u) = &usage {
        answer_attrs.push(kv("gen_ai.usage.input_tokens", u.input() as i64));
        answer_attrs.push(kv("gen_ai.usage.output_tokens", u.output() as i64));
    }
    if !said.reasons.is_empty() {
        let reasons: Vec<StringValue> = said.reasons.iter().cloned().map(Into::into).collect();
        answer_attrs.push(kv(
            "gen_ai.response.finish_reasons",
            Value::Array(Array::String(reasons)),
        ));
    }

    let mut out = Vec::with_capacity(1 + r.attempts.len());
    let mut last_model: Option<u64> = None;
    let mut fallback = 0i64;
    for (index, a) in r.attempts.iter().enumerate() {
        let Some(s) = a.span else { continue };
        // The backend's configured model: each change of model is the next
        // fallback (attempts at one model share its index).
        match last_model {
            Some(m) if m != s.model => fallback += 1,
            _ => {}
        }
        last_model = Some(s.model);
        out.push(attempt_span(
            r,
            trace,
            a,
            s,
            (index, fallback),
            op,
            (Some(index) == answered && success).then_some(&answer_attrs[..]),
            end,
            scope,
        ));
    }

    let mut attrs = vec![
        kv("gen_ai.operation.name", op),
        kv("http.request.method", r.method.clone()),
        kv(
            "url.path",
            r.path.split('?').next().unwrap_or(&r.path).to_string(),
        ),
        kv("yallmp.request_id", r.id.clone()),
        kv("yallmp.stream", r.stream),
        kv("yallmp.outcome", r.outcome.as_str()),
        kv("yallmp.attempts", r.attempts.len() as i64),
    ];
    if let Some(m) = &r.model {
        attrs.push(kv("gen_ai.request.model", m.clone()));
    }
    if let Some(i) = answered {
        let a = &r.attempts[i];
        attrs.push(kv("yallmp.backend", a.backend.clone()));
        if let Some(s) = a.span {
            attrs.push(kv("gen_ai.provider.name", s.provider));
        }
        if let Some((host, port)) = host_port(&a.url) {
            attrs.push(kv("server.address", host));
            attrs.push(kv("server.port", port));
        }
    }
    attrs.extend(answer_attrs.iter().cloned());
    if let Some(s) = r.status {
        attrs.push(kv("http.response.status_code", i64::from(s)));
    }
    if let Some(c) = r.cache {
        attrs.push(kv("yallmp.cache", c));
    }
    if let Some(names) = &r.parsers {
        let names: Vec<StringValue> = names.iter().map(|n| StringValue::from(*n)).collect();
        attrs.push(kv("yallmp.parsers", Value::Array(Array::String(names))));
    }
    if let Some(c) = cost {
        attrs.push(kv("yallmp.cost_usd", c));
    }
    if let Some((_, name)) = &r.key {
        attrs.push(kv("yallmp.key.name", name.clone()));
    }
    if let Some(t) = &r.team {
        attrs.push(kv("yallmp.team.name", t.clone()));
    }
    if let Some(id) = &r.client_request_id {
        attrs.push(kv("yallmp.client_request_id", id.clone()));
    }
    if let Some(t) = r.ttfb {
        attrs.push(kv("yallmp.time_to_first_byte_ms", ms(t)));
    }
    let failed = matches!(
        r.outcome,
        Outcome::UpstreamError | Outcome::AllFailed | Outcome::Cancelled
    ) || r.status.is_some_and(|s| s >= 500);
    let status = if failed {
        attrs.push(kv("error.type", r.outcome.as_str()));
        Status::error(
            r.error
                .clone()
                .map(|e| scrubber.scrub_upstream(e))
                .unwrap_or_default(),
        )
    } else if r.outcome == Outcome::Ok {
        Status::Ok
    } else {
        Status::Unset
    };
    let mut events = Vec::new();
    if let Some(sc) = content_scrubber {
        if !r.request_body.is_empty() {
            events.push(opentelemetry::trace::Event::new(
                "gen_ai.content.prompt",
                start,
                vec![kv("gen_ai.prompt", content(&r.request_body, sc))],
                0,
            ));
        }
        let completion = match &r.response_body {
            Some(b) => Some(content(b, sc)),
            None if !r.frames.is_empty() => {
                let wrapped: Vec<Json> = r
                    .frames
                    .iter()
                    .map(|f| serde_json::json!({ "data": String::from_utf8_lossy(&f.bytes) }))
                    .collect();
                let whole = crate::reqlog::assemble::assemble(&wrapped).to_string();
                Some(content(whole.as_bytes(), sc))
            }
            None => None,
        };
        if let Some(c) = completion {
            events.push(opentelemetry::trace::Event::new(
                "gen_ai.content.completion",
                end,
                vec![kv("gen_ai.completion", c)],
                0,
            ));
        }
    }
    let name = match &r.model {
        Some(m) => format!("{op} {m}"),
        None => op.to_string(),
    };
    let mut request = span(
        trace,
        trace.context.span_id(),
        SpanKind::Server,
        name,
        (start, end),
        scope,
    );
    request.parent_span_id = trace.parent.unwrap_or(SpanId::INVALID);
    request.parent_span_is_remote = trace.parent.is_some();
    request.attributes = attrs;
    request.events.events = events;
    request.status = status;
    out.push(request);
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[allow(clippy::too_many_arguments)]
fn attempt_span(
    r: &Record,
    trace: &Trace,
    a: &Attempt,
    s: crate::reqlog::AttemptSpan,
    (index, fallback): (usize, i64),
    op: &'static str,
    answer: Option<&[KeyValue]>,
    request_end: SystemTime,
    scope: &InstrumentationScope,
) -> SpanData {
    let model = a.upstream_model.as_deref().or(r.model.as_deref());
    let mut attrs = vec![
        kv("gen_ai.operation.name", op),
        kv("gen_ai.provider.name", s.provider),
        kv("yallmp.backend", a.backend.clone()),
        kv("yallmp.attempt", i64::from(a.attempt)),
        kv("yallmp.attempt_index", index as i64),
        kv("yallmp.fallback_index", fallback),
    ];
    if let Some(m) = model {
        attrs.push(kv("gen_ai.request.model", m.to_string()));
    }
    if let Some((host, port)) = host_port(&a.url) {
        attrs.push(kv("server.address", host));
        attrs.push(kv("server.port", port));
    }
    if let Some(st) = a.status {
        attrs.push(kv("http.response.status_code", i64::from(st)));
    }
    // A streamed answer's attempt lasts until the stream ends; its
    // latency is the time to the first event.
    let mut end = s.start + a.latency;
    if let Some(answer) = answer {
        attrs.extend(answer.iter().cloned());
        if r.stream {
            attrs.push(kv("yallmp.time_to_first_byte_ms", ms(a.latency)));
            end = request_end;
        }
    }
    let status = match (&a.error, a.status) {
        (Some(e), _) => {
            attrs.push(kv(
                "error.type",
                match a.status {
                    Some(st) => st.to_string(),
                    None if e.starts_with("cancelled") => "cancelled".to_string(),
                    None => "network".to_string(),
                },
            ));
            // The router scrubbed attempt errors already.
            Status::error(e.clone())
        }
        (None, Some(st)) if st >= 400 => {
            attrs.push(kv("error.type", st.to_string()));
            Status::error(format!("HTTP {st}"))
        }
        _ => Status::Unset,
    };
    let name = match model {
        Some(m) => format!("{op} {m}"),
        None => op.to_string(),
    };
    let mut out = span(trace, s.id, SpanKind::Client, name, (s.start, end), scope);
    out.parent_span_id = trace.context.span_id();
    out.attributes = attrs;
    out.status = status;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations() {
        assert_eq!(operation("/v1/chat/completions"), "chat");
        assert_eq!(operation("/v1/embeddings"), "embeddings");
        assert_eq!(operation("/v1/completions?x=1"), "text_completion");
        assert_eq!(operation("/v1/messages"), "chat");
        assert_eq!(operation("/v1/messages/count_tokens"), "count_tokens");
    }

    #[test]
    fn what_an_answer_says() {
        let mut s = Said::default();
        s.read(&serde_json::json!({"model": "m1", "choices": [{"finish_reason": "stop"}, {"finish_reason": "length"}]}));
        s.read(&serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "stop"}}));
        assert_eq!(s.model.as_deref(), Some("m1"));
        assert_eq!(s.reasons, ["stop", "length"]);
        let v = frame_json(b"data: {\"model\":\"x\"}\n\n").unwrap();
        assert_eq!(v["model"], "x");
        assert!(frame_json(b"data: [DONE]\n\n").is_none());
    }

    #[test]
    fn content_is_scrubbed_and_bounded() {
        let sc = Scrubber::new(vec!["SECRETKEY-123456".into()]);
        let text = content(
            br#"{"messages":[{"role":"user","content":"my key SECRETKEY-123456"}],"api_key":"x"}"#,
            &sc,
        );
        assert!(!text.contains("SECRETKEY-123456"), "{text}");
        let long = "é".repeat(MAX_CONTENT_BYTES);
        let cut = content(long.as_bytes(), &sc);
        assert!(cut.len() <= MAX_CONTENT_BYTES + 20 && cut.ends_with("[truncated]"));
    }
}
