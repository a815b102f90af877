//! The client's event stream: the peeked frames, then the rest as they
//! arrive, each upstream frame recorded as it came and passed through up to
//! three stages: the translator to chat chunks (an Anthropic backend), the
//! response parsers, and the translator to the client's dialect (an
//! Anthropic or Responses client). Frames that arrived together leave
//! together.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::Body;
use bytes::Bytes;
use serde_json::json;

use super::openai::{Tokens, note_parsed};
use crate::cache;
use crate::endpoint::Endpoint;
use crate::pipeline::response::Session;
use crate::protocol::responses::stream::NativeResponses;
use crate::protocol::{Convert, StreamFailure};
use crate::reqlog::{Outcome, RecordGuard};
use crate::router::stream::SseSource;
use crate::sse;
use crate::upstream::UpstreamError;

/// The stream translators around the parsers.
pub struct Converters {
    /// Backend dialect → chat chunks.
    pub to_chat: Option<Box<dyn Convert>>,
    /// Chat chunks → client dialect.
    pub from_chat: Option<Box<dyn Convert>>,
}

impl Converters {
    fn none(&self) -> bool {
        self.to_chat.is_none() && self.from_chat.is_none()
    }
}

/// An upstream failure after the first byte ends the stream with an error
/// event (never a fake `[DONE]` or `message_stop`); a Responses client gets
/// `error` and `response.failed`, numbered after the events before them,
/// whether the stream was translated or relayed from a native Responses
/// backend. Dropping the body
/// (client gone) drops the upstream response, which cancels the upstream
/// request, and the record guard notes the disconnect.
#[allow(clippy::too_many_arguments)]
pub(super) fn relay(
    first: Vec<Bytes>,
    rest: SseSource,
    endpoint: Endpoint,
    guard: RecordGuard,
    session: Option<Session>,
    convert: Converters,
    tokens: Tokens,
    tee: Option<cache::Tee>,
    remember: Option<crate::thinking::StreamRecorder>,
    scrubber: std::sync::Arc<crate::reqlog::redact::Scrubber>,
) -> Body {
    struct Relay {
        /// The usage the frames report, observed when the relay ends.
        tokens: Tokens,
        queue: VecDeque<Bytes>,
        source: Option<SseSource>,
        guard: RecordGuard,
        ends: Vec<usize>,
        /// The response parsers, when they apply.
        session: Option<Session>,
        convert: Converters,
        /// Scratch space between the stages.
        a: Vec<Bytes>,
        b: Vec<Bytes>,
        c: Vec<Bytes>,
        /// A copy for the response cache, on a miss.
        tee: Option<cache::Tee>,
        /// Interleaved thinking: the turn's reasoning (chat chunks after the
        /// parsers), remembered at the end.
        remember: Option<crate::thinking::StreamRecorder>,
        /// The message of the first error event the upstream sent after
        /// the first event (relayed as it is; the record notes it).
        failed: Option<String>,
        /// Masks secrets in the upstream's error events before the client
        /// gets them (an error may quote the backend's key).
        scrubber: std::sync::Arc<crate::reqlog::redact::Scrubber>,
        /// A native Responses stream relayed as it is, followed so that a
        /// proxy-made error ends it well-formed.
        native: Option<NativeResponses>,
    }
    impl Relay {
        /// Frames (already through the first stage) through the parsers and
        /// the last translator, into `c`.
        fn stages(&mut self) {
            self.b.clear();
            match &mut self.session {
                Some(s) => {
                    for f in &self.a {
                        s.on_frame(f, &mut self.b);
                    }
                }
                None => std::mem::swap(&mut self.a, &mut self.b),
            }
            if let Some(r) = &mut self.remember {
                for f in &self.b {
                    r.on_frame(f);
                }
            }
            self.c.clear();
            match &mut self.convert.from_chat {
                Some(conv) => {
                    for f in &self.b {
                        conv.frame(f, &mut self.c);
                    }
                }
                None => std::mem::swap(&mut self.b, &mut self.c),
            }
        }

        /// Upstream frames through the stages, recording the raw ones.
        fn parse(&mut self, batch: &Bytes) -> Bytes {
            let mut start = 0;
            // An error event was masked: the batch is not sent as it came.
            let mut masked = false;
            self.a.clear();
            for &end in &self.ends {
                let mut frame = batch.slice(start..end);
                start = end;
                if let Some(r) = self.guard.record() {
                    r.push_frame(&frame);
                }
                if let Some(message) = crate::router::stream::error_event(&frame) {
                    // Upstream text on its way to the client: an error event
                    // may quote the backend's key (the record is masked by
                    // the writer).
                    let clean = self.scrubber.scrub_upstream_bytes(frame.clone());
                    if clean != frame {
                        frame = clean;
                        masked = true;
                    }
                    if self.failed.is_none() {
                        self.failed = Some(self.scrubber.scrub_upstream(message));
                    }
                }
                if let Some(n) = &mut self.native {
                    n.on_frame(&frame);
                }
                self.tokens.usage.on_frame(&frame);
                if let Some(t) = &mut self.tee {
                    t.upstream_frame(&frame);
                }
                match &mut self.convert.to_chat {
                    Some(conv) => conv.frame(&frame, &mut self.a),
                    None => self.a.push(frame),
                }
            }
            let out = if self.session.is_none() && self.convert.none() {
                // Passed through as they came: the recorder reads them here.
                if let Some(r) = &mut self.remember {
                    for f in &self.a {
                        r.on_frame(f);
                    }
                }
                if masked { join(&self.a) } else { batch.clone() }
            } else {
                self.stages();
                join(&self.c)
            };
            if let Some(t) = &mut self.tee {
                t.sent(&out);
            }
            out
        }

        /// The stream ended: what the stages still hold, and the parsers'
        /// notes for the record. `clean`: the upstream finished (a broken
        /// stream is not closed in the client's dialect).
        fn end(&mut self, clean: bool) -> Option<Bytes> {
            self.a.clear();
            if let Some(conv) = &mut self.convert.to_chat {
                conv.end(&mut self.a);
            }
            self.stages();
            let mut out = std::mem::take(&mut self.c);
            if let Some(mut s) = self.session.take() {
                let mut held = Vec::new();
                s.end(&mut held);
                note_parsed(&mut self.guard, &s);
                if let Some(r) = &mut self.remember {
                    for f in &held {
                        r.on_frame(f);
                    }
                }
                match &mut self.convert.from_chat {
                    Some(conv) => {
                        for f in &held {
                            conv.frame(f, &mut out);
                        }
                    }
                    None => out.extend(held),
                }
            }
            if clean && let Some(conv) = &mut self.convert.from_chat {
                conv.end(&mut out);
            }
            let tail = (!out.is_empty()).then(|| join(&out));
            if let (Some(t), Some(tail)) = (&mut self.tee, &tail) {
                t.sent(tail);
            }
            tail
        }

        /// Remembers the turn once `[DONE]` went by, before the client
        /// gets it (its next request may resend this turn at once).
        async fn remember_if_done(&mut self) {
            if self.remember.as_ref().is_some_and(|r| r.done())
                && let Some(r) = self.remember.take()
            {
                r.commit().await;
            }
        }
    }
    let native = (endpoint == Endpoint::Responses && convert.none()).then(NativeResponses::new);
    let state = Relay {
        native,
        tokens,
        queue: VecDeque::from(first),
        source: Some(rest),
        guard,
        ends: Vec::new(),
        session,
        convert,
        a: Vec::new(),
        b: Vec::new(),
        c: Vec::new(),
        tee,
        remember,
        failed: None,
        scrubber,
    };
    let frames = futures::stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(frame) = st.queue.pop_front() {
                st.ends.clear();
                st.ends.push(frame.len());
                let out = st.parse(&frame);
                st.remember_if_done().await;
                if out.is_empty() {
                    continue;
                }
                return Some((Ok::<_, Infallible>(out), st));
            }
            let src = st.source.as_mut()?;
            match src.next_batch(&mut st.ends).await {
                Ok(Some(batch)) => {
                    let out = st.parse(&batch);
                    st.remember_if_done().await;
                    if out.is_empty() {
                        continue;
                    }
                    return Some((Ok(out), st));
                }
                Ok(None) => {
                    if st.failed.is_some() {
                        // An error event in the middle: the backend failed.
                        src.failed(crate::router::state::Outcome::StreamBroken);
                    }
                    st.source = None;
                    let tail = st.end(true);
                    // Ended without `[DONE]`, but normally.
                    if let Some(r) = st.remember.take() {
                        r.commit().await;
                    }
                    if let Some(t) = st.tee.take() {
                        t.finish();
                    }
                    match st.failed.take() {
                        // The stream ended normally, but with the
                        // upstream's error event in it.
                        Some(message) => {
                            if let Some(r) = st.guard.record() {
                                let what = format!("upstream error event mid-stream: {message}");
                                r.error = Some(match r.error.take() {
                                    Some(e) => format!("{what}; {e}"),
                                    None => what,
                                });
                            }
                            st.guard.finish(Outcome::UpstreamError);
                        }
                        None => st.guard.finish(Outcome::Ok),
                    }
                    return tail.map(|t| (Ok(t), st));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "upstream stream failed after the first byte");
                    let failure = stream_failure(&e, src.event_too_large());
                    st.source = None;
                    // A broken stream is never cached, nor remembered.
                    st.tee = None;
                    st.remember = None;
                    // Whatever the stages held goes out before the error.
                    let mut out: Vec<Bytes> = st.end(false).into_iter().collect();
                    let held = out.len();
                    // The client's dialect's own ending (numbered after
                    // the events before it), else the plain error event.
                    let own = match (&mut st.convert.from_chat, &mut st.native) {
                        (Some(conv), _) => conv.fail(&failure, &mut out),
                        (None, Some(native)) => {
                            native.fail(&failure, &mut out);
                            true
                        }
                        (None, None) => false,
                    };
                    if !own {
                        out.push(error_frame(&failure, endpoint));
                    }
                    if let Some(r) = st.guard.record() {
                        for f in &out[held..] {
                            r.push_frame(f);
                        }
                        r.error = Some(format!("upstream stream failed: {e}"));
                    }
                    st.guard.finish(Outcome::UpstreamError);
                    let out = join(&out);
                    if out.is_empty() {
                        return None;
                    }
                    return Some((Ok(out), st));
                }
            }
        }
    });
    Body::from_stream(frames)
}

/// Frames as one write.
pub fn join(frames: &[Bytes]) -> Bytes {
    match frames {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => {
            let mut out = bytes::BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
            for f in many {
                out.extend_from_slice(f);
            }
            out.freeze()
        }
    }
}

/// Why the proxy ends a stream the upstream broke: its code
/// (`upstream_event_too_large`, `upstream_timeout`, else
/// `stream_interrupted`) and message.
pub fn stream_failure(e: &UpstreamError, too_large: bool) -> StreamFailure {
    let code = match e {
        _ if too_large => "upstream_event_too_large",
        UpstreamError::BodyTimeout(_) | UpstreamError::Timeout(_) => "upstream_timeout",
        _ => "stream_interrupted",
    };
    StreamFailure::proxy(code, format!("upstream stream failed: {e}"))
}

/// The plain error event that ends a broken stream, in the client's
/// dialect (a Responses client gets its translator's or the native
/// stream's numbered events instead; this one is the fallback).
fn error_frame(f: &StreamFailure, endpoint: Endpoint) -> Bytes {
    let error = json!({
        "message": f.message,
        "type": f.kind,
        "code": f.code,
    });
    match endpoint {
        Endpoint::Responses => {
            let mut out = Vec::new();
            crate::protocol::responses::stream::failure_events(
                &mut 0,
                serde_json::Value::Null,
                f,
                &mut out,
            );
            join(&out)
        }
        Endpoint::Messages => sse::named_frame(
            "error",
            json!({"type": "error", "error": {"type": "api_error", "message": f.message}})
                .to_string()
                .as_bytes(),
        ),
        _ => sse::data_frame(json!({ "error": error }).to_string().as_bytes()),
    }
}
