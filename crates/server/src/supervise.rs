//! Supervision of the live path: the hub task and, through it, the store's feed.
//!
//! Live updates depend on one task (the hub) fed by one producer (the store's feed task or
//! writer thread). If the producer dies its queue closes, so the hub ends; if the hub
//! panics or ends, nothing else notices by itself: placements still succeed and no client
//! sees them. The watcher here turns either into a failure that cannot be missed:
//! `/readyz` answers 503 at once, the server stops (websockets get 1001 and reconnect to a
//! healthy instance) and [`crate::run`] returns [`crate::RunError::LivePath`], so the
//! process exits non-zero and its restart policy starts a fresh one.

use crate::hub::HubEnd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the rest of the server sees of the watcher.
#[derive(Default)]
pub struct LivePath {
    /// Cancelled when the live path failed.
    failed: CancellationToken,
    /// Why it failed, for the log and for `run`'s error.
    reason: Mutex<Option<String>>,
    /// Set once shutdown closes the store: the feed ending after that is expected.
    ending: AtomicBool,
}

impl LivePath {
    /// Watches the hub task; the returned handle ends when the task does.
    pub fn watch(self: &std::sync::Arc<Self>, hub: JoinHandle<HubEnd>) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let reason = match hub.await {
                Ok(HubEnd::Stopped) => None,
                Ok(HubEnd::FeedEnded) if me.ending.load(Ordering::Acquire) => None,
                Ok(HubEnd::FeedEnded) => Some("the store's feed ended".to_string()),
                Err(e) if e.is_panic() => {
                    let p = e.into_panic();
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    Some(format!("the hub panicked: {msg}"))
                }
                Err(_) => Some("the hub task was cancelled".to_string()),
            };
            if let Some(reason) = reason {
                me.fail(reason);
            }
        })
    }

    /// Records a failure: readiness fails from now on and the server stops.
    pub fn fail(&self, reason: String) {
        tracing::error!(%reason, "live updates stopped; failing readiness and exiting");
        metrics::counter!("rplace_live_path_failures_total").increment(1);
        let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        r.get_or_insert(reason);
        self.failed.cancel();
    }

    /// Whether the live path failed.
    pub fn is_failed(&self) -> bool {
        self.failed.is_cancelled()
    }

    /// Resolves when the live path fails.
    pub async fn failed(&self) {
        self.failed.cancelled().await
    }

    /// Why it failed, if it did.
    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Called before the store closes on shutdown, after which the feed ends by design.
    pub fn expect_end(&self) {
        self.ending.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_panicking_or_ending_hub_is_a_failure_and_a_stop_is_not() {
        let lp = Arc::new(LivePath::default());
        lp.watch(tokio::spawn(async { HubEnd::Stopped }))
            .await
            .unwrap();
        assert!(!lp.is_failed());
        lp.watch(tokio::spawn(async { panic!("boom") }))
            .await
            .unwrap();
        assert!(lp.is_failed());
        assert_eq!(lp.reason().as_deref(), Some("the hub panicked: boom"));

        let lp = Arc::new(LivePath::default());
        lp.watch(tokio::spawn(async { HubEnd::FeedEnded }))
            .await
            .unwrap();
        assert!(lp.is_failed());

        let lp = Arc::new(LivePath::default());
        lp.expect_end();
        lp.watch(tokio::spawn(async { HubEnd::FeedEnded }))
            .await
            .unwrap();
        assert!(!lp.is_failed());
    }
}
