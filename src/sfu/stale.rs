//! Frames that arrive seconds after their time are dropped, not forwarded.
//!
//! A browser whose link goes down keeps encoding, and its pacer keeps what
//! it could not send; when the link returns, that backlog arrives first,
//! seconds old. Forwarded, it teaches every subscriber's receive timing
//! (which maps RTP time to local time) that this publisher's frames come
//! seconds late, and their jitter buffers then hold each later frame as
//! long: measured, 1.3-5.7 s of delay after a 5 s link drop, for many
//! seconds. So each layer of a publisher's video remembers the earliest any
//! of its frames arrived, relative to its RTP time; a frame more than
//! [`LATE`] behind that is stale. The participant drops stale frames (and
//! asks for a keyframe, which the subscribers need after the gap anyway)
//! only for a few seconds after the publisher comes back from an outage (a
//! silence, an ICE restart): at other times a late frame is forwarded, as a
//! page merely starved of CPU would otherwise freeze until a keyframe.
//!
//! The reference creeps forward by [`DRIFT`] (the sender's clock and ours
//! drift apart), and a publisher whose frames stay late for [`RESET_AFTER`]
//! (its path really got slower) is believed: that becomes its new normal.

use std::time::{Duration, Instant};

use str0m::media::{MediaTime, Mid, Rid};

/// Later than this behind the layer's best: stale.
pub const LATE: Duration = Duration::from_secs(1);
/// How fast the reference may move on its own (1 ms a second: far more
/// than any two clocks drift apart).
const DRIFT: f64 = 0.001;
/// A frame made this long before its publisher came back may still be
/// one it made after (the page resumes when it hears the server, about
/// when the server hears it).
const FRESH_GRACE: Duration = Duration::from_millis(500);
/// Frames late this long without a break: the path got slower for good.
/// (Longer than a backlog takes to drain: Chromium's pacer aims to send
/// what it queued within 2 s.)
const RESET_AFTER: Duration = Duration::from_secs(3);

/// One layer's reference.
#[derive(Debug, Clone, Copy)]
struct Layer {
    mid: Mid,
    rid: Option<Rid>,
    /// Arrival minus RTP time (s, from `Staleness::base`) of the frame that
    /// came earliest, crept forward by DRIFT since.
    best: f64,
    /// When `best` was last moved (s from base).
    at: f64,
    /// Since when (s from base) every frame has been stale, if they are.
    late_since: Option<f64>,
}

/// The references of one publisher's video layers.
#[derive(Debug)]
pub struct Staleness {
    base: Instant,
    layers: Vec<Layer>,
}

impl Staleness {
    pub fn new(base: Instant) -> Self {
        Self {
            base,
            layers: Vec::new(),
        }
    }

    /// Whether a frame of layer (`mid`, `rid`) with RTP time `time` that
    /// arrived at `arrived` is stale (see the module's comment). `back`:
    /// when its publisher came back from an outage. A frame made after
    /// that (by the time it would have arrived on time) is never stale:
    /// late only because the new path starts slow (the browser's bandwidth
    /// estimate starts low there, and its pacer sends the keyframes of
    /// every layer at that rate), not a backlog; dropping it made everyone
    /// wait for the next keyframe, late again.
    pub fn is_stale(
        &mut self,
        mid: Mid,
        rid: Option<Rid>,
        time: MediaTime,
        arrived: Instant,
        back: Option<Instant>,
    ) -> bool {
        let now = arrived.saturating_duration_since(self.base).as_secs_f64();
        let offset = now - time.as_seconds();
        let Some(layer) = self
            .layers
            .iter_mut()
            .find(|l| l.mid == mid && l.rid == rid)
        else {
            self.layers.push(Layer {
                mid,
                rid,
                best: offset,
                at: now,
                late_since: None,
            });
            return false;
        };
        layer.best += (now - layer.at).max(0.0) * DRIFT;
        layer.at = now;
        if offset - layer.best <= LATE.as_secs_f64() {
            layer.best = layer.best.min(offset);
            layer.late_since = None;
            return false;
        }
        if let Some(back) = back {
            let back = back.saturating_duration_since(self.base).as_secs_f64();
            let on_time = now - (offset - layer.best);
            if on_time >= back - FRESH_GRACE.as_secs_f64() {
                return false;
            }
        }
        let since = *layer.late_since.get_or_insert(now);
        if now - since >= RESET_AFTER.as_secs_f64() {
            layer.best = offset;
            layer.late_since = None;
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FPS: u64 = 25;

    /// Frame `n` of a 25 fps stream (90 kHz RTP time) that arrived `delay_ms` after its time.
    fn frame(s: &mut Staleness, base: Instant, n: u64, delay_ms: u64) -> bool {
        let mid = Mid::from("1");
        let time = MediaTime::from_90khz(1_000_000 + n * 90_000 / FPS);
        let arrived = base + Duration::from_millis(n * 1000 / FPS + delay_ms);
        s.is_stale(mid, Some(Rid::from("h")), time, arrived, None)
    }

    #[test]
    fn a_backlog_seconds_late_is_dropped_and_fresh_frames_pass() {
        let base = Instant::now();
        let mut s = Staleness::new(base);
        // 4 s of frames with 20-80 ms of jitter: all pass.
        for n in 0..100 {
            assert!(!frame(&mut s, base, n, 20 + (n * 37) % 60), "frame {n}");
        }
        // The link drops for 5 s (frames 100..225 never come); the backlog
        // of frames 100..150 arrives when it returns, 3-5 s late.
        for n in 100..150 {
            assert!(
                frame(&mut s, base, n, 5000 - (n - 100) * 40),
                "stale frame {n}"
            );
        }
        // Then fresh frames again.
        for n in 225..260 {
            assert!(!frame(&mut s, base, n, 30), "fresh frame {n}");
        }
    }

    #[test]
    fn frames_made_after_the_return_pass_however_late_and_the_backlog_does_not() {
        let base = Instant::now();
        let mut s = Staleness::new(base);
        let mid = Mid::from("1");
        let rid = Some(Rid::from("h"));
        let at = |n: u64, delay_ms: u64| {
            (
                MediaTime::from_90khz(1_000_000 + n * 90_000 / FPS),
                base + Duration::from_millis(n * 1000 / FPS + delay_ms),
            )
        };
        for n in 0..100 {
            let (time, arrived) = at(n, 20);
            assert!(!s.is_stale(mid, rid, time, arrived, None));
        }
        // Away from frame 100 to 225 (5 s); back at frame 225's time.
        let back = Some(base + Duration::from_millis(225 * 1000 / FPS));
        // Frames it made before its pause (100..125), resent 4-5 s late: stale.
        for n in 100..125 {
            let (time, arrived) = at(n, 5000 - (n - 100) * 40);
            assert!(
                s.is_stale(mid, rid, time, arrived, back),
                "backlog frame {n}"
            );
        }
        // Frames made after its return, 1.5 s late at first (a slow new
        // path), then catching up: all pass.
        for n in 225..260 {
            let (time, arrived) = at(n, 1500u64.saturating_sub((n - 225) * 60) + 20);
            assert!(
                !s.is_stale(mid, rid, time, arrived, back),
                "fresh frame {n}"
            );
        }
    }

    #[test]
    fn a_path_that_stays_slower_is_believed_after_a_while() {
        let base = Instant::now();
        let mut s = Staleness::new(base);
        for n in 0..50 {
            assert!(!frame(&mut s, base, n, 20));
        }
        // From frame 50 on everything takes 1.5 s longer.
        let dropped = (50..250).filter(|&n| frame(&mut s, base, n, 1520)).count();
        let most = (RESET_AFTER.as_millis() as u64 * FPS / 1000 + 1) as usize;
        assert!((1..=most).contains(&dropped), "{dropped} dropped");
        assert!(!frame(&mut s, base, 250, 1520));
    }

    #[test]
    fn clocks_that_drift_apart_do_not_make_frames_stale() {
        let base = Instant::now();
        let mut s = Staleness::new(base);
        // The sender's clock runs 200 ppm slow: after an hour, 720 ms behind.
        for n in (0..FPS * 3600).step_by(5) {
            let drift_ms = n * 1000 / FPS / 5000;
            assert!(!frame(&mut s, base, n, 20 + drift_ms), "frame {n}");
        }
    }
}
