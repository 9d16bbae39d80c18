//! The `sfu` report: what the sessions' logs add up to over the measured
//! window. Per subscriber, every other participant's video (at the layer
//! asked for) and audio is expected: frames sent in the window are known
//! exactly (the publishers are in this process), so loss is what did not
//! arrive, streams that never came included. Printed readable or as one
//! JSON line.

use std::collections::HashMap;

use serde::Serialize;

use super::media::LAYERS;
use super::noom::SignalLog;
use super::peer::PeerLog;
use crate::stats::{Summary, summarize};

/// A subscriber under this much loss, with its layer from everyone, is held.
pub const LOSS_LIMIT_PCT: f64 = 1.0;

#[derive(Debug, Default, Serialize)]
pub struct SubscriberFigures {
    pub index: u32,
    pub video_streams: usize,
    pub audio_streams: usize,
    /// Video streams whose frames came at the requested layer.
    pub at_requested_layer: usize,
    /// Frames missing of those expected, video and audio together.
    pub loss_pct: f64,
    pub error: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct SfuReport {
    pub target: String,
    pub participants: usize,
    pub layer: String,
    pub duration_s: f64,
    pub setup_s: f64,
    /// Every subscriber heard every other publisher before the window.
    pub ready: bool,
    /// Forwarded RTP packets received by all subscribers in the window.
    pub packets: u64,
    pub packets_per_s: f64,
    pub bits_per_s: f64,
    pub video_frames_expected: u64,
    pub video_frames_received: u64,
    pub audio_expected: u64,
    pub audio_received: u64,
    pub loss_pct: f64,
    pub video_loss_pct: f64,
    pub audio_loss_pct: f64,
    /// RTP sequence gaps between the frames received, % of packets.
    pub seq_gap_pct: f64,
    pub jitter_ms_mean: f64,
    pub jitter_ms_max: f64,
    pub latency: Summary,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_packet: Option<f64>,
    pub server_cores: Option<f64>,
    pub generator_cpu_s: f64,
    pub generator_cores: f64,
    pub generator_send_lag_max_ms: f64,
    pub keyframe_requests_to_publishers: u64,
    pub subscribers_at_layer: usize,
    pub subscribers_under_loss_limit: usize,
    pub worst_subscriber_loss_pct: f64,
    /// Every subscriber got its layer from everyone at under 1% loss.
    pub held: bool,
    pub session_errors: Vec<String>,
    pub media_view_ok: u64,
    pub media_view_refused: u64,
    pub media_view_unanswered: u64,
    pub media_view_error: Option<String>,
    pub subscribers: Vec<SubscriberFigures>,
}

pub struct Inputs<'a> {
    pub target: &'a str,
    pub layer: usize,
    pub duration_s: f64,
    pub setup_s: f64,
    pub ready: bool,
    /// Logs of publishing sessions (with their publisher number).
    pub publishers: &'a [PeerLog],
    /// (participant number, log) of receiving sessions.
    pub subscribers: &'a [(u32, PeerLog)],
    pub signals: &'a [SignalLog],
    pub server_cpu_s: Option<f64>,
    pub generator_cpu_s: f64,
}

fn pct(lost: u64, expected: u64) -> f64 {
    if expected == 0 {
        return 0.0;
    }
    lost as f64 * 100.0 / expected as f64
}

impl SfuReport {
    pub fn new(i: Inputs<'_>) -> SfuReport {
        let sent: HashMap<u32, &PeerLog> = i
            .publishers
            .iter()
            .filter_map(|p| Some((p.publisher?, p)))
            .collect();
        let mut r = SfuReport {
            target: i.target.to_string(),
            participants: sent.len(),
            layer: LAYERS[i.layer].rid.to_string(),
            duration_s: i.duration_s,
            setup_s: i.setup_s,
            ready: i.ready,
            server_cpu_s: i.server_cpu_s,
            generator_cpu_s: i.generator_cpu_s,
            generator_cores: i.generator_cpu_s / i.duration_s,
            ..SfuReport::default()
        };
        let (mut bytes, mut seq_lost) = (0u64, 0u64);
        let (mut jitters, mut latencies) = (Vec::new(), Vec::new());
        for (index, log) in i.subscribers {
            let mut s = SubscriberFigures {
                index: *index,
                error: log.error.clone(),
                ..SubscriberFigures::default()
            };
            let (mut expected, mut received) = (0u64, 0u64);
            for (publisher, p) in &sent {
                if publisher == index {
                    continue;
                }
                let of = |audio: bool| {
                    log.streams
                        .iter()
                        .map(|(_, st)| st)
                        .find(|st| st.publisher == Some(*publisher) && st.audio == audio)
                };
                // Video: expected at the layer that came (a wrong layer is
                // counted apart), or the requested one when none came.
                let video = of(false);
                let layer = video.and_then(|v| v.main_layer()).unwrap_or(i.layer);
                let (ve, vr) = (
                    p.sent_frames[layer],
                    video.map_or(0, |v| v.frames_by_layer[layer]),
                );
                if video.is_some() {
                    s.video_streams += 1;
                    if layer == i.layer {
                        s.at_requested_layer += 1;
                    }
                }
                let audio = of(true);
                let (ae, ar) = (p.sent_audio, audio.map_or(0, |a| a.frames));
                if audio.is_some() {
                    s.audio_streams += 1;
                }
                r.video_frames_expected += ve;
                r.video_frames_received += vr.min(ve);
                r.audio_expected += ae;
                r.audio_received += ar.min(ae);
                expected += ve + ae;
                received += vr.min(ve) + ar.min(ae);
            }
            for (_, st) in &log.streams {
                r.packets += st.packets;
                bytes += st.bytes;
                seq_lost += st.seq_lost;
                if st.frames > 1 {
                    jitters.push(st.jitter_us / 1000.0);
                }
                latencies.extend(st.latency_us.iter().map(|&l| u64::from(l)));
            }
            s.loss_pct = pct(expected - received, expected);
            let others = sent.len().saturating_sub(1);
            if s.at_requested_layer == others {
                r.subscribers_at_layer += 1;
            }
            if s.loss_pct < LOSS_LIMIT_PCT {
                r.subscribers_under_loss_limit += 1;
            }
            r.worst_subscriber_loss_pct = r.worst_subscriber_loss_pct.max(s.loss_pct);
            r.subscribers.push(s);
        }
        r.packets_per_s = r.packets as f64 / i.duration_s;
        r.bits_per_s = bytes as f64 * 8.0 / i.duration_s;
        r.video_loss_pct = pct(
            r.video_frames_expected - r.video_frames_received,
            r.video_frames_expected,
        );
        r.audio_loss_pct = pct(r.audio_expected - r.audio_received, r.audio_expected);
        r.loss_pct = pct(
            r.video_frames_expected + r.audio_expected - r.video_frames_received - r.audio_received,
            r.video_frames_expected + r.audio_expected,
        );
        r.seq_gap_pct = pct(seq_lost, r.packets + seq_lost);
        if !jitters.is_empty() {
            r.jitter_ms_mean = jitters.iter().sum::<f64>() / jitters.len() as f64;
            r.jitter_ms_max = jitters.iter().copied().fold(0.0, f64::max);
        }
        r.latency = summarize(latencies);
        if let Some(cpu) = r.server_cpu_s {
            r.server_cores = Some(cpu / i.duration_s);
            if r.packets > 0 {
                r.server_cpu_us_per_packet = Some(cpu * 1e6 / r.packets as f64);
            }
        }
        r.generator_send_lag_max_ms = i
            .publishers
            .iter()
            .map(|p| p.send_lag_max_us)
            .max()
            .unwrap_or(0) as f64
            / 1000.0;
        r.keyframe_requests_to_publishers = i.publishers.iter().map(|p| p.keyframe_requests).sum();
        for log in i
            .publishers
            .iter()
            .chain(i.subscribers.iter().map(|(_, l)| l))
        {
            if let Some(e) = &log.error {
                r.session_errors.push(e.clone());
            }
        }
        for s in i.signals {
            r.media_view_ok += s.views_ok;
            r.media_view_refused += s.views_refused;
            r.media_view_unanswered += s.views_unanswered;
            if r.media_view_error.is_none() {
                r.media_view_error = s.view_error.clone();
            }
            if let Some(e) = &s.error {
                r.session_errors.push(format!("signaling: {e}"));
            }
        }
        r.session_errors.sort();
        r.session_errors.dedup();
        let n = r.subscribers.len();
        r.held =
            n > 0 && r.ready && r.subscribers_at_layer == n && r.subscribers_under_loss_limit == n;
        r
    }

    pub fn print(&self) {
        let n = self.subscribers.len();
        println!(
            "target         {}  {} participants (each publishes q/h/f + audio, receives the others at `{}`)",
            self.target, self.participants, self.layer
        );
        println!(
            "set-up         {:.1} s; every subscriber heard every publisher before the window: {}",
            self.setup_s,
            if self.ready { "yes" } else { "NO" }
        );
        println!(
            "forwarded      {} packets in {:.0} s: {:.0} packets/s, {:.1} Mbit/s received by all subscribers",
            self.packets,
            self.duration_s,
            self.packets_per_s,
            self.bits_per_s / 1e6
        );
        println!(
            "loss           {:.3}% of frames (video {:.3}%: {} of {}; audio {:.3}%: {} of {}); seq gaps {:.3}% of packets",
            self.loss_pct,
            self.video_loss_pct,
            self.video_frames_received,
            self.video_frames_expected,
            self.audio_loss_pct,
            self.audio_received,
            self.audio_expected,
            self.seq_gap_pct
        );
        println!(
            "jitter         mean {:.2} ms, worst stream {:.2} ms (RFC 3550, per frame)",
            self.jitter_ms_mean, self.jitter_ms_max
        );
        println!("one-way delay  {}", self.latency);
        match (self.server_cpu_s, self.server_cpu_us_per_packet) {
            (Some(cpu), Some(per)) => println!(
                "server         CPU {cpu:.2} s ({:.0}% of a core), {per:.2} us per forwarded packet",
                cpu * 100.0 / self.duration_s
            ),
            _ => println!("server         CPU not measured (give --pid)"),
        }
        println!(
            "load generator CPU {:.2} s ({:.0}% of a core); worst send lag {:.1} ms",
            self.generator_cpu_s,
            self.generator_cores * 100.0,
            self.generator_send_lag_max_ms
        );
        println!(
            "subscribers    {} of {n} got layer `{}` from everyone, {} of {n} under {LOSS_LIMIT_PCT}% loss (worst {:.3}%)",
            self.subscribers_at_layer,
            self.layer,
            self.subscribers_under_loss_limit,
            self.worst_subscriber_loss_pct
        );
        if self.media_view_ok + self.media_view_refused + self.media_view_unanswered > 0 {
            println!(
                "media_view     {} accepted, {} refused, {} unanswered{}",
                self.media_view_ok,
                self.media_view_refused,
                self.media_view_unanswered,
                self.media_view_error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
        }
        println!(
            "keyframes      {} requests reached the publishers",
            self.keyframe_requests_to_publishers
        );
        for e in self.session_errors.iter().take(5) {
            println!("error          {e}");
        }
        println!(
            "held           {}",
            if self.held {
                "yes: every subscriber got its layer from everyone at under 1% loss"
            } else {
                "NO"
            }
        );
    }
}
