//! Running the proxy: bind, serve, and shut down gracefully (stop accepting,
//! let in-flight requests and streams finish within the grace period).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::extract::ConnectInfo;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::api::{self, AppState, Shared};
use crate::config::connections::ConnectionLimits;
use crate::config::{Config, Workers};
use crate::conn::{Activity, Guarded, Slot, Slots, TimedBody, Tracked};
use crate::live::Live;
use crate::reqlog::Writer;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("proxy_settings.redis_url: {0}")]
    Redis(String),
    #[error("runtime models in PostgreSQL: {0}")]
    ModelStore(crate::model_store::StoreError),
    #[error(transparent)]
    Log(#[from] crate::reqlog::StartError),
    #[error("the request log's database, opened for reading ({target}): {message}")]
    LogReader { target: String, message: String },
    #[error(transparent)]
    Thinking(#[from] crate::thinking::StartError),
    #[error("cannot start serving thread {index}: {source}")]
    Worker { index: usize, source: io::Error },
}

/// A running proxy.
pub struct Server {
    addr: SocketAddr,
    state: Shared,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    writer: Option<Writer>,
    /// Follows runtime models shared through PostgreSQL.
    sync: Option<JoinHandle<()>>,
    /// The shutdown grace period: the whole of [`Server::shutdown`] (the
    /// in-flight requests, then the request log's drain) fits in it.
    grace: Duration,
}

/// Starts the proxy on the config's host and port (port 0 picks a free one).
pub async fn serve(config: Config) -> Result<Server, ServeError> {
    let addr = format!("{}:{}", config.server.host, config.server.port);
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    serve_on(listener, config).await
}

/// Starts the proxy on a listener the caller bound.
/// The request log's sinks are opened first: an unusable log directory or
/// database fails here, before anything is served.
pub async fn serve_on(listener: TcpListener, config: Config) -> Result<Server, ServeError> {
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: "listener".into(),
        source,
    })?;
    let client = crate::upstream::client().map_err(|e| ServeError::Client(e.to_string()))?;
    let grace = config.server.shutdown_grace;
    let workers = config.server.workers;
    let conn_limits = config.server.connections;
    let (log, writer) = crate::reqlog::start(&config).await?;
    // After the writer: the database exists and is migrated.
    let log_reader = match writer.as_ref().and_then(|w| w.db()) {
        Some(_) => Some(
            crate::reqlog::db::Db::connect_reader(&config.database.target)
                .await
                .map_err(|e| ServeError::LogReader {
                    target: config.database.target.describe(),
                    message: e.to_string(),
                })?,
        ),
        None => None,
    };
    let self_url = {
        let ip = match addr.ip() {
            std::net::IpAddr::V4(v4) if v4.is_unspecified() => {
                std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
            }
            std::net::IpAddr::V6(v6) if v6.is_unspecified() => {
                std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
            }
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, addr.port()))
    };
    let redis = match &config.redis {
        Some(settings) => {
            let r = crate::redis::SharedRedis::new(settings)
                .map_err(|e| ServeError::Redis(e.to_string()))?;
            if !r.ping().await {
                tracing::warn!(
                    "redis is not reachable at start-up: running on local state until it is"
                );
            }
            r.spawn_probe();
            Some(r)
        }
        None => None,
    };
    let backends = Arc::new(crate::router::state::Registry::new(redis.clone()));
    crate::router::shared::spawn_sync(&backends);
    let (model_store, config, model_version) = match crate::model_store::ModelStore::open(&config)
        .await
        .map_err(ServeError::ModelStore)?
    {
        Some(store) => {
            let (config, version) = crate::model_store::adopt(&store, config)
                .await
                .map_err(ServeError::ModelStore)?;
            (Some(Arc::new(store)), config, version)
        }
        None => (None, config, 0),
    };
    // The process's metrics recorder (once per process; see api::metrics).
    crate::api::metrics::install();
    let limits = crate::limits::Limiter::new(redis.clone());
    let cache = crate::cache::ResponseCache::new(&config.cache, redis.clone());
    let thinking = crate::thinking::Thinking::start(&config, redis.clone()).await?;
    let ws_slots = config
        .server
        .connections
        .max_connections
        .clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
    let state: Shared = Arc::new(AppState {
        proxy: crate::proxy::Proxy {
            live: ArcSwap::from_pointee(Live::new(config)),
            client,
            log,
            shutting_down: Arc::new(AtomicBool::new(false)),
            limits,
            cache,
            thinking,
            backends: backends.clone(),
            log_reader,
            recent_responses: Arc::default(),
        },
        started: Instant::now(),
        admin_lock: tokio::sync::Mutex::new(()),
        redis,
        model_store,
        model_version: std::sync::atomic::AtomicI64::new(model_version),
        self_url,
        sessions: Default::default(),
        listen: addr,
        auth_throttle: Default::default(),
        ws_slots: Arc::new(tokio::sync::Semaphore::new(ws_slots)),
    });
    let weak = Arc::downgrade(&state);
    crate::router::health_check::spawn(backends, state.client.clone(), move || {
        let state = weak.upgrade()?;
        let live = state.live.load();
        Some(
            live.config
                .models
                .iter()
                .flat_map(|m| m.backends.iter().cloned())
                .collect(),
        )
    });
    let sync = state
        .model_store
        .is_some()
        .then(|| crate::api::admin::sync::spawn_sync(Arc::downgrade(&state)));
    let app = api::router(state.clone());
    let (stop, stopped) = watch::channel(false);
    let task = serving_threads(listener, app, workers, conn_limits, stopped, grace)?;
    Ok(Server {
        addr,
        state,
        stop,
        task,
        writer,
        sync,
        grace,
    })
}

impl Server {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared state (live snapshot, client).
    pub fn state(&self) -> &Shared {
        &self.state
    }

    /// Stops accepting and waits until in-flight requests finish or the
    /// grace period ends.
    /// Then the request log writes everything queued. The grace period is
    /// counted from the call (the signal): the log's drain gets what the
    /// requests left of it (at least half a second),
    /// so a sink that cannot write does not hold the exit past it.
    pub async fn shutdown(self) {
        let deadline = tokio::time::Instant::now() + self.grace;
        self.state.shutting_down.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
        let _ = self.task.await;
        if let Some(sync) = self.sync {
            sync.abort();
        }
        // Turns remembered by the last answers reach their store (a store
        // that does not answer does not hold the exit either).
        let flush_by = deadline.max(tokio::time::Instant::now() + crate::reqlog::MIN_FINISH);
        if tokio::time::timeout_at(flush_by, self.state.thinking.flush())
            .await
            .is_err()
        {
            tracing::warn!(
                "interleaved thinking: turns not stored within the shutdown grace period"
            );
        }
        if let Some(w) = self.writer {
            w.finish(deadline).await;
        }
    }

    /// The request log's database, when it writes to one.
    pub fn log_db(&self) -> Option<&crate::reqlog::db::Db> {
        self.writer.as_ref().and_then(|w| w.db())
    }

    /// Waits for SIGINT or SIGTERM, then shuts down; a SIGHUP reloads the
    /// config meanwhile. The signals are registered here: a binary should
    /// rather call [`Signals::install`] before it starts serving and
    /// [`Server::run_with`].
    pub async fn run_until_signal(self) {
        self.run_with(Signals::install()).await;
    }

    /// Like [`Server::run_until_signal`], with signals registered earlier.
    /// SIGHUP reloads the config as `POST /admin/config/reload` does; a
    /// config that does not load is logged and the running one kept.
    pub async fn run_with(self, mut signals: Signals) {
        let stop = wait_for_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = signals.hangup() => self.reload_on_hangup().await,
            }
        }
        tracing::info!("shutting down: no new connections; waiting for in-flight requests");
        let started = Instant::now();
        self.shutdown().await;
        tracing::info!(took = ?started.elapsed(), "stopped");
    }

    async fn reload_on_hangup(&self) {
        tracing::info!("SIGHUP: reloading the config");
        if let Err(e) = crate::api::admin::reload_config(&self.state).await {
            tracing::error!(
                error = %e,
                "SIGHUP: the config was not reloaded; still serving the previous one"
            );
        }
    }
}

/// The signals a running proxy or forwarder acts on besides SIGINT and
/// SIGTERM: SIGHUP, whose default action would end the process. Register
/// them before serving, so that a SIGHUP sent as soon as the port answers
/// (systemd's `ExecReload`) never finds the default action.
pub struct Signals {
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Registers the handlers (inside a Tokio runtime).
    pub fn install() -> Signals {
        #[cfg(unix)]
        {
            let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot handle SIGHUP: it will stop the process");
                    None
                }
            };
            Signals { hangup }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Resolves at the next SIGHUP (never where there is none).
    pub async fn hangup(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.hangup
            && s.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await
    }
}

/// Resolves on SIGINT (ctrl-c) or SIGTERM.
pub(crate) async fn wait_for_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Connections a serving thread may have waiting in its hand-off queue;
/// when every thread's is full the acceptor waits (and the kernel's
/// backlog holds new connections meanwhile).
const HANDOFF_QUEUE: usize = 64;

/// Serves the connections handed to this thread until `stop` turns true
/// (or its sender goes), then lets open connections finish for `grace`.
/// True when the grace period ran out with connections still open.
async fn run(
    mut handoff: mpsc::Receiver<Handed>,
    app: axum::Router,
    limits: ConnectionLimits,
    stop: watch::Receiver<bool>,
    grace: Duration,
) -> bool {
    let mut conns = JoinSet::new();
    let mut stopping = stop.clone();
    let mut open = true;
    loop {
        tokio::select! {
            _ = stopping.wait_for(|s| *s) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            handed = handoff.recv(), if open => match handed {
                Some(Handed { tcp, peer, slot }) => match tokio::net::TcpStream::from_std(tcp) {
                    Ok(tcp) => {
                        conns.spawn(connection(tcp, peer, slot, app.clone(), limits, stop.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot take over an accepted connection");
                    }
                },
                // The acceptor has stopped: so has serving new connections.
                None => open = false,
            },
        }
    }
    drop(handoff);
    let all_done = async { while conns.join_next().await.is_some() {} };
    tokio::time::timeout(grace, all_done).await.is_err()
}

/// Serves one client connection (HTTP/1.1, or HTTP/2 with prior
/// knowledge) with the client limits: the header read and idle timeouts
/// close it (when no request is in flight), every request body is read
/// with the body read timeout. On `stop`, the request in flight finishes
/// and the connection closes.
async fn connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: Slot,
    app: axum::Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let _slot = slot;
    let _ = tcp.set_nodelay(true);
    let activity = Activity::new();
    let io = TokioIo::new(Tracked::new(tcp, activity.clone()));
    let tower = TowerToHyperService::new(app);
    let body_timeout = limits.body_read_timeout;
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let in_flight = requests.begin();
        let fired = Arc::new(AtomicBool::new(false));
        let mut req = req
            .map(|body| axum::body::Body::new(TimedBody::new(body, body_timeout, fired.clone())));
        req.extensions_mut().insert(ConnectInfo(peer));
        let call = hyper::service::Service::call(&tower, req);
        async move {
            let Ok(response) = call.await;
            let response = if fired.load(Ordering::Relaxed) {
                body_timed_out(response, body_timeout.unwrap_or_default())
            } else {
                response
            };
            Ok::<_, std::convert::Infallible>(response.map(|b| Guarded::new(b, in_flight)))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header read timeout is this server's own (counted from a
    // request's first byte, apart from the idle time before it).
    builder.http1().header_read_timeout(None);
    builder.http2().enable_connect_protocol();
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let expired = activity.expired(limits.header_read_timeout, limits.idle_timeout);
    tokio::pin!(expired);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "client connection ended with an error");
                }
                break;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            why = &mut expired => {
                metrics::counter!(crate::conn::TIMEOUTS, "kind" => why.as_str()).increment(1);
                tracing::debug!(%peer, timeout = why.as_str(), "closing a client connection");
                break;
            }
        }
    }
}

/// The answer to a request whose body stopped arriving before anything
/// was answered: 408 (the handler's own 408 is kept, in its dialect's
/// shape; any other answer it made of the failed read is replaced). The
/// connection closes after it.
fn body_timed_out(
    mut response: Response<axum::body::Body>,
    after: Duration,
) -> Response<axum::body::Body> {
    if response.status() != StatusCode::REQUEST_TIMEOUT {
        let id = response.headers().get(crate::upstream::REQUEST_ID).cloned();
        response = crate::api::error::json_error(
            StatusCode::REQUEST_TIMEOUT,
            &serde_json::json!({"error": {
                "message": crate::conn::BodyTimeout(after).to_string(),
                "type": "invalid_request_error",
                "code": "request_timeout",
            }}),
        );
        if let Some(id) = id {
            response
                .headers_mut()
                .insert(crate::upstream::REQUEST_ID, id);
        }
    }
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Starts the threads that serve connections, and returns the task that
/// accepts them and hands them out in turn.
///
/// `PerThread(n)`: a thread-per-core server. `n` threads, each with a
/// single-threaded runtime and its own upstream client. A connection (and
/// every request on it, with its upstream connection) stays on one thread:
/// no wake-up crosses threads on the way through, which on a small machine
/// is much of a request's cost at low concurrency (docs/benchmarks.md).
/// `Shared`: one thread drives a work-stealing runtime that serves every
/// connection with the shared client.
///
/// Either way the connections live on runtimes of their own, apart from the
/// caller's: when the grace period runs out those runtimes are shut down,
/// which closes what is still open (and records it as cut off) before the
/// request log is drained.
fn serving_threads(
    listener: TcpListener,
    app: axum::Router,
    workers: Workers,
    limits: ConnectionLimits,
    stop: watch::Receiver<bool>,
    grace: Duration,
) -> Result<JoinHandle<()>, ServeError> {
    let count = match workers {
        Workers::PerThread(n) => n,
        Workers::Shared => 1,
    };
    let mut hand = Vec::with_capacity(count);
    let mut done = Vec::with_capacity(count);
    for index in 0..count {
        let worker_err = |source| ServeError::Worker { index, source };
        let (runtime, client) = match workers {
            Workers::PerThread(_) => (
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(worker_err)?,
                Some(crate::upstream::client().map_err(|e| ServeError::Client(e.to_string()))?),
            ),
            Workers::Shared => (
                tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name("yallmp-serve")
                    .build()
                    .map_err(worker_err)?,
                None,
            ),
        };
        let (tx, rx) = mpsc::channel(HANDOFF_QUEUE);
        let (done_tx, done_rx) = oneshot::channel();
        let app = app.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name(format!("yallmp-serve-{index}"))
            .spawn(move || {
                if let Some(client) = client {
                    crate::upstream::set_thread_client(client);
                }
                let cut = runtime.block_on(run(rx, app, limits, stop, grace));
                // What is still running after the grace period ends here
                // (its requests are recorded as cut off).
                runtime.shutdown_timeout(Duration::from_secs(1));
                let _ = done_tx.send(cut);
            })
            .map_err(worker_err)?;
        hand.push(tx);
        done.push(done_rx);
    }
    let slots = Slots::new(limits.max_connections, "proxy");
    Ok(tokio::spawn(async move {
        accept(listener, &hand, &slots, stop).await;
        drop(hand);
        let mut cut = false;
        for d in done {
            cut |= d.await.unwrap_or(false);
        }
        if cut {
            tracing::warn!(grace = ?grace, "grace period over; closed the connections still open");
        }
    }))
}

/// Accepts connections until `stop`, handing them to the serving threads in
/// turn. Past `max_connections` a new connection is answered 503 and
/// closed. A thread whose queue is full is passed over; when all are, the
/// acceptor waits for room.
async fn accept(
    listener: TcpListener,
    hand: &[Hand],
    slots: &Slots,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                accept_error(e).await;
                continue;
            }
        };
        let Some(slot) = slots.try_take() else {
            // Best effort: a client that has not sent anything yet reads
            // the 503 before the close.
            let _ = tcp.try_write(crate::conn::BUSY_RESPONSE);
            continue;
        };
        // Off this runtime's reactor; the serving thread registers it with
        // its own.
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand over an accepted connection");
                continue;
            }
        };
        let mut left = Some(Handed { tcp, peer, slot });
        for i in 0..hand.len() {
            let Some(handed) = left.take() else { break };
            let at = (next + i) % hand.len();
            match hand[at].try_send(handed) {
                Ok(()) => next = (at + 1) % hand.len(),
                Err(mpsc::error::TrySendError::Full(h)) => left = Some(h),
                Err(mpsc::error::TrySendError::Closed(h)) => {
                    tracing::error!(thread = at, "a serving thread has stopped");
                    left = Some(h);
                }
            }
        }
        if let Some(handed) = left {
            let at = next;
            next = (next + 1) % hand.len();
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return,
                r = hand[at].send(handed) => if r.is_err() {
                    tracing::error!(thread = at, "a serving thread has stopped");
                },
            }
        }
    }
}

/// What `axum::serve` does on an accept error: a connection's own error
/// (it went away before it was taken) is skipped; anything else (out of
/// descriptors, say) is logged and waited out a little.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// An accepted connection on its way to a serving thread, with its place
/// under the cap.
struct Handed {
    tcp: std::net::TcpStream,
    peer: SocketAddr,
    slot: Slot,
}

type Hand = mpsc::Sender<Handed>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_hand_off_queue_is_bounded_and_the_acceptor_waits_for_room() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let (stop_tx, stop) = watch::channel(false);
        let acceptor = tokio::spawn(async move {
            let slots = Slots::new(100, "test");
            accept(listener, &[tx], &slots, stop).await;
        });
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let patience = Duration::from_secs(10);
        tokio::time::timeout(patience, async {
            while rx.is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        // Time for an unbounded queue to take the other two.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(rx.len(), 1);
        // None is lost: each comes once there is room.
        for _ in 0..3 {
            tokio::time::timeout(patience, rx.recv())
                .await
                .unwrap()
                .unwrap();
        }
        let _ = stop_tx.send(true);
        tokio::time::timeout(patience, acceptor)
            .await
            .unwrap()
            .unwrap();
    }
}
