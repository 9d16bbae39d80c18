//! Admin logins: the sessions behind the admin cookie, and the per-address
//! limit on failed password attempts.
//!
//! Sessions live in memory only: a restart logs administrators out, and a copy
//! of the data directory holds no admin session. Like user sessions, only the
//! SHA-256 of a cookie is kept.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Most admin sessions kept at once; the oldest goes first beyond this.
const MAX_SESSIONS: usize = 1000;
/// Most addresses the login limiter remembers.
const MAX_TRACKED: usize = 10_000;

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

struct Entry {
    csrf: String,
    created: Instant,
    expires: Instant,
}

/// A logged-in administrator's session as a request sees it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The anti-forgery token that state-changing requests must carry.
    pub csrf: String,
}

pub struct AdminLogins {
    ttl: Duration,
    map: Mutex<HashMap<[u8; 32], Entry>>,
}

impl AdminLogins {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Opens a session; returns the cookie value (the only copy) and its info.
    pub fn create(&self) -> (String, SessionInfo) {
        let token = random_hex();
        let csrf = random_hex();
        let now = Instant::now();
        let mut map = self.map.lock();
        map.retain(|_, e| e.expires > now);
        while map.len() >= MAX_SESSIONS {
            let oldest = map.iter().min_by_key(|(_, e)| e.created).map(|(k, _)| *k);
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(
            key(&token),
            Entry {
                csrf: csrf.clone(),
                created: now,
                expires: now + self.ttl,
            },
        );
        (token, SessionInfo { csrf })
    }

    /// The live session behind a cookie value.
    pub fn get(&self, token: &str) -> Option<SessionInfo> {
        let map = self.map.lock();
        let e = map.get(&key(token))?;
        (e.expires > Instant::now()).then(|| SessionInfo {
            csrf: e.csrf.clone(),
        })
    }

    pub fn remove(&self, token: &str) {
        self.map.lock().remove(&key(token));
    }
}

/// What the limiter says about a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Too many failures: retry after this long.
    Closed(Duration),
}

struct Failures {
    count: u64,
    first: Instant,
    locked_until: Option<Instant>,
}

/// Counts failed logins per client address: after `max` failures within
/// `lockout`, the address waits `lockout` before it may try again. A success
/// forgets the address's failures.
pub struct LoginLimiter {
    max: u64,
    lockout: Duration,
    map: Mutex<HashMap<IpAddr, Failures>>,
}

impl LoginLimiter {
    pub fn new(max: u64, lockout: Duration) -> Self {
        Self {
            max,
            lockout,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a login attempt from `addr`, counting it as a failure until it
    /// succeeds: parallel attempts cannot slip past the limit while their
    /// passwords are being checked.
    pub fn attempt(&self, addr: IpAddr) -> Gate {
        let now = Instant::now();
        let mut map = self.map.lock();
        if let Some(until) = map.get(&addr).and_then(|f| f.locked_until)
            && until > now
        {
            return Gate::Closed(until - now);
        }
        if map.len() >= MAX_TRACKED {
            let lockout = self.lockout;
            map.retain(|_, f| {
                now.duration_since(f.first) < lockout || f.locked_until.is_some_and(|u| u > now)
            });
        }
        let f = map.entry(addr).or_insert(Failures {
            count: 0,
            first: now,
            locked_until: None,
        });
        let stale = now.duration_since(f.first) >= self.lockout || f.locked_until.is_some();
        if stale {
            *f = Failures {
                count: 0,
                first: now,
                locked_until: None,
            };
        }
        f.count += 1;
        if f.count >= self.max {
            f.locked_until = Some(now + self.lockout);
        }
        Gate::Open
    }

    pub fn succeeded(&self, addr: IpAddr) {
        self.map.lock().remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_end() {
        let sessions = AdminLogins::new(Duration::from_millis(50));
        let (token, info) = sessions.create();
        assert_eq!(sessions.get(&token).map(|s| s.csrf), Some(info.csrf));
        assert!(sessions.get("forged").is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(sessions.get(&token).is_none());
        let (token, _) = sessions.create();
        sessions.remove(&token);
        assert!(sessions.get(&token).is_none());
    }

    #[test]
    fn limiter_locks_after_max_failures_per_address() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..3 {
            assert_eq!(limiter.attempt(a), Gate::Open);
        }
        assert!(matches!(limiter.attempt(a), Gate::Closed(d) if d <= Duration::from_secs(60)));
        assert_eq!(limiter.attempt(b), Gate::Open);
        limiter.succeeded(b);
        limiter.succeeded(a);
        assert_eq!(limiter.attempt(a), Gate::Open);
    }
}
