//! The public room list, kept up to date incrementally.
//!
//! Every room the server knows is in an ordered index (most members first,
//! then most recently active, then by name), updated when a count or an
//! activity time changes: O(log rooms) per change. The list people see is the
//! index's head: rooms with members now, or with history and activity within
//! `rooms.active_window_secs` (an empty room nobody wrote in leaves the list
//! with its last member), at most `rooms.list_max` of them and at most
//! `max_bytes` of JSON. It is built once per change and kept encoded, so a
//! connect, a `rooms` request or `GET /api/rooms` costs a copy of a shared
//! buffer, not a pass over every room ever created. Unlisted rooms never
//! enter the index.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde_json::value::RawValue;

use super::protocol::RoomInfo;

/// What the index knows of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    count: usize,
    activity: i64,
    /// It has messages: listed while idle (within the active window) too.
    history: bool,
}

impl Entry {
    /// Members now, or messages (then listed while recently active).
    fn listable(&self) -> bool {
        self.count > 0 || self.history
    }
}

/// Sort key: the list's order.
type Key = (Reverse<usize>, Reverse<i64>, String);

fn key(name: &str, e: Entry) -> Key {
    (Reverse(e.count), Reverse(e.activity), name.to_string())
}

/// The room list as sent: its entries and their JSON, shared.
#[derive(Debug)]
pub struct Snapshot {
    pub rooms: Vec<RoomInfo>,
    pub json: Box<RawValue>,
    /// Changes whenever the list's contents change.
    pub version: u64,
}

pub struct Directory {
    window_ms: i64,
    list_max: usize,
    max_bytes: usize,
    rooms: HashMap<String, Entry>,
    order: BTreeSet<Key>,
    /// Unlisted rooms: never indexed.
    hidden: HashSet<String>,
    /// Bumped by every change to the index.
    changes: u64,
    cache: Option<Cached>,
}

struct Cached {
    /// `changes` when it was built.
    changes: u64,
    /// When its oldest idle room leaves the active window (ms since the epoch).
    valid_until: i64,
    snapshot: Arc<Snapshot>,
}

impl Directory {
    pub fn new(window_ms: i64, list_max: usize, max_bytes: usize) -> Self {
        Self {
            window_ms,
            list_max,
            max_bytes,
            rooms: HashMap::new(),
            order: BTreeSet::new(),
            hidden: HashSet::new(),
            changes: 0,
            cache: None,
        }
    }

    fn update(&mut self, name: &str, change: impl FnOnce(&mut Entry)) {
        if self.hidden.contains(name) {
            return;
        }
        let before = self.rooms.get(name).copied();
        let mut entry = before.unwrap_or(Entry {
            count: 0,
            activity: 0,
            history: false,
        });
        change(&mut entry);
        if before == Some(entry) {
            return;
        }
        // Only rooms that can be listed are ordered: an empty room nobody
        // wrote in costs nothing when the list is built.
        if let Some(old) = before.filter(Entry::listable) {
            self.order.remove(&key(name, old));
        }
        if entry.listable() {
            self.order.insert(key(name, entry));
        }
        self.rooms.insert(name.to_string(), entry);
        self.changes += 1;
    }

    /// A room the store knows (at start), with its last activity and
    /// whether it has messages.
    pub fn insert(&mut self, name: &str, activity: i64, history: bool) {
        self.update(name, |e| {
            e.activity = e.activity.max(activity);
            e.history = history;
        });
    }

    /// `name` got a message at `at`.
    pub fn message(&mut self, name: &str, at: i64) {
        self.update(name, |e| {
            e.activity = e.activity.max(at);
            e.history = true;
        });
    }

    /// `name`'s history was deleted.
    pub fn history_cleared(&mut self, name: &str) {
        self.update(name, |e| e.history = false);
    }

    /// `name` is unlisted: out of the list, for good.
    pub fn hide(&mut self, name: &str) {
        self.remove(name);
        self.hidden.insert(name.to_string());
    }

    /// The number of sockets in `name` now.
    pub fn set_count(&mut self, name: &str, count: usize) {
        self.update(name, |e| e.count = count);
    }

    /// `name` saw activity (an entry or a message) at `at`.
    pub fn touch(&mut self, name: &str, at: i64) {
        self.update(name, |e| e.activity = e.activity.max(at));
    }

    /// `name` was closed by an administrator: unlisted until entered again.
    pub fn close(&mut self, name: &str) {
        self.update(name, |e| e.activity = 0);
    }

    /// `name` is gone from the store (its name may be used again, listed).
    pub fn forget(&mut self, name: &str) {
        self.hidden.remove(name);
        self.remove(name);
    }

    fn remove(&mut self, name: &str) {
        if let Some(old) = self.rooms.remove(name) {
            if old.listable() {
                self.order.remove(&key(name, old));
            }
            self.changes += 1;
        }
    }

    /// The list at `now_ms`: built again only after a change, or when a room
    /// in it has aged out of the active window.
    pub fn snapshot(&mut self, now_ms: i64) -> Arc<Snapshot> {
        if let Some(c) = &self.cache
            && c.changes == self.changes
            && now_ms < c.valid_until
        {
            return c.snapshot.clone();
        }
        let since = now_ms.saturating_sub(self.window_ms);
        let mut rooms = Vec::new();
        let mut valid_until = i64::MAX;
        // `[` and `]` plus a comma between entries.
        let mut bytes = 2usize;
        for (Reverse(count), Reverse(activity), name) in &self.order {
            if *count == 0 && *activity < since {
                // Every later room is idle and older still.
                break;
            }
            if rooms.len() >= self.list_max {
                break;
            }
            let info = RoomInfo {
                name: name.clone(),
                count: *count,
            };
            let size = serde_json::to_string(&info).map_or(0, |s| s.len()) + 1;
            if bytes + size > self.max_bytes {
                break;
            }
            bytes += size;
            if *count == 0 {
                valid_until = valid_until.min(activity.saturating_add(self.window_ms));
            }
            rooms.push(info);
        }
        let version = match &self.cache {
            Some(c) if c.snapshot.rooms == rooms => c.snapshot.version,
            Some(c) => c.snapshot.version + 1,
            None => 1,
        };
        let json = serde_json::to_string(&rooms)
            .ok()
            .and_then(|s| RawValue::from_string(s).ok())
            .unwrap_or_default();
        let snapshot = Arc::new(Snapshot {
            rooms,
            json,
            version,
        });
        self.cache = Some(Cached {
            changes: self.changes,
            valid_until,
            snapshot: snapshot.clone(),
        });
        snapshot
    }

    /// Rooms in the index.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// True when the index is empty.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn order_window_cap_and_cache() {
        let mut d = Directory::new(24 * HOUR, 3, 64 * 1024);
        let now = 100 * HOUR;
        d.insert("old", now - 48 * HOUR, true);
        d.insert("recent", now - HOUR, true);
        d.insert("newer", now - 1000, true);
        d.set_count("busy", 2);
        d.message("busy", now - 2 * HOUR);
        let s = d.snapshot(now);
        let names: Vec<&str> = s.rooms.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["busy", "newer", "recent"]);
        assert_eq!(
            s.json.get(),
            r#"[{"name":"busy","count":2},{"name":"newer","count":0},{"name":"recent","count":0}]"#
        );
        // Unchanged: the same shared snapshot.
        assert!(Arc::ptr_eq(&s, &d.snapshot(now + 1)));
        // "recent" ages out after 23 hours: rebuilt, new version.
        let later = d.snapshot(now + 23 * HOUR + 1);
        assert_eq!(later.rooms.len(), 2);
        assert!(later.version > s.version);
        // A change that does not alter the list keeps the version.
        d.touch("old", now - 47 * HOUR);
        assert_eq!(d.snapshot(now + 23 * HOUR + 2).version, later.version);
        d.close("newer");
        d.set_count("busy", 0);
        let names: Vec<String> = d
            .snapshot(now + 1)
            .rooms
            .iter()
            .map(|r| r.name.clone())
            .collect();
        assert_eq!(names, ["recent", "busy"]);
        d.forget("recent");
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn unlisted_and_never_written_rooms_stay_out_of_the_list() {
        let mut d = Directory::new(24 * HOUR, 10, 64 * 1024);
        let now = 100 * HOUR;
        // Entered and left without a word: listed only while someone is in.
        d.set_count("quiet", 1);
        d.touch("quiet", now);
        assert_eq!(d.snapshot(now).rooms.len(), 1);
        d.set_count("quiet", 0);
        assert!(d.snapshot(now).rooms.is_empty());
        // A message keeps it listed while idle; clearing the history does not.
        d.message("quiet", now);
        assert_eq!(d.snapshot(now).rooms.len(), 1);
        d.history_cleared("quiet");
        assert!(d.snapshot(now).rooms.is_empty());
        // Unlisted: never, with members or messages.
        d.hide("secret");
        d.set_count("secret", 3);
        d.message("secret", now);
        assert!(d.snapshot(now).rooms.is_empty());
        assert_eq!(d.len(), 1);
        // Forgotten by retention, the name is free to be listed again.
        d.forget("secret");
        d.set_count("secret", 1);
        assert_eq!(d.snapshot(now).rooms.len(), 1);
    }

    #[test]
    fn the_list_fits_in_max_bytes() {
        let mut d = Directory::new(HOUR, 1000, 100);
        for i in 0..50 {
            d.insert(&format!("room-{i:02}"), 1000 + i, true);
        }
        let s = d.snapshot(2000);
        assert!(s.json.get().len() <= 100, "{}", s.json.get());
        assert!(!s.rooms.is_empty());
    }
}
