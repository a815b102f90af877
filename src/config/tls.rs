//! `proxy_settings.server.tls`: the listener's certificate chain and
//! private key (PEM files). Relative paths are read from the config file's
//! directory. The files themselves are read when the server starts (and
//! again whenever they change): see `server::tls`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::errors::Errors;

/// `proxy_settings.server.tls` as written.
#[derive(Debug, Default, Deserialize)]
pub struct RawTls {
    /// The certificate chain, leaf first (PEM).
    pub cert: Option<String>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<String>,
}

/// Where the listener's certificate and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Both files named (a section with neither is an error too: TLS asked for
/// but not set up).
pub(super) fn resolve(
    raw: Option<RawTls>,
    config: Option<&Path>,
    errors: &mut Errors,
) -> Option<TlsFiles> {
    let raw = raw?;
    let base = config.and_then(Path::parent);
    let mut path = |v: Option<String>, key: &str| match v.map(|s| s.trim().to_string()) {
        Some(s) if !s.is_empty() => {
            let p = PathBuf::from(s);
            Some(match base {
                Some(b) if p.is_relative() => b.join(p),
                _ => p,
            })
        }
        _ => {
            errors.at(
                format!("proxy_settings.server.tls.{key}"),
                "a PEM file is required when `tls` is set",
            );
            None
        }
    };
    let cert = path(raw.cert, "cert");
    let key = path(raw.key, "key");
    Some(TlsFiles {
        cert: cert?,
        key: key?,
    })
}
