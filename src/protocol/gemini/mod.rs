//! OpenAI chat completions ⇄ Google's Gemini API (`generateContent`), both
//! ways, for `api_type: gemini` and `vertex` backends: requests
//! (`request`), whole answers, errors and embeddings (`response`), and
//! streams (`stream`). The transport (src/upstream/google.rs) calls these;
//! everything above it sees a chat backend.
//!
//! Thought signatures: Gemini signs its reasoning and wants the signature
//! back on the `functionCall` part of a later turn. The signature rides in
//! the tool call's id: `{id}__ts_{signature as base64url}` (see
//! [`call_id`] and [`split_call_id`]); clients echo tool call ids verbatim,
//! so the next turn carries it back without any extra field.

pub mod request;
pub mod response;
pub mod stream;

use base64::Engine as _;

/// The separator between a tool call id and its thought signature.
const SIGNATURE_MARK: &str = "__ts_";

/// A tool call id for a Gemini `functionCall` part: Gemini's own `id` when
/// it gave one (else a fresh one), with the part's `thoughtSignature`
/// appended as base64url (ids stay within `[A-Za-z0-9_-]`).
pub fn call_id(given: Option<&str>, signature: Option<&str>) -> String {
    let base = match given.filter(|g| !g.is_empty() && !g.contains(SIGNATURE_MARK)) {
        Some(g) => g.to_string(),
        None => format!("call_{:016x}", fastrand::u64(..)),
    };
    let sig = signature.and_then(|s| {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s))
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s))
            .ok()?;
        Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    });
    match sig {
        Some(sig) => format!("{base}{SIGNATURE_MARK}{sig}"),
        None => base,
    }
}

/// A tool call id split back into its id and the thought signature it
/// carries (standard base64, as Gemini takes `thoughtSignature`).
pub fn split_call_id(id: &str) -> (&str, Option<String>) {
    let Some((base, sig)) = id.split_once(SIGNATURE_MARK) else {
        return (id, None);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .ok();
    (
        base,
        bytes.map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_round_trip_through_ids() {
        let id = call_id(None, Some("c2lnbmF0dXJlLWJ5dGVzPz8+Pw=="));
        assert!(id.starts_with("call_"));
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "{id}"
        );
        let (base, sig) = split_call_id(&id);
        assert_eq!(base.len(), "call_".len() + 16);
        assert_eq!(sig.as_deref(), Some("c2lnbmF0dXJlLWJ5dGVzPz8+Pw=="));
        assert_eq!(call_id(Some("fc_1"), None), "fc_1");
        assert_eq!(split_call_id("fc_1"), ("fc_1", None));
    }
}
