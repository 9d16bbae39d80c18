//! Durable state: sessions, rooms and chat history.
//!
//! Everything a restart or a crash must not lose lives here, behind one async
//! interface in the server's terms ([`Store`]). The engine under it is a
//! [`Backend`](backend::Backend); sled (`store/sled/`) is the first and the
//! default, and no sled type leaves that folder. The engine assigns a
//! message's `seq`, and callers learn it only once the message is durable
//! ([`Store::append`]), so a shared database can assign it instead.
//!
//! What is the same for every engine is kept here: new anonymous sessions
//! stay in memory until the client does something that needs them stored,
//! and a stored session's last use is written at most once a day.

mod backend;
mod model;
mod postgres;
mod sled;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

pub use backend::Backend;
pub use model::{
    Appended, Ban, HistoryQuery, Message, Moderation, NewMessage, Outcome, Retention, RoomMeta,
    Session, SessionKey, Settled, StoreHealth, StoreOptions, Verified,
};
pub use postgres::{PgProbe, PgSettings, probe as probe_postgres};
pub use sled::DB_DIR;

/// New sessions kept in memory at most, before the oldest are forgotten.
const PENDING_SESSIONS_MAX: usize = 100_000;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database I/O error: {0}")]
    Io(std::io::Error),
    #[error("database error: {0}")]
    Engine(String),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the store holds schema version {found} (in the data directory, or the PostgreSQL schema), this build of noom reads version {expected}"
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

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    engine: Arc<dyn Backend>,
    metrics: Arc<Metrics>,
    session_ttl_ms: i64,
    /// Sessions handed out but not stored yet, oldest first.
    pending: Arc<Mutex<Pending>>,
}

#[derive(Default)]
struct Pending {
    sessions: HashMap<SessionKey, Session>,
    order: VecDeque<SessionKey>,
}

impl Store {
    /// Opens (or creates) the default store, sled in `data_dir`, and checks
    /// it (see `store/sled/`).
    pub async fn open(
        data_dir: &Path,
        options: &StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Store, StoreError> {
        let (dir, opts, m) = (data_dir.to_path_buf(), options.clone(), metrics.clone());
        let engine = tokio::task::spawn_blocking(move || sled::SledStore::open(&dir, &opts, m))
            .await
            .map_err(|_| StoreError::Closed)??;
        Ok(Store::with_engine(Arc::new(engine), options, metrics))
    }

    /// Opens the store in PostgreSQL (`store.backend = "postgres"`),
    /// creating or migrating its schema.
    pub async fn open_postgres(
        settings: &PgSettings,
        options: &StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Store, StoreError> {
        let engine = postgres::PgStore::open(settings, options.commit_window).await?;
        Ok(Store::with_engine(Arc::new(engine), options, metrics))
    }

    /// A store over any engine.
    pub fn with_engine(
        engine: Arc<dyn Backend>,
        options: &StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Store {
        Store {
            engine,
            metrics,
            session_ttl_ms: options.session_ttl.as_millis().min(i64::MAX as u128) as i64,
            pending: Arc::new(Mutex::new(Pending::default())),
        }
    }

    /// Runs the engine's background work (sled: the group commit) until
    /// `shutdown`, then settles everything queued.
    pub async fn run(&self, shutdown: CancellationToken) {
        self.engine.run(shutdown).await;
    }

    /// Messages that were stored although their sender was told the outcome
    /// was unknown (the disk filled up); they are to be delivered late.
    pub fn late_messages(&self) -> mpsc::UnboundedReceiver<Message> {
        self.engine.late_messages()
    }

    /// Waits until everything written so far is durable.
    pub async fn durable(&self) -> Result<(), StoreError> {
        self.engine.durable().await
    }

    /// Makes everything durable now (used at shutdown). Fails with the real
    /// cause when the store could not be written.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.engine.flush().await
    }

    /// The store's health, for `/healthz` and `noom check`.
    pub fn health(&self) -> StoreHealth {
        self.engine.health()
    }

    /// True when the store reads and writes normally.
    pub fn healthy(&self) -> bool {
        self.health().ok()
    }

    /// Reads every record of the store (for `noom check`, not at start: it
    /// costs a pass over the whole history). Each unreadable place is named.
    pub async fn verify(&self) -> Result<Verified, StoreError> {
        self.engine.verify().await
    }

    // ---- sessions ---------------------------------------------------------

    /// The session behind `token`: one handed out but not stored yet, or a
    /// stored one (whose last use is then noted, at most once a day).
    pub async fn session(
        &self,
        token: &str,
        now_ms: i64,
    ) -> Result<Option<(SessionKey, Session)>, StoreError> {
        let key = SessionKey::of(token);
        if let Some(s) = self.pending.lock().sessions.get(&key) {
            return Ok(Some((key, s.clone())));
        }
        let found = self.engine.session(key).await?;
        if let Some(s) = &found {
            self.touch_session(key, s, now_ms).await;
        }
        Ok(found.map(|s| (key, s)))
    }

    /// Notes that a stored session was used at `now_ms` (when its record is
    /// a day old or more); a full disk only skips the note.
    async fn touch_session(&self, key: SessionKey, s: &Session, now_ms: i64) {
        const DAY_MS: i64 = 86_400_000;
        if now_ms - s.seen < DAY_MS.min(self.session_ttl_ms / 4).max(1) {
            return;
        }
        let mut fresh = s.clone();
        fresh.seen = now_ms;
        let _ = self.engine.put_session(key, fresh, Some(s.seen)).await;
    }

    /// Notes that the session `key` is in use now (a connection closed).
    pub async fn session_used(&self, key: &SessionKey, now_ms: i64) {
        if self.pending.lock().sessions.contains_key(key) {
            return;
        }
        if let Ok(Some(s)) = self.engine.session(*key).await {
            self.touch_session(*key, &s, now_ms).await;
        }
    }

    /// A new session: a token and its identity, kept in memory (nothing is
    /// written) until [`Store::keep_session`] stores it.
    pub fn create_session(&self, now_ms: i64) -> (String, SessionKey, Session) {
        let (token, key, session) = model::mint(now_ms);
        let mut pending = self.pending.lock();
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
    pub async fn keep_session(&self, key: &SessionKey) -> Result<(), StoreError> {
        let session = self.pending.lock().sessions.get(key).cloned();
        let Some(session) = session else {
            return Ok(());
        };
        self.engine.put_session(*key, session, None).await?;
        let mut pending = self.pending.lock();
        pending.sessions.remove(key);
        pending.order.retain(|k| k != key);
        Ok(())
    }

    pub async fn set_nickname(
        &self,
        key: &SessionKey,
        nickname: &str,
    ) -> Result<Session, StoreError> {
        self.keep_session(key).await?;
        self.engine.set_nickname(*key, nickname).await
    }

    /// Deletes every session of the public user id `user`; returns how many.
    /// Their tokens stop working: a client that comes back gets a new identity.
    pub async fn revoke_user(&self, user: &str) -> Result<u64, StoreError> {
        let in_memory = {
            let mut pending = self.pending.lock();
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
        let stored = self.engine.revoke_user(user).await?;
        Ok(in_memory + stored)
    }

    /// Deletes the stored sessions unused since `before` (ms since the
    /// epoch); returns how many went.
    pub async fn expire_sessions(&self, before: i64) -> Result<u64, StoreError> {
        let n = self.engine.expire_sessions(before).await?;
        Metrics::add(&self.metrics.sessions_expired, n);
        Ok(n)
    }

    // ---- rooms and messages -------------------------------------------------

    /// Gives room `name` a password (its Argon2id hash).
    pub async fn set_room_password(&self, name: &str, hash: &str) -> Result<(), StoreError> {
        self.engine.set_room_password(name, hash).await
    }

    /// The hash of room `name`'s password, if it has one.
    pub async fn room_password(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.engine.room_password(name).await
    }

    /// Room `name`'s host, lock, lobby and bans.
    pub async fn room_moderation(&self, name: &str) -> Result<Moderation, StoreError> {
        self.engine.room_moderation(name).await
    }

    /// Replaces room `name`'s moderation record.
    pub async fn set_room_moderation(
        &self,
        name: &str,
        moderation: &Moderation,
    ) -> Result<(), StoreError> {
        self.engine.set_room_moderation(name, moderation).await
    }

    /// Keeps `name` out of the public room list for good.
    pub async fn set_room_unlisted(&self, name: &str) -> Result<(), StoreError> {
        self.engine.set_room_unlisted(name).await
    }

    /// Creates the room when it does not exist and marks it active.
    pub async fn touch_room(&self, name: &str, now_ms: i64) -> Result<RoomMeta, StoreError> {
        self.engine.touch_room(name, now_ms).await
    }

    /// The room `name`; `None` when the store does not know it (or cannot
    /// read it now).
    pub async fn room(&self, name: &str) -> Option<RoomMeta> {
        self.engine.room(name).await.ok().flatten()
    }

    /// All rooms the store knows, in no particular order.
    pub async fn rooms(&self) -> Result<Vec<RoomMeta>, StoreError> {
        self.engine.rooms().await
    }

    pub async fn room_count(&self) -> u64 {
        self.engine.room_count().await.unwrap_or(0)
    }

    /// Appends a message under the room's next `seq`; `settled` is told
    /// what became of it (durable with its seq, lost, or unknown), in seq
    /// order within the room. Refused at once (nothing written, `settled`
    /// dropped) while the disk is full or the store is failing.
    pub async fn append(&self, message: NewMessage, settled: Settled) -> Result<(), StoreError> {
        self.engine.append(message, settled).await?;
        Metrics::inc(&self.metrics.messages_stored);
        Ok(())
    }

    pub async fn history(
        &self,
        room: &str,
        query: HistoryQuery,
    ) -> Result<Vec<Message>, StoreError> {
        self.engine.history(room, query).await
    }

    /// How many messages `room` holds.
    pub async fn stored_messages(&self, room: &str) -> Result<u64, StoreError> {
        self.engine.stored_messages(room).await
    }

    /// Deletes a room's whole history; returns how many messages went.
    pub async fn clear_history(&self, room: &str) -> Result<u64, StoreError> {
        self.engine.clear_history(room).await
    }

    /// Deletes one message; `false` when the room has no message with that seq.
    pub async fn delete_message(&self, room: &str, seq: u64) -> Result<bool, StoreError> {
        self.engine.delete_message(room, seq).await
    }

    /// Deletes a room's history and unlists it until someone enters it again.
    pub async fn close_room(&self, room: &str) -> Result<u64, StoreError> {
        self.engine.close_room(room).await
    }

    /// Deletes what the retention policy no longer keeps; returns how many messages went.
    pub async fn enforce_retention(
        &self,
        policy: &Retention,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let removed = self.engine.enforce_retention(*policy, now_ms).await?;
        Metrics::add(&self.metrics.messages_expired, removed);
        Ok(removed)
    }

    /// Forgets rooms that never held a message and have been idle since
    /// `idle_before`, except those in `live` (rooms with members now);
    /// returns their names.
    pub async fn prune_idle_rooms(
        &self,
        idle_before: i64,
        live: HashSet<String>,
    ) -> Result<Vec<String>, StoreError> {
        self.engine.prune_idle_rooms(idle_before, live).await
    }
}
