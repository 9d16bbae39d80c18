//! The sled engine: the store in one embedded database in the data directory.
//!
//! Writes go to sled's in-memory log at once; [`commit::Committer`] makes them
//! durable in groups, so that a chat message is settled durable only after the
//! fsync that covers it, and concurrent messages share one fsync.
//!
//! The engine also survives its disk filling up without a restart: writes are
//! refused while free space is below `store.min_free_mb`, and if a flush fails
//! anyway, the committer reopens the database once there is room and settles
//! every write of the failed batch against what is on disk (`commit.rs`,
//! `health.rs`). Reads keep working meanwhile.
//!
//! sled works in memory for point reads and writes (microseconds), so those
//! run inline in the async methods; scans and bulk deletions run on the
//! blocking pool.

mod commit;
mod health;
mod messages;
mod open;
mod retention;
mod rooms;
mod sessions;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::model::{
    Appended, HistoryQuery, Message, Moderation, NewMessage, Outcome, Retention, RoomMeta, Session,
    SessionKey, Settled, StoreHealth, StoreOptions, Verified,
};
use super::{Backend, StoreError};
use crate::metrics::Metrics;
use open::open_db;

/// Name of the database folder inside the data directory.
pub const DB_DIR: &str = "noom.sled";
/// Sessions deleted per expiry pass at most.
const EXPIRE_BATCH: usize = 10_000;

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io) => StoreError::Io(io),
            sled::Error::Corruption { at, .. } => StoreError::Corrupt {
                tree: "database",
                reason: match at {
                    Some(at) => format!("corrupt data at {at}"),
                    None => "a corrupt snapshot or log".into(),
                },
            },
            other => StoreError::Engine(other.to_string()),
        }
    }
}

impl StoreError {
    /// True for errors that say the disk is full (sled drops the errno, not the kind).
    fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Io(e) => e.kind() == std::io::ErrorKind::StorageFull,
            StoreError::DiskFull { .. } => true,
            _ => false,
        }
    }

    /// True for errors that mean the data read was damaged.
    fn is_damage(&self) -> bool {
        matches!(self, StoreError::Corrupt { .. })
    }
}

/// The open database: its trees and the room index built from them.
pub struct Open {
    db: sled::Db,
    sessions: sessions::SessionTrees,
    rooms: rooms::Rooms,
}

/// The sled engine; cheap to clone.
#[derive(Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    options: StoreOptions,
    metrics: Arc<Metrics>,
    /// `None` only while the database is being reopened.
    open: RwLock<Option<Open>>,
    committer: Arc<commit::Committer>,
    health: health::Health,
    /// Messages found stored after their sender was told `Unknown`.
    late: Mutex<Option<mpsc::UnboundedSender<Message>>>,
}

impl SledStore {
    /// Opens (or creates) the database in `data_dir` and checks it: the
    /// schema record and every room's newest message must be readable. Reads
    /// only the room index, never the history, so start-up time does not grow
    /// with the number of messages.
    pub fn open(
        data_dir: &Path,
        options: &StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<SledStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let health = health::Health::new(data_dir, options.min_free_bytes);
        let (open, damaged) = open_db(data_dir, options)?;
        for room in damaged {
            health.damaged(format!("newest message of room `{room}`"));
        }
        Ok(SledStore {
            inner: Arc::new(Inner {
                dir: data_dir.to_path_buf(),
                options: options.clone(),
                metrics,
                open: RwLock::new(Some(open)),
                committer: Arc::new(commit::Committer::new(options.commit_window)),
                health,
                late: Mutex::new(None),
            }),
        })
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    fn announce_late(&self, message: Message) {
        if let Some(tx) = &*self.inner.late.lock() {
            let _ = tx.send(message);
        }
    }

    /// Runs `f` on the open database; read errors that mean damaged data are
    /// recorded (with `place`, the keys involved) for `/healthz` and the log.
    fn read<T>(
        &self,
        place: impl FnOnce() -> String,
        f: impl FnOnce(&Open) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self.inner.open.read();
        let Some(open) = guard.as_ref() else {
            return Err(StoreError::Unavailable {
                reason: "the database is reopening".into(),
            });
        };
        let result = f(open);
        if let Err(e) = &result
            && e.is_damage()
        {
            self.inner.health.damaged(format!("{} ({e})", place()));
        }
        result
    }

    /// Like [`SledStore::read`], for operations that write: refused at once
    /// while the disk is (nearly) full or the store is failing. An I/O error
    /// from the database marks the store failing (sled refuses every later
    /// write until it is reopened) and wakes the committer, which reopens it.
    fn write<T>(
        &self,
        place: impl FnOnce() -> String,
        f: impl FnOnce(&Open) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.inner.health.writable()?;
        let result = self.read(place, f);
        if let Err(e) = &result
            && (e.is_disk_full() || matches!(e, StoreError::Io(_)))
        {
            self.failed(e);
            self.inner.committer.nudge();
        }
        result
    }

    /// Runs `f` on the blocking pool (scans and bulk deletions).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SledStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on the open database, if it is open.
    pub(crate) fn with_open(&self, f: impl FnOnce(&Open)) {
        if let Some(open) = self.inner.open.read().as_ref() {
            f(open);
        }
    }

    /// Marks the store as failing after a write error: writes are refused
    /// until the committer has reopened it.
    pub(crate) fn failed(&self, e: &StoreError) {
        let reason = match e {
            StoreError::Io(io) => io.to_string(),
            other => other.to_string(),
        };
        self.inner.health.fail(reason);
    }

    pub(crate) fn room_to_reopen(&self) -> bool {
        self.inner.health.room_to_reopen()
    }

    /// Drops the database and opens it again (the only way sled takes a
    /// write error back), then syncs what it recovered.
    pub(crate) async fn reopen(&self) -> Result<(), StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut slot = store.inner.open.write();
            // Every handle on the database lives in `Open`: dropping it
            // releases the file lock (sled's helper threads may hold it a
            // few ms longer: `open_db` waits for them).
            drop(slot.take());
            let (open, damaged) = open_db(&store.inner.dir, &store.inner.options)?;
            for room in damaged {
                store
                    .inner
                    .health
                    .damaged(format!("newest message of room `{room}`"));
            }
            open.db.flush()?;
            // What recovery read back may sit in the page cache only.
            if let Ok(file) = std::fs::File::open(store.inner.dir.join(DB_DIR).join("db")) {
                file.sync_all().map_err(StoreError::Io)?;
            }
            *slot = Some(open);
            Ok::<_, StoreError>(())
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Writes are accepted again (after a reopen, or a flush that worked).
    pub(crate) fn recovered(&self) {
        self.inner.health.recovered();
    }

    /// Flushes the database (the committer's fsync).
    pub(crate) async fn flush_db(&self) -> Result<(), StoreError> {
        let db = self.inner.open.read().as_ref().map(|o| o.db.clone());
        match db {
            Some(db) => {
                db.flush_async().await?;
                Ok(())
            }
            None => Err(StoreError::Unavailable {
                reason: "the database is reopening".into(),
            }),
        }
    }

    /// Queues `after` behind every write made so far.
    fn after_writes(&self, after: commit::AfterFlush, check: Option<commit::Check>) {
        self.inner.committer.push(commit::Pending { after, check });
    }
}

#[async_trait::async_trait]
impl Backend for SledStore {
    async fn run(&self, shutdown: CancellationToken) {
        self.inner
            .committer
            .clone()
            .run(self.clone(), shutdown)
            .await;
    }

    fn health(&self) -> StoreHealth {
        self.inner.health.report()
    }

    fn late_messages(&self) -> mpsc::UnboundedReceiver<Message> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.inner.late.lock() = Some(tx);
        rx
    }

    async fn durable(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.after_writes(
            Box::new(move |outcome| {
                let _ = tx.send(outcome);
                Box::pin(async {})
            }),
            None,
        );
        match rx.await {
            Ok(Outcome::Durable) => Ok(()),
            Ok(_) => Err(StoreError::Unavailable {
                reason: self.health().detail,
            }),
            Err(_) => Err(StoreError::Closed),
        }
    }

    async fn flush(&self) -> Result<(), StoreError> {
        if let Err(e) = self.inner.health.writable()
            && !matches!(e, StoreError::DiskFull { .. })
        {
            return Err(e);
        }
        self.flush_db().await
    }

    /// Each unreadable place is named; a room's scan stops at its first
    /// damaged record (sled's iterators do not move past an error).
    async fn verify(&self) -> Result<Verified, StoreError> {
        self.blocking(|s| {
            s.read(String::new, |o| {
                let mut v = Verified::default();
                for item in o.sessions.tree().iter() {
                    match item {
                        Ok(_) => v.sessions += 1,
                        Err(e) => {
                            v.damaged
                                .push(format!("sessions, after {} records ({e})", v.sessions));
                            break;
                        }
                    }
                }
                for room in o.rooms.all() {
                    v.rooms += 1;
                    let (n, damage) = o.rooms.scan(&room.name);
                    v.messages += n;
                    if let Some(place) = damage {
                        v.damaged.push(place);
                    }
                }
                Ok(v)
            })
        })
        .await
    }

    // ---- sessions ---------------------------------------------------------

    async fn session(&self, key: SessionKey) -> Result<Option<Session>, StoreError> {
        self.read(|| "sessions".into(), |o| o.sessions.get(&key))
    }

    async fn put_session(
        &self,
        key: SessionKey,
        session: Session,
        replaces_seen: Option<i64>,
    ) -> Result<(), StoreError> {
        self.write(
            || "sessions".into(),
            |o| o.sessions.put(&key, &session, replaces_seen),
        )
    }

    async fn set_nickname(&self, key: SessionKey, nickname: &str) -> Result<Session, StoreError> {
        self.write(
            || "sessions".into(),
            |o| {
                let mut session = o.sessions.get(&key)?.ok_or(StoreError::Corrupt {
                    tree: "sessions",
                    reason: "session vanished".into(),
                })?;
                let seen = session.seen;
                session.nickname = nickname.to_string();
                o.sessions.put(&key, &session, Some(seen))?;
                Ok(session)
            },
        )
    }

    async fn revoke_user(&self, user: &str) -> Result<u64, StoreError> {
        let user = user.to_string();
        self.blocking(move |s| s.write(|| "sessions".into(), |o| o.sessions.revoke_user(&user)))
            .await
    }

    async fn expire_sessions(&self, before: i64) -> Result<u64, StoreError> {
        self.blocking(move |s| {
            s.write(
                || "sessions".into(),
                |o| o.sessions.expire(before, EXPIRE_BATCH),
            )
        })
        .await
    }

    // ---- rooms --------------------------------------------------------------

    async fn touch_room(&self, name: &str, now_ms: i64) -> Result<RoomMeta, StoreError> {
        self.write(|| format!("room `{name}`"), |o| o.rooms.touch(name, now_ms))
    }

    async fn set_room_password(&self, name: &str, hash: &str) -> Result<(), StoreError> {
        self.write(
            || format!("room `{name}`"),
            |o| o.rooms.set_password(name, hash),
        )
    }

    async fn room_password(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.read(String::new, |o| o.rooms.password(name))
    }

    async fn room_moderation(&self, name: &str) -> Result<Moderation, StoreError> {
        self.read(String::new, |o| o.rooms.moderation(name))
    }

    async fn set_room_moderation(
        &self,
        name: &str,
        moderation: &Moderation,
    ) -> Result<(), StoreError> {
        self.write(
            || format!("room `{name}`"),
            |o| o.rooms.set_moderation(name, moderation),
        )
    }

    async fn set_room_unlisted(&self, name: &str) -> Result<(), StoreError> {
        self.write(|| format!("room `{name}`"), |o| o.rooms.set_unlisted(name))
    }

    async fn room(&self, name: &str) -> Result<Option<RoomMeta>, StoreError> {
        self.read(String::new, |o| Ok(o.rooms.get(name)))
    }

    async fn rooms(&self) -> Result<Vec<RoomMeta>, StoreError> {
        self.read(String::new, |o| Ok(o.rooms.all()))
    }

    async fn room_count(&self) -> Result<u64, StoreError> {
        self.read(String::new, |o| Ok(o.rooms.len() as u64))
    }

    async fn prune_idle_rooms(
        &self,
        idle_before: i64,
        live: HashSet<String>,
    ) -> Result<Vec<String>, StoreError> {
        self.blocking(move |s| {
            s.write(
                || "room index".into(),
                |o| o.rooms.prune_idle(idle_before, &live),
            )
        })
        .await
    }

    async fn close_room(&self, room: &str) -> Result<u64, StoreError> {
        let room = room.to_string();
        self.blocking(move |s| {
            s.write(
                || format!("messages of room `{room}`"),
                |o| o.rooms.close(&room),
            )
        })
        .await
    }

    async fn clear_history(&self, room: &str) -> Result<u64, StoreError> {
        let room = room.to_string();
        self.blocking(move |s| {
            s.write(
                || format!("messages of room `{room}`"),
                |o| o.rooms.clear(&room),
            )
        })
        .await
    }

    async fn delete_message(&self, room: &str, seq: u64) -> Result<bool, StoreError> {
        self.write(
            || format!("room `{room}`, seq {seq}"),
            |o| o.rooms.delete_message(room, seq),
        )
    }

    // ---- messages -----------------------------------------------------------

    /// The seq is the room's counter in the in-memory index, and the
    /// callback is queued while the room is locked, so queue order is seq
    /// order. A message becomes readable in history once durable.
    async fn append(&self, message: NewMessage, settled: Settled) -> Result<(), StoreError> {
        let room = message.room.clone();
        self.write(
            || format!("room `{room}`"),
            |o| {
                o.rooms.append(&message, |m| {
                    let store = self.clone();
                    let stored = m.clone();
                    let after: commit::AfterFlush = Box::new(move |outcome| {
                        let appended = match outcome {
                            Outcome::Durable => {
                                store.with_open(|o| o.rooms.mark_durable(&stored.room, stored.seq));
                                Appended::Durable(stored)
                            }
                            Outcome::Lost => Appended::Lost,
                            Outcome::Unknown => Appended::Unknown,
                        };
                        settled(appended)
                    });
                    let expected = m.clone();
                    let check: commit::Check = Box::new(move |o: &Open| {
                        match o.rooms.find(&expected.room, expected.seq) {
                            Ok(Some(found)) if found == expected => Some(Some(found)),
                            _ => None,
                        }
                    });
                    self.after_writes(after, Some(check));
                })
            },
        )?;
        Ok(())
    }

    async fn history(&self, room: &str, query: HistoryQuery) -> Result<Vec<Message>, StoreError> {
        self.read(
            || {
                format!(
                    "history of room `{room}`, seq {}..{}",
                    query.after.map_or(0, |a| a + 1),
                    query.before.map_or("end".into(), |b| b.to_string())
                )
            },
            |o| o.rooms.history(room, query),
        )
    }

    /// The first count of a room reads its history: off the async threads.
    async fn stored_messages(&self, room: &str) -> Result<u64, StoreError> {
        let room = room.to_string();
        self.blocking(move |s| {
            s.read(
                || format!("messages of room `{room}`"),
                |o| o.rooms.stored(&room),
            )
        })
        .await
    }

    async fn enforce_retention(&self, policy: Retention, now_ms: i64) -> Result<u64, StoreError> {
        self.blocking(move |s| {
            s.write(
                || "retention pass".into(),
                |o| retention::enforce(&o.rooms, &policy, now_ms),
            )
        })
        .await
    }
}
