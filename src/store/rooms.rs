//! Rooms: the persisted room records and the in-memory index of their counters.
//!
//! A room's `seq` counter is never stored on its own on the hot path: the newest
//! message key *is* the counter, so a message and its seq are one atomic write.
//! The room record keeps `seq_floor`, raised before retention deletes messages, so
//! that a room emptied by retention never hands out a seq again.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::messages::{self, HistoryQuery, Message};

/// What the rest of the server sees of a stored room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomMeta {
    pub name: String,
    pub created: i64,
    /// Last entry or message, ms since the Unix epoch.
    pub last_activity: i64,
    /// Highest seq handed out so far (0 when the room never had a message).
    pub last_seq: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Record {
    created: i64,
    last_activity: i64,
    seq_floor: u64,
}

#[derive(Debug, Clone, Copy)]
struct Counters {
    created: i64,
    last_activity: i64,
    last_seq: u64,
    /// `seq_floor` as persisted in the record.
    floor: u64,
}

pub struct Rooms {
    records: sled::Tree,
    pub(super) messages: sled::Tree,
    index: Mutex<HashMap<String, Counters>>,
}

impl Rooms {
    /// Loads the index: one record read and one reverse seek per room.
    pub fn open(records: sled::Tree, messages: sled::Tree) -> Result<Self, StoreError> {
        let mut index = HashMap::new();
        for item in records.iter() {
            let (name, raw) = item?;
            let name = String::from_utf8(name.to_vec()).map_err(|_| StoreError::Corrupt {
                tree: "rooms",
                reason: "room name is not UTF-8".into(),
            })?;
            let record = decode(&raw)?;
            let (start, end) = messages::room_range(&name);
            let mut counters = Counters {
                created: record.created,
                last_activity: record.last_activity,
                last_seq: record.seq_floor,
                floor: record.seq_floor,
            };
            if let Some(item) = messages.range(start..end).next_back() {
                let (k, v) = item?;
                counters.last_seq = counters.last_seq.max(messages::seq_of(&k)?);
                counters.last_activity = counters.last_activity.max(messages::ts_of(&v)?);
            }
            index.insert(name, counters);
        }
        Ok(Self {
            records,
            messages,
            index: Mutex::new(index),
        })
    }

    pub fn touch(&self, name: &str, now_ms: i64) -> Result<RoomMeta, StoreError> {
        let mut index = self.index.lock();
        let counters = match index.get_mut(name) {
            Some(c) => {
                c.last_activity = c.last_activity.max(now_ms);
                *c
            }
            None => {
                let c = Counters {
                    created: now_ms,
                    last_activity: now_ms,
                    last_seq: 0,
                    floor: 0,
                };
                index.insert(name.to_string(), c);
                c
            }
        };
        self.records.insert(name.as_bytes(), encode(&counters))?;
        Ok(meta(name, &counters))
    }

    pub fn get(&self, name: &str) -> Option<RoomMeta> {
        self.index.lock().get(name).map(|c| meta(name, c))
    }

    pub fn all(&self) -> Vec<RoomMeta> {
        self.index.lock().iter().map(|(n, c)| meta(n, c)).collect()
    }

    pub fn len(&self) -> usize {
        self.index.lock().len()
    }

    /// Writes the message under the next seq and calls `queued` with it while the
    /// room is still locked, so that queue order is seq order.
    pub fn append(
        &self,
        room: &str,
        user: &str,
        nickname: &str,
        text: &str,
        now_ms: i64,
        queued: impl FnOnce(&Message),
    ) -> Result<Message, StoreError> {
        let mut index = self.index.lock();
        let counters = index.get_mut(room).ok_or(StoreError::NoSuchRoom)?;
        let seq = counters.last_seq + 1;
        let value = messages::encode(user, nickname, text, now_ms);
        self.messages.insert(messages::key(room, seq), value)?;
        counters.last_seq = seq;
        counters.last_activity = counters.last_activity.max(now_ms);
        let message = Message {
            room: room.to_string(),
            seq,
            user: user.to_string(),
            nickname: nickname.to_string(),
            text: text.to_string(),
            ts: now_ms,
        };
        queued(&message);
        Ok(message)
    }

    pub fn history(&self, room: &str, query: HistoryQuery) -> Result<Vec<Message>, StoreError> {
        if !self.index.lock().contains_key(room) {
            return Err(StoreError::NoSuchRoom);
        }
        messages::page(&self.messages, room, query)
    }

    /// Forgets rooms that never held a message (so have no seq to protect), saw no
    /// activity since `idle_before` and are not in `live`; returns how many went.
    pub fn prune_idle(
        &self,
        idle_before: i64,
        live: &std::collections::HashSet<String>,
    ) -> Result<u64, StoreError> {
        let mut index = self.index.lock();
        let doomed: Vec<String> = index
            .iter()
            .filter(|(name, c)| {
                c.last_seq == 0
                    && c.floor == 0
                    && c.last_activity < idle_before
                    && !live.contains(*name)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &doomed {
            self.records.remove(name.as_bytes())?;
            index.remove(name);
        }
        Ok(doomed.len() as u64)
    }

    /// Persists `seq_floor = last_seq` for `room` before some of its messages are
    /// deleted; returns the room's last seq.
    pub fn raise_floor(&self, room: &str) -> Result<u64, StoreError> {
        let mut index = self.index.lock();
        let counters = index.get_mut(room).ok_or(StoreError::NoSuchRoom)?;
        if counters.floor < counters.last_seq {
            counters.floor = counters.last_seq;
            self.records.insert(room.as_bytes(), encode(counters))?;
        }
        Ok(counters.last_seq)
    }
}

fn meta(name: &str, c: &Counters) -> RoomMeta {
    RoomMeta {
        name: name.to_string(),
        created: c.created,
        last_activity: c.last_activity,
        last_seq: c.last_seq,
    }
}

fn encode(c: &Counters) -> Vec<u8> {
    let record = Record {
        created: c.created,
        last_activity: c.last_activity,
        seq_floor: c.floor,
    };
    serde_json::to_vec(&record).unwrap_or_default()
}

fn decode(raw: &[u8]) -> Result<Record, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt {
        tree: "rooms",
        reason: e.to_string(),
    })
}
