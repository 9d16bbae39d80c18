//! Sessions: the secret token a browser keeps, mapped to a public user id and a nickname.
//!
//! Only the SHA-256 of a token is stored, so a copy of the database does not
//! hand out working tokens.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::StoreError;

/// The stored identity behind a token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// Stable public id, safe to show to others.
    pub user: String,
    pub nickname: String,
    /// Creation time, ms since the Unix epoch.
    pub created: i64,
}

/// The hash of a token: the key of its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    pub fn of(token: &str) -> SessionKey {
        SessionKey(Sha256::digest(token.as_bytes()).into())
    }
}

#[derive(Clone)]
pub struct Sessions {
    tree: sled::Tree,
}

impl Sessions {
    pub fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }

    pub fn get(&self, token: &str) -> Result<Option<(SessionKey, Session)>, StoreError> {
        let key = SessionKey::of(token);
        match self.tree.get(key.0)? {
            Some(raw) => Ok(Some((key, decode(&raw)?))),
            None => Ok(None),
        }
    }

    /// Mints a new token and its session; returns the token (the only copy).
    pub fn create(&self, now_ms: i64) -> Result<(String, SessionKey, Session), StoreError> {
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
        };
        let key = SessionKey::of(&token);
        self.tree.insert(key.0, encode(&session))?;
        Ok((token, key, session))
    }

    pub fn set_nickname(&self, key: &SessionKey, nickname: &str) -> Result<Session, StoreError> {
        let raw = self.tree.get(key.0)?.ok_or(StoreError::Corrupt {
            tree: "sessions",
            reason: "session vanished".into(),
        })?;
        let mut session = decode(&raw)?;
        session.nickname = nickname.to_string();
        self.tree.insert(key.0, encode(&session))?;
        Ok(session)
    }

    /// Deletes every session of `user` (a full scan: an administrator's action).
    pub fn revoke_user(&self, user: &str) -> Result<u64, StoreError> {
        let mut doomed = Vec::new();
        for item in self.tree.iter() {
            let (key, raw) = item?;
            if decode(&raw)?.user == user {
                doomed.push(key);
            }
        }
        for key in &doomed {
            self.tree.remove(key)?;
        }
        Ok(doomed.len() as u64)
    }
}

fn encode(session: &Session) -> Vec<u8> {
    // Serialising a struct of strings and an integer cannot fail.
    serde_json::to_vec(session).unwrap_or_default()
}

fn decode(raw: &[u8]) -> Result<Session, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt {
        tree: "sessions",
        reason: e.to_string(),
    })
}
