//! The maintenance task: active health checks of the backends that ask for
//! them (`model_params.health_check`), the `yallmp_backend_state` gauges,
//! and forgetting the state of backends a reload removed.
//!
//! A check is `GET api_base + path` (default `/models`) with the backend's
//! own `api_key` as a real request would send it (and nothing else: no
//! client credentials). A 2xx answer within the timeout passes; anything
//! else takes the backend out of rotation until a check passes again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{ApiType, Backend};

use super::state::Registry;

/// How often the task looks at what is due.
const TICK: Duration = Duration::from_millis(250);
/// Gauges are refreshed (and removed backends forgotten) this often.
const HOUSEKEEPING_EVERY: u32 = 4;

/// Runs until `backends` answers `None` (the proxy is gone). `backends`
/// gives the backends of the current configuration.
pub fn spawn<F>(
    registry: Arc<Registry>,
    client: reqwest::Client,
    backends: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Option<Vec<Arc<Backend>>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u32 = 0;
        loop {
            tick.tick().await;
            let Some(list) = backends() else { return };
            let now = Instant::now();
            for b in &list {
                let Some(check) = &b.routing.health_check else {
                    continue;
                };
                // Bedrock's requests are signed and Vertex AI needs an access
                // token; the checker's plain GET can do neither: no active
                // check (passive cooldowns still apply).
                if matches!(
                    b.api_type,
                    ApiType::Stub | ApiType::Bedrock | ApiType::Vertex
                ) {
                    continue;
                }
                let state = registry.get(b);
                if state.checking.load(std::sync::atomic::Ordering::Relaxed)
                    || !state.check_due(now, check.interval)
                {
                    continue;
                }
                state
                    .checking
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                let (client, b) = (client.clone(), b.clone());
                tokio::spawn(async move {
                    let verdict = probe(&client, &b).await;
                    state.set_check_result(verdict.err());
                    state
                        .checking
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                });
            }
            if n.is_multiple_of(HOUSEKEEPING_EVERY) {
                registry.retain(&list);
                for b in &list {
                    let state = registry.get(b);
                    state.set_state_gauge(state.health(now));
                }
            }
            n = n.wrapping_add(1);
        }
    })
}

/// One check: `Ok` when the backend answered 2xx in time.
pub async fn probe(client: &reqwest::Client, b: &Backend) -> Result<(), String> {
    let Some(check) = &b.routing.health_check else {
        return Ok(());
    };
    let anthropic = b.api_type == ApiType::Anthropic;
    // Anthropic's paths live under /v1 (`api_base` is given without it).
    let url = if anthropic {
        let base = b.api_base.strip_suffix("/v1").unwrap_or(&b.api_base);
        format!("{base}/v1{}", check.path)
    } else {
        b.api_url(&check.path)
    };
    let mut req = client.get(&url).timeout(check.timeout);
    if anthropic {
        req = req.header("anthropic-version", crate::protocol::anthropic::VERSION);
    }
    if let Some((name, value)) = crate::upstream::key_header(b) {
        req = req.header(name, value);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("GET {} answered {}", check.path, r.status())),
        Err(e) if e.is_timeout() => Err(format!(
            "GET {} took longer than {:?}",
            check.path, check.timeout
        )),
        // Without the URL: it is known, and could hold credentials.
        Err(e) => Err(format!(
            "GET {} failed: {}",
            check.path,
            crate::upstream::error_chain(&e.without_url())
        )),
    }
}
