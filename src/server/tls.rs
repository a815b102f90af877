//! TLS on the listener (`proxy_settings.server.tls`): rustls with the ring
//! provider, HTTP/2 and HTTP/1.1 offered by ALPN, and the certificate
//! reloaded without a restart. One `ServerConfig` lives as long as the
//! server; its certificate resolver hands out whatever certificate was last
//! loaded, so a reload is one atomic swap that new handshakes see and open
//! connections never notice.
//!
//! A reload happens when the files' modification times (or sizes) change,
//! polled every [`POLL`] in the background, and on SIGHUP. A reload that
//! fails (a file half written, a key that does not match) keeps the old
//! certificate and logs a warning; the next change tries again.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::task::JoinHandle;

use crate::config::TlsFiles;

/// How often the files are checked for a change.
pub const POLL: Duration = Duration::from_secs(5);

/// How long a client has for the TLS handshake after connecting.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate {path}: {message}")]
    Cert { path: String, message: String },
    #[error("cannot read the private key {path}: {message}")]
    Key { path: String, message: String },
    #[error("the private key {key} does not belong to the certificate {cert}")]
    Mismatch { cert: String, key: String },
    #[error("TLS settings: {0}")]
    Config(String),
}

/// The listener's TLS: the acceptor every connection's handshake uses and
/// the certificate behind it.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    inner: Arc<Inner>,
}

struct Inner {
    files: TlsFiles,
    resolver: Arc<Current>,
    /// The files' stamps when the certificate in use was read.
    stamp: Mutex<Option<Stamp>>,
}

/// A file's modification time and length: what the poll compares.
type Stamp = [(Option<SystemTime>, u64); 2];

/// Hands out the certificate last loaded.
#[derive(Debug)]
struct Current(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

impl Tls {
    /// Reads the files and builds the acceptor (fails when they do not
    /// load: the server does not start).
    pub fn load(files: &TlsFiles) -> Result<Tls, TlsError> {
        let stamp = stamp(files);
        let key = read(files)?;
        let resolver = Arc::new(Current(ArcSwap::from_pointee(key)));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            inner: Arc::new(Inner {
                files: files.clone(),
                resolver,
                stamp: Mutex::new(Some(stamp)),
            }),
        })
    }

    /// Reads the files again if they changed since the certificate in use
    /// was read (always, with `force`). True when a new certificate is in
    /// use; a failure is logged and the old one kept.
    pub fn reload(&self, force: bool) -> bool {
        let files = &self.inner.files;
        let now = stamp(files);
        {
            let Ok(mut last) = self.inner.stamp.lock() else {
                return false;
            };
            if !force && last.as_ref() == Some(&now) {
                return false;
            }
            // Tried once per change: a broken file is not retried (and
            // warned about) every poll, only when it changes again.
            *last = Some(now);
        }
        match read(files) {
            Ok(key) => {
                self.inner.resolver.0.store(Arc::new(key));
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate not reloaded; still serving the previous one");
                false
            }
        }
    }

    /// Polls the files every [`POLL`] on the current runtime; the task ends
    /// when the last [`Tls`] is gone.
    pub fn spawn_watch(&self) -> JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        let acceptor = self.acceptor.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let tls = Tls {
                    acceptor: acceptor.clone(),
                    inner,
                };
                // Reading two small files: off the runtime's threads.
                let _ = tokio::task::spawn_blocking(move || tls.reload(false)).await;
            }
        })
    }
}

fn stamp(files: &TlsFiles) -> Stamp {
    let one = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    };
    [one(&files.cert), one(&files.key)]
}

/// The certificate chain and its key, checked to belong together.
fn read(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let cert_path = files.cert.display().to_string();
    let key_path = files.key.display().to_string();
    let cert_err = |message: String| TlsError::Cert {
        path: cert_path.clone(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_err("no CERTIFICATE block in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Key {
        path: key_path.clone(),
        message: e.to_string(),
    })?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError::Key {
            path: key_path.clone(),
            message: e.to_string(),
        })?;
    let certified = CertifiedKey::new(certs, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        // A key whose public half cannot be derived cannot be checked.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(_) => Err(TlsError::Mismatch {
            cert: cert_path,
            key: key_path,
        }),
    }
}
