//! `/v1/files` and `/v1/batches`: requests that carry no model, passed to
//! one backend the operator names (`proxy_settings.files_model`: the first
//! OpenAI-dialect backend of that model). The client's body (a file upload
//! is multipart) is relayed as it arrives, within `max_body_bytes`, and
//! the answer (a file's content may be bytes) as it arrives. Client keys
//! apply; a virtual key must be allowed the files model. No retries: an
//! upload is not replayed.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, OriginalUri, Request, State};
use axum::response::Response;
use futures::StreamExt;
use http::{HeaderValue, header};

use super::error::ApiError;
use super::{LogIds, RequestId, Shared};
use crate::config::ApiType;
use crate::keys::service::Identity;
use crate::reqlog::{Outcome, RecordGuard};
use crate::router::{AllFailed, LastFailure};
use crate::upstream::{self, Payload};

pub async fn pass(State(state): State<Shared>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let proxy = &state.proxy;
    let live = proxy.live.load_full();
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(parts.uri.clone(), |u| u.0.clone());
    let own_id = parts
        .extensions
        .get::<LogIds>()
        .and_then(|i| i.own.to_str().ok())
        .unwrap_or("unknown")
        .to_string();
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or(HeaderValue::from_static("unknown"));
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let record = proxy.log.start(
        own_id,
        parts.method.to_string(),
        uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        peer,
        &parts.headers,
    );
    let mut guard = RecordGuard::new(record, proxy.log.clone(), proxy.shutting_down.clone());
    let fail = |guard: &mut RecordGuard, e: ApiError| {
        if let Some(r) = guard.record() {
            r.status = Some(e.status().as_u16());
            r.response_body = Some(bytes::Bytes::from(e.body().to_string()));
            r.error = Some(e.to_string());
        }
        let outcome = if e.status().is_client_error() {
            Outcome::ClientError
        } else {
            Outcome::AllFailed
        };
        guard.finish(outcome);
        Err(e)
    };
    let Some(model) = live.config.files_model.clone() else {
        return fail(
            &mut guard,
            ApiError::EndpointDisabled(
                "No backend takes files and batches here: set `proxy_settings.files_model` \
                 to the model whose backend should."
                    .into(),
            ),
        );
    };
    if let Some(who) = parts.extensions.get::<Identity>() {
        if let Some(r) = guard.record() {
            r.key = Some((who.key.id.clone(), who.key.name.clone()));
            r.team = who.team.as_ref().map(|t| t.name.clone());
        }
        let allowed = |l: &crate::grant::Limits| l.allows(&model);
        if !allowed(&who.key.limits) || who.team.as_ref().is_some_and(|t| !allowed(&t.limits)) {
            return fail(
                &mut guard,
                ApiError::ModelNotAllowed {
                    model: model.clone(),
                    team: String::new(),
                },
            );
        }
    }
    if let Some(r) = guard.record() {
        r.model = Some(model.clone());
    }
    let backend = live.plan(&model).and_then(|plan| {
        plan.iter()
            .find(|b| matches!(b.api_type, ApiType::Openai | ApiType::Azure))
            .cloned()
    });
    let Some(backend) = backend else {
        return fail(
            &mut guard,
            ApiError::EndpointDisabled(format!(
                "`proxy_settings.files_model` is `{model}`, which has no OpenAI or Azure \
                 backend to take files and batches"
            )),
        );
    };
    // The path after `/v1` (the SDKs' base URL ends with it), and the query.
    let path = uri.path();
    let path = path.strip_prefix("/v1").unwrap_or(path);
    let mut url = backend.api_url(path);
    if let Some(q) = uri.query() {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(q);
    }
    let Some(target) = crate::config::Target::parse(&url) else {
        return fail(&mut guard, ApiError::Internal(format!("bad URL: {url}")));
    };
    let forward_credentials = live.config.auth.api_keys.is_empty() && !proxy.keys.any();
    let mut headers =
        upstream::outgoing_headers(&parts.headers, &backend, &request_id, forward_credentials);
    match parts.headers.get(header::CONTENT_TYPE) {
        Some(ct) => headers.insert(header::CONTENT_TYPE, ct.clone()),
        None => headers.remove(header::CONTENT_TYPE),
    };
    let limit = live.config.server.max_body_bytes;
    let declared = upstream::content_length(&parts.headers);
    if declared.is_some_and(|n| n > limit) {
        return fail(&mut guard, ApiError::TooLarge { limit });
    }
    // The body as it arrives, cut off past the limit.
    let mut seen = 0u64;
    let stream = body
        .into_data_stream()
        .map(move |chunk| {
            let chunk = chunk.map_err(std::io::Error::other)?;
            seen += chunk.len() as u64;
            if seen > limit {
                return Err(std::io::Error::other(format!(
                    "the body is larger than the limit of {limit} bytes"
                )));
            }
            Ok(chunk)
        })
        .boxed();
    if let Some(r) = guard.record() {
        r.request_body = bytes::Bytes::from(
            serde_json::json!({"relayed": {
                "content_type": parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
                "size": declared,
            }})
            .to_string(),
        );
    }
    let sent = upstream::send_to(
        &proxy.http(),
        &backend,
        parts.method.clone(),
        &target,
        headers,
        Payload::Stream(stream, declared),
    )
    .await;
    match sent {
        Ok(answer) => {
            let response = crate::proxy::relay_raw(
                answer.status,
                &answer.headers,
                answer.body,
                &backend,
                1,
                guard,
            );
            Ok(response)
        }
        Err(mut e) => {
            e.scrub(|t| live.scrubber.scrub_upstream(t));
            let failure = AllFailed {
                last: LastFailure::Network(e),
            };
            fail(
                &mut guard,
                ApiError::Upstream {
                    failure,
                    attempts: Vec::new(),
                },
            )
        }
    }
}
