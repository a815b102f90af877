//! Per-backend runtime state: requests in flight, recent failures and
//! cooldowns, the health-check verdict, a latency estimate for routing, and
//! the counters `/stats` shows. It lives in the [`Registry`] (in `AppState`),
//! not in the rebuilt `Live`, so a reload keeps the state of every backend
//! whose name and `api_base` stay the same; a backend whose URL changed
//! starts afresh.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Backend, RouterSettings};
use crate::redis::SharedRedis;

use super::classify::ErrorKind;
use super::stats::Stats;

/// Failures older than this no longer count towards `allowed_fails`.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// A latency estimate older than this counts as unknown, so a backend that
/// was slow once is measured again instead of starving forever.
pub const LATENCY_TTL: Duration = Duration::from_secs(300);
/// Weight of the newest sample in the latency estimate.
const EWMA_ALPHA: f64 = 0.3;
/// The latency estimate of a backend whose last stream broke after its
/// first event (seconds): `latency-based` routing puts it after every
/// measured backend until it finishes a stream again or the estimate goes
/// stale ([`LATENCY_TTL`]). Its first events came fast, but they were no use.
pub const BROKEN_STREAM_LATENCY: f64 = 1e9;

/// Every backend's state, by backend name.
pub struct Registry {
    map: RwLock<HashMap<String, Arc<BackendState>>>,
    /// The limit counters by deployment key (see [`Registry::deployment`]).
    deployments: RwLock<HashMap<String, Arc<super::usage::Deployment>>>,
    redis: Option<Arc<SharedRedis>>,
}

impl Registry {
    pub fn new(redis: Option<Arc<SharedRedis>>) -> Registry {
        Registry {
            map: RwLock::default(),
            deployments: RwLock::default(),
            redis,
        }
    }

    pub fn redis(&self) -> Option<&Arc<SharedRedis>> {
        self.redis.as_ref()
    }

    /// The state of `backend`, made on first use (or anew when the backend
    /// of that name now points elsewhere).
    pub fn get(&self, backend: &Backend) -> Arc<BackendState> {
        let same = |s: &BackendState| {
            s.api_base == backend.api_base && s.limits_from == backend.limits.from
        };
        if let Ok(map) = self.map.read()
            && let Some(s) = map.get(&backend.name)
            && same(s)
        {
            return s.clone();
        }
        let deployment = self.deployment(backend);
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        match map.get(&backend.name) {
            Some(s) if same(s) => s.clone(),
            _ => {
                let s = Arc::new(BackendState::new(backend, self.redis.clone(), deployment));
                map.insert(backend.name.clone(), s.clone());
                s
            }
        }
    }

    /// The limit counters of `backend`'s deployment: its own, or, with
    /// `limits_from` (a derived model's copy of a backend), that backend's,
    /// keyed by name and URL like the shared cooldowns.
    fn deployment(&self, backend: &Backend) -> Arc<super::usage::Deployment> {
        let name = backend.limits.from.as_deref().unwrap_or(&backend.name);
        let key = super::shared::backend_key(name, &backend.api_base);
        if let Ok(map) = self.deployments.read()
            && let Some(d) = map.get(&key)
        {
            return d.clone();
        }
        let mut map = self.deployments.write().unwrap_or_else(|e| e.into_inner());
        map.entry(key.clone())
            .or_insert_with(|| Arc::new(super::usage::Deployment::new(key, self.redis.clone())))
            .clone()
    }

    /// The state of the backend named `name`, if it has been used.
    pub fn find(&self, name: &str) -> Option<Arc<BackendState>> {
        self.map.read().ok()?.get(name).cloned()
    }

    /// Every state known, in no order.
    pub fn all(&self) -> Vec<Arc<BackendState>> {
        self.map
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets backends no longer configured.
    pub fn retain(&self, live: &[Arc<Backend>]) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|name, s| {
            live.iter().any(|b| {
                &b.name == name && b.api_base == s.api_base && b.limits.from == s.limits_from
            })
        });
        drop(map);
        // Counters no backend state holds any more.
        let mut deployments = self.deployments.write().unwrap_or_else(|e| e.into_inner());
        deployments.retain(|_, d| Arc::strong_count(d) > 1);
    }

    /// Every deployment's counters whose usage is shared through Redis.
    fn tracked(&self) -> Vec<Arc<super::usage::Deployment>> {
        self.deployments
            .read()
            .map(|m| m.values().filter(|d| d.tracked()).cloned().collect())
            .unwrap_or_default()
    }

    /// Adds the token usage of an answer to its backend's counters.
    pub fn add_tokens(&self, backend: &str, input: u64, output: u64) {
        if let Some(s) = self.find(backend) {
            {
                let mut stats = s.stats();
                stats.tokens_in += input;
                stats.tokens_out += output;
            }
            // Only where limits or usage-based routing read them.
            if s.deployment.tracked() {
                s.deployment.add_tokens(input.saturating_add(output));
            }
        }
    }
}

/// Whether a backend is in rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    /// Too many recent failures (here or, with Redis, on another instance),
    /// or a 429 with `Retry-After`.
    CoolingDown,
    /// Its active health check fails.
    Unhealthy,
}

impl Health {
    /// The `yallmp_backend_state` gauge value.
    pub fn gauge(self) -> f64 {
        match self {
            Health::Healthy => 0.0,
            Health::CoolingDown => 1.0,
            Health::Unhealthy => 2.0,
        }
    }
}

/// How one attempt ended, as far as the backend's state cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx (for a stream: one that ended normally, or whose client left).
    Success,
    /// A 4xx the request caused (passed to the client, or 401/403/404
    /// skipped): never cools the backend down, unless
    /// `allowed_fails_policy` names its kind.
    ClientError(u16),
    /// 429; with `Retry-After`, the backend cools down for that long.
    RateLimited(Option<Duration>),
    /// 5xx or 408.
    ServerError(u16),
    /// Could not connect, timed out, broken body.
    Network,
    /// A stream whose first event is an error.
    ErrorEvent,
    /// A stream that broke after its first event: cut, stalled, an event
    /// past the bound, or an error event in the middle.
    StreamBroken,
    /// Not something this backend can do (an endpoint its api_type does
    /// not serve, such as embeddings at an Anthropic backend).
    Unsupported,
}

impl Outcome {
    /// The `outcome` label of `yallmp_upstream_attempts_total`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ClientError(_) => "client_error",
            Outcome::RateLimited(_) => "rate_limited",
            Outcome::ServerError(_) => "server_error",
            Outcome::Network => "network_error",
            Outcome::ErrorEvent => "error_event",
            Outcome::StreamBroken => "stream_broken",
            Outcome::Unsupported => "unsupported",
        }
    }

    /// Whether it counts towards `allowed_fails`.
    fn counts(self) -> bool {
        matches!(
            self,
            Outcome::RateLimited(None)
                | Outcome::ServerError(_)
                | Outcome::Network
                | Outcome::ErrorEvent
                | Outcome::StreamBroken
        )
    }
}

/// One backend's state.
pub struct BackendState {
    pub name: String,
    pub model: String,
    api_base: String,
    /// The Redis key part: the name and a hash of the URL, so instances
    /// with different URLs under one name do not share cooldowns.
    pub(super) shared_key: String,
    redis: Option<Arc<SharedRedis>>,
    /// Metric label values, shared (no allocation per sample).
    model_label: metrics::SharedString,
    backend_label: metrics::SharedString,
    in_flight: AtomicU64,
    /// A cooldown another instance announced (through Redis), as Unix ms.
    remote_until_ms: AtomicU64,
    /// A health check of it is running.
    pub(super) checking: AtomicBool,
    /// The counters of its limits: its deployment's, shared with the
    /// backends that are the same deployment (`limits_from`).
    pub deployment: Arc<super::usage::Deployment>,
    /// The `limits_from` it was made with.
    limits_from: Option<Arc<str>>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    failures: VecDeque<Instant>,
    /// Failures of the kinds `allowed_fails_policy` names, counted apart
    /// (indexed by [`ErrorKind::index`]).
    kind_failures: [VecDeque<Instant>; ErrorKind::ALL.len()],
    cooldown_until: Option<Instant>,
    last_failure: Option<Instant>,
    last_error: Option<String>,
    /// The health check's complaint, while it fails.
    unhealthy: Option<String>,
    next_check: Option<Instant>,
    /// Seconds, and when it was last updated.
    latency: Option<(f64, Instant)>,
    stats: Stats,
}

/// A backend's state as `/health` and `/stats` show it.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub state: Health,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooling_down_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Failures within the last minute.
    pub recent_failures: usize,
    pub in_flight: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check_error: Option<String>,
}

impl BackendState {
    fn new(
        b: &Backend,
        redis: Option<Arc<SharedRedis>>,
        deployment: Arc<super::usage::Deployment>,
    ) -> BackendState {
        BackendState {
            name: b.name.clone(),
            model: b.model_name.clone(),
            api_base: b.api_base.clone(),
            shared_key: super::shared::backend_key(&b.name, &b.api_base),
            redis,
            model_label: metrics::SharedString::from_shared(Arc::from(b.model_name.as_str())),
            backend_label: metrics::SharedString::from_shared(Arc::from(b.name.as_str())),
            in_flight: AtomicU64::new(0),
            remote_until_ms: AtomicU64::new(0),
            checking: AtomicBool::new(false),
            deployment,
            limits_from: b.limits.from.clone(),
            inner: Mutex::default(),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stats(&self) -> StatsGuard<'_> {
        StatsGuard(self.inner())
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Where it stands now.
    pub fn health(&self, now: Instant) -> Health {
        let inner = self.inner();
        self.health_of(&inner, now)
    }

    fn health_of(&self, inner: &Inner, now: Instant) -> Health {
        if inner.unhealthy.is_some() {
            Health::Unhealthy
        } else if inner.cooldown_until.is_some_and(|t| t > now) || self.remote_cooling() {
            Health::CoolingDown
        } else {
            Health::Healthy
        }
    }

    fn remote_cooling(&self) -> bool {
        let until = self.remote_until_ms.load(Ordering::Relaxed);
        until != 0 && until > unix_ms()
    }

    /// When it last failed (for "least recently failed").
    pub fn last_failure(&self) -> Option<Instant> {
        self.inner().last_failure
    }

    /// The routing latency estimate in seconds, unless unknown or stale.
    pub fn latency(&self, now: Instant) -> Option<f64> {
        self.inner()
            .latency
            .filter(|(_, at)| now.duration_since(*at) < LATENCY_TTL)
            .map(|(s, _)| s)
    }

    /// An attempt starts unless `max` attempts are already in flight at
    /// its deployment (`max_parallel_requests`).
    pub fn begin_within(self: &Arc<Self>, max: Option<u64>) -> Option<Lease> {
        let slot = match max {
            Some(max) => Some(self.deployment.enter(max)?),
            None => None,
        };
        let mut lease = self.begin();
        lease.slot = slot;
        Some(lease)
    }

    /// An attempt starts once one of the deployment's `max` places is
    /// free, waiting at most `within`; `None` when none came free.
    pub async fn begin_waiting(self: &Arc<Self>, max: u64, within: Duration) -> Option<Lease> {
        let slot = tokio::time::timeout(within, self.deployment.enter_waiting(max))
            .await
            .ok()?;
        let mut lease = self.begin();
        lease.slot = Some(slot);
        Some(lease)
    }

    /// An attempt starts: counted in flight until the lease drops.
    pub fn begin(self: &Arc<Self>) -> Lease {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Lease {
            state: self.clone(),
            started: Instant::now(),
            stream: false,
            pending: None,
            slot: None,
        }
    }

    /// Notes how an attempt ended (a failure of `kind`, when it failed);
    /// may start a cooldown.
    fn record(
        &self,
        outcome: Outcome,
        kind: Option<ErrorKind>,
        latency: Duration,
        settings: &RouterSettings,
    ) {
        let now = Instant::now();
        metrics::counter!("yallmp_upstream_attempts_total", "model" => self.model_label.clone(), "backend" => self.backend_label.clone(), "outcome" => outcome.label()).increment(1);
        let mut cooldown = None;
        // `allowed_fails_policy` names this kind (or the kind it is a case
        // of): counted apart, against the policy's number, whether or not
        // `allowed_fails` would count it.
        let by_kind = kind
            .filter(|_| outcome != Outcome::Success)
            .and_then(|k| k.in_policy(&settings.allowed_fails_policy));
        {
            let mut inner = self.inner();
            inner.stats.requests += 1;
            match outcome {
                Outcome::Success => {
                    inner.stats.successes += 1;
                    let secs = latency.as_secs_f64();
                    inner.latency = Some(match inner.latency {
                        Some((old, at))
                            if now.duration_since(at) < LATENCY_TTL
                                && old < BROKEN_STREAM_LATENCY =>
                        {
                            (old + EWMA_ALPHA * (secs - old), now)
                        }
                        _ => (secs, now),
                    });
                }
                Outcome::ClientError(_) | Outcome::RateLimited(_) => inner.stats.failures_4xx += 1,
                Outcome::ServerError(_) => inner.stats.failures_5xx += 1,
                Outcome::Network | Outcome::Unsupported => inner.stats.failures_network += 1,
                Outcome::ErrorEvent => inner.stats.failures_error_event += 1,
                Outcome::StreamBroken => {
                    inner.stats.failures_stream_broken += 1;
                    inner.latency = Some((BROKEN_STREAM_LATENCY, now));
                }
            }
            if !settings.cooldowns {
                // `disable_cooldowns`: failures are recorded, never acted on.
                if outcome.counts()
                    || by_kind.is_some()
                    || matches!(outcome, Outcome::RateLimited(Some(_)))
                {
                    inner.last_failure = Some(now);
                    inner.last_error = Some(describe(outcome));
                }
            } else if let Outcome::RateLimited(Some(wait)) = outcome {
                inner.last_failure = Some(now);
                inner.last_error = Some(format!("429 with Retry-After {:.1}s", wait.as_secs_f64()));
                let wait = wait.clamp(Duration::from_millis(1), Duration::from_secs(3600));
                cooldown = Some(wait);
            } else if let Some((counted, allowed)) = by_kind {
                inner.last_failure = Some(now);
                inner.last_error = Some(describe(outcome));
                let q = &mut inner.kind_failures[counted.index()];
                q.push_back(now);
                prune(q, now);
                if q.len() > allowed as usize {
                    cooldown = Some(settings.cooldown_time);
                }
            } else if outcome.counts() {
                inner.last_failure = Some(now);
                inner.last_error = Some(describe(outcome));
                inner.failures.push_back(now);
                prune(&mut inner.failures, now);
                if inner.failures.len() > settings.allowed_fails as usize {
                    cooldown = Some(settings.cooldown_time);
                }
            }
            if let Some(wait) = cooldown {
                let until = now + wait;
                if inner.cooldown_until.is_none_or(|t| t < until) {
                    inner.cooldown_until = Some(until);
                }
                inner.failures.clear();
                inner.kind_failures.iter_mut().for_each(VecDeque::clear);
            }
        }
        if let Some(wait) = cooldown {
            tracing::warn!(
                backend = %self.name,
                seconds = wait.as_secs_f64(),
                kind = kind.map(ErrorKind::as_str),
                "backend cooling down"
            );
            self.set_state_gauge(Health::CoolingDown);
            self.share_cooldown(wait);
        } else if settings.cooldowns {
            match by_kind {
                Some((counted, allowed)) => self.share_failure(Some(counted), allowed, settings),
                None if outcome.counts() => {
                    self.share_failure(None, settings.allowed_fails, settings);
                }
                None => {}
            }
        }
    }

    /// `yallmp_backend_state`.
    pub fn set_state_gauge(&self, health: Health) {
        metrics::gauge!("yallmp_backend_state", "model" => self.model_label.clone(), "backend" => self.backend_label.clone())
            .set(health.gauge());
    }

    /// Tells other instances, off the request path.
    fn share_cooldown(&self, wait: Duration) {
        if let Some(redis) = &self.redis {
            super::shared::announce_cooldown(redis.clone(), self.shared_key.clone(), wait);
        }
    }

    /// Counts a failure across instances: of `kind` against its policy's
    /// `allowed`, or (no kind) against `allowed_fails`.
    fn share_failure(&self, kind: Option<ErrorKind>, allowed: u32, settings: &RouterSettings) {
        if let Some(redis) = &self.redis {
            super::shared::count_failure(
                redis.clone(),
                self.shared_key.clone(),
                kind.map(ErrorKind::as_str),
                allowed,
                settings.cooldown_time,
                FAILURE_WINDOW,
            );
        }
    }

    /// A cooldown another instance announced (`remaining` from now).
    pub(super) fn set_remote_cooldown(&self, remaining: Option<Duration>) {
        let v = remaining.map_or(0, |r| unix_ms() + r.as_millis() as u64);
        self.remote_until_ms.store(v, Ordering::Relaxed);
    }

    /// The health check's verdict: `None` when it passed.
    pub fn set_check_result(&self, error: Option<String>) {
        let mut inner = self.inner();
        match error {
            None => {
                if inner.unhealthy.take().is_some() {
                    tracing::info!(backend = %self.name, "health check passes again");
                }
            }
            Some(e) => {
                if inner.unhealthy.is_none() {
                    tracing::warn!(backend = %self.name, error = %e, "health check failed");
                }
                inner.last_failure = Some(Instant::now());
                inner.unhealthy = Some(e);
            }
        }
    }

    /// Whether a health check is due; if so, the next one is scheduled.
    pub(super) fn check_due(&self, now: Instant, interval: Duration) -> bool {
        let mut inner = self.inner();
        match inner.next_check {
            Some(t) if t > now => false,
            _ => {
                inner.next_check = Some(now + interval);
                true
            }
        }
    }

    /// For `/health`.
    pub fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let mut inner = self.inner();
        prune(&mut inner.failures, now);
        inner.kind_failures.iter_mut().for_each(|q| prune(q, now));
        let state = self.health_of(&inner, now);
        let local = inner
            .cooldown_until
            .filter(|t| *t > now)
            .map(|t| unix_ms() + (t - now).as_millis() as u64);
        let remote = Some(self.remote_until_ms.load(Ordering::Relaxed)).filter(|t| *t > unix_ms());
        let until = local.max(remote).and_then(|ms| {
            chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        });
        Snapshot {
            state,
            cooling_down_until: until,
            recent_failures: inner.failures.len()
                + inner.kind_failures.iter().map(VecDeque::len).sum::<usize>(),
            in_flight: self.in_flight(),
            last_error: inner.last_error.clone(),
            health_check_error: inner.unhealthy.clone(),
        }
    }

    /// For `/stats`.
    pub fn stats_json(&self) -> serde_json::Value {
        self.inner().stats.to_json(self.in_flight())
    }
}

/// The lock on a backend's counters.
struct StatsGuard<'a>(MutexGuard<'a, Inner>);

impl std::ops::Deref for StatsGuard<'_> {
    type Target = Stats;
    fn deref(&self) -> &Stats {
        &self.0.stats
    }
}

impl std::ops::DerefMut for StatsGuard<'_> {
    fn deref_mut(&mut self) -> &mut Stats {
        &mut self.0.stats
    }
}

/// One attempt at a backend, in flight until dropped. A stream's lease
/// rides along with the stream, so a long generation counts as busy (and
/// its whole length as its latency) until it ends. A stream's outcome is
/// recorded when it ends: a failure if it broke ([`Lease::stream_failed`]),
/// else (it ended normally, or its client left) a success.
pub struct Lease {
    state: Arc<BackendState>,
    started: Instant,
    stream: bool,
    /// A stream under way: its time to first event and the settings its
    /// outcome is recorded with (boxed: the lease rides in every stream).
    pending: Option<Box<(Duration, RouterSettings)>>,
    /// Its place under the deployment's `max_parallel_requests`.
    slot: Option<super::usage::Slot>,
}

impl Lease {
    /// The attempt starts now (after the wait for its admission), for its
    /// latency.
    pub fn restart(&mut self) {
        self.started = Instant::now();
    }

    /// A whole answer (or a failure, of `kind`) arrived.
    pub fn finish(self, outcome: Outcome, kind: Option<ErrorKind>, settings: &RouterSettings) {
        let took = self.started.elapsed();
        self.state.record(outcome, kind, took, settings);
        if outcome == Outcome::Success {
            self.observe_latency(took);
        }
    }

    /// A stream's first event arrived: its time to first token is now;
    /// its outcome and latency are taken when the stream ends.
    pub fn stream_started(&mut self, settings: &RouterSettings) {
        let ttft = self.started.elapsed();
        self.pending = Some(Box::new((ttft, settings.clone())));
        self.state.stats().ttft.push(ttft.as_secs_f64());
        metrics::histogram!("yallmp_upstream_ttft_seconds", "model" => self.state.model_label.clone(), "backend" => self.state.backend_label.clone()).record(ttft.as_secs_f64());
        self.stream = true;
    }

    /// The stream broke after its first event (cut, stalled, an event
    /// past the bound, an error event): a failure of the backend, counted
    /// towards `allowed_fails`, instead of the success it would have been.
    pub fn stream_failed(&mut self, outcome: Outcome) {
        if let Some(pending) = self.pending.take() {
            let (ttft, settings) = *pending;
            self.state.record(outcome, None, ttft, &settings);
            self.stream = false;
        }
    }

    fn observe_latency(&self, took: Duration) {
        self.state.stats().latency.push(took.as_secs_f64());
        metrics::histogram!("yallmp_upstream_latency_seconds", "model" => self.state.model_label.clone(), "backend" => self.state.backend_label.clone()).record(took.as_secs_f64());
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            let (ttft, settings) = *pending;
            self.state.record(Outcome::Success, None, ttft, &settings);
        }
        if self.stream {
            self.observe_latency(self.started.elapsed());
        }
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn describe(o: Outcome) -> String {
    match o {
        Outcome::ServerError(s) | Outcome::ClientError(s) => format!("HTTP {s}"),
        Outcome::RateLimited(_) => "HTTP 429".into(),
        Outcome::Network => "no usable response (connection, timeout or body)".into(),
        Outcome::ErrorEvent => "stream began with an error event".into(),
        Outcome::StreamBroken => "stream broke after its first event".into(),
        Outcome::Success | Outcome::Unsupported => String::new(),
    }
}

/// Drops the failures older than [`FAILURE_WINDOW`].
fn prune(q: &mut VecDeque<Instant>, now: Instant) {
    while q
        .front()
        .is_some_and(|t| now.duration_since(*t) > FAILURE_WINDOW)
    {
        q.pop_front();
    }
}

pub(super) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// FNV-1a: a hash that is the same in every process and build.
/// Keeps every known backend's view of the shared cooldowns current (read
/// every [`SYNC_EVERY`](super::shared::SYNC_EVERY)), until the registry
/// goes away; nothing without Redis.
pub fn spawn_sync(registry: &Arc<Registry>) -> Option<tokio::task::JoinHandle<()>> {
    registry.redis()?;
    let weak = Arc::downgrade(registry);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(super::shared::SYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(registry) = weak.upgrade() else {
                return;
            };
            let Some(redis) = registry.redis().cloned() else {
                return;
            };
            let states = registry.all();
            drop(registry);
            if states.is_empty() {
                continue;
            }
            let keys: Vec<&str> = states.iter().map(|s| s.shared_key.as_str()).collect();
            // Redis away: keep what was last heard; it expires on its own.
            let Some(left) = super::shared::remaining_cooldowns(&redis, &keys).await else {
                continue;
            };
            for (state, remaining) in states.iter().zip(left) {
                state.set_remote_cooldown(remaining);
            }
            // Usage this minute, where it is shared.
            let Some(registry) = weak.upgrade() else {
                return;
            };
            let sharing = registry.tracked();
            drop(registry);
            if sharing.is_empty() {
                continue;
            }
            let keys: Vec<&str> = sharing.iter().map(|d| d.key.as_str()).collect();
            if let Some(counts) = super::usage::read_shared(&redis, &keys).await {
                for (d, c) in sharing.iter().zip(counts) {
                    d.set_shared(c);
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(name: &str, base: &str) -> Backend {
        let yaml = format!(
            "model_list:\n  - {{model_name: {name}, model_params: {{api_base: '{base}'}}}}\n"
        );
        let c = crate::Config::from_yaml(
            &yaml,
            None,
            &crate::config::Env::isolated::<[(&str, &str); 0], _, _>([]),
        )
        .unwrap();
        (*c.models[0].backends[0]).clone()
    }

    fn settings(allowed_fails: u32, cooldown: Duration) -> RouterSettings {
        RouterSettings {
            num_retries: 0,
            retry_backoff: Duration::from_millis(1),
            max_retry_after: Duration::from_secs(1),
            strategy: Default::default(),
            allowed_fails,
            cooldown_time: cooldown,
            latency_buffer: 0.1,
            cooldowns: true,
            retry_policy: Default::default(),
            model_group_retry_policy: Default::default(),
            allowed_fails_policy: Default::default(),
            pre_call_checks: false,
        }
    }

    #[test]
    fn cools_down_after_more_than_allowed_fails() {
        let reg = Registry::new(None);
        let s = reg.get(&backend("m", "http://a"));
        let set = settings(2, Duration::from_secs(60));
        for _ in 0..2 {
            s.begin().finish(Outcome::ServerError(500), None, &set);
            assert_eq!(s.health(Instant::now()), Health::Healthy);
        }
        // Client errors never count.
        s.begin().finish(Outcome::ClientError(400), None, &set);
        assert_eq!(s.health(Instant::now()), Health::Healthy);
        s.begin().finish(Outcome::Network, None, &set);
        assert_eq!(s.health(Instant::now()), Health::CoolingDown);
        assert!(s.snapshot().cooling_down_until.is_some());
        assert_eq!(s.in_flight(), 0);
        // Cooldowns end.
        let s2 = reg.get(&backend("n", "http://b"));
        let short = settings(0, Duration::from_millis(20));
        s2.begin().finish(Outcome::ErrorEvent, None, &short);
        assert_eq!(s2.health(Instant::now()), Health::CoolingDown);
        assert_eq!(
            s2.health(Instant::now() + Duration::from_millis(30)),
            Health::Healthy
        );
    }

    #[test]
    fn a_stream_counts_when_it_ends_and_a_broken_one_is_a_failure() {
        let reg = Registry::new(None);
        let s = reg.get(&backend("m", "http://a"));
        let set = settings(1, Duration::from_secs(60));
        // Ended normally (or its client left): a success, counted then.
        let mut lease = s.begin();
        lease.stream_started(&set);
        assert_eq!(s.stats_json()["requests"], 0);
        drop(lease);
        assert_eq!(s.stats_json()["successes"], 1);
        // Broken after the first event: failures, and a cooldown past
        // allowed_fails.
        for _ in 0..2 {
            let mut lease = s.begin();
            lease.stream_started(&set);
            lease.stream_failed(Outcome::StreamBroken);
            // Told once: dropping it adds nothing.
            drop(lease);
        }
        let j = s.stats_json();
        assert_eq!(j["requests"], 3);
        assert_eq!(j["successes"], 1);
        assert_eq!(j["failures"]["stream_broken"], 2);
        assert_eq!(s.health(Instant::now()), Health::CoolingDown);
        assert_eq!(
            s.snapshot().last_error.as_deref(),
            Some("stream broke after its first event")
        );
        // Latency-based routing puts it last until a stream ends well.
        assert_eq!(s.latency(Instant::now()), Some(BROKEN_STREAM_LATENCY));
        let mut lease = s.begin();
        lease.stream_started(&set);
        drop(lease);
        assert!(s.latency(Instant::now()).is_some_and(|l| l < 1.0));
    }

    #[test]
    fn allowed_fails_policy_counts_its_kinds_apart() {
        let reg = Registry::new(None);
        let s = reg.get(&backend("m", "http://a"));
        let mut set = settings(0, Duration::from_secs(60));
        set.allowed_fails_policy.authentication = Some(2);
        set.allowed_fails_policy.internal_server = Some(1);
        // 401s never count without the policy; with it, two are allowed.
        let auth = Some(ErrorKind::Authentication);
        for _ in 0..2 {
            s.begin().finish(Outcome::ClientError(401), auth, &set);
            assert_eq!(s.health(Instant::now()), Health::Healthy);
        }
        assert_eq!(s.snapshot().recent_failures, 2);
        // A 502 is an internal server error when bad_gateway has no number:
        // one allowed, and its count is not the 401s'.
        s.begin()
            .finish(Outcome::ServerError(502), Some(ErrorKind::BadGateway), &set);
        assert_eq!(s.health(Instant::now()), Health::Healthy);
        s.begin().finish(Outcome::ClientError(401), auth, &set);
        assert_eq!(s.health(Instant::now()), Health::CoolingDown);
        assert_eq!(s.snapshot().recent_failures, 0, "a cooldown starts afresh");

        // A kind the policy does not name counts as before (allowed_fails 0).
        let t = reg.get(&backend("n", "http://b"));
        t.begin()
            .finish(Outcome::ClientError(400), Some(ErrorKind::BadRequest), &set);
        assert_eq!(t.health(Instant::now()), Health::Healthy);
        t.begin()
            .finish(Outcome::Network, Some(ErrorKind::Timeout), &set);
        assert_eq!(t.health(Instant::now()), Health::CoolingDown);

        // disable_cooldowns still wins.
        let u = reg.get(&backend("o", "http://c"));
        set.cooldowns = false;
        for _ in 0..5 {
            u.begin().finish(Outcome::ClientError(401), auth, &set);
        }
        assert_eq!(u.health(Instant::now()), Health::Healthy);
        assert_eq!(u.snapshot().last_error.as_deref(), Some("HTTP 401"));
    }

    #[test]
    fn retry_after_cools_down_at_once() {
        let reg = Registry::new(None);
        let s = reg.get(&backend("m", "http://a"));
        let set = settings(100, Duration::from_secs(1));
        s.begin().finish(
            Outcome::RateLimited(Some(Duration::from_secs(30))),
            None,
            &set,
        );
        let now = Instant::now();
        assert_eq!(s.health(now), Health::CoolingDown);
        assert_eq!(s.health(now + Duration::from_secs(29)), Health::CoolingDown);
        assert_eq!(s.health(now + Duration::from_secs(31)), Health::Healthy);
    }

    #[test]
    fn emits_the_routing_metrics() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let reg = Registry::new(None);
            let s = reg.get(&backend("m", "http://a"));
            let set = settings(0, Duration::from_secs(5));
            s.begin().finish(Outcome::Success, None, &set);
            s.begin().stream_started(&set);
            s.begin().finish(Outcome::Network, None, &set);
        });
        let mut seen = Vec::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let k = key.key();
            let mut labels: Vec<String> = k
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let v = match value {
                DebugValue::Counter(n) => format!("{n}"),
                DebugValue::Gauge(g) => format!("{}", g.into_inner()),
                DebugValue::Histogram(h) => format!("{} samples", h.len()),
            };
            seen.push(format!("{}{{{}}} {v}", k.name(), labels.join(",")));
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                "yallmp_backend_state{backend=m#1,model=m} 1",
                "yallmp_upstream_attempts_total{backend=m#1,model=m,outcome=network_error} 1",
                "yallmp_upstream_attempts_total{backend=m#1,model=m,outcome=success} 2",
                "yallmp_upstream_latency_seconds{backend=m#1,model=m} 2 samples",
                "yallmp_upstream_ttft_seconds{backend=m#1,model=m} 1 samples",
            ],
        );
    }

    #[test]
    fn state_survives_same_url_not_a_new_one() {
        let reg = Registry::new(None);
        let a = reg.get(&backend("m", "http://a"));
        assert!(Arc::ptr_eq(&a, &reg.get(&backend("m", "http://a"))));
        let b = reg.get(&backend("m", "http://b"));
        assert!(!Arc::ptr_eq(&a, &b));
        reg.retain(&[]);
        assert!(reg.find("m#1").is_none());
    }

    #[test]
    fn stats_count_attempts_and_tokens() {
        let reg = Registry::new(None);
        let s = reg.get(&backend("m", "http://a"));
        let set = settings(3, Duration::from_secs(1));
        s.begin().finish(Outcome::Success, None, &set);
        s.begin().finish(Outcome::ServerError(503), None, &set);
        reg.add_tokens("m#1", 5, 7);
        let j = s.stats_json();
        assert_eq!(j["requests"], 2);
        assert_eq!(j["successes"], 1);
        assert_eq!(j["failures"]["5xx"], 1);
        assert_eq!(j["tokens"]["input"], 5);
        assert_eq!(j["tokens"]["output"], 7);
        assert!(j["latency_ms"]["p99"].is_number());
        assert!(j["ttft_ms"].is_null());
        assert!(s.latency(Instant::now()).is_some());
    }
}
