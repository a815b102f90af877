//! The proxy's loop marker. Every request it sends upstream carries a
//! `Via: 1.1 yallmp-<instance>-<tag>` entry (after any the client sent),
//! where `<instance>` is random per process and `<tag>` stands for the
//! configured model the request was sent for. A request that arrives with
//! this process's entry for the model it would serve has come round a loop
//! (a model whose backend is this proxy, directly or through other
//! proxies): it is refused with 508 `loop_detected` instead of going round
//! again. A backend that is this proxy serving another model (an Anthropic
//! backend that is the proxy's own `/v1/messages` for a stub model) is no
//! loop and passes.

use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue, header};

/// This process's id in the marker: 16 hex digits, random.
pub fn instance() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| format!("{:016x}", fastrand::u64(..)))
}

/// FNV-1a: the model's tag needs no strength, only to stay the same.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The `Via` entry for a request sent for configured model `model` (the
/// model's name itself does not go upstream).
fn entry(model: &str) -> String {
    let id = instance();
    let tag = fnv1a(&[id.as_bytes(), model.as_bytes()]) as u32;
    format!("yallmp-{id}-{tag:08x}")
}

/// The `Via` value this process adds to a request sent for `model` (made
/// once per model and thread, then cloned: a request's hot path formats
/// nothing).
pub fn marker(model: &str) -> HeaderValue {
    thread_local! {
        static MADE: std::cell::RefCell<std::collections::HashMap<Box<str>, HeaderValue>> =
            std::cell::RefCell::default();
    }
    let make = || {
        HeaderValue::from_str(&format!("1.1 {}", entry(model)))
            .unwrap_or(HeaderValue::from_static("1.1 yallmp"))
    };
    MADE.with(|made| {
        let Ok(mut made) = made.try_borrow_mut() else {
            return make();
        };
        if let Some(v) = made.get(model) {
            return v.clone();
        }
        // Bounded: runtime models come and go.
        if made.len() >= 1024 {
            made.clear();
        }
        let v = make();
        made.insert(model.into(), v.clone());
        v
    })
}

/// Whether `headers` carry this process's marker for `model`: the request
/// went round a loop back to it.
pub fn seen(headers: &HeaderMap, model: &str) -> bool {
    let want = entry(model);
    headers
        .get_all(header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|hop| {
            // `1.1 received-by (comment)`: the second word.
            hop.split_whitespace().nth(1) == Some(want.as_str())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_carrying_its_own_marker_is_seen_per_model() {
        let mut h = HeaderMap::new();
        assert!(!seen(&h, "m"));
        h.append(header::VIA, HeaderValue::from_static("1.0 fred, 1.1 nginx"));
        h.append(header::VIA, marker("m"));
        assert!(seen(&h, "m"));
        // The proxy serving another model through itself is no loop.
        assert!(!seen(&h, "other"));
        // Another process's marker for the same model is not this one's.
        let mut other = HeaderMap::new();
        other.insert(
            header::VIA,
            HeaderValue::from_static("1.1 yallmp-0000000000000000-00000000"),
        );
        assert!(!seen(&other, "m"));
        // Joined in one line, with a comment.
        let joined = format!("1.1 a, {} (yallmp), 1.1 b", marker("m").to_str().unwrap());
        let mut j = HeaderMap::new();
        j.insert(header::VIA, HeaderValue::from_str(&joined).unwrap());
        assert!(seen(&j, "m"));
    }
}
