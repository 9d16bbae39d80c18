//! The wire contract's shapes: members, room infos, acknowledgements and error codes.
//!
//! Kept apart from the handlers so the contract reads in one place; see
//! `docs/protocol.md`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The names of every event the server sends, as `docs/protocol.md` lists them.
pub mod events {
    pub const SESSION: &str = "session";
    pub const ROOM_CHANGE: &str = "room_change";
    pub const WELCOME: &str = "welcome";
    pub const BYE: &str = "bye";
    pub const MEMBER_UPDATE: &str = "member_update";
    pub const NEW_MESSAGE: &str = "new_message";
    pub const PEER_JOINED: &str = "peer_joined";
    pub const PEER_LEFT: &str = "peer_left";
    pub const OFFER: &str = "offer";
    pub const ANSWER: &str = "answer";
    pub const ICE: &str = "ice";
    /// The media server offers a new session description (tracks came or went).
    pub const MEDIA_OFFER: &str = "media_offer";
    /// The media server ended a session by itself.
    pub const MEDIA_CLOSED: &str = "media_closed";
    /// A participant's microphone/camera/screen state, in a call through the media server.
    pub const MEDIA_STATE: &str = "media_state";
    /// Who speaks in a call through the media server, loudest first.
    pub const ACTIVE_SPEAKER: &str = "active_speaker";
    /// A call moved from the mesh to the media server.
    pub const CALL_MEDIA: &str = "call_media";
    /// The raised hands of a call changed.
    pub const HANDS: &str = "hands";
    /// Someone of the call reacted (an emoji).
    pub const REACTION: &str = "reaction";
    /// A room's host, lock or lobby changed.
    pub const ROOM_SETTINGS: &str = "room_settings";
    /// Who waits in the lobby (to the host).
    pub const LOBBY: &str = "lobby";
    /// The host let a waiting connection in, or not.
    pub const ADMISSION: &str = "admission";
    /// The host asks this participant to turn the microphone off.
    pub const MUTED: &str = "muted";
    /// The host removed this connection from the call or the room.
    pub const REMOVED: &str = "removed";
    pub const KICKED: &str = "kicked";
    pub const CALL_ENDED: &str = "call_ended";
    pub const ROOM_CLOSED: &str = "room_closed";
    pub const HISTORY_CLEARED: &str = "history_cleared";
    pub const MESSAGE_DELETED: &str = "message_deleted";

    /// The `/admin` namespace's events.
    pub mod admin {
        pub const OVERVIEW: &str = "overview";
        pub const ROOM: &str = "room";
    }
}

/// Why an administrator closed a connection, as `kicked` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    Disconnected,
    SessionRevoked,
}

impl KickReason {
    /// The `kicked` event's payload.
    pub fn payload(self) -> Value {
        match self {
            KickReason::Disconnected => json!({
                "reason": "disconnected",
                "message": "An administrator disconnected you.",
            }),
            KickReason::SessionRevoked => json!({
                "reason": "session_revoked",
                "message": "An administrator ended your session.",
            }),
        }
    }
}

/// A connection as others see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub user: String,
    pub nickname: String,
    /// The socket id this connection had before a reconnect, as it said when
    /// it joined the call again (so the others keep their peer connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub was: Option<String>,
}

/// Why a member left a room or a call, as `peer_left` and `bye` say it:
/// `left` (it said so: a leave, or its page closing), `disconnected` (its
/// connection dropped: it may come back in a moment under a new socket id)
/// or `removed` (the host or an administrator took it out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    Left,
    Disconnected,
    Removed,
}

impl Departure {
    /// The last argument of `peer_left` and `bye`.
    pub fn payload(self) -> Value {
        let reason = match self {
            Departure::Left => "left",
            Departure::Disconnected => "disconnected",
            Departure::Removed => "removed",
        };
        json!({ "reason": reason })
    }
}

/// An entry of the public room list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoomInfo {
    pub name: String,
    pub count: usize,
}

/// The `code` of a failed acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    InvalidRoom,
    InvalidNickname,
    InvalidMessage,
    NotInRoom,
    NotInCall,
    RoomFull,
    RateLimited,
    Internal,
    /// The store could not tell whether a message was stored (its disk is full).
    Unconfirmed,
    /// A service the request needs does not run here (the media server).
    Unavailable,
    /// The room has a password and none was given.
    PasswordRequired,
    /// The password given is not the room's.
    WrongPassword,
    /// Only the room's host may do that.
    NotHost,
    /// The host removed this session from the room, for a while.
    Removed,
    /// The room is locked.
    RoomLocked,
    /// The room has a lobby: wait for the host (`admission`).
    InLobby,
}

impl ErrorCode {
    /// Every code, for reading one back from its name.
    const ALL: [ErrorCode; 17] = [
        ErrorCode::InvalidArgument,
        ErrorCode::InvalidRoom,
        ErrorCode::InvalidNickname,
        ErrorCode::InvalidMessage,
        ErrorCode::NotInRoom,
        ErrorCode::NotInCall,
        ErrorCode::RoomFull,
        ErrorCode::RateLimited,
        ErrorCode::Internal,
        ErrorCode::Unconfirmed,
        ErrorCode::Unavailable,
        ErrorCode::PasswordRequired,
        ErrorCode::WrongPassword,
        ErrorCode::NotHost,
        ErrorCode::Removed,
        ErrorCode::RoomLocked,
        ErrorCode::InLobby,
    ];

    /// The code named `name` (as another node sent it), if there is one.
    pub fn named(name: &str) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::InvalidNickname => "invalid_nickname",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::NotInCall => "not_in_call",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
            ErrorCode::Unconfirmed => "unconfirmed",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::PasswordRequired => "password_required",
            ErrorCode::WrongPassword => "wrong_password",
            ErrorCode::NotHost => "not_host",
            ErrorCode::Removed => "removed",
            ErrorCode::RoomLocked => "room_locked",
            ErrorCode::InLobby => "in_lobby",
        }
    }
}

/// A request that failed: a code from the contract and a human message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    pub fn to_ack(&self) -> Value {
        json!({ "ok": false, "error": { "code": self.code.as_str(), "message": self.message } })
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::NoSuchRoom => ApiError::new(ErrorCode::InvalidRoom, "no such room"),
            // Refused before anything was written: say why, and that nothing happened.
            StoreError::DiskFull { .. } => {
                tracing::warn!(error = %e, "a write was refused");
                ApiError::new(
                    ErrorCode::Internal,
                    "the server's disk is full: nothing was stored; try again later",
                )
            }
            // (Its reason, which names the database's address, stays in the log.)
            StoreError::Unavailable { .. } => {
                tracing::warn!(error = %e, "a store operation was refused");
                ApiError::new(
                    ErrorCode::Internal,
                    "the server's store is unavailable: nothing was stored; try again later",
                )
            }
            other => {
                tracing::error!(error = %other, "store error while serving a request");
                ApiError::new(
                    ErrorCode::Internal,
                    "the server could not store or read data",
                )
            }
        }
    }
}

/// What a request handler answers: an ack object, or the room list's shared
/// JSON (sent as is, never encoded again per request).
pub enum Reply {
    Value(Value),
    Rooms(std::sync::Arc<super::directory::Snapshot>),
}

impl From<Value> for Reply {
    fn from(v: Value) -> Self {
        Reply::Value(v)
    }
}

impl Serialize for Reply {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Reply::Value(v) => v.serialize(s),
            Reply::Rooms(list) => {
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("ok", &true)?;
                map.serialize_entry("rooms", &*list.json)?;
                map.end()
            }
        }
    }
}

/// A successful acknowledgement: `{ ok: true, ...fields }`.
pub fn ok(fields: Value) -> Value {
    match fields {
        Value::Object(mut map) => {
            map.insert("ok".into(), Value::Bool(true));
            Value::Object(map)
        }
        _ => json!({ "ok": true }),
    }
}

/// All arguments of an event, whatever their number and types.
///
/// socketioxide hands a tuple type every argument of the event and any other
/// type only the first; this type asks for a tuple and accepts any length, so the
/// handlers can answer a wrong count or type with `invalid_argument` instead of
/// being skipped silently.
#[derive(Debug, Default, Clone)]
pub struct Args(pub Vec<Value>);

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Args;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("event arguments")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Args, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Value>()? {
                    out.push(v);
                }
                Ok(Args(out))
            }
        }
        d.deserialize_tuple(usize::MAX, Visitor)
    }
}

impl Args {
    /// Argument `i` as a string, or `invalid_argument` naming `what`.
    pub fn str(&self, i: usize, what: &str) -> Result<&str, ApiError> {
        match self.0.get(i) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(ApiError::invalid_argument(format!(
                "{what} must be a string"
            ))),
            None => Err(ApiError::invalid_argument(format!(
                "missing argument: {what}"
            ))),
        }
    }

    /// Argument `i` as an object, absent or `null` meaning empty.
    pub fn opt_object(
        &self,
        i: usize,
        what: &str,
    ) -> Result<serde_json::Map<String, Value>, ApiError> {
        match self.0.get(i) {
            None | Some(Value::Null) => Ok(serde_json::Map::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(_) => Err(ApiError::invalid_argument(format!(
                "{what} must be an object"
            ))),
        }
    }

    /// Argument `i` as a required object.
    pub fn object(
        &self,
        i: usize,
        what: &str,
    ) -> Result<&serde_json::Map<String, Value>, ApiError> {
        match self.0.get(i) {
            Some(Value::Object(m)) => Ok(m),
            Some(_) => Err(ApiError::invalid_argument(format!(
                "{what} must be an object"
            ))),
            None => Err(ApiError::invalid_argument(format!(
                "missing argument: {what}"
            ))),
        }
    }
}

/// Reads an optional non-negative integer field of an options object.
/// An optional boolean field: absent or `null` is `None`.
pub fn opt_bool(
    map: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<bool>, ApiError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| ApiError::invalid_argument(format!("`{field}` must be a boolean"))),
    }
}

/// A boolean field that must be there.
pub fn bool_field(map: &serde_json::Map<String, Value>, field: &str) -> Result<bool, ApiError> {
    opt_bool(map, field)?
        .ok_or_else(|| ApiError::invalid_argument(format!("`{field}` must be a boolean")))
}

pub fn opt_u64(map: &serde_json::Map<String, Value>, field: &str) -> Result<Option<u64>, ApiError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::invalid_argument(format!("`{field}` must be a non-negative integer"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    /// A refusal from another node is read back to the code it was sent
    /// as, for every code (none shares another's name).
    #[test]
    fn every_error_code_is_read_back_from_its_name() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::named(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::named("no_such_code"), None);
    }
}
