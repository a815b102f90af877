//! `multipart/form-data` request bodies (audio transcriptions and
//! translations, image edits): read once from the client, part by part
//! (multer), within `max_body_bytes`; the parts' bytes kept in memory up to
//! [`MEMORY_THRESHOLD`] and spooled past it to a private temporary file (an
//! unnamed file, mode 0600, gone when the request ends), so that every
//! attempt (retries, fallbacks) sends the same bytes again without the
//! body ever being held whole in memory.
//!
//! The body sent upstream is written again from the parts with the
//! client's boundary and each part's own headers: the parts' bytes are
//! exactly the client's; only the `model` field's value may differ (a
//! backend's own model name).

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;

/// The parts' bytes kept in memory, all parts together; past it they go to
/// the spool file.
pub const MEMORY_THRESHOLD: usize = 1024 * 1024;

/// The longest text field value the request log (and the stub) keeps.
const LOGGED_FIELD: usize = 4096;

/// A text field kept in memory whatever the threshold.
const TEXT_FIELD: usize = 64 * 1024;

/// How much of the spool is read at a time when a body is sent.
const READ_CHUNK: usize = 64 * 1024;

/// Why a form could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    #[error("the body is larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("not a multipart/form-data body: {0}")]
    NotMultipart(String),
    #[error("bad multipart body: {0}")]
    Malformed(String),
    #[error("reading the body: {0}")]
    Read(String),
    /// The client stopped sending (`server.body_read_timeout`).
    #[error("{0}")]
    Timeout(crate::conn::BodyTimeout),
    #[error("spooling the body to a temporary file: {0}")]
    Spool(String),
}

/// Where a part's bytes are.
#[derive(Debug, Clone)]
enum Data {
    Memory(Bytes),
    /// A range of the spool file.
    Spooled {
        offset: u64,
        len: u64,
    },
}

impl Data {
    fn len(&self) -> u64 {
        match self {
            Data::Memory(b) => b.len() as u64,
            Data::Spooled { len, .. } => *len,
        }
    }
}

/// One part of the form.
#[derive(Debug, Clone)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    /// Its headers as they go out (`name: value\r\n` each).
    head: Bytes,
    data: Data,
}

impl Part {
    pub fn size(&self) -> u64 {
        self.data.len()
    }

    /// Its value, when it is a text field held in memory.
    pub fn text(&self) -> Option<&str> {
        match (&self.filename, &self.data) {
            (None, Data::Memory(b)) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

/// A client's form, replayable.
#[derive(Debug)]
pub struct Form {
    boundary: String,
    pub parts: Vec<Part>,
    spool: Option<Arc<std::fs::File>>,
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(headers: &HeaderMap) -> Result<String, FormError> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    multer::parse_boundary(ct).map_err(|_| {
        FormError::NotMultipart(format!(
            "the content type is `{ct}`; this endpoint takes multipart/form-data"
        ))
    })
}

impl Form {
    /// Reads a form from the client's body, at most `limit` bytes in all.
    pub async fn read<S, E>(
        body: S,
        headers: &HeaderMap,
        limit: u64,
        threshold: usize,
    ) -> Result<Form, FormError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let boundary = boundary(headers)?;
        let constraints =
            multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit));
        let mut multipart =
            multer::Multipart::with_constraints(body, boundary.clone(), constraints);
        let mut parts = Vec::new();
        let mut in_memory = 0usize;
        let mut spool: Option<(Arc<std::fs::File>, tokio::fs::File, u64)> = None;
        let fail = |e: multer::Error| match e {
            multer::Error::StreamSizeExceeded { .. } => FormError::TooLarge(limit),
            multer::Error::StreamReadFailed(e) => match crate::conn::body_timeout_in(&*e) {
                Some(t) => FormError::Timeout(*t),
                None => FormError::Read(crate::errors::error_chain(&*e)),
            },
            e => FormError::Malformed(e.to_string()),
        };
        while let Some(mut field) = multipart.next_field().await.map_err(fail)? {
            let name = field.name().unwrap_or_default().to_string();
            let filename = field.file_name().map(str::to_string);
            let content_type = field.content_type().map(ToString::to_string);
            let head = head(field.headers());
            let mut memory = BytesMut::new();
            let mut spooled: Option<(u64, u64)> = None;
            while let Some(chunk) = field.chunk().await.map_err(fail)? {
                // A text field stays in memory (up to 64 KiB): the model and
                // the options are read from it.
                let text = filename.is_none() && memory.len() + chunk.len() <= TEXT_FIELD;
                if spooled.is_none() && (text || in_memory + chunk.len() <= threshold) {
                    in_memory += chunk.len();
                    memory.extend_from_slice(&chunk);
                    continue;
                }
                if spool.is_none() {
                    let file = tempfile::tempfile().map_err(|e| FormError::Spool(e.to_string()))?;
                    let writer = file
                        .try_clone()
                        .map_err(|e| FormError::Spool(e.to_string()))?;
                    spool = Some((Arc::new(file), tokio::fs::File::from_std(writer), 0));
                }
                let Some((_, writer, at)) = spool.as_mut() else {
                    continue;
                };
                let range = spooled.get_or_insert((*at, 0));
                if !memory.is_empty() {
                    // This part's start is in memory: it moves to the file
                    // with the rest, so a part lies in one place.
                    in_memory -= memory.len();
                    let start = memory.split().freeze();
                    write(writer, &start).await?;
                    *at += start.len() as u64;
                    range.1 += start.len() as u64;
                }
                write(writer, &chunk).await?;
                *at += chunk.len() as u64;
                range.1 += chunk.len() as u64;
            }
            let data = match spooled {
                Some((offset, len)) => Data::Spooled { offset, len },
                None => Data::Memory(memory.freeze()),
            };
            parts.push(Part {
                name,
                filename,
                content_type,
                head,
                data,
            });
        }
        let spool = match spool {
            Some((file, mut writer, _)) => {
                writer
                    .flush()
                    .await
                    .map_err(|e| FormError::Spool(e.to_string()))?;
                Some(file)
            }
            None => None,
        };
        Ok(Form {
            boundary,
            parts,
            spool,
        })
    }

    /// The value of the `model` field.
    pub fn model(&self) -> Option<&str> {
        self.field("model")
    }

    /// A text field's value.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.parts
            .iter()
            .find(|p| p.name == name)
            .and_then(Part::text)
    }

    /// Whether the parts went (partly) to a spool file.
    pub fn spooled(&self) -> bool {
        self.spool.is_some()
    }

    /// The text fields as a JSON object (`model` with `model` replaced when
    /// given): what the stub backend reads.
    pub fn fields_json(&self, model: Option<&str>) -> Value {
        let mut fields = Map::new();
        for p in &self.parts {
            if let Some(t) = p.text() {
                let v = if p.name == "model" {
                    model.unwrap_or(t)
                } else {
                    t
                };
                fields.insert(p.name.clone(), Value::String(v.to_string()));
            }
        }
        Value::Object(fields)
    }

    /// What the request log keeps of the form: its text fields (each cut to
    /// 4 KiB) and each file part's name, file name, content type and size;
    /// never the files' bytes.
    pub fn summary(&self) -> Value {
        let mut fields = Map::new();
        let mut files = Vec::new();
        for p in &self.parts {
            match p.text() {
                Some(t) => {
                    let mut end = t.len().min(LOGGED_FIELD);
                    while !t.is_char_boundary(end) {
                        end -= 1;
                    }
                    fields.insert(p.name.clone(), Value::String(t[..end].to_string()));
                }
                None => files.push(json!({
                    "name": p.name,
                    "filename": p.filename,
                    "content_type": p.content_type,
                    "size": p.size(),
                })),
            }
        }
        json!({"multipart": {"fields": fields, "files": files}})
    }

    /// [`summary`](Self::summary) with each file part's bytes as `base64`,
    /// while all of them together stay within `limit` bytes (else
    /// `"base64": null` on the rest).
    pub async fn summary_with_files(&self, limit: usize) -> Value {
        use base64::Engine as _;
        let mut s = self.summary();
        let mut left = limit;
        for (i, p) in self.parts.iter().filter(|p| p.text().is_none()).enumerate() {
            let size = usize::try_from(p.size()).unwrap_or(usize::MAX);
            let data = if size <= left {
                left -= size;
                self.bytes_of(p).await.ok()
            } else {
                None
            };
            if let Some(f) = s
                .pointer_mut(&format!("/multipart/files/{i}"))
                .and_then(Value::as_object_mut)
            {
                let b64 = data.map(|d| base64::engine::general_purpose::STANDARD.encode(d));
                f.insert("base64".into(), b64.map_or(Value::Null, Value::String));
            }
        }
        s
    }

    /// A part's bytes, read back from the spool when they are there.
    async fn bytes_of(&self, p: &Part) -> std::io::Result<Bytes> {
        let mut out = BytesMut::new();
        let mut s = piece_stream(p.data.clone(), self.spool.clone());
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out.freeze())
    }

    /// The content type the body goes out with (the client's boundary).
    pub fn content_type(&self) -> HeaderValue {
        HeaderValue::from_str(&format!("multipart/form-data; boundary={}", self.boundary))
            .unwrap_or(HeaderValue::from_static("multipart/form-data"))
    }

    /// The body for one attempt, with `model` as the `model` field's value
    /// when given: its length, and its bytes as a stream (the spooled parts
    /// read back from the file).
    pub fn body(self: &Arc<Self>, model: Option<&str>) -> (u64, FormBody) {
        let mut pieces: Vec<Data> = Vec::with_capacity(self.parts.len() * 3 + 1);
        for p in &self.parts {
            let mut head = BytesMut::with_capacity(self.boundary.len() + p.head.len() + 8);
            head.extend_from_slice(b"--");
            head.extend_from_slice(self.boundary.as_bytes());
            head.extend_from_slice(b"\r\n");
            head.extend_from_slice(&p.head);
            head.extend_from_slice(b"\r\n");
            pieces.push(Data::Memory(head.freeze()));
            match (model, p.name == "model" && p.filename.is_none()) {
                (Some(m), true) => pieces.push(Data::Memory(Bytes::from(m.to_string()))),
                _ => pieces.push(p.data.clone()),
            }
            pieces.push(Data::Memory(Bytes::from_static(b"\r\n")));
        }
        pieces.push(Data::Memory(Bytes::from(format!(
            "--{}--\r\n",
            self.boundary
        ))));
        let len = pieces.iter().map(Data::len).sum();
        let spool = self.spool.clone();
        let stream = futures::stream::iter(pieces)
            .flat_map(move |piece| piece_stream(piece, spool.clone()))
            .boxed();
        (len, stream)
    }
}

/// A form body being sent.
pub type FormBody =
    std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static>>;

fn piece_stream(piece: Data, spool: Option<Arc<std::fs::File>>) -> FormBody {
    match piece {
        Data::Memory(b) => futures::stream::once(async move { Ok(b) }).boxed(),
        Data::Spooled { offset, len } => {
            futures::stream::unfold((offset, offset + len), move |(at, end)| {
                let spool = spool.clone();
                async move {
                    if at >= end {
                        return None;
                    }
                    let Some(file) = spool else {
                        return Some((
                            Err(std::io::Error::other("the spool file is gone")),
                            (end, end),
                        ));
                    };
                    let n = usize::try_from(end - at)
                        .unwrap_or(READ_CHUNK)
                        .min(READ_CHUNK);
                    let read = tokio::task::spawn_blocking(move || {
                        let mut buf = vec![0u8; n];
                        file.read_exact_at(&mut buf, at).map(|()| buf)
                    })
                    .await;
                    match read {
                        Ok(Ok(buf)) => Some((Ok(Bytes::from(buf)), (at + n as u64, end))),
                        Ok(Err(e)) => Some((Err(e), (end, end))),
                        Err(e) => Some((Err(std::io::Error::other(e)), (end, end))),
                    }
                }
            })
            .boxed()
        }
    }
}

async fn write(w: &mut tokio::fs::File, bytes: &[u8]) -> Result<(), FormError> {
    w.write_all(bytes)
        .await
        .map_err(|e| FormError::Spool(e.to_string()))
}

/// A part's headers as they go out again.
fn head(headers: &HeaderMap) -> Bytes {
    let mut out = BytesMut::new();
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(b: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, file, data) in parts {
            out.extend_from_slice(format!("--{b}\r\n").as_bytes());
            match file {
                Some(f) => out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: audio/wav\r\n\r\n").as_bytes(),
                ),
                None => out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                ),
            }
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{b}--\r\n").as_bytes());
        out
    }

    async fn read(raw: Vec<u8>, limit: u64, threshold: usize) -> Result<Form, FormError> {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data; boundary=XyZ"),
        );
        let chunks: Vec<Result<Bytes, std::io::Error>> = raw
            .chunks(7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Form::read(futures::stream::iter(chunks), &h, limit, threshold).await
    }

    async fn sent(form: &Arc<Form>, model: Option<&str>) -> Vec<u8> {
        let (len, mut s) = form.body(model);
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        assert_eq!(out.len() as u64, len);
        out
    }

    #[tokio::test]
    async fn parts_are_kept_exactly_in_memory_or_spooled() {
        let audio: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
        let raw = body(
            "XyZ",
            &[
                ("file", Some("a.wav"), &audio),
                ("model", None, b"whisper"),
                ("language", None, b"en"),
            ],
        );
        for threshold in [0, 100, MEMORY_THRESHOLD] {
            let form = Arc::new(read(raw.clone(), 1 << 20, threshold).await.unwrap());
            assert_eq!(form.model(), Some("whisper"));
            assert_eq!(form.spooled(), threshold < 5000);
            let again = Arc::new(
                read(sent(&form, None).await, 1 << 20, MEMORY_THRESHOLD)
                    .await
                    .unwrap(),
            );
            assert_eq!(again.parts.len(), 3);
            let (_, mut s) = again.body(None);
            let mut whole = Vec::new();
            while let Some(c) = s.next().await {
                whole.extend_from_slice(&c.unwrap());
            }
            assert!(whole.windows(audio.len()).any(|w| w == audio.as_slice()));
            // Sent twice: the same bytes (a retry).
            assert_eq!(
                sent(&form, Some("whisper-1")).await,
                sent(&form, Some("whisper-1")).await
            );
            let renamed = read(sent(&form, Some("whisper-1")).await, 1 << 20, 10)
                .await
                .unwrap();
            assert_eq!(renamed.model(), Some("whisper-1"));
            assert_eq!(renamed.parts[0].size(), 5000);
        }
    }

    #[tokio::test]
    async fn limits_and_summaries() {
        let raw = body(
            "XyZ",
            &[("file", Some("a.wav"), &[0u8; 300]), ("model", None, b"m")],
        );
        assert!(matches!(
            read(raw.clone(), 100, 10).await,
            Err(FormError::TooLarge(100))
        ));
        let form = read(raw, 1000, 10).await.unwrap();
        let s = form.summary();
        assert_eq!(s["multipart"]["fields"]["model"], "m");
        assert_eq!(s["multipart"]["files"][0]["size"], 300);
        assert_eq!(s["multipart"]["files"][0]["filename"], "a.wav");
        assert_eq!(s["multipart"]["files"][0]["content_type"], "audio/wav");
        assert!(matches!(
            boundary(&HeaderMap::new()),
            Err(FormError::NotMultipart(_))
        ));
    }
}
