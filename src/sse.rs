//! Byte-exact Server-Sent Events framing, shared by every streaming path.
//!
//! The decoder cuts an incoming byte stream into frames (everything up to and
//! including the blank line that ends an event) without changing a byte, so
//! the proxy can relay exactly what the upstream sent while still looking at
//! each event. Frames share the decoder's buffer: no copy per frame.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

/// The default bound on one event (`proxy_settings.streaming.max_event_bytes`).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Splits a byte stream into SSE frames.
///
/// Every byte is looked at once: an unfinished line is not scanned again
/// from its start when more of it arrives (the scan resumes where it
/// stopped), so a long line costs linear time however it is split. An event
/// (complete or not) longer than the decoder's bound stops it: no frame
/// comes out after that, and [`Decoder::too_large`] says why.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    /// Start of the first line not yet known to be complete.
    line_start: usize,
    /// Where the search for the next line end resumes (at or after
    /// `line_start`): the bytes between were scanned and hold none.
    scan_from: usize,
    /// The largest event, in bytes, terminator included.
    max_event: usize,
    /// An event passed `max_event`.
    too_large: bool,
    /// Bytes examined by the scan (tests check it stays linear).
    #[cfg(test)]
    examined: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::with_limit(usize::MAX)
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that refuses events longer than `max_event` bytes.
    pub fn with_limit(max_event: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            line_start: 0,
            scan_from: 0,
            max_event: max_event.max(1),
            too_large: false,
            #[cfg(test)]
            examined: 0,
        }
    }

    /// Appends bytes as they arrive. Once an event was too large the
    /// bytes are dropped: nothing more comes out.
    pub fn push(&mut self, chunk: &[u8]) {
        if !self.too_large {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// Whether an event passed the bound: the stream cannot go on.
    pub fn too_large(&self) -> bool {
        self.too_large
    }

    /// The bound on one event, in bytes.
    pub fn max_event(&self) -> usize {
        self.max_event
    }

    /// The next complete frame, terminator included, if one is buffered.
    pub fn next_frame(&mut self) -> Option<Bytes> {
        let end = self.scan(0)?;
        self.line_start = 0;
        self.scan_from = 0;
        Some(self.buf.split_to(end).freeze())
    }

    /// Every complete frame buffered, as one contiguous chunk (no copy),
    /// with the end offset of each frame in it pushed onto `ends`. Relaying
    /// this way writes what arrived together in one piece.
    pub fn next_frames(&mut self, ends: &mut Vec<usize>) -> Option<Bytes> {
        let mut total = 0;
        while let Some(end) = self.scan(total) {
            ends.push(end);
            total = end;
        }
        if total == 0 {
            return None;
        }
        self.line_start -= total.min(self.line_start);
        self.scan_from -= total.min(self.scan_from);
        Some(self.buf.split_to(total).freeze())
    }

    /// Bytes received that do not form a complete frame yet.
    pub fn remainder(&self) -> &[u8] {
        &self.buf
    }

    /// The end of the frame starting at `start`. Lines between `start` and
    /// `line_start` are known complete and not empty, and no line ends
    /// between `line_start` and `scan_from`: the search resumes there. When
    /// there is no end yet, remembers where it stopped. `None` too once the
    /// frame is longer than the bound (and from then on).
    fn scan(&mut self, start: usize) -> Option<usize> {
        if self.too_large {
            return None;
        }
        let buf = &self.buf[..];
        let mut line = self.line_start.max(start);
        let mut from = self.scan_from.max(line);
        loop {
            let Some(off) = memchr::memchr2(b'\n', b'\r', &buf[from..]) else {
                #[cfg(test)]
                {
                    self.examined += buf.len() - from;
                }
                self.line_start = line;
                self.scan_from = buf.len();
                self.too_large = buf.len() - start > self.max_event;
                return None;
            };
            #[cfg(test)]
            {
                self.examined += off + 1;
            }
            let j = from + off;
            let term = if buf[j] == b'\n' {
                1
            } else if j + 1 < buf.len() {
                if buf[j + 1] == b'\n' { 2 } else { 1 }
            } else {
                // A lone `\r` at the end may be half of `\r\n`: wait for
                // more, and look at it again then.
                self.line_start = line;
                self.scan_from = j;
                self.too_large = buf.len() - start > self.max_event;
                return None;
            };
            if j == line {
                // An empty line ends the frame.
                let end = j + term;
                self.line_start = end;
                self.scan_from = end;
                if end - start > self.max_event {
                    self.too_large = true;
                    return None;
                }
                return Some(end);
            }
            line = j + term;
            from = line;
        }
    }
}

/// The fields of one frame that the proxy looks at.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event:` name, if given.
    pub event: Option<&'a str>,
    /// The `data:` lines joined with `\n`; `None` for a frame without data
    /// (a comment or keep-alive).
    pub data: Option<Cow<'a, str>>,
}

impl Event<'_> {
    /// `data: [DONE]`, the end marker of OpenAI streams.
    pub fn is_done(&self) -> bool {
        self.data.as_deref().is_some_and(|d| d.trim() == "[DONE]")
    }
}

/// Parses a frame's fields. Lines that are not UTF-8 are skipped.
pub fn parse(frame: &[u8]) -> Event<'_> {
    // The usual frame, `data: {...}\n\n`, without a line split.
    if let Some(body) = frame
        .strip_prefix(b"data: ")
        .and_then(|r| r.strip_suffix(b"\n\n"))
        && memchr::memchr2(b'\n', b'\r', body).is_none()
        && let Ok(data) = std::str::from_utf8(body)
    {
        return Event {
            event: None,
            data: Some(Cow::Borrowed(data)),
        };
    }
    let mut ev = Event::default();
    let text = match std::str::from_utf8(frame) {
        Ok(t) => t,
        Err(e) => match std::str::from_utf8(&frame[..e.valid_up_to()]) {
            Ok(t) => t,
            Err(_) => return ev,
        },
    };
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                ev.data = Some(match ev.data.take() {
                    None => Cow::Borrowed(value),
                    Some(prev) => {
                        let mut s = prev.into_owned();
                        s.push('\n');
                        s.push_str(value);
                        Cow::Owned(s)
                    }
                })
            }
            "event" => ev.event = Some(value),
            _ => {}
        }
    }
    ev
}

/// Encodes one `data:` event. `json` must not contain newlines (serde_json's
/// compact output never does).
pub fn data_frame(json: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(json.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

/// Encodes an event with a name and one line of data.
pub fn named_frame(event: &str, json: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(json.len() + event.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

pub const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";

/// Whether an event's data is an error: `{"error": ...}` with a non-null
/// error, or `{"type": "error", ...}`.
pub fn is_error_object(data: &str) -> bool {
    let t = data.trim_start();
    if !t.starts_with('{') || !t.contains("\"error\"") {
        return false;
    }
    match serde_json::from_str::<serde_json::Value>(t) {
        Ok(v) => {
            v.get("error").is_some_and(|e| !e.is_null())
                || v.get("type").and_then(|t| t.as_str()) == Some("error")
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(input: &[u8], split: usize) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for part in [&input[..split], &input[split..]] {
            d.push(part);
            while let Some(f) = d.next_frame() {
                out.push(f.to_vec());
            }
        }
        (out, d.remainder().to_vec())
    }

    #[test]
    fn frames_are_byte_exact_at_every_split() {
        let input: &[u8] =
            b": comment\n\ndata: {\"a\":1}\n\nevent: x\r\ndata: b\r\n\r\ndata: c\r\rdata: tail";
        let expected: Vec<&[u8]> = vec![
            b": comment\n\n",
            b"data: {\"a\":1}\n\n",
            b"event: x\r\ndata: b\r\n\r\n",
            b"data: c\r\r",
        ];
        for split in 0..=input.len() {
            let (frames, rest) = frames_of(input, split);
            assert_eq!(frames, expected, "split at {split}");
            assert_eq!(rest, b"data: tail");
        }
    }

    #[test]
    fn batches_hold_whole_frames_at_every_split() {
        let input: &[u8] = b"data: 1\n\ndata: 2\r\n\r\n: c\n\ndata: 3\n\ndata: tail";
        for split in 0..=input.len() {
            let mut d = Decoder::new();
            let mut frames: Vec<Vec<u8>> = Vec::new();
            for part in [&input[..split], &input[split..]] {
                d.push(part);
                let mut ends = Vec::new();
                if let Some(batch) = d.next_frames(&mut ends) {
                    let mut start = 0;
                    for end in ends {
                        frames.push(batch[start..end].to_vec());
                        start = end;
                    }
                    assert_eq!(start, batch.len());
                }
            }
            let expected: Vec<&[u8]> = vec![
                b"data: 1\n\n",
                b"data: 2\r\n\r\n",
                b": c\n\n",
                b"data: 3\n\n",
            ];
            assert_eq!(frames, expected, "split at {split}");
            assert_eq!(d.remainder(), b"data: tail");
        }
    }

    #[test]
    fn each_byte_is_scanned_once_however_a_long_line_is_split() {
        // One unterminated `data:` line, a byte at a time, then in uneven
        // pieces: the scan resumes where it stopped, so the bytes examined
        // stay within the input's length (plus one per piece, for a `\r`
        // looked at again when its `\n` may follow).
        let n = 200_000;
        let mut d = Decoder::new();
        d.push(b"data: ");
        for _ in 0..n {
            d.push(b"x");
            assert!(d.next_frame().is_none());
        }
        assert!(d.examined <= n + 6, "examined {} bytes", d.examined);
        d.push(b"\n\n");
        let f = d.next_frame().unwrap();
        assert_eq!(f.len(), n + 8);
        assert!(d.examined <= n + 8 + 2);

        let mut d = Decoder::new();
        let mut pushed = 0;
        let mut pieces = 0;
        let mut ends = Vec::new();
        for i in 0..5_000usize {
            let piece = if i % 7 == 6 {
                &b"yy\r"[..]
            } else {
                &b"zzzzzzzzzzzz"[..]
            };
            d.push(piece);
            pushed += piece.len();
            pieces += 1;
            assert!(d.next_frames(&mut ends).is_none());
        }
        assert!(
            d.examined <= pushed + pieces,
            "examined {} of {pushed} bytes",
            d.examined
        );
    }

    #[test]
    fn an_event_past_the_bound_stops_the_decoder() {
        // Unterminated, arriving in pieces.
        let mut d = Decoder::with_limit(64);
        d.push(b"data: 1\n\n");
        d.push(&[b'a'; 40]);
        assert_eq!(&d.next_frame().unwrap()[..], b"data: 1\n\n");
        assert!(d.next_frame().is_none());
        assert!(!d.too_large());
        d.push(&[b'a'; 40]);
        assert!(d.next_frame().is_none());
        assert!(d.too_large());
        // Nothing more is kept or comes out.
        d.push(b"\n\ndata: 2\n\n");
        assert!(d.next_frame().is_none());
        assert!(d.remainder().len() <= 80);

        // Complete, in one piece; the frames before it still come out.
        let mut d = Decoder::with_limit(64);
        let mut input = b"data: 1\n\n".to_vec();
        input.extend_from_slice(b"data: ");
        input.extend_from_slice(&[b'b'; 100]);
        input.extend_from_slice(b"\n\ndata: 3\n\n");
        d.push(&input);
        let mut ends = Vec::new();
        assert_eq!(&d.next_frames(&mut ends).unwrap()[..], b"data: 1\n\n");
        assert!(d.next_frames(&mut ends).is_none());
        assert!(d.too_large());

        // Exactly at the bound is fine.
        let frame = b"data: 0123456789\n\n";
        let mut d = Decoder::with_limit(frame.len());
        d.push(frame);
        assert_eq!(&d.next_frame().unwrap()[..], frame);
        assert!(!d.too_large());
    }

    #[test]
    fn parse_fields() {
        let ev = parse(b"event: response.created\ndata: {\"x\":1}\ndata: more\n\n");
        assert_eq!(ev.event, Some("response.created"));
        assert_eq!(ev.data.as_deref(), Some("{\"x\":1}\nmore"));
        assert!(parse(b"data: [DONE]\n\n").is_done());
        assert_eq!(parse(b": keep-alive\n\n").data, None);
        assert_eq!(parse(b"data:x\n\n").data.as_deref(), Some("x"));
    }

    #[test]
    fn encode_round_trip() {
        let f = data_frame(br#"{"a":1}"#);
        assert_eq!(&f[..], b"data: {\"a\":1}\n\n");
        assert_eq!(parse(&f).data.as_deref(), Some(r#"{"a":1}"#));
        let f = named_frame("error", b"{}");
        assert_eq!(parse(&f).event, Some("error"));
    }
}
