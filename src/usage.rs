//! Token usage as backends report it: the `usage` object of a JSON answer,
//! or of the stream event that carries one. Read on the request path (for
//! `yallmp_tokens_total` and tokens-per-minute limits) and by the request
//! log's writer, with the same rules.
//!
//! Names understood: OpenAI's `prompt_tokens`/`completion_tokens`, and the
//! Responses and Anthropic-like `input_tokens`/`output_tokens`. In a stream,
//! a frame is parsed only when it holds a `"usage"` key whose value is an
//! object (found with `memmem`, so the usual content chunks, and the
//! `"usage": null` OpenAI puts in every chunk, cost a byte scan).

use memchr::memmem;
use serde::Serialize;
use serde_json::Value;

/// Token usage the backend reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    /// Input tokens read from the provider's prompt cache (OpenAI's
    /// `*_tokens_details.cached_tokens`, Anthropic's
    /// `cache_read_input_tokens`), billed at the cached rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<i64>,
    /// Input tokens written to the prompt cache (Anthropic's
    /// `cache_creation_input_tokens`), billed at the cache-write rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<i64>,
    /// Output tokens spent reasoning (`*_tokens_details.reasoning_tokens`),
    /// part of the output tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<i64>,
    /// Whether `prompt_tokens` leaves the cache reads and writes out
    /// (Anthropic's counting) rather than including them (OpenAI's).
    #[serde(skip)]
    pub cache_apart: bool,
}

impl Usage {
    /// From an OpenAI `usage` object (chat, embeddings or Responses names).
    pub fn from_value(u: &Value) -> Option<Usage> {
        let get = |keys: &[&str]| keys.iter().find_map(|k| u.get(*k).and_then(Value::as_i64));
        let detail = |objects: &[&str], key: &str| {
            objects
                .iter()
                .find_map(|o| u.get(*o).and_then(|d| d.get(key)).and_then(Value::as_i64))
        };
        let cache_read = get(&["cache_read_input_tokens"]);
        let cache_write = get(&["cache_creation_input_tokens"]);
        let usage = Usage {
            prompt_tokens: get(&["prompt_tokens", "input_tokens"]),
            completion_tokens: get(&["completion_tokens", "output_tokens"]),
            total_tokens: get(&["total_tokens"]),
            cached_tokens: cache_read.or_else(|| {
                detail(
                    &["prompt_tokens_details", "input_tokens_details"],
                    "cached_tokens",
                )
            }),
            cache_write_tokens: cache_write,
            reasoning_tokens: detail(
                &["completion_tokens_details", "output_tokens_details"],
                "reasoning_tokens",
            ),
            cache_apart: cache_read.is_some() || cache_write.is_some(),
        };
        (usage != Usage::default()).then_some(usage)
    }

    /// A whole answer read once: `Err` when it is not JSON, else its
    /// `usage` (the router's check that a success is JSON and the usage the
    /// answer is charged for, in one pass over the body).
    pub fn from_json_answer(body: &[u8]) -> Result<Option<Usage>, NotJson> {
        #[derive(serde::Deserialize)]
        struct Top {
            #[serde(default)]
            usage: Option<Typed>,
        }
        match serde_json::from_slice::<Top>(body) {
            Ok(top) => Ok(top.usage.and_then(Typed::usage)),
            // Not an object, a repeated key, a `usage` of another shape:
            // checked, then read the long way.
            Err(_) => match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => Ok(Usage::from_body(body)),
                Err(_) => Err(NotJson),
            },
        }
    }

    /// The `usage` of a whole JSON answer; only that member is read, the
    /// rest skipped over.
    pub fn from_body(body: &[u8]) -> Option<Usage> {
        if !has_usage_object(body) {
            return None;
        }
        #[derive(serde::Deserialize)]
        struct Top<'a> {
            #[serde(borrow, default)]
            usage: Option<&'a serde_json::value::RawValue>,
        }
        match serde_json::from_slice::<Top>(body) {
            Ok(top) => top
                .usage
                .and_then(|u| serde_json::from_str::<Value>(u.get()).ok())
                .and_then(|u| Usage::from_value(&u)),
            // Not an object, a repeated key...: read it the long way.
            Err(_) => serde_json::from_slice::<Value>(body)
                .ok()?
                .get("usage")
                .and_then(Usage::from_value),
        }
    }

    /// The usage one SSE frame carries: a chat chunk's `usage`, a Responses
    /// event's `response.usage`, an Anthropic `message_start`'s
    /// `message.usage`.
    pub fn from_frame(frame: &[u8]) -> Option<Usage> {
        if !has_usage_object(frame) {
            return None;
        }
        let data = crate::sse::parse(frame).data?;
        // Read straight into the counts; a frame of another shape is read
        // the long way.
        #[derive(serde::Deserialize)]
        struct Inner {
            #[serde(default)]
            usage: Option<Typed>,
        }
        #[derive(serde::Deserialize)]
        struct Frame {
            #[serde(default)]
            usage: Option<Typed>,
            #[serde(default)]
            response: Option<Inner>,
            #[serde(default)]
            message: Option<Inner>,
        }
        if let Ok(f) = serde_json::from_str::<Frame>(&data) {
            return match (f.usage, f.response.and_then(|r| r.usage)) {
                (Some(u), _) | (None, Some(u)) => u.usage(),
                (None, None) => f.message.and_then(|m| m.usage).and_then(Typed::usage),
            };
        }
        let v: Value = serde_json::from_str(&data).ok()?;
        v.get("usage")
            .filter(|u| u.is_object())
            .or_else(|| v.pointer("/response/usage"))
            .or_else(|| v.pointer("/message/usage"))
            .and_then(Usage::from_value)
    }

    /// `later` over `self`, field by field: a stream may report input
    /// tokens early and output tokens at the end.
    pub fn merge(self, later: Usage) -> Usage {
        Usage {
            prompt_tokens: later.prompt_tokens.or(self.prompt_tokens),
            completion_tokens: later.completion_tokens.or(self.completion_tokens),
            total_tokens: later.total_tokens.or(self.total_tokens),
            cached_tokens: later.cached_tokens.or(self.cached_tokens),
            cache_write_tokens: later.cache_write_tokens.or(self.cache_write_tokens),
            reasoning_tokens: later.reasoning_tokens.or(self.reasoning_tokens),
            cache_apart: later.cache_apart || self.cache_apart,
        }
    }

    /// Input tokens billed at the full input rate: the input less what was
    /// read from or written to the cache (when those are counted in it).
    pub fn uncached_input(&self) -> u64 {
        if self.cache_apart {
            return self.input();
        }
        self.input()
            .saturating_sub(clamp(self.cached_tokens))
            .saturating_sub(clamp(self.cache_write_tokens))
    }

    /// Cache reads (0 when not reported).
    pub fn cache_read(&self) -> u64 {
        clamp(self.cached_tokens)
    }

    /// Cache writes (0 when not reported).
    pub fn cache_write(&self) -> u64 {
        clamp(self.cache_write_tokens)
    }

    /// Reasoning tokens (0 when not reported), at most the output.
    pub fn reasoning(&self) -> u64 {
        clamp(self.reasoning_tokens).min(self.output())
    }

    /// Input tokens (0 when not reported).
    pub fn input(&self) -> u64 {
        self.prompt_tokens.map_or(0, |n| n.max(0) as u64)
    }

    /// Output tokens (0 when not reported).
    pub fn output(&self) -> u64 {
        self.completion_tokens.map_or(0, |n| n.max(0) as u64)
    }

    /// Input plus output, or the reported total when neither is given.
    pub fn total(&self) -> u64 {
        match (self.prompt_tokens, self.completion_tokens) {
            (None, None) => self.total_tokens.map_or(0, |n| n.max(0) as u64),
            _ => self.input() + self.output(),
        }
    }
}

fn clamp(n: Option<i64>) -> u64 {
    n.map_or(0, |n| n.max(0) as u64)
}

/// The usage of a stream so far, frame by frame.
#[derive(Debug, Default, Clone, Copy)]
pub struct StreamUsage {
    seen: Option<Usage>,
}

impl StreamUsage {
    pub fn on_frame(&mut self, frame: &[u8]) {
        if let Some(u) = Usage::from_frame(frame) {
            self.seen = Some(match self.seen {
                Some(prev) => prev.merge(u),
                None => u,
            });
        }
    }

    /// What the stream reported, if anything.
    pub fn get(&self) -> Option<Usage> {
        self.seen
    }
}

/// A whole answer that is not JSON ([`Usage::from_json_answer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotJson;

/// A `usage` object read straight into its counts (no `Value` tree), with
/// the rules of [`Usage::from_value`]: the first name present as an
/// integer wins; anything else is no count.
#[derive(serde::Deserialize)]
struct Typed {
    #[serde(default)]
    prompt_tokens: Count,
    #[serde(default)]
    input_tokens: Count,
    #[serde(default)]
    completion_tokens: Count,
    #[serde(default)]
    output_tokens: Count,
    #[serde(default)]
    total_tokens: Count,
    #[serde(default)]
    cache_read_input_tokens: Count,
    #[serde(default)]
    cache_creation_input_tokens: Count,
    #[serde(default)]
    prompt_tokens_details: Details,
    #[serde(default)]
    input_tokens_details: Details,
    #[serde(default)]
    completion_tokens_details: Details,
    #[serde(default)]
    output_tokens_details: Details,
}

impl Typed {
    fn usage(self) -> Option<Usage> {
        let cache_read = self.cache_read_input_tokens.0;
        let cache_write = self.cache_creation_input_tokens.0;
        let usage = Usage {
            prompt_tokens: self.prompt_tokens.0.or(self.input_tokens.0),
            completion_tokens: self.completion_tokens.0.or(self.output_tokens.0),
            total_tokens: self.total_tokens.0,
            cached_tokens: cache_read
                .or(self.prompt_tokens_details.cached_tokens.0)
                .or(self.input_tokens_details.cached_tokens.0),
            cache_write_tokens: cache_write,
            reasoning_tokens: self
                .completion_tokens_details
                .reasoning_tokens
                .0
                .or(self.output_tokens_details.reasoning_tokens.0),
            cache_apart: cache_read.is_some() || cache_write.is_some(),
        };
        (usage != Usage::default()).then_some(usage)
    }
}

/// `*_tokens_details`: an object with the counts, else nothing.
#[derive(Default)]
struct Details {
    cached_tokens: Count,
    reasoning_tokens: Count,
}

impl<'de> serde::Deserialize<'de> for Details {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Details;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Details, A::Error> {
                let mut out = Details::default();
                while let Some(key) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "cached_tokens" => out.cached_tokens = m.next_value()?,
                        "reasoning_tokens" => out.reasoning_tokens = m.next_value()?,
                        _ => {
                            m.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<Details, A::Error> {
                while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Details::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<Details, E> {
                Ok(Details::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Details, E> {
                Ok(Details::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Details, E> {
                Ok(Details::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Details, E> {
                Ok(Details::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<Details, E> {
                Ok(Details::default())
            }
            fn visit_unit<E>(self) -> Result<Details, E> {
                Ok(Details::default())
            }
            fn visit_none<E>(self) -> Result<Details, E> {
                Ok(Details::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// A count: an integer that fits `i64` (as `Value::as_i64` reads it),
/// else nothing (a float, a string, null, an object).
#[derive(Default)]
struct Count(Option<i64>);

impl<'de> serde::Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Count, E> {
                Ok(Count(Some(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Count, E> {
                Ok(Count(i64::try_from(v).ok()))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_none<E>(self) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Count, A::Error> {
                while m
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Count(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Count, A::Error> {
                while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Count(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether `bytes` hold `"usage"` followed by `:` and an object.
fn has_usage_object(bytes: &[u8]) -> bool {
    // Built once: a searcher costs more to build than a frame to scan.
    static KEY: std::sync::LazyLock<memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memmem::Finder::new(b"\"usage\""));
    let key = &*KEY;
    key.find_iter(bytes).any(|at| {
        let mut rest = bytes[at + 7..].iter().copied();
        let mut colon = false;
        for b in rest.by_ref() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => {}
                b':' if !colon => colon = true,
                b'{' => return colon,
                _ => return false,
            }
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_usage_read_straight_agrees_with_the_value_tree() {
        // The rules as the `Value` reading had them.
        fn by_value(frame: &[u8]) -> Option<Usage> {
            let data = crate::sse::parse(frame).data?;
            let v: Value = serde_json::from_str(&data).ok()?;
            v.get("usage")
                .filter(|u| u.is_object())
                .or_else(|| v.pointer("/response/usage"))
                .or_else(|| v.pointer("/message/usage"))
                .and_then(Usage::from_value)
        }
        let frames: [&[u8]; 9] = [
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n",
            b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n",
            b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1,\"input_tokens_details\":{\"cached_tokens\":2}}}}\n\n",
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"cache_read_input_tokens\":4}}}\n\n",
            b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\n\n",
            b"data: {\"usage\":{\"prompt_tokens\":1},\"response\":\"text\"}\n\n",
            b"data: {\"usage\":5,\"message\":{\"usage\":{\"input_tokens\":2}}}\n\n",
            b"data: [DONE]\n\n",
            b"data: {\"usage\":{\"prompt_tokens\":1},\"usage\":{\"prompt_tokens\":4}}\n\n",
        ];
        for f in frames {
            assert_eq!(
                Usage::from_frame(f),
                by_value(f),
                "{}",
                String::from_utf8_lossy(f)
            );
        }
    }

    #[test]
    fn body_usage_in_both_namings() {
        let openai =
            br#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        let u = Usage::from_body(openai).unwrap();
        assert_eq!((u.input(), u.output(), u.total()), (3, 2, 5));
        let anthropic = br#"{"usage": {"input_tokens": 7, "output_tokens": 4}}"#;
        let u = Usage::from_body(anthropic).unwrap();
        assert_eq!((u.input(), u.output(), u.total()), (7, 4, 11));
        assert_eq!(Usage::from_body(br#"{"usage":null}"#), None);
        assert_eq!(Usage::from_body(br#"{"id":"no usage"}"#), None);
        assert_eq!(Usage::from_body(b"not json"), None);
        // The one-pass reader agrees, and tells JSON from not.
        let bodies: [&[u8]; 8] = [
            &openai[..],
            &anthropic[..],
            br#"{"usage":null}"#,
            br#"{"id":"no usage"}"#,
            br#"{"usage":{"prompt_tokens":1.5,"input_tokens":3,"completion_tokens":"x","output_tokens":{"a":1},"prompt_tokens_details":null,"input_tokens_details":{"cached_tokens":2},"completion_tokens_details":[1],"output_tokens_details":{"reasoning_tokens":4,"x":[1,{"y":2}]}}}"#,
            br#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#,
            br#"[{"usage":{"prompt_tokens":1}}]"#,
            br#"{"usage":{"prompt_tokens":18446744073709551615,"total_tokens":-3}}"#,
        ];
        for body in bodies {
            assert_eq!(
                Usage::from_json_answer(body),
                Ok(Usage::from_body(body)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(Usage::from_json_answer(b"not json"), Err(NotJson));
        assert_eq!(Usage::from_json_answer(br#"{"usage":{"#), Err(NotJson));
        // A string mentioning usage is not usage.
        assert_eq!(Usage::from_body(br#"{"x":"\"usage\": {"}"#), None);
    }

    #[test]
    fn cache_and_reasoning_details_in_each_dialect() {
        let chat = br#"{"usage":{"prompt_tokens":100,"completion_tokens":50,"total_tokens":150,
            "prompt_tokens_details":{"cached_tokens":60},"completion_tokens_details":{"reasoning_tokens":20}}}"#;
        let u = Usage::from_body(chat).unwrap();
        assert_eq!(
            (u.uncached_input(), u.cache_read(), u.reasoning()),
            (40, 60, 20)
        );
        let responses = br#"{"usage":{"input_tokens":10,"output_tokens":5,
            "input_tokens_details":{"cached_tokens":4},"output_tokens_details":{"reasoning_tokens":3}}}"#;
        let u = Usage::from_body(responses).unwrap();
        assert_eq!(
            (u.uncached_input(), u.cache_read(), u.reasoning()),
            (6, 4, 3)
        );
        // Anthropic counts cache reads and writes apart from input_tokens.
        let messages = br#"{"usage":{"input_tokens":10,"output_tokens":5,
            "cache_read_input_tokens":1000,"cache_creation_input_tokens":200}}"#;
        let u = Usage::from_body(messages).unwrap();
        assert_eq!(
            (u.uncached_input(), u.cache_read(), u.cache_write()),
            (10, 1000, 200)
        );
        // Serialized as before when there are no details.
        let plain = Usage::from_body(br#"{"usage":{"prompt_tokens":1,"completion_tokens":2}}"#);
        assert_eq!(
            serde_json::to_value(plain.unwrap()).unwrap(),
            serde_json::json!({"prompt_tokens":1,"completion_tokens":2,"total_tokens":null})
        );
    }

    #[test]
    fn stream_frames_merge() {
        let mut s = StreamUsage::default();
        s.on_frame(b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n");
        assert_eq!(s.get(), None);
        s.on_frame(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n");
        s.on_frame(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n");
        let u = s.get().unwrap();
        assert_eq!((u.input(), u.output()), (10, 15));

        let mut s = StreamUsage::default();
        s.on_frame(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":6,\"total_tokens\":10}}\n\n");
        s.on_frame(b"data: [DONE]\n\n");
        assert_eq!(s.get().map(|u| u.total()), Some(10));

        let mut s = StreamUsage::default();
        s.on_frame(b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":2,\"output_tokens\":3}}}\n\n");
        assert_eq!(s.get().map(|u| u.total()), Some(5));
    }
}
