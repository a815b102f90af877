//! Running the proxy: bind, serve, and shut down gracefully (stop accepting,
//! let in-flight requests and streams finish within the grace period).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::api::{self, AppState, Shared};
use crate::config::{Config, Workers};
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
    let state: Shared = Arc::new(AppState {
        live: ArcSwap::from_pointee(Live::new(config)),
        client,
        started: Instant::now(),
        log,
        shutting_down: Arc::new(AtomicBool::new(false)),
        admin_lock: tokio::sync::Mutex::new(()),
        redis,
        model_store,
        model_version: std::sync::atomic::AtomicI64::new(model_version),
        limits,
        cache,
        thinking,
        backends: backends.clone(),
        log_reader,
        self_url,
        sessions: Default::default(),
        listen: addr,
        auth_throttle: Default::default(),
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
        .then(|| crate::model_store::spawn_sync(Arc::downgrade(&state)));
    let app = api::router(state.clone());
    let (stop, stopped) = watch::channel(false);
    let task = serving_threads(listener, app, workers, stopped, grace)?;
    Ok(Server {
        addr,
        state,
        stop,
        task,
        writer,
        sync,
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
    /// Then the request log writes everything queued.
    pub async fn shutdown(self) {
        self.state.shutting_down.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
        let _ = self.task.await;
        if let Some(sync) = self.sync {
            sync.abort();
        }
        // Turns remembered by the last answers reach their store.
        self.state.thinking.flush().await;
        if let Some(w) = self.writer {
            w.finish().await;
        }
    }

    /// The request log's database, when it writes to one.
    pub fn log_db(&self) -> Option<&crate::reqlog::db::Db> {
        self.writer.as_ref().and_then(|w| w.db())
    }

    /// Waits for SIGINT or SIGTERM, then shuts down.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("shutting down: no new connections; waiting for in-flight requests");
        let started = Instant::now();
        self.shutdown().await;
        tracing::info!(took = ?started.elapsed(), "stopped");
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

/// Serves `app` on `listener` until `stop` turns true (or its sender goes),
/// then lets open connections finish for `grace`. True when the grace
/// period ran out with connections still open.
async fn run<L>(
    listener: L,
    app: axum::Router,
    stop: watch::Receiver<bool>,
    grace: Duration,
) -> bool
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    SocketAddr: for<'a> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    let mut stopped = stop.clone();
    let mut grace_rx = stop;
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stopped.wait_for(|s| *s).await;
    });
    let grace_over = async move {
        let _ = grace_rx.wait_for(|s| *s).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => {
            if let Err(e) = result {
                tracing::error!(error = %e, "server stopped with an error");
            }
            false
        }
        _ = grace_over => true,
    }
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
    stop: watch::Receiver<bool>,
    grace: Duration,
) -> Result<JoinHandle<()>, ServeError> {
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: "listener".into(),
        source,
    })?;
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
        let (tx, rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = oneshot::channel();
        let listener = axum::serve::ListenerExt::tap_io(Handoff { rx, local }, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = app.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name(format!("yallmp-serve-{index}"))
            .spawn(move || {
                if let Some(client) = client {
                    crate::upstream::set_thread_client(client);
                }
                let cut = runtime.block_on(run(listener, app, stop, grace));
                // What is still running after the grace period ends here
                // (its requests are recorded as cut off).
                runtime.shutdown_timeout(Duration::from_secs(1));
                let _ = done_tx.send(cut);
            })
            .map_err(worker_err)?;
        hand.push(tx);
        done.push(done_rx);
    }
    Ok(tokio::spawn(async move {
        accept(listener, &hand, stop).await;
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
/// turn.
async fn accept(listener: TcpListener, hand: &[Handed], mut stop: watch::Receiver<bool>) {
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
        // Off this runtime's reactor; the serving thread registers it with
        // its own.
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand over an accepted connection");
                continue;
            }
        };
        if hand[next].send((tcp, peer)).is_err() {
            tracing::error!(thread = next, "a serving thread has stopped");
        }
        next = (next + 1) % hand.len();
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

type Handed = mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>;

/// A serving runtime's side of the hand-over: connections accepted
/// elsewhere, registered with this thread's runtime as they are taken.
struct Handoff {
    rx: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for Handoff {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.rx.recv().await {
                Some((tcp, peer)) => match tokio::net::TcpStream::from_std(tcp) {
                    Ok(tcp) => return (tcp, peer),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot take over an accepted connection");
                    }
                },
                // The acceptor has stopped: so has serving new connections.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}
