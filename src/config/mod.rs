//! Configuration: read the YAML file, substitute environment variables, accept
//! both dialects, and resolve everything into one immutable [`Config`] that the
//! rest of the proxy reads. Every error names the file and the key path.

mod backend;
pub mod bedrock;
pub mod cache;
mod check;
pub mod connections;
mod database;
pub mod env;
mod errors;
pub mod forward;
pub mod google;
mod inherit;
mod keys;
mod limits;
mod litellm;
mod litellm_map;
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
pub mod telemetry;
pub mod thinking;
pub mod tls;
mod tree;
mod unknown;
mod url;

pub use env::Env;
pub use errors::nearest;
pub use load::ConfigError;
pub use logging::LogFormat;
pub use model::{
    ApiType, AzureTarget, Backend, BackendLimits, BackendRouting, DropParams, FallbackKind,
    HealthCheck, ModelConfig, ModelSource, Parameter,
};
pub use settings::{
    AuthSettings, Config, CorsSettings, DatabaseSettings, DatabaseTarget, DeclaredKey,
    DeclaredTeam, FileLayout, KindCounts, Limit, LoggingSettings, OnFull, Origin, PostgresTarget,
    RateLimits, RedisSettings, RouterSettings, RoutingStrategy, Secret, ServerSettings, Workers,
};
pub use tls::TlsFiles;
pub use url::{Target, google_method, mask_url_secret, url_secret};

pub use raw::{
    DEFAULT_AZURE_API_VERSION, DEFAULT_HOST, DEFAULT_LOG_DIR, DEFAULT_LOG_MAX_BODY,
    DEFAULT_LOG_QUEUE, DEFAULT_LOG_QUEUE_BYTES, DEFAULT_LOG_SEGMENT_BYTES, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_PORT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SHUTDOWN_GRACE,
    DEFAULT_SQLITE_PATH,
};
