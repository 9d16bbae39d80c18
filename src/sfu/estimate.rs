//! How much a subscriber can receive: a loss-based estimate from the
//! receiver reports its browser sends (RTCP, once a second or so).
//!
//! Why not str0m's TWCC estimator: it paces everything a session sends at
//! 1.1 times its estimate, and an SFU's estimate starts where the session's
//! first seconds were (audio only, so about 100 kbit/s): every keyframe
//! burst then waits in the pacer, and all of a subscriber's tiles stall
//! together. Loss is what a narrow link shows without any pacing: too much
//! sent, packets are dropped, and the browser reports it.
//!
//! The rule is the loss-based half of Google's congestion control: over
//! 10% loss, the estimate falls to what was sent less half the loss; under
//! 2%, it grows 8% a second (after a pause following a fall); in between it
//! holds. Without loss it starts unlimited.

use std::time::{Duration, Instant};

/// Loss above this is congestion.
const LOSS_HIGH: f32 = 0.10;
/// Loss below this leaves room to grow.
const LOSS_LOW: f32 = 0.02;
/// Growth per update without loss.
const GROWTH: f64 = 1.08;
/// After a fall, no growth for this long (the link needs to drain).
const HOLD_AFTER_FALL: Duration = Duration::from_secs(4);
/// An estimate grown past this is no limit at all.
const UNLIMITED: u64 = 50_000_000;
/// The estimate never falls below this (the lowest layers and audio).
const FLOOR: u64 = 100_000;

#[derive(Debug, Default)]
pub struct LossEstimate {
    estimate: Option<u64>,
    hold_until: Option<Instant>,
}

impl LossEstimate {
    /// The current estimate, bits per second (None: no limit seen).
    pub fn get(&self) -> Option<u64> {
        self.estimate
    }

    /// One update: what was sent over the last second (bits per second) and
    /// the loss the receiver reported for it (0 to 1). Returns whether the
    /// estimate changed.
    pub fn update(&mut self, sent: u64, loss: f32, now: Instant) -> bool {
        let before = self.estimate;
        if loss > LOSS_HIGH && sent > 0 {
            let fallen = (sent as f64 * (1.0 - 0.5 * f64::from(loss))).round() as u64;
            self.estimate = Some(fallen.min(before.unwrap_or(u64::MAX)).max(FLOOR));
            self.hold_until = Some(now + HOLD_AFTER_FALL);
        } else if loss < LOSS_LOW
            && let Some(e) = self.estimate
            && self.hold_until.is_none_or(|t| now >= t)
        {
            let grown = (e.max(sent) as f64 * GROWTH).round() as u64;
            self.estimate = (grown < UNLIMITED).then_some(grown);
        }
        self.estimate != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_lowers_it_and_a_clean_link_raises_it_again() {
        let mut e = LossEstimate::default();
        let t0 = Instant::now();
        assert!(!e.update(1_000_000, 0.0, t0), "no loss: no limit");
        assert_eq!(e.get(), None);
        assert!(e.update(1_000_000, 0.4, t0));
        assert_eq!(e.get(), Some(800_000));
        // Held for a while after the fall, then growing.
        assert!(!e.update(500_000, 0.0, t0 + Duration::from_secs(1)));
        assert!(e.update(500_000, 0.0, t0 + Duration::from_secs(5)));
        assert_eq!(e.get(), Some(864_000));
        // Moderate loss holds it.
        assert!(!e.update(800_000, 0.05, t0 + Duration::from_secs(6)));
        let mut t = t0 + Duration::from_secs(6);
        while e.get().is_some() {
            t += Duration::from_secs(1);
            e.update(1_000_000, 0.0, t);
        }
        assert!(
            t < t0 + Duration::from_secs(120),
            "unlimited again within two minutes"
        );
    }
}
