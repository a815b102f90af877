//! yallmp: a fast, faithful, debuggable LLM proxy.
//!
//! The library holds everything; `main.rs` only parses the command line.
//! Tests start the proxy in-process with [`serve`] on port 0.

pub mod api;
pub mod cache;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod conn;
pub mod endpoint;
pub mod forward;
pub mod identity;
pub mod limits;
pub mod live;
pub mod metrics_names;
pub mod model_store;
pub mod pipeline;
pub mod protocol;
pub mod proxy;
pub mod redis;
pub mod replay;
pub mod reqlog;
pub mod router;
pub mod server;
pub mod sse;
pub mod thinking;
pub mod upstream;
pub mod usage;
pub mod wildcard;

pub use config::Config;
pub use server::{Server, serve, serve_on};
