//! yallmp's fuzz harnesses: one `run(&[u8])` per target. Each panics when
//! the code under test panics or breaks a property it claims (frames the
//! same whatever the split, a stream parsed like the whole answer, output
//! events well formed). The same functions run under libFuzzer
//! (`fuzz_targets/`, `cargo fuzz`, scripts/fuzz.sh) and under the
//! non-instrumented mutation runner CI uses (`src/bin/fuzz_smoke.rs`).
//!
//! Inputs are plain bytes, so the corpus (fuzz/corpus/<target>/) stays
//! readable; the first byte or two choose a mode or settings, the rest is
//! the text, or drives a structure-aware generator (`shapes`).

pub mod anthropic;
pub mod config_loader;
pub mod parse_tags_stream;
pub mod responses;
pub mod shapes;
pub mod sse_decoder;
pub mod streams;

/// A harness: panics on a bug.
pub type Harness = fn(&[u8]);

/// Every target: its name (the corpus folder and the `cargo fuzz` target)
/// and its harness.
pub const TARGETS: &[(&str, Harness)] = &[
    ("sse_decoder", sse_decoder::run),
    ("parse_tags_stream", parse_tags_stream::run),
    ("config_loader", config_loader::run),
    ("anthropic", anthropic::run),
    ("responses", responses::run),
];

/// Sorted cut offsets into `0..=len`, read from `spec` (two bytes each, at
/// most `max`): how a harness splits its input into chunks.
pub fn cuts_from(spec: &[u8], len: usize, max: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = spec
        .chunks_exact(2)
        .take(max)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])) % (len + 1))
        .collect();
    cuts.sort_unstable();
    cuts
}

/// `data` cut at `cuts` (sorted offsets).
pub fn pieces<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut last = 0;
    for &c in cuts {
        let c = c.clamp(last, data.len());
        out.push(&data[last..c]);
        last = c;
    }
    out.push(&data[last..]);
    out
}
