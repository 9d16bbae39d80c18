//! Durable state in sled: sessions, rooms and chat history.
//!
//! Everything a restart or a crash must not lose lives here. Writes go to sled's
//! in-memory log at once; [`commit::Committer`] makes them durable in groups, so
//! that the acknowledgement of a chat message is sent only after the fsync that
//! covers it, and concurrent messages share one fsync.
//!
//! The store also survives its disk filling up without a restart: writes are
//! refused while free space is below `store.min_free_mb`, and if a flush fails
//! anyway, the committer reopens the database once there is room and settles
//! every write of the failed batch against what is on disk (`commit.rs`,
//! `health.rs`). Reads keep working meanwhile. New anonymous sessions stay in
//! memory until the client does something that needs them stored.

mod commit;
mod health;
mod messages;
mod retention;
mod rooms;
mod sessions;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

pub use commit::{AfterFlush, Outcome};
pub use health::StoreHealth;
pub use messages::{HistoryQuery, Message};
pub use retention::Retention;
pub use rooms::RoomMeta;
pub use sessions::{Session, SessionKey};

/// Version of the on-disk layout. Bumped when keys or values change shape.
pub const SCHEMA_VERSION: u64 = 1;
const SCHEMA_KEY: &[u8] = b"schema_version";
/// Name of the database folder inside the data directory.
pub const DB_DIR: &str = "noom.sled";
/// New sessions kept in memory at most, before the oldest are forgotten.
const PENDING_SESSIONS_MAX: usize = 100_000;
/// Sessions deleted per expiry pass at most.
const EXPIRE_BATCH: usize = 10_000;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sled::Error),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the data directory holds schema version {found}, this build of noom reads version {expected}"
    )]
    Schema { found: u64, expected: u64 },
    #[error("corrupt record in `{tree}`: {reason}")]
    Corrupt { tree: &'static str, reason: String },
    #[error(
        "the database in {path} is damaged ({reason}); restore it from a backup, or move it aside to start empty"
    )]
    Damaged { path: PathBuf, reason: String },
    #[error("the data directory {0} is in use by another noom process")]
    Locked(PathBuf),
    #[error(
        "the disk holding {path} is full ({free_mib} MiB free, store.min_free_mb is {reserve_mib})"
    )]
    DiskFull {
        path: PathBuf,
        free_mib: u64,
        reserve_mib: u64,
    },
    #[error("the store cannot write ({reason})")]
    Unavailable { reason: String },
    #[error("no such room")]
    NoSuchRoom,
    #[error("the store is shutting down")]
    Closed,
}

impl StoreError {
    /// True for errors that say the disk is full (sled drops the errno, not the kind).
    fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Db(sled::Error::Io(e)) => e.kind() == std::io::ErrorKind::StorageFull,
            StoreError::DiskFull { .. } => true,
            _ => false,
        }
    }

    /// True for errors that mean the data read was damaged.
    fn is_damage(&self) -> bool {
        matches!(
            self,
            StoreError::Corrupt { .. } | StoreError::Db(sled::Error::Corruption { .. })
        )
    }
}

/// Settings of the store that come from the configuration.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub cache_bytes: u64,
    /// How long a group commit waits for more writers before its flush.
    pub commit_window: std::time::Duration,
    /// Writes are refused while the data directory's filesystem has less free
    /// space than this, in bytes (0: never).
    pub min_free_bytes: u64,
    /// Stored sessions unused this long are deleted.
    pub session_ttl: std::time::Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 64 << 20,
            commit_window: std::time::Duration::from_millis(2),
            min_free_bytes: 0,
            session_ttl: std::time::Duration::from_secs(90 * 86_400),
        }
    }
}

/// The open database: its trees and the room index built from them.
pub struct Open {
    db: sled::Db,
    sessions: sessions::Sessions,
    rooms: rooms::Rooms,
}

impl Open {
    fn sessions_tree(&self) -> &sled::Tree {
        self.sessions.tree()
    }
}

/// What [`Store::verify`] read.
#[derive(Debug, Default, Clone)]
pub struct Verified {
    pub rooms: u64,
    pub messages: u64,
    pub sessions: u64,
    /// The places that could not be read.
    pub damaged: Vec<String>,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
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
    /// Sessions handed out but not stored yet, oldest first.
    pending: Mutex<Pending>,
    /// Messages found stored after their sender was told `Unknown`.
    late: Mutex<Option<mpsc::UnboundedSender<Message>>>,
}

#[derive(Default)]
struct Pending {
    sessions: HashMap<SessionKey, Session>,
    order: VecDeque<SessionKey>,
}

impl Store {
    /// Opens (or creates) the database in `data_dir` and checks it: the
    /// schema record and every room's newest message must be readable. Reads
    /// only the room index, never the history, so start-up time does not grow
    /// with the number of messages.
    pub fn open(
        data_dir: &Path,
        options: &StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let health = health::Health::new(data_dir, options.min_free_bytes);
        let (open, damaged) = open_db(data_dir, options)?;
        for room in damaged {
            health.damaged(format!("newest message of room `{room}`"));
        }
        Ok(Store {
            inner: Arc::new(Inner {
                dir: data_dir.to_path_buf(),
                options: options.clone(),
                metrics,
                open: RwLock::new(Some(open)),
                committer: Arc::new(commit::Committer::new(options.commit_window)),
                health,
                pending: Mutex::new(Pending::default()),
                late: Mutex::new(None),
            }),
        })
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Runs the group committer until `shutdown`, then makes everything queued durable.
    pub async fn run_committer(&self, shutdown: CancellationToken) {
        self.inner
            .committer
            .clone()
            .run(self.clone(), shutdown)
            .await;
    }

    /// Messages that were stored although their sender was told the outcome
    /// was unknown (the disk filled up); they are to be delivered late.
    pub fn late_messages(&self) -> mpsc::UnboundedReceiver<Message> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.inner.late.lock() = Some(tx);
        rx
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

    /// Like [`Store::read`], for operations that write: refused at once while
    /// the disk is (nearly) full or the store is failing. An I/O error from
    /// the database marks the store failing (sled refuses every later write
    /// until it is reopened) and wakes the committer, which reopens it.
    fn write<T>(
        &self,
        place: impl FnOnce() -> String,
        f: impl FnOnce(&Open) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.inner.health.writable()?;
        let result = self.read(place, f);
        if let Err(e) = &result
            && (e.is_disk_full() || matches!(e, StoreError::Db(sled::Error::Io(_))))
        {
            self.failed(e);
            self.inner.committer.nudge();
        }
        result
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
            StoreError::Db(sled::Error::Io(io)) => io.to_string(),
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
                file.sync_all()
                    .map_err(|e| StoreError::Db(sled::Error::Io(e)))?;
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

    /// Waits until everything written so far is durable.
    pub async fn durable(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner.committer.push(commit::Pending {
            after: Box::new(move |outcome| {
                let _ = tx.send(outcome);
                Box::pin(async {})
            }),
            check: None,
        });
        match rx.await {
            Ok(Outcome::Durable) => Ok(()),
            Ok(_) => Err(StoreError::Unavailable {
                reason: self.health().detail,
            }),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// Flushes now, outside the committer (used at shutdown). Fails with the
    /// real cause when the store could not be written.
    pub async fn flush(&self) -> Result<(), StoreError> {
        if let Err(e) = self.inner.health.writable()
            && !matches!(e, StoreError::DiskFull { .. })
        {
            return Err(e);
        }
        self.flush_db().await
    }

    /// The store's health, for `/healthz` and `noom check`.
    pub fn health(&self) -> StoreHealth {
        self.inner.health.report()
    }

    /// True when the store reads and writes normally.
    pub fn healthy(&self) -> bool {
        self.health().ok()
    }

    /// Reads every record of the database (for `noom check`, not at start:
    /// it costs a pass over the whole history). Each unreadable place is
    /// named; a room's scan stops at its first damaged record.
    pub fn verify(&self) -> Result<Verified, StoreError> {
        self.read(String::new, |o| {
            let mut v = Verified::default();
            for item in o.sessions_tree().iter() {
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
    }

    // ---- sessions ---------------------------------------------------------

    /// The session behind `token`: one handed out but not stored yet, or a
    /// stored one (whose last use is then noted, at most once a day).
    pub fn session(
        &self,
        token: &str,
        now_ms: i64,
    ) -> Result<Option<(SessionKey, Session)>, StoreError> {
        let key = SessionKey::of(token);
        if let Some(s) = self.inner.pending.lock().sessions.get(&key) {
            return Ok(Some((key, s.clone())));
        }
        let found = self.read(|| "sessions".into(), |o| o.sessions.get(&key))?;
        if let Some(s) = &found {
            self.touch_session(&key, s, now_ms);
        }
        Ok(found.map(|s| (key, s)))
    }

    /// Notes that a stored session was used at `now_ms` (when its record is
    /// a day old or more); a full disk only skips the note.
    fn touch_session(&self, key: &SessionKey, s: &Session, now_ms: i64) {
        const DAY_MS: i64 = 86_400_000;
        if now_ms - s.seen < DAY_MS.min(self.session_ttl_ms() / 4).max(1) {
            return;
        }
        let mut fresh = s.clone();
        fresh.seen = now_ms;
        let _ = self.write(
            || "sessions".into(),
            |o| o.sessions.put(key, &fresh, Some(s.seen)),
        );
    }

    fn session_ttl_ms(&self) -> i64 {
        self.inner
            .options
            .session_ttl
            .as_millis()
            .min(i64::MAX as u128) as i64
    }

    /// Notes that the session `key` is in use now (a connection closed).
    pub fn session_used(&self, key: &SessionKey, now_ms: i64) {
        if self.inner.pending.lock().sessions.contains_key(key) {
            return;
        }
        if let Ok(Some(s)) = self.read(|| "sessions".into(), |o| o.sessions.get(key)) {
            self.touch_session(key, &s, now_ms);
        }
    }

    /// A new session: a token and its identity, kept in memory (nothing is
    /// written) until [`Store::keep_session`] stores it.
    pub fn create_session(&self, now_ms: i64) -> (String, SessionKey, Session) {
        let (token, key, session) = sessions::mint(now_ms);
        let mut pending = self.inner.pending.lock();
        if pending.order.len() >= PENDING_SESSIONS_MAX
            && let Some(oldest) = pending.order.pop_front()
        {
            pending.sessions.remove(&oldest);
        }
        pending.sessions.insert(key, session.clone());
        pending.order.push_back(key);
        (token, key, session)
    }

    /// Stores the session `key` if it is still only in memory (the client
    /// entered a room: others now see its user id). Durable with the next
    /// group commit; the caller need not wait for it.
    pub fn keep_session(&self, key: &SessionKey) -> Result<(), StoreError> {
        let session = self.inner.pending.lock().sessions.get(key).cloned();
        let Some(session) = session else {
            return Ok(());
        };
        self.write(
            || "sessions".into(),
            |o| o.sessions.put(key, &session, None),
        )?;
        let mut pending = self.inner.pending.lock();
        pending.sessions.remove(key);
        pending.order.retain(|k| k != key);
        Ok(())
    }

    pub fn set_nickname(&self, key: &SessionKey, nickname: &str) -> Result<Session, StoreError> {
        self.keep_session(key)?;
        self.write(
            || "sessions".into(),
            |o| {
                let mut session = o.sessions.get(key)?.ok_or(StoreError::Corrupt {
                    tree: "sessions",
                    reason: "session vanished".into(),
                })?;
                let seen = session.seen;
                session.nickname = nickname.to_string();
                o.sessions.put(key, &session, Some(seen))?;
                Ok(session)
            },
        )
    }

    /// Deletes every session of the public user id `user`; returns how many.
    /// Their tokens stop working: a client that comes back gets a new identity.
    pub fn revoke_user(&self, user: &str) -> Result<u64, StoreError> {
        let in_memory = {
            let mut pending = self.inner.pending.lock();
            let doomed: Vec<SessionKey> = pending
                .sessions
                .iter()
                .filter(|(_, s)| s.user == user)
                .map(|(k, _)| *k)
                .collect();
            for k in &doomed {
                pending.sessions.remove(k);
            }
            pending.order.retain(|k| !doomed.contains(k));
            doomed.len() as u64
        };
        let stored = self.write(|| "sessions".into(), |o| o.sessions.revoke_user(user))?;
        Ok(in_memory + stored)
    }

    /// Deletes the stored sessions unused since `before` (ms since the
    /// epoch); returns how many went.
    pub fn expire_sessions(&self, before: i64) -> Result<u64, StoreError> {
        let n = self.write(
            || "sessions".into(),
            |o| o.sessions.expire(before, EXPIRE_BATCH),
        )?;
        Metrics::add(&self.inner.metrics.sessions_expired, n);
        Ok(n)
    }

    // ---- rooms and messages -------------------------------------------------

    /// Creates the room when it does not exist and marks it active.
    pub fn touch_room(&self, name: &str, now_ms: i64) -> Result<RoomMeta, StoreError> {
        self.write(|| format!("room `{name}`"), |o| o.rooms.touch(name, now_ms))
    }

    pub fn room(&self, name: &str) -> Option<RoomMeta> {
        self.read(String::new, |o| Ok(o.rooms.get(name)))
            .ok()
            .flatten()
    }

    /// All rooms the store knows, in no particular order.
    pub fn rooms(&self) -> Vec<RoomMeta> {
        self.read(String::new, |o| Ok(o.rooms.all()))
            .unwrap_or_default()
    }

    pub fn room_count(&self) -> usize {
        self.read(String::new, |o| Ok(o.rooms.len())).unwrap_or(0)
    }

    /// Appends a message with the next `seq` of the room. `after` runs once
    /// the message is durable, lost or of unknown fate (see [`Outcome`]);
    /// calls to `after` happen in the order of the appends. Refused at once
    /// (nothing written) while the disk is full or the store is failing.
    pub fn append(
        &self,
        room: &str,
        user: &str,
        nickname: &str,
        text: &str,
        now_ms: i64,
        after: impl FnOnce(Message) -> AfterFlush,
    ) -> Result<Message, StoreError> {
        let message = self.write(
            || format!("room `{room}`"),
            |o| {
                o.rooms.append(room, user, nickname, text, now_ms, |m| {
                    let user_after = after(m.clone());
                    let store = self.clone();
                    let (room, seq) = (m.room.clone(), m.seq);
                    let mark: AfterFlush = Box::new(move |outcome| {
                        if outcome == Outcome::Durable {
                            store.with_open(|o| o.rooms.mark_durable(&room, seq));
                        }
                        user_after(outcome)
                    });
                    let expected = m.clone();
                    let check: commit::Check = Box::new(move |o: &Open| {
                        match o.rooms.find(&expected.room, expected.seq) {
                            Ok(Some(found)) if found == expected => Some(Some(found)),
                            _ => None,
                        }
                    });
                    self.inner.committer.push(commit::Pending {
                        after: mark,
                        check: Some(check),
                    });
                })
            },
        )?;
        Metrics::inc(&self.inner.metrics.messages_stored);
        Ok(message)
    }

    pub fn history(&self, room: &str, query: HistoryQuery) -> Result<Vec<Message>, StoreError> {
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

    /// How many messages `room` holds (counted once, then maintained).
    pub fn stored_messages(&self, room: &str) -> Result<u64, StoreError> {
        self.read(
            || format!("messages of room `{room}`"),
            |o| o.rooms.stored(room),
        )
    }

    /// Deletes a room's whole history; returns how many messages went.
    pub fn clear_history(&self, room: &str) -> Result<u64, StoreError> {
        self.write(
            || format!("messages of room `{room}`"),
            |o| o.rooms.clear(room),
        )
    }

    /// Deletes one message; `false` when the room has no message with that seq.
    pub fn delete_message(&self, room: &str, seq: u64) -> Result<bool, StoreError> {
        self.write(
            || format!("room `{room}`, seq {seq}"),
            |o| o.rooms.delete_message(room, seq),
        )
    }

    /// Deletes a room's history and unlists it until someone enters it again.
    pub fn close_room(&self, room: &str) -> Result<u64, StoreError> {
        self.write(
            || format!("messages of room `{room}`"),
            |o| o.rooms.close(room),
        )
    }

    /// Deletes what the retention policy no longer keeps; returns how many messages went.
    pub fn enforce_retention(&self, policy: &Retention, now_ms: i64) -> Result<u64, StoreError> {
        let removed = self.write(
            || "retention pass".into(),
            |o| retention::enforce(&o.rooms, policy, now_ms),
        )?;
        Metrics::add(&self.inner.metrics.messages_expired, removed);
        Ok(removed)
    }

    /// Forgets rooms that never held a message and have been idle since
    /// `idle_before`, except those in `live` (rooms with members now);
    /// returns their names.
    pub fn prune_idle_rooms(
        &self,
        idle_before: i64,
        live: &std::collections::HashSet<String>,
    ) -> Result<Vec<String>, StoreError> {
        self.write(
            || "room index".into(),
            |o| o.rooms.prune_idle(idle_before, live),
        )
    }
}

/// Opens the database and builds the index, waiting up to a second for the
/// file lock of a previous instance in this process (sled's helper threads
/// release it a few ms after the drop). A panic inside sled on damaged files
/// becomes [`StoreError::Damaged`].
fn open_db(data_dir: &Path, options: &StoreOptions) -> Result<(Open, Vec<String>), StoreError> {
    let path = data_dir.join(DB_DIR);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let db = loop {
        let attempt = std::panic::catch_unwind(|| {
            sled::Config::new()
                .path(&path)
                .cache_capacity(options.cache_bytes)
                // Durability comes from the committer; this is only a backstop.
                .flush_every_ms(Some(1000))
                .open()
        });
        match attempt {
            Ok(Ok(db)) => break db,
            Ok(Err(sled::Error::Io(io))) if io.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(StoreError::Locked(data_dir.to_path_buf()));
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Ok(Err(sled::Error::Corruption { at, .. })) => {
                return Err(StoreError::Damaged {
                    path: path.clone(),
                    reason: match at {
                        Some(at) => format!("corrupt data at {at}"),
                        None => "a corrupt snapshot or log".into(),
                    },
                });
            }
            Ok(Err(other)) => return Err(StoreError::Db(other)),
            Err(_) => {
                return Err(StoreError::Damaged {
                    path: path.clone(),
                    reason: "the database engine failed while reading its files".into(),
                });
            }
        }
    };
    let damaged = |e: StoreError| match e {
        StoreError::Corrupt { .. } | StoreError::Db(sled::Error::Corruption { .. }) => {
            StoreError::Damaged {
                path: path.clone(),
                reason: e.to_string(),
            }
        }
        other => other,
    };
    check_schema(&db).map_err(damaged)?;
    let sessions =
        sessions::Sessions::open(db.open_tree("sessions")?, db.open_tree("sessions_seen")?)
            .map_err(damaged)?;
    let (rooms, bad_rooms) =
        rooms::Rooms::open(db.open_tree("rooms")?, db.open_tree("messages")?).map_err(damaged)?;
    Ok((
        Open {
            db,
            sessions,
            rooms,
        },
        bad_rooms,
    ))
}

fn check_schema(db: &sled::Db) -> Result<(), StoreError> {
    match db.get(SCHEMA_KEY)? {
        Some(raw) => {
            let found = <[u8; 8]>::try_from(raw.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    tree: "default",
                    reason: "schema version is not 8 bytes".into(),
                })?;
            if found != SCHEMA_VERSION {
                return Err(StoreError::Schema {
                    found,
                    expected: SCHEMA_VERSION,
                });
            }
        }
        None => {
            db.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
            db.flush()?;
        }
    }
    Ok(())
}
