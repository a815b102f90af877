//! The client's event stream: the peeked frames, then the rest as they
//! arrive, each upstream frame recorded as it came, counted (usage), kept
//! for the cache, then passed through the response chain
//! ([`super::chain::Frames`]). Frames that arrived together leave together
//! (one write per upstream batch).

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::Body;
use bytes::Bytes;
use serde_json::json;

use super::chain::Frames;
use super::usage::Tokens;
use crate::cache;
use crate::endpoint::Endpoint;
use crate::protocol::StreamFailure;
use crate::protocol::responses::stream::NativeResponses;
use crate::reqlog::{Outcome, RecordGuard};
use crate::router::stream::SseSource;
use crate::sse;
use crate::upstream::UpstreamError;

/// What the relay carries besides the upstream's frames.
pub struct Relay {
    pub endpoint: Endpoint,
    /// The request's record, finished when the stream ends.
    pub guard: RecordGuard,
    /// The response chain.
    pub chain: Frames,
    /// The usage the frames report, observed when the relay ends.
    pub tokens: Tokens,
    /// A copy for the response cache, on a miss.
    pub tee: Option<cache::Tee>,
    /// Masks secrets in the upstream's error events before the client
    /// gets them (an error may quote the backend's key).
    pub scrubber: std::sync::Arc<crate::reqlog::redact::Scrubber>,
}

/// An upstream failure after the first byte ends the stream with an error
/// event (never a fake `[DONE]` or `message_stop`); a Responses client gets
/// `error` and `response.failed`, numbered after the events before them,
/// whether the stream was translated or relayed from a native Responses
/// backend. Dropping the body
/// (client gone) drops the upstream response, which cancels the upstream
/// request, and the record guard notes the disconnect.
pub(super) fn relay(first: Vec<Bytes>, rest: SseSource, relay: Relay) -> Body {
    struct State {
        r: Relay,
        queue: VecDeque<Bytes>,
        source: Option<SseSource>,
        ends: Vec<usize>,
        /// The batch's frames, then the chain's output (reused).
        frames: Vec<Bytes>,
        /// The message of the first error event the upstream sent after
        /// the first event (relayed as it is; the record notes it).
        failed: Option<String>,
        /// A native Responses stream relayed as it is, followed so that a
        /// proxy-made error ends it well-formed.
        native: Option<NativeResponses>,
    }
    impl State {
        /// Upstream frames through the chain, recording the raw ones.
        fn parse(&mut self, batch: &Bytes) -> Bytes {
            let mut start = 0;
            // An error event was masked: the batch is not sent as it came.
            let mut masked = false;
            self.frames.clear();
            let r = &mut self.r;
            for &end in &self.ends {
                let mut frame = batch.slice(start..end);
                start = end;
                if let Some(rec) = r.guard.record() {
                    rec.push_frame(&frame);
                }
                if let Some(message) = crate::router::stream::error_event(&frame) {
                    // Upstream text on its way to the client: an error event
                    // may quote the backend's key (the record is masked by
                    // the writer).
                    let clean = r.scrubber.scrub_upstream_bytes(frame.clone());
                    if clean != frame {
                        frame = clean;
                        masked = true;
                    }
                    if self.failed.is_none() {
                        self.failed = Some(r.scrubber.scrub_upstream(message));
                    }
                }
                if let Some(n) = &mut self.native {
                    n.on_frame(&frame);
                }
                r.tokens.usage.on_frame(&frame);
                if let Some(t) = &mut r.tee {
                    t.upstream_frame(&frame);
                }
                self.frames.push(frame);
            }
            let through = r.chain.passes_through();
            r.chain.run(&mut self.frames, None);
            let out = if through && !masked {
                // Passed through as they came: one write, no copy.
                batch.clone()
            } else {
                join(&self.frames)
            };
            if let Some(t) = &mut r.tee {
                t.sent(&out);
            }
            out
        }

        /// The stream ended: what the stages still hold, and the parsers'
        /// notes for the record. `clean`: the upstream finished (a broken
        /// stream is not closed in the client's dialect).
        fn end(&mut self, clean: bool) -> Option<Bytes> {
            self.frames.clear();
            let r = &mut self.r;
            r.chain.run(&mut self.frames, Some((clean, &mut r.guard)));
            let tail = (!self.frames.is_empty()).then(|| join(&self.frames));
            if let (Some(t), Some(tail)) = (&mut r.tee, &tail) {
                t.sent(tail);
            }
            tail
        }

        /// Remembers the turn once `[DONE]` went by, before the client
        /// gets it (its next request may resend this turn at once).
        async fn remember_if_done(&mut self) {
            let chain = &mut self.r.chain;
            if chain.recorder.as_ref().is_some_and(|r| r.done())
                && let Some(r) = chain.recorder.take()
            {
                r.commit().await;
            }
        }
    }
    let endpoint = relay.endpoint;
    let native =
        (endpoint == Endpoint::Responses && !relay.chain.translates()).then(NativeResponses::new);
    let state = State {
        native,
        r: relay,
        queue: VecDeque::from(first),
        source: Some(rest),
        ends: Vec::new(),
        frames: Vec::new(),
        failed: None,
    };
    // Boxed: the state moves with every item, a pointer rather than the
    // whole relay.
    let frames = futures::stream::unfold(Box::new(state), move |mut st| async move {
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
                    if let Some(r) = st.r.chain.recorder.take() {
                        r.commit().await;
                    }
                    if let Some(t) = st.r.tee.take() {
                        t.finish();
                    }
                    // The usage the frames reported, read as they passed:
                    // the writer and the telemetry need not read them again.
                    let seen = st.r.tokens.usage.get();
                    if let Some(r) = st.r.guard.record() {
                        r.usage = seen;
                    }
                    match st.failed.take() {
                        // The stream ended normally, but with the
                        // upstream's error event in it.
                        Some(message) => {
                            if let Some(r) = st.r.guard.record() {
                                let what = format!("upstream error event mid-stream: {message}");
                                r.error = Some(match r.error.take() {
                                    Some(e) => format!("{what}; {e}"),
                                    None => what,
                                });
                            }
                            st.r.guard.finish(Outcome::UpstreamError);
                        }
                        None => st.r.guard.finish(Outcome::Ok),
                    }
                    return tail.map(|t| (Ok(t), st));
                }
                Err(e) => {
                    let backend = st.r.tokens.backend.clone();
                    let id =
                        st.r.guard
                            .record()
                            .map(|r| r.client_request_id.clone().unwrap_or_else(|| r.id.clone()));
                    tracing::warn!(
                        request_id = id,
                        model = %backend.model_name,
                        backend = %backend.name,
                        error = %e,
                        "upstream stream failed after the first byte"
                    );
                    let failure = stream_failure(&e, src.event_too_large());
                    st.source = None;
                    // A broken stream is never cached, nor remembered.
                    st.r.tee = None;
                    st.r.chain.recorder = None;
                    // Whatever the stages held goes out before the error.
                    let mut out: Vec<Bytes> = st.end(false).into_iter().collect();
                    let held = out.len();
                    // The client's dialect's own ending (numbered after
                    // the events before it), else the plain error event.
                    let own = match (st.r.chain.has_from_chat(), &mut st.native) {
                        (true, _) => st.r.chain.fail(&failure, &mut out),
                        (false, Some(native)) => {
                            native.fail(&failure, &mut out);
                            true
                        }
                        (false, None) => false,
                    };
                    if !own {
                        out.push(error_frame(&failure, endpoint));
                    }
                    if let Some(r) = st.r.guard.record() {
                        for f in &out[held..] {
                            r.push_frame(f);
                        }
                        r.error = Some(format!("upstream stream failed: {e}"));
                    }
                    st.r.guard.finish(Outcome::UpstreamError);
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
