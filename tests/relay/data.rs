//! Relaying: Send/Data indications, channels, both directions, UDP and TCP,
//! and the peer policy that keeps the relay out of private networks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use noom::client::turn::{RESPONSE_WAIT as WAIT, TurnClient, decode, error_code, is_success};
use stun::message::*;
use tokio::net::UdpSocket;
use turn::client::{Client, ClientConfig};
use webrtc_util::Conn;

use crate::support::*;

/// A peer that records what it receives and can answer.
struct Peer {
    sock: UdpSocket,
}

impl Peer {
    async fn new() -> Peer {
        Peer {
            sock: crate::support::peer_socket().await,
        }
    }
    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }
    async fn recv(&self) -> (Vec<u8>, SocketAddr) {
        let mut buf = [0u8; 2048];
        let (n, from) = tokio::time::timeout(WAIT, self.sock.recv_from(&mut buf))
            .await
            .expect("peer receives")
            .unwrap();
        (buf[..n].to_vec(), from)
    }
}

fn data_indication(packet: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
    let m = decode(packet)?;
    if m.typ != MessageType::new(METHOD_DATA, CLASS_INDICATION) {
        return None;
    }
    let mut peer = turn::proto::peeraddr::PeerAddress::default();
    let mut data = turn::proto::data::Data::default();
    peer.get_from(&m).ok()?;
    data.get_from(&m).ok()?;
    Some((SocketAddr::new(peer.ip, peer.port), data.0))
}

async fn relay_both_ways(mut c: TurnClient) {
    let peer = Peer::new().await;
    let alloc = c.allocate().await;
    assert!(is_success(&alloc), "{:?}", error_code(&alloc));
    let relayed = relayed(&alloc);

    // Without a permission nothing passes.
    c.send_indication(peer.addr(), b"too early").await.unwrap();
    assert!(
        tokio::time::timeout(
            Duration::from_millis(300),
            peer.sock.recv_from(&mut [0u8; 64])
        )
        .await
        .is_err()
    );

    assert!(is_success(&c.create_permission(&[peer.addr()]).await));
    c.send_indication(peer.addr(), b"via send indication")
        .await
        .unwrap();
    let (got, from) = peer.recv().await;
    assert_eq!(got, b"via send indication");
    assert_eq!(from, relayed, "the peer sees the relayed address");

    peer.sock
        .send_to(b"back as data indication", relayed)
        .await
        .unwrap();
    let packet = c.recv(WAIT).await.expect("data indication");
    assert_eq!(
        data_indication(&packet),
        Some((peer.addr(), b"back as data indication".to_vec()))
    );

    assert!(is_success(&c.channel_bind(0x4001, peer.addr()).await));
    c.channel_data(0x4001, b"via channel").await.unwrap();
    assert_eq!(peer.recv().await.0, b"via channel");
    peer.sock
        .send_to(b"back via channel!", relayed)
        .await
        .unwrap();
    let frame = c.recv(WAIT).await.expect("channel data");
    assert_eq!(&frame[..2], &0x4001u16.to_be_bytes());
    let len = u16::from_be_bytes([frame[2], frame[3]]) as usize;
    assert_eq!(&frame[4..4 + len], b"back via channel!");

    // A stranger (no permission) cannot reach the client through the relay.
    let stranger = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    stranger.send_to(b"spam", relayed).await.unwrap();
    assert!(c.recv(Duration::from_millis(300)).await.is_none());

    // Refresh with lifetime 0 deletes the allocation.
    let gone = c
        .authed(METHOD_REFRESH, || {
            vec![Box::new(turn::proto::lifetime::Lifetime(Duration::ZERO))]
        })
        .await;
    assert!(is_success(&gone));
    assert_eq!(
        error_code(&c.create_permission(&[peer.addr()]).await),
        Some(437)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_both_ways_over_udp() {
    let r = start(allow_loopback).await;
    relay_both_ways(
        TurnClient::udp(r.turn, REALM)
            .await
            .unwrap()
            .creds(rest_credentials("alice", 600)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_both_ways_over_tcp() {
    let r = start(allow_loopback).await;
    relay_both_ways(
        TurnClient::tcp(r.turn, REALM)
            .await
            .unwrap()
            .creds(rest_credentials("alice", 600)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_both_ways_over_tls() {
    let dir = tempfile::TempDir::new().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["turn.test".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let r = start(|c| {
        allow_loopback(c);
        c.turn.tls_listen = "127.0.0.1:0".into();
        c.turn.tls_cert = cert_path.to_string_lossy().into();
        c.turn.tls_key = key_path.to_string_lossy().into();
        c.turn.public_host = "turn.test".into();
    })
    .await;
    let relay = r.running.relay().unwrap();
    let tls = relay.tls_addr().expect("TURNS listening");
    let servers = relay.ice_servers("someone");
    assert!(
        servers[1]["urls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u == &format!("turns:turn.test:{}?transport=tcp", tls.port())),
        "{servers:?}"
    );
    relay_both_ways(
        TurnClient::tls(tls, cert.der().to_vec(), "turn.test", REALM)
            .await
            .unwrap()
            .creds(rest_credentials("alice", 600)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_and_loopback_peers_are_refused_by_default() {
    let r = start(|_| {}).await;
    let mut c = TurnClient::udp(r.turn, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("alice", 600));
    assert!(is_success(&c.allocate().await));
    for peer in [
        "127.0.0.1:9",
        "10.0.0.1:9",
        "192.168.1.1:9",
        "[::1]:9",
        "169.254.169.254:80",
        "100.64.0.1:9",
        "0.0.0.0:9",
    ] {
        let peer: SocketAddr = peer.parse().unwrap();
        assert_eq!(
            error_code(&c.create_permission(&[peer]).await),
            Some(403),
            "{peer}"
        );
    }
    assert_eq!(
        error_code(
            &c.channel_bind(0x4000, "172.16.0.1:9".parse().unwrap())
                .await
        ),
        Some(403)
    );
    // One refused peer refuses the whole request.
    let public: SocketAddr = "1.1.1.1:9".parse().unwrap();
    assert_eq!(
        error_code(
            &c.create_permission(&[public, "10.1.1.1:9".parse().unwrap()])
                .await
        ),
        Some(403)
    );
    // A public peer is fine (nothing is sent to it here).
    assert!(is_success(&c.create_permission(&[public]).await));
    // The relay's own address stays reachable on relay ports, so clients of this
    // server can meet through their allocations; its other ports are not.
    let own_relay_port = SocketAddr::new(r.turn.ip(), 50_000);
    assert!(is_success(&c.create_permission(&[own_relay_port]).await));
    let own_web = SocketAddr::new(
        r.turn.ip(),
        r.base.rsplit(':').next().unwrap().parse().unwrap(),
    );
    assert_eq!(
        error_code(&c.create_permission(&[own_web]).await),
        Some(403)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_and_deny_lists_override_the_default() {
    let r = start(|c| {
        c.turn.allow_peers = vec!["127.0.0.0/8".into(), "10.0.0.0/8".into()];
        c.turn.deny_peers = vec!["127.0.0.2/32".into()];
    })
    .await;
    let mut c = TurnClient::udp(r.turn, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("alice", 600));
    assert!(is_success(&c.allocate().await));
    // Loopback is this host's own: allowed or not, only its relay ports.
    assert_eq!(
        error_code(&c.create_permission(&["127.0.0.1:9".parse().unwrap()]).await),
        Some(403)
    );
    assert!(is_success(
        &c.create_permission(&["127.0.0.1:50000".parse().unwrap()])
            .await
    ));
    assert!(is_success(
        &c.create_permission(&["10.2.3.4:9".parse().unwrap()]).await
    ));
    assert_eq!(
        error_code(&c.create_permission(&["127.0.0.2:9".parse().unwrap()]).await),
        Some(403)
    );
    assert_eq!(
        error_code(
            &c.create_permission(&["192.168.0.1:9".parse().unwrap()])
                .await
        ),
        Some(403)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_turn_crate_client_relays_through_noom() {
    let r = start(allow_loopback).await;
    let peer = echo_peer().await;
    let (username, password) = rest_credentials("webrtc-rs", 600);
    let conn = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let client = Client::new(ClientConfig {
        stun_serv_addr: r.turn.to_string(),
        turn_serv_addr: r.turn.to_string(),
        username,
        password,
        realm: REALM.into(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(conn),
        vnet: None,
    })
    .await
    .unwrap();
    client.listen().await.unwrap();
    let mapped = client.send_binding_request().await.unwrap();
    assert_eq!(mapped.ip(), r.turn.ip());
    let relay = client.allocate().await.unwrap();
    for i in 0..20u8 {
        let msg = [b'n', b'o', b'o', b'm', i];
        relay.send_to(&msg, peer).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = tokio::time::timeout(WAIT, relay.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&buf[..n], from), (&msg[..], peer));
    }
    relay.close().await.unwrap();
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn even_port_is_honoured_and_reservations_are_refused() {
    let r = start(|_| {}).await;
    let mut c = TurnClient::udp(r.turn, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("alice", 600));
    let even = c
        .authed(METHOD_ALLOCATE, || {
            vec![
                Box::new(turn::proto::reqtrans::RequestedTransport {
                    protocol: turn::proto::PROTO_UDP,
                }),
                // EVEN-PORT with the R bit: "reserve the next port too".
                Box::new(RawAttr(
                    stun::attributes::ATTR_EVEN_PORT,
                    vec![0x80, 0, 0, 0],
                )),
            ]
        })
        .await
        .expect("a response from the relay");
    assert!(is_success(&even), "{:?}", error_code(&even));
    assert_eq!(relayed(&even).port() % 2, 0);
    assert!(!even.contains(stun::attributes::ATTR_RESERVATION_TOKEN));
    let mut other = TurnClient::udp(r.turn, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("bob", 600));
    let token = other
        .authed(METHOD_ALLOCATE, || {
            vec![
                Box::new(turn::proto::reqtrans::RequestedTransport {
                    protocol: turn::proto::PROTO_UDP,
                }),
                Box::new(turn::proto::rsrvtoken::ReservationToken(vec![
                    1, 2, 3, 4, 5, 6, 7, 8,
                ])),
            ]
        })
        .await;
    assert_eq!(error_code(&token), Some(508));
}

/// Any attribute, as raw bytes.
struct RawAttr(stun::attributes::AttrType, Vec<u8>);

impl Setter for RawAttr {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(self.0, &self.1);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_media_servers_port_is_reachable_through_the_relay_and_no_other() {
    // A media server port below the relay range and the kernel's ephemeral
    // ports, so only its opening can make it reachable.
    let port = (20_000..30_000)
        .find(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free UDP port");
    let r = start(|c| c.sfu.listen = format!("127.0.0.1:{port}")).await;
    let sfu = r.running.sfu().expect("media server").addr();
    assert_eq!(sfu.port(), port);
    let mut c = TurnClient::udp(r.turn, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("alice", 600));
    assert!(is_success(&c.allocate().await));
    assert!(is_success(&c.create_permission(&[sfu]).await));
    assert!(is_success(&c.channel_bind(0x4001, sfu).await));
    let next = SocketAddr::new(sfu.ip(), port + 1);
    assert_eq!(error_code(&c.create_permission(&[next]).await), Some(403));
}
