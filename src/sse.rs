//! Byte-exact Server-Sent Events framing, shared by every streaming path.
//!
//! The decoder cuts an incoming byte stream into frames (everything up to and
//! including the blank line that ends an event) without changing a byte, so
//! the proxy can relay exactly what the upstream sent while still looking at
//! each event. Frames share the decoder's buffer: no copy per frame.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

/// Splits a byte stream into SSE frames.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    /// Start of the first line not yet known to be complete.
    line_start: usize,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes as they arrive.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete frame, terminator included, if one is buffered.
    pub fn next_frame(&mut self) -> Option<Bytes> {
        let end = self.find_end()?;
        self.line_start = 0;
        Some(self.buf.split_to(end).freeze())
    }

    /// Every complete frame buffered, as one contiguous chunk (no copy),
    /// with the end offset of each frame in it pushed onto `ends`. Relaying
    /// this way writes what arrived together in one piece.
    pub fn next_frames(&mut self, ends: &mut Vec<usize>) -> Option<Bytes> {
        let mut total = 0;
        while let Some(end) = self.scan(total, self.line_start.max(total)) {
            ends.push(end);
            total = end;
        }
        if total == 0 {
            return None;
        }
        self.line_start -= total.min(self.line_start);
        Some(self.buf.split_to(total).freeze())
    }

    /// Bytes received that do not form a complete frame yet.
    pub fn remainder(&self) -> &[u8] {
        &self.buf
    }

    fn find_end(&mut self) -> Option<usize> {
        self.scan(0, self.line_start)
    }

    /// The end of the frame starting at `start`, scanning lines from `line`
    /// (lines before it are known complete and not empty). When there is
    /// none yet, remembers where the incomplete line starts.
    fn scan(&mut self, start: usize, line: usize) -> Option<usize> {
        let buf = &self.buf[..];
        let mut line = line.max(start);
        loop {
            let Some(off) = memchr::memchr2(b'\n', b'\r', &buf[line..]) else {
                self.line_start = line;
                return None;
            };
            let j = line + off;
            let term = if buf[j] == b'\n' {
                1
            } else if j + 1 < buf.len() {
                if buf[j + 1] == b'\n' { 2 } else { 1 }
            } else {
                // A lone `\r` at the end may be half of `\r\n`: wait for more.
                self.line_start = line;
                return None;
            };
            if j == line {
                // An empty line ends the frame.
                self.line_start = j + term;
                return Some(j + term);
            }
            line = j + term;
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
