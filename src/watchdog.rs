//! Notices when the server's async runtime stops running tasks on time.
//!
//! Every request, socket and timer of the web side shares a few worker
//! threads; code that blocks one of them (a slow disk under a synchronous
//! call, a lock held across heavy work) delays everything else, and so does
//! a machine whose CPU other programs take (measured in the browser suite:
//! Chromium raising its own priority starved the server 2.7 s). Clients
//! then take a healthy server for a dead one (their `alive` check gives up
//! after 1.5 s, or 6 s while their call's media still arrives). A task
//! that wakes every [`TICK`] measures how late it woke; a wake-up [`STALL`]
//! late or more is counted
//! (`noom_runtime_stalls_total`, `noom_runtime_stall_seconds_total`) and
//! logged, so an operator (and a failing test) sees that it happened.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How often the watchdog wakes.
const TICK: Duration = Duration::from_millis(100);
/// A wake-up this late is a stall.
pub const STALL: Duration = Duration::from_millis(500);

/// Runs until `shutdown`.
pub async fn run(metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.cancelled() => return,
        }
        let now = Instant::now();
        let late = now.saturating_duration_since(last).saturating_sub(TICK);
        last = now;
        if late >= STALL {
            Metrics::inc(&metrics.runtime_stalls);
            metrics
                .runtime_stall_ms
                .fetch_add(late.as_millis() as u64, Ordering::Relaxed);
            tracing::warn!(
                late_ms = late.as_millis() as u64,
                "the server's runtime stalled: a timer fired this late (a blocked worker, or no CPU for the server; clients may take it for dead)"
            );
        }
    }
}
