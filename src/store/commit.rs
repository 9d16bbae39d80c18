//! Group commit: one fsync for every write queued while the previous one ran.
//!
//! Writers queue an [`AfterFlush`] callback right after their (in-memory) sled
//! write. The committer takes the whole queue, flushes once, and hands the batch
//! to a delivery task that runs the callbacks in queue order, so the next flush
//! overlaps the delivery of the previous batch. An optional window lets a batch
//! wait a moment for more writers: fewer fsyncs (and far less CPU per message
//! under load) for a bounded extra latency.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Called once the writes queued before it are durable (`true`) or the flush failed (`false`).
pub type AfterFlush = Box<dyn FnOnce(bool) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

#[derive(Default)]
pub struct Committer {
    queue: Mutex<Queue>,
    wake: Notify,
    /// How long a batch may wait for company before its flush.
    window: Duration,
}

#[derive(Default)]
struct Queue {
    pending: Vec<AfterFlush>,
    /// Set when the committer has stopped: later writers are told at once.
    closed: bool,
}

impl Committer {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            ..Self::default()
        }
    }

    pub fn push(&self, after: AfterFlush) {
        let mut queue = self.queue.lock();
        if queue.closed {
            drop(queue);
            tokio::spawn(after(false));
            return;
        }
        queue.pending.push(after);
        drop(queue);
        self.wake.notify_one();
    }

    pub async fn run(
        self: Arc<Self>,
        db: sled::Db,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel::<(bool, Vec<AfterFlush>)>();
        let delivery = tokio::spawn(async move {
            while let Some((ok, batch)) = rx.recv().await {
                for after in batch {
                    after(ok).await;
                }
            }
        });
        loop {
            let mut stopping = tokio::select! {
                _ = self.wake.notified() => false,
                _ = shutdown.cancelled() => true,
            };
            if !stopping && !self.window.is_zero() {
                // Let concurrent writers join this batch: one fsync for all of them.
                stopping = tokio::select! {
                    _ = tokio::time::sleep(self.window) => false,
                    _ = shutdown.cancelled() => true,
                };
            }
            let batch = {
                let mut queue = self.queue.lock();
                queue.closed = stopping;
                std::mem::take(&mut queue.pending)
            };
            if !batch.is_empty() || stopping {
                let started = Instant::now();
                let result = db.flush_async().await;
                let ok = result.is_ok();
                if let Err(e) = &result {
                    tracing::error!(error = %e, "store flush failed; acknowledgements withheld");
                }
                metrics.observe_flush(started.elapsed(), ok);
                if !batch.is_empty() && tx.send((ok, batch)).is_err() {
                    break;
                }
            }
            if stopping {
                break;
            }
        }
        drop(tx);
        let _ = delivery.await;
    }
}
