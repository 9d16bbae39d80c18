//! The SFU on its own, driven by synthetic WebRTC clients (str0m, full ICE,
//! DTLS-SRTP) over loopback UDP: what one participant publishes reaches the
//! others of its call and nobody else; a participant that leaves stops
//! receiving; junk on the port changes nothing.

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

fn start() -> (Arc<Sfu>, UnboundedReceiver<SfuEvent>) {
    Sfu::start(SfuSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        public_ip: "127.0.0.1".parse().unwrap(),
        max_participants: 50,
    })
    .expect("sfu starts")
}

/// A browser stand-in: one str0m session on its own UDP socket.
struct Peer {
    rtc: Rtc,
    socket: tokio::net::UdpSocket,
    local: SocketAddr,
    /// Media received: (mid, payload).
    received: Vec<(Mid, Vec<u8>)>,
    connected: bool,
}

impl Peer {
    async fn new() -> Peer {
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
        }
    }

    /// An offer with one m-line of `kind` in direction `dir`.
    fn offer(&mut self, kind: MediaKind, dir: Direction) -> (SdpOffer, SdpPendingOffer, Mid) {
        let mut api = self.rtc.sdp_api();
        let mid = api.add_media(kind, dir, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        (offer, pending, mid)
    }

    /// Sends what the session has to send and reads what arrives, for `for_`.
    async fn pump(&mut self, for_: Duration) {
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

    /// Writes one Opus frame on `mid`.
    fn send_audio(&mut self, mid: Mid, n: u64, payload: &[u8]) {
        let writer = self.rtc.writer(mid).expect("a writer for the audio track");
        let pt = writer
            .payload_params()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt())
            .expect("opus negotiated");
        writer
            .write(
                pt,
                Instant::now(),
                MediaTime::new(n * 960, Frequency::FORTY_EIGHT_KHZ),
                payload.to_vec(),
            )
            .unwrap();
    }
}

/// Pumps every peer in turn for `for_`.
async fn pump_all(peers: &mut [&mut Peer], for_: Duration) {
    let until = Instant::now() + for_;
    while Instant::now() < until {
        for p in peers.iter_mut() {
            p.pump(Duration::from_millis(5)).await;
        }
    }
}

/// Joins `peer` to `call` with an offer of one `kind` m-line in `dir`.
async fn join(sfu: &Sfu, call: &str, key: &str, peer: &mut Peer, dir: Direction) -> Mid {
    let (offer, pending, mid) = peer.offer(MediaKind::Audio, dir);
    let answer = sfu.join(call, key, offer).await.expect("joined");
    peer.rtc.sdp_api().accept_answer(pending, answer).unwrap();
    mid
}

/// Waits for the server's offer to `key`, pumping meanwhile, and answers it.
async fn answer_offer(
    sfu: &Sfu,
    events: &mut UnboundedReceiver<SfuEvent>,
    key: &str,
    peers: &mut [&mut Peer],
    which: usize,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "no offer for {key}");
        while let Ok(event) = events.try_recv() {
            if let SfuEvent::Offer { participant, offer } = event
                && participant == key
            {
                let answer = peers[which].rtc.sdp_api().accept_offer(offer).unwrap();
                sfu.answer(key, answer).await.expect("answer accepted");
                return;
            }
        }
        pump_all(peers, Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_publishes_reaches_the_others_of_its_call_only() {
    let (sfu, mut events) = start();
    let mut alice = Peer::new().await;
    let mut bob = Peer::new().await;
    let mut eve = Peer::new().await;
    let mic = join(&sfu, "room", "alice", &mut alice, Direction::SendOnly).await;
    join(&sfu, "room", "bob", &mut bob, Direction::RecvOnly).await;
    join(&sfu, "other", "eve", &mut eve, Direction::RecvOnly).await;
    pump_all(
        &mut [&mut alice, &mut bob, &mut eve],
        Duration::from_millis(500),
    )
    .await;
    assert!(
        alice.connected && bob.connected && eve.connected,
        "ICE and DTLS up"
    );
    // Bob is offered Alice's microphone; Eve, in another call, is not.
    answer_offer(
        &sfu,
        &mut events,
        "bob",
        &mut [&mut alice, &mut bob, &mut eve],
        1,
    )
    .await;
    for n in 0..50u64 {
        alice.send_audio(mic, n, &[n as u8; 40]);
        pump_all(
            &mut [&mut alice, &mut bob, &mut eve],
            Duration::from_millis(20),
        )
        .await;
    }
    pump_all(
        &mut [&mut alice, &mut bob, &mut eve],
        Duration::from_millis(300),
    )
    .await;
    assert!(
        bob.received.len() >= 40,
        "bob got {} of 50 frames",
        bob.received.len()
    );
    assert!(
        bob.received.iter().all(|(_, d)| d.len() == 40),
        "payloads arrive whole"
    );
    assert!(eve.received.is_empty(), "another call's media leaked");
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(&e, SfuEvent::Offer { participant, .. } if participant == "eve"),
            "eve was offered a track of another call"
        );
    }
    let stats = sfu.stats().await.unwrap();
    assert!(stats.forwarded >= 40, "{stats:?}");
    assert_eq!(stats.participants, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_that_leaves_is_closed_and_stops_receiving() {
    let (sfu, mut events) = start();
    let mut alice = Peer::new().await;
    let mut bob = Peer::new().await;
    let mic = join(&sfu, "room", "alice", &mut alice, Direction::SendOnly).await;
    join(&sfu, "room", "bob", &mut bob, Direction::RecvOnly).await;
    pump_all(&mut [&mut alice, &mut bob], Duration::from_millis(500)).await;
    answer_offer(&sfu, &mut events, "bob", &mut [&mut alice, &mut bob], 1).await;
    sfu.leave("bob");
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut closed = false;
    while !closed && Instant::now() < deadline {
        pump_all(&mut [&mut alice, &mut bob], Duration::from_millis(20)).await;
        while let Ok(e) = events.try_recv() {
            closed |= matches!(&e, SfuEvent::Closed { participant } if participant == "bob");
        }
    }
    assert!(closed, "bob's session was not closed");
    let before = bob.received.len();
    for n in 0..20u64 {
        alice.send_audio(mic, n, &[1; 40]);
        pump_all(&mut [&mut alice, &mut bob], Duration::from_millis(20)).await;
    }
    assert_eq!(bob.received.len(), before, "media after leaving");
    assert_eq!(sfu.stats().await.unwrap().participants, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_on_the_port_is_ignored() {
    let (sfu, mut events) = start();
    let junk = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..200u32 {
        let len = (i % 60) as usize;
        let mut packet = vec![(i % 256) as u8; len];
        if len > 1 {
            // Some look like STUN, DTLS or RTP at first glance.
            packet[0] = [0x00, 0x16, 0x80, 0x17][(i % 4) as usize];
        }
        junk.send_to(&packet, sfu.addr()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = sfu.stats().await.unwrap();
    assert!(stats.unmatched > 0, "{stats:?}");
    // The port still serves a real participant.
    let mut alice = Peer::new().await;
    let mut bob = Peer::new().await;
    let mic = join(&sfu, "room", "alice", &mut alice, Direction::SendOnly).await;
    join(&sfu, "room", "bob", &mut bob, Direction::RecvOnly).await;
    pump_all(&mut [&mut alice, &mut bob], Duration::from_millis(500)).await;
    answer_offer(&sfu, &mut events, "bob", &mut [&mut alice, &mut bob], 1).await;
    for n in 0..20u64 {
        alice.send_audio(mic, n, &[2; 40]);
        pump_all(&mut [&mut alice, &mut bob], Duration::from_millis(20)).await;
    }
    pump_all(&mut [&mut alice, &mut bob], Duration::from_millis(200)).await;
    assert!(!bob.received.is_empty(), "no media after the junk");
}
