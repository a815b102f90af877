//! What a client connection may cost: a cap on open connections
//! ([`Slots`]), the header read and idle keep-alive timeouts of a served
//! connection ([`Activity`], watched through [`Tracked`] I/O), and the body
//! read timeout ([`TimedBody`]). Used by the proxy's server
//! ([`crate::server`]) and the forwarders ([`crate::forward`]).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// `yallmp_connections_open{listener}`.
pub const OPEN: &str = "yallmp_connections_open";
/// `yallmp_connections_refused_total{listener}`.
pub const REFUSED: &str = "yallmp_connections_refused_total";
/// `yallmp_client_timeouts_total{kind}`: header, body, idle.
pub const TIMEOUTS: &str = "yallmp_client_timeouts_total";
/// `yallmp_tls_handshake_failures_total{kind}`: error, timeout.
pub const TLS_HANDSHAKE_FAILURES: &str = "yallmp_tls_handshake_failures_total";

/// The help texts of this module's metrics.
pub fn describe() {
    metrics::describe_gauge!(OPEN, "Client connections open now, by listener");
    metrics::describe_counter!(
        REFUSED,
        "Client connections refused at max_connections, by listener"
    );
    metrics::describe_counter!(
        TIMEOUTS,
        "Client connections closed, or requests ended with 408, by a client timeout (header, body, idle)"
    );
    metrics::describe_counter!(
        TLS_HANDSHAKE_FAILURES,
        "TLS handshakes on the listener that failed or timed out (error, timeout)"
    );
}

/// How often a listener at its cap says so in the log.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The cap on a listener's open connections. A connection holds a
/// [`Slot`] from its accept until it closes.
#[derive(Clone)]
pub struct Slots {
    inner: Arc<SlotsInner>,
}

struct SlotsInner {
    sem: Arc<Semaphore>,
    max: usize,
    /// `proxy`, `http_forwarder`, `tcp_forwarder`: the metrics' label.
    listener: &'static str,
    /// Refused since the last warning, and when that was.
    warned: Mutex<(u64, Option<Instant>)>,
}

/// One open connection's place under the cap (given back when dropped).
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    listener: &'static str,
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!(OPEN, "listener" => self.listener).decrement(1.0);
    }
}

impl Slots {
    pub fn new(max: usize, listener: &'static str) -> Slots {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Slots {
            inner: Arc::new(SlotsInner {
                sem: Arc::new(Semaphore::new(max)),
                max,
                listener,
                warned: Mutex::new((0, None)),
            }),
        }
    }

    /// A place for a new connection; `None` at the cap, counted in
    /// [`REFUSED`] and, at most every few seconds, in a warning.
    pub fn try_take(&self) -> Option<Slot> {
        let s = &self.inner;
        match s.sem.clone().try_acquire_owned() {
            Ok(permit) => {
                metrics::gauge!(OPEN, "listener" => s.listener).increment(1.0);
                Some(Slot {
                    _permit: permit,
                    listener: s.listener,
                })
            }
            Err(_) => {
                metrics::counter!(REFUSED, "listener" => s.listener).increment(1);
                let mut warned = s.warned.lock().unwrap_or_else(|p| p.into_inner());
                warned.0 += 1;
                let due = warned.1.is_none_or(|at| at.elapsed() >= WARN_EVERY);
                if due {
                    tracing::warn!(
                        listener = s.listener,
                        max_connections = s.max,
                        refused = warned.0,
                        "too many open client connections: refusing new ones (max_connections)"
                    );
                    *warned = (0, Some(Instant::now()));
                }
                None
            }
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.max - self.inner.sem.available_permits()
    }
}

/// What the proxy writes to a connection it refuses at the cap (before
/// closing it): a 503 a client can read and retry on.
pub const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 130\r\n\
\r\n\
{\"error\":{\"message\":\"too many open connections to the proxy; retry shortly\",\"type\":\"server_error\",\"code\":\"too_many_connections\"}}\n";

/// Why a served connection was closed by the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// A request's head did not arrive whole in time.
    Header,
    /// Nothing happened between requests for too long.
    Idle,
}

impl Expired {
    pub fn as_str(self) -> &'static str {
        match self {
            Expired::Header => "header",
            Expired::Idle => "idle",
        }
    }
}

/// `head_started` when no byte of a next request has come.
const NONE: u64 = u64::MAX;

/// One served connection's activity: requests in flight, when it last went
/// idle, when a next request's first byte came. [`Tracked`] I/O and
/// [`InFlight`] guards keep it; [`Activity::expired`] watches it.
pub struct Activity {
    base: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `base` when the last answer finished (0 at
    /// first).
    idle_since: AtomicU64,
    /// Milliseconds after `base` when a request's head began arriving
    /// ([`NONE`] while a request is served or nothing came yet). A new
    /// connection counts as one whose head began at its opening: a client
    /// connects to send a request.
    head_started: AtomicU64,
    /// Milliseconds after `base` of the last bytes written.
    last_write: AtomicU64,
    wake: Notify,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            last_write: AtomicU64::new(0),
            wake: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    /// A request is being served (its head arrived); until the guard (and
    /// the answer's body that holds it) is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.head_started.store(NONE, Ordering::SeqCst);
        self.wake.notify_one();
        InFlight(self.clone())
    }

    fn read(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0
            && self.head_started.load(Ordering::SeqCst) == NONE
        {
            self.head_started.store(self.now_ms(), Ordering::SeqCst);
            self.wake.notify_one();
        }
    }

    fn wrote(&self) {
        self.last_write.store(self.now_ms(), Ordering::Relaxed);
    }

    /// When it expires as things stand, and why; `None` while a request is
    /// served (or the limit that applies is off).
    fn deadline(
        &self,
        header: Option<Duration>,
        idle: Option<Duration>,
    ) -> Option<(Instant, Expired)> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        match self.head_started.load(Ordering::SeqCst) {
            NONE => {
                let since = self
                    .idle_since
                    .load(Ordering::SeqCst)
                    .max(self.last_write.load(Ordering::Relaxed));
                idle.map(|t| (self.at(since) + t, Expired::Idle))
            }
            started => header.map(|t| (self.at(started) + t, Expired::Header)),
        }
    }

    /// Resolves when the connection has gone past `header` (a request's
    /// head begun and not finished) or `idle` (nothing between requests);
    /// never while a request is served.
    pub async fn expired(&self, header: Option<Duration>, idle: Option<Duration>) -> Expired {
        loop {
            match self.deadline(header, idle) {
                None => self.wake.notified().await,
                Some((at, why)) => {
                    if Instant::now() >= at {
                        return why;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep_until(at.into()) => {}
                        _ = self.wake.notified() => {}
                    }
                }
            }
        }
    }
}

/// A request in flight on a connection (see [`Activity::begin`]).
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        if a.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            a.idle_since.store(a.now_ms(), Ordering::SeqCst);
            a.wake.notify_one();
        }
    }
}

/// A connection's I/O that tells its [`Activity`] about reads and writes.
pub struct Tracked<T> {
    io: T,
    activity: Arc<Activity>,
}

impl<T> Tracked<T> {
    pub fn new(io: T, activity: Arc<Activity>) -> Tracked<T> {
        Tracked { io, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// An answer's body that keeps its request counted as in flight until
/// it has been sent (or dropped).
pub struct Guarded<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> Guarded<B> {
    pub fn new(inner: B, in_flight: InFlight) -> Guarded<B> {
        Guarded {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The error a [`TimedBody`] ends with when its client stops sending.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the client sent no part of the request body for {} s", .0.as_secs_f64())]
pub struct BodyTimeout(pub Duration);

/// The [`BodyTimeout`] among `e` and its causes.
pub fn body_timeout_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTimeout> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(t) = e.downcast_ref::<BodyTimeout>() {
            return Some(t);
        }
        next = e.source();
    }
    None
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that fails with [`BodyTimeout`] when, while it is read,
/// nothing arrives for `timeout`; `fired` is set then (so the server knows
/// the request ended for it).
pub struct TimedBody<B> {
    inner: B,
    timeout: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The timer runs from the first wait since the last frame.
    armed: bool,
    fired: Arc<AtomicBool>,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, timeout: Option<Duration>, fired: Arc<AtomicBool>) -> TimedBody<B> {
        TimedBody {
            inner,
            timeout,
            sleep: None,
            armed: false,
            fired,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.fired.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(
                this.timeout.unwrap_or_default(),
            )))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.armed = false;
                Poll::Ready(r.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let Some(timeout) = this.timeout else {
                    return Poll::Pending;
                };
                if !this.armed {
                    let at = tokio::time::Instant::now() + timeout;
                    match &mut this.sleep {
                        Some(s) => s.as_mut().reset(at),
                        None => this.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
                    }
                    this.armed = true;
                }
                match this.sleep.as_mut().map(|s| s.as_mut().poll(cx)) {
                    Some(Poll::Ready(())) => {
                        this.fired.store(true, Ordering::Relaxed);
                        metrics::counter!(TIMEOUTS, "kind" => "body").increment(1);
                        Poll::Ready(Some(Err(Box::new(BodyTimeout(timeout)))))
                    }
                    _ => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_answer_has_the_length_it_says() {
        let text = std::str::from_utf8(BUSY_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{}",
            body.len()
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "too_many_connections");
    }

    #[test]
    fn slots_cap_and_give_back() {
        let slots = Slots::new(2, "test");
        let a = slots.try_take().unwrap();
        let _b = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        assert_eq!(slots.open(), 2);
        drop(a);
        assert!(slots.try_take().is_some());
    }

    #[test]
    fn body_timeout_is_found_among_the_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] BodyTimeout);
        let e = Outer(BodyTimeout(Duration::from_secs(1)));
        assert_eq!(
            body_timeout_in(&e).map(|t| t.0),
            Some(Duration::from_secs(1))
        );
        assert!(body_timeout_in(&io::Error::other("x")).is_none());
    }

    #[tokio::test]
    async fn a_connection_expires_by_header_then_idle_and_never_while_busy() {
        let header = Some(Duration::from_millis(50));
        let idle = Some(Duration::from_millis(150));
        let a = Activity::new();
        // A new connection: its head is due within the header timeout.
        let t0 = Instant::now();
        assert_eq!(a.expired(header, idle).await, Expired::Header);
        assert!(t0.elapsed() >= Duration::from_millis(50));
        // Busy: no deadline; then idle.
        let g = a.begin();
        assert!(a.deadline(header, idle).is_none());
        drop(g);
        let t1 = Instant::now();
        assert_eq!(a.expired(header, idle).await, Expired::Idle);
        assert!(t1.elapsed() >= Duration::from_millis(150));
        // Off: no deadline at all.
        assert!(a.deadline(header, None).is_none());
    }
}
