//! The integration tests: one test binary (`cargo test --test it`), one
//! module per area, as ripgrep and TensorZero lay theirs out. Each former
//! `tests/*.rs` binary linked sqlx, reqwest, redis and the whole library on
//! its own; one binary links them once. Run one area with
//! `cargo test --test it proxy::` (the module path prefixes every test).
//!
//! The tests share one process, so what is process-wide is shared too, and
//! each test is written for it: the Prometheus recorder (each test counts
//! only series of model names of its own, or only a rise of a counter), the
//! tracing subscriber that `support::warnings` installs (a test reads only
//! the warnings its own thread logged), and no test changes the process's
//! environment, working directory or signal handlers (the signal tests
//! signal a child process running the real binary).

mod support;

mod admin;
mod admin_api;
mod admin_api_large;
mod admin_ui;
mod admin_ui_keys;
mod anthropic;
mod azure;
mod bedrock;
mod cache;
mod cli;
mod config;
mod endpoints_more;
mod error_kinds;
mod faults;
mod forward;
mod forward_edges;
mod gemini;
mod interleaved_thinking;
mod json_log;
mod keys;
mod limits;
mod litellm_config;
mod litellm_keys;
mod litellm_routing;
mod messages;
mod metrics;
mod openapi;
mod parsers;
mod parsers_proxy;
mod previous_response;
mod proxy;
mod redis_shared;
mod reqlog;
mod reqlog_modes;
mod responses;
mod responses_ws;
mod routing;
mod shared_models;
mod sighup;
mod stream_limits;
mod systemd;
mod telemetry;
mod templates;
mod timeouts;
mod tls;
mod translate_fields;
mod upstream_edges;
mod version;
mod vertex;
mod wildcard;
