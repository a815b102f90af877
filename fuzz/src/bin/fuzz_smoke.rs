//! The short fuzz run CI does, with no instrumented build: every corpus
//! input of a target, then random mutations of them (bit flips, byte
//! inserts and deletes, splices, dictionary tokens) until the time is up.
//! Not coverage-guided: `cargo fuzz` (scripts/fuzz.sh) is the real fuzzer;
//! this keeps the harnesses building and the corpus passing, and shakes
//! the code a little on every CI run.
//!
//!     fuzz_smoke [TARGET|all] [SECONDS per target]
//!
//! A panic saves the input to fuzz/artifacts/<target>/ and fails the run.
//! `FUZZ_SEED` fixes the random seed (printed at the start).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use yallmp_fuzz::TARGETS;

thread_local! {
    /// The input being run, for the panic hook.
    static CURRENT: RefCell<(String, Vec<u8>)> = const { RefCell::new((String::new(), Vec::new())) };
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = root().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// Tokens of a libFuzzer dictionary (`name="value"` or `"value"` lines).
fn dictionary(target: &str) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(root().join("dict").join(format!("{target}.dict")))
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                return None;
            }
            let q = l.find('"')?;
            unescape(l[q + 1..].strip_suffix('"')?)
        })
        .collect()
}

fn unescape(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            match b.get(i + 1)? {
                b'x' => {
                    let hex = std::str::from_utf8(b.get(i + 2..i + 4)?).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 4;
                    continue;
                }
                &c => out.push(c),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

const INTERESTING: [u8; 12] = [0, 1, 2, 7, 8, 9, 0x7f, 0x80, 0xff, b'\n', b'\r', b'"'];

fn mutate(rng: &mut fastrand::Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>], dict: &[Vec<u8>]) {
    for _ in 0..rng.usize(1..=4) {
        let len = input.len();
        match rng.u8(0..8) {
            0 if len > 0 => {
                let i = rng.usize(..len);
                input[i] ^= 1 << rng.u8(0..8);
            }
            1 if len > 0 => {
                let i = rng.usize(..len);
                input[i] = INTERESTING[rng.usize(..INTERESTING.len())];
            }
            2 => {
                let i = rng.usize(..=len);
                let n = rng.usize(1..8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
                input.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.usize(..len);
                let n = rng.usize(1..=(len - i).min(32));
                input.drain(i..i + n);
            }
            4 if len > 0 => {
                // A range copied elsewhere.
                let i = rng.usize(..len);
                let n = rng.usize(1..=(len - i).min(64));
                let chunk = input[i..i + n].to_vec();
                let at = rng.usize(..=len);
                input.splice(at..at, chunk);
            }
            5 if !corpus.is_empty() => {
                // The tail of another input spliced in.
                let other = &corpus[rng.usize(..corpus.len())];
                let from = rng.usize(..=other.len());
                let at = rng.usize(..=len);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            _ if !dict.is_empty() => {
                let tok = &dict[rng.usize(..dict.len())];
                let at = rng.usize(..=len);
                input.splice(at..at, tok.iter().copied());
            }
            _ => input.push(rng.u8(..)),
        }
    }
    input.truncate(64 * 1024);
}

fn run_one(name: &str, f: fn(&[u8]), input: &[u8]) {
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        c.0.clear();
        c.0.push_str(name);
        c.1.clear();
        c.1.extend_from_slice(input);
    });
    f(input);
}

fn save_crash() {
    CURRENT.with(|c| {
        let Ok(c) = c.try_borrow() else { return };
        if c.0.is_empty() {
            return;
        }
        let dir = root().join("artifacts").join(&c.0);
        let _ = std::fs::create_dir_all(&dir);
        let hash = c.1.iter().fold(0xcbf29ce484222325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
        let path = dir.join(format!("crash-{hash:016x}"));
        match std::fs::write(&path, &c.1) {
            Ok(()) => eprintln!(
                "fuzz_smoke: {} panicked; input saved to {} (replay: scripts/fuzz.sh --replay {} FILE)",
                c.0,
                path.display(),
                c.0
            ),
            Err(e) => eprintln!("fuzz_smoke: cannot save the input: {e}"),
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map_or("all", String::as_str);
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10.0);
    // A file or folder as the third argument: replay those inputs only.
    let replay = args.get(2).map(PathBuf::from);
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let targets: Vec<_> = TARGETS
        .iter()
        .filter(|(n, _)| which == "all" || *n == which)
        .collect();
    if targets.is_empty() {
        let names: Vec<_> = TARGETS.iter().map(|t| t.0).collect();
        eprintln!("unknown target {which}; targets: {}", names.join(" "));
        std::process::exit(2);
    }
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        save_crash();
    }));
    println!("fuzz_smoke: seed {seed} (FUZZ_SEED), {secs} s per target");
    let mut passed = 0;
    for &&(name, f) in &targets {
        if let Some(p) = &replay {
            for (path, input) in inputs_at(p) {
                println!("{name}: {}", path.display());
                run_one(name, f, &input);
            }
            passed += 1;
            continue;
        }
        let mut rng = fastrand::Rng::with_seed(seed);
        let corpus = corpus(name);
        let dict = dictionary(name);
        let start = Instant::now();
        for input in &corpus {
            run_one(name, f, input);
        }
        let mut runs = corpus.len();
        let budget = Duration::from_secs_f64(secs);
        let mut input = Vec::new();
        while start.elapsed() < budget {
            for _ in 0..64 {
                input.clear();
                if corpus.is_empty() || rng.u8(..16) == 0 {
                    input.extend((0..rng.usize(..64)).map(|_| rng.u8(..)));
                } else {
                    input.extend_from_slice(&corpus[rng.usize(..corpus.len())]);
                }
                mutate(&mut rng, &mut input, &corpus, &dict);
                run_one(name, f, &input);
                runs += 1;
            }
        }
        println!(
            "{name}: {} corpus inputs, {runs} runs in {:.1} s, no panic",
            corpus.len(),
            start.elapsed().as_secs_f64()
        );
        passed += 1;
    }
    println!("fuzz: {passed} passed, 0 failed");
}

fn inputs_at(p: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut paths: Vec<PathBuf> = if p.is_dir() {
        std::fs::read_dir(p)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    } else {
        vec![p.to_path_buf()]
    };
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect()
}
