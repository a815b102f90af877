//! PostgreSQL for tests: a fresh database per test on the server of
//! `DATABASE_URL_POSTGRES` (an unreachable server fails the test).

/// `DATABASE_URL_POSTGRES` when set; tests print why and return when not.
pub fn base_url() -> Option<String> {
    std::env::var("DATABASE_URL_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())
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
