//! Sessions: the secret token a browser keeps, mapped to a public user id and a nickname.
//!
//! Only the SHA-256 of a token is stored, so a copy of the database does not
//! hand out working tokens. Each record carries when it was last seen; a
//! second tree indexes records by that time (`seen ++ key`), so expiring the
//! sessions unused for `store.session_ttl_secs` is one range scan, not a pass
//! over every session.

use crate::store::StoreError;
use crate::store::model::{Session, SessionKey};

/// Marks that the `seen` index was built for every record (once, for
/// databases written before it existed).
const INDEXED: &[u8] = b"\xffindexed";

pub struct SessionTrees {
    tree: sled::Tree,
    /// `seen (i64, big endian, offset so that it sorts) ++ key` -> empty.
    by_seen: sled::Tree,
}

fn seen_key(seen: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&((seen as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(key);
    k
}

impl SessionTrees {
    pub fn open(tree: sled::Tree, by_seen: sled::Tree) -> Result<Self, StoreError> {
        let sessions = Self { tree, by_seen };
        if sessions.by_seen.get(INDEXED)?.is_none() {
            let mut n = 0u64;
            for item in sessions.tree.iter() {
                let (key, raw) = item?;
                let s = decode(&raw)?;
                sessions
                    .by_seen
                    .insert(seen_key(s.seen.max(s.created), &key), &[])?;
                n += 1;
            }
            sessions.by_seen.insert(INDEXED, &[])?;
            if n > 0 {
                tracing::info!(sessions = n, "indexed stored sessions by last use");
            }
        }
        Ok(sessions)
    }

    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    pub fn get(&self, key: &SessionKey) -> Result<Option<Session>, StoreError> {
        match self.tree.get(key.bytes())? {
            Some(raw) => {
                let mut s = decode(&raw)?;
                s.seen = s.seen.max(s.created);
                Ok(Some(s))
            }
            None => Ok(None),
        }
    }

    /// Writes `session` under `key`; `previous_seen` is the `seen` of the
    /// record it replaces, if any (its index entry goes).
    pub fn put(
        &self,
        key: &SessionKey,
        session: &Session,
        previous_seen: Option<i64>,
    ) -> Result<(), StoreError> {
        if let Some(old) = previous_seen
            && old != session.seen
        {
            self.by_seen.remove(seen_key(old, key.bytes()))?;
        }
        self.tree.insert(key.bytes(), encode(session))?;
        self.by_seen
            .insert(seen_key(session.seen, key.bytes()), &[])?;
        Ok(())
    }

    /// Deletes the sessions last seen before `before` (at most `max` of
    /// them); returns how many went.
    pub fn expire(&self, before: i64, max: usize) -> Result<u64, StoreError> {
        let end = seen_key(before, &[]);
        let mut doomed = Vec::new();
        for item in self.by_seen.range(..end).take(max) {
            let (k, _) = item?;
            // Only index entries; the `INDEXED` marker has another length.
            if k.len() == 8 + 32 {
                doomed.push(k);
            }
        }
        for k in &doomed {
            self.tree.remove(&k[8..])?;
            self.by_seen.remove(k)?;
        }
        Ok(doomed.len() as u64)
    }

    /// Deletes every session of `user` (a full scan: an administrator's action).
    pub fn revoke_user(&self, user: &str) -> Result<u64, StoreError> {
        let mut doomed = Vec::new();
        for item in self.tree.iter() {
            let (key, raw) = item?;
            let s = decode(&raw)?;
            if s.user == user {
                doomed.push((key, s.seen.max(s.created)));
            }
        }
        for (key, seen) in &doomed {
            self.tree.remove(key)?;
            self.by_seen.remove(seen_key(*seen, key))?;
        }
        Ok(doomed.len() as u64)
    }
}

fn encode(session: &Session) -> Vec<u8> {
    // Serialising a struct of strings and integers cannot fail.
    serde_json::to_vec(session).unwrap_or_default()
}

fn decode(raw: &[u8]) -> Result<Session, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt {
        tree: "sessions",
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_keys_sort_by_time_including_negative() {
        assert!(seen_key(-5, b"a") < seen_key(0, b"a"));
        assert!(seen_key(0, b"z") < seen_key(1, b"a"));
        assert!(seen_key(1_700_000_000_000, b"") < seen_key(1_800_000_000_000, b""));
    }
}
