//! PostgreSQL for tests: a fresh database per test on the server of
//! `DATABASE_URL_POSTGRES`. Unset, the test is skipped, or fails where the
//! servers are expected ([`super::services`]); set, an unreachable server
//! fails the test.

/// `DATABASE_URL_POSTGRES`, with its server answering a TCP connection;
/// `None` (a skipped test) only where PostgreSQL is not expected.
pub fn base_url() -> Option<String> {
    let url = super::services::url("DATABASE_URL_POSTGRES", "PostgreSQL")?;
    let parsed = reqwest::Url::parse(&url)
        .unwrap_or_else(|e| panic!("DATABASE_URL_POSTGRES is not a URL: {e}"));
    let host = parsed.host_str().unwrap_or("localhost");
    let port = parsed.port().unwrap_or(5432);
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map(|mut addrs| {
            addrs.any(|a| {
                std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(5)).is_ok()
            })
        })
        .unwrap_or(false);
    assert!(
        reachable,
        "DATABASE_URL_POSTGRES is set but PostgreSQL at {host}:{port} is unreachable"
    );
    Some(url)
}

/// The request log's database target for a PostgreSQL URL.
pub fn target(url: &str) -> yallmp::config::DatabaseTarget {
    super::config(&format!("database: {{url: '{url}'}}\n"))
        .database
        .target
}

pub async fn drop_database(base: &str, url: &str) {
    use sqlx::Connection;
    let name = url.rsplit('/').next().unwrap();
    let mut conn = sqlx::PgConnection::connect(base).await.unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// Runs `test` on a new, empty database (its URL), dropped afterwards;
/// without PostgreSQL, [`base_url`] decides (a skip or a failure).
pub async fn with_fresh_database<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(base) = base_url() else {
        return;
    };
    let url = fresh_database(&base).await;
    test(url.clone()).await;
    drop_database(&base, &url).await;
}

/// A new, empty database on the server of `base`, for one test.
pub async fn fresh_database(base: &str) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(base).await.unwrap_or_else(|e| {
        panic!("DATABASE_URL_POSTGRES is set but PostgreSQL is unreachable: {e}")
    });
    let name = format!("yallmp_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let (head, _) = base.rsplit_once('/').unwrap();
    format!("{head}/{name}")
}
