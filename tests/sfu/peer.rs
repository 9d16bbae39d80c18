//! A browser stand-in for the SFU tests: one str0m session (full ICE,
//! DTLS-SRTP) on its own loopback UDP socket, pumped by the test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use noom::sfu::{Sfu, SfuEvent, SfuSettings};
use str0m::change::{SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::sync::mpsc::UnboundedReceiver;

pub fn start() -> (Arc<Sfu>, UnboundedReceiver<SfuEvent>) {
    Sfu::start(SfuSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        public_ip: "127.0.0.1".parse().unwrap(),
        max_participants: 50,
        audio_streams: 3,
    })
    .expect("sfu starts")
}

/// A browser stand-in: one str0m session on its own UDP socket.
pub struct Peer {
    pub rtc: Rtc,
    socket: tokio::net::UdpSocket,
    local: SocketAddr,
    /// Media received: (mid, payload).
    pub received: Vec<(Mid, Vec<u8>)>,
    pub connected: bool,
    /// Keyframe requests received (the rid they name).
    pub keyframe_requests: Vec<Option<str0m::media::Rid>>,
    /// Drop every this-many-th RTP packet received (0: none): a lossy link.
    pub drop_every: u32,
    rtp_seen: u32,
}

impl Peer {
    pub async fn new() -> Peer {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        let mut rtc = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        Peer {
            rtc,
            socket,
            local,
            received: Vec::new(),
            connected: false,
            keyframe_requests: Vec::new(),
            drop_every: 0,
            rtp_seen: 0,
        }
    }

    /// An offer with one m-line of `kind` in direction `dir`.
    pub fn offer(&mut self, kind: MediaKind, dir: Direction) -> (SdpOffer, SdpPendingOffer, Mid) {
        let mut api = self.rtc.sdp_api();
        let mid = api.add_media(kind, dir, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        (offer, pending, mid)
    }

    /// Sends what the session has to send and reads what arrives, for `for_`.
    pub async fn pump(&mut self, for_: Duration) {
        let until = Instant::now() + for_;
        let mut buf = vec![0u8; 2000];
        loop {
            let deadline = loop {
                match self.rtc.poll_output().unwrap() {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => {
                        let _ = self.socket.send_to(&t.contents, t.destination).await;
                    }
                    Output::Event(Event::Connected) => self.connected = true,
                    Output::Event(Event::MediaData(d)) => {
                        self.received.push((d.mid, d.data.to_vec()))
                    }
                    Output::Event(Event::KeyframeRequest(r)) => self.keyframe_requests.push(r.rid),
                    Output::Event(_) => {}
                }
            };
            let now = Instant::now();
            if now >= until {
                return;
            }
            let wait = deadline.min(until).saturating_duration_since(now);
            if let Ok(Ok((n, from))) =
                tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await
                && !self.lost(&buf[..n])
                && let Ok(contents) = buf[..n].try_into()
            {
                self.rtc
                    .handle_input(Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Udp,
                            source: from,
                            destination: self.local,
                            contents,
                        },
                    ))
                    .unwrap();
            }
            self.rtc
                .handle_input(Input::Timeout(Instant::now()))
                .unwrap();
        }
    }

    /// Its link is down for `for_`: nothing is sent, and what arrives is
    /// lost. Returns how many RTP packets of a video frame's size (our
    /// synthetic frames are 400 bytes) arrived meanwhile.
    pub async fn away(&mut self, for_: Duration) -> usize {
        let until = Instant::now() + for_;
        let mut buf = vec![0u8; 2000];
        let mut video = 0;
        loop {
            let wait = until.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return video;
            }
            if let Ok(Ok((n, _))) =
                tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await
            {
                let rtp = n > 12 && (128..=191).contains(&buf[0]) && !(192..=223).contains(&buf[1]);
                if rtp && n > 400 {
                    video += 1;
                }
            }
        }
    }

    /// Whether the lossy link drops this datagram: every `drop_every`-th RTP
    /// packet (not RTCP, STUN or DTLS).
    fn lost(&mut self, datagram: &[u8]) -> bool {
        let rtp = datagram.len() > 12
            && (128..=191).contains(&datagram[0])
            && !(192..=223).contains(&datagram[1]);
        if self.drop_every == 0 || !rtp {
            return false;
        }
        self.rtp_seen += 1;
        self.rtp_seen.is_multiple_of(self.drop_every)
    }

    /// Writes one Opus frame on `mid` with its audio level (dBov, RFC 6464).
    pub fn send_audio_level(&mut self, mid: Mid, n: u64, level: i8) {
        self.write_opus(mid, n, Some(level), vec![9; 60]);
    }

    /// Writes one Opus frame on `mid`.
    pub fn send_audio(&mut self, mid: Mid, n: u64, payload: &[u8]) {
        self.write_opus(mid, n, None, payload.to_vec());
    }

    fn write_opus(&mut self, mid: Mid, n: u64, level: Option<i8>, payload: Vec<u8>) {
        let writer = self.rtc.writer(mid).expect("a writer for the audio track");
        let pt = writer
            .payload_params()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt())
            .expect("opus negotiated");
        let writer = match level {
            Some(level) => writer.audio_level(level, level > -50),
            None => writer,
        };
        writer
            .write(
                pt,
                Instant::now(),
                MediaTime::new(n * 960, Frequency::FORTY_EIGHT_KHZ),
                payload,
            )
            .unwrap();
    }
}

/// Pumps every peer in turn for `for_`.
pub async fn pump_all(peers: &mut [&mut Peer], for_: Duration) {
    let until = Instant::now() + for_;
    while Instant::now() < until {
        for p in peers.iter_mut() {
            p.pump(Duration::from_millis(5)).await;
        }
    }
}

/// Joins `peer` to `call` with an offer of one `kind` m-line in `dir`.
pub async fn join(sfu: &Sfu, call: &str, key: &str, peer: &mut Peer, dir: Direction) -> Mid {
    let (offer, pending, mid) = peer.offer(MediaKind::Audio, dir);
    let answer = sfu
        .join(call, key, key, offer, None)
        .await
        .expect("joined")
        .answer;
    peer.rtc.sdp_api().accept_answer(pending, answer).unwrap();
    mid
}

/// Waits for the server's offer to `key`, pumping meanwhile, answers it with
/// `peers[which]`, and returns the offer's SDP.
pub async fn answer_offer(
    sfu: &Sfu,
    events: &mut UnboundedReceiver<SfuEvent>,
    key: &str,
    peers: &mut [&mut Peer],
    which: usize,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "no offer for {key}");
        while let Ok(event) = events.try_recv() {
            if let SfuEvent::Offer { participant, offer } = event
                && participant == key
            {
                let text = offer.to_sdp_string();
                let answer = peers[which].rtc.sdp_api().accept_offer(offer).unwrap();
                sfu.answer(key, answer).await.expect("answer accepted");
                return text;
            }
        }
        pump_all(peers, Duration::from_millis(20)).await;
    }
}
