//! TURN REST credentials (coturn's `use-auth-secret`) and stateless nonces.
//!
//! A credential is `username = "<expiry unix secs>:<user id>"`,
//! `password = base64(HMAC-SHA1(secret, username))`; the server recomputes the
//! password, so it stores nothing per credential. Nonces are
//! `<issue time hex>-<HMAC over the time and the client address>`: checking one
//! needs no table either, so a flood of unauthenticated requests grows no memory.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::hmac;

/// How long a nonce stays fresh before the client is told 438 (stale nonce).
pub const NONCE_TTL: Duration = Duration::from_secs(3600);

pub struct Credentials {
    secret: hmac::Key,
    nonce_key: hmac::Key,
    pub realm: String,
    pub ttl: Duration,
    /// Users whose credentials an administrator revoked: credentials expiring at
    /// or before the value (all those minted before the revocation) are refused.
    revoked: parking_lot::Mutex<std::collections::HashMap<String, u64>>,
}

/// A username/password pair for `iceServers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    pub username: String,
    pub password: String,
    pub expires: u64,
}

/// Why a request's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not of the form `expiry:user`.
    Malformed,
    Expired,
    /// Minted before an administrator revoked the user.
    Revoked,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Credentials {
    pub fn new(secret: &[u8], realm: &str, ttl: Duration) -> Self {
        let mut nonce_secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce_secret);
        Self {
            secret: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret),
            nonce_key: hmac::Key::new(hmac::HMAC_SHA256, &nonce_secret),
            realm: realm.to_string(),
            ttl,
            revoked: Default::default(),
        }
    }

    /// Refuses every credential of `user` minted until now.
    pub fn revoke(&self, user: &str) {
        let now = unix_now();
        let mut revoked = self.revoked.lock();
        revoked.retain(|_, until| *until > now);
        revoked.insert(user.to_string(), now + self.ttl.as_secs());
    }

    /// Credentials for `user`, valid for the configured lifetime.
    pub fn mint(&self, user: &str) -> Minted {
        let expires = unix_now() + self.ttl.as_secs();
        let username = format!("{expires}:{user}");
        let password = self.password(&username);
        Minted {
            username,
            password,
            expires,
        }
    }

    pub fn password(&self, username: &str) -> String {
        let tag = hmac::sign(&self.secret, username.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    }

    /// The password of a REST username that is well formed and not expired,
    /// and the user id it names.
    pub fn check_username<'a>(
        &self,
        username: &'a str,
        now: u64,
    ) -> Result<(String, &'a str), Refusal> {
        let (expiry, user) = username.split_once(':').unwrap_or((username, ""));
        let expiry: u64 = expiry.parse().map_err(|_| Refusal::Malformed)?;
        if expiry <= now {
            return Err(Refusal::Expired);
        }
        let revoked = self.revoked.lock().get(user).copied();
        if revoked.is_some_and(|until| expiry <= until) {
            return Err(Refusal::Revoked);
        }
        Ok((self.password(username), user))
    }

    pub fn nonce(&self, client: IpAddr, now: u64) -> String {
        let stamp = format!("{now:x}");
        format!("{stamp}-{}", self.nonce_tag(&stamp, client))
    }

    /// True when `nonce` was issued by this server to `client` within `NONCE_TTL`.
    pub fn nonce_fresh(&self, nonce: &str, client: IpAddr, now: u64) -> bool {
        let Some((stamp, tag)) = nonce.split_once('-') else {
            return false;
        };
        let Ok(issued) = u64::from_str_radix(stamp, 16) else {
            return false;
        };
        issued <= now
            && now - issued < NONCE_TTL.as_secs()
            && same(tag.as_bytes(), self.nonce_tag(stamp, client).as_bytes())
    }

    fn nonce_tag(&self, stamp: &str, client: IpAddr) -> String {
        let mut ctx = hmac::Context::with_key(&self.nonce_key);
        ctx.update(stamp.as_bytes());
        ctx.update(client.to_string().as_bytes());
        hex::encode(&ctx.sign().as_ref()[..12])
    }
}

/// Compares without an early exit, so timing tells nothing about the tag.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_match_coturn_rest_scheme() {
        // base64(HMAC-SHA1("secret", "1700000000:alice")), as coturn computes it.
        let c = Credentials::new(b"secret", "noom", Duration::from_secs(600));
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"secret"),
            b"1700000000:alice",
        );
        assert_eq!(
            c.password("1700000000:alice"),
            base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
        );
        let minted = c.mint("alice");
        assert!(minted.username.ends_with(":alice"));
        assert_eq!(
            c.check_username(&minted.username, unix_now())
                .map(|(p, u)| (p, u.to_string())),
            Ok((minted.password, "alice".to_string()))
        );
        assert_eq!(
            c.check_username("1:alice", unix_now()),
            Err(Refusal::Expired)
        );
        assert_eq!(
            c.check_username("alice", unix_now()),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn nonces_are_bound_to_time_and_client() {
        let c = Credentials::new(b"secret", "noom", Duration::from_secs(600));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let n = c.nonce(ip, 1000);
        assert!(c.nonce_fresh(&n, ip, 1000 + 10));
        assert!(!c.nonce_fresh(&n, "192.0.2.2".parse().unwrap(), 1010));
        assert!(!c.nonce_fresh(&n, ip, 1000 + NONCE_TTL.as_secs()));
        assert!(!c.nonce_fresh("3e8-forged", ip, 1001));
        assert!(!c.nonce_fresh("junk", ip, 1001));
    }
}
