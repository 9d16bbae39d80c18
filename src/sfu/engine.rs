//! The media loop: one UDP socket, every participant's `Rtc`, and the
//! forwarding between participants of the same call.
//!
//! str0m is sans-IO: the loop reads a datagram, hands it to the session
//! that accepts it, lets every session produce its output (datagrams to
//! send, events, the next deadline) and carries what one participant
//! publishes to the others. It never blocks: a datagram the kernel will not
//! take now is dropped, like a router would.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::media::KeyframeRequestKind;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::participant::{Participant, Propagated, timeout_of};
use super::{Command, SfuError, SfuEvent, SfuStats};

/// The loop wakes at least this often to drive time in every session.
const TICK: Duration = Duration::from_millis(100);
/// Largest datagram read.
const DATAGRAM_MAX: usize = 2000;

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
}

impl Engine {
    pub fn new(
        socket: UdpSocket,
        addr: SocketAddr,
        max: usize,
        events: mpsc::UnboundedSender<SfuEvent>,
    ) -> Self {
        Engine {
            socket,
            addr,
            max,
            events,
            participants: Vec::new(),
            next_id: 1,
            stats: SfuStats::default(),
            crypto: Arc::new(str0m::crypto::from_feature_flags()),
        }
    }

    /// Runs until every command sender is gone.
    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut buf = vec![0u8; DATAGRAM_MAX];
        loop {
            let deadline = self.drive();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(c) => self.command(c),
                    None => break,
                },
                received = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = received {
                        self.receive(&buf[..n], from);
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
            let now = Instant::now();
            for p in &mut self.participants {
                if p.rtc.is_alive() && p.rtc.handle_input(Input::Timeout(now)).is_err() {
                    p.rtc.disconnect();
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
                reply,
            } => {
                let _ = reply.send(self.join(call, participant, label, offer));
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
                    None => Err(SfuError::NoSession(participant)),
                };
                // A new subscriber needs a keyframe to show anything.
                if let Ok(opened) = &result {
                    for (origin, mid) in opened {
                        if let Some(publisher) =
                            self.participants.iter_mut().find(|p| p.id == *origin)
                        {
                            publisher.request_keyframe(*mid, KeyframeRequestKind::Pli);
                            self.stats.keyframe_requests += 1;
                        }
                    }
                }
                let _ = reply.send(result.map(|_| ()));
            }
            Command::Leave { participant } => {
                if let Some(p) = self.find(&participant) {
                    p.rtc.disconnect();
                }
            }
            Command::Stats { reply } => {
                let mut stats = self.stats;
                stats.participants = self.participants.len() as u64;
                let _ = reply.send(stats);
            }
        }
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
    ) -> Result<str0m::change::SdpAnswer, SfuError> {
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
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .set_crypto_provider(self.crypto.clone())
            .build(Instant::now());
        let candidate =
            Candidate::host(self.addr, "udp").map_err(|e| SfuError::Sdp(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::Sdp(e.to_string()))?;
        let id = self.next_id;
        self.next_id += 1;
        let mut newcomer = Participant::new(id, key, label, Arc::from(call), rtc);
        // It receives everything the call already publishes.
        for other in &self.participants {
            if other.call == newcomer.call && other.rtc.is_alive() {
                for track in other.published() {
                    newcomer.receive(track);
                }
            }
        }
        self.participants.push(newcomer);
        Ok(answer)
    }

    fn receive(&mut self, datagram: &[u8], from: SocketAddr) {
        let Ok(contents) = datagram.try_into() else {
            self.stats.unmatched += 1;
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: self.addr,
                contents,
            },
        );
        match self.participants.iter_mut().find(|p| p.rtc.accepts(&input)) {
            Some(p) => {
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
        let mut earliest = Instant::now() + TICK;
        let mut queue: VecDeque<(usize, Propagated)> = VecDeque::new();
        loop {
            for (i, p) in self.participants.iter_mut().enumerate() {
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
                        earliest = earliest.min(t);
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
        for p in &mut self.participants {
            if let Some(offer) = p.negotiate() {
                self.stats.offers += 1;
                let _ = self.events.send(SfuEvent::Offer {
                    participant: p.key.clone(),
                    offer,
                });
            }
        }
        let events = &self.events;
        self.participants.retain(|p| {
            let alive = p.rtc.is_alive();
            if !alive {
                let _ = events.send(SfuEvent::Closed {
                    participant: p.key.clone(),
                });
            }
            alive
        });
        earliest.max(Instant::now() + Duration::from_millis(1))
    }

    /// Carries one participant's output to the others of its call.
    fn propagate(&mut self, from: usize, item: Propagated) {
        let Some(origin) = self.participants.get(from) else {
            return;
        };
        let (origin_id, call) = (origin.id, origin.call.clone());
        for p in &mut self.participants {
            if p.id == origin_id || p.call != call || !p.rtc.is_alive() {
                continue;
            }
            match &item {
                Propagated::TrackOpen(track) => p.receive(track.clone()),
                Propagated::Media(data) => {
                    if p.forward(origin_id, data) {
                        self.stats.forwarded += 1;
                    }
                }
                Propagated::Keyframe {
                    request,
                    origin,
                    mid,
                } => {
                    if p.id == *origin {
                        p.keyframe_requested(request, *mid);
                        self.stats.keyframe_requests += 1;
                    }
                }
            }
        }
    }
}
