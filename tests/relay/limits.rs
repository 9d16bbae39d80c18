//! Quotas, floods and junk: the relay stays bounded and keeps serving.

use std::time::{Duration, Instant};

use noom::client::turn::{TurnClient, allocate_request, error_code, is_success};
use stun::message::*;
use tokio::net::UdpSocket;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_quotas_per_user_and_in_total() {
    let r = start(|c| {
        c.turn.max_allocations_per_user = 2;
        c.turn.max_allocations = 3;
    })
    .await;
    let mut keep = Vec::new();
    for _ in 0..2 {
        let mut c = TurnClient::udp(r.turn, REALM)
            .await
            .unwrap()
            .creds(rest_credentials("alice", 600));
        assert!(is_success(&c.allocate().await));
        keep.push(c);
    }
    let mut third = TurnClient::udp(r.turn, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("alice", 600));
    assert_eq!(
        error_code(&third.allocate().await),
        Some(486),
        "per-user quota"
    );
    let mut bob = TurnClient::udp(r.turn, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("bob", 600));
    assert!(is_success(&bob.allocate().await));
    let mut carol = TurnClient::udp(r.turn, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("carol", 600));
    assert_eq!(
        error_code(&carol.allocate().await),
        Some(508),
        "total quota"
    );
    // A second Allocate on the same 5-tuple is a mismatch, not a new allocation.
    assert_eq!(error_code(&bob.allocate().await), Some(437));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmitted_allocate_gets_the_same_success() {
    let r = start(|_| {}).await;
    let mut c = TurnClient::udp(r.turn, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("alice", 600));
    let attrs = || -> Vec<Box<dyn Setter>> {
        vec![Box::new(turn::proto::reqtrans::RequestedTransport {
            protocol: turn::proto::PROTO_UDP,
        })]
    };
    let challenge = c
        .request(METHOD_ALLOCATE, attrs(), false)
        .await
        .expect("a response from the relay");
    c.nonce = Some(
        stun::textattrs::TextAttribute::get_from_as(&challenge, stun::attributes::ATTR_NONCE)
            .unwrap()
            .text,
    );
    let id = stun::agent::TransactionId::new();
    let first = c.request_as(id, METHOD_ALLOCATE, attrs(), true).await;
    assert!(is_success(&first));
    let again = c.request_as(id, METHOD_ALLOCATE, attrs(), true).await;
    assert!(
        is_success(&again),
        "a retransmission is not a mismatch: {:?}",
        error_code(&again)
    );
    assert_eq!(relayed(&again), relayed(&first));
    assert_eq!(r.running.relay().unwrap().allocation_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_floods_are_rate_limited_per_source() {
    let r = start(|c| c.turn.unauthenticated_per_sec = 10).await;
    let flooder = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let allocate = allocate_request(stun::agent::TransactionId::new().0);
    for _ in 0..500 {
        flooder.send_to(&allocate, r.turn).await.unwrap();
    }
    let mut answered = 0;
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + Duration::from_millis(500);
    while let Ok(Ok(_)) =
        tokio::time::timeout_at(deadline.into(), flooder.recv_from(&mut buf)).await
    {
        answered += 1;
    }
    // A burst of 3 s worth (30), then 10/s.
    assert!((25..=45).contains(&answered), "answered {answered} of 500");
    // Another source is served normally meanwhile.
    let mut other = TurnClient::udp(r.turn, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("alice", 600));
    assert!(is_success(&other.allocate().await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_packets_are_ignored_and_the_relay_keeps_serving() {
    let r = start(|_| {}).await;
    let junk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut rng_state = 0x2545F4914F6CDD1Du64;
    for len in [0usize, 1, 3, 4, 19, 20, 21, 100, 548, 1500, 9000] {
        let mut packet = vec![0u8; len];
        for b in packet.iter_mut() {
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            *b = rng_state as u8;
        }
        junk.send_to(&packet, r.turn).await.unwrap();
        // Looks like STUN (magic cookie) but lies about its length / attributes.
        if len >= 20 {
            packet[0] = 0x00;
            packet[1] = 0x01;
            packet[2..4].copy_from_slice(&u16::MAX.to_be_bytes());
            packet[4..8].copy_from_slice(&0x2112A442u32.to_be_bytes());
            junk.send_to(&packet, r.turn).await.unwrap();
        }
        // ChannelData header with a bogus length.
        junk.send_to(&[0x40, 0x00, 0xff, 0xff, 1, 2], r.turn)
            .await
            .unwrap();
    }
    let mut tcp_junk = tokio::net::TcpStream::connect(r.turn).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp_junk, &[0xff; 64])
        .await
        .unwrap();
    let mut c = TurnClient::udp(r.turn, REALM).await.unwrap();
    assert!(is_success(&c.request(METHOD_BINDING, vec![], false).await));
    let mut t = TurnClient::tcp(r.turn, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("alice", 600));
    assert!(is_success(&t.allocate().await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_per_allocation_is_capped() {
    // 8 kbit/s = 1,000 bytes/s, with one second of burst.
    let r = start(|c| {
        allow_loopback(c);
        c.turn.bandwidth_kbps = 8;
    })
    .await;
    let peer = crate::support::peer_socket().await;
    let peer_addr = peer.local_addr().unwrap();
    let mut c = TurnClient::udp(r.turn, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("alice", 600));
    assert!(is_success(&c.allocate().await));
    assert!(is_success(&c.channel_bind(0x4000, peer_addr).await));
    for _ in 0..20 {
        c.channel_data(0x4000, &[7u8; 400]).await.unwrap();
    }
    let mut received = 0;
    let mut buf = [0u8; 1500];
    // The first packet may wait for a busy test machine; the rest come at once.
    let mut wait = Duration::from_secs(5);
    while let Ok(Ok(_)) = tokio::time::timeout(wait, peer.recv_from(&mut buf)).await {
        received += 1;
        wait = Duration::from_millis(300);
    }
    // 20 x 400 B offered at once: only about the one-second burst passes.
    assert!(
        (1..=3).contains(&received),
        "{received} of 20 passed the 1,000 B/s cap"
    );
    let relayed: u64 = r.running.relay().unwrap().allocations()[0].bytes_to_peers;
    assert!(relayed <= 1200, "bytes relayed {relayed}");
}
