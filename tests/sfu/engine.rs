//! The SFU on its own: what one participant publishes reaches the others of
//! its call and nobody else; a participant that leaves stops receiving; junk
//! on the port changes nothing. A newcomer whose offer opened receive
//! m-lines gets the call's tracks on them, with no second negotiation.

use std::time::{Duration, Instant};

use noom::sfu::SfuEvent;
use str0m::media::{Direction, MediaKind};

use crate::peer::{Peer, answer_offer, join, pump_all, start};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_that_vanishes_without_a_word_is_timed_out() {
    let (sfu, mut events) = start();
    let mut alice = Peer::new().await;
    let mut bob = Peer::new().await;
    join(&sfu, "room", "alice", &mut alice, Direction::SendOnly).await;
    join(&sfu, "room", "bob", &mut bob, Direction::RecvOnly).await;
    pump_all(&mut [&mut alice, &mut bob], Duration::from_millis(500)).await;
    assert!(bob.connected);
    // Bob's machine goes away: no leave, no more packets.
    drop(bob);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(40);
    let mut closed = false;
    while !closed && Instant::now() < deadline {
        pump_all(&mut [&mut alice], Duration::from_millis(100)).await;
        while let Ok(e) = events.try_recv() {
            closed |= matches!(&e, SfuEvent::Closed { participant } if participant == "bob");
        }
    }
    assert!(closed, "bob's session outlived him by 40 s");
    eprintln!("bob timed out after {:?}", started.elapsed());
    assert_eq!(sfu.stats().await.unwrap().participants, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_that_goes_and_one_that_comes_are_renegotiated_together() {
    let (sfu, mut events) = start();
    let mut alice = Peer::new().await;
    let mut bob = Peer::new().await;
    let mut carol = Peer::new().await;
    join(&sfu, "room", "alice", &mut alice, Direction::SendOnly).await;
    join(&sfu, "room", "bob", &mut bob, Direction::RecvOnly).await;
    pump_all(&mut [&mut alice, &mut bob], Duration::from_millis(500)).await;
    answer_offer(
        &sfu,
        &mut events,
        "bob",
        &mut [&mut alice, &mut bob, &mut carol],
        1,
    )
    .await;
    // Alice goes and Carol comes at once: Bob's next offer stops one m-line
    // and adds another.
    sfu.leave("alice");
    let mic = join(&sfu, "room", "carol", &mut carol, Direction::SendOnly).await;
    pump_all(
        &mut [&mut alice, &mut bob, &mut carol],
        Duration::from_millis(500),
    )
    .await;
    answer_offer(
        &sfu,
        &mut events,
        "bob",
        &mut [&mut alice, &mut bob, &mut carol],
        1,
    )
    .await;
    // Possibly a second offer (the stop and the add apart): answer it too.
    pump_all(&mut [&mut bob, &mut carol], Duration::from_millis(300)).await;
    while let Ok(e) = events.try_recv() {
        if let SfuEvent::Offer { participant, offer } = e
            && participant == "bob"
        {
            let answer = bob
                .rtc
                .sdp_api()
                .accept_offer(offer)
                .expect("bob takes the offer");
            sfu.answer("bob", answer).await.expect("answer accepted");
        }
    }
    let before = bob.received.len();
    for n in 0..30u64 {
        carol.send_audio(mic, n, &[3; 40]);
        pump_all(&mut [&mut bob, &mut carol], Duration::from_millis(20)).await;
    }
    pump_all(&mut [&mut bob, &mut carol], Duration::from_millis(300)).await;
    assert!(
        bob.received.len() - before >= 20,
        "bob got {} of carol's 30 frames",
        bob.received.len() - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_gets_the_call_on_the_receive_m_lines_of_its_own_offer() {
    let (sfu, mut events) = start();
    let (mut alice, mut bob) = (Peer::new().await, Peer::new().await);
    let mic = join(&sfu, "room", "alice", &mut alice, Direction::SendOnly).await;
    pump_all(&mut [&mut alice], Duration::from_millis(300)).await;
    assert!(alice.connected, "ICE and DTLS up");

    // Bob's offer opens two receive m-lines; the call publishes one audio track.
    let mut api = bob.rtc.sdp_api();
    let audio = api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let spare = api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    let joined = sfu
        .join("room", "bob", "bob", offer, None)
        .await
        .expect("joined");
    assert_eq!(joined.slots, vec![(audio.to_string(), "alice".to_string())]);
    bob.rtc
        .sdp_api()
        .accept_answer(pending, joined.answer)
        .unwrap();

    // Alice's microphone reaches Bob on that m-line, and nobody offers him anything.
    for n in 0..50u64 {
        alice.send_audio(mic, n, &[n as u8; 40]);
        pump_all(&mut [&mut alice, &mut bob], Duration::from_millis(20)).await;
    }
    pump_all(&mut [&mut alice, &mut bob], Duration::from_millis(300)).await;
    assert!(
        bob.received.len() >= 40 && bob.received.iter().all(|(mid, _)| *mid == audio),
        "bob got {} of 50 frames, on {:?}",
        bob.received.len(),
        bob.received
            .iter()
            .map(|(m, _)| *m)
            .collect::<std::collections::HashSet<_>>()
    );
    assert!(!bob.received.iter().any(|(mid, _)| *mid == spare));
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(&e, SfuEvent::Offer { participant, .. } if participant == "bob"),
            "bob was offered what his own offer had room for"
        );
    }
}
