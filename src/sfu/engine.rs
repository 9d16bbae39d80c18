//! The media loop: one UDP socket, every participant's `Rtc`, and the
//! forwarding between participants of the same call.
//!
//! str0m is sans-IO: the loop reads a datagram, hands it to the session
//! that accepts it, lets every session produce its output (datagrams to
//! send, events, the next deadline) and carries what one participant
//! publishes to the others. It never blocks: a datagram the kernel will not
//! take now is dropped, like a router would.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::media::{KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::layers;
use super::participant::{Participant, Propagated, timeout_of};
use super::speakers::Speakers;
use super::{Command, Joined, SfuError, SfuEvent, SfuSettings, SfuStats};

/// The loop wakes at least this often to drive time in every session.
const TICK: Duration = Duration::from_millis(100);
/// Speakers are ranked and layers measured this often.
const RANK_EVERY: Duration = Duration::from_millis(250);
/// Largest datagram read.
const DATAGRAM_MAX: usize = 2000;
/// Datagrams read at most per wake-up before the sessions are driven: one
/// wake-up and one pass over the sessions serve a burst, not each packet.
const READ_BATCH: usize = 64;
/// Sessions report their statistics (the loss their browser saw) this often.
const STATS_EVERY: Duration = Duration::from_secs(1);
/// How long an incomplete video frame from a publisher waits for its
/// missing packets (a resend asked for) before it is dropped and the frames
/// after it go on (str0m's default: 2 s). Longer freezes every subscriber's
/// picture of that publisher: after a move, packets the returning browser
/// resent of what it had sent into the dead path left such a frame at the
/// head of the queue, and its video came through 1.5 s late, all at once.
/// A resend takes a round trip; a frame dropped costs a keyframe.
const REORDER_WAIT: Duration = Duration::from_millis(500);

pub struct Engine {
    socket: UdpSocket,
    /// The address in our candidate: what sessions see as the destination.
    addr: SocketAddr,
    max: usize,
    events: mpsc::UnboundedSender<SfuEvent>,
    participants: Vec<Participant>,
    next_id: u64,
    stats: SfuStats,
    crypto: Arc<str0m::crypto::CryptoProvider>,
    speakers: Speakers,
    next_rank: Instant,
}

impl Engine {
    pub fn new(
        socket: UdpSocket,
        addr: SocketAddr,
        settings: &SfuSettings,
        events: mpsc::UnboundedSender<SfuEvent>,
    ) -> Self {
        Engine {
            socket,
            addr,
            max: settings.max_participants,
            events,
            participants: Vec::new(),
            next_id: 1,
            stats: SfuStats::default(),
            crypto: Arc::new(str0m::crypto::from_feature_flags()),
            speakers: Speakers::new(settings.audio_streams),
            next_rank: Instant::now(),
        }
    }

    /// Runs until every command sender is gone.
    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut buf = vec![0u8; DATAGRAM_MAX];
        loop {
            let deadline = self.drive();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(c) => {
                        self.command(c);
                        // Commands are rare: every session looks again.
                        for p in &mut self.participants {
                            p.dirty = true;
                        }
                    }
                    None => break,
                },
                received = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = received {
                        self.receive(&buf[..n], from);
                        for _ in 1..READ_BATCH {
                            match self.socket.try_recv_from(&mut buf) {
                                Ok((n, from)) => self.receive(&buf[..n], from),
                                Err(_) => break,
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
            // Time moves only the sessions whose deadline passed: the cost
            // of a datagram does not grow with the number of sessions.
            let now = Instant::now();
            for p in &mut self.participants {
                if p.next_timeout <= now && p.rtc.is_alive() {
                    p.dirty = true;
                    if p.rtc.handle_input(Input::Timeout(now)).is_err() {
                        p.rtc.disconnect();
                    }
                }
            }
        }
        for p in &mut self.participants {
            p.rtc.disconnect();
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Join {
                call,
                participant,
                label,
                offer,
                screen,
                reply,
            } => {
                let _ = reply.send(self.join(call, participant, label, offer, screen));
            }
            Command::Offer {
                participant,
                offer,
                reply,
            } => {
                let result = match self.find(&participant) {
                    Some(p) => p.accept_offer(offer).map_err(SfuError::Sdp),
                    None => Err(SfuError::NoSession(participant)),
                };
                let _ = reply.send(result);
            }
            Command::Answer {
                participant,
                answer,
                reply,
            } => {
                let result = match self.find(&participant) {
                    Some(p) => p.accept_answer(answer).map_err(SfuError::Sdp),
                    None => Err(SfuError::NoSession(participant.clone())),
                };
                // A new subscriber needs a keyframe to show anything.
                if let Ok(opened) = &result {
                    tracing::debug!(%participant, tracks = opened.len(), "answer accepted");
                    for &(origin, mid, layer) in opened {
                        self.ask_keyframe(origin, mid, Some(layer));
                    }
                }
                let _ = reply.send(result.map(|_| ()));
            }
            Command::View {
                participant,
                views,
                reply,
            } => {
                let result = match self.find(&participant) {
                    Some(p) => {
                        for (label, height) in views {
                            p.set_view(label, height);
                        }
                        Ok(())
                    }
                    None => Err(SfuError::NoSession(participant)),
                };
                let _ = reply.send(result);
            }
            Command::Rekey {
                from,
                to,
                label,
                reply,
            } => {
                let result = if self.find(&to).is_some() {
                    Err(SfuError::Sdp(format!("a session `{to}` exists already")))
                } else {
                    match self.find(&from) {
                        Some(p) => {
                            tracing::debug!(%from, %to, "media session re-keyed");
                            p.rename(to, label);
                            // Offers made while its page was away went nowhere.
                            if p.drop_pending_offer() {
                                p.needs_offer = true;
                            }
                            Ok(())
                        }
                        None => Err(SfuError::NoSession(from)),
                    }
                };
                let _ = reply.send(result);
            }
            Command::Leave { participant } => {
                if let Some(p) = self.find(&participant) {
                    p.rtc.disconnect();
                }
            }
            Command::Stats { reply } => {
                let mut stats = self.stats;
                stats.participants = self.participants.len() as u64;
                stats.subscriptions = self
                    .participants
                    .iter()
                    .map(|p| p.subscriptions() as u64)
                    .sum();
                stats.layer_switches += self.participants.iter().map(|p| p.switches()).sum::<u64>();
                stats.nacks += self.participants.iter().map(|p| p.nacks()).sum::<u64>();
                let _ = reply.send(stats);
            }
            Command::Report { reply } => {
                let _ = reply.send(self.participants.iter().map(|p| p.report()).collect());
            }
        }
    }

    /// Asks the publisher `origin` for a keyframe of its track `mid`: of
    /// `layer` when the track is simulcast.
    fn ask_keyframe(&mut self, origin: u64, mid: Mid, layer: Option<usize>) {
        let Some(publisher) = self.participants.iter_mut().find(|p| p.id == origin) else {
            return;
        };
        let simulcast = publisher
            .layers_of(mid)
            .is_some_and(|l| l.iter().any(|x| x.active));
        let rid = layer.filter(|_| simulcast).map(layers::rid_of);
        publisher.request_keyframe(mid, rid, KeyframeRequestKind::Pli);
        publisher.dirty = true;
        self.stats.keyframe_requests += 1;
    }

    fn find(&mut self, key: &str) -> Option<&mut Participant> {
        self.participants
            .iter_mut()
            .find(|p| p.key == key && p.rtc.is_alive())
    }

    fn join(
        &mut self,
        call: String,
        key: String,
        label: String,
        offer: str0m::change::SdpOffer,
        screen: Option<String>,
    ) -> Result<Joined, SfuError> {
        tracing::debug!(participant = %key, "join");
        // A second join replaces the first session.
        if let Some(old) = self.find(&key) {
            old.rtc.disconnect();
        }
        let live = self
            .participants
            .iter()
            .filter(|p| p.rtc.is_alive())
            .count();
        if live >= self.max {
            return Err(SfuError::Full(self.max));
        }
        // Opus and VP8 only: every browser has both, the layer logic reads
        // VP8 keyframes, and each codec more adds about 500 bytes per track
        // to every offer and answer (a 50-person call's SDP must stay under
        // the signaling payload limit).
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .set_ice_lite(true)
            .set_crypto_provider(self.crypto.clone())
            .set_stats_interval(Some(STATS_EVERY))
            .set_reordering_timeout_video(Some(REORDER_WAIT))
            .build(Instant::now());
        let candidate =
            Candidate::host(self.addr, "udp").map_err(|e| SfuError::Sdp(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let sdp = offer.to_sdp_string();
        let mut free = receive_slots(&sdp);
        let ufrag = super::participant::ice_ufrag(&sdp);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::Sdp(e.to_string()))?;
        let id = self.next_id;
        self.next_id += 1;
        let mut newcomer = Participant::new(id, key, label, Arc::from(call), rtc);
        newcomer.screen = screen.as_deref().map(Mid::from);
        newcomer.set_remote_ufrag(ufrag);
        // It receives everything the call already publishes: on the receive
        // m-lines its offer opened for that, while they last (no second
        // round of negotiation before the first picture), then on m-lines
        // of a server offer.
        let mut slots = Vec::new();
        for other in &self.participants {
            if other.call != newcomer.call || !other.rtc.is_alive() {
                continue;
            }
            for track in other.published() {
                let Some(published) = track.upgrade() else {
                    continue;
                };
                let slot = free
                    .iter()
                    .position(|(_, kind)| *kind == published.kind)
                    .map(|i| free.remove(i).0);
                if let Some(mid) = slot {
                    slots.push((mid.to_string(), published.label()));
                }
                newcomer.receive_on(track, slot);
            }
        }
        self.participants.push(newcomer);
        Ok(Joined { answer, slots })
    }

    fn receive(&mut self, datagram: &[u8], from: SocketAddr) {
        let Ok(contents) = datagram.try_into() else {
            self.stats.unmatched += 1;
            return;
        };
        let now = Instant::now();
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: self.addr,
                contents,
            },
        );
        match self.participants.iter_mut().find(|p| p.rtc.accepts(&input)) {
            Some(p) => {
                p.remote = Some(from);
                p.dirty = true;
                p.heard(now);
                if p.rtc.handle_input(input).is_err() {
                    p.rtc.disconnect();
                }
            }
            None => self.stats.unmatched += 1,
        }
    }

    /// Polls every session until it only has a deadline left, carrying what
    /// each publishes to the others, then offers new tracks and forgets
    /// ended sessions. Returns when the loop must wake next.
    fn drive(&mut self) -> Instant {
        let mut queue: VecDeque<(usize, Propagated)> = VecDeque::new();
        loop {
            // Only sessions that had input, output written to them, or a
            // passed deadline have anything to say.
            for (i, p) in self.participants.iter_mut().enumerate() {
                if !p.dirty {
                    continue;
                }
                p.dirty = false;
                // Back after a silence (its link dropped and returned):
                // keyframes both ways, as after a restart.
                if p.take_return() {
                    queue.push_back((i, Propagated::Back));
                }
                loop {
                    if !p.rtc.is_alive() {
                        break;
                    }
                    let output = match p.rtc.poll_output() {
                        Ok(o) => o,
                        Err(e) => {
                            tracing::debug!(participant = %p.key, error = %e, "media session failed");
                            p.rtc.disconnect();
                            break;
                        }
                    };
                    if let Some(t) = timeout_of(&output) {
                        p.next_timeout = t;
                        break;
                    }
                    match output {
                        Output::Transmit(t) => {
                            // Dropped when the kernel's buffer is full, like a router would.
                            let _ = self.socket.try_send_to(&t.contents, t.destination);
                        }
                        Output::Event(e) => {
                            if let Some(item) = p.on_event(e) {
                                queue.push_back((i, item));
                            }
                        }
                        Output::Timeout(_) => {}
                    }
                }
            }
            if queue.is_empty() {
                break;
            }
            while let Some((from, item)) = queue.pop_front() {
                self.propagate(from, item);
            }
        }
        self.rank();
        for p in &mut self.participants {
            if !p.needs_offer {
                continue;
            }
            if let Some(offer) = p.negotiate() {
                tracing::debug!(participant = %p.key, "server offer");
                p.dirty = true;
                self.stats.offers += 1;
                let _ = self.events.send(SfuEvent::Offer {
                    participant: p.key.clone(),
                    offer,
                });
            }
        }
        let (events, speakers, stats) = (&self.events, &mut self.speakers, &mut self.stats);
        let mut gone_from: Vec<Arc<str>> = Vec::new();
        self.participants.retain(|p| {
            let alive = p.rtc.is_alive();
            if !alive {
                gone_from.push(p.call.clone());
                speakers.forget(&p.call, p.id);
                stats.layer_switches += p.switches();
                stats.nacks += p.nacks();
                let _ = events.send(SfuEvent::Closed {
                    participant: p.key.clone(),
                });
            }
            alive
        });
        // The others of its call stop its tracks at their next offer.
        for p in &mut self.participants {
            if gone_from.contains(&p.call) {
                p.needs_offer = true;
            }
        }
        let earliest = self
            .participants
            .iter()
            .map(|p| p.next_timeout)
            .min()
            .unwrap_or_else(|| Instant::now() + TICK)
            .min(Instant::now() + TICK);
        earliest.max(Instant::now() + Duration::from_millis(1))
    }

    /// Every RANK_EVERY: measures the publishers' layers, ranks each call's
    /// speakers (announcing changes) and chooses the layers of the
    /// subscribers whose views, estimate or publishers changed.
    fn rank(&mut self) {
        let now = Instant::now();
        if now < self.next_rank {
            return;
        }
        self.next_rank = now + RANK_EVERY;
        let mut measured = false;
        for p in &mut self.participants {
            measured |= p.tick(now);
        }
        for (call, origins) in self.speakers.tick(now) {
            let participants = origins
                .iter()
                .filter_map(|o| self.participants.iter().find(|p| p.id == *o))
                .map(|p| p.key.clone())
                .collect();
            let _ = self.events.send(SfuEvent::Speakers {
                call: call.to_string(),
                participants,
            });
        }
        if !measured && !self.participants.iter().any(|p| p.reselect) {
            return;
        }
        let layers: HashMap<(u64, Mid), layers::Layers> = self
            .participants
            .iter()
            .flat_map(|p| p.all_layers())
            .collect();
        let mut asks = Vec::new();
        for p in &mut self.participants {
            if (measured || p.reselect) && p.rtc.is_alive() {
                asks.extend(p.select(&layers, now));
            }
        }
        for (origin, mid, layer) in asks {
            self.ask_keyframe(origin, mid, Some(layer));
        }
    }

    /// Carries one participant's output to the others of its call.
    fn propagate(&mut self, from: usize, item: Propagated) {
        let Some(origin) = self.participants.get(from) else {
            return;
        };
        let (origin_id, call) = (origin.id, origin.call.clone());
        let now = Instant::now();
        if let Propagated::Connected | Propagated::Back = item {
            // Up: keyframes of what it receives. Back after an outage: of
            // what it sends too (not at the first connection, when every
            // newcomer's encoders start on keyframes anyway).
            let receiving = origin.open_video();
            if let Propagated::Back = item
                && let Some(origin) = self.participants.get_mut(from)
            {
                origin.refresh_published();
                origin.dirty = true;
            }
            for (publisher, mid, layer) in receiving {
                self.ask_keyframe(publisher, mid, Some(layer));
            }
            return;
        }
        // Audio of a large call: only its loudest and its recent speakers.
        if let Propagated::Media(data) = &item
            && origin
                .kind_of(data.mid)
                .is_some_and(|k| k == MediaKind::Audio)
            && !self
                .speakers
                .on_audio(&call, origin_id, data.ext_vals.audio_level, now)
        {
            self.stats.audio_held += 1;
            return;
        }
        let mut asks = Vec::new();
        for p in &mut self.participants {
            if p.id == origin_id || p.call != call || !p.rtc.is_alive() {
                continue;
            }
            match &item {
                // Handled above, for the participant itself.
                Propagated::Connected | Propagated::Back => {}
                Propagated::TrackOpen(track) => {
                    p.receive(track.clone());
                    p.dirty = true;
                }
                Propagated::Media(data) => {
                    let done = p.forward(origin_id, data, now);
                    if done.bytes > 0 {
                        p.dirty = true;
                        self.stats.forwarded += 1;
                        self.stats.forwarded_bytes += done.bytes as u64;
                    }
                    if let Some(layer) = done.ask_keyframe {
                        asks.push((data.mid, layer));
                    }
                }
                Propagated::Keyframe {
                    request,
                    origin,
                    mid,
                } => {
                    if p.id == *origin {
                        p.keyframe_requested(request, *mid);
                        p.dirty = true;
                        self.stats.keyframe_requests += 1;
                    }
                }
            }
        }
        asks.dedup();
        for (mid, layer) in asks {
            self.ask_keyframe(origin_id, mid, Some(layer));
        }
    }
}

/// The m-lines of a browser's offer that only receive (`a=recvonly`, not
/// rejected), with their kind: where the tracks it is to get can go at once.
fn receive_slots(offer: &str) -> Vec<(Mid, MediaKind)> {
    offer
        .split("\nm=")
        .skip(1)
        .filter_map(|section| {
            let kind = if section.starts_with("audio ") {
                MediaKind::Audio
            } else if section.starts_with("video ") {
                MediaKind::Video
            } else {
                return None;
            };
            let port = section.split(' ').nth(1)?;
            let lines = || section.lines().map(str::trim_end);
            if port == "0" || !lines().any(|l| l == "a=recvonly") {
                return None;
            }
            let mid = lines().find_map(|l| l.strip_prefix("a=mid:"))?;
            Some((Mid::from(mid), kind))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_slots_are_the_open_recvonly_m_lines() {
        let offer = "v=0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=recvonly\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\na=mid:2\r\n\
            m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=recvonly\r\n\
            m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:4\r\n";
        assert_eq!(
            receive_slots(offer),
            vec![
                (Mid::from("1"), MediaKind::Video),
                (Mid::from("2"), MediaKind::Audio)
            ]
        );
    }
}
