//! One synthetic WebRTC endpoint: a str0m `Rtc` (full ICE, DTLS-SRTP) on its
//! own loopback UDP socket, driven by a tokio task. It publishes the
//! synthetic camera (three simulcast layers) and microphone of `media` on
//! schedule once connected, answers keyframe requests, and counts what it
//! receives (`received`). Signaling (Noom's Socket.IO or Janus's HTTP API)
//! talks to it through [`PeerHandle`]: offers, answers, the server's offers.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{
    Direction, Frequency, MediaData, MediaKind, MediaTime, Mid, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::media::{self, AUDIO_INTERVAL, FRAME_INTERVAL, KEYFRAME_EVERY_FRAMES, LAYERS, Tag};
use super::received::{StreamLog, Window};
use crate::Res;

/// Largest datagram read.
const DATAGRAM_MAX: usize = 2000;
/// Datagrams read per wake-up before the session runs again.
const READ_BATCH: usize = 64;
/// Kernel buffers asked for (the default 208 KiB overflows on keyframe bursts).
const SOCKET_BUFFER: usize = 4 << 20;

/// What signaling asks of a session.
enum Command {
    /// An offer publishing the camera and microphone under `stream_id`.
    Offer {
        stream_id: String,
        reply: oneshot::Sender<Result<Offered, String>>,
    },
    /// The answer to our last offer.
    Answer {
        sdp: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// An offer from the server; the reply is our answer.
    RemoteOffer {
        sdp: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
}

/// Our offer and the mids it gave our two tracks.
pub struct Offered {
    pub sdp: String,
    pub video_mid: String,
    pub audio_mid: String,
}

/// Watched by the coordinator while sessions come up.
#[derive(Default)]
pub struct Progress {
    pub connected: AtomicBool,
    /// Distinct publishers whose video arrived.
    pub publishers_heard: AtomicUsize,
}

/// Talks to a running session.
#[derive(Clone)]
pub struct PeerHandle {
    commands: mpsc::UnboundedSender<Command>,
    pub progress: Arc<Progress>,
}

impl PeerHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Command,
    ) -> Res<T> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .map_err(|_| "the session has stopped")?;
        Ok(rx.await.map_err(|_| "the session has stopped")??)
    }

    pub async fn offer(&self, stream_id: &str) -> Res<Offered> {
        let stream_id = stream_id.to_string();
        self.ask(|reply| Command::Offer { stream_id, reply }).await
    }

    pub async fn accept_answer(&self, sdp: &str) -> Res<()> {
        let sdp = sdp.to_string();
        self.ask(|reply| Command::Answer { sdp, reply }).await
    }

    pub async fn accept_offer(&self, sdp: &str) -> Res<String> {
        let sdp = sdp.to_string();
        self.ask(|reply| Command::RemoteOffer { sdp, reply }).await
    }
}

/// What a session did, handed back when it stops.
#[derive(Debug, Default)]
pub struct PeerLog {
    /// Publisher number, when it published.
    pub publisher: Option<u32>,
    pub connected: bool,
    /// Frames written in the window, by layer, and audio packets.
    pub sent_frames: [u64; LAYERS.len()],
    pub sent_audio: u64,
    pub keyframe_requests: u64,
    /// Incoming streams by mid.
    pub streams: Vec<(Mid, StreamLog)>,
    /// Media events whose payload carried no tag of ours.
    pub unreadable: u64,
    /// Largest lateness of a media write on its schedule, µs (a saturated
    /// generator shows here).
    pub send_lag_max_us: u64,
    pub error: Option<String>,
}

struct Publishing {
    video: Mid,
    audio: Mid,
    next_video: Instant,
    next_audio: Instant,
    frame: u64,
    audio_counter: u64,
    keyframe_asked: [bool; LAYERS.len()],
}

struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    index: u32,
    window: Arc<Window>,
    progress: Arc<Progress>,
    pending: Option<SdpPendingOffer>,
    /// Tracks offered, publishing once connected.
    tracks: Option<(Mid, Mid)>,
    publishing: Option<Publishing>,
    heard: HashSet<u32>,
    log: PeerLog,
}

/// Binds a UDP socket on `bind` and starts a session on it. `index` is the
/// publisher number its frames carry.
pub async fn spawn(
    bind: std::net::IpAddr,
    index: u32,
    window: Arc<Window>,
    stop: CancellationToken,
) -> Res<(PeerHandle, tokio::task::JoinHandle<PeerLog>)> {
    let std_socket = std::net::UdpSocket::bind((bind, 0))?;
    let sock = socket2::SockRef::from(&std_socket);
    // Best effort: capped by net.core.rmem_max / wmem_max.
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    std_socket.set_nonblocking(true)?;
    let socket = UdpSocket::from_std(std_socket)?;
    let local = socket.local_addr()?;
    let mut rtc = Rtc::builder()
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    let progress = Arc::new(Progress::default());
    let (tx, rx) = mpsc::unbounded_channel();
    let peer = Peer {
        rtc,
        socket,
        local,
        index,
        window,
        progress: progress.clone(),
        pending: None,
        tracks: None,
        publishing: None,
        heard: HashSet::new(),
        log: PeerLog::default(),
    };
    let task = tokio::spawn(peer.run(rx, stop));
    Ok((
        PeerHandle {
            commands: tx,
            progress,
        },
        task,
    ))
}

impl Peer {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        stop: CancellationToken,
    ) -> PeerLog {
        let mut buf = vec![0u8; DATAGRAM_MAX];
        let mut commands_open = true;
        loop {
            let deadline = match self.drive().await {
                Ok(d) => d,
                Err(e) => {
                    self.log.error = Some(e);
                    break;
                }
            };
            let wake = match &self.publishing {
                Some(p) => deadline.min(p.next_video).min(p.next_audio),
                None => deadline,
            };
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                command = commands.recv(), if commands_open => match command {
                    Some(c) => self.command(c),
                    None => commands_open = false,
                },
                received = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = received {
                        self.input(&buf[..n], from);
                        for _ in 1..READ_BATCH {
                            match self.socket.try_recv_from(&mut buf) {
                                Ok((n, from)) => self.input(&buf[..n], from),
                                Err(_) => break,
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                self.log.error = Some(e.to_string());
                break;
            }
            self.publish_due(now);
        }
        self.log.publisher = self.tracks.map(|_| self.index);
        self.log
    }

    fn input(&mut self, datagram: &[u8], from: SocketAddr) {
        let Ok(contents) = datagram.try_into() else {
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: self.local,
                contents,
            },
        );
        if let Err(e) = self.rtc.handle_input(input) {
            self.log.error.get_or_insert(e.to_string());
        }
    }

    /// Sends what the session has to send and handles its events; returns
    /// its next deadline.
    async fn drive(&mut self) -> Result<Instant, String> {
        loop {
            match self.rtc.poll_output().map_err(|e| e.to_string())? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    // Awaited, not dropped: a loss must be the server's.
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(e) => self.event(e),
            }
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Connected => {
                self.log.connected = true;
                self.progress.connected.store(true, Ordering::Relaxed);
                self.start_publishing();
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.log.error.get_or_insert("ICE disconnected".into());
            }
            Event::MediaData(data) => self.received(&data),
            Event::KeyframeRequest(request) => {
                self.log.keyframe_requests += 1;
                if let Some(p) = &mut self.publishing {
                    match request.rid.and_then(|r| media::layer_of_rid(&r)) {
                        Some(layer) => p.keyframe_asked[layer] = true,
                        None => p.keyframe_asked = [true; LAYERS.len()],
                    }
                }
            }
            _ => {}
        }
    }

    fn received(&mut self, data: &MediaData) {
        let tag = match media::read_video(&data.data) {
            Some((tag, _)) => tag,
            None => match media::read_audio(&data.data) {
                Some(tag) => tag,
                None => {
                    self.log.unreadable += 1;
                    return;
                }
            },
        };
        if tag.layer.is_some() && self.heard.insert(tag.publisher) {
            self.progress
                .publishers_heard
                .store(self.heard.len(), Ordering::Relaxed);
        }
        let arrival = self.window.us(Instant::now());
        let seq = (**data.seq_range.start(), **data.seq_range.end());
        let stream = match self.log.streams.iter().position(|(m, _)| *m == data.mid) {
            Some(i) => &mut self.log.streams[i].1,
            None => {
                self.log.streams.push((data.mid, StreamLog::default()));
                let last = self.log.streams.len() - 1;
                &mut self.log.streams[last].1
            }
        };
        stream.record(&tag, seq, data.data.len(), arrival, &self.window);
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Offer { stream_id, reply } => {
                let _ = reply.send(self.make_offer(stream_id));
            }
            Command::Answer { sdp, reply } => {
                let result = match (self.pending.take(), SdpAnswer::from_sdp_string(&sdp)) {
                    (Some(pending), Ok(answer)) => self
                        .rtc
                        .sdp_api()
                        .accept_answer(pending, answer)
                        .map_err(|e| e.to_string()),
                    (None, _) => Err("no offer of ours is waiting".into()),
                    (_, Err(e)) => Err(format!("unreadable answer: {e}")),
                };
                let _ = reply.send(result);
            }
            Command::RemoteOffer { sdp, reply } => {
                let result = SdpOffer::from_sdp_string(&sdp)
                    .map_err(|e| format!("unreadable offer: {e}"))
                    .and_then(|offer| {
                        self.rtc
                            .sdp_api()
                            .accept_offer(offer)
                            .map_err(|e| e.to_string())
                    })
                    .map(|answer| answer.to_sdp_string());
                let _ = reply.send(result);
            }
        }
    }

    fn make_offer(&mut self, stream_id: String) -> Result<Offered, String> {
        let mut api = self.rtc.sdp_api();
        let mut simulcast = Simulcast::new();
        for layer in LAYERS {
            simulcast.add_send_layer(SimulcastLayer::new(layer.rid));
        }
        let video = api.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            Some(stream_id.clone()),
            Some(format!("{stream_id}-video")),
            Some(simulcast),
        );
        let audio = api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some(stream_id.clone()),
            Some(format!("{stream_id}-audio")),
            None,
        );
        let (offer, pending) = api.apply().ok_or("nothing to offer")?;
        self.pending = Some(pending);
        self.tracks = Some((video, audio));
        if self.log.connected {
            self.start_publishing();
        }
        Ok(Offered {
            sdp: offer.to_sdp_string(),
            video_mid: video.to_string(),
            audio_mid: audio.to_string(),
        })
    }

    fn start_publishing(&mut self) {
        let Some((video, audio)) = self.tracks else {
            return;
        };
        if self.publishing.is_some() {
            return;
        }
        let now = Instant::now();
        // Publishers are spread over a frame interval, like real cameras.
        let offset = FRAME_INTERVAL.mul_f64(f64::from(self.index % 16) / 16.0);
        self.publishing = Some(Publishing {
            video,
            audio,
            next_video: now + offset,
            next_audio: now + offset,
            frame: 0,
            audio_counter: 0,
            keyframe_asked: [true; LAYERS.len()],
        });
    }

    /// Writes the frame and the audio packet whose time has come, at most
    /// one of each: str0m wants `poll_output` between writes (it refuses a
    /// queue of many), and the loop comes straight back while more are due.
    fn publish_due(&mut self, now: Instant) {
        let Some(p) = &mut self.publishing else {
            return;
        };
        let window = &self.window;
        let log = &mut self.log;
        let late_catch_up = Duration::from_secs(1);
        if p.next_video <= now {
            log.send_lag_max_us = log
                .send_lag_max_us
                .max(now.duration_since(p.next_video).as_micros() as u64);
            let sent_us = window.us(now);
            let vp8 = self.rtc.writer(p.video).and_then(|w| {
                w.payload_params()
                    .find(|x| x.spec().codec == Codec::Vp8)
                    .map(|x| x.pt())
            });
            if let Some(pt) = vp8 {
                for (layer, spec) in LAYERS.iter().enumerate() {
                    let keyframe = p.frame % KEYFRAME_EVERY_FRAMES == 0 || p.keyframe_asked[layer];
                    p.keyframe_asked[layer] = false;
                    let tag = Tag {
                        layer: Some(layer as u8),
                        publisher: self.index,
                        counter: p.frame as u32,
                        sent_us,
                    };
                    let Some(writer) = self.rtc.writer(p.video) else {
                        break;
                    };
                    let time = MediaTime::new(p.frame * 3000, Frequency::NINETY_KHZ);
                    let written = writer.rid(Rid::from(spec.rid)).write(
                        pt,
                        now,
                        time,
                        media::video_frame(&tag, keyframe),
                    );
                    match written {
                        Ok(()) if window.contains(sent_us) => log.sent_frames[layer] += 1,
                        Ok(()) => {}
                        Err(e) => {
                            log.error.get_or_insert(format!("video write: {e}"));
                        }
                    }
                }
            }
            p.frame += 1;
            p.next_video += FRAME_INTERVAL;
            if now.duration_since(p.next_video) > late_catch_up {
                p.next_video = now + FRAME_INTERVAL;
            }
        }
        if p.next_audio <= now {
            let sent_us = window.us(now);
            let tag = Tag {
                layer: None,
                publisher: self.index,
                counter: p.audio_counter as u32,
                sent_us,
            };
            if let Some(writer) = self.rtc.writer(p.audio) {
                let opus = writer
                    .payload_params()
                    .find(|x| x.spec().codec == Codec::Opus)
                    .map(|x| x.pt());
                if let Some(pt) = opus {
                    let time = MediaTime::new(p.audio_counter * 960, Frequency::FORTY_EIGHT_KHZ);
                    match writer.write(pt, now, time, media::audio_packet(&tag)) {
                        Ok(()) if window.contains(sent_us) => log.sent_audio += 1,
                        Ok(()) => {}
                        Err(e) => {
                            log.error.get_or_insert(format!("audio write: {e}"));
                        }
                    }
                }
            }
            p.audio_counter += 1;
            p.next_audio += AUDIO_INTERVAL;
            if now.duration_since(p.next_audio) > late_catch_up {
                p.next_audio = now + AUDIO_INTERVAL;
            }
        }
    }
}
