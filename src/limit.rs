//! Limits keyed by who asks (a source address, usually): token buckets per
//! key, in a table whose size is bounded, so that a flood from many addresses
//! cannot grow memory without end ([`Buckets`]); and caps on what one key may
//! hold at once ([`Counts`]).
//!
//! Used by the relay (unauthenticated requests, new allocations and TCP
//! connections per source address), by signaling (TURN credentials per client
//! address) and by the web server (connections per address).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Token buckets, one per key: `rate` tokens a second, at most `burst` saved.
pub struct Buckets<K> {
    rate: f64,
    burst: f64,
    max_keys: usize,
    table: Mutex<HashMap<K, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// The bucket's level at `now`.
    fn level(&self, now: Instant, rate: f64, burst: f64) -> f64 {
        (self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * rate).min(burst)
    }
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    /// `max_keys`: most keys tracked at once; when full, keys whose bucket is
    /// full again are forgotten, and a new key is refused if none is.
    pub fn new(rate_per_sec: f64, burst: f64, max_keys: usize) -> Self {
        Self {
            rate: rate_per_sec,
            burst: burst.max(1.0),
            max_keys,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; false when its bucket is empty.
    pub fn take(&self, key: &K, now: Instant) -> bool {
        self.try_take(key, now).is_ok()
    }

    /// Takes one token for `key`, or says how long until one is there.
    pub fn try_take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let (rate, burst) = (self.rate, self.burst);
        let mut table = self.table.lock();
        if table.len() >= self.max_keys && !table.contains_key(key) {
            table.retain(|_, b| b.level(now, rate, burst) < burst);
            if table.len() >= self.max_keys {
                return Err(Duration::from_secs(1));
            }
        }
        let bucket = table.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        bucket.tokens = bucket.level(now, rate, burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - bucket.tokens;
            Err(Duration::from_secs_f64(missing / rate.max(1e-9)))
        }
    }

    /// Forgets keys whose bucket is full again (there is nothing to remember).
    pub fn sweep(&self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.table
            .lock()
            .retain(|_, b| b.level(now, rate, burst) < burst);
    }
}

/// Counts things held at once per key (open connections per address), with a cap.
pub struct Counts<K> {
    max: usize,
    held: parking_lot::Mutex<HashMap<K, usize>>,
}

/// One counted thing; the count goes down when it is dropped.
pub struct Held<K: Hash + Eq + Clone> {
    counts: std::sync::Arc<Counts<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Counts<K> {
    pub fn new(max: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            max,
            held: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    /// Counts one more for `key`, or `None` when it holds `max` already.
    pub fn take(self: &std::sync::Arc<Self>, key: K) -> Option<Held<K>> {
        let mut held = self.held.lock();
        let n = held.entry(key.clone()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Held {
            counts: self.clone(),
            key,
        })
    }
}

impl<K: Hash + Eq + Clone> Drop for Held<K> {
    fn drop(&mut self) {
        let mut held = self.counts.held.lock();
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_capped_per_key_and_released_on_drop() {
        let counts = Counts::new(2);
        let a1 = counts.take("a").unwrap();
        let _a2 = counts.take("a").unwrap();
        assert!(counts.take("a").is_none());
        assert!(counts.take("b").is_some());
        drop(a1);
        assert!(counts.take("a").is_some());
    }

    #[test]
    fn burst_then_refill_per_key_and_bounded_table() {
        let start = Instant::now();
        let b = Buckets::new(2.0, 3.0, 2);
        for _ in 0..3 {
            assert!(b.take(&"a", start));
        }
        let wait = b.try_take(&"a", start).unwrap_err();
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        assert!(b.take(&"b", start), "another key has its own bucket");
        // The table holds two keys, both below burst: a third is refused...
        assert!(!b.take(&"c", start));
        // ...until one is full again and can be forgotten.
        assert!(b.take(&"c", start + Duration::from_secs(2)));
        assert!(b.take(&"a", start + Duration::from_millis(600)));
    }
}
