//! Who speaks in each call, from the audio level each browser writes in its
//! RTP header (RFC 6464; the server never decodes audio).
//!
//! Two uses: the call is told its active speakers (loudest first; the page
//! highlights them), and a large call forwards only the audio of its few
//! loudest participants plus anyone who spoke in the last seconds: a room
//! of 30 does not send everyone 29 streams of silence.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A level above this (dBov, 0 the loudest) is voice.
const VOICE_DBOV: i8 = -50;
/// Speaking holds this long after the last voice: pauses between words do
/// not end it.
const SPEAKING_HOLD: Duration = Duration::from_millis(1200);
/// Anyone who spoke this recently stays audible, whatever the ranking.
const RECENT: Duration = Duration::from_secs(3);
/// Smoothing of the level per packet (50 packets a second).
const SMOOTHING: f32 = 0.15;

#[derive(Debug)]
struct Voice {
    /// 0 (silence) to 127 (loudest), smoothed.
    loudness: f32,
    last_voice: Option<Instant>,
}

#[derive(Debug, Default)]
struct CallAudio {
    voices: HashMap<u64, Voice>,
    /// Whose audio is forwarded (decided at each tick).
    audible: Vec<u64>,
    /// The speakers last announced, loudest first.
    announced: Vec<u64>,
}

/// Audio levels of every call.
#[derive(Debug)]
pub struct Speakers {
    calls: HashMap<Arc<str>, CallAudio>,
    /// Audio streams forwarded per call once it has more publishers.
    max_audible: usize,
}

impl Speakers {
    pub fn new(max_audible: usize) -> Self {
        Speakers {
            calls: HashMap::new(),
            max_audible: max_audible.max(1),
        }
    }

    /// One audio frame of `origin` in `call`, with its level if the browser
    /// wrote one. Returns whether the frame is forwarded.
    pub fn on_audio(
        &mut self,
        call: &Arc<str>,
        origin: u64,
        level: Option<i8>,
        now: Instant,
    ) -> bool {
        let audio = self.calls.entry(call.clone()).or_default();
        let voice = audio.voices.entry(origin).or_insert(Voice {
            loudness: 0.0,
            last_voice: None,
        });
        if let Some(level) = level {
            let loudness = f32::from(level.clamp(-127, 0) + 127);
            voice.loudness += (loudness - voice.loudness) * SMOOTHING;
            if level > VOICE_DBOV {
                voice.last_voice = Some(now);
            }
        }
        audio.voices.len() <= self.max_audible || audio.audible.contains(&origin)
    }

    /// Forgets a participant that left.
    pub fn forget(&mut self, call: &Arc<str>, origin: u64) {
        if let Some(audio) = self.calls.get_mut(call) {
            audio.voices.remove(&origin);
            audio.audible.retain(|o| *o != origin);
        }
    }

    /// Re-ranks every call; returns the calls whose speakers changed, with
    /// the speakers now (loudest first; empty: nobody speaks).
    pub fn tick(&mut self, now: Instant) -> Vec<(Arc<str>, Vec<u64>)> {
        let mut changed = Vec::new();
        let max = self.max_audible;
        self.calls.retain(|call, audio| {
            if audio.voices.is_empty() {
                if !audio.announced.is_empty() {
                    changed.push((call.clone(), Vec::new()));
                }
                return false;
            }
            let mut ranked: Vec<(u64, f32, bool, bool)> = audio
                .voices
                .iter()
                .map(|(origin, v)| {
                    let since = |d: Duration| {
                        v.last_voice
                            .is_some_and(|t| now.saturating_duration_since(t) < d)
                    };
                    (*origin, v.loudness, since(SPEAKING_HOLD), since(RECENT))
                })
                .collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            audio.audible = ranked
                .iter()
                .enumerate()
                .filter(|(i, r)| *i < max || r.3)
                .map(|(_, r)| r.0)
                .collect();
            let speaking: Vec<u64> = ranked.iter().filter(|r| r.2).map(|r| r.0).collect();
            // Announced when who speaks changes, or who is loudest: not
            // every reshuffle further down.
            let same = speaking.len() == audio.announced.len()
                && speaking.first() == audio.announced.first()
                && speaking.iter().all(|s| audio.announced.contains(s));
            if !same {
                audio.announced = speaking.clone();
                changed.push((call.clone(), speaking));
            }
            true
        });
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loudest_are_forwarded_and_announced() {
        let call: Arc<str> = Arc::from("c");
        let mut s = Speakers::new(2);
        let t0 = Instant::now();
        // Four publishers: 1 and 2 talk, 3 and 4 are silent.
        for i in 0..50 {
            let now = t0 + Duration::from_millis(20 * i);
            s.on_audio(&call, 1, Some(-20), now);
            s.on_audio(&call, 2, Some(-30), now);
            s.on_audio(&call, 3, Some(-127), now);
            s.on_audio(&call, 4, Some(-127), now);
        }
        let now = t0 + Duration::from_secs(1);
        assert_eq!(s.tick(now), vec![(call.clone(), vec![1, 2])]);
        assert!(s.on_audio(&call, 1, Some(-20), now));
        assert!(
            !s.on_audio(&call, 3, Some(-127), now),
            "silent, past the two loudest"
        );
        assert_eq!(s.tick(now), vec![], "nothing changed");
        // 1 stops talking: after the hold, 2 is the only speaker, but 1
        // stays audible for a few seconds.
        let later = now + Duration::from_secs(2);
        for i in 0..50 {
            let t = now + Duration::from_millis(20 * i);
            s.on_audio(&call, 1, Some(-127), t);
            s.on_audio(&call, 2, Some(-30), t);
        }
        assert_eq!(s.tick(later), vec![(call.clone(), vec![2])]);
        s.forget(&call, 2);
        assert_eq!(s.tick(later), vec![(call.clone(), vec![])]);
    }

    #[test]
    fn small_calls_forward_everyone() {
        let call: Arc<str> = Arc::from("c");
        let mut s = Speakers::new(3);
        let now = Instant::now();
        for origin in 1..=3 {
            assert!(s.on_audio(&call, origin, Some(-127), now));
        }
    }
}
