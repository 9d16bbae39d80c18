//! Per-connection rate limit: a token bucket, plus a strike count for clients
//! that keep sending after being told to slow down.

use std::time::Instant;

#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    /// Requests refused since the bucket last had a token.
    strikes: u64,
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Refuse it with `rate_limited`.
    Refuse,
    /// The client ignores refusals: close the connection.
    Disconnect,
}

impl TokenBucket {
    pub fn new(per_sec: u64, burst: u64) -> Self {
        Self {
            rate: per_sec as f64,
            burst: burst as f64,
            tokens: burst as f64,
            last: Instant::now(),
            strikes: 0,
        }
    }

    pub fn take(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.strikes = 0;
            return Verdict::Allow;
        }
        self.strikes += 1;
        // As many refusals in a row as a whole burst: the client is not listening.
        if self.strikes as f64 > self.burst {
            Verdict::Disconnect
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refuse_then_disconnect_then_refill() {
        let start = Instant::now();
        let mut b = TokenBucket::new(10, 3);
        for _ in 0..3 {
            assert_eq!(b.take(start), Verdict::Allow);
        }
        for _ in 0..3 {
            assert_eq!(b.take(start), Verdict::Refuse);
        }
        assert_eq!(b.take(start), Verdict::Disconnect);
        assert_eq!(b.take(start + Duration::from_millis(150)), Verdict::Allow);
    }
}
