//! Background tasks that must not silently disappear: a task that panics
//! (or returns when it should run forever) is reported, an error line and
//! `yallmp_task_restarts_total{task}`, and started again after a pause.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;

/// Counter, by `task`: background tasks started again after they failed.
pub(crate) const TASK_RESTARTS: &str = "yallmp_task_restarts_total";

/// The pause before a failed task is started again.
const RESTART_AFTER: Duration = Duration::from_secs(1);

/// Runs `make()`'s future as a task, and whenever it ends (a panic, or a
/// return: both mean it stopped doing its work) reports it and runs a new
/// one. Aborting the returned handle stops the supervisor and its task.
pub(crate) fn supervise<F, Fut>(task: &'static str, make: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    supervise_with(task, RESTART_AFTER, make)
}

fn supervise_with<F, Fut>(task: &'static str, pause: Duration, make: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            // Its own task, so a panic ends only it; aborting the supervisor
            // drops this handle's guard below, which aborts the inner task.
            let mut inner = AbortOnDrop(tokio::spawn(make()));
            let why = match inner.await_inner().await {
                Ok(()) => "it returned".to_string(),
                Err(e) if e.is_panic() => format!("it panicked: {}", panic_text(e.into_panic())),
                Err(e) => format!("{e}"),
            };
            tracing::error!(task, "background task stopped ({why}); starting it again");
            metrics::counter!(TASK_RESTARTS, "task" => task).increment(1);
            tokio::time::sleep(pause).await;
        }
    })
}

/// A task handle that aborts the task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl AbortOnDrop {
    async fn await_inner(&mut self) -> Result<(), tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_task_that_panics_is_started_again() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let handle = supervise_with("test", Duration::from_millis(10), move || {
            let runs = counted.clone();
            async move {
                let n = runs.fetch_add(1, Ordering::SeqCst);
                if n < 2 {
                    panic!("run {n} fails");
                }
                std::future::pending::<()>().await;
            }
        });
        for _ in 0..500 {
            if runs.load(Ordering::SeqCst) >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        handle.abort();
        let _ = handle.await;
    }

    #[tokio::test]
    async fn aborting_the_supervisor_stops_its_task() {
        let alive = Arc::new(AtomicUsize::new(0));
        let a = alive.clone();
        let handle = supervise_with("test", Duration::from_millis(10), move || {
            let a = a.clone();
            async move {
                struct Alive(Arc<AtomicUsize>);
                impl Drop for Alive {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                a.fetch_add(1, Ordering::SeqCst);
                let _alive = Alive(a);
                std::future::pending::<()>().await;
            }
        });
        while alive.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        handle.abort();
        let _ = handle.await;
        for _ in 0..200 {
            if alive.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(alive.load(Ordering::SeqCst), 0);
    }
}
