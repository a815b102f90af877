//! Upstreams that misbehave below HTTP, where axum cannot: a raw TCP
//! listener on port 0 whose handler gets each connection with the request
//! already read; and a TCP relay the test can take down and bring back (a
//! database that goes away).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running raw upstream.
pub struct RawUpstream {
    /// Base URL to use as `api_base`, ending in `/v1`.
    pub url: String,
    requests: Arc<AtomicUsize>,
}

impl RawUpstream {
    /// Calls `handler` for every connection, after reading one request
    /// from it (headers and `Content-Length` body; the request text is
    /// passed along).
    pub async fn start<F, Fut>(handler: F) -> RawUpstream
    where
        F: Fn(TcpStream, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        let handler = Arc::new(handler);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let handler = handler.clone();
                let count = count.clone();
                tokio::spawn(async move {
                    if let Some(request) = read_request(&mut stream).await {
                        count.fetch_add(1, Ordering::SeqCst);
                        handler(stream, request).await;
                    }
                });
            }
        });
        RawUpstream {
            url: format!("http://{addr}/v1"),
            requests,
        }
    }

    /// Requests read so far.
    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads one HTTP/1.1 request (headers, then a `Content-Length` body).
pub async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Closes with a TCP reset (`SO_LINGER` 0) instead of a clean close.
pub fn reset(stream: TcpStream) {
    stream.set_zero_linger().unwrap();
    drop(stream);
}

/// The head of a chunked event stream.
pub const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

/// `data` as one HTTP chunk.
pub fn http_chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

/// Writes all of `data`; false when the connection is gone.
pub async fn write(stream: &mut TcpStream, data: &str) -> bool {
    stream.write_all(data.as_bytes()).await.is_ok() && stream.flush().await.is_ok()
}

/// Waits until the peer closes the connection (or resets it).
pub async fn closed_by_peer(stream: &mut TcpStream) {
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// A TCP relay to `target` that the test can take down (every connection
/// through it cut, new ones accepted and closed at once) and bring back, on
/// the same address.
pub struct Relay {
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, _) = watch::channel(true);
        let state = up.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut rx = state.subscribe();
                if !*rx.borrow_and_update() {
                    reset(inbound);
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.wait_for(|up| !*up) => {}
                    }
                    inbound.set_zero_linger().ok();
                    outbound.set_zero_linger().ok();
                });
            }
        });
        Relay { addr, up }
    }

    /// Cuts every connection and refuses new ones (reset at once).
    pub fn down(&self) {
        self.up.send_replace(false);
    }

    /// Relays new connections again.
    pub fn up(&self) {
        self.up.send_replace(true);
    }
}
