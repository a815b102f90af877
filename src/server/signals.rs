//! The signals a running proxy or forwarder waits on: SIGINT/SIGTERM stop
//! it, SIGHUP (registered ahead of serving) reloads the proxy's config.

/// The signals a running proxy or forwarder acts on besides SIGINT and
/// SIGTERM: SIGHUP, whose default action would end the process. Register
/// them before serving, so that a SIGHUP sent as soon as the port answers
/// (systemd's `ExecReload`) never finds the default action.
pub struct Signals {
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Registers the handlers (inside a Tokio runtime).
    pub fn install() -> Signals {
        #[cfg(unix)]
        {
            let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot handle SIGHUP: it will stop the process");
                    None
                }
            };
            Signals { hangup }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Resolves at the next SIGHUP (never where there is none).
    pub async fn hangup(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.hangup
            && s.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await
    }
}

/// Resolves on SIGINT (ctrl-c) or SIGTERM.
pub(crate) async fn wait_for_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
