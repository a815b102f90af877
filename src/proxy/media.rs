//! The pass-through endpoints' own steps (audio, images, moderations,
//! rerank): a multipart body read as a form (`upstream::form`), the model
//! a moderation request may leave out, and an answer that is not JSON
//! (speech audio, a transcript as text) relayed as it arrives, the record
//! keeping its size and content type instead of its bytes.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;

use super::error::ApiError;
use super::error::{ATTEMPTS_HEADER, BACKEND_HEADER};
use crate::config::Backend;
use crate::endpoint::Endpoint;
use crate::live::Live;
use crate::reqlog::{Outcome, RecordGuard};
use crate::upstream::form::{Form, FormError, MEMORY_THRESHOLD};
use crate::upstream::{self, BodyStream};

/// A multipart request's form, read within `limit` bytes.
pub(super) async fn read_form(
    body: Body,
    headers: &HeaderMap,
    limit: u64,
) -> Result<Arc<Form>, ApiError> {
    let declared = upstream::content_length(headers);
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::TooLarge { limit });
    }
    let stream = body.into_data_stream();
    match Form::read(stream, headers, limit, MEMORY_THRESHOLD).await {
        Ok(f) => Ok(Arc::new(f)),
        Err(FormError::TooLarge(_)) => Err(ApiError::TooLarge { limit }),
        Err(FormError::Spool(e)) => Err(ApiError::Internal(format!("spooling the body: {e}"))),
        Err(FormError::Timeout(t)) => Err(ApiError::BodyTimeout(t)),
        Err(e) => Err(ApiError::ReadBody(e.to_string())),
    }
}

/// The JSON the rest of the request's life reads of a form: its `model`.
pub(super) fn form_json(form: &Form) -> Bytes {
    match form.model() {
        Some(m) => Bytes::from(json!({ "model": m }).to_string()),
        None => Bytes::from_static(b"{}"),
    }
}

/// The model of a moderation request that names none:
/// `proxy_settings.moderation_model`, else the first configured model whose
/// name has `moderation` in it.
pub(super) fn default_model(endpoint: Endpoint, live: &Live) -> Option<String> {
    if endpoint != Endpoint::Moderations {
        return None;
    }
    live.config.moderation_model.clone().or_else(|| {
        live.model_names
            .iter()
            .find(|n| n.contains("moderation"))
            .cloned()
    })
}

/// An answer relayed as it arrives. The record is finished when the body
/// ends, with its content type and size in place of its bytes.
pub fn relay_raw(
    status: StatusCode,
    upstream_headers: &HeaderMap,
    body: BodyStream,
    backend: &Backend,
    attempts: usize,
    mut guard: RecordGuard,
) -> Response {
    let mut headers = upstream::relayed_headers(upstream_headers);
    if let Some(n) = upstream_headers.get(header::CONTENT_LENGTH) {
        headers.insert(header::CONTENT_LENGTH, n.clone());
    }
    if let Ok(v) = HeaderValue::from_str(&backend.name) {
        headers.insert(BACKEND_HEADER, v);
    }
    headers.insert(ATTEMPTS_HEADER, HeaderValue::from(attempts));
    let content_type = upstream_headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if let Some(r) = guard.record() {
        r.backend = Some(backend.name.clone());
        r.status = Some(status.as_u16());
        r.response_headers = Some(headers.clone());
    }
    struct State {
        body: BodyStream,
        guard: RecordGuard,
        size: u64,
        /// The declared length: hyper stops reading the body once it is
        /// sent, so the record is finished there.
        expected: Option<u64>,
        content_type: String,
        ok: bool,
    }
    impl State {
        fn finish(&mut self) {
            if let Some(r) = self.guard.record() {
                r.response_body = Some(summary(&self.content_type, self.size));
            }
            let outcome = if self.ok {
                Outcome::Ok
            } else {
                Outcome::ClientError
            };
            self.guard.finish(outcome);
        }
    }
    let state = State {
        body,
        guard,
        size: 0,
        expected: upstream::content_length(upstream_headers),
        content_type,
        ok: status.is_success(),
    };
    let stream = futures::stream::unfold(Some(state), |state| async move {
        let mut s = state?;
        match s.body.next().await {
            Some(Ok(chunk)) => {
                s.size += chunk.len() as u64;
                if s.expected.is_some_and(|n| s.size >= n) {
                    s.finish();
                }
                Some((Ok(chunk), Some(s)))
            }
            Some(Err(e)) => {
                if let Some(r) = s.guard.record() {
                    r.error = Some(e.to_string());
                    r.response_body = Some(summary(&s.content_type, s.size));
                }
                s.guard.finish(Outcome::UpstreamError);
                Some((Err(std::io::Error::other(e.to_string())), None))
            }
            None => {
                s.finish();
                None
            }
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// What the record keeps of a binary answer.
fn summary(content_type: &str, size: u64) -> Bytes {
    Bytes::from(json!({"binary": {"content_type": content_type, "size": size}}).to_string())
}
