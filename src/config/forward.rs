//! `forwarder_settings` (the TCP forwarder) and `http_forwarder_settings`
//! (the HTTP forwarder): serde types with their defaults, the `FORWARD_*` /
//! `HTTP_FORWARD_*` environment overrides (they win over the file), and
//! validation with key paths.
//!
//! The forwarders run as their own process (`yallmp forward tcp|http|both`),
//! in front of a proxy that is out of reach (inside a VPN, a WSL guest).

use std::time::Duration;

use serde::Deserialize;

use super::Env;
use super::check::seconds;
use super::connections;
use super::errors::{Errors, KeyPath};

/// Port both forwarders listen on unless told otherwise.
pub const DEFAULT_FORWARD_PORT: u16 = 6969;

/// `http_forwarder_settings.response_timeout`: 10 minutes (a long
/// generation answered whole, retries and fallbacks included).
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(600);

/// `{host, port}` as written.
#[derive(Debug, Clone, Deserialize)]
pub struct RawAddr {
    pub host: Option<String>,
    pub port: Option<u16>,
}

/// `http_forwarder_settings.target`: `{scheme, host, port}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawHttpTarget {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// PEM certificates trusted for an https target besides the public
    /// roots (a private CA, a self-signed proxy).
    pub ca_file: Option<String>,
}

/// `forwarder_settings` as written.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawTcpForwarder {
    pub listen: Option<RawAddr>,
    pub target: Option<RawAddr>,
    /// Seconds without a byte in either direction before a connection is
    /// closed (default 600; 0 turns it off).
    pub idle_timeout: Option<f64>,
    /// Seconds to connect to the target (default 10).
    pub connect_timeout: Option<f64>,
    /// Seconds open connections get to finish after SIGINT/SIGTERM
    /// (default 10).
    pub shutdown_grace_period: Option<f64>,
    /// Client connections open at once; past it new ones are closed
    /// (default 4096, or half the open-files limit when lower).
    pub max_connections: Option<u64>,
}

/// `http_forwarder_settings` as written.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawHttpForwarder {
    /// Send the client's `Host` header to the target (default true); when
    /// false the target's own `host:port` is sent.
    pub preserve_host: Option<bool>,
    pub listen: Option<RawAddr>,
    pub target: Option<RawHttpTarget>,
    /// Seconds to connect to the target (default 10).
    pub connect_timeout: Option<f64>,
    /// Seconds an unused keep-alive connection to the target is kept
    /// (default 90).
    pub pool_idle_timeout: Option<f64>,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM
    /// (default 10).
    pub shutdown_grace_period: Option<f64>,
    /// Seconds a client has to send a request's head, counted from when
    /// the connection is ready for it (opened, or the previous answer
    /// sent), so it also bounds an idle keep-alive connection (default
    /// 30; 0 turns it off).
    pub header_read_timeout: Option<f64>,
    /// Seconds a request body may go without a byte (default 60; 0 off).
    pub body_read_timeout: Option<f64>,
    /// Seconds to wait for the target's answer to begin (its status and
    /// headers; default 600; 0 off); past it the client gets 504.
    pub response_timeout: Option<f64>,
    /// Client connections open at once; past it new ones get 503 and are
    /// closed (default 4096, or half the open-files limit when lower).
    pub max_connections: Option<u64>,
}

/// A host and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// `host:port`, with brackets around an IPv6 host.
    pub fn authority(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.authority())
    }
}

/// The TCP forwarder, resolved.
#[derive(Debug, Clone)]
pub struct TcpForwardSettings {
    pub listen: HostPort,
    pub target: HostPort,
    /// `None`: connections may stay silent forever.
    pub idle_timeout: Option<Duration>,
    pub connect_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_connections: usize,
}

/// `http` or `https` to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The HTTP forwarder, resolved.
#[derive(Debug, Clone)]
pub struct HttpForwardSettings {
    pub listen: HostPort,
    pub scheme: Scheme,
    pub target: HostPort,
    pub preserve_host: bool,
    pub connect_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub shutdown_grace: Duration,
    /// `None`: no limit.
    pub header_read_timeout: Option<Duration>,
    pub body_read_timeout: Option<Duration>,
    pub response_timeout: Option<Duration>,
    pub max_connections: usize,
    /// `target.ca_file`: certificates trusted for an https target besides
    /// the public roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl HttpForwardSettings {
    /// `scheme://host:port`, without a trailing slash.
    pub fn target_url(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.target.authority())
    }
}

/// Both forwarders.
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    pub tcp: TcpForwardSettings,
    pub http: HttpForwardSettings,
}

impl Default for ForwardSettings {
    fn default() -> Self {
        let mut errors = Errors::default();
        resolve(
            RawTcpForwarder::default(),
            RawHttpForwarder::default(),
            &Env::default(),
            &mut errors,
        )
    }
}

impl ForwardSettings {
    /// Both forwarders in one process need two ports: the error says which
    /// keys and variables to change.
    pub fn check_both(&self) -> Result<(), String> {
        let (t, h) = (&self.tcp.listen, &self.http.listen);
        if t.port != 0 && t.port == h.port {
            return Err(format!(
                "both forwarders would listen on port {}: forwarder_settings.listen.port (FORWARD_LISTEN_PORT) \
                 and http_forwarder_settings.listen.port (HTTP_FORWARD_LISTEN_PORT) must differ to run both; \
                 give one of them another port, e.g. HTTP_FORWARD_LISTEN_PORT={}",
                t.port,
                t.port.wrapping_add(1).max(1)
            ));
        }
        Ok(())
    }
}

/// Applies the environment overrides and the defaults; each problem goes to
/// `errors` with its key path (and the variable, for an override).
pub(super) fn resolve(
    tcp: RawTcpForwarder,
    http: RawHttpForwarder,
    env: &Env,
    errors: &mut Errors,
) -> ForwardSettings {
    let tcp_at = KeyPath::new("forwarder_settings");
    let listen = tcp.listen.unwrap_or(RawAddr {
        host: None,
        port: None,
    });
    let target = tcp.target.unwrap_or(RawAddr {
        host: None,
        port: None,
    });
    let tcp = TcpForwardSettings {
        listen: HostPort {
            host: host(
                env,
                "FORWARD_LISTEN_HOST",
                listen.host,
                "0.0.0.0",
                &tcp_at.key("listen.host"),
                errors,
            ),
            port: port(
                env,
                "FORWARD_LISTEN_PORT",
                listen.port,
                DEFAULT_FORWARD_PORT,
                &tcp_at.key("listen.port"),
                errors,
            ),
        },
        target: HostPort {
            host: host(
                env,
                "FORWARD_TARGET_HOST",
                target.host,
                super::DEFAULT_HOST,
                &tcp_at.key("target.host"),
                errors,
            ),
            port: port(
                env,
                "FORWARD_TARGET_PORT",
                target.port,
                super::DEFAULT_PORT,
                &tcp_at.key("target.port"),
                errors,
            ),
        },
        idle_timeout: connections::optional_seconds(
            tcp.idle_timeout,
            Duration::from_secs(600),
            &tcp_at.key("idle_timeout"),
            errors,
        ),
        connect_timeout: seconds(
            tcp.connect_timeout,
            Duration::from_secs(10),
            &tcp_at.key("connect_timeout"),
            errors,
        ),
        shutdown_grace: seconds(
            tcp.shutdown_grace_period,
            Duration::from_secs(10),
            &tcp_at.key("shutdown_grace_period"),
            errors,
        ),
        max_connections: connections::max_connections(
            tcp.max_connections,
            &tcp_at.key("max_connections"),
            errors,
        ),
    };
    if tcp.target.port == 0 {
        errors.at(
            tcp_at.key("target.port"),
            "the target needs a port (1-65535)",
        );
    }

    let http_at = KeyPath::new("http_forwarder_settings");
    let listen = http.listen.unwrap_or(RawAddr {
        host: None,
        port: None,
    });
    let mut target = http.target.unwrap_or_default();
    let ca_file = env
        .get("HTTP_FORWARD_TARGET_CA_FILE")
        .or(target.ca_file.take())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .map(std::path::PathBuf::from);
    let scheme_text = env
        .get("HTTP_FORWARD_TARGET_SCHEME")
        .filter(|s| !s.trim().is_empty())
        .map(|s| (s, true))
        .or(target.scheme.map(|s| (s, false)));
    let scheme = match scheme_text {
        None => Scheme::Http,
        Some((s, from_env)) => match s.trim().to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => {
                let at = http_at.key("target.scheme");
                let source = if from_env {
                    format!("HTTP_FORWARD_TARGET_SCHEME (overrides {at})")
                } else {
                    at.to_string()
                };
                errors.at(source, format!("expected http or https, got `{other}`"));
                Scheme::Http
            }
        },
    };
    let preserve_host = match env
        .get("HTTP_FORWARD_PRESERVE_HOST")
        .filter(|s| !s.trim().is_empty())
    {
        None => http.preserve_host.unwrap_or(true),
        Some(v) => match parse_bool(&v) {
            Some(b) => b,
            None => {
                errors.at(
                    format!("HTTP_FORWARD_PRESERVE_HOST (overrides {http_at}.preserve_host)"),
                    format!("expected true or false, got `{v}`"),
                );
                true
            }
        },
    };
    let http = HttpForwardSettings {
        listen: HostPort {
            host: host(
                env,
                "HTTP_FORWARD_LISTEN_HOST",
                listen.host,
                "0.0.0.0",
                &http_at.key("listen.host"),
                errors,
            ),
            port: port(
                env,
                "HTTP_FORWARD_LISTEN_PORT",
                listen.port,
                DEFAULT_FORWARD_PORT,
                &http_at.key("listen.port"),
                errors,
            ),
        },
        scheme,
        target: HostPort {
            host: host(
                env,
                "HTTP_FORWARD_TARGET_HOST",
                target.host,
                super::DEFAULT_HOST,
                &http_at.key("target.host"),
                errors,
            ),
            port: port(
                env,
                "HTTP_FORWARD_TARGET_PORT",
                target.port,
                match scheme {
                    Scheme::Http => super::DEFAULT_PORT,
                    Scheme::Https => 443,
                },
                &http_at.key("target.port"),
                errors,
            ),
        },
        preserve_host,
        connect_timeout: seconds(
            http.connect_timeout,
            Duration::from_secs(10),
            &http_at.key("connect_timeout"),
            errors,
        ),
        pool_idle_timeout: seconds(
            http.pool_idle_timeout,
            Duration::from_secs(90),
            &http_at.key("pool_idle_timeout"),
            errors,
        ),
        shutdown_grace: seconds(
            http.shutdown_grace_period,
            Duration::from_secs(10),
            &http_at.key("shutdown_grace_period"),
            errors,
        ),
        header_read_timeout: connections::optional_seconds(
            http.header_read_timeout,
            connections::DEFAULT_HEADER_READ_TIMEOUT,
            &http_at.key("header_read_timeout"),
            errors,
        ),
        body_read_timeout: connections::optional_seconds(
            http.body_read_timeout,
            connections::DEFAULT_BODY_READ_TIMEOUT,
            &http_at.key("body_read_timeout"),
            errors,
        ),
        response_timeout: connections::optional_seconds(
            http.response_timeout,
            DEFAULT_RESPONSE_TIMEOUT,
            &http_at.key("response_timeout"),
            errors,
        ),
        max_connections: connections::max_connections(
            http.max_connections,
            &http_at.key("max_connections"),
            errors,
        ),
        ca_file,
    };
    if http.target.port == 0 {
        errors.at(
            http_at.key("target.port"),
            "the target needs a port (1-65535)",
        );
    }
    ForwardSettings { tcp, http }
}

/// The variable's value when set (and not empty), else the file's, else
/// the default.
fn host(
    env: &Env,
    var: &str,
    file: Option<String>,
    default: &str,
    at: &KeyPath,
    errors: &mut Errors,
) -> String {
    let (value, from_env) = match env.get(var).filter(|v| !v.trim().is_empty()) {
        Some(v) => (v, true),
        None => (file.unwrap_or_else(|| default.to_string()), false),
    };
    let value = value.trim().to_string();
    let bare = value.trim_start_matches('[').trim_end_matches(']');
    let valid = !bare.is_empty()
        && !bare.contains(['/', ' ', '@', '?', '#', '[', ']'])
        && (!bare.contains(':') || bare.parse::<std::net::Ipv6Addr>().is_ok());
    if !valid {
        let source = if from_env {
            format!("{var} (overrides {at})")
        } else {
            at.to_string()
        };
        errors.at(
            source,
            format!("expected a host name or IP address without a port or scheme, got `{value}`"),
        );
    }
    value
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

fn port(
    env: &Env,
    var: &str,
    file: Option<u16>,
    default: u16,
    at: &KeyPath,
    errors: &mut Errors,
) -> u16 {
    match env.get(var).filter(|v| !v.trim().is_empty()) {
        None => file.unwrap_or(default),
        Some(v) => match v.trim().parse::<u16>() {
            Ok(p) => p,
            Err(_) => {
                errors.at(
                    format!("{var} (overrides {at})"),
                    format!("expected a port number (0-65535), got `{v}`"),
                );
                file.unwrap_or(default)
            }
        },
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str, vars: &[(&str, &str)]) -> Result<ForwardSettings, Vec<String>> {
        let env = Env::isolated(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        crate::config::Config::from_yaml(yaml, None, &env)
            .map(|c| c.forward)
            .map_err(|e| e.errors)
    }

    #[test]
    fn defaults() {
        let f = load("", &[]).unwrap();
        assert_eq!(f.tcp.listen.authority(), "0.0.0.0:6969");
        assert_eq!(f.tcp.target.authority(), "127.0.0.1:7979");
        assert_eq!(f.tcp.idle_timeout, Some(Duration::from_secs(600)));
        assert_eq!(f.http.listen.authority(), "0.0.0.0:6969");
        assert_eq!(f.http.target_url(), "http://127.0.0.1:7979");
        assert!(f.http.preserve_host);
        assert!(f.check_both().is_err());
    }

    #[test]
    fn file_values() {
        let yaml = r#"
forwarder_settings:
  listen: {host: 127.0.0.1, port: 7000}
  target: {host: 10.0.0.5, port: 8000}
  idle_timeout: 0
http_forwarder_settings:
  preserve_host: false
  listen: {host: "::1", port: 7001}
  target: {scheme: https, host: proxy.internal}
"#;
        let f = load(yaml, &[]).unwrap();
        assert_eq!(f.tcp.listen.authority(), "127.0.0.1:7000");
        assert_eq!(f.tcp.target.authority(), "10.0.0.5:8000");
        assert_eq!(f.tcp.idle_timeout, None);
        assert_eq!(f.http.listen.authority(), "[::1]:7001");
        assert_eq!(f.http.target_url(), "https://proxy.internal:443");
        assert!(!f.http.preserve_host);
        assert!(f.check_both().is_ok());
    }

    #[test]
    fn env_wins_over_the_file() {
        let yaml = r#"
forwarder_settings:
  listen: {host: 127.0.0.1, port: 7000}
  target: {host: 10.0.0.5, port: 8000}
http_forwarder_settings:
  preserve_host: true
  listen: {port: 7001}
  target: {scheme: http, host: a, port: 1}
"#;
        let f = load(
            yaml,
            &[
                ("FORWARD_LISTEN_HOST", "0.0.0.0"),
                ("FORWARD_LISTEN_PORT", "7100"),
                ("FORWARD_TARGET_HOST", "b"),
                ("FORWARD_TARGET_PORT", "8100"),
                ("HTTP_FORWARD_LISTEN_HOST", "127.0.0.2"),
                ("HTTP_FORWARD_LISTEN_PORT", "7101"),
                ("HTTP_FORWARD_TARGET_SCHEME", "HTTPS"),
                ("HTTP_FORWARD_TARGET_HOST", "c"),
                ("HTTP_FORWARD_TARGET_PORT", "8443"),
                ("HTTP_FORWARD_PRESERVE_HOST", "false"),
            ],
        )
        .unwrap();
        assert_eq!(f.tcp.listen.authority(), "0.0.0.0:7100");
        assert_eq!(f.tcp.target.authority(), "b:8100");
        assert_eq!(f.http.listen.authority(), "127.0.0.2:7101");
        assert_eq!(f.http.target_url(), "https://c:8443");
        assert!(!f.http.preserve_host);
    }

    #[test]
    fn empty_variables_are_unset() {
        let f = load(
            "forwarder_settings: {listen: {port: 7000}}",
            &[("FORWARD_LISTEN_PORT", "")],
        )
        .unwrap();
        assert_eq!(f.tcp.listen.port, 7000);
    }

    #[test]
    fn errors_name_the_key_or_the_variable() {
        let e = load(
            "forwarder_settings: {listen: {prot: 1}, idle_timeout: -1}\nhttp_forwarder_settings: {target: {scheme: ftp}}",
            &[],
        )
        .unwrap_err();
        assert!(
            e.iter().any(|l| l.contains(
                "forwarder_settings.listen.prot: unknown key `prot`; did you mean `port`?"
            )),
            "{e:?}"
        );
        let e = load(
            "forwarder_settings: {idle_timeout: -1}\nhttp_forwarder_settings: {target: {scheme: ftp, host: 'h:80'}}",
            &[
                ("FORWARD_TARGET_PORT", "eighty"),
                ("HTTP_FORWARD_PRESERVE_HOST", "maybe"),
            ],
        )
        .unwrap_err();
        let all = e.join("\n");
        assert!(
            all.contains("forwarder_settings.idle_timeout: must be"),
            "{all}"
        );
        assert!(
            all.contains(
                "http_forwarder_settings.target.scheme: expected http or https, got `ftp`"
            ),
            "{all}"
        );
        assert!(
            all.contains("http_forwarder_settings.target.host: expected a host"),
            "{all}"
        );
        assert!(
            all.contains("FORWARD_TARGET_PORT (overrides forwarder_settings.target.port): expected a port number"),
            "{all}"
        );
        assert!(
            all.contains("HTTP_FORWARD_PRESERVE_HOST (overrides"),
            "{all}"
        );
        let e = load("", &[("HTTP_FORWARD_TARGET_SCHEME", "gopher")]).unwrap_err();
        assert!(
            e[0].starts_with("HTTP_FORWARD_TARGET_SCHEME (overrides "),
            "{e:?}"
        );
    }

    #[test]
    fn client_limits_have_defaults_zero_turns_off_and_bad_values_name_their_key() {
        let f = load("", &[]).unwrap();
        assert_eq!(f.http.header_read_timeout, Some(Duration::from_secs(30)));
        assert_eq!(f.http.body_read_timeout, Some(Duration::from_secs(60)));
        assert_eq!(f.http.response_timeout, Some(DEFAULT_RESPONSE_TIMEOUT));
        assert!(f.http.max_connections >= 16);
        assert!(f.tcp.max_connections >= 16);
        let f = load(
            "forwarder_settings: {max_connections: 3}
http_forwarder_settings: {header_read_timeout: 0, response_timeout: 2, max_connections: 5}",
            &[],
        )
        .unwrap();
        assert_eq!(f.tcp.max_connections, 3);
        assert_eq!(f.http.header_read_timeout, None);
        assert_eq!(f.http.response_timeout, Some(Duration::from_secs(2)));
        assert_eq!(f.http.max_connections, 5);
        let all = load(
            "forwarder_settings: {max_connections: 0}
http_forwarder_settings: {body_read_timeout: -1, response_timeout: .nan}",
            &[],
        )
        .unwrap_err()
        .join("\n");
        for key in [
            "forwarder_settings.max_connections",
            "http_forwarder_settings.body_read_timeout",
            "http_forwarder_settings.response_timeout",
        ] {
            assert!(all.contains(key), "{key}: {all}");
        }
    }

    #[test]
    fn same_port_for_both_is_refused_with_the_variables_to_change() {
        let f = load(
            "forwarder_settings: {listen: {port: 7000}}\nhttp_forwarder_settings: {listen: {host: 127.0.0.1, port: 7000}}",
            &[],
        )
        .unwrap();
        let e = f.check_both().unwrap_err();
        assert!(e.contains("port 7000"), "{e}");
        assert!(e.contains("HTTP_FORWARD_LISTEN_PORT"), "{e}");
        let f = load("", &[("HTTP_FORWARD_LISTEN_PORT", "6970")]).unwrap();
        assert!(f.check_both().is_ok());
    }
}
