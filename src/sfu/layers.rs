//! Simulcast: a browser publishes its camera in three layers (rids `q`, `h`,
//! `f`: about a quarter, half and full size), and the SFU sends each
//! subscriber one of them per track: the smallest that fills the tile the
//! subscriber's page shows, lowered while the subscriber's bandwidth
//! estimate (TWCC) cannot carry them all.
//!
//! [`LayerMeter`] measures what a publisher sends per layer; [`Selection`]
//! is one subscriber's choice for one track, switched on a keyframe of the
//! new layer with the RTP time rebased so the subscriber sees one continuous
//! stream; [`choose`] picks the layers of one subscriber's tracks.

use std::time::{Duration, Instant};

use str0m::media::{MediaData, MediaTime, Rid};

/// Layers of a simulcast track, lowest first.
pub const LAYERS: usize = 3;
/// The rids browsers use for them (`call-sfu.js` publishes these).
pub const RIDS: [&str; LAYERS] = ["q", "h", "f"];
/// Heights assumed for layers whose keyframes did not say (a 720p camera).
const ASSUMED_HEIGHT: [u32; LAYERS] = [180, 360, 720];
/// The height a subscriber gets before its page reports its tiles.
pub const DEFAULT_HEIGHT: u32 = 360;
/// A layer with no frame for this long is off (the browser stopped it).
const ACTIVE_WITHIN: Duration = Duration::from_millis(1500);
/// Bitrates are measured over this window.
const WINDOW: Duration = Duration::from_secs(1);
/// A subscriber waiting for a keyframe of its new layer asks again this often.
const ASK_AGAIN: Duration = Duration::from_millis(500);
/// Nothing sent of the current layer this long: it stalled (its publisher
/// is away, or comes back with its smallest layer first), and a keyframe
/// of any other layer takes over until the target's own comes.
const STALLED_AFTER: Duration = Duration::from_millis(500);

/// The layer of a rid, for the rids Noom's pages publish.
pub fn layer_of(rid: Option<Rid>) -> Option<usize> {
    let rid = rid?;
    RIDS.iter().position(|r| rid == Rid::from(*r))
}

/// The rid of a layer.
pub fn rid_of(layer: usize) -> Rid {
    Rid::from(RIDS[layer.min(LAYERS - 1)])
}

/// What a publisher sends on one layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerInfo {
    /// A frame came recently.
    pub active: bool,
    /// Bits per second over the last window.
    pub bitrate: u64,
    /// Picture height from its last keyframe (VP8), 0 when unknown.
    pub height: u32,
}

impl LayerInfo {
    fn height_or_assumed(&self, layer: usize) -> u32 {
        if self.height > 0 {
            self.height
        } else {
            ASSUMED_HEIGHT[layer]
        }
    }
}

pub type Layers = [LayerInfo; LAYERS];

/// Measures one published track's layers.
#[derive(Debug)]
pub struct LayerMeter {
    bytes: [u64; LAYERS],
    last_seen: [Option<Instant>; LAYERS],
    window_start: Instant,
    info: Layers,
}

impl LayerMeter {
    pub fn new(now: Instant) -> Self {
        LayerMeter {
            bytes: [0; LAYERS],
            last_seen: [None; LAYERS],
            window_start: now,
            info: Layers::default(),
        }
    }

    pub fn on_frame(&mut self, layer: usize, data: &MediaData, now: Instant) {
        let Some(bytes) = self.bytes.get_mut(layer) else {
            return;
        };
        *bytes += data.data.len() as u64;
        self.last_seen[layer] = Some(now);
        // A layer that (re)starts counts at once: a subscriber may want it.
        self.info[layer].active = true;
        if data.is_keyframe()
            && let Some((_, height)) = vp8_keyframe_size(&data.data)
        {
            self.info[layer].height = u32::from(height);
        }
    }

    /// Closes the measuring window when it is over; true when it was.
    pub fn tick(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WINDOW {
            return false;
        }
        let secs = elapsed.as_secs_f64();
        for layer in 0..LAYERS {
            self.info[layer].bitrate = (self.bytes[layer] as f64 * 8.0 / secs) as u64;
            self.info[layer].active = self.last_seen[layer]
                .is_some_and(|t| now.saturating_duration_since(t) < ACTIVE_WITHIN);
            self.bytes[layer] = 0;
        }
        self.window_start = now;
        true
    }

    pub fn layers(&self) -> Layers {
        self.info
    }
}

/// Width and height from a VP8 key frame's header (RFC 6386 9.1): the
/// frame tag, the start code 9d 01 2a, then two 14-bit sizes.
pub fn vp8_keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((width, height))
}

/// What to do with one frame of a simulcast track for one subscriber.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it, at this (rebased) RTP time.
    Forward(MediaTime),
    Drop,
    /// Drop it, and ask the publisher for a keyframe of this layer: the
    /// subscriber waits for one to switch.
    AskKeyframe(usize),
}

/// One subscriber's layer of one simulcast track.
#[derive(Debug)]
pub struct Selection {
    /// The largest height the subscriber's page shows this track at
    /// (device pixels); 0 when it does not show it.
    pub want_height: u32,
    /// The layer to send.
    pub target: usize,
    /// The layer being sent (None before the first keyframe).
    pub current: Option<usize>,
    /// Added to the current layer's RTP time (the layers' clocks differ).
    offset: i64,
    last_out: Option<MediaTime>,
    /// When `last_out` was sent.
    last_out_at: Option<Instant>,
    asked_at: Option<Instant>,
    /// Layer switches made (a metric).
    pub switches: u64,
    /// The last frame was the first of a new layer.
    pub switched_now: bool,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            want_height: DEFAULT_HEIGHT,
            target: 1,
            current: None,
            offset: 0,
            last_out: None,
            last_out_at: None,
            asked_at: None,
            switches: 0,
            switched_now: false,
        }
    }
}

impl Selection {
    /// Sets the layer to send; true when it changed (a keyframe of it is
    /// to be asked for).
    pub fn retarget(&mut self, layer: usize, now: Instant) -> bool {
        if self.target == layer {
            return false;
        }
        self.target = layer;
        if self.current != Some(layer) {
            self.asked_at = Some(now);
            return true;
        }
        false
    }

    /// One frame of `layer` (a keyframe or not, at RTP time `time`):
    /// forwarded (rebased), dropped, or dropped with a keyframe to ask for.
    pub fn on_frame(
        &mut self,
        layer: usize,
        keyframe: bool,
        time: MediaTime,
        now: Instant,
    ) -> Verdict {
        self.switched_now = false;
        if self.current == Some(layer) {
            return Verdict::Forward(self.rebased(time, now));
        }
        if !keyframe {
            if layer != self.target {
                return Verdict::Drop;
            }
            // The new layer can only start at a keyframe.
            if self
                .asked_at
                .is_none_or(|t| now.saturating_duration_since(t) >= ASK_AGAIN)
            {
                self.asked_at = Some(now);
                return Verdict::AskKeyframe(layer);
            }
            return Verdict::Drop;
        }
        let stalled = self
            .last_out_at
            .is_none_or(|t| now.saturating_duration_since(t) >= STALLED_AFTER);
        if layer != self.target && !stalled {
            return Verdict::Drop;
        }
        // Switch: the new layer's first frame follows the last one sent by
        // the time that passed since (at least one frame interval; its own
        // clock started elsewhere). Collapsing a pause of seconds to one
        // frame would make the subscriber's browser take every later frame
        // for seconds late, and hold each as long.
        self.offset = match (self.last_out, self.last_out_at) {
            (Some(last), Some(at)) if last.denom() == time.denom() => {
                let rate = i64::from(time.denom());
                let gap = now.saturating_duration_since(at).as_secs_f64();
                let step = (rate / 30).max((gap * rate as f64) as i64);
                (last.numer() as i64 + step) - time.numer() as i64
            }
            _ => 0,
        };
        if self.current.is_some() {
            self.switches += 1;
        }
        self.current = Some(layer);
        if layer == self.target {
            self.asked_at = None;
        }
        self.switched_now = true;
        Verdict::Forward(self.rebased(time, now))
    }

    /// Nothing was sent for a while (its subscriber was away): the next
    /// frame sent is a keyframe, of the target layer or, the current one
    /// having stalled, of any layer; its RTP time keeps the pause.
    pub fn pause(&mut self) {
        self.current = None;
    }

    fn rebased(&mut self, time: MediaTime, now: Instant) -> MediaTime {
        let numer = (time.numer() as i64).wrapping_add(self.offset).max(0) as u64;
        let out = MediaTime::new(numer, time.frequency());
        self.last_out = Some(out);
        self.last_out_at = Some(now);
        out
    }
}

/// What [`choose`] needs of one track.
#[derive(Debug, Clone, Copy)]
pub struct Want {
    pub layers: Layers,
    pub want_height: u32,
}

/// The layers for one subscriber's tracks (None: nothing active to pick),
/// and the bitrate they would take without a budget. Each track gets the
/// smallest active layer at least as tall as its tile (the largest when
/// none is; the smallest when the tile is hidden); then, while the total
/// is over `budget`, the track taking the most steps down one layer.
pub fn choose(wants: &[Want], budget: Option<u64>) -> (Vec<Option<usize>>, u64) {
    let mut picks: Vec<Option<usize>> = wants.iter().map(desired).collect();
    let rate = |picks: &[Option<usize>]| -> u64 {
        picks
            .iter()
            .zip(wants)
            .filter_map(|(p, w)| p.map(|l| w.layers[l].bitrate))
            .sum()
    };
    let wanted = rate(&picks);
    if let Some(budget) = budget {
        while rate(&picks) > budget {
            let lower = |w: &Want, l: usize| (0..l).rev().find(|&i| w.layers[i].active);
            let heaviest = picks
                .iter()
                .zip(wants)
                .enumerate()
                .filter_map(|(i, (p, w))| {
                    let l = (*p)?;
                    lower(w, l).map(|_| (i, w.layers[l].bitrate))
                })
                .max_by_key(|&(_, bitrate)| bitrate);
            let Some((i, _)) = heaviest else { break };
            picks[i] = picks[i].and_then(|l| lower(&wants[i], l));
        }
    }
    (picks, wanted)
}

fn desired(want: &Want) -> Option<usize> {
    let active: Vec<usize> = (0..LAYERS).filter(|&l| want.layers[l].active).collect();
    let (&lowest, &highest) = (active.first()?, active.last()?);
    if want.want_height == 0 {
        return Some(lowest);
    }
    Some(
        active
            .iter()
            .copied()
            .find(|&l| want.layers[l].height_or_assumed(l) >= want.want_height)
            .unwrap_or(highest),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(heights: [u32; 3], rates: [u64; 3]) -> Layers {
        let mut l = Layers::default();
        for i in 0..3 {
            l[i] = LayerInfo {
                active: rates[i] > 0,
                bitrate: rates[i],
                height: heights[i],
            };
        }
        l
    }

    #[test]
    fn a_small_tile_gets_the_small_layer_and_a_large_one_the_large() {
        let l = layers([180, 360, 720], [150_000, 500_000, 1_500_000]);
        let wants = [
            Want {
                layers: l,
                want_height: 120,
            },
            Want {
                layers: l,
                want_height: 300,
            },
            Want {
                layers: l,
                want_height: 1080,
            },
            Want {
                layers: l,
                want_height: 0,
            },
        ];
        let (picks, wanted) = choose(&wants, None);
        assert_eq!(picks, vec![Some(0), Some(1), Some(2), Some(0)]);
        assert_eq!(wanted, 150_000 + 500_000 + 1_500_000 + 150_000);
    }

    #[test]
    fn a_budget_lowers_the_heaviest_first() {
        let l = layers([180, 360, 720], [150_000, 500_000, 1_500_000]);
        let big = Want {
            layers: l,
            want_height: 720,
        };
        let mid = Want {
            layers: l,
            want_height: 360,
        };
        let (picks, _) = choose(&[big, mid], Some(1_100_000));
        assert_eq!(picks, vec![Some(1), Some(1)]);
        let (picks, _) = choose(&[big, mid], Some(100_000));
        assert_eq!(
            picks,
            vec![Some(0), Some(0)],
            "the lowest stays: never nothing"
        );
    }

    #[test]
    fn inactive_layers_are_skipped() {
        let l = layers([90, 180, 360], [100_000, 300_000, 0]);
        let (picks, _) = choose(
            &[Want {
                layers: l,
                want_height: 360,
            }],
            None,
        );
        assert_eq!(picks, vec![Some(1)], "the top layer is off: the highest on");
        let (picks, _) = choose(
            &[Want {
                layers: Layers::default(),
                want_height: 360,
            }],
            None,
        );
        assert_eq!(picks, vec![None]);
    }

    /// Frame `n` of a 30 fps layer whose RTP clock starts at `start`.
    fn at(start: u64, n: u64) -> MediaTime {
        MediaTime::from_90khz(start + n * 3000)
    }

    #[test]
    fn a_layer_back_from_a_pause_keeps_the_pause_in_its_rtp_time() {
        let t0 = Instant::now();
        let frame = |n: u64| t0 + Duration::from_millis(n * 1000 / 30);
        let mut sel = Selection::default(); // target: layer 1
        let first = sel.on_frame(1, true, at(1_000_000, 0), frame(0));
        assert_eq!(first, Verdict::Forward(at(1_000_000, 0)));
        let Verdict::Forward(last) = sel.on_frame(1, false, at(1_000_000, 60), frame(60)) else {
            panic!("the current layer is forwarded");
        };
        // While layer 1 flows, a keyframe of layer 0 is not used.
        assert_eq!(
            sel.on_frame(0, true, at(5_000, 61), frame(61)),
            Verdict::Drop
        );
        // Its publisher is away for 5 s (150 frames) and comes back with
        // layer 0 first: its keyframe takes over at once, 5 s on in RTP
        // time as in wall-clock time (not one frame after the last).
        let Verdict::Forward(back) = sel.on_frame(0, true, at(5_000, 210), frame(210)) else {
            panic!("a keyframe of another layer takes over a stalled one");
        };
        let gap = back.numer() as i64 - last.numer() as i64;
        assert!((gap - 150 * 3000).abs() <= 3000, "RTP gap {gap} ticks");
        assert_eq!(sel.current, Some(0));
        assert_eq!(sel.target, 1);
        // The target's delta frames ask for its keyframe; its keyframe switches back.
        assert_eq!(
            sel.on_frame(1, false, at(1_000_000, 211), frame(211)),
            Verdict::AskKeyframe(1)
        );
        assert_eq!(
            sel.on_frame(1, false, at(1_000_000, 212), frame(212)),
            Verdict::Drop
        );
        let Verdict::Forward(up) = sel.on_frame(1, true, at(1_000_000, 213), frame(213)) else {
            panic!("the target's keyframe switches to it");
        };
        assert_eq!(sel.current, Some(1));
        let step = up.numer() as i64 - back.numer() as i64;
        assert!((step - 3 * 3000).abs() <= 3000, "RTP step {step} ticks");
    }

    #[test]
    fn vp8_key_frame_sizes_are_read() {
        let mut frame = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
        frame.extend_from_slice(&640u16.to_le_bytes());
        frame.extend_from_slice(&360u16.to_le_bytes());
        assert_eq!(vp8_keyframe_size(&frame), Some((640, 360)));
        frame[0] |= 1; // an inter frame
        assert_eq!(vp8_keyframe_size(&frame), None);
        assert_eq!(vp8_keyframe_size(&[0; 4]), None);
    }
}
