//! Chat messages on disk: key layout and history queries.
//!
//! A message's key is `room name ++ 0x00 ++ seq (u64, big endian)`. Room names
//! never hold control characters, so the separator keeps rooms apart, and the
//! big-endian seq sorts numerically: a page of history is one range read, and the
//! newest message of a room is one reverse seek, however long the history is.

use serde::{Deserialize, Serialize};

use crate::store::StoreError;
use crate::store::model::{HistoryQuery, Message};

/// What is stored under a message key (room and seq are in the key).
#[derive(Serialize, Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    u: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    n: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    t: std::borrow::Cow<'a, str>,
    ts: i64,
}

pub fn key(room: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(room.len() + 9);
    key.extend_from_slice(room.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The key range holding every message of `room`.
pub fn room_range(room: &str) -> (Vec<u8>, Vec<u8>) {
    let mut start = Vec::with_capacity(room.len() + 1);
    start.extend_from_slice(room.as_bytes());
    let mut end = start.clone();
    start.push(0);
    end.push(1);
    (start, end)
}

pub fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    key.len()
        .checked_sub(8)
        .and_then(|at| <[u8; 8]>::try_from(&key[at..]).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt {
            tree: "messages",
            reason: "key shorter than a seq".into(),
        })
}

pub fn encode(user: &str, nickname: &str, text: &str, ts: i64) -> Vec<u8> {
    let record = Record {
        u: user.into(),
        n: nickname.into(),
        t: text.into(),
        ts,
    };
    serde_json::to_vec(&record).unwrap_or_default()
}

pub fn decode(room: &str, key: &[u8], value: &[u8]) -> Result<Message, StoreError> {
    let record: Record<'_> = serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        tree: "messages",
        reason: e.to_string(),
    })?;
    Ok(Message {
        room: room.to_string(),
        seq: seq_of(key)?,
        user: record.u.into_owned(),
        nickname: record.n.into_owned(),
        text: record.t.into_owned(),
        ts: record.ts,
    })
}

/// Timestamp of a stored message, without building the whole message.
pub fn ts_of(value: &[u8]) -> Result<i64, StoreError> {
    #[derive(Deserialize)]
    struct Ts {
        ts: i64,
    }
    serde_json::from_slice::<Ts>(value)
        .map(|t| t.ts)
        .map_err(|e| StoreError::Corrupt {
            tree: "messages",
            reason: e.to_string(),
        })
}

/// Reads one page of a room's history.
pub fn page(tree: &sled::Tree, room: &str, q: HistoryQuery) -> Result<Vec<Message>, StoreError> {
    let low = key(room, q.after.map_or(0, |a| a.saturating_add(1)));
    let high = match q.before {
        Some(b) => key(room, b),
        None => room_range(room).1,
    };
    if low >= high || q.limit == 0 {
        return Ok(Vec::new());
    }
    let range = tree.range(low..high);
    let mut out = Vec::with_capacity(q.limit.min(256));
    if q.after.is_some() {
        for item in range.take(q.limit) {
            let (k, v) = item?;
            out.push(decode(room, &k, &v)?);
        }
    } else {
        for item in range.rev().take(q.limit) {
            let (k, v) = item?;
            out.push(decode(room, &k, &v)?);
        }
        out.reverse();
    }
    Ok(out)
}
