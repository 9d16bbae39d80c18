//! Rooms: the persisted room records and the in-memory index of their counters.
//!
//! A room's `seq` counter is never stored on its own on the hot path: the newest
//! message key *is* the counter, so a message and its seq are one atomic write.
//! The room record keeps `seq_floor`, raised before retention deletes messages, so
//! that a room emptied by retention never hands out a seq again.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::messages;
use crate::store::StoreError;
use crate::store::model::{CLOSED, HistoryQuery, Message, Moderation, NewMessage, RoomMeta};

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Record {
    created: i64,
    last_activity: i64,
    seq_floor: u64,
    /// Never in the public room list (absent in records written before).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    unlisted: bool,
}

#[derive(Debug, Clone, Copy)]
struct Counters {
    created: i64,
    last_activity: i64,
    last_seq: u64,
    /// `seq_floor` as persisted in the record.
    floor: u64,
    /// Messages stored, once counted (counting reads the whole history, so it
    /// happens on first demand, not at start-up); kept exact afterwards.
    stored: Option<u64>,
    /// Bumped by every deletion, so a count taken meanwhile is thrown away.
    deletions: u64,
    /// Highest seq known durable: history never shows a message past it, so
    /// nobody reads a message that a failed flush could take back (and whose
    /// seq would then be handed out again).
    durable: u64,
    /// The room's newest message could not be read at start: its seq counter
    /// is unknown, so nothing is appended to it.
    damaged: bool,
    unlisted: bool,
}

pub struct Rooms {
    records: sled::Tree,
    pub(super) messages: sled::Tree,
    index: Mutex<HashMap<String, Counters>>,
    /// Room name -> the Argon2id hash of its password (rooms that have one).
    passwords: sled::Tree,
    /// Room name -> its [`Moderation`] as JSON (rooms that have a host).
    moderation: sled::Tree,
}

impl Rooms {
    /// Loads the index: one record read and one reverse seek per room, which
    /// also checks that every room's newest message is readable. A room whose
    /// newest message is not is listed in the second value (and refuses
    /// appends); an unreadable room index fails the whole open.
    pub fn open(
        records: sled::Tree,
        messages: sled::Tree,
        passwords: sled::Tree,
        moderation: sled::Tree,
    ) -> Result<(Self, Vec<String>), StoreError> {
        let mut index = HashMap::new();
        let mut damaged = Vec::new();
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
                stored: None,
                deletions: 0,
                durable: 0,
                damaged: false,
                unlisted: record.unlisted,
            };
            let newest = messages.range(start..end).next_back().map(|item| {
                let (k, v) = item?;
                Ok::<_, StoreError>((messages::seq_of(&k)?, messages::ts_of(&v)?))
            });
            match newest {
                None => {}
                Some(Ok((seq, ts))) => {
                    counters.last_seq = counters.last_seq.max(seq);
                    counters.last_activity = counters.last_activity.max(ts);
                }
                Some(Err(e)) => {
                    tracing::error!(room = %name, error = %e, "the newest message of this room cannot be read: the room refuses new messages");
                    counters.damaged = true;
                    damaged.push(name.clone());
                }
            }
            // Everything on disk at open is durable.
            counters.durable = counters.last_seq;
            index.insert(name, counters);
        }
        Ok((
            Self {
                records,
                messages,
                index: Mutex::new(index),
                passwords,
                moderation,
            },
            damaged,
        ))
    }

    pub fn touch(&self, name: &str, now_ms: i64) -> Result<RoomMeta, StoreError> {
        let mut index = self.index.lock();
        let counters = match index.get_mut(name) {
            Some(c) => {
                c.last_activity = c.last_activity.max(now_ms);
                *c
            }
            None => {
                let c = Counters::new(now_ms);
                index.insert(name.to_string(), c);
                c
            }
        };
        self.records.insert(name.as_bytes(), encode(&counters))?;
        Ok(meta(name, &counters))
    }

    /// Gives `name` a password (its Argon2id hash).
    pub fn set_password(&self, name: &str, hash: &str) -> Result<(), StoreError> {
        if !self.index.lock().contains_key(name) {
            return Err(StoreError::NoSuchRoom);
        }
        self.passwords.insert(name.as_bytes(), hash.as_bytes())?;
        Ok(())
    }

    /// The hash of `name`'s password, if it has one.
    pub fn password(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .passwords
            .get(name.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// `name`'s moderation record; the default when it has none.
    pub fn moderation(&self, name: &str) -> Result<Moderation, StoreError> {
        match self.moderation.get(name.as_bytes())? {
            None => Ok(Moderation::default()),
            Some(raw) => serde_json::from_slice(&raw).map_err(|e| StoreError::Corrupt {
                tree: "room_moderation",
                reason: format!("room `{name}`: {e}"),
            }),
        }
    }

    /// Replaces `name`'s moderation record.
    pub fn set_moderation(&self, name: &str, moderation: &Moderation) -> Result<(), StoreError> {
        if !self.index.lock().contains_key(name) {
            return Err(StoreError::NoSuchRoom);
        }
        let raw = serde_json::to_vec(moderation).map_err(|e| StoreError::Corrupt {
            tree: "room_moderation",
            reason: e.to_string(),
        })?;
        self.moderation.insert(name.as_bytes(), raw)?;
        Ok(())
    }

    /// Takes `name` out of the public list for good.
    pub fn set_unlisted(&self, name: &str) -> Result<(), StoreError> {
        let mut index = self.index.lock();
        let Some(c) = index.get_mut(name) else {
            return Ok(());
        };
        c.unlisted = true;
        self.records.insert(name.as_bytes(), encode(c))?;
        Ok(())
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
    /// room is still locked, so that queue order is seq order. A room the
    /// index does not know (its record was lost with a failed flush) is
    /// created again.
    pub fn append(
        &self,
        new: &NewMessage,
        queued: impl FnOnce(&Message),
    ) -> Result<Message, StoreError> {
        let room = new.room.as_str();
        let mut index = self.index.lock();
        if !index.contains_key(room) {
            let c = Counters::new(new.ts);
            self.records.insert(room.as_bytes(), encode(&c))?;
            index.insert(room.to_string(), c);
        }
        let counters = index.get_mut(room).ok_or(StoreError::NoSuchRoom)?;
        if counters.damaged {
            return Err(StoreError::Corrupt {
                tree: "messages",
                reason: format!("the newest message of room `{room}` cannot be read"),
            });
        }
        let seq = counters.last_seq + 1;
        let value = messages::encode(&new.user, &new.nickname, &new.text, new.ts);
        self.messages.insert(messages::key(room, seq), value)?;
        counters.last_seq = seq;
        counters.last_activity = counters.last_activity.max(new.ts);
        if let Some(n) = &mut counters.stored {
            *n += 1;
        }
        let message = Message {
            room: room.to_string(),
            seq,
            user: new.user.clone(),
            nickname: new.nickname.clone(),
            text: new.text.clone(),
            ts: new.ts,
        };
        queued(&message);
        Ok(message)
    }

    /// A page of history, never past the room's durable seq.
    pub fn history(&self, room: &str, mut query: HistoryQuery) -> Result<Vec<Message>, StoreError> {
        let durable = self
            .index
            .lock()
            .get(room)
            .map(|c| c.durable)
            .ok_or(StoreError::NoSuchRoom)?;
        let limit = durable.saturating_add(1);
        query.before = Some(query.before.map_or(limit, |b| b.min(limit)));
        messages::page(&self.messages, room, query)
    }

    /// Notes that `room`'s messages up to `seq` are durable.
    pub fn mark_durable(&self, room: &str, seq: u64) {
        if let Some(c) = self.index.lock().get_mut(room) {
            c.durable = c.durable.max(seq);
        }
    }

    /// Reads every message of `room`: how many, and where the first damaged
    /// one is (the scan stops there: sled's iterators do not move past an error).
    pub fn scan(&self, room: &str) -> (u64, Option<String>) {
        let (start, end) = messages::room_range(room);
        let mut n = 0u64;
        let mut last = 0u64;
        for item in self.messages.range(start..end) {
            let checked = item
                .map_err(StoreError::from)
                .and_then(|(k, v)| messages::decode(room, &k, &v));
            match checked {
                Ok(m) => {
                    n += 1;
                    last = m.seq;
                }
                Err(e) => {
                    return (
                        n,
                        Some(format!("room `{room}`, messages after seq {last} ({e})")),
                    );
                }
            }
        }
        (n, None)
    }

    /// The stored message `seq` of `room`, if it is there.
    pub fn find(&self, room: &str, seq: u64) -> Result<Option<Message>, StoreError> {
        match self.messages.get(messages::key(room, seq))? {
            Some(v) => Ok(Some(messages::decode(room, &messages::key(room, seq), &v)?)),
            None => Ok(None),
        }
    }

    /// Forgets rooms that never held a message (so have no seq to protect), saw no
    /// activity since `idle_before` and are not in `live`; returns their names.
    pub fn prune_idle(
        &self,
        idle_before: i64,
        live: &std::collections::HashSet<String>,
    ) -> Result<Vec<String>, StoreError> {
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
            self.passwords.remove(name.as_bytes())?;
            self.moderation.remove(name.as_bytes())?;
            index.remove(name);
        }
        Ok(doomed)
    }

    /// How many messages `room` holds. The first call per room counts them
    /// (without blocking writers); later calls read the maintained number.
    pub fn stored(&self, room: &str) -> Result<u64, StoreError> {
        let (upto, deletions) = {
            let index = self.index.lock();
            let c = index.get(room).ok_or(StoreError::NoSuchRoom)?;
            if let Some(n) = c.stored {
                return Ok(n);
            }
            (c.last_seq, c.deletions)
        };
        // Every message up to `upto` is in the tree: appends write it before
        // raising `last_seq`, under the index lock.
        let (start, _) = messages::room_range(room);
        let end = messages::key(room, upto.saturating_add(1));
        let mut counted = 0u64;
        for item in self.messages.range(start..end) {
            item?;
            counted += 1;
        }
        let mut index = self.index.lock();
        let c = index.get_mut(room).ok_or(StoreError::NoSuchRoom)?;
        // Appends since the snapshot each added one message after `upto`.
        let total = counted + (c.last_seq - upto);
        if c.deletions == deletions {
            c.stored = Some(total);
        }
        Ok(total)
    }

    /// Records that `n` messages of `room` were deleted.
    fn deleted(&self, room: &str, n: u64) {
        if let Some(c) = self.index.lock().get_mut(room) {
            c.deletions += 1;
            c.stored = c.stored.map(|s| s.saturating_sub(n));
        }
    }

    /// Deletes every message of `room` (its seqs are never handed out again);
    /// returns how many went.
    pub fn clear(&self, room: &str) -> Result<u64, StoreError> {
        self.raise_floor(room)?;
        let (start, end) = messages::room_range(room);
        let mut removed = 0u64;
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0u64;
            for item in self.messages.range(start.clone()..end.clone()).take(10_000) {
                let (k, _) = item?;
                batch.remove(k);
                n += 1;
            }
            if n == 0 {
                break;
            }
            self.messages.apply_batch(batch)?;
            removed += n;
        }
        self.deleted(room, removed);
        Ok(removed)
    }

    /// Deletes one message; `false` when there was none with that seq.
    pub fn delete_message(&self, room: &str, seq: u64) -> Result<bool, StoreError> {
        self.raise_floor(room)?;
        let gone = self.messages.remove(messages::key(room, seq))?.is_some();
        if gone {
            self.deleted(room, 1);
        }
        Ok(gone)
    }

    /// Empties `room` and takes it off the lists until someone enters it again.
    /// Its record stays (with the seq floor), so seqs keep growing if it reopens.
    pub fn close(&self, room: &str) -> Result<u64, StoreError> {
        let removed = self.clear(room)?;
        // Reopened, it is a new room: its next entrant is its host.
        self.moderation.remove(room.as_bytes())?;
        let mut index = self.index.lock();
        let c = index.get_mut(room).ok_or(StoreError::NoSuchRoom)?;
        c.last_activity = CLOSED;
        self.records.insert(room.as_bytes(), encode(c))?;
        Ok(removed)
    }

    /// Called by retention after it deleted `n` messages of `room`.
    pub fn expired(&self, room: &str, n: u64) {
        self.deleted(room, n);
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

impl Counters {
    /// A new room with no message.
    fn new(now_ms: i64) -> Self {
        Counters {
            created: now_ms,
            last_activity: now_ms,
            last_seq: 0,
            floor: 0,
            stored: Some(0),
            deletions: 0,
            durable: 0,
            damaged: false,
            unlisted: false,
        }
    }
}

fn meta(name: &str, c: &Counters) -> RoomMeta {
    RoomMeta {
        name: name.to_string(),
        created: c.created,
        last_activity: c.last_activity,
        last_seq: c.last_seq,
        unlisted: c.unlisted,
    }
}

fn encode(c: &Counters) -> Vec<u8> {
    let record = Record {
        created: c.created,
        last_activity: c.last_activity,
        seq_floor: c.floor,
        unlisted: c.unlisted,
    };
    serde_json::to_vec(&record).unwrap_or_default()
}

fn decode(raw: &[u8]) -> Result<Record, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt {
        tree: "rooms",
        reason: e.to_string(),
    })
}
