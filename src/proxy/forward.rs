//! The request half of a request's life: admit, read, identify, cache,
//! previous response, thinking, dispatch. The answer half is [`answer`].

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;

use super::answer::{self, Context};
use super::error::ApiError;
use super::usage::Bill;
use super::{Forwarded, Proxy, Request, model_not_found};
use crate::cache;
use crate::config::Limit;
use crate::endpoint::Endpoint;
use crate::keys::service::Identity;
use crate::keys::spend::Counter;
use crate::keys::store::Owner;
use crate::limits::Ticket;
use crate::live::Live;
use crate::pipeline::request::RequestBody;
use crate::protocol;
use crate::reqlog::RecordGuard;
use crate::router::{Dispatch, ErrorKind, KindFallbacks, Restored};
use crate::upstream;

/// Set on a `count_tokens` answer yallmp estimated itself.
pub const ESTIMATE_HEADER: &str = "x-yallmp-token-count";

pub(super) async fn forward(
    proxy: &Proxy,
    req: Request,
    guard: &mut RecordGuard,
) -> Result<Forwarded, ApiError> {
    let live = proxy.live.load_full();
    let endpoint = req.endpoint;
    let headers = &req.headers;
    // Who the client is: its key, when it is a configured one (the
    // client-key layer let it through); without configured keys any token
    // would do, so a key-less client counts by its address.
    let who = req.identity.as_ref();
    let key = if live.config.auth.api_keys.is_empty() && who.is_none() {
        None
    } else {
        crate::identity::presented(headers)
    };
    if let (Some(w), Some(r)) = (who, guard.record()) {
        r.key = Some((w.key.id.clone(), w.key.name.clone()));
        r.team = w.team.as_ref().map(|t| t.name.clone());
    }
    // Rate limits come first: a refused request costs no body read.
    let ticket = admit(proxy, &live, key, req.peer, who).await?;
    // A multipart body is read as a form (spooled past a threshold); the
    // rest of the request reads its `model` as JSON.
    let (raw, form) = if endpoint.is_multipart() {
        let form =
            super::media::read_form(req.body, headers, live.config.server.max_body_bytes).await?;
        if guard.record().is_some() {
            let logging = &live.config.logging;
            let summary = if logging.log_multipart_files {
                form.summary_with_files(logging.max_body_bytes).await
            } else {
                form.summary()
            };
            if let Some(r) = guard.record() {
                r.request_body = Bytes::from(summary.to_string());
            }
        }
        (super::media::form_json(&form), Some(form))
    } else {
        let raw = read_body(req.body, headers, live.config.server.max_body_bytes).await?;
        if let Some(r) = guard.record() {
            r.request_body = raw.clone();
        }
        (raw, None)
    };
    let parsed = RequestBody::parse(&raw)?;
    let model = match parsed.model() {
        Ok(m) => m,
        Err(e) => super::media::default_model(endpoint, &live).ok_or(e)?,
    };
    let stream = endpoint.can_stream() && parsed.stream();
    if let Some(r) = guard.record() {
        r.model = Some(model.clone());
        r.stream = stream;
    }
    // The configured model: the exact name, else a wildcard (`local-*`).
    let configured = live
        .resolve(&model)
        .ok_or_else(|| model_not_found(&model, &live.model_names))?
        .to_string();
    // Back round a loop (this proxy's own marker for this model): refused
    // once, instead of going round again.
    if upstream::hop::seen(headers, &configured) {
        return Err(ApiError::LoopDetected(configured));
    }
    // A virtual key: its models, then its (and its team's) budget.
    let bill = match who {
        Some(w) => grant(proxy, w, &model, &configured).await?,
        None => Bill::default(),
    };
    let plan = live
        .plan(&configured)
        .ok_or_else(|| model_not_found(&model, &live.model_names))?;
    if let Some(slot) = &req.model_slot {
        slot.set(&configured);
    }
    // The `cache` field is the proxy's: it never goes upstream.
    let (controls, stripped) = match parsed.get("cache") {
        Some(field) => (
            Some(cache::Controls::read(Some(field), headers)?),
            Some(parsed.without("cache")),
        ),
        None => (None, None),
    };
    let holder;
    let (raw, parsed) = match stripped {
        Some(b) => {
            holder = b;
            (&holder, RequestBody::parse(&holder)?)
        }
        None => (&raw, parsed),
    };
    // `previous_response_id` on translated backends: the conversation
    // rebuilt from the turns yallmp kept (see `previous`).
    let mut previous = None;
    let previous_holder;
    let prepared = match endpoint {
        Endpoint::Responses => {
            Box::pin(super::previous::prepare(
                proxy,
                &live,
                &plan,
                raw,
                key,
                &req.own_id,
            ))
            .await?
        }
        _ => None,
    };
    let (raw, parsed) = match prepared {
        Some((c, expanded)) => {
            previous = Some(c);
            match expanded {
                Some(b) => {
                    previous_holder = b;
                    (&previous_holder, RequestBody::parse(&previous_holder)?)
                }
                None => (raw, parsed),
            }
        }
        None => (raw, parsed),
    };
    let mut pending = None;
    let mut cache_status = None;
    if let Some(c) = proxy.cache.as_ref().filter(|c| c.covers(endpoint)) {
        let controls = match controls {
            Some(c) => c,
            None => cache::Controls::read(None, headers)?,
        };
        let key = c.key(endpoint, &model, &parsed, headers);
        let (status, found) = Box::pin(c.lookup(&key, &controls, &configured)).await;
        if let Some(r) = guard.record() {
            r.cache = Some(status.as_str());
        }
        if let Some(entry) = found {
            return Ok(answer::from_cache(&entry, guard));
        }
        cache_status = Some(status);
        if !controls.no_store {
            pending = Some(cache::Pending {
                cache: c.clone(),
                key,
                ttl: controls.ttl,
            });
        }
    }
    let path = req.uri.path();
    // Interleaved thinking: earlier turns' reasoning, looked up before
    // anything goes upstream.
    let thinking =
        if endpoint == Endpoint::ChatCompletions && plan.iter().any(|b| b.thinking.is_some()) {
            Box::pin(
                proxy
                    .thinking
                    .for_request(&live, &plan, &model, &parsed, headers, endpoint, path),
            )
            .await
            .map_err(ApiError::ReasoningNotFound)?
        } else {
            None
        };
    let client = proxy.http();
    // Telemetry hook (None when it is off).
    let trace = guard.record().and_then(|r| r.trace.clone());
    let dispatch = Dispatch {
        client: &client,
        settings: &live.config.router,
        streaming: &live.config.streaming,
        plan: &plan,
        endpoint,
        body: &parsed,
        raw,
        headers,
        request_id: &req.request_id,
        stream,
        forward_credentials: live.config.auth.api_keys.is_empty() && !proxy.keys.any(),
        registry: &proxy.backends,
        thinking: thinking
            .as_ref()
            .and_then(|t| t.restore.as_ref())
            .map(|r| r as &dyn Restored),
        scrubber: &live.scrubber,
        max_response_bytes: live.config.server.max_response_bytes,
        sockets: req.sockets.as_ref(),
        trace: trace.as_ref(),
        form: form.as_ref(),
        kind_fallbacks: Some(&*live as &dyn KindFallbacks),
    };
    // The request's future is as large as its largest step: the steps
    // that hold much across their awaits are boxed, so what every request
    // carries (and moves) stays small (docs/benchmarks.md, callgrind).
    let answer = match Box::pin(dispatch.run(guard.attempts())).await {
        Ok(answer) => answer,
        Err(_) if endpoint == Endpoint::CountTokens => return Ok(estimate(raw)),
        Err(failure) => {
            let attempts = guard.attempts().clone();
            return Err(ApiError::Upstream { failure, attempts });
        }
    };
    let cx = Context {
        proxy,
        live: &live,
        endpoint,
        model: &model,
        path,
        raw,
        parsed: &parsed,
        ticket,
        pending,
        cache_status,
        previous,
        thinking,
        bill,
    };
    Box::pin(answer::answer(cx, answer, guard)).await
}

/// The live snapshot's fallbacks for the kinds of failure that have them.
impl KindFallbacks for Live {
    fn plan_for(
        &self,
        model: &str,
        kind: ErrorKind,
    ) -> Option<std::sync::Arc<[std::sync::Arc<crate::config::Backend>]>> {
        let kind = match kind {
            ErrorKind::ContextWindow => crate::config::FallbackKind::ContextWindow,
            ErrorKind::ContentPolicy => crate::config::FallbackKind::ContentPolicy,
            _ => return None,
        };
        self.kind_plan(model, kind)
    }
}

impl Restored for crate::thinking::restore::Restore {
    fn messages_for(&self, backend: &crate::config::Backend) -> Option<String> {
        crate::thinking::restore::Restore::messages_for(self, backend)
    }
}

/// The rate limits: a ticket to charge the answer's tokens to, or the
/// refusal. A virtual key's own `rpm_limit`/`tpm_limit` replace the
/// per-key ones; its team's limits count all the team's keys together.
async fn admit(
    proxy: &Proxy,
    live: &Live,
    key: Option<&str>,
    peer: Option<std::net::SocketAddr>,
    who: Option<&Identity>,
) -> Result<Option<Ticket>, ApiError> {
    let mut limits = live.config.rate_limits;
    let team = who.and_then(|w| w.team.as_ref()).map(|t| {
        (
            t.id.as_str(),
            Limit {
                rpm: t.limits.rpm_limit,
                tpm: t.limits.tpm_limit,
            },
        )
    });
    if let Some(w) = who {
        limits.per_key.rpm = w.key.limits.rpm_limit.or(limits.per_key.rpm);
        limits.per_key.tpm = w.key.limits.tpm_limit.or(limits.per_key.tpm);
    }
    if !limits.any() && team.is_none_or(|(_, l)| l == Limit::default()) {
        return Ok(None);
    }
    // A virtual key counts by its id (the same across rotations).
    let client = match who {
        Some(w) => crate::limits::client_id(Some(&w.key.id), None),
        None => crate::limits::client_id(key, peer.map(|p| p.ip())),
    };
    Box::pin(proxy.limits.admit(&limits, &client, team))
        .await
        .map_err(ApiError::RateLimited)
}

/// What a virtual key may do with this request: the model must be one of
/// its (and its team's) `models`, and neither budget spent for the
/// current period. Gives the counters the answer's cost goes to.
async fn grant(
    proxy: &Proxy,
    who: &Identity,
    model: &str,
    configured: &str,
) -> Result<Bill, ApiError> {
    let allowed = |l: &crate::grant::Limits| l.allows(model) || l.allows(configured);
    if !allowed(&who.key.limits) {
        return Err(ApiError::ModelNotAllowed {
            model: model.to_string(),
            team: String::new(),
        });
    }
    if let Some(t) = who.team.as_ref().filter(|t| !allowed(&t.limits)) {
        return Err(ApiError::ModelNotAllowed {
            model: model.to_string(),
            team: format!(" (its team `{}` may not)", t.name),
        });
    }
    let now = chrono::Utc::now();
    let spend = proxy.keys.spend.clone();
    let mut counters = Vec::with_capacity(2);
    let owners = [
        Some((
            Owner::Key,
            who.key.id.as_str(),
            format!("key `{}`", who.key.name),
            &who.key.limits,
        )),
        who.team.as_ref().map(|t| {
            (
                Owner::Team,
                t.name.as_str(),
                format!("team `{}`", t.name),
                &t.limits,
            )
        }),
    ];
    for (owner, id, label, limits) in owners.into_iter().flatten() {
        let counter = Counter::new(owner, id, limits.budget_duration, now);
        if let Some(max) = limits.max_budget {
            let spent = Box::pin(spend.spent(&counter)).await;
            if spent >= max {
                return Err(ApiError::BudgetExceeded {
                    who: label,
                    spent,
                    max,
                    period: limits
                        .budget_duration
                        .map(|p| format!(" this period ({})", String::from(p)))
                        .unwrap_or_default(),
                });
            }
        }
        counters.push(counter);
    }
    Ok(Bill {
        spend: Some(spend),
        counters,
        key: Some(std::sync::Arc::from(who.key.name.as_str())),
    })
}

/// No backend could count: the documented estimate.
fn estimate(raw: &[u8]) -> Forwarded {
    let tokens = serde_json::from_slice::<serde_json::Value>(raw)
        .map(|v| protocol::tokens::estimate(&v))
        .unwrap_or(0);
    let body = Bytes::from(json!({ "input_tokens": tokens }).to_string());
    let mut response = answer::json_body(StatusCode::OK, body.clone());
    response
        .headers_mut()
        .insert(ESTIMATE_HEADER, HeaderValue::from_static("estimate"));
    Forwarded::Complete(response, body)
}

/// Reads the request body up to `limit` bytes.
async fn read_body(
    body: axum::body::Body,
    headers: &HeaderMap,
    limit: u64,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::TooLarge { limit });
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit_usize).await.map_err(|e| {
        let inner = e.into_inner();
        if inner
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            ApiError::TooLarge { limit }
        } else if let Some(t) = crate::conn::body_timeout_in(inner.as_ref()) {
            ApiError::BodyTimeout(*t)
        } else {
            ApiError::ReadBody(upstream::error_chain(inner.as_ref()))
        }
    })
}
