//! `sfu`: the media server under load. `--participants` synthetic
//! participants (`peer`: str0m sessions on loopback UDP sockets) each
//! publish a simulcast VP8 camera (three layers, about 150/500/1,500 kbit/s
//! at 30 fps) and an Opus microphone (50 packets/s), and receive every other
//! participant through the server at the layer asked for (`--layer`).
//! `--target noom` signals through Noom's Socket.IO contract (`noom`),
//! `--target janus` through Janus's videoroom HTTP API (`janus`), so the
//! same clients measure both. Once every subscriber hears every publisher,
//! `--warmup` seconds pass, then the window opens for `--duration` seconds:
//! forwarded packets/s and bit/s, loss, jitter and delay (`received`,
//! `report`), the server's CPU time from `/proc/<pid>/stat` (`cpu`) per
//! forwarded packet, and the generator's own CPU time, which shares the
//! machine.

mod cpu;
mod janus;
mod media;
mod noom;
mod peer;
mod received;
mod report;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::http::{authority, check_server};
use crate::{Res, print_json};
use peer::{PeerHandle, PeerLog};
use received::Window;
use report::{Inputs, SfuReport};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    Noom,
    Janus,
}

#[derive(Args, Debug)]
pub struct SfuArgs {
    /// Which server: Noom (Socket.IO signaling) or Janus (videoroom, HTTP API).
    #[arg(long, value_enum, default_value = "noom")]
    target: Target,
    /// Base URL of the Noom server.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// Base URL of Janus's HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8088")]
    janus_url: String,
    /// Address the synthetic sessions bind to against Janus, which gathers
    /// no loopback candidates: an address of a dummy interface in a network
    /// namespace of its own (`scripts/bench-sfu.sh`). Noom's sessions use 127.0.0.1.
    #[arg(long, default_value = "127.0.0.1")]
    janus_bind: std::net::IpAddr,
    /// Pid of the server process, for its CPU time (from /proc).
    #[arg(long)]
    pid: Option<u32>,
    /// Participants in the one room: each publishes and receives all others.
    #[arg(long, default_value_t = 5)]
    participants: usize,
    /// Layer every subscriber asks for: q (320x180), h (640x360), f (1280x720).
    #[arg(long, default_value = "h")]
    layer: String,
    /// Janus numbers substreams from the first rid of `a=simulcast` (ours
    /// lists q;h;f) as the highest; this flag numbers them from the lowest.
    #[arg(long)]
    janus_substreams_low_first: bool,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Seconds of media after set-up, before the window.
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// Longest wait for every subscriber to hear every publisher.
    #[arg(long, default_value_t = 60.0)]
    ready_timeout: f64,
    /// Print one JSON line instead of the readable report.
    #[arg(long)]
    json: bool,
}

/// Every session of the run, whatever the target.
#[derive(Default)]
struct Sessions {
    /// (participant, handle, task) of sessions that receive.
    receiving: Vec<(u32, PeerHandle)>,
    /// Tasks of publishing sessions.
    publishing: Vec<tokio::task::JoinHandle<PeerLog>>,
    /// Tasks of receiving-only sessions (Janus's subscribers), by participant.
    receiving_only: Vec<(u32, tokio::task::JoinHandle<PeerLog>)>,
    signals: Vec<tokio::task::JoinHandle<noom::SignalLog>>,
}

pub async fn run(args: SfuArgs) -> Res<bool> {
    if args.participants < 2 {
        return Err("need at least 2 participants".into());
    }
    if args.duration <= 0.0 || args.warmup < 0.0 {
        return Err("--duration must be positive, --warmup not negative".into());
    }
    let layer = media::layer_of_rid(&args.layer).ok_or("--layer must be q, h or f")?;
    let window = Arc::new(Window::new());
    let stop = CancellationToken::new();
    let set_up = Instant::now();
    let target = match args.target {
        Target::Noom => "noom",
        Target::Janus => "janus",
    };
    eprintln!("{target}: setting up {} participants...", args.participants);
    let sessions = match args.target {
        Target::Noom => set_up_noom(&args, layer, &window, &stop).await,
        Target::Janus => set_up_janus(&args, layer, &window, &stop).await,
    };
    let sessions = match sessions {
        Ok(s) => s,
        Err(e) => {
            stop.cancel();
            return Err(e);
        }
    };
    let ready = wait_ready(&sessions, args.participants, args.ready_timeout).await;
    let setup_s = set_up.elapsed().as_secs_f64();
    eprintln!(
        "set up in {setup_s:.1} s ({}); warming up {} s...",
        if ready {
            "every stream flows"
        } else {
            "NOT every stream flows"
        },
        args.warmup
    );
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;

    let server_cpu = |pid: Option<u32>| pid.map(cpu::cpu_seconds).transpose();
    let (server0, own0) = (server_cpu(args.pid)?, cpu::own_cpu_seconds()?);
    window.open(Instant::now());
    eprintln!("measuring for {} s...", args.duration);
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    window.close(Instant::now());
    let (server1, own1) = (server_cpu(args.pid)?, cpu::own_cpu_seconds()?);
    // Frames sent at the window's end are still on their way.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.cancel();

    let mut publishers = Vec::new();
    for task in sessions.publishing {
        publishers.push(task.await?);
    }
    let mut subscribers = Vec::new();
    let mut own_receivers = Vec::new();
    for (index, task) in sessions.receiving_only {
        own_receivers.push((index, task.await?));
    }
    if own_receivers.is_empty() {
        // Noom: one session publishes and receives.
        for p in &publishers {
            if let Some(index) = p.publisher {
                subscribers.push((index, clone_receiving(p)));
            }
        }
    } else {
        subscribers = own_receivers;
    }
    let mut signals = Vec::new();
    for task in sessions.signals {
        signals.push(task.await?);
    }
    let report = SfuReport::new(Inputs {
        target,
        layer,
        duration_s: args.duration,
        setup_s,
        ready,
        publishers: &publishers,
        subscribers: &subscribers,
        signals: &signals,
        server_cpu_s: server0.zip(server1).map(|(a, b)| b - a),
        generator_cpu_s: own1 - own0,
    });
    if args.json {
        print_json(&report)?;
    } else {
        report.print();
    }
    Ok(report.held)
}

/// The receiving half of a session's log (a Noom session does both).
fn clone_receiving(log: &PeerLog) -> PeerLog {
    PeerLog {
        streams: log.streams.clone(),
        error: log.error.clone(),
        unreadable: log.unreadable,
        connected: log.connected,
        ..PeerLog::default()
    }
}

/// A room name of this run.
fn run_tag() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos >> 10) ^ u64::from(std::process::id()).rotate_left(20)
}

async fn set_up_noom(
    args: &SfuArgs,
    layer: usize,
    window: &Arc<Window>,
    stop: &CancellationToken,
) -> Res<Sessions> {
    let addr = authority(&args.url)?;
    check_server(&addr).await?;
    let room = format!("sfu-load-{:x}", run_tag() & 0xffff_ffff);
    let mut sessions = Sessions::default();
    // One after another: each join makes the server renegotiate with everyone.
    for index in 0..args.participants as u32 {
        let p = noom::join(
            &args.url,
            &room,
            index,
            media::LAYERS[layer],
            window.clone(),
            stop.clone(),
        )
        .await
        .map_err(|e| format!("participant {index}: {e}"))?;
        sessions.receiving.push((index, p.peer));
        sessions.publishing.push(p.peer_task);
        sessions.signals.push(p.signal_task);
    }
    Ok(sessions)
}

async fn set_up_janus(
    args: &SfuArgs,
    layer: usize,
    window: &Arc<Window>,
    stop: &CancellationToken,
) -> Res<Sessions> {
    let addr = authority(&args.janus_url)?;
    let room = 1_000 + run_tag() % 1_000_000_000;
    janus::create_room(&addr, room, args.participants + 5, stop.clone()).await?;
    let mut sessions = Sessions::default();
    let mut published = Vec::new();
    for index in 0..args.participants as u32 {
        let p = janus::publish(
            &addr,
            args.janus_bind,
            room,
            index,
            window.clone(),
            stop.clone(),
        )
        .await
        .map_err(|e| format!("publisher {index}: {e}"))?;
        published.push(p);
    }
    // Janus knows a feed only once its PeerConnection is up.
    let until = Instant::now() + Duration::from_secs_f64(args.ready_timeout);
    while !published
        .iter()
        .all(|p| p.peer.progress.connected.load(Ordering::Relaxed))
    {
        if Instant::now() >= until {
            return Err("not every publisher connected to Janus".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let feeds: Vec<(u32, (u64, String, String))> = published
        .iter()
        .enumerate()
        .map(|(i, p)| (i as u32, (p.feed, p.audio_mid.clone(), p.video_mid.clone())))
        .collect();
    let substream = if args.janus_substreams_low_first {
        layer as u8
    } else {
        (media::LAYERS.len() - 1 - layer) as u8
    };
    for (index, p) in published.into_iter().enumerate() {
        let index = index as u32;
        let mut session = p.session;
        let others: Vec<(u64, String, String)> = feeds
            .iter()
            .filter(|(i, _)| *i != index)
            .map(|(_, f)| f.clone())
            .collect();
        let s = janus::subscribe(
            &mut session,
            args.janus_bind,
            room,
            index,
            &others,
            substream,
            window.clone(),
            stop.clone(),
        )
        .await
        .map_err(|e| format!("subscriber {index}: {e}"))?;
        sessions.receiving.push((index, s.peer));
        sessions.receiving_only.push((index, s.peer_task));
        sessions.publishing.push(p.peer_task);
        // The session (its long poll) lives until `stop`.
        drop(session);
        drop(p.peer);
    }
    Ok(sessions)
}

/// Waits until every receiving session has heard video from every other
/// participant; false when `timeout_s` passed first.
async fn wait_ready(sessions: &Sessions, participants: usize, timeout_s: f64) -> bool {
    let until = Instant::now() + Duration::from_secs_f64(timeout_s);
    loop {
        let heard = sessions
            .receiving
            .iter()
            .filter(|(_, h)| {
                h.progress.publishers_heard.load(Ordering::Relaxed) + 1 >= participants
            })
            .count();
        if heard == sessions.receiving.len() {
            return true;
        }
        if Instant::now() >= until {
            eprintln!(
                "warning: only {heard} of {} subscribers hear every publisher",
                sessions.receiving.len()
            );
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
