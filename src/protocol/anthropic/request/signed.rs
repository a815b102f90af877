//! Thinking blocks Anthropic can verify (signed, or redacted), and a
//! `messages` array stripped of those it cannot, scanned cheaply first.

use serde_json::Value;

/// Whether Anthropic can verify a thinking block: a `thinking` block with a
/// non-empty `signature`, or a `redacted_thinking` block (its `data` is
/// the proof). A block another backend produced (its signature `""` or
/// none, as the translation to Messages writes it) cannot be.
pub fn verifiable(b: &Value) -> bool {
    match b.get("type").and_then(Value::as_str) {
        Some("thinking") => b
            .get("signature")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty()),
        Some("redacted_thinking") => b
            .get("data")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty()),
        _ => true,
    }
}

/// An Anthropic `messages` array without the thinking blocks Anthropic
/// cannot verify (see [`verifiable`]), when it has any: the array and one
/// `dropped` entry per block (`messages[i].content[j] (unsigned thinking)`).
/// `None` when every block is kept. Cheap checks come first (no thinking
/// at all, then every block read without building values): a long history
/// of signed blocks is only ever scanned.
pub fn strip_unverifiable(messages: &str) -> Option<(Value, Vec<String>)> {
    memchr::memmem::find(messages.as_bytes(), b"thinking")?;
    if all_verifiable(messages) == Some(true) {
        return None;
    }
    let mut v: Value = serde_json::from_str(messages).ok()?;
    let mut dropped = Vec::new();
    for (i, m) in v.as_array_mut()?.iter_mut().enumerate() {
        if m.get("role").and_then(Value::as_str) != Some("assistant") {
            continue;
        }
        let Some(Value::Array(blocks)) = m.get_mut("content") else {
            continue;
        };
        let mut j = 0;
        blocks.retain(|b| {
            let keep = verifiable(b);
            if !keep {
                dropped.push(format!("messages[{i}].content[{j}] (unsigned thinking)"));
            }
            j += 1;
            keep
        });
    }
    (!dropped.is_empty()).then_some((v, dropped))
}

/// A turn's role and content, borrowed (for [`all_verifiable`]).
#[derive(serde::Deserialize)]
struct TurnRef<'a> {
    #[serde(borrow, default)]
    role: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<&'a serde_json::value::RawValue>,
}

/// What [`verifiable`] reads of a block, borrowed.
#[derive(serde::Deserialize)]
struct BlockRef<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    signature: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<std::borrow::Cow<'a, str>>,
}

/// Whether every assistant thinking block in `messages` can be verified,
/// read without building values; `None` when the shape is not the usual
/// one (the caller then reads it in full).
pub(super) fn all_verifiable(messages: &str) -> Option<bool> {
    let turns: Vec<TurnRef<'_>> = serde_json::from_str(messages).ok()?;
    for t in turns
        .iter()
        .filter(|t| t.role.as_deref() == Some("assistant"))
    {
        let Some(content) = t.content.filter(|c| c.get().starts_with('[')) else {
            continue;
        };
        let blocks: Vec<BlockRef<'_>> = serde_json::from_str(content.get()).ok()?;
        let nonempty =
            |s: &Option<std::borrow::Cow<'_, str>>| s.as_deref().is_some_and(|s| !s.is_empty());
        let bad = blocks.iter().any(|b| match b.kind.as_deref() {
            Some("thinking") => !nonempty(&b.signature),
            Some("redacted_thinking") => !nonempty(&b.data),
            _ => false,
        });
        if bad {
            return Some(false);
        }
    }
    Some(true)
}
