//! yallmp: a fast, faithful, debuggable LLM proxy.
//!
//! The library holds everything; `main.rs` only parses the command line.
//! Tests start the proxy in-process with [`serve`] on port 0.
//!
//! # Layers
//!
//! Each module imports only from modules below it (the same layer too, with
//! no cycle); `layers.rs` checks it over `src/` and fails on an import up
//! or a cycle. Top to bottom:
//!
//! | layer | modules |
//! |-------|---------|
//! | 9 | `main` (the binary), `cli` (one file per subcommand), `forward` (the `forward` subcommand's servers) |
//! | 8 | `server` (listeners, start and stop) |
//! | 7 | `api`: HTTP in and out only (decode the request, encode the answer or error) |
//! | 6 | `proxy`: one request's life (admit, read, identify, cache, thinking, dispatch, response chain, record) |
//! | 5 | `router`: backends, fallbacks, retries, health |
//! | 4 | `model_store` (runtime models in PostgreSQL), `replay`, `telemetry` (OpenTelemetry traces, fed by the request log's records) |
//! | 3 | `live`, `catalog`, `upstream`, `protocol`, `pipeline`, `cache`, `limits`, `thinking`, `reqlog`, `redis`, `keys` |
//! | 2 | `config` |
//! | 1 | leaves: `sse`, `wildcard`, `endpoint`, `metrics_names`, `identity`, `conn`, `template`, `errors`, `ttl_store`, `grant`, `price`, `usage` |

pub mod api;
pub mod cache;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod conn;
pub mod endpoint;
pub mod errors;
pub mod forward;
pub mod grant;
pub mod identity;
pub mod keys;
#[cfg(test)]
mod layers;
pub mod limits;
pub mod live;
pub mod metrics_names;
pub mod model_store;
pub mod pipeline;
pub mod price;
pub mod protocol;
pub mod proxy;
pub mod redis;
pub mod replay;
pub mod reqlog;
pub mod router;
pub mod server;
pub mod sse;
pub mod telemetry;
pub mod template;
pub mod thinking;
pub mod ttl_store;
pub mod upstream;
pub mod usage;
pub mod wildcard;

pub use config::Config;
pub use server::{Server, serve, serve_on};
