//! Configuration: read the YAML file, substitute environment variables, accept
//! both dialects, and resolve everything into one immutable [`Config`] that the
//! rest of the proxy reads. Every error names the file and the key path.

mod backend;
pub mod cache;
mod check;
pub mod connections;
mod database;
pub mod env;
mod errors;
pub mod forward;
mod inherit;
mod limits;
mod load;
mod logging;
mod model;
mod models;
pub mod overlay;
pub mod parsers;
mod raw;
pub mod reasoning;
mod resolve;
mod router;
mod server;
mod settings;
pub mod streaming;
pub mod thinking;
mod tree;
mod url;

use std::time::Duration;

pub use env::Env;
pub use errors::nearest;
pub use load::ConfigError;
pub use model::{
    ApiType, AzureTarget, Backend, BackendRouting, HealthCheck, ModelConfig, ModelSource, Parameter,
};
pub use settings::{
    AuthSettings, Config, CorsSettings, DatabaseSettings, DatabaseTarget, Limit, LoggingSettings,
    Origin, PostgresTarget, RateLimits, RedisSettings, RouterSettings, RoutingStrategy, Secret,
    ServerSettings, Workers,
};
pub use url::{mask_url_secret, url_secret};

/// Default listen host and port.
pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 7979;
pub const DEFAULT_MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;
/// `proxy_settings.server.max_response_bytes` when not set (64 MiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub const DEFAULT_LOG_DIR: &str = "logs/requests";
pub const DEFAULT_SQLITE_PATH: &str = "logs/yallmp.db";
pub const DEFAULT_LOG_MAX_BODY: u64 = 10 * 1024 * 1024;
pub const DEFAULT_LOG_QUEUE: usize = 10_000;
/// `proxy_settings.logging.queue_max_bytes`: 64 MiB.
pub const DEFAULT_LOG_QUEUE_BYTES: u64 = 64 << 20;
