//! Appends, in batches: every message queued while the last transaction
//! ran goes into the next one, so concurrent messages share one commit (and
//! one fsync on the server), as sled's group commit does.
//!
//! A message's `seq` comes from its room's row, raised in the same statement
//! that inserts it: the row's lock orders appends to a room from every node,
//! and a failed statement takes its seq back with it, so seqs stay
//! contiguous. A batch locks its rooms in name order (two nodes never wait
//! on each other in a circle); within a room, messages keep their queue
//! order, so their seqs and their `settled` calls come in that order. The
//! sender hears `Durable` only after COMMIT returned.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};
use tokio_postgres::types::ToSql;
use tokio_util::sync::CancellationToken;

use super::PgStore;
use crate::store::model::{Appended, Message, NewMessage, Outcome, Settled};

/// Raises a room's counter by the number of its messages in the batch
/// (creating the room) and inserts them under the seqs that frees, in one
/// statement per room: `$4` messages, whose columns come as arrays, get
/// `last_seq - $4 + 1 ..= last_seq` in array order.
const APPEND: &str = "
    WITH r AS (
        INSERT INTO rooms (name, created, last_activity, last_seq)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (name) DO UPDATE
        SET last_seq = rooms.last_seq + EXCLUDED.last_seq,
            last_activity = GREATEST(rooms.last_activity, EXCLUDED.last_activity)
        RETURNING last_seq
    )
    INSERT INTO messages (room, seq, user_id, nickname, text, ts)
    SELECT $1, r.last_seq - $4 + m.ord, m.user_id, m.nickname, m.text, m.ts
    FROM r, unnest($5::text[], $6::text[], $7::text[], $8::int8[])
        WITH ORDINALITY AS m(user_id, nickname, text, ts, ord)
    RETURNING seq";

/// A batch that met a deadlock or a serialization failure is tried again
/// this many times (nothing of it was stored).
const RETRIES: usize = 3;

/// How often messages whose fate is unknown are looked for, and the store's
/// connection tried while it is failing.
pub const RECHECK: Duration = Duration::from_secs(1);

/// Something to do in queue order.
pub enum Job {
    Append(NewMessage, Settled),
    /// Answered once every job queued before it is settled.
    Barrier(oneshot::Sender<Outcome>),
}

/// The queue and its one worker.
#[derive(Default)]
pub struct Committer {
    /// How long the first append of a batch waits for others: fewer,
    /// larger transactions (each COMMIT is a WAL flush on the server).
    window: Duration,
    queue: Mutex<Vec<Job>>,
    wake: Notify,
    /// The worker finished (shutdown): nothing queued now would be done.
    stopped: std::sync::atomic::AtomicBool,
}

/// Why a batch was not stored.
enum Failure {
    /// Not stored, and never will be.
    Lost,
    /// The connection went away during COMMIT: perhaps stored, under these seqs.
    Unknown(Vec<u64>),
    /// A deadlock or serialization failure: nothing stored, worth another try.
    Retry,
}

impl Committer {
    pub fn new(window: Duration) -> Self {
        Committer {
            window,
            ..Committer::default()
        }
    }

    /// Queues `job`; after shutdown an append is refused (handed back) and
    /// a barrier answered at once (everything before it was settled).
    pub fn push(&self, job: Job) -> Result<(), Job> {
        let mut queue = self.queue.lock();
        if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
            return match job {
                Job::Barrier(tx) => {
                    let _ = tx.send(Outcome::Durable);
                    Ok(())
                }
                append => Err(append),
            };
        }
        queue.push(job);
        drop(queue);
        self.wake.notify_one();
        Ok(())
    }

    fn take(&self) -> Vec<Job> {
        std::mem::take(&mut *self.queue.lock())
    }

    /// Commits batches until `shutdown`, then what is still queued.
    pub async fn run(self: Arc<Self>, store: PgStore, shutdown: CancellationToken) {
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut jobs = self.take();
            if !jobs.is_empty() {
                if !self.window.is_zero() {
                    tokio::time::sleep(self.window).await;
                    jobs.extend(self.take());
                }
                commit(&store, jobs).await;
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = recheck.tick() => store.recheck().await,
                _ = shutdown.cancelled() => break,
            }
        }
        loop {
            let jobs = {
                let mut queue = self.queue.lock();
                if queue.is_empty() {
                    // Under the queue's lock: nothing slips in after this.
                    self.stopped
                        .store(true, std::sync::atomic::Ordering::Release);
                    break;
                }
                std::mem::take(&mut *queue)
            };
            commit(&store, jobs).await;
        }
    }
}

/// Stores one batch and settles every job of it.
async fn commit(store: &PgStore, jobs: Vec<Job>) {
    let mut appends = Vec::new();
    let mut barriers = Vec::new();
    for job in jobs {
        match job {
            Job::Append(message, settled) => appends.push((message, settled)),
            Job::Barrier(tx) => barriers.push(tx),
        }
    }
    // Stable: a room's messages keep their order.
    appends.sort_by(|a, b| a.0.room.cmp(&b.0.room));
    let messages: Vec<&NewMessage> = appends.iter().map(|(m, _)| m).collect();
    let mut result = insert(store, &messages).await;
    for _ in 0..RETRIES {
        if !matches!(result, Err(Failure::Retry)) {
            break;
        }
        result = insert(store, &messages).await;
    }
    let outcome = match &result {
        Ok(_) => Outcome::Durable,
        Err(Failure::Unknown(_)) => Outcome::Unknown,
        Err(_) => Outcome::Lost,
    };
    match result {
        Ok(seqs) => {
            for ((new, settled), seq) in appends.into_iter().zip(seqs) {
                settled(Appended::Durable(stored(new, seq))).await;
            }
        }
        Err(Failure::Unknown(seqs)) => {
            let mut unsure = Vec::with_capacity(appends.len());
            for ((new, settled), seq) in appends.into_iter().zip(seqs) {
                unsure.push(stored(new, seq));
                settled(Appended::Unknown).await;
            }
            store.unsure(unsure);
        }
        Err(_) => {
            for (_, settled) in appends {
                settled(Appended::Lost).await;
            }
        }
    }
    for barrier in barriers {
        let _ = barrier.send(outcome);
    }
}

fn stored(new: NewMessage, seq: u64) -> Message {
    Message {
        room: new.room,
        seq,
        user: new.user,
        nickname: new.nickname,
        text: new.text,
        ts: new.ts,
    }
}

/// One room's messages of a batch, as the statement's parameters.
struct RoomAppend<'a> {
    room: &'a str,
    created: i64,
    last_activity: i64,
    count: i64,
    users: Vec<&'a str>,
    nicknames: Vec<&'a str>,
    texts: Vec<&'a str>,
    ts: Vec<i64>,
}

impl<'a> RoomAppend<'a> {
    fn new(messages: &[&'a NewMessage]) -> Self {
        RoomAppend {
            room: messages.first().map_or("", |m| m.room.as_str()),
            created: messages.first().map_or(0, |m| m.ts),
            last_activity: messages.iter().map(|m| m.ts).max().unwrap_or(0),
            count: messages.len() as i64,
            users: messages.iter().map(|m| m.user.as_str()).collect(),
            nicknames: messages.iter().map(|m| m.nickname.as_str()).collect(),
            texts: messages.iter().map(|m| m.text.as_str()).collect(),
            ts: messages.iter().map(|m| m.ts).collect(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 8] {
        [
            &self.room,
            &self.created,
            &self.last_activity,
            &self.count,
            &self.users,
            &self.nicknames,
            &self.texts,
            &self.ts,
        ]
    }
}

/// One transaction with every message of the batch; their seqs, in order.
async fn insert(store: &PgStore, batch: &[&NewMessage]) -> Result<Vec<u64>, Failure> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let failed = |e: tokio_postgres::Error| {
        let retry = e.code().is_some_and(|c| {
            *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                || *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
        });
        store.observe(&e);
        if retry { Failure::Retry } else { Failure::Lost }
    };
    let mut client = match store.client().await {
        Ok(c) => c,
        Err(_) => return Err(Failure::Lost),
    };
    let tx = client.transaction().await.map_err(failed)?;
    let statement = tx.prepare_cached(APPEND).await.map_err(failed)?;
    // One statement per room (the batch is sorted by room), sent one after
    // the other without waiting (tokio-postgres pipelines the queries of one
    // connection), executed in that order.
    let rooms: Vec<RoomAppend> = batch
        .chunk_by(|a, b| a.room == b.room)
        .map(RoomAppend::new)
        .collect();
    let params: Vec<[&(dyn ToSql + Sync); 8]> = rooms.iter().map(RoomAppend::params).collect();
    let queries = params.iter().map(|p| tx.query(&statement, p));
    let answers = futures_util::future::try_join_all(queries)
        .await
        .map_err(failed)?;
    let mut seqs: Vec<u64> = Vec::with_capacity(batch.len());
    for (rows, room) in answers.iter().zip(&rooms) {
        // RETURNING has no order: the seqs are a run, given in array order.
        let mut run: Vec<u64> = rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect();
        run.sort_unstable();
        if run.len() != room.count as usize {
            tracing::error!(
                room = room.room,
                "an append stored {} of {} messages; the batch is rolled back",
                run.len(),
                room.count
            );
            return Err(Failure::Lost);
        }
        seqs.extend(run);
    }
    match tx.commit().await {
        Ok(()) => {
            store.answered();
            Ok(seqs)
        }
        // The server answered: it rolled back.
        Err(e) if e.code().is_some() => Err(failed(e)),
        Err(e) => {
            store.observe(&e);
            Err(Failure::Unknown(seqs))
        }
    }
}
