//! `yallmp replay`: resend a logged request (from a log file or the
//! database), print it as curl, or show what would be sent.

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::reqlog::file::LoggedRequest;

/// How to replay.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub base_url: Option<String>,
    pub model: Option<String>,
    /// `Some(true)` forces streaming on, `Some(false)` off, `None` as logged.
    pub stream: Option<bool>,
    pub timeout: Option<Duration>,
    pub api_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(
        "the logged request body was truncated (it was over the log's max_body_bytes); it cannot be replayed faithfully"
    )]
    Truncated,
    /// A multipart request (or a relayed upload): the log kept its fields
    /// and its parts' sizes, not the files.
    #[error(
        "a multipart/form-data request (an audio, image edit or file upload) cannot be replayed: the log keeps its form fields and its files' names and sizes, not their bytes"
    )]
    Multipart,
    #[error("no URL to send to: the log has no Host header; pass --base-url")]
    NoBaseUrl,
    #[error("--model/--stream-mode need a JSON object body: {0}")]
    NotJson(String),
    #[error("request failed: {0}")]
    Send(String),
}

/// The request to send.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Headers never resent: the transport sets them again.
const SKIP: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "accept-encoding",
    "keep-alive",
    "te",
    "upgrade",
];

pub fn prepare(logged: &LoggedRequest, opts: &Options) -> Result<Prepared, ReplayError> {
    if logged.body_truncated {
        return Err(ReplayError::Truncated);
    }
    let multipart = logged.headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("content-type") && v.to_ascii_lowercase().starts_with("multipart/")
    });
    if multipart {
        return Err(ReplayError::Multipart);
    }
    let base = match &opts.base_url {
        Some(b) => b.trim_end_matches('/').to_string(),
        None => logged
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("host"))
            .map(|(_, h)| format!("http://{h}"))
            .ok_or(ReplayError::NoBaseUrl)?,
    };
    let mut headers: Vec<(String, String)> = logged
        .headers
        .iter()
        .filter(|(k, _)| !SKIP.contains(&k.to_ascii_lowercase().as_str()))
        .cloned()
        .collect();
    if let Some(key) = &opts.api_key {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        headers.push(("authorization".into(), format!("Bearer {key}")));
    }
    let mut body = logged.body.clone();
    if opts.model.is_some() || opts.stream.is_some_and(|s| s != logged.stream) {
        let mut v: Value =
            serde_json::from_slice(&body).map_err(|e| ReplayError::NotJson(e.to_string()))?;
        let obj = v
            .as_object_mut()
            .ok_or_else(|| ReplayError::NotJson("not an object".into()))?;
        if let Some(m) = &opts.model {
            obj.insert("model".into(), Value::String(m.clone()));
        }
        if let Some(s) = opts.stream {
            obj.insert("stream".into(), Value::Bool(s));
        }
        body = serde_json::to_vec(&v).map_err(|e| ReplayError::NotJson(e.to_string()))?;
    }
    Ok(Prepared {
        method: logged.method.clone(),
        url: format!("{base}{}", logged.path),
        headers,
        body,
    })
}

/// Single-quotes a string for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// An equivalent curl command.
pub fn curl(p: &Prepared) -> String {
    let mut out = format!("curl -sS -N -X {} {}", p.method, shell_quote(&p.url));
    for (k, v) in &p.headers {
        out.push_str(" \\\n  -H ");
        out.push_str(&shell_quote(&format!("{k}: {v}")));
    }
    if !p.body.is_empty() {
        out.push_str(" \\\n  --data-binary ");
        out.push_str(&shell_quote(&String::from_utf8_lossy(&p.body)));
    }
    out
}

/// What would be sent, for `--dry-run`.
pub fn describe(p: &Prepared) -> String {
    let mut out = format!("{} {}\n", p.method, p.url);
    for (k, v) in &p.headers {
        out.push_str(&format!("{k}: {v}\n"));
    }
    out.push('\n');
    out.push_str(&String::from_utf8_lossy(&p.body));
    out.push('\n');
    out
}

/// Sends it and copies the response to `out` as it arrives. Returns the
/// status.
pub async fn send(
    p: &Prepared,
    timeout: Option<Duration>,
    out: &mut dyn Write,
) -> Result<u16, ReplayError> {
    let client = reqwest::Client::builder()
        .build()
        .map_err(|e| ReplayError::Send(e.to_string()))?;
    let method = reqwest::Method::from_bytes(p.method.as_bytes()).unwrap_or(reqwest::Method::POST);
    let mut req = client.request(method, &p.url).body(p.body.clone());
    for (k, v) in &p.headers {
        req = req.header(k, v);
    }
    let send = async {
        let resp = req
            .send()
            .await
            .map_err(|e| ReplayError::Send(crate::errors::error_chain(&e)))?;
        let status = resp.status().as_u16();
        eprintln!("HTTP {status}");
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ReplayError::Send(crate::errors::error_chain(&e)))?;
            let _ = out.write_all(&chunk);
            let _ = out.flush();
        }
        Ok(status)
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, send)
            .await
            .map_err(|_| ReplayError::Send(format!("no complete answer within {t:?}")))?,
        None => send.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged() -> LoggedRequest {
        LoggedRequest {
            id: "x".into(),
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            model: Some("m".into()),
            stream: false,
            headers: vec![
                ("host".into(), "127.0.0.1:7979".into()),
                ("content-type".into(), "application/json".into()),
                ("content-length".into(), "10".into()),
            ],
            body: br#"{"model":"m",  "x":"it's"}"#.to_vec(),
            body_truncated: false,
        }
    }

    #[test]
    fn as_logged_is_exact() {
        let p = prepare(&logged(), &Options::default()).unwrap();
        assert_eq!(p.url, "http://127.0.0.1:7979/v1/chat/completions");
        assert_eq!(p.body, logged().body);
        assert_eq!(
            p.headers,
            vec![("content-type".to_string(), "application/json".to_string())]
        );
    }

    #[test]
    fn a_multipart_request_says_it_cannot_be_replayed() {
        let mut l = logged();
        l.path = "/v1/audio/transcriptions".into();
        l.headers[1].1 = "multipart/form-data; boundary=x".into();
        l.body = br#"{"multipart":{"fields":{"model":"w"},"files":[]}}"#.to_vec();
        let e = prepare(&l, &Options::default()).unwrap_err();
        assert!(matches!(e, ReplayError::Multipart));
        assert!(e.to_string().contains("cannot be replayed"));
    }

    #[test]
    fn overrides() {
        let opts = Options {
            base_url: Some("http://h:1/".into()),
            model: Some("n".into()),
            stream: Some(true),
            api_key: Some("k".into()),
            ..Options::default()
        };
        let p = prepare(&logged(), &opts).unwrap();
        assert_eq!(p.url, "http://h:1/v1/chat/completions");
        let v: Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(
            (v["model"].as_str(), v["stream"].as_bool()),
            (Some("n"), Some(true))
        );
        assert!(
            p.headers
                .contains(&("authorization".into(), "Bearer k".into()))
        );
    }

    #[test]
    fn curl_quotes() {
        let p = prepare(&logged(), &Options::default()).unwrap();
        let c = curl(&p);
        assert!(
            c.contains(r#"--data-binary '{"model":"m",  "x":"it'\''s"}'"#),
            "{c}"
        );
    }
}
