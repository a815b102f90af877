//! The forwarders: small relays run as their own process in front of a proxy
//! the clients cannot reach (inside a VPN, a WSL guest). [`tcp`] pipes bytes;
//! [`http`] is a reverse proxy that streams bodies and adds the
//! `X-Forwarded-*` headers. Both stop accepting on SIGINT/SIGTERM and give
//! open connections a bounded grace period; SIGHUP leaves them running.
//!
//! Settings: [`crate::config::forward`].

pub mod http;
pub mod tcp;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::forward::{ForwardSettings, HostPort};

// Which forwarders to run: `yallmp forward tcp|http|both`. The variants'
// doc comments are the subcommands' help; this one is a plain comment so
// that the help reads as it did when the type lived in the CLI.
#[derive(Debug, Clone, Copy, clap::Subcommand)]
pub enum ForwardKind {
    /// Pipe TCP bytes both ways (`forwarder_settings`).
    Tcp,
    /// A reverse proxy that streams bodies and adds X-Forwarded-* headers
    /// (`http_forwarder_settings`).
    Http,
    /// Both in one process; they need different listen ports.
    Both,
}

/// Why a forwarder did not start.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("{which} forwarder: cannot listen on {addr}: {source}{hint}")]
    Bind {
        which: &'static str,
        addr: String,
        source: io::Error,
        hint: &'static str,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("http forwarder: {0}")]
    Client(String),
}

/// Binds `addr`, with an error that says what to change when it is taken.
async fn bind(
    which: &'static str,
    addr: &HostPort,
) -> Result<tokio::net::TcpListener, ForwardError> {
    tokio::net::TcpListener::bind(addr.authority())
        .await
        .map_err(|source| ForwardError::Bind {
            which,
            addr: addr.authority(),
            hint: if source.kind() == io::ErrorKind::AddrInUse {
                " (another process, or the other forwarder, has this port: set another listen port)"
            } else {
                ""
            },
            source,
        })
}

/// A running forwarder.
pub struct Forwarder {
    name: &'static str,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Forwarder {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `tcp` or `http`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Stops accepting, gives open connections the grace period, then
    /// closes what is left.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts both forwarders; refuses when they would share a port.
pub async fn start_both(
    settings: &ForwardSettings,
) -> Result<(Forwarder, Forwarder), ForwardError> {
    settings.check_both().map_err(ForwardError::Conflict)?;
    let tcp = tcp::start(&settings.tcp).await?;
    match http::start(&settings.http).await {
        Ok(http) => Ok((tcp, http)),
        Err(e) => {
            tcp.shutdown().await;
            Err(e)
        }
    }
}

/// Starts the forwarders `kind` names.
pub async fn start(
    kind: ForwardKind,
    settings: &ForwardSettings,
) -> Result<Vec<Forwarder>, ForwardError> {
    match kind {
        ForwardKind::Tcp => tcp::start(&settings.tcp).await.map(|f| vec![f]),
        ForwardKind::Http => http::start(&settings.http).await.map(|f| vec![f]),
        ForwardKind::Both => start_both(settings).await.map(|(t, h)| vec![t, h]),
    }
}

/// Runs the forwarders until SIGINT or SIGTERM, then shuts them down. A
/// SIGHUP (a service manager's reload) does not stop them: their settings
/// are read at start-up, which the log says.
pub async fn run_until_signal(forwarders: Vec<Forwarder>, mut signals: crate::server::Signals) {
    let stop = crate::server::wait_for_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = signals.hangup() => tracing::info!(
                "SIGHUP: the forwarder's settings are read at start-up; restart it to change them"
            ),
        }
    }
    tracing::info!("forwarder shutting down: no new connections; waiting for open ones");
    let started = std::time::Instant::now();
    futures::future::join_all(forwarders.into_iter().map(Forwarder::shutdown)).await;
    tracing::info!(took = ?started.elapsed(), "forwarder stopped");
}

/// Waits until `stop` says true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// After a stop, waits for `tasks` at most `grace`, then aborts the rest;
/// returns how many were cut.
async fn drain(tasks: &mut tokio::task::JoinSet<()>, grace: Duration) -> usize {
    let all_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all_done).await.is_ok() {
        return 0;
    }
    let left = tasks.len();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    left
}
