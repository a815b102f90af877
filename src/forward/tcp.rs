//! The TCP forwarder: accepts connections and pipes bytes both ways to the
//! target, unchanged. A half-close travels through (the client's FIN becomes
//! a FIN to the target while the answer keeps flowing back), a connection
//! silent in both directions for `idle_timeout` is closed, past
//! `max_connections` a new connection is closed at once, and every log line
//! carries the connection's number and how many are open.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{ForwardError, Forwarder, bind, drain, stopped};
use crate::config::forward::TcpForwardSettings;
use crate::conn::{Slot, Slots};

/// Bytes read per system call in each direction.
const BUF_SIZE: usize = 64 * 1024;

/// Binds the listen address and starts forwarding.
pub async fn start(settings: &TcpForwardSettings) -> Result<Forwarder, ForwardError> {
    let listener = bind("tcp", &settings.listen).await?;
    let addr = listener.local_addr().map_err(|source| ForwardError::Bind {
        which: "tcp",
        addr: settings.listen.authority(),
        source,
        hint: "",
    })?;
    let (stop, rx) = watch::channel(false);
    tracing::info!(listen = %addr, target = %settings.target, "tcp forwarder listening");
    let task = tokio::spawn(accept_loop(listener, Arc::new(settings.clone()), rx));
    Ok(Forwarder {
        name: "tcp",
        addr,
        stop,
        task,
    })
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    settings: Arc<TcpForwardSettings>,
    mut stop: watch::Receiver<bool>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let slots = Slots::new(settings.max_connections, "tcp_forwarder");
    let mut conns = JoinSet::new();
    let mut total: u64 = 0;
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    // At the cap the connection is closed (dropped) at once.
                    if let Some(slot) = slots.try_take() {
                        total += 1;
                        let open = Open::new(&active);
                        conns.spawn(connection(sock, peer, total, settings.clone(), (open, slot)));
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!(error = %e, "tcp forwarder: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    drop(listener);
    if !conns.is_empty() {
        tracing::info!(
            open = conns.len(),
            grace = ?settings.shutdown_grace,
            "tcp forwarder: waiting for open connections"
        );
    }
    let cut = drain(&mut conns, settings.shutdown_grace).await;
    if cut > 0 {
        tracing::warn!(
            cut,
            "tcp forwarder: grace period over; closed the connections still open"
        );
    }
}

/// Counts a connection as open until dropped (also when its task is aborted).
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(active: &Arc<AtomicUsize>) -> Open {
        active.fetch_add(1, Ordering::Relaxed);
        Open(active.clone())
    }
    fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One connection: connect to the target, then pipe until both sides are
/// done, one fails, or it goes idle.
async fn connection(
    client: TcpStream,
    peer: SocketAddr,
    conn: u64,
    settings: Arc<TcpForwardSettings>,
    (open, _slot): (Open, Slot),
) {
    let started = Instant::now();
    let target = match tokio::time::timeout(
        settings.connect_timeout,
        TcpStream::connect(settings.target.authority()),
    )
    .await
    {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::warn!(conn, %peer, target = %settings.target, error = %e, active = open.count(), "tcp forwarder: cannot reach the target; closing the client connection");
            return;
        }
        Err(_) => {
            tracing::warn!(conn, %peer, target = %settings.target, timeout = ?settings.connect_timeout, active = open.count(), "tcp forwarder: connecting to the target timed out; closing the client connection");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = target.set_nodelay(true);
    tracing::info!(conn, %peer, active = open.count(), "tcp forwarder: connection opened");
    let traffic = Traffic::new();
    let end = pipe(client, target, &traffic, settings.idle_timeout).await;
    let (up, down) = (
        traffic.up.load(Ordering::Relaxed),
        traffic.down.load(Ordering::Relaxed),
    );
    let took = started.elapsed();
    // The count once this one is gone.
    let active = open.count().saturating_sub(1);
    match end {
        End::Done => {
            tracing::info!(conn, %peer, up, down, ?took, active, "tcp forwarder: connection closed")
        }
        End::Idle(after) => tracing::info!(
            conn, %peer, up, down, ?took, active, idle = ?after,
            "tcp forwarder: connection closed after the idle timeout"
        ),
        End::Failed(e) => tracing::info!(
            conn, %peer, up, down, ?took, active, error = %e,
            "tcp forwarder: connection ended by an error"
        ),
    }
}

/// How a piped connection ended.
#[derive(Debug)]
enum End {
    /// Both directions finished (each side closed its half).
    Done,
    /// Nothing moved for this long.
    Idle(Duration),
    /// A read or write failed (a reset, a broken pipe).
    Failed(io::Error),
}

/// Bytes moved and when the last ones did.
struct Traffic {
    base: Instant,
    /// Milliseconds after `base` of the last bytes moved.
    last: AtomicU64,
    up: AtomicU64,
    down: AtomicU64,
}

impl Traffic {
    fn new() -> Traffic {
        Traffic {
            base: Instant::now(),
            last: AtomicU64::new(0),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
        }
    }
    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
    fn touch(&self) {
        self.last.store(self.now_ms(), Ordering::Relaxed);
    }
    fn idle_for(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last.load(Ordering::Relaxed)),
        )
    }
}

/// Pipes both ways until both directions end, one fails, or the
/// connection is idle for `idle`.
async fn pipe(
    client: TcpStream,
    target: TcpStream,
    traffic: &Traffic,
    idle: Option<Duration>,
) -> End {
    let (client_read, client_write) = client.into_split();
    let (target_read, target_write) = target.into_split();
    let both = futures::future::try_join(
        copy_half(client_read, target_write, &traffic.up, traffic),
        copy_half(target_read, client_write, &traffic.down, traffic),
    );
    let Some(idle) = idle else {
        return match both.await {
            Ok(_) => End::Done,
            Err(e) => End::Failed(e),
        };
    };
    tokio::select! {
        r = both => match r {
            Ok(_) => End::Done,
            Err(e) => End::Failed(e),
        },
        _ = idle_watch(traffic, idle) => End::Idle(idle),
    }
}

/// Copies one direction. At the reader's end of stream the writer's half is
/// shut down (a FIN), and the other direction goes on.
async fn copy_half(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    count: &AtomicU64,
    traffic: &Traffic,
) -> io::Result<()> {
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            // The peer may already be gone; the other direction tells.
            let _ = to.shutdown().await;
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        traffic.touch();
    }
}

/// Resolves once nothing has moved for `timeout`.
async fn idle_watch(traffic: &Traffic, timeout: Duration) {
    loop {
        let idle_for = traffic.idle_for();
        if idle_for >= timeout {
            return;
        }
        tokio::time::sleep(timeout - idle_for).await;
    }
}
