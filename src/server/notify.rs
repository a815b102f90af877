//! systemd's readiness protocol (`Type=notify`, sd_notify(3)): the state
//! changes go to the datagram socket `$NOTIFY_SOCKET` names; without it
//! (not started by systemd) every call does nothing. A send that fails is
//! logged at debug and otherwise ignored: the service manager's view is
//! never worth stopping the proxy for.

use sd_notify::NotifyState;

fn send(what: &'static str, states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, state = what, "sd_notify failed");
    }
}

/// `READY=1`: the port answers (sent once the listener is bound and the
/// serving threads run), and after a reload.
pub fn ready() {
    send("READY", &[NotifyState::Ready]);
}

/// `RELOADING=1` with `MONOTONIC_USEC` (what `Type=notify-reload` and
/// systemd 253+ expect); [`ready`] follows when the reload is over.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send("RELOADING", &[NotifyState::Reloading, now]),
        Err(_) => send("RELOADING", &[NotifyState::Reloading]),
    }
}

/// `STOPPING=1`: shutdown has begun.
pub fn stopping() {
    send("STOPPING", &[NotifyState::Stopping]);
}
