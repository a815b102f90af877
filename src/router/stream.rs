//! An upstream event stream: peeked before the proxy commits to a backend,
//! then relayed frame by frame with a bound on the gap between chunks, on
//! the size of one event, and on the wait for the first event.

use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};

use crate::config::streaming::StreamSettings;
use crate::sse::{self, Decoder};
use crate::upstream::{BodyStream, UpstreamError};

/// Frames without data (comments, keep-alives) kept before the first
/// event, in bytes; later ones are dropped (they only keep a connection
/// alive, and the client's is not open yet).
pub const MAX_PEEK_KEPT_BYTES: usize = 64 * 1024;

/// Frames from an upstream body.
pub struct SseSource {
    body: BodyStream,
    decoder: Decoder,
    gap: Duration,
    /// The longest wait for the first event with data.
    first_event: Duration,
    ended: bool,
    /// A body error seen while frames were still to be sent.
    deferred: Option<UpstreamError>,
    /// The backend's in-flight lease, released when the stream is dropped.
    lease: Option<super::state::Lease>,
}

/// What reading the start of a stream found.
pub enum Peek {
    /// Frames up to and including the first one with data, which is not an
    /// error.
    Events(Vec<Bytes>),
    /// The first event is an error object; its data.
    ErrorEvent(String),
    /// The stream ended before any event.
    Empty,
}

impl SseSource {
    /// A source with the default bounds.
    pub fn new(body: BodyStream, gap: Duration) -> Self {
        Self::with_settings(body, gap, &StreamSettings::default())
    }

    /// A source bounded by `proxy_settings.streaming`.
    pub fn with_settings(body: BodyStream, gap: Duration, settings: &StreamSettings) -> Self {
        SseSource {
            body,
            decoder: Decoder::with_limit(settings.max_event_bytes),
            gap,
            first_event: settings.first_event_timeout,
            ended: false,
            deferred: None,
            lease: None,
        }
    }

    /// Keeps the backend busy (in flight) for as long as the stream lives.
    pub fn hold(&mut self, lease: super::state::Lease) {
        self.lease = Some(lease);
    }

    /// The stream broke after its first event (or carried an error
    /// event): its backend is told, so the break counts as its failure.
    pub fn failed(&mut self, outcome: super::state::Outcome) {
        if let Some(lease) = &mut self.lease {
            lease.stream_failed(outcome);
        }
    }

    /// Whether the stream stopped because an event passed
    /// `max_event_bytes`.
    pub fn event_too_large(&self) -> bool {
        self.decoder.too_large()
    }

    /// Reads until the first frame that carries data, within
    /// `first_event_timeout` (keep-alives do not extend it). Comments and
    /// keep-alives before it are kept and relayed too, up to
    /// [`MAX_PEEK_KEPT_BYTES`]; later ones are dropped.
    pub async fn peek(&mut self) -> Result<Peek, UpstreamError> {
        let limit = self.first_event;
        match tokio::time::timeout(limit, self.peek_unbounded()).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout(limit)),
        }
    }

    async fn peek_unbounded(&mut self) -> Result<Peek, UpstreamError> {
        let mut frames = Vec::new();
        let mut kept = 0usize;
        while let Some(frame) = self.next_frame().await? {
            let ev = sse::parse(&frame);
            let Some(data) = ev.data.as_deref() else {
                if kept + frame.len() <= MAX_PEEK_KEPT_BYTES {
                    kept += frame.len();
                    frames.push(frame);
                }
                continue;
            };
            if ev.event == Some("error") || sse::is_error_object(data) {
                return Ok(Peek::ErrorEvent(data.to_string()));
            }
            frames.push(frame);
            return Ok(Peek::Events(frames));
        }
        Ok(if frames.is_empty() {
            Peek::Empty
        } else {
            Peek::Events(frames)
        })
    }

    /// The next frame; `Ok(None)` at the end of the stream. Bytes left over
    /// at the end that do not close a frame come back as a last frame, as
    /// they are, unless they are an event cut short (an error).
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        let r = self.next_frame_inner().await;
        self.note(r)
    }

    async fn next_frame_inner(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        loop {
            if let Some(frame) = self.decoder.next_frame() {
                return Ok(Some(frame));
            }
            self.check_size()?;
            if self.ended {
                return self.take_remainder();
            }
            self.read().await?;
        }
    }

    /// A failure after the first event is the backend's: its lease hears
    /// it (before the first event the router records the attempt itself).
    fn note<T>(&mut self, r: Result<T, UpstreamError>) -> Result<T, UpstreamError> {
        if r.is_err() {
            self.failed(super::state::Outcome::StreamBroken);
        }
        r
    }

    /// An event past `max_event_bytes` ends the stream.
    fn check_size(&self) -> Result<(), UpstreamError> {
        if self.decoder.too_large() {
            return Err(UpstreamError::Body(format!(
                "an upstream event passed proxy_settings.streaming.max_event_bytes ({} bytes)",
                self.decoder.max_event()
            )));
        }
        Ok(())
    }

    /// Every complete frame that has arrived, as one chunk, with each
    /// frame's end offset in `ends`; `Ok(None)` at the end of the stream.
    /// Bytes left over at the end come back as a last chunk, as they are,
    /// unless they are an event cut short (an error).
    pub async fn next_batch(
        &mut self,
        ends: &mut Vec<usize>,
    ) -> Result<Option<Bytes>, UpstreamError> {
        let r = self.next_batch_inner(ends).await;
        self.note(r)
    }

    async fn next_batch_inner(
        &mut self,
        ends: &mut Vec<usize>,
    ) -> Result<Option<Bytes>, UpstreamError> {
        ends.clear();
        loop {
            if let Some(batch) = self.decoder.next_frames(ends) {
                return Ok(Some(batch));
            }
            self.check_size()?;
            if let Some(e) = self.deferred.take() {
                return Err(e);
            }
            if self.ended {
                let rest = self.take_remainder()?;
                if let Some(r) = &rest {
                    ends.push(r.len());
                }
                return Ok(rest);
            }
            self.read().await?;
            self.take_ready();
        }
    }

    /// Waits (at most `gap`) for the next piece of the body.
    async fn read(&mut self) -> Result<(), UpstreamError> {
        match tokio::time::timeout(self.gap, self.body.next()).await {
            Err(_) => Err(UpstreamError::BodyTimeout(self.gap)),
            Ok(None) => {
                self.ended = true;
                Ok(())
            }
            Ok(Some(Err(e))) => Err(e),
            Ok(Some(Ok(chunk))) => {
                self.decoder.push(&chunk);
                Ok(())
            }
        }
    }

    /// What is left at the end that closes no frame, unless it is blank. A
    /// last event without its blank line (`data: [DONE]`, or whole JSON) is
    /// relayed; an event cut short (the connection closed cleanly in the
    /// middle of it, as a close-delimited body does when the upstream dies)
    /// is an error: a client cannot use half an event.
    fn take_remainder(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        let rest = self.decoder.remainder();
        if rest.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        if is_cut(rest) {
            self.decoder = Decoder::with_limit(self.decoder.max_event());
            return Err(UpstreamError::Body(
                "the stream ended in the middle of an event".into(),
            ));
        }
        let rest = Bytes::copy_from_slice(rest);
        self.decoder = Decoder::with_limit(self.decoder.max_event());
        Ok(Some(rest))
    }

    /// Takes whatever the body has ready without waiting (HTTP chunks that
    /// arrived in one read come one by one), so they leave in one write. An
    /// error is kept until the frames before it are out.
    fn take_ready(&mut self) {
        let mut taken = 0usize;
        while taken < 256 * 1024 && !self.decoder.too_large() {
            match self.body.next().now_or_never() {
                Some(Some(Ok(chunk))) => {
                    taken += chunk.len();
                    self.decoder.push(&chunk);
                }
                Some(Some(Err(e))) => {
                    self.deferred = Some(e);
                    return;
                }
                Some(None) => {
                    self.ended = true;
                    return;
                }
                None => return,
            }
        }
    }
}

/// Whether an unterminated last frame is an event cut short: it has data
/// that is neither `[DONE]` nor a whole JSON value.
fn is_cut(rest: &[u8]) -> bool {
    let ev = sse::parse(rest);
    ev.data.as_deref().is_some_and(|d| {
        let d = d.trim();
        d != "[DONE]" && serde_json::from_str::<serde::de::IgnoredAny>(d).is_err()
    })
}

/// The message of a frame that is an error event (`event: error`, or data
/// that is an error object), for the record; `None` for any other frame.
/// Most frames cost one byte scan.
pub fn error_event(frame: &[u8]) -> Option<String> {
    // Built once: a searcher costs more to build than a frame to scan.
    static ERROR: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"error"));
    ERROR.find(frame)?;
    let ev = sse::parse(frame);
    let data = ev.data.as_deref().unwrap_or_default();
    (ev.event == Some("error") || sse::is_error_object(data))
        .then(|| super::short_error(data.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::is_error_object;

    fn source(chunks: Vec<&'static [u8]>) -> SseSource {
        let body = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, UpstreamError>(Bytes::from_static(c))),
        )
        .boxed();
        SseSource::new(body, Duration::from_secs(1))
    }

    #[tokio::test]
    async fn peek_keeps_comments_and_first_event() {
        let mut s = source(vec![b": hi\n\nda", b"ta: {\"a\":1}\n\ndata: [DONE]\n\n"]);
        let Peek::Events(frames) = s.peek().await.unwrap() else {
            panic!()
        };
        assert_eq!(
            frames,
            vec![
                Bytes::from_static(b": hi\n\n"),
                Bytes::from_static(b"data: {\"a\":1}\n\n")
            ]
        );
        assert_eq!(
            s.next_frame().await.unwrap().unwrap(),
            Bytes::from_static(b"data: [DONE]\n\n")
        );
        assert!(s.next_frame().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn peek_sees_error_first() {
        let mut s = source(vec![b"data: {\"error\":{\"message\":\"overloaded\"}}\n\n"]);
        assert!(matches!(s.peek().await.unwrap(), Peek::ErrorEvent(m) if m.contains("overloaded")));
        let mut s = source(vec![b"event: error\ndata: {\"type\":\"error\"}\n\n"]);
        assert!(matches!(s.peek().await.unwrap(), Peek::ErrorEvent(_)));
        let mut s = source(vec![]);
        assert!(matches!(s.peek().await.unwrap(), Peek::Empty));
    }

    #[tokio::test]
    async fn peek_keeps_a_bounded_number_of_keep_alives() {
        let ping: &'static [u8] = b": keep-alive ping, padded to be long enough\n\n";
        let mut chunks = vec![ping; 20_000];
        chunks.push(b"data: {\"a\":1}\n\n");
        let mut s = source(chunks);
        let Peek::Events(frames) = s.peek().await.unwrap() else {
            panic!()
        };
        let kept: usize = frames[..frames.len() - 1].iter().map(Bytes::len).sum();
        assert!(kept <= MAX_PEEK_KEPT_BYTES, "{kept}");
        assert!(kept > 0);
        assert_eq!(
            frames.last().unwrap(),
            &Bytes::from_static(b"data: {\"a\":1}\n\n")
        );
    }

    #[tokio::test]
    async fn the_wait_for_the_first_event_is_bounded_even_with_keep_alives() {
        // A keep-alive every 10 ms (well within the gap), never an event.
        let body = futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Some((
                Ok::<_, UpstreamError>(Bytes::from_static(b": ping\n\n")),
                (),
            ))
        })
        .boxed();
        let settings = StreamSettings {
            first_event_timeout: Duration::from_millis(200),
            ..StreamSettings::default()
        };
        let mut s = SseSource::with_settings(body, Duration::from_secs(5), &settings);
        assert!(
            matches!(s.peek().await, Err(UpstreamError::Timeout(d)) if d == Duration::from_millis(200))
        );
    }

    #[tokio::test]
    async fn an_event_past_the_bound_ends_the_stream() {
        let big: &'static [u8] = Box::leak(vec![b'x'; 4096].into_boxed_slice());
        let body = futures::stream::iter(
            [&b"data: 1\n\ndata: "[..], big, big, b"\n\n"]
                .into_iter()
                .map(|c| Ok::<_, UpstreamError>(Bytes::from_static(c))),
        )
        .boxed();
        let settings = StreamSettings {
            max_event_bytes: 4096,
            ..StreamSettings::default()
        };
        let mut s = SseSource::with_settings(body, Duration::from_secs(1), &settings);
        let mut ends = Vec::new();
        assert_eq!(
            &s.next_batch(&mut ends).await.unwrap().unwrap()[..],
            b"data: 1\n\n"
        );
        let e = s.next_batch(&mut ends).await.unwrap_err();
        assert!(
            e.to_string().contains("max_event_bytes (4096 bytes)"),
            "{e}"
        );
        assert!(s.event_too_large());
    }

    #[tokio::test]
    async fn leftover_bytes_come_back_as_they_are() {
        let mut s = source(vec![b"data: 1\n\ndata: 2"]);
        assert_eq!(&s.next_frame().await.unwrap().unwrap()[..], b"data: 1\n\n");
        assert_eq!(&s.next_frame().await.unwrap().unwrap()[..], b"data: 2");
        assert!(s.next_frame().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_event_cut_short_at_the_end_is_an_error() {
        let mut s = source(vec![b"data: 1\n\ndata: {\"id\":\"c1\",\"obj"]);
        assert_eq!(&s.next_frame().await.unwrap().unwrap()[..], b"data: 1\n\n");
        assert!(
            matches!(s.next_frame().await, Err(UpstreamError::Body(m)) if m.contains("middle of an event"))
        );
        let mut s = source(vec![b"data: {\"a\":1}\n\ndata: {\"b\":"]);
        let mut ends = Vec::new();
        assert_eq!(
            &s.next_batch(&mut ends).await.unwrap().unwrap()[..],
            b"data: {\"a\":1}\n\n"
        );
        assert!(s.next_batch(&mut ends).await.is_err());
        // A last event without its blank line is whole: relayed.
        for last in [&b"data: [DONE]"[..], b"data: {\"a\":1}\n", b": ping"] {
            let mut s = source(vec![last]);
            assert_eq!(&s.next_frame().await.unwrap().unwrap()[..], last);
        }
    }

    #[test]
    fn error_events() {
        assert_eq!(
            error_event(b"data: {\"error\":{\"message\":\"overloaded\"}}\n\n").as_deref(),
            Some("overloaded")
        );
        assert_eq!(
            error_event(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n")
                .as_deref(),
            Some("Overloaded")
        );
        assert_eq!(
            error_event(b"data: {\"choices\":[{\"delta\":{\"content\":\"error\"}}]}\n\n"),
            None
        );
        assert_eq!(error_event(b"data: [DONE]\n\n"), None);
    }

    #[test]
    fn error_objects() {
        assert!(is_error_object(r#"{"error":{"message":"x"}}"#));
        assert!(!is_error_object(r#"{"error":null,"choices":[]}"#));
        assert!(!is_error_object(
            r#"{"choices":[{"delta":{"content":"\"error\""}}]}"#
        ));
    }
}
