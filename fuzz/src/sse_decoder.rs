//! `sse::Decoder` and `sse::parse`.
//!
//! Input: byte 0 = number of cuts (mod 9), then two bytes per cut, then the
//! stream. Properties:
//! - the frames (and the remainder) are the same whatever the split points,
//!   with `next_frame` and with `next_frames` (mixed per chunk), and one
//!   byte at a time;
//! - they are those of a simple reference framer (a frame ends at the
//!   first empty line; `\r\n`, `\n` and `\r` end lines; a `\r` at the very
//!   end waits for a possible `\n`), and frames + remainder = the input,
//!   byte for byte;
//! - `parse`'s fast path agrees with a plain line-by-line reading;
//! - with a bound on one event, the frames that come out are the
//!   reference's up to the first one past the bound (complete or not), and
//!   the decoder says it stopped exactly when there is one.

use std::borrow::Cow;

use yallmp::sse::{self, Decoder};

use crate::{cuts_from, pieces};

type Frames = (Vec<Vec<u8>>, Vec<u8>);

pub fn run(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 9);
    let spec_len = (2 * n).min(rest.len());
    let (spec, input) = rest.split_at(spec_len);
    let cuts = cuts_from(spec, input.len(), n);

    let expected = reference_frames(input);
    let joined: Vec<u8> = expected
        .0
        .iter()
        .flatten()
        .chain(&expected.1)
        .copied()
        .collect();
    assert_eq!(joined, input, "the reference framer loses no byte");

    let whole = by_frame(&pieces(input, &[]));
    assert_eq!(whole, expected, "whole input vs the reference framer");
    let split = by_frame(&pieces(input, &cuts));
    assert_eq!(split, expected, "split at {cuts:?}");
    // Batches, alternating with single frames chunk by chunk.
    let mixed = batched(&pieces(input, &cuts), n);
    assert_eq!(mixed, expected, "batches split at {cuts:?}");
    if input.len() <= 512 {
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(by_frame(&bytes), expected, "one byte at a time");
        assert_eq!(batched(&bytes, 0), expected, "batches, one byte at a time");
    }

    bounded(input, &cuts, &expected, n);

    for f in &expected.0 {
        let ev = sse::parse(f);
        let (event, data) = reference_parse(f);
        assert_eq!(ev.event, event.as_deref(), "event of {f:?}");
        assert_eq!(ev.data.as_deref(), data.as_deref(), "data of {f:?}");
        assert_eq!(
            ev.is_done(),
            data.as_deref().is_some_and(|d| d.trim() == "[DONE]")
        );
    }
    // The encoders' frames decode to themselves.
    if let Ok(text) = std::str::from_utf8(input)
        && !text.contains(['\n', '\r'])
    {
        let f = sse::data_frame(text.as_bytes());
        assert_eq!(sse::parse(&f).data, Some(Cow::Borrowed(text)));
        assert_eq!(by_frame(&[&f[..]]), (vec![f.to_vec()], Vec::new()));
        let f = sse::named_frame("x", text.as_bytes());
        let ev = sse::parse(&f);
        assert_eq!((ev.event, ev.data.as_deref()), (Some("x"), Some(text)));
    }
}

/// A bounded decoder (the bound picked from the frame lengths by `seed`)
/// against the reference.
fn bounded(input: &[u8], cuts: &[usize], expected: &Frames, seed: usize) {
    let lens: Vec<usize> = expected.0.iter().map(Vec::len).collect();
    let longest = lens
        .iter()
        .copied()
        .chain([expected.1.len()])
        .max()
        .unwrap_or(0);
    let limit = match seed % 3 {
        0 => longest.max(1),
        1 => (longest / 2).max(1),
        _ => lens.first().copied().unwrap_or(1).max(1),
    };
    // The reference: frames until the first one past the bound; a
    // remainder past it stops the decoder too.
    let keep = lens.iter().take_while(|&&l| l <= limit).count();
    let stops = keep < lens.len() || expected.1.len() > limit;
    let mut d = Decoder::with_limit(limit);
    let mut frames = Vec::new();
    for p in pieces(input, cuts) {
        d.push(p);
        while let Some(f) = d.next_frame() {
            assert!(f.len() <= limit, "a frame past the bound came out");
            frames.push(f.to_vec());
        }
    }
    assert_eq!(frames, expected.0[..keep], "bounded at {limit}");
    assert_eq!(d.too_large(), stops, "stopped at {limit}");
}

fn by_frame(parts: &[&[u8]]) -> Frames {
    let mut d = Decoder::new();
    let mut frames = Vec::new();
    for p in parts {
        d.push(p);
        while let Some(f) = d.next_frame() {
            frames.push(f.to_vec());
        }
    }
    (frames, d.remainder().to_vec())
}

/// `next_frames` on most chunks, `next_frame` on some (chosen by `seed`).
fn batched(parts: &[&[u8]], seed: usize) -> Frames {
    let mut d = Decoder::new();
    let mut frames = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        d.push(p);
        if (i + seed) % 3 == 2 {
            if let Some(f) = d.next_frame() {
                frames.push(f.to_vec());
            }
            continue;
        }
        let mut ends = Vec::new();
        if let Some(batch) = d.next_frames(&mut ends) {
            let mut start = 0;
            for &end in &ends {
                assert!(end > start, "frame ends increase: {ends:?}");
                frames.push(batch[start..end].to_vec());
                start = end;
            }
            assert_eq!(start, batch.len(), "a batch is whole frames");
        } else {
            assert!(ends.is_empty());
        }
    }
    // What single-frame calls left buffered.
    while let Some(f) = d.next_frame() {
        frames.push(f.to_vec());
    }
    (frames, d.remainder().to_vec())
}

/// Frames by the definition, with no state carried between calls.
fn reference_frames(input: &[u8]) -> Frames {
    let mut frames = Vec::new();
    let (mut start, mut line) = (0, 0);
    while let Some(off) = input[line..].iter().position(|&b| b == b'\n' || b == b'\r') {
        let j = line + off;
        let term = match (input[j], input.get(j + 1)) {
            (b'\n', _) => 1,
            (_, Some(b'\n')) => 2,
            (_, Some(_)) => 1,
            (_, None) => break,
        };
        if j == line {
            frames.push(input[start..j + term].to_vec());
            start = j + term;
        }
        line = j + term;
    }
    (frames, input[start..].to_vec())
}

/// The fields of a frame read line by line: its valid UTF-8 prefix, lines
/// cut at `\n` or `\r`, comments skipped, `data` lines joined with `\n`.
fn reference_parse(frame: &[u8]) -> (Option<String>, Option<String>) {
    let text = match std::str::from_utf8(frame) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&frame[..e.valid_up_to()]).unwrap_or(""),
    };
    let (mut event, mut data): (Option<String>, Option<String>) = (None, None);
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            "event" => event = Some(value.to_string()),
            _ => {}
        }
    }
    (event, data)
}
