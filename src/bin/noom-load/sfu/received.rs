//! What a receiving session counts for each stream it gets (one per
//! forwarded track): frames and packets inside the measured window, RTP
//! sequence gaps, interarrival jitter and one-way latency. Frames are read by
//! their tag (`media`), so a stream is attributed to its publisher and layer
//! whatever the server renamed on the way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::media::{LAYERS, Tag};

/// The measured window, shared by every session of the run: frames count
/// when they were *sent* inside it (so a late arrival still counts, and the
/// senders know exactly what was expected).
pub struct Window {
    origin: Instant,
    start_us: AtomicU64,
    end_us: AtomicU64,
}

impl Window {
    pub fn new() -> Self {
        Window {
            origin: Instant::now(),
            start_us: AtomicU64::new(u64::MAX),
            end_us: AtomicU64::new(u64::MAX),
        }
    }

    /// µs since the run's origin.
    pub fn us(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_micros() as u64
    }

    pub fn open(&self, at: Instant) {
        self.start_us.store(self.us(at), Ordering::Relaxed);
    }

    pub fn close(&self, at: Instant) {
        self.end_us.store(self.us(at), Ordering::Relaxed);
    }

    pub fn contains(&self, sent_us: u64) -> bool {
        sent_us >= self.start_us.load(Ordering::Relaxed)
            && sent_us < self.end_us.load(Ordering::Relaxed)
    }
}

/// One incoming stream (one m-line) of a receiving session.
#[derive(Debug, Default, Clone)]
pub struct StreamLog {
    /// From the first tag read; `None` while nothing readable arrived.
    pub publisher: Option<u32>,
    pub audio: bool,
    /// Frames sent in the window, by layer (audio counts in `frames` only).
    pub frames_by_layer: [u64; LAYERS.len()],
    pub frames: u64,
    /// RTP packets of those frames (their sequence ranges).
    pub packets: u64,
    pub bytes: u64,
    /// Sequence numbers skipped between consecutive frames in the window:
    /// packets that never made a frame (lost, or of a frame that could not
    /// be put together).
    pub seq_lost: u64,
    /// RFC 3550 interarrival jitter over frames, µs.
    pub jitter_us: f64,
    /// One-way delay (sender's write to the receiver's event), µs, every
    /// frame of the window.
    pub latency_us: Vec<u32>,
    last_seq: Option<u64>,
    last_transit: Option<i64>,
}

impl StreamLog {
    /// Records one frame; `seq` is its first and last RTP sequence number.
    pub fn record(
        &mut self,
        tag: &Tag,
        seq: (u64, u64),
        bytes: usize,
        arrival_us: u64,
        window: &Window,
    ) {
        if self.publisher.is_none() {
            self.publisher = Some(tag.publisher);
            self.audio = tag.layer.is_none();
        }
        let in_window = window.contains(tag.sent_us);
        if let Some(last) = self.last_seq
            && seq.0 > last + 1
            && in_window
        {
            self.seq_lost += seq.0 - last - 1;
        }
        self.last_seq = Some(self.last_seq.map_or(seq.1, |l| l.max(seq.1)));
        if !in_window {
            return;
        }
        if let Some(layer) = tag.layer
            && let Some(n) = self.frames_by_layer.get_mut(usize::from(layer))
        {
            *n += 1;
        }
        self.frames += 1;
        self.packets += seq.1.saturating_sub(seq.0) + 1;
        self.bytes += bytes as u64;
        let transit = arrival_us as i64 - tag.sent_us as i64;
        if let Some(prev) = self.last_transit {
            let d = (transit - prev).unsigned_abs() as f64;
            self.jitter_us += (d - self.jitter_us) / 16.0;
        }
        self.last_transit = Some(transit);
        self.latency_us
            .push(transit.clamp(0, i64::from(u32::MAX)) as u32);
    }

    /// The layer most of its frames came in (video only).
    pub fn main_layer(&self) -> Option<usize> {
        if self.audio {
            return None;
        }
        let (layer, n) = self
            .frames_by_layer
            .iter()
            .enumerate()
            .max_by_key(|(_, n)| **n)?;
        (*n > 0).then_some(layer)
    }
}
