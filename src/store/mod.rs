//! Durable state in sled: sessions, rooms and chat history.
//!
//! Everything a restart or a crash must not lose lives here. Writes go to sled's
//! in-memory log at once; [`commit::Committer`] makes them durable in groups, so
//! that the acknowledgement of a chat message is sent only after the fsync that
//! covers it, and concurrent messages share one fsync.

mod commit;
mod messages;
mod retention;
mod rooms;
mod sessions;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

pub use commit::AfterFlush;
pub use messages::{HistoryQuery, Message};
pub use retention::Retention;
pub use rooms::RoomMeta;
pub use sessions::{Session, SessionKey};

/// Version of the on-disk layout. Bumped when keys or values change shape.
pub const SCHEMA_VERSION: u64 = 1;
const SCHEMA_KEY: &[u8] = b"schema_version";
/// Name of the database folder inside the data directory.
pub const DB_DIR: &str = "noom.sled";

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
    #[error("the data directory {0} is in use by another noom process")]
    Locked(PathBuf),
    #[error("no such room")]
    NoSuchRoom,
    #[error("the store is shutting down")]
    Closed,
}

/// Settings of the store that come from the configuration.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub cache_bytes: u64,
    /// How long a group commit waits for more writers before its flush.
    pub commit_window: std::time::Duration,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    sessions: sessions::Sessions,
    rooms: Arc<rooms::Rooms>,
    committer: Arc<commit::Committer>,
    metrics: Arc<Metrics>,
}

impl Store {
    /// Opens (or creates) the database in `data_dir`. Reads only the room index,
    /// never the history, so start-up time does not grow with the number of messages.
    pub fn open(
        data_dir: &Path,
        options: &StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let db = sled::Config::new()
            .path(data_dir.join(DB_DIR))
            .cache_capacity(options.cache_bytes)
            // Durability comes from the committer; this is only a backstop.
            .flush_every_ms(Some(1000))
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    StoreError::Locked(data_dir.to_path_buf())
                }
                other => StoreError::Db(other),
            })?;
        check_schema(&db)?;
        let sessions = sessions::Sessions::new(db.open_tree("sessions")?);
        let rooms = rooms::Rooms::open(db.open_tree("rooms")?, db.open_tree("messages")?)?;
        Ok(Store {
            db,
            sessions,
            rooms: Arc::new(rooms),
            committer: Arc::new(commit::Committer::new(options.commit_window)),
            metrics,
        })
    }

    /// Runs the group committer until `shutdown`, then makes everything queued durable.
    pub async fn run_committer(&self, shutdown: CancellationToken) {
        self.committer
            .clone()
            .run(self.db.clone(), self.metrics.clone(), shutdown)
            .await;
    }

    /// Waits until everything written so far is durable.
    pub async fn durable(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.committer.push(Box::new(move |ok| {
            let _ = tx.send(ok);
            Box::pin(async {})
        }));
        match rx.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(StoreError::Db(sled::Error::ReportableBug(
                "flush failed; see the log".into(),
            ))),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// Flushes now, outside the committer (used at shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    pub fn session(&self, token: &str) -> Result<Option<(SessionKey, Session)>, StoreError> {
        self.sessions.get(token)
    }

    pub fn create_session(&self, now_ms: i64) -> Result<(String, SessionKey, Session), StoreError> {
        self.sessions.create(now_ms)
    }

    pub fn set_nickname(&self, key: &SessionKey, nickname: &str) -> Result<Session, StoreError> {
        self.sessions.set_nickname(key, nickname)
    }

    /// Creates the room when it does not exist and marks it active.
    pub fn touch_room(&self, name: &str, now_ms: i64) -> Result<RoomMeta, StoreError> {
        self.rooms.touch(name, now_ms)
    }

    pub fn room(&self, name: &str) -> Option<RoomMeta> {
        self.rooms.get(name)
    }

    /// All rooms the store knows, in no particular order.
    pub fn rooms(&self) -> Vec<RoomMeta> {
        self.rooms.all()
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Appends a message with the next `seq` of the room. `after` runs once the
    /// message is durable (with `true`) or the flush failed (`false`); calls to
    /// `after` happen in the order of the appends.
    pub fn append(
        &self,
        room: &str,
        user: &str,
        nickname: &str,
        text: &str,
        now_ms: i64,
        after: impl FnOnce(Message) -> AfterFlush,
    ) -> Result<Message, StoreError> {
        let message = self.rooms.append(room, user, nickname, text, now_ms, |m| {
            self.committer.push(after(m.clone()));
        })?;
        Metrics::inc(&self.metrics.messages_stored);
        Ok(message)
    }

    pub fn history(&self, room: &str, query: HistoryQuery) -> Result<Vec<Message>, StoreError> {
        self.rooms.history(room, query)
    }

    /// How many messages `room` holds (counted once, then maintained).
    pub fn stored_messages(&self, room: &str) -> Result<u64, StoreError> {
        self.rooms.stored(room)
    }

    /// Deletes a room's whole history; returns how many messages went.
    pub fn clear_history(&self, room: &str) -> Result<u64, StoreError> {
        self.rooms.clear(room)
    }

    /// Deletes one message; `false` when the room has no message with that seq.
    pub fn delete_message(&self, room: &str, seq: u64) -> Result<bool, StoreError> {
        self.rooms.delete_message(room, seq)
    }

    /// Deletes a room's history and unlists it until someone enters it again.
    pub fn close_room(&self, room: &str) -> Result<u64, StoreError> {
        self.rooms.close(room)
    }

    /// Deletes every session of the public user id `user`; returns how many.
    /// Their tokens stop working: a client that comes back gets a new identity.
    pub fn revoke_user(&self, user: &str) -> Result<u64, StoreError> {
        self.sessions.revoke_user(user)
    }

    /// Deletes what the retention policy no longer keeps; returns how many messages went.
    pub fn enforce_retention(&self, policy: &Retention, now_ms: i64) -> Result<u64, StoreError> {
        let removed = retention::enforce(&self.rooms, policy, now_ms)?;
        Metrics::add(&self.metrics.messages_expired, removed);
        Ok(removed)
    }

    /// Forgets rooms that never held a message and have been idle since
    /// `idle_before`, except those in `live` (rooms with members now).
    pub fn prune_idle_rooms(
        &self,
        idle_before: i64,
        live: &std::collections::HashSet<String>,
    ) -> Result<Vec<String>, StoreError> {
        self.rooms.prune_idle(idle_before, live)
    }

    /// True when the database answers reads.
    pub fn healthy(&self) -> bool {
        self.db.get(SCHEMA_KEY).is_ok()
    }
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
