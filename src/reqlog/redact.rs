//! Keeping secrets out of the log: credential headers and secret-named body
//! fields become `***`, and every known secret value (backend keys) is
//! scrubbed from whatever text is about to be written.

use http::HeaderMap;
use serde_json::{Map, Value};

use crate::config::Config;

pub const MASK: &str = "***";

/// Header names whose values are always masked.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-amz-security-token",
    "cookie",
    "set-cookie",
];

/// Whether a header or field name looks like it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    if SECRET_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
        return true;
    }
    // Lower case with `-` as `_`, on the stack for ordinary names (this runs
    // for every header of every logged request).
    let mut buf = [0u8; 64];
    let owned;
    let n: &[u8] = if name.len() <= buf.len() {
        for (d, s) in buf.iter_mut().zip(name.bytes()) {
            *d = if s == b'-' {
                b'_'
            } else {
                s.to_ascii_lowercase()
            };
        }
        &buf[..name.len()]
    } else {
        owned = name.to_ascii_lowercase().replace('-', "_");
        owned.as_bytes()
    };
    // Names are short: a plain scan beats building a SIMD searcher.
    let has = |w: &[u8]| n.windows(w.len()).any(|x| x == w);
    has(b"api_key")
        || has(b"apikey")
        || has(b"password")
        || has(b"passwd")
        || has(b"secret")
        || n.ends_with(b"_key") && !n.ends_with(b"cache_key") && !n.ends_with(b"idempotency_key")
        || n == b"key"
        || n.ends_with(b"access_token")
        || n.ends_with(b"refresh_token")
        || n.ends_with(b"auth_token")
        || n == b"token"
        || n.ends_with(b"_auth")
        || n == b"auth"
}

/// Headers as a JSON object (name → value or list of values), secrets masked.
pub fn headers(map: &HeaderMap) -> Value {
    let mut out = Map::new();
    for name in map.keys() {
        let masked = is_secret_name(name.as_str());
        let values: Vec<Value> = map
            .get_all(name)
            .iter()
            .map(|v| {
                if masked {
                    Value::String(MASK.into())
                } else {
                    Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned())
                }
            })
            .collect();
        let v = if values.len() == 1 {
            values.into_iter().next().unwrap_or(Value::Null)
        } else {
            Value::Array(values)
        };
        out.insert(name.as_str().to_string(), v);
    }
    Value::Object(out)
}

/// Appends headers as the JSON object [`headers`] makes (same keys, order
/// and masking), written straight into `out`.
pub fn write_headers(out: &mut String, map: &HeaderMap) {
    out.push('{');
    for (n, name) in map.keys().enumerate() {
        if n > 0 {
            out.push(',');
        }
        super::json::str(out, name.as_str());
        out.push(':');
        let masked = is_secret_name(name.as_str());
        let value = |out: &mut String, v: &http::HeaderValue| {
            if masked {
                super::json::str(out, MASK);
            } else {
                super::json::bytes(out, v.as_bytes());
            }
        };
        let mut values = map.get_all(name).iter();
        let Some(first) = values.next() else {
            out.push_str("null");
            continue;
        };
        match values.next() {
            None => value(out, first),
            Some(second) => {
                out.push('[');
                value(out, first);
                out.push(',');
                value(out, second);
                for v in values {
                    out.push(',');
                    value(out, v);
                }
                out.push(']');
            }
        }
    }
    out.push('}');
}

/// Masks secret-named fields anywhere in a JSON value; true if it changed.
pub fn json_fields(v: &mut Value) -> bool {
    match v {
        Value::Object(map) => {
            let mut changed = false;
            for (k, val) in map.iter_mut() {
                if is_secret_name(k)
                    && !val.is_null()
                    && !matches!(val, Value::Object(_) | Value::Array(_))
                {
                    *val = Value::String(MASK.into());
                    changed = true;
                } else {
                    changed |= json_fields(val);
                }
            }
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |c, i| json_fields(i) | c),
        _ => false,
    }
}

/// The body text to log: the original bytes unless a secret-named field had
/// to be masked (then the re-serialized, masked JSON).
pub fn body(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !may_hold_secret(bytes) {
        return bytes.into();
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(bytes) else {
        return bytes.into();
    };
    if json_fields(&mut v) {
        serde_json::to_vec(&v).map_or(bytes.into(), Into::into)
    } else {
        bytes.into()
    }
}

/// A cheap test before parsing: does a key name that looks like a secret
/// occur at all? Object keys end with a quote, so `max_tokens"` does not
/// match `_token"` and ordinary chat bodies are never parsed here. One pass
/// over the quotes, each checked against the endings.
fn may_hold_secret(bytes: &[u8]) -> bool {
    const ENDINGS: &[&[u8]] = &[
        b"key\"",
        b"Key\"",
        b"KEY\"",
        b"ssword\"",
        b"SSWORD\"",
        b"asswd\"",
        b"ecret\"",
        b"ECRET\"",
        b"_token\"",
        b"Token\"",
        b"\"token\"",
        b"auth\"",
        b"Auth\"",
        b"AUTH\"",
        b"authorization\"",
        b"Authorization\"",
    ];
    memchr::memchr_iter(b'"', bytes).any(|i| {
        let upto = &bytes[..=i];
        ENDINGS.iter().any(|w| upto.ends_with(w))
    })
}

/// Known secret values, scrubbed from all logged text.
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    secrets: Vec<String>,
    /// One searcher per secret, built once (the writer scrubs every record).
    finders: Vec<memchr::memmem::Finder<'static>>,
}

impl Scrubber {
    /// Every backend key in the config, a password in a backend's
    /// `api_base` (`https://user:pw@host`), the admin password and the
    /// database password.
    pub fn from_config(config: &Config) -> Scrubber {
        let mut secrets: Vec<String> = Vec::new();
        for b in config.models.iter().flat_map(|m| m.backends.iter()) {
            if let Some(k) = &b.api_key {
                secrets.push(k.expose().to_string());
            }
            if let Some(aws) = &b.bedrock {
                secrets.extend(aws.secrets().into_iter().map(str::to_string));
            }
            if let Ok(url) = reqwest::Url::parse(&b.api_base)
                && let Some(pw) = url.password()
            {
                // As written in the URL and decoded.
                secrets.push(pw.to_string());
                if let Ok(decoded) = percent_decode(pw) {
                    secrets.push(decoded);
                }
            }
        }
        if let Some(pw) = &config.auth.admin_password {
            secrets.push(pw.expose().to_string());
        }
        if let crate::config::DatabaseTarget::Postgres(p) = &config.database.target
            && let Some(pw) = &p.password
        {
            secrets.push(pw.expose().to_string());
        }
        Scrubber::new(secrets)
    }

    /// A scrubber for these values (short ones are left out: they would
    /// mask ordinary words; keys are long).
    pub fn new(mut secrets: Vec<String>) -> Scrubber {
        secrets.retain(|s| s.len() >= 6);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        let finders = secrets
            .iter()
            .map(|s| memchr::memmem::Finder::new(s.as_bytes()).into_owned())
            .collect();
        Scrubber { secrets, finders }
    }

    /// Whether `text` holds a known secret.
    pub fn finds(&self, text: &str) -> bool {
        self.finders
            .iter()
            .any(|f| f.find(text.as_bytes()).is_some())
    }

    /// `text` with every known secret replaced by `***` (the same string,
    /// not copied, when it holds none).
    pub fn scrub(&self, text: String) -> String {
        if !self.finds(&text) {
            return text;
        }
        let mut out = text;
        // Longest first, so a secret that contains another is masked whole.
        for (s, f) in self.secrets.iter().zip(&self.finders) {
            if f.find(out.as_bytes()).is_some() {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }

    /// Upstream text on its way to a client or to stderr (an error body, an
    /// attempt's error): every known secret, then anything that looks like
    /// a credential (`sk-…`, `AIza…`, `Bearer …`; see [`mask_patterns`]),
    /// becomes `***`.
    pub fn scrub_upstream(&self, text: String) -> String {
        let text = self.scrub(text);
        match mask_patterns(text.as_bytes()) {
            // Only whole ASCII tokens are replaced, so the text stays UTF-8.
            Some(masked) => String::from_utf8(masked).unwrap_or(text),
            None => text,
        }
    }

    /// [`scrub_upstream`](Self::scrub_upstream) for bytes (a body that may
    /// not be UTF-8); the same bytes, not copied, when nothing is masked.
    pub fn scrub_upstream_bytes(&self, bytes: bytes::Bytes) -> bytes::Bytes {
        let mut changed: Option<Vec<u8>> = None;
        if self.finders.iter().any(|f| f.find(&bytes).is_some()) {
            let mut out = bytes.to_vec();
            for (s, f) in self.secrets.iter().zip(&self.finders) {
                if f.find(&out).is_some() {
                    out = replace_all(&out, f, s.len());
                }
            }
            changed = Some(out);
        }
        let current: &[u8] = changed.as_deref().unwrap_or(&bytes);
        if let Some(masked) = mask_patterns(current) {
            changed = Some(masked);
        }
        match changed {
            Some(v) => bytes::Bytes::from(v),
            None => bytes,
        }
    }
}

/// `hay` with every match of `f` (a needle `len` bytes long) replaced by
/// [`MASK`].
fn replace_all(hay: &[u8], f: &memchr::memmem::Finder<'_>, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut at = 0;
    for i in f.find_iter(hay) {
        if i < at {
            continue;
        }
        out.extend_from_slice(&hay[at..i]);
        out.extend_from_slice(MASK.as_bytes());
        at = i + len;
    }
    out.extend_from_slice(&hay[at..]);
    out
}

/// `%XX` escapes decoded (a password in a URL's userinfo).
fn percent_decode(s: &str) -> Result<String, std::string::FromUtf8Error> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
}

/// Characters of a key or token: what `sk-…`, `AIza…` and bearer tokens
/// are made of.
fn token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'=')
}

/// Credential-looking tokens in upstream text masked, whatever their value
/// (an upstream quoting a key the proxy does not know, such as a client's
/// own key passed through): `sk-` followed by 8 or more key characters
/// (OpenAI, Anthropic and most OpenAI-compatible providers), `AIza` and
/// 30 or more (Google), and the token after `Bearer ` (8 or more
/// characters with a digit or punctuation, so `Bearer authentication`
/// stays). `None` when there is nothing to mask.
pub fn mask_patterns(text: &[u8]) -> Option<Vec<u8>> {
    // Cheap test first: most text holds none of the markers.
    let has = |n: &[u8]| memchr::memmem::find(text, n).is_some();
    if !has(b"sk-") && !has(b"AIza") && !has(b"earer") && !has(b"EARER") {
        return None;
    }
    let key_byte = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_');
    let run =
        |from: usize, ok: &dyn Fn(u8) -> bool| text[from..].iter().take_while(|c| ok(**c)).count();
    let mut out = Vec::with_capacity(text.len());
    let mut changed = false;
    let mut i = 0;
    while i < text.len() {
        let boundary = i == 0 || !text[i - 1].is_ascii_alphanumeric();
        let rest = &text[i..];
        if boundary && rest.starts_with(b"sk-") {
            let n = run(i + 3, &key_byte);
            if n >= 8 {
                out.extend_from_slice(MASK.as_bytes());
                i += 3 + n;
                changed = true;
                continue;
            }
        }
        if boundary && rest.starts_with(b"AIza") {
            let n = run(i + 4, &key_byte);
            if n >= 30 {
                out.extend_from_slice(MASK.as_bytes());
                i += 4 + n;
                changed = true;
                continue;
            }
        }
        if boundary && rest.len() > 7 && rest[..6].eq_ignore_ascii_case(b"bearer") {
            let spaces = rest[6..].iter().take_while(|c| **c == b' ').count();
            if spaces > 0 {
                let start = i + 6 + spaces;
                let n = run(start, &token_byte);
                let token = &text[start..start + n];
                if n >= 8 && token.iter().any(|c| !c.is_ascii_alphabetic()) {
                    out.extend_from_slice(&text[i..start]);
                    out.extend_from_slice(MASK.as_bytes());
                    i = start + n;
                    changed = true;
                    continue;
                }
            }
        }
        out.push(text[i]);
        i += 1;
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn names() {
        for n in [
            "Authorization",
            "x-api-key",
            "api_key",
            "OPENAI_API_KEY",
            "password",
            "client_secret",
            "access_token",
            "key",
            "x-goog-api-key",
        ] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in [
            "max_tokens",
            "model",
            "prompt_cache_key",
            "tokens",
            "content-type",
            "keywords",
            "monkey",
        ] {
            assert!(!is_secret_name(n), "{n}");
        }
    }

    #[test]
    fn headers_masked() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer sk-1"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let v = headers(&h);
        assert_eq!(v["authorization"], MASK);
        assert_eq!(v["content-type"], "application/json");
    }

    #[test]
    fn written_headers_equal_the_value_form() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer sk-1"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.append("x-multi", HeaderValue::from_static("a"));
        h.append("x-multi", HeaderValue::from_static("b \"q\""));
        h.append("x-multi", HeaderValue::from_static("c"));
        h.append("set-cookie", HeaderValue::from_static("s=1"));
        h.append("set-cookie", HeaderValue::from_static("t=2"));
        h.insert("x-bin", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let mut out = String::new();
        write_headers(&mut out, &h);
        assert_eq!(out, headers(&h).to_string());
        let mut out = String::new();
        write_headers(&mut out, &HeaderMap::new());
        assert_eq!(out, "{}");
    }

    #[test]
    fn long_names_are_checked_too() {
        let long = format!("x-{}-api-key", "a".repeat(80));
        assert!(is_secret_name(&long));
        assert!(!is_secret_name(&"a".repeat(100)));
        assert!(is_secret_name("Proxy-Authorization"));
        assert!(is_secret_name("X-Refresh-Token"));
    }

    #[test]
    fn body_fields_masked_and_untouched_otherwise() {
        let raw = br#"{"model":"m","max_tokens":5}"#;
        assert_eq!(&*body(raw), raw);
        let raw = br#"{"model":"m","metadata":{"api_key":"sk-1","password":"p"},"max_tokens":5}"#;
        let out: Value = serde_json::from_slice(&body(raw)).unwrap();
        assert_eq!(out["metadata"]["api_key"], MASK);
        assert_eq!(out["metadata"]["password"], MASK);
        assert_eq!(out["max_tokens"], 5);
    }

    #[test]
    fn cheap_test_skips_ordinary_bodies() {
        assert!(!may_hold_secret(
            br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"my key is"}]}"#
        ));
        assert!(may_hold_secret(br#"{"api_key":"x"}"#));
        assert!(may_hold_secret(br#"{"access_token":"x"}"#));
        assert!(may_hold_secret(br#"{"Password":"x"}"#));
        assert!(may_hold_secret(br#"{"token":"x"}"#));
        assert!(may_hold_secret(br#"{"a":{"Authorization":"x"}}"#));
        assert!(may_hold_secret(br#"{"AUTH":1}"#));
        assert!(!may_hold_secret(br#"{"tokens":1,"monkey_business":2}"#));
        assert!(!may_hold_secret(b""));
    }

    #[test]
    fn scrubber() {
        let s = Scrubber::new(vec!["sk-very-secret".into(), "short".into()]);
        assert_eq!(s.scrub("a sk-very-secret b".into()), "a *** b");
        assert_eq!(s.scrub("clean short".into()), "clean short");
        assert!(s.finds("xsk-very-secretx"));
        assert!(!Scrubber::default().finds("sk-very-secret"));
        // The longer of two overlapping secrets is masked whole.
        let s = Scrubber::new(vec!["sk-abcdef".into(), "sk-abcdef-long".into()]);
        assert_eq!(s.scrub("k=sk-abcdef-long;".into()), "k=***;");
    }

    #[test]
    fn upstream_text_loses_known_secrets_and_key_patterns() {
        let s = Scrubber::new(vec!["my-backend-key-1234".into()]);
        assert_eq!(
            s.scrub_upstream("Incorrect API key provided: Bearer my-backend-key-1234.".into()),
            "Incorrect API key provided: Bearer ***."
        );
        let quoted = "bad key sk-proj-AbC123xyz_987 and AIzaSyA1234567890abcdefghijklmnopqrstu";
        assert_eq!(
            Scrubber::default().scrub_upstream(quoted.into()),
            "bad key *** and ***"
        );
        assert_eq!(
            Scrubber::default().scrub_upstream("authorization: BEARER abc.def.ghi-123 x".into()),
            "authorization: BEARER *** x"
        );
        // Ordinary words stay.
        for text in [
            "Bearer authentication is required",
            "task-1234567890 failed",
            "risk-assessment",
            "sk-short",
            "OpenAI's masked form sk-abc12***xyz",
            "héllo wörld",
        ] {
            assert_eq!(Scrubber::default().scrub_upstream(text.into()), text);
        }
        let body = bytes::Bytes::from_static(
            b"{\"error\":{\"message\":\"Incorrect API key provided: Bearer my-backend-key-1234\"}}",
        );
        let out = s.scrub_upstream_bytes(body);
        assert_eq!(
            &out[..],
            &b"{\"error\":{\"message\":\"Incorrect API key provided: Bearer ***\"}}"[..]
        );
        // Not UTF-8, with a key pattern: masked all the same.
        let out = Scrubber::default()
            .scrub_upstream_bytes(bytes::Bytes::from_static(b"\xff sk-0123456789abcdef \xfe"));
        assert_eq!(&out[..], &b"\xff *** \xfe"[..]);
        let clean = bytes::Bytes::from_static(b"{\"error\":\"nothing\"}");
        assert_eq!(
            s.scrub_upstream_bytes(clean.clone()).as_ptr(),
            clean.as_ptr()
        );
    }

    #[test]
    fn config_secrets_include_admin_password_and_url_passwords() {
        let c = crate::Config::from_yaml(
            "model_list:\n  - {model_name: m, model_params: {api_base: 'http://u:p%40ssw0rd!@b/v1', api_key: 'backend-key-123'}}\nproxy_settings: {auth: {admin_password: 'admin-pw-456'}}\n",
            None,
            &crate::config::Env::isolated::<[(&str, &str); 0], _, _>([]),
        )
        .unwrap();
        let s = Scrubber::from_config(&c);
        assert_eq!(
            s.scrub("backend-key-123 admin-pw-456 p@ssw0rd! p%40ssw0rd!".into()),
            "*** *** *** ***"
        );
    }
}
