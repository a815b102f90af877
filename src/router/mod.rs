//! The Router: runs a request's attempt plan (the model's backends, then
//! the fallback models' backends, one group per model), balancing within
//! each group ([`balance`]), with up to `1 + num_retries` attempts per
//! backend and a retry moving to another backend of the group before one is
//! repeated. It decides after each answer whether to retry, skip the
//! backend, or stop, feeds each outcome to the backend's state ([`state`]:
//! cooldowns, latency, stats), and peeks the first event of a stream before
//! committing to it.

pub mod balance;
mod classify;
pub mod health_check;
pub mod shared;
pub mod state;
pub mod stats;
pub mod stream;
pub mod usage;

pub use classify::{
    ErrorKind, is_content_filter, is_retryable, is_skippable, kind_of_event, kind_of_http,
    kind_of_network, not_json, retry_after, short_error, truncate,
};

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::config::{ApiType, Backend, RouterSettings};
use crate::endpoint::Endpoint;
use crate::pipeline::request::RequestBody;
use crate::reqlog::Attempt;
use crate::upstream::{self, UpstreamError, UpstreamResponse};
use stream::{Peek, SseSource};

/// An answer the client gets.
pub enum Answer {
    /// A whole body: a success, or a client error passed through as it is.
    Complete {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        backend: Arc<Backend>,
        /// The endpoint (dialect) the backend answered on.
        wire: Endpoint,
        /// The answer's `usage`, read when the body was checked.
        usage: Option<crate::usage::Usage>,
    },
    /// An event stream whose first event has arrived and is not an error.
    Stream {
        status: StatusCode,
        headers: HeaderMap,
        first: Vec<Bytes>,
        rest: SseSource,
        backend: Arc<Backend>,
        wire: Endpoint,
    },
    /// A pass-through endpoint's answer that is not JSON (audio, a
    /// transcript as text): relayed as it arrives.
    Raw {
        status: StatusCode,
        headers: HeaderMap,
        body: upstream::BodyStream,
        backend: Arc<Backend>,
    },
}

/// Why the last attempt failed, when every attempt did.
#[derive(Debug)]
pub enum LastFailure {
    /// An HTTP error status with its body.
    Http { status: StatusCode, body: Bytes },
    /// A stream whose first event was an error object.
    ErrorEvent { data: String },
    /// No usable answer: connection, timeout, broken body.
    Network(UpstreamError),
    /// Every backend left was at its own limit (`rpm`, `tpm`,
    /// `max_parallel_requests`): the client hears 429.
    Limited {
        message: String,
        retry_after: Duration,
    },
}

/// Every attempt failed.
#[derive(Debug)]
pub struct AllFailed {
    pub last: LastFailure,
}

/// The client's `messages` rewritten per backend before it goes out
/// (interleaved thinking gives earlier turns' reasoning back, in the form
/// each backend takes). The proxy prepares it; the router only asks, for
/// each backend it tries, so it needs nothing of how the reasoning was kept.
pub trait Restored: Sync {
    /// The `messages` JSON for `backend`, or `None` to send the client's.
    fn messages_for(&self, backend: &Backend) -> Option<String>;
}

/// The fallbacks for a kind of failure (`context_window_fallbacks`,
/// `content_policy_fallbacks`): the backends to try instead of answering
/// when a request for `model` failed in a way of `kind`, in order, or
/// `None`. The live snapshot answers; the router only asks.
pub trait KindFallbacks: Sync {
    fn plan_for(&self, model: &str, kind: ErrorKind) -> Option<Arc<[Arc<Backend>]>>;
}

/// One request's trip through the router.
pub struct Dispatch<'a> {
    pub client: &'a upstream::Http,
    pub settings: &'a RouterSettings,
    /// Bounds on upstream event streams.
    pub streaming: &'a crate::config::streaming::StreamSettings,
    pub plan: &'a [Arc<Backend>],
    pub endpoint: Endpoint,
    pub body: &'a RequestBody<'a>,
    pub raw: &'a Bytes,
    pub headers: &'a HeaderMap,
    pub request_id: &'a HeaderValue,
    pub stream: bool,
    /// Whether the client's credentials may go to keyless backends (not
    /// when they are the proxy's own client keys).
    pub forward_credentials: bool,
    /// Every backend's runtime state.
    pub registry: &'a state::Registry,
    /// Earlier turns' reasoning to give back (interleaved thinking).
    pub thinking: Option<&'a dyn Restored>,
    /// The config's secrets: scrubbed from every upstream error body and
    /// attempt error before a client, the log or stderr sees them.
    pub scrubber: &'a crate::reqlog::redact::Scrubber,
    /// The largest whole (not streamed) answer read from a backend
    /// (`proxy_settings.server.max_response_bytes`).
    pub max_response_bytes: usize,
    /// A Responses WebSocket turn's upstream sockets: streamed Responses
    /// attempts at a backend with `responses_websocket` go over them.
    pub sockets: Option<&'a Arc<upstream::ws::Sockets>>,
    /// The request's trace, when the telemetry is on: each attempt gets a
    /// span and carries its `traceparent` upstream.
    pub trace: Option<&'a crate::reqlog::Trace>,
    /// A multipart request's form (then `body` holds only its `model`).
    pub form: Option<&'a Arc<upstream::form::Form>>,
    /// The fallbacks for a kind of failure, when the config has any.
    pub kind_fallbacks: Option<&'a dyn KindFallbacks>,
}

/// One backend of the group being tried, during one request.
struct Member {
    backend: Arc<Backend>,
    state: Arc<state::BackendState>,
    /// Attempts made at it so far.
    made: u32,
    /// A skip: no more attempts at it.
    skipped: bool,
    /// Its headers, body and the client's fields the body leaves out,
    /// built on its first attempt.
    prepared: Option<(HeaderMap, Bytes, Vec<String>)>,
    /// When its last attempt ended, and the `Retry-After` it carried.
    ended: Option<(Instant, Option<Duration>)>,
    /// The attempts `retry_policy` allows it for the kind of its last
    /// failure (in place of `1 + num_retries`), when the policy names it.
    cap: Option<u32>,
    /// At its `max_parallel_requests` when last asked: tried after the
    /// others, and waited for when no other is left.
    busy: bool,
}

/// What one plan's run came to.
// Short-lived, on the stack, like `Verdict`.
#[allow(clippy::large_enum_variant)]
enum Run {
    Answer(Answer),
    /// Every attempt failed.
    Exhausted,
    /// A failure of a kind with fallbacks of its own: go on with these.
    Switch(Arc<[Arc<Backend>]>),
}

/// What a request's runs share: the last failure, a final answer that
/// `retry_policy` turned into retries, the kinds already fallen back on.
struct Trip {
    last: LastFailure,
    /// The client's answer unless a later attempt does better.
    held: Option<Answer>,
    /// Kinds whose fallbacks were taken (once per kind: no loop).
    taken: Vec<ErrorKind>,
    /// The request's estimated input tokens, once a pre-call check needed
    /// them.
    input_tokens: Option<u64>,
    /// A context window passed over (the pre-call check): what the client
    /// hears, and the kind fallbacks taken, only when nothing else failed.
    window: Option<LastFailure>,
}

// Short-lived, on the stack: boxing the answer would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Verdict {
    Done(Answer),
    /// Try this backend again if it has attempts left.
    Retry(LastFailure, Option<Duration>),
    /// Move to the next backend.
    Skip(LastFailure),
}

impl Dispatch<'_> {
    /// Runs the plan, or, after a failure of a kind with fallbacks of its
    /// own, the plan of those fallbacks. The attempts made are pushed onto
    /// `attempts` as they finish, so the caller has them whatever the
    /// outcome.
    pub async fn run(&self, attempts: &mut Vec<Attempt>) -> Result<Answer, AllFailed> {
        let mut trip = Trip {
            last: LastFailure::Network(UpstreamError::Unsupported("no backend to try".into())),
            held: None,
            taken: Vec::new(),
            input_tokens: None,
            window: None,
        };
        let mut switched: Option<Arc<[Arc<Backend>]>> = None;
        loop {
            let plan = switched.as_deref().unwrap_or(self.plan);
            match self.run_plan(plan, attempts, &mut trip).await {
                Run::Answer(answer) => return Ok(answer),
                Run::Exhausted => {
                    // Backends passed over by the pre-call check, and no
                    // other failure (an upstream's error, a limit) to
                    // report: the context window's error and fallbacks, as
                    // an upstream's error of that kind would take them.
                    if matches!(
                        trip.last,
                        LastFailure::Network(UpstreamError::Unsupported(_))
                    ) && let Some(window) = trip.window.take()
                    {
                        trip.last = window;
                    }
                    if let LastFailure::Http { status, body } = &trip.last
                        && let Some(kind) = kind_of_http(*status, body)
                        && let Some(next) = self.switch_for(kind, &mut trip)
                    {
                        switched = Some(next);
                        continue;
                    }
                    return Err(AllFailed { last: trip.last });
                }
                Run::Switch(next) => switched = Some(next),
            }
        }
    }

    async fn run_plan(
        &self,
        plan: &[Arc<Backend>],
        attempts: &mut Vec<Attempt>,
        trip: &mut Trip,
    ) -> Run {
        let retries = self.settings.num_retries;
        for (n, group) in plan
            .chunk_by(|a, b| a.model_name == b.model_name)
            .enumerate()
        {
            if n > 0 {
                tracing::warn!(
                    request_id = self.request_id.to_str().ok(),
                    model = %group[0].model_name,
                    "falling back to the next model"
                );
            }
            let mut members: Vec<Member> = balance::order(group, self.registry, self.settings)
                .into_iter()
                .map(|(backend, state)| Member {
                    backend,
                    state,
                    made: 0,
                    skipped: false,
                    prepared: None,
                    ended: None,
                    cap: None,
                    busy: false,
                })
                .collect();
            while let Some(i) = next_member(&members, retries) {
                // No other backend of the group left to try: a busy one is
                // waited for rather than passed over.
                let alone = members[i].backend.limits.max_parallel.is_some()
                    && !members
                        .iter()
                        .enumerate()
                        .any(|(j, o)| j != i && !o.busy && has_tries(o, retries));
                let m = &mut members[i];
                if let Some((ended, retry_after)) = m.ended {
                    let wait = self.backoff(m.made, retry_after);
                    tokio::time::sleep(wait.saturating_sub(ended.elapsed())).await;
                }
                let backend = m.backend.clone();
                let wire = match crate::protocol::wire(self.endpoint, &backend) {
                    Ok(w) => w,
                    Err(why) => {
                        // This backend cannot serve the endpoint: the next one may.
                        attempts.push(self.passed_over(
                            &backend,
                            self.endpoint,
                            why.clone(),
                            Vec::new(),
                        ));
                        // A limit another backend was at says more (429).
                        if !matches!(trip.last, LastFailure::Limited { .. }) {
                            trip.last = LastFailure::Network(UpstreamError::Unsupported(why));
                        }
                        trip.held = None;
                        m.skipped = true;
                        continue;
                    }
                };
                if m.prepared.is_none() {
                    match self
                        .prepare(&backend, wire)
                        .and_then(|t| crate::protocol::bedrock::check(&backend, t))
                    {
                        Ok(crate::protocol::Translated { body, mut dropped }) => {
                            if matches!(backend.api_type, ApiType::Gemini | ApiType::Vertex) {
                                // What the Google transport leaves out.
                                dropped.extend(upstream::google::dropped(wire, &body));
                            }
                            if backend.drop.refuse && !dropped.is_empty() {
                                // `drop_params: false`: this backend refuses
                                // what it would leave out; another may take it.
                                let why = format!(
                                    "backend {} does not take {} (drop_params: false)",
                                    backend.name,
                                    dropped.join(", ")
                                );
                                attempts.push(self.passed_over(
                                    &backend,
                                    wire,
                                    why.clone(),
                                    dropped,
                                ));
                                trip.last = LastFailure::Http {
                                    status: StatusCode::BAD_REQUEST,
                                    body: invalid_request(
                                        &format!("cannot translate the request: {why}"),
                                        "invalid_request",
                                        None,
                                    ),
                                };
                                m.skipped = true;
                                continue;
                            }
                            // Fields the config drops are meant to go.
                            let body = drop_always(&backend, body, &mut dropped);
                            let mut headers = upstream::outgoing_headers(
                                self.headers,
                                &backend,
                                self.request_id,
                                self.forward_credentials,
                            );
                            if let Some(form) = self.form {
                                headers.insert(header::CONTENT_TYPE, form.content_type());
                            }
                            m.prepared = Some((headers, body, dropped));
                        }
                        Err(e) => return Run::Answer(translate_failed(&e, backend, wire)),
                    }
                }
                // `enable_pre_call_checks`: a request over the backend's
                // context window is not sent to it.
                if self.settings.pre_call_checks
                    && let Some(max) = backend.limits.max_input_tokens
                    && self.endpoint.is_generation()
                {
                    let n = *trip
                        .input_tokens
                        .get_or_insert_with(|| self.estimate_input_tokens());
                    if n > max {
                        let why = format!(
                            "backend {} takes at most {max} input tokens; the request has about {n} (enable_pre_call_checks)",
                            backend.name
                        );
                        attempts.push(self.passed_over(&backend, wire, why.clone(), Vec::new()));
                        trip.window = Some(LastFailure::Http {
                            status: StatusCode::BAD_REQUEST,
                            body: invalid_request(
                                &why,
                                "context_length_exceeded",
                                Some("messages"),
                            ),
                        });
                        m.skipped = true;
                        continue;
                    }
                }
                // The backend's own limits: in flight, then per minute.
                let max = backend.limits.max_parallel;
                let lease = match (m.state.begin_within(max), max) {
                    (Some(lease), _) => Some(lease),
                    // As LiteLLM's semaphore: the request waits for a place,
                    // within the time the backend has to answer.
                    (None, Some(max)) if alone => {
                        let within = backend.timeout_for(self.stream);
                        Box::pin(m.state.begin_waiting(max, within)).await
                    }
                    // Another backend may be free: this one after them.
                    (None, Some(_)) if !m.busy => {
                        m.busy = true;
                        continue;
                    }
                    (None, _) => None,
                };
                let Some(mut lease) = lease else {
                    let max = backend.limits.max_parallel.unwrap_or(0);
                    self.over_limit(
                        attempts,
                        &backend,
                        format!("at its max_parallel_requests ({max} in flight)"),
                        "parallel",
                        Duration::from_secs(1),
                        &mut trip.last,
                    );
                    m.skipped = true;
                    continue;
                };
                // Boxed: only limited backends (and usage-based routing)
                // count, and the Redis admission's future is large.
                if (backend.limits.per_minute() || m.state.deployment.tracked())
                    && let Err(full) = Box::pin(m.state.deployment.reserve(&backend.limits)).await
                {
                    drop(lease);
                    let what = match full {
                        usage::Full::Requests(_) => "rpm",
                        usage::Full::Tokens(_) => "tpm",
                    };
                    self.over_limit(
                        attempts,
                        &backend,
                        full.to_string(),
                        what,
                        usage::until_next_minute(),
                        &mut trip.last,
                    );
                    m.skipped = true;
                    continue;
                }
                // Its latency counts from here, not from the admission.
                lease.restart();
                let Some((mut headers, body, dropped)) = m.prepared.clone() else {
                    continue;
                };
                // Telemetry hook: this attempt's span and its `traceparent`.
                let span = self
                    .trace
                    .map(|t| crate::telemetry::attempt(t, &mut headers, &backend));
                m.made += 1;
                let started = Instant::now();
                let mut seen = None;
                // Listed before it is sent: if the request is cut while it
                // waits, the record still names the backend.
                let slot = attempts.len();
                let url = if matches!(backend.api_type, ApiType::Gemini | ApiType::Vertex) {
                    upstream::google::url_for(&backend, wire, &body)
                } else {
                    backend.endpoint_url(wire)
                };
                attempts.push(Attempt {
                    backend: backend.name.clone(),
                    url,
                    upstream_model: upstream_model(&backend, self.body),
                    attempt: m.made,
                    status: None,
                    latency: Duration::ZERO,
                    error: None,
                    headers: None,
                    pending: Some(started),
                    dropped,
                    span,
                });
                let mut kind = None;
                let mut verdict = self
                    .attempt(&backend, wire, headers, body, &mut seen, &mut kind)
                    .await;
                let kind = kind.or_else(|| failure_kind(&verdict));
                scrub(&mut verdict, self.scrubber);
                let (status, error) = describe(&verdict);
                if !matches!(verdict, Verdict::Done(_)) {
                    // The request's fields as fields (a JSON log indexes
                    // them); the error is already scrubbed.
                    tracing::warn!(
                        request_id = self.request_id.to_str().ok(),
                        model = %backend.model_name,
                        backend = %backend.name,
                        attempt = m.made,
                        status,
                        kind = kind.map(ErrorKind::as_str),
                        error = error.as_deref(),
                        "upstream attempt failed"
                    );
                }
                if let Some(a) = attempts.get_mut(slot) {
                    a.status = status;
                    a.latency = started.elapsed();
                    a.error = error;
                    a.headers = seen;
                    a.pending = None;
                }
                match &mut verdict {
                    Verdict::Done(Answer::Stream { rest, .. }) => {
                        lease.stream_started(self.settings);
                        rest.hold(lease);
                    }
                    v => lease.finish(outcome(v), kind, self.settings),
                }
                if let Some(next) = self.kind_fallback(kind, &verdict, trip) {
                    trip.last = into_failure(verdict);
                    trip.held = None;
                    return Run::Switch(next);
                }
                // `retry_policy`: the retries for this kind of failure, in
                // place of the usual ones; a final answer or a skip retried.
                let policy_retries = kind
                    .and_then(|k| k.retries(self.settings.retry_policy_for(&backend.model_name)));
                m.cap = policy_retries.map(|n| n.saturating_add(1));
                let mut held = None;
                let verdict = match verdict {
                    Verdict::Done(answer)
                        if is_error(&answer) && policy_retries.is_some_and(|n| n > 0) =>
                    {
                        let (failure, retry_after) = failure_of(&answer);
                        held = Some(answer);
                        Verdict::Retry(failure, retry_after)
                    }
                    Verdict::Skip(failure) if policy_retries.is_some_and(|n| n > 0) => {
                        Verdict::Retry(failure, None)
                    }
                    v => v,
                };
                // A final answer held for the client stands until a later
                // attempt answers (or holds another).
                if held.is_some() {
                    trip.held = held;
                }
                match verdict {
                    Verdict::Done(answer) => return Run::Answer(answer),
                    Verdict::Skip(failure) => {
                        trip.last = failure;
                        m.skipped = true;
                    }
                    Verdict::Retry(failure, retry_after) => {
                        trip.last = failure;
                        m.ended = Some((Instant::now(), retry_after));
                    }
                }
            }
            // A final answer retried as `retry_policy` says, to no avail:
            // it stays final (no fallback model), as without the policy.
            if let Some(answer) = trip.held.take() {
                return Run::Answer(answer);
            }
        }
        Run::Exhausted
    }

    /// The plan of the requested model's fallbacks for `kind` (the first
    /// group's model), when this attempt failed that way and they were not
    /// taken yet in this request.
    fn kind_fallback(
        &self,
        kind: Option<ErrorKind>,
        verdict: &Verdict,
        trip: &mut Trip,
    ) -> Option<Arc<[Arc<Backend>]>> {
        let kind = kind?;
        if let Verdict::Done(answer) = verdict
            && !is_error(answer)
        {
            return None;
        }
        self.switch_for(kind, trip)
    }

    /// The plan of the requested model's fallbacks for `kind`, once per
    /// kind and request.
    fn switch_for(&self, kind: ErrorKind, trip: &mut Trip) -> Option<Arc<[Arc<Backend>]>> {
        if trip.taken.contains(&kind) {
            return None;
        }
        let model = &self.plan.first()?.model_name;
        let plan = self.kind_fallbacks?.plan_for(model, kind)?;
        trip.taken.push(kind);
        let request_id = self.request_id.to_str().ok();
        match kind {
            ErrorKind::ContextWindow => tracing::warn!(
                request_id,
                model = %model,
                to = %plan[0].model_name,
                "falling back on context window error"
            ),
            ErrorKind::ContentPolicy => tracing::warn!(
                request_id,
                model = %model,
                to = %plan[0].model_name,
                "falling back on content policy error"
            ),
            _ => tracing::warn!(
                request_id,
                model = %model,
                to = %plan[0].model_name,
                kind = kind.as_str(),
                "falling back on an error of its kind"
            ),
        }
        Some(plan)
    }

    /// The request's input tokens, estimated from its text (about four
    /// characters a token: `protocol::tokens`); 0 for a body that is not
    /// JSON (a form).
    fn estimate_input_tokens(&self) -> u64 {
        if self.form.is_some() {
            return 0;
        }
        serde_json::from_slice::<serde_json::Value>(self.raw)
            .map(|v| crate::protocol::tokens::estimate(&v))
            .unwrap_or(0)
    }

    /// The record of a backend passed over without a request going out
    /// (it cannot serve the endpoint, refuses what it would drop, or is at
    /// a limit): no status, `why` as its error.
    fn passed_over(
        &self,
        backend: &Backend,
        wire: Endpoint,
        why: String,
        dropped: Vec<String>,
    ) -> Attempt {
        Attempt {
            backend: backend.name.clone(),
            url: backend.endpoint_url(wire),
            upstream_model: upstream_model(backend, self.body),
            attempt: 1,
            status: None,
            latency: Duration::ZERO,
            error: Some(why),
            headers: None,
            pending: None,
            dropped,
            span: None,
        }
    }

    /// An attempt a backend's own limit passed over: listed in the record
    /// (no status, the reason as its error) and counted. The failure to
    /// report becomes a 429 when nothing better is known (a backend's own
    /// answer wins over a limit).
    fn over_limit(
        &self,
        attempts: &mut Vec<Attempt>,
        backend: &Backend,
        why: String,
        limit: &'static str,
        retry_after: Duration,
        last: &mut LastFailure,
    ) {
        metrics::counter!(crate::metrics_names::BACKEND_LIMITED, "model" => backend.model_name.clone(), "backend" => backend.name.clone(), "limit" => limit)
            .increment(1);
        let message = format!("backend {} is {why}", backend.name);
        attempts.push(self.passed_over(backend, self.endpoint, message.clone(), Vec::new()));
        match last {
            LastFailure::Limited {
                retry_after: before,
                ..
            } => {
                *last = LastFailure::Limited {
                    message,
                    retry_after: retry_after.min(*before),
                }
            }
            LastFailure::Network(UpstreamError::Unsupported(_)) => {
                *last = LastFailure::Limited {
                    message,
                    retry_after,
                }
            }
            _ => {}
        }
    }

    /// The body for `backend`: the client's, translated to `wire` when the
    /// backend speaks another dialect, with the backend's rewrites (model,
    /// reasoning, parameter defaults); and what it leaves out of the
    /// client's request.
    fn prepare(
        &self,
        backend: &Backend,
        wire: Endpoint,
    ) -> Result<crate::protocol::Translated, crate::protocol::TranslateError> {
        if self.form.is_some() {
            // The form goes out as it came (its `model` per backend, in `attempt`).
            return Ok(crate::protocol::Translated::default());
        }
        let sampling =
            !matches!(wire, Endpoint::Embeddings | Endpoint::CountTokens) && !wire.is_media();
        // Interleaved thinking: `messages` with earlier turns' reasoning given back.
        let mut restored = self.thinking.and_then(|t| t.messages_for(backend));
        if wire == self.endpoint {
            let mut dropped = Vec::new();
            // Anthropic verifies every thinking block's signature: blocks
            // another backend produced (a translated answer's `""`) are
            // left out rather than refused upstream.
            if matches!(wire, Endpoint::Messages | Endpoint::CountTokens) {
                let messages = restored
                    .as_deref()
                    .or_else(|| self.body.get("messages").map(|m| m.get()));
                if let Some((clean, gone)) =
                    messages.and_then(crate::protocol::anthropic::request::strip_unverifiable)
                {
                    restored = Some(clean.to_string());
                    dropped = gone;
                }
            }
            let replace = restored.as_deref().map(|m| ("messages", m));
            return Ok(crate::protocol::Translated {
                body: self
                    .body
                    .for_backend_replacing(self.raw, backend, sampling, replace),
                dropped,
            });
        }
        let mut translated = match restored {
            // Restored in the client's dialect, then translated with the rest.
            Some(messages) => {
                let bad =
                    |e: serde_json::Error| crate::protocol::TranslateError::new(e.to_string());
                let mut v: serde_json::Value = serde_json::from_slice(self.raw).map_err(bad)?;
                if let Some(obj) = v.as_object_mut() {
                    obj.insert(
                        "messages".into(),
                        serde_json::from_str(&messages).map_err(bad)?,
                    );
                }
                let with = Bytes::from(serde_json::to_vec(&v).map_err(bad)?);
                crate::protocol::translate(self.endpoint, wire, &with, Some(backend))?
            }
            None => crate::protocol::translate(self.endpoint, wire, self.raw, Some(backend))?,
        };
        let parsed = RequestBody::parse(&translated.body)
            .map_err(|e| crate::protocol::TranslateError::new(e.to_string()))?;
        translated.body = parsed.for_backend_with(&translated.body, backend, sampling);
        Ok(translated)
    }

    /// One attempt at `backend`; `kind` is set to an HTTP error's kind.
    async fn attempt(
        &self,
        backend: &Arc<Backend>,
        wire: Endpoint,
        headers: HeaderMap,
        body: Bytes,
        seen: &mut Option<HeaderMap>,
        kind: &mut Option<ErrorKind>,
    ) -> Verdict {
        let over_socket = match self.sockets {
            Some(sockets)
                if self.stream && wire == Endpoint::Responses && backend.responses_websocket =>
            {
                // Boxed: a socket's handshake future is large, and only
                // WebSocket turns need it (see `forward`'s boxing note).
                Box::pin(upstream::ws::send(sockets, backend, &headers, &body)).await
            }
            _ => None,
        };
        let sent = match over_socket {
            Some(sent) => sent,
            None => {
                let timeout = backend.timeout_for(self.stream);
                match self.form {
                    Some(form) => {
                        let model = upstream_model(backend, self.body);
                        let payload = upstream::Payload::Form(form.clone(), model);
                        upstream::send_payload(
                            self.client,
                            backend,
                            wire,
                            headers,
                            payload,
                            timeout,
                        )
                        .await
                    }
                    None => {
                        upstream::send(
                            self.client,
                            backend,
                            wire,
                            headers,
                            body,
                            self.max_response_bytes,
                            timeout,
                        )
                        .await
                    }
                }
            }
        };
        let response = match sent {
            Ok(r) => r,
            Err(e @ UpstreamError::Unsupported(_)) => {
                return Verdict::Skip(LastFailure::Network(e));
            }
            Err(e) => return Verdict::Retry(LastFailure::Network(e), None),
        };
        let UpstreamResponse {
            status,
            headers,
            mut body,
        } = response;
        *seen = Some(headers.clone());
        let gap = backend.timeout_for(self.stream);
        if !status.is_success() {
            let retry_after = retry_after(&headers);
            // Only an error body's start matters: read at most
            // ERROR_BODY_LIMIT of it.
            let text = upstream::read_error_body(&mut body, gap)
                .await
                .unwrap_or_default();
            // A content policy refused the request: another try or backend
            // would be refused the same; the client hears it as is (unless
            // `content_policy_fallbacks` or `retry_policy` say otherwise).
            *kind = kind_of_http(status, &text);
            let refused = *kind == Some(ErrorKind::ContentPolicy);
            if is_retryable(status) && !refused {
                return Verdict::Retry(LastFailure::Http { status, body: text }, retry_after);
            }
            if is_skippable(status) && !refused {
                return Verdict::Skip(LastFailure::Http { status, body: text });
            }
            // The request itself is bad: the client hears it as the backend said it.
            return Verdict::Done(Answer::Complete {
                status,
                headers,
                body: text,
                backend: backend.clone(),
                wire,
                usage: None,
            });
        }
        let is_sse = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("event-stream"));
        if self.endpoint.is_media() && !is_json(&headers) {
            // Audio, a transcript as text: relayed unbuffered.
            return Verdict::Done(Answer::Raw {
                status,
                headers,
                body,
                backend: backend.clone(),
            });
        }
        if self.stream && is_sse {
            let mut source = SseSource::with_settings(body, gap, self.streaming);
            return match source.peek().await {
                Ok(Peek::Events(first)) => Verdict::Done(Answer::Stream {
                    status,
                    headers,
                    first,
                    rest: source,
                    backend: backend.clone(),
                    wire,
                }),
                Ok(Peek::ErrorEvent(data)) => {
                    Verdict::Retry(LastFailure::ErrorEvent { data }, None)
                }
                Ok(Peek::Empty) => Verdict::Retry(
                    LastFailure::Network(UpstreamError::Body(
                        "stream closed before the first event".into(),
                    )),
                    None,
                ),
                Err(e) => Verdict::Retry(LastFailure::Network(e), None),
            };
        }
        let declared = upstream::content_length(&headers);
        match upstream::read_body(&mut body, gap, self.max_response_bytes, declared).await {
            Ok(text)
                if self.stream && crate::sse::is_error_object(&String::from_utf8_lossy(&text)) =>
            {
                // A stream request answered with a JSON error and status 200.
                Verdict::Retry(
                    LastFailure::ErrorEvent {
                        data: String::from_utf8_lossy(&text).into_owned(),
                    },
                    None,
                )
            }
            // A success must be JSON (an event stream the client did not
            // ask for is relayed as it is): an HTML error page from a
            // gateway in front of the backend, or a body cut short, is an
            // upstream failure, not a completion.
            Ok(text) => {
                // One pass over the body: that it is JSON, and its usage.
                let read = if is_sse {
                    Ok(None)
                } else {
                    crate::usage::Usage::from_json_answer(&text)
                };
                match read {
                    Err(crate::usage::NotJson) => Verdict::Retry(
                        LastFailure::Network(UpstreamError::Malformed {
                            status: status.as_u16(),
                            message: not_json(status, &headers, &text).unwrap_or_default(),
                        }),
                        None,
                    ),
                    Ok(usage) => Verdict::Done(Answer::Complete {
                        status,
                        headers,
                        body: text,
                        backend: backend.clone(),
                        wire,
                        usage,
                    }),
                }
            }
            // Past the proxy's own bound: the next backend (or fallback)
            // may answer within it; this one would answer the same again.
            Err(UpstreamError::TooLarge { limit, .. }) => {
                Verdict::Skip(LastFailure::Network(UpstreamError::TooLarge {
                    status: status.as_u16(),
                    limit,
                }))
            }
            Err(e) => Verdict::Retry(LastFailure::Network(e), None),
        }
    }

    /// Jittered exponential backoff before retrying one backend, at least
    /// the upstream's `Retry-After` (capped).
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let base = self.settings.retry_backoff.as_secs_f64() * 2f64.powi(attempt as i32 - 1);
        let jittered = Duration::from_secs_f64((base * (0.5 + fastrand::f64())).min(5.0));
        match retry_after {
            Some(ra) => jittered.max(ra.min(self.settings.max_retry_after)),
            None => jittered,
        }
    }
}

/// The member to try next: one with attempts left, preferring those in
/// rotation (a backend may cool down during the request), then the fewest
/// attempts so far (so a retry moves to another backend before repeating
/// one), then the balanced order.
/// Whether a member may be tried again: `retry_policy` for the last
/// failure's kind wins, then a backend's own `max_retries`, then the
/// router's.
fn has_tries(m: &Member, retries: u32) -> bool {
    let tries = m
        .cap
        .unwrap_or_else(|| m.backend.max_retries.unwrap_or(retries).saturating_add(1));
    !m.skipped && m.made < tries
}

fn next_member(members: &[Member], retries: u32) -> Option<usize> {
    let now = Instant::now();
    members
        .iter()
        .enumerate()
        .filter(|(_, m)| has_tries(m, retries))
        .min_by_key(|(i, m)| {
            let out = m.state.health(now) != state::Health::Healthy;
            (m.busy, out, m.made, *i)
        })
        .map(|(i, _)| i)
}

/// The kind of a failure that is not an HTTP error answer (those are
/// classified where their body is read).
fn failure_kind(v: &Verdict) -> Option<ErrorKind> {
    match v {
        Verdict::Done(_) => None,
        Verdict::Retry(f, _) | Verdict::Skip(f) => match f {
            LastFailure::Http { status, body } => kind_of_http(*status, body),
            LastFailure::ErrorEvent { data } => Some(kind_of_event(data)),
            LastFailure::Network(e) => kind_of_network(e),
            LastFailure::Limited { .. } => None,
        },
    }
}

/// A whole answer with an error status (a final client error).
fn is_error(answer: &Answer) -> bool {
    matches!(answer, Answer::Complete { status, .. } if !status.is_success())
}

/// A final error answer as a failure, with its `Retry-After`.
fn failure_of(answer: &Answer) -> (LastFailure, Option<Duration>) {
    match answer {
        Answer::Complete {
            status,
            headers,
            body,
            ..
        } => (
            LastFailure::Http {
                status: *status,
                body: body.clone(),
            },
            retry_after(headers),
        ),
        Answer::Stream { status, .. } | Answer::Raw { status, .. } => (
            LastFailure::Http {
                status: *status,
                body: Bytes::new(),
            },
            None,
        ),
    }
}

/// An attempt's failure (a final error answer as its status and body).
fn into_failure(v: Verdict) -> LastFailure {
    match v {
        Verdict::Done(answer) => failure_of(&answer).0,
        Verdict::Retry(f, _) | Verdict::Skip(f) => f,
    }
}

/// Whether an answer says it is JSON.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"))
}

/// What an attempt means for its backend's state.
fn outcome(v: &Verdict) -> state::Outcome {
    use state::Outcome as O;
    let http = |status: StatusCode, retry_after: Option<Duration>| match status.as_u16() {
        429 => O::RateLimited(retry_after),
        408 => O::ServerError(408),
        s if status.is_server_error() => O::ServerError(s),
        _ if status.is_success() => O::Success,
        s => O::ClientError(s),
    };
    let (failure, retry_after) = match v {
        Verdict::Done(Answer::Complete { status, .. }) => return http(*status, None),
        Verdict::Done(Answer::Stream { .. } | Answer::Raw { .. }) => return O::Success,
        Verdict::Retry(f, ra) => (f, *ra),
        Verdict::Skip(f) => (f, None),
    };
    match failure {
        LastFailure::Http { status, .. } => http(*status, retry_after),
        LastFailure::ErrorEvent { .. } => O::ErrorEvent,
        LastFailure::Network(UpstreamError::Unsupported(_)) => O::Unsupported,
        // The backend answered; the proxy's bound refused it (the request
        // asked for that much): no fault of the backend, no cooldown.
        LastFailure::Network(UpstreamError::TooLarge { status, .. }) => O::ClientError(*status),
        LastFailure::Network(_) => O::Network,
        // Never an attempt's outcome: no request went out.
        LastFailure::Limited { .. } => O::Unsupported,
    }
}

/// A request the translation to the backend's dialect refused: a 400 in
/// OpenAI's shape (the front door puts it in the client's).
fn translate_failed(
    e: &crate::protocol::TranslateError,
    backend: Arc<Backend>,
    wire: Endpoint,
) -> Answer {
    let body = invalid_request(
        &format!("cannot translate the request: {e}"),
        "invalid_request",
        None,
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Answer::Complete {
        status: StatusCode::BAD_REQUEST,
        headers,
        body,
        backend,
        wire,
        usage: None,
    }
}

/// A request error in OpenAI's shape (its `code` is what the kind
/// classifier and clients read).
fn invalid_request(message: &str, code: &str, param: Option<&str>) -> Bytes {
    let mut error = serde_json::json!({
        "message": message,
        "type": "invalid_request_error",
        "code": code,
    });
    if let Some(p) = param {
        error["param"] = serde_json::Value::from(p);
    }
    Bytes::from(serde_json::json!({ "error": error }).to_string())
}

/// `additional_drop_params`: the top-level fields never sent to this
/// backend taken out of its body (and listed as dropped).
fn drop_always(backend: &Backend, body: Bytes, dropped: &mut Vec<String>) -> Bytes {
    if backend.drop.always.is_empty() {
        return body;
    }
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice(&body) else {
        return body;
    };
    let before = dropped.len();
    for field in backend.drop.always.iter() {
        if map.remove(field).is_some() {
            dropped.push(field.clone());
        }
    }
    if dropped.len() == before {
        return body;
    }
    serde_json::to_vec(&map).map_or(body, Bytes::from)
}

/// The model name an attempt sends: the backend's own, or (a wildcard
/// backend with `strip_prefix`) the requested one without the prefix.
fn upstream_model(backend: &Backend, body: &RequestBody<'_>) -> Option<String> {
    match &backend.upstream_model {
        Some(m) => Some(m.clone()),
        None if backend.strip_prefix => body
            .model()
            .ok()
            .map(|m| crate::wildcard::stripped(&backend.model_name, &m).to_string()),
        None => None,
    }
}

/// Every upstream text of an attempt's outcome (an error body, an error
/// event, an error message) with the config's secrets and anything that
/// looks like a key masked, before it is described, logged or relayed.
fn scrub(v: &mut Verdict, s: &crate::reqlog::redact::Scrubber) {
    let failure = match v {
        Verdict::Done(Answer::Complete { status, body, .. }) if !status.is_success() => {
            *body = s.scrub_upstream_bytes(std::mem::take(body));
            return;
        }
        Verdict::Done(_) => return,
        Verdict::Retry(f, _) | Verdict::Skip(f) => f,
    };
    match failure {
        LastFailure::Http { body, .. } => *body = s.scrub_upstream_bytes(std::mem::take(body)),
        LastFailure::ErrorEvent { data } => *data = s.scrub_upstream(std::mem::take(data)),
        LastFailure::Network(e) => e.scrub(|t| s.scrub_upstream(t)),
        LastFailure::Limited { .. } => {}
    }
}

fn describe(v: &Verdict) -> (Option<u16>, Option<String>) {
    match v {
        Verdict::Done(Answer::Complete { status, body, .. }) => (
            Some(status.as_u16()),
            (!status.is_success()).then(|| short_error(body)),
        ),
        Verdict::Done(Answer::Stream { status, .. } | Answer::Raw { status, .. }) => {
            (Some(status.as_u16()), None)
        }
        Verdict::Retry(f, _) | Verdict::Skip(f) => match f {
            LastFailure::Http { status, body } => (Some(status.as_u16()), Some(short_error(body))),
            LastFailure::ErrorEvent { data } => (
                Some(200),
                Some(format!("error event: {}", short_error(data.as_bytes()))),
            ),
            LastFailure::Network(
                e @ (UpstreamError::Malformed { status, .. }
                | UpstreamError::TooLarge { status, .. }),
            ) => (Some(*status), Some(e.to_string())),
            LastFailure::Network(e) => (None, Some(e.to_string())),
            LastFailure::Limited { message, .. } => (None, Some(message.clone())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::classify::RETRY_AFTER_CAP_SECS;
    use super::*;

    #[test]
    fn classification() {
        for s in [408, 409, 429, 500, 502, 503, 504] {
            assert!(is_retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [401, 403, 404, 508] {
            let s = StatusCode::from_u16(s).unwrap();
            assert!(is_skippable(s) && !is_retryable(s));
        }
        for s in [400, 413, 422] {
            let s = StatusCode::from_u16(s).unwrap();
            assert!(!is_skippable(s) && !is_retryable(s));
        }
    }

    #[test]
    fn attempts_name_the_stripped_upstream_model() {
        let c = crate::Config::from_yaml(
            "model_list:\n  - {model_name: 'openai/*', model_params: {api_base: 'http://b/v1', strip_prefix: true}}\n  - {model_name: 'raw/*', model_params: {api_base: 'http://b/v1'}}\n",
            None,
            &crate::config::Env::isolated::<[(&str, &str); 0], _, _>([]),
        )
        .unwrap();
        let raw = bytes::Bytes::from_static(br#"{"model":"openai/gpt-4o","messages":[]}"#);
        let body = RequestBody::parse(&raw).unwrap();
        let strip = &c.models[0].backends[0];
        let keep = &c.models[1].backends[0];
        assert_eq!(upstream_model(strip, &body).as_deref(), Some("gpt-4o"));
        assert_eq!(upstream_model(keep, &body), None);
    }

    #[test]
    fn content_filter_refusals() {
        assert!(is_content_filter(
            br#"{"error":{"message":"x","code":"content_filter","status":400}}"#
        ));
        assert!(is_content_filter(
            br#"{"error":{"code":null,"innererror":{"code":"ResponsibleAIPolicyViolation"}}}"#
        ));
        assert!(!is_content_filter(
            br#"{"error":{"message":"content_filter mentioned","code":"rate_limit"}}"#
        ));
        assert!(!is_content_filter(b"content_filter"));
        assert!(!is_content_filter(
            br#"{"error":{"code":"invalid_request"}}"#
        ));
    }

    #[test]
    fn retry_after_never_panics_and_is_capped() {
        let cap = Some(Duration::from_secs_f64(RETRY_AFTER_CAP_SECS));
        for (ms, want) in [
            ("1e300", cap),
            ("1e20", cap),
            ("NaN", None),
            ("nan", None),
            ("inf", None),
            ("-inf", None),
            ("-1", None),
            ("1e-300", Some(Duration::ZERO)),
            ("", None),
            ("12abc", None),
        ] {
            let mut h = HeaderMap::new();
            h.insert("retry-after-ms", HeaderValue::from_static(ms));
            assert_eq!(retry_after(&h), want, "retry-after-ms: {ms}");
            let mut h = HeaderMap::new();
            h.insert(header::RETRY_AFTER, HeaderValue::from_static(ms));
            assert_eq!(retry_after(&h), want, "retry-after: {ms}");
        }
        // A date far in the future is capped too; not UTF-8 is ignored.
        let mut h = HeaderMap::new();
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Fri, 31 Dec 9999 23:59:59 GMT"),
        );
        assert_eq!(retry_after(&h), cap);
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        h.insert("retry-after-ms", HeaderValue::from_bytes(b"1\xff").unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut h = HeaderMap::new();
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(header::RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(d > Duration::from_secs(25) && d <= Duration::from_secs(30));
    }

    #[test]
    fn success_bodies_must_be_json() {
        let ok = StatusCode::OK;
        let mut h = HeaderMap::new();
        assert_eq!(not_json(ok, &h, br#" {"id":"x","choices":[]} "#), None);
        assert_eq!(not_json(ok, &h, b"[1,2]"), None);
        assert_eq!(
            not_json(ok, &h, b"").as_deref(),
            Some("the upstream answered 200 with an empty body (no content type)")
        );
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        assert_eq!(
            not_json(ok, &h, b"<html>502 Bad Gateway</html>\n").as_deref(),
            Some(
                "the upstream answered 200 with a body that is not JSON (text/html): <html>502 Bad Gateway</html>"
            )
        );
        assert!(not_json(ok, &h, br#"{"id":"x","choices":[{"#).is_some());
        assert!(not_json(ok, &h, br#"{"id":"x"} trailing"#).is_some());
    }

    #[test]
    fn short_errors() {
        assert_eq!(short_error(br#"{"error":{"message":"boom"}}"#), "boom");
        assert_eq!(short_error(br#"{"error":"flat"}"#), "flat");
        assert_eq!(short_error(b"  <html>bad</html> "), "<html>bad</html>");
        assert_eq!(truncate("héllo", 2), "h…");
    }
}
