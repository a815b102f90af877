//! `proxy_settings.server`: the listen address, body and answer bounds,
//! shutdown grace, worker threads, client connection limits and the hosts
//! `/admin` answers.

use super::check::seconds;
use super::errors::Errors;
use super::raw::{RawGeneralSettings, RawServer, RawWorkers};
use super::{
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_SHUTDOWN_GRACE, ServerSettings, Workers, connections,
};

/// The server section; `general_host`/`general_port` are LiteLLM's
/// `general_settings.host`/`port`, read when the section names none.
pub(super) fn resolve(
    server: RawServer,
    general: &RawGeneralSettings,
    config: Option<&std::path::Path>,
    errors: &mut Errors,
) -> ServerSettings {
    let max_body_bytes = server.max_body_bytes();
    if max_body_bytes == 0 {
        errors.at(
            "proxy_settings.server.max_body_bytes",
            "must be at least 1 (0 would refuse every request with a body)",
        );
    }
    ServerSettings {
        host: server.host(general),
        port: server.port(general),
        max_body_bytes,
        max_response_bytes: max_response_bytes(server.max_response_bytes(), errors),
        shutdown_grace: seconds(
            server.shutdown_grace_period,
            DEFAULT_SHUTDOWN_GRACE,
            &"proxy_settings.server.shutdown_grace_period".into(),
            errors,
        ),
        workers: workers(server.workers, errors),
        connections: connections::resolve(
            connections::RawConnectionLimits {
                header_read_timeout: server.header_read_timeout,
                body_read_timeout: server.body_read_timeout,
                idle_timeout: server.idle_timeout,
                max_connections: server.max_connections,
            },
            &"proxy_settings.server".into(),
            errors,
        ),
        allowed_hosts: allowed_hosts(server.allowed_hosts, errors),
        tls: super::tls::resolve(server.tls, config, errors),
    }
}

/// The smallest `proxy_settings.server.max_response_bytes` accepted: below
/// it ordinary answers would fail.
const MIN_RESPONSE_BYTES: u64 = 1024;

fn max_response_bytes(n: u64, errors: &mut Errors) -> usize {
    const AT: &str = "proxy_settings.server.max_response_bytes";
    if n < MIN_RESPONSE_BYTES {
        errors.at(
            AT,
            format!(
                "{n} is too small (at least {MIN_RESPONSE_BYTES} bytes; the default is {DEFAULT_MAX_RESPONSE_BYTES})"
            ),
        );
    }
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The largest `proxy_settings.server.workers` count accepted.
const MAX_WORKERS: i64 = 1024;

fn workers(v: Option<RawWorkers>, errors: &mut Errors) -> Workers {
    const AT: &str = "proxy_settings.server.workers";
    match v {
        None => Workers::auto(),
        Some(RawWorkers::Count(n)) if (1..=MAX_WORKERS).contains(&n) => {
            Workers::PerThread(n as usize)
        }
        Some(RawWorkers::Count(n)) => {
            errors.at(
                AT,
                format!("{n} is out of range (1 to {MAX_WORKERS}, `auto` or `shared`)"),
            );
            Workers::auto()
        }
        Some(RawWorkers::Word(w)) => match w.trim().to_ascii_lowercase().as_str() {
            "auto" => Workers::auto(),
            "shared" => Workers::Shared,
            _ => {
                errors.at(
                    AT,
                    format!("expected `auto`, `shared` or a thread count, got `{w}`"),
                );
                Workers::auto()
            }
        },
    }
}

/// `proxy_settings.server.allowed_hosts`: host names (optionally with a
/// port) or `*`; no scheme, path or spaces.
fn allowed_hosts(v: Option<Vec<String>>, errors: &mut Errors) -> Vec<String> {
    let mut out = Vec::new();
    for (i, h) in v.unwrap_or_default().into_iter().enumerate() {
        let h = h.trim().to_ascii_lowercase();
        let ok = h == "*"
            || (!h.is_empty()
                && !h.contains("://")
                && !h.starts_with(':')
                && h.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']')
                }));
        if ok {
            out.push(h);
        } else {
            errors.at(format!("proxy_settings.server.allowed_hosts[{i}]"), format!("expected a host name as the `Host` header \
                 carries it (`proxy.example.com`, `proxy.example.com:8443`, `10.0.0.5`) or `*`, got `{h}`"));
        }
    }
    out
}
