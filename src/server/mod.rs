//! Running the proxy: bind, serve, and shut down gracefully (stop accepting,
//! let in-flight requests and streams finish within the grace period).
//! The accept loop and serving threads are in `threads.rs`, one connection
//! in `connection.rs`, the signals in `signals.rs`.

mod connection;
pub mod notify;
mod signals;
mod threads;
pub mod tls;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, AppState, Shared};
use crate::config::Config;
use crate::live::Live;
use crate::reqlog::Writer;

pub use signals::Signals;
pub(crate) use signals::wait_for_signal;
use threads::serving_threads;

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
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::StartError),
    #[error("cannot start serving thread {index}: {source}")]
    Worker { index: usize, source: io::Error },
    #[error("proxy_settings.server.tls: {0}")]
    Tls(#[from] tls::TlsError),
}

/// A running proxy.
pub struct Server {
    addr: SocketAddr,
    state: Shared,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    writer: Option<Writer>,
    /// The telemetry's exporter, when it is on.
    telemetry: Option<crate::telemetry::Exporter>,
    /// Follows runtime models shared through PostgreSQL.
    sync: Option<JoinHandle<()>>,
    /// The shutdown grace period: the whole of [`Server::shutdown`] (the
    /// in-flight requests, then the request log's drain) fits in it.
    grace: Duration,
    /// TLS on the listener, and the task that reloads its certificate.
    tls: Option<(tls::Tls, JoinHandle<()>)>,
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
    // The certificate first: one that does not load stops the start here.
    let tls = config.server.tls.as_ref().map(tls::Tls::load).transpose()?;
    let client = crate::upstream::client().map_err(|e| ServeError::Client(e.to_string()))?;
    let http = crate::upstream::http_client().map_err(ServeError::Client)?;
    let grace = config.server.shutdown_grace;
    let workers = config.server.workers;
    let conn_limits = config.server.connections;
    let (log, writer) = crate::reqlog::start(&config).await?;
    // OpenTelemetry: the request log hands it every record.
    let (log, telemetry) = match crate::telemetry::start(&config)? {
        Some((tap, exporter)) => (log.with_tap(tap, &config), Some(exporter)),
        None => (log, None),
    };
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
        let scheme = if tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
    };
    // The admin UI's replay sends to the proxy itself: over TLS, to its own
    // address, whose certificate names a host rather than that address.
    let self_client = match &tls {
        Some(_) => Some(
            reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .map_err(|e| ServeError::Client(e.to_string()))?,
        ),
        None => None,
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
    let keys = {
        let (declared_keys, declared_teams) = crate::keys::service::declared(&config.auth);
        let db = writer.as_ref().and_then(|w| w.db()).cloned();
        let spend = Arc::new(crate::keys::spend::Spend::new(db.clone(), redis.clone()));
        let keys = Arc::new(crate::keys::service::Keys::new(
            declared_keys,
            declared_teams,
            db,
            spend,
        ));
        if let Err(e) = keys.reload().await {
            tracing::warn!(error = %e, "keys: reading the virtual keys from the database failed");
        }
        keys.spawn_reload(std::time::Duration::from_secs(2));
        keys
    };
    let backends = Arc::new(crate::router::state::Registry::new(redis.clone()));
    crate::router::state::spawn_sync(&backends);
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
            http,
            log,
            shutting_down: Arc::new(AtomicBool::new(false)),
            limits,
            cache,
            thinking,
            backends: backends.clone(),
            log_reader,
            recent_responses: Arc::default(),
            keys,
        },
        started: Instant::now(),
        admin_lock: tokio::sync::Mutex::new(()),
        redis,
        model_store,
        model_version: std::sync::atomic::AtomicI64::new(model_version),
        self_url,
        self_client,
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
    let task = serving_threads(
        listener,
        app,
        workers,
        conn_limits,
        stopped,
        grace,
        tls.clone(),
    )?;
    let tls = tls.map(|t| {
        let watch = t.spawn_watch();
        (t, watch)
    });
    Ok(Server {
        addr,
        state,
        stop,
        task,
        writer,
        telemetry,
        sync,
        grace,
        tls,
    })
}

impl Server {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`, or `https://addr` with TLS on the listener.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Reads the listener's certificate again if its files changed (always
    /// with `force`); true when a new one is in use. Without TLS, false.
    pub async fn reload_tls(&self, force: bool) -> bool {
        let Some((tls, _)) = &self.tls else {
            return false;
        };
        let tls = tls.clone();
        tokio::task::spawn_blocking(move || tls.reload(force))
            .await
            .unwrap_or(false)
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
        if let Some((_, watch)) = &self.tls {
            watch.abort();
        }
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
        // The last spans go to the collector, within the grace period
        // (at least half a second), before the log's drain.
        if let Some(t) = self.telemetry {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            t.shutdown(left.max(crate::reqlog::MIN_FINISH)).await;
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
        notify::stopping();
        tracing::info!("shutting down: no new connections; waiting for in-flight requests");
        let started = Instant::now();
        self.shutdown().await;
        tracing::info!(took = ?started.elapsed(), "stopped");
    }

    /// SIGHUP: the config, and the listener's certificate (read again
    /// whether or not its files look changed), between systemd's
    /// `RELOADING=1` and `READY=1`.
    async fn reload_on_hangup(&self) {
        notify::reloading();
        tracing::info!("SIGHUP: reloading the config");
        if let Err(e) = crate::api::admin::reload_config(&self.state).await {
            tracing::error!(
                error = %e,
                "SIGHUP: the config was not reloaded; still serving the previous one"
            );
        }
        self.reload_tls(true).await;
        notify::ready();
    }
}
