//! The interface a storage engine implements, in the server's terms.
//!
//! [`Store`](super::Store) is the only caller: it keeps what is the same for
//! every engine (sessions handed out but not stored yet, when a session's
//! last use is worth a write, the counters) and asks the engine for the rest.
//! sled (`store/sled/`) is the first engine; a shared database is meant to be
//! the next, so nothing here assumes the engine lives in this process:
//! `seq`s are assigned by the engine and known to callers only once a message
//! is durable, and every operation may wait on I/O.

use std::collections::HashSet;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::StoreError;
use super::model::{
    HistoryQuery, Message, Moderation, NewMessage, Retention, RoomMeta, Session, SessionKey,
    Settled, StoreHealth, Verified,
};

#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    // ---- running ----------------------------------------------------------

    /// The engine's background work (sled: the group commit) until
    /// `shutdown`; everything accepted before returns settled.
    async fn run(&self, shutdown: CancellationToken);

    /// Whether the engine reads and writes, and why not. Cheap: no I/O.
    fn health(&self) -> StoreHealth;

    /// Messages stored although their append was settled
    /// [`Appended::Unknown`](super::Appended::Unknown), as they are found.
    fn late_messages(&self) -> mpsc::UnboundedReceiver<Message>;

    /// Waits until every write accepted so far is durable.
    async fn durable(&self) -> Result<(), StoreError>;

    /// Makes everything durable now (at shutdown, after `run` returned).
    async fn flush(&self) -> Result<(), StoreError>;

    /// Reads every record, naming each place that cannot be read.
    async fn verify(&self) -> Result<Verified, StoreError>;

    // ---- sessions ---------------------------------------------------------

    async fn session(&self, key: SessionKey) -> Result<Option<Session>, StoreError>;

    /// Writes `session`; `replaces_seen` is the `seen` of the stored record
    /// it replaces, if any.
    async fn put_session(
        &self,
        key: SessionKey,
        session: Session,
        replaces_seen: Option<i64>,
    ) -> Result<(), StoreError>;

    /// Changes the nickname of a stored session; returns the new record.
    async fn set_nickname(&self, key: SessionKey, nickname: &str) -> Result<Session, StoreError>;

    /// Deletes every stored session of the public user id; returns how many.
    async fn revoke_user(&self, user: &str) -> Result<u64, StoreError>;

    /// Deletes stored sessions unused since `before` (ms since the epoch),
    /// a bounded batch per call; returns how many went.
    async fn expire_sessions(&self, before: i64) -> Result<u64, StoreError>;

    // ---- rooms --------------------------------------------------------------

    /// Creates the room when it does not exist and marks it active at `now_ms`.
    async fn touch_room(&self, name: &str, now_ms: i64) -> Result<RoomMeta, StoreError>;

    async fn room(&self, name: &str) -> Result<Option<RoomMeta>, StoreError>;
    /// Keeps `name` out of the public room list for good.
    async fn set_room_unlisted(&self, name: &str) -> Result<(), StoreError>;
    /// Gives room `name` a password (its Argon2id hash).
    async fn set_room_password(&self, name: &str, hash: &str) -> Result<(), StoreError>;
    /// The hash of room `name`'s password, if it has one.
    async fn room_password(&self, name: &str) -> Result<Option<String>, StoreError>;

    /// Room `name`'s host, lock, lobby and bans (the default when it has none).
    async fn room_moderation(&self, name: &str) -> Result<Moderation, StoreError>;
    /// Replaces room `name`'s moderation record.
    async fn set_room_moderation(
        &self,
        name: &str,
        moderation: &Moderation,
    ) -> Result<(), StoreError>;

    /// Every room, in no particular order.
    async fn rooms(&self) -> Result<Vec<RoomMeta>, StoreError>;

    async fn room_count(&self) -> Result<u64, StoreError>;

    /// Forgets rooms that never held a message, idle since `idle_before`,
    /// except those in `live`; returns their names.
    async fn prune_idle_rooms(
        &self,
        idle_before: i64,
        live: HashSet<String>,
    ) -> Result<Vec<String>, StoreError>;

    /// Deletes a room's history and unlists it until it is entered again;
    /// returns how many messages went.
    async fn close_room(&self, room: &str) -> Result<u64, StoreError>;

    /// Deletes a room's whole history; returns how many messages went.
    async fn clear_history(&self, room: &str) -> Result<u64, StoreError>;

    /// Deletes one message; `false` when the room has none with that seq.
    async fn delete_message(&self, room: &str, seq: u64) -> Result<bool, StoreError>;

    // ---- messages -----------------------------------------------------------

    /// Accepts `message` under the room's next `seq` (creating the room when
    /// needed) and calls `settled` once its fate is known. An error means it
    /// was refused at once and `settled` is never called.
    async fn append(&self, message: NewMessage, settled: Settled) -> Result<(), StoreError>;

    /// A page of durable history.
    async fn history(&self, room: &str, query: HistoryQuery) -> Result<Vec<Message>, StoreError>;

    /// How many messages `room` holds.
    async fn stored_messages(&self, room: &str) -> Result<u64, StoreError>;

    /// Deletes what `policy` no longer keeps; returns how many messages went.
    async fn enforce_retention(&self, policy: Retention, now_ms: i64) -> Result<u64, StoreError>;
}
