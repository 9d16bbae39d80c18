//! What the store keeps, in the server's terms: messages, sessions, rooms,
//! and what a caller learns about a write. No engine type appears here, so
//! the same values come out of sled today and a shared database later.

use std::future::Future;
use std::pin::Pin;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A chat message, as the wire contract describes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Message {
    pub room: String,
    pub seq: u64,
    pub user: String,
    pub nickname: String,
    pub text: String,
    pub ts: i64,
}

/// A message to append: everything but its `seq`, which the store assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub room: String,
    pub user: String,
    pub nickname: String,
    pub text: String,
    /// ms since the Unix epoch.
    pub ts: i64,
}

/// A page of history: ascending `seq`, `after < seq < before`, at most `limit`.
/// With `after`, the oldest matching messages; without, the newest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    pub before: Option<u64>,
    pub after: Option<u64>,
    pub limit: usize,
}

/// What became of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// On disk, synced.
    Durable,
    /// Not stored, and never will be.
    Lost,
    /// The store could not tell in time (its disk is full); it may be stored.
    Unknown,
}

/// What became of an appended message, once the store knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Durable, with the `seq` the store gave it.
    Durable(Message),
    /// Not stored, and never will be.
    Lost,
    /// Perhaps stored: if it was, it comes out of
    /// [`Store::late_messages`](super::Store::late_messages) later.
    Unknown,
}

/// Told what became of an appended message. Within a room, these run in
/// `seq` order, one after the other, so a caller that delivers the message
/// from here delivers a room's messages in order.
pub type Settled =
    Box<dyn FnOnce(Appended) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static>;

/// The stored identity behind a token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// Stable public id, safe to show to others.
    pub user: String,
    pub nickname: String,
    /// Creation time, ms since the Unix epoch.
    pub created: i64,
    /// When a connection last used it, ms since the Unix epoch (records
    /// written before this field existed read it as their creation time).
    #[serde(default)]
    pub seen: i64,
}

/// The SHA-256 of a token: what a session is stored under, so that a copy of
/// the database does not hand out working tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    pub fn of(token: &str) -> SessionKey {
        SessionKey(Sha256::digest(token.as_bytes()).into())
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A new token and its session, not stored yet.
pub fn mint(now_ms: i64) -> (String, SessionKey, Session) {
    let mut rng = rand::rng();
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let mut public = [0u8; 8];
    rng.fill_bytes(&mut public);
    let token = hex::encode(secret);
    let user = hex::encode(public);
    let session = Session {
        nickname: format!("Anon-{}", &user[..4]),
        user,
        created: now_ms,
        seen: now_ms,
    };
    let key = SessionKey::of(&token);
    (token, key, session)
}

/// What the rest of the server sees of a stored room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomMeta {
    pub name: String,
    pub created: i64,
    /// Last entry or message, ms since the Unix epoch.
    pub last_activity: i64,
    /// Highest seq handed out so far (0 when the room never had a message).
    pub last_seq: u64,
    /// Never in the public room list (made so by its creator).
    pub unlisted: bool,
}

/// Who runs a room and who may come in: its host (a public user id), whether
/// it is locked or has a lobby, who may enter anyway, and who was removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moderation {
    /// The host's user id (its session's); `None` until someone enters.
    #[serde(default)]
    pub host: Option<String>,
    /// No new entries.
    #[serde(default)]
    pub locked: bool,
    /// Newcomers wait until the host lets them in.
    #[serde(default)]
    pub lobby: bool,
    /// User ids that may enter while the room is locked or has a lobby: the
    /// members when that was turned on, and those let in since.
    #[serde(default)]
    pub allowed: Vec<String>,
    /// Users removed from the room, and until when (ms since the epoch).
    #[serde(default)]
    pub bans: Vec<Ban>,
}

/// A user removed from a room, who may not enter it again before `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    pub user: String,
    pub until: i64,
}

/// `last_activity` of a closed room: older than any active window, so the room
/// leaves the lists, and raised by the next entry like any other timestamp.
pub const CLOSED: i64 = 0;

impl RoomMeta {
    /// A room closed by an administrator and not entered since: unlisted.
    pub fn closed(&self) -> bool {
        self.last_activity == CLOSED
    }
}

/// How much history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many messages per room (0: no limit).
    pub max_messages: u64,
    /// Delete messages older than this many ms (0: keep forever).
    pub max_age_ms: i64,
}

/// The store's state as `/healthz` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StoreHealth {
    /// `ok`, `disk_full`, `failing` (writes refused until it reopens) or
    /// `damaged` (some data cannot be read).
    pub status: &'static str,
    /// What is wrong and what to do, when not ok.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl StoreHealth {
    pub fn ok(&self) -> bool {
        self.status == "ok"
    }
}

/// What [`Store::verify`](super::Store::verify) read.
#[derive(Debug, Default, Clone)]
pub struct Verified {
    pub rooms: u64,
    pub messages: u64,
    pub sessions: u64,
    /// The places that could not be read.
    pub damaged: Vec<String>,
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
