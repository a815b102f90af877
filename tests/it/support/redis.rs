//! Redis for tests: the machine's real server (`REDIS_URL`), a key prefix
//! per test so parallel tests never share keys, and a [`Gate`]: a TCP relay
//! in front of Redis that a test can cut and restore, to play "Redis went
//! away" without stopping the server other tests use.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// `REDIS_URL`, with its server answering PING. When it is set, an
/// unreachable Redis fails the test (it does not skip); unset, the test is
/// skipped, or fails where the servers are expected ([`super::services`]).
pub async fn redis_url() -> Option<String> {
    let url = super::services::url("REDIS_URL", "Redis")?;
    let client = ::redis::Client::open(url.as_str())
        .unwrap_or_else(|e| panic!("REDIS_URL is not a Redis URL: {e}"));
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("REDIS_URL is set but Redis is unreachable: {e}"));
    let _: String = ::redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("REDIS_URL is set but Redis does not answer PING: {e}"));
    Some(url)
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("yallmp-test:{}:", uuid::Uuid::new_v4().simple())
}

/// A relay on 127.0.0.1:port-0 to a Redis server. While open it forwards
/// connections; [`Gate::cut`] drops every live connection and refuses new
/// ones (the listener stays bound, so the port is never reused by another
/// test), [`Gate::restore`] lets connections through again.
pub struct Gate {
    /// `redis://127.0.0.1:PORT/` (with the upstream URL's db, if any).
    pub url: String,
    open: Arc<AtomicBool>,
    epoch: watch::Sender<u64>,
}

impl Gate {
    pub async fn start(upstream_url: &str) -> Gate {
        let info = ::redis::Client::open(upstream_url)
            .unwrap()
            .get_connection_info()
            .clone();
        let target = match info.addr() {
            ::redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
            other => panic!("Gate needs a TCP Redis, not {other:?}"),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let db = info.redis_settings().db();
        let open = Arc::new(AtomicBool::new(true));
        let (epoch, _) = watch::channel(0u64);
        let (o, e) = (open.clone(), epoch.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !o.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let mut cut = e.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Gate {
            url: format!("redis://127.0.0.1:{port}/{db}"),
            open,
            epoch,
        }
    }

    /// Redis "goes away": live connections drop, new ones are refused.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.epoch.send_modify(|n| *n += 1);
    }

    /// Redis "comes back".
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}
