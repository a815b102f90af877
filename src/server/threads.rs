//! The serving threads and the acceptor: connections accepted on one task,
//! under `max_connections`, and handed in turn to threads that each run
//! their own runtime (thread-per-core) or to one shared runtime.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::ServeError;
use super::connection::connection;
use super::tls::Tls;
use crate::config::Workers;
use crate::config::connections::ConnectionLimits;
use crate::conn::{Slot, Slots};

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
    tls: Option<Tls>,
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
                        conns.spawn(connection(
                            tcp,
                            peer,
                            slot,
                            app.clone(),
                            limits,
                            stop.clone(),
                            tls.clone(),
                        ));
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
pub(super) fn serving_threads(
    listener: TcpListener,
    app: axum::Router,
    workers: Workers,
    limits: ConnectionLimits,
    stop: watch::Receiver<bool>,
    grace: Duration,
    tls: Option<Tls>,
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
                Some(crate::upstream::http_client().map_err(ServeError::Client)?),
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
        let tls = tls.clone();
        std::thread::Builder::new()
            .name(format!("yallmp-serve-{index}"))
            .spawn(move || {
                if let Some(client) = client {
                    crate::upstream::set_thread_client(client);
                }
                let cut = runtime.block_on(run(rx, app, limits, stop, grace, tls));
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
