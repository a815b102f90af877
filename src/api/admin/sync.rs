//! Runtime models shared through PostgreSQL: this instance follows the
//! store and swaps in the snapshot another instance's change made. Here,
//! beside the admin API that makes the same swap, because it changes the
//! proxy's whole state ([`AppState`]); the store itself
//! ([`crate::model_store`]) only reads and writes versions.

use sqlx::postgres::PgListener;

use crate::api::AppState;
use crate::model_store::{ModelStore, POLL_EVERY, StoreError};

/// Follows the store: on a notification (or every [`POLL_EVERY`]), reads
/// the version; when it moved, rebuilds the snapshot with the stored
/// overlay and swaps it in. Ends when the proxy's state is dropped.
pub fn spawn_sync(state: std::sync::Weak<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut listener: Option<PgListener> = None;
        loop {
            let Some(s) = state.upgrade() else { return };
            let Some(store) = s.model_store.clone() else {
                return;
            };
            drop(s);
            if listener.is_none() {
                match store.listen().await {
                    Ok(l) => listener = Some(l),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for runtime model changes; polling")
                    }
                }
            }
            match &mut listener {
                Some(l) => match tokio::time::timeout(POLL_EVERY, l.try_recv()).await {
                    Ok(Ok(Some(_))) | Err(_) => {}
                    // The connection dropped: notifications may be lost, so
                    // read now and listen again.
                    Ok(Ok(None)) | Ok(Err(_)) => listener = None,
                },
                None => tokio::time::sleep(POLL_EVERY).await,
            }
            let Some(s) = state.upgrade() else { return };
            if let Err(e) = follow(&s, &store).await {
                tracing::warn!(error = %e, "cannot follow runtime model changes");
            }
        }
    })
}

/// Applies the stored overlay when its version differs from ours.
async fn follow(state: &AppState, store: &ModelStore) -> Result<(), StoreError> {
    use std::sync::atomic::Ordering;
    let Some(version) = store.version().await? else {
        return Ok(());
    };
    if version == state.model_version.load(Ordering::SeqCst) {
        return Ok(());
    }
    let _guard = state.admin_lock.lock().await;
    let Some((version, overlay)) = store.load().await? else {
        return Ok(());
    };
    if version == state.model_version.load(Ordering::SeqCst) {
        return Ok(());
    }
    let current = state.live.load_full();
    let config = crate::live::revise::rebuild(&current.config, &overlay)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let changes = crate::live::revise::diff(&current.config, &config);
    state.log.update_secrets(&config);
    state.thinking.retain_configured(&config);
    state
        .live
        .store(std::sync::Arc::new(crate::live::Live::new(config)));
    state.model_version.store(version, Ordering::SeqCst);
    tracing::info!(version, %changes, "runtime models changed on another instance");
    Ok(())
}
