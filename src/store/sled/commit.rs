//! Group commit: one fsync for every write queued while the previous one ran,
//! and recovery when a flush fails.
//!
//! Writers queue an [`AfterFlush`] callback right after their (in-memory) sled
//! write. The committer takes the whole queue, flushes once, and hands the batch
//! to a delivery task that runs the callbacks in queue order, so the next flush
//! overlaps the delivery of the previous batch. An optional window lets a batch
//! wait a moment for more writers: fewer fsyncs (and far less CPU per message
//! under load) for a bounded extra latency.
//!
//! When a flush fails (a full disk), sled refuses every later write until the
//! database is opened again, and some writes of the failed batch may be on
//! disk while others are not. The committer then marks the store as failing
//! (writes are refused at once, `/healthz` says why), reopens the database as
//! soon as there is room for it, and asks the disk what became of each write
//! of the failed batch: [`Outcome::Durable`] if it is there (now synced),
//! [`Outcome::Lost`] if not (and it never will be: the memory that held it is
//! gone). Callbacks still waiting after [`ANSWER_WITHIN`] get
//! [`Outcome::Unknown`]; their writes found on disk later are announced on the
//! store's late channel.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Open, SledStore};
use crate::store::model::Message;
pub use crate::store::model::Outcome;

/// Called once the writes queued before it are durable, lost, or unknown.
pub type AfterFlush = Box<dyn FnOnce(Outcome) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Looks for a write on disk after a failed flush; returns the message it
/// wrote when there is one to announce late.
pub type Check = Box<dyn Fn(&Open) -> Option<Option<Message>> + Send>;

/// How long callbacks of a failed flush may wait for the store to reopen
/// before they are answered [`Outcome::Unknown`] (clients time out at 10 s).
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// How often a failed store tries to reopen.
const RETRY: Duration = Duration::from_millis(500);

/// A queued callback and, for writes that can be looked for, how.
pub struct Pending {
    pub after: AfterFlush,
    pub check: Option<Check>,
}

#[derive(Default)]
pub struct Committer {
    queue: Mutex<Queue>,
    wake: Notify,
    /// How long a batch may wait for company before its flush.
    window: Duration,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
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

    /// Wakes the committer (after a failed write: its flush fails too, and
    /// recovery starts).
    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    pub fn push(&self, item: Pending) {
        let mut queue = self.queue.lock();
        if queue.closed {
            drop(queue);
            tokio::spawn((item.after)(Outcome::Unknown));
            return;
        }
        queue.pending.push(item);
        drop(queue);
        self.wake.notify_one();
    }

    pub async fn run(self: Arc<Self>, store: SledStore, shutdown: CancellationToken) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<(AfterFlush, Outcome)>>();
        let delivery = tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                for (after, outcome) in batch {
                    after(outcome).await;
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
            if batch.is_empty() && !stopping && store.inner.health.report().status != "failing" {
                continue;
            }
            let started = Instant::now();
            let result = store.flush_db().await;
            store
                .metrics()
                .observe_flush(started.elapsed(), result.is_ok());
            match result {
                Ok(()) => {
                    store.recovered();
                    let done = batch
                        .into_iter()
                        .map(|p| (p.after, Outcome::Durable))
                        .collect::<Vec<_>>();
                    if !done.is_empty() && tx.send(done).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "store flush failed; writes are refused until the store reopens");
                    store.failed(&e);
                    self.recover(&store, batch, &tx, &shutdown).await;
                }
            }
            if stopping {
                break;
            }
        }
        drop(tx);
        let _ = delivery.await;
    }

    /// Reopens the store after a failed flush and settles the failed batch.
    async fn recover(
        &self,
        store: &SledStore,
        batch: Vec<Pending>,
        tx: &mpsc::UnboundedSender<Vec<(AfterFlush, Outcome)>>,
        shutdown: &CancellationToken,
    ) {
        let started = Instant::now();
        let mut waiting: Vec<(Option<AfterFlush>, Option<Check>)> = batch
            .into_iter()
            .map(|p| (Some(p.after), p.check))
            .collect();
        loop {
            if started.elapsed() >= ANSWER_WITHIN {
                answer_all(&mut waiting, Outcome::Unknown, tx);
            }
            if store.room_to_reopen() {
                match store.reopen().await {
                    Ok(()) => {
                        let mut answers = Vec::new();
                        let mut late = Vec::new();
                        store.with_open(|open| {
                            for (after, check) in waiting.drain(..) {
                                let found = check.as_ref().and_then(|c| c(open));
                                let outcome = match &found {
                                    Some(_) => Outcome::Durable,
                                    None => Outcome::Lost,
                                };
                                match after {
                                    Some(after) => answers.push((after, outcome)),
                                    None => {
                                        if let Some(Some(message)) = found {
                                            late.push(message);
                                        }
                                    }
                                }
                            }
                        });
                        if !answers.is_empty() {
                            let _ = tx.send(answers);
                        }
                        for message in late {
                            store.announce_late(message);
                        }
                        // Only now: a new write could otherwise take the seq
                        // of a lost one before that was settled.
                        store.recovered();
                        tracing::info!("the store reopened; writes resume");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the store cannot reopen yet");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                _ = shutdown.cancelled() => {
                    answer_all(&mut waiting, Outcome::Unknown, tx);
                    return;
                }
            }
        }
    }
}

/// Answers every callback that has not been answered yet.
fn answer_all(
    waiting: &mut [(Option<AfterFlush>, Option<Check>)],
    outcome: Outcome,
    tx: &mpsc::UnboundedSender<Vec<(AfterFlush, Outcome)>>,
) {
    let answers: Vec<_> = waiting
        .iter_mut()
        .filter_map(|(after, _)| after.take().map(|a| (a, outcome)))
        .collect();
    if !answers.is_empty() {
        let _ = tx.send(answers);
    }
}
