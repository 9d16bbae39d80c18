//! The relay under abuse: its own addresses, per-address quotas, idle TCP.

use std::net::SocketAddr;
use std::time::Duration;

use noom::client::turn::{RESPONSE_WAIT as WAIT, TurnClient, error_code, is_success};
use tokio::net::UdpSocket;

use crate::env::{Netns, closed_within, netns, runtime, sample, test_name};
use crate::support::{REALM, SECRET, relayed, rest_credentials};

/// A UDP service of the host that records what reaches it.
struct Service {
    sock: UdpSocket,
}

impl Service {
    async fn bind(addr: &str) -> Service {
        Service {
            sock: UdpSocket::bind(addr).await.expect("service binds"),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    /// What arrives within a short while, if anything.
    async fn received(&self) -> Option<Vec<u8>> {
        let mut buf = [0u8; 2048];
        tokio::time::timeout(Duration::from_millis(400), self.sock.recv_from(&mut buf))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|(n, _)| buf[..n].to_vec())
    }
}

/// Finding 1: with a public (non-documentation) address on the host, the
/// relay reaches the host's own addresses, advertised or not and whatever
/// `allow_peers` says, only on the relay port range.
#[test]
fn own_addresses_are_reachable_only_on_relay_ports() {
    let name = test_name(
        module_path!(),
        "own_addresses_are_reachable_only_on_relay_ports",
    );
    // 11.22.33.44 is advertised; 55.66.77.88 is another address of the host,
    // inside `allow_peers`. Neither is a documentation address.
    let setup = "ip addr add 11.22.33.44/32 dev lo && ip addr add 55.66.77.88/32 dev lo";
    if let Netns::Done = netns(&name, setup) {
        return;
    }
    runtime().block_on(async {
        let dir = tempfile::TempDir::new().unwrap();
        let mut config = crate::common::config(dir.path());
        config.turn.listen = "0.0.0.0:0".into();
        config.turn.public_ip = "11.22.33.44".into();
        config.turn.secret = SECRET.into();
        config.turn.allow_peers = vec!["55.66.77.0/24".into(), "127.0.0.0/8".into()];
        let running = noom::App::start(config).await.expect("server starts");
        let port = running.relay().expect("relay").udp_addr().port();
        let turn: SocketAddr = ([127, 0, 0, 1], port).into();

        let advertised = Service::bind("11.22.33.44:5353").await;
        let other = Service::bind("55.66.77.88:5353").await;
        let loopback = Service::bind("127.0.0.1:5353").await;

        let mut alice = TurnClient::udp(turn, REALM)
            .await
            .unwrap()
            .creds(rest_credentials("alice", 600));
        let allocated = alice.allocate().await;
        assert!(
            is_success(&allocated),
            "allocate: {:?}",
            error_code(&allocated)
        );
        assert_eq!(relayed(&allocated).ip().to_string(), "11.22.33.44");

        for target in [advertised.addr(), other.addr(), loopback.addr()] {
            assert_eq!(
                error_code(&alice.create_permission(&[target]).await),
                Some(403),
                "CreatePermission to the host's own {target} outside the relay ports"
            );
            assert_eq!(
                error_code(&alice.channel_bind(0x4000, target).await),
                Some(403),
                "ChannelBind to the host's own {target}"
            );
        }
        // IPv6 forms that carry the host's IPv4 address are its own too.
        for v6 in [
            "[::ffff:11.22.33.44]:5353",
            "[::ffff:0:11.22.33.44]:5353",
            "[64:ff9b::11.22.33.44]:5353",
            "[2002:b16:212c::1]:5353",
            "[64:ff9b::55.66.77.88]:5353",
        ] {
            assert_eq!(
                error_code(&alice.create_permission(&[v6.parse().unwrap()]).await),
                Some(403),
                "{v6}"
            );
        }

        // A permission is per IP: one opened for a relay port must not let a
        // Send indication through to another port of the same address.
        let relay_port: SocketAddr = "11.22.33.44:50000".parse().unwrap();
        assert!(is_success(&alice.create_permission(&[relay_port]).await));
        let other_relay_port: SocketAddr = "55.66.77.88:50000".parse().unwrap();
        assert!(is_success(
            &alice.create_permission(&[other_relay_port]).await
        ));
        alice
            .send_indication(advertised.addr(), b"to the advertised")
            .await
            .unwrap();
        alice
            .send_indication(other.addr(), b"to the other")
            .await
            .unwrap();
        assert_eq!(
            advertised.received().await,
            None,
            "reached 11.22.33.44:5353"
        );
        assert_eq!(other.received().await, None, "reached 55.66.77.88:5353");
        assert_eq!(loopback.received().await, None);

        // Two clients of this server still meet through their allocations.
        let mut bob = TurnClient::udp(turn, REALM)
            .await
            .unwrap()
            .creds(rest_credentials("bob", 600));
        let bob_relayed = relayed(&bob.allocate().await);
        assert!(is_success(&alice.create_permission(&[bob_relayed]).await));
        let alice_relayed = relayed(&allocated);
        assert!(is_success(&bob.create_permission(&[alice_relayed]).await));
        alice
            .send_indication(bob_relayed, b"hello bob")
            .await
            .unwrap();
        let data = bob.recv(WAIT).await.expect("bob gets a Data indication");
        assert!(
            data.windows(9).any(|w| w == b"hello bob"),
            "bob's indication carries the payload"
        );
        running.shutdown().await.expect("clean shutdown");
    });
}

/// Finding 2: one address that mints credentials through many anonymous
/// sessions cannot take every allocation: the per-address quota stops it,
/// and a newcomer from another address is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_exhaust_the_relay() {
    let r = crate::support::start(|c| {
        c.turn.max_allocations = 40;
        c.turn.max_allocations_per_user = 10;
        c.turn.max_allocations_per_ip = 10;
        c.turn.allocations_per_ip_per_sec = 1000;
        // Not what this test is about: let the flood's 401 round trips through.
        c.turn.unauthenticated_per_sec = 1000;
    })
    .await;
    // Credentials from anonymous sessions, as any visitor gets them.
    let mut creds = Vec::new();
    for i in 0..8 {
        let c = crate::common::connect(&r.base, None).await;
        let room = format!("flood-{i}");
        c.enter(&room).await;
        let ack = c.ok("join_call", &[serde_json::json!(room)]).await;
        let turn = &ack["iceServers"][1];
        creds.push((
            turn["username"].as_str().unwrap().to_string(),
            turn["credential"].as_str().unwrap().to_string(),
        ));
    }
    let mut held = Vec::new();
    let (mut granted, mut refused) = (0, 0);
    for (username, password) in &creds {
        for _ in 0..10 {
            let mut c = TurnClient::udp(r.turn, REALM)
                .await
                .unwrap()
                .creds((username.clone(), password.clone()));
            let reply = c.allocate().await;
            if is_success(&reply) {
                granted += 1;
                held.push(c);
            } else {
                assert_eq!(error_code(&reply), Some(486), "per-address quota");
                refused += 1;
            }
        }
    }
    assert_eq!(granted, 10, "one address holds at most its quota");
    assert_eq!(refused, 70);
    // Someone else, from another address, still gets a relay.
    let mut newcomer = TurnClient::udp_from(r.turn, "127.0.0.2", REALM)
        .await
        .unwrap()
        .creds(rest_credentials("newcomer", 600));
    let reply = newcomer.allocate().await;
    assert!(
        is_success(&reply),
        "newcomer refused: {:?}",
        error_code(&reply)
    );
}

/// Finding 2: new allocations per second from one address are limited too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_allocations_per_address_are_rate_limited() {
    let r = crate::support::start(|c| {
        c.turn.max_allocations_per_user = 100;
        c.turn.allocations_per_ip_per_sec = 2;
    })
    .await;
    let mut held = Vec::new();
    let (mut granted, mut slowed) = (0, 0);
    for _ in 0..20 {
        let mut c = TurnClient::udp(r.turn, REALM)
            .await
            .unwrap()
            .creds(rest_credentials("burst", 600));
        let reply = c.allocate().await;
        if is_success(&reply) {
            granted += 1;
            held.push(c);
        } else {
            assert_eq!(error_code(&reply), Some(508));
            slowed += 1;
        }
    }
    // A burst of 5 seconds' worth (10), the self-test's allocation included,
    // plus what refilled meanwhile.
    assert!((8..=11).contains(&granted), "granted {granted}");
    assert_eq!(granted + slowed, 20);
    let mut other = TurnClient::udp_from(r.turn, "127.0.0.2", REALM)
        .await
        .unwrap()
        .creds(rest_credentials("other", 600));
    assert!(is_success(&other.allocate().await));
}

/// Finding 2: `join_call` credentials cost something: one per connection
/// (reused when it joins again) and a budget per client address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_call_credentials_are_limited_per_address() {
    let r = crate::support::start(|c| c.turn.credentials_per_ip_per_min = 3).await;
    let mut conns = Vec::new();
    for i in 0..3 {
        let c = crate::common::connect(&r.base, None).await;
        c.enter(&format!("r{i}")).await;
        let first = c
            .ok("join_call", &[serde_json::json!(format!("r{i}"))])
            .await;
        c.ok("leave_call", &[serde_json::json!(format!("r{i}"))])
            .await;
        // Joining again reuses the connection's credentials: no new mint.
        let again = c
            .ok("join_call", &[serde_json::json!(format!("r{i}"))])
            .await;
        assert_eq!(first["iceServers"][1], again["iceServers"][1]);
        conns.push(c);
    }
    let fourth = crate::common::connect(&r.base, None).await;
    fourth.enter("r4").await;
    let refused = fourth
        .err("join_call", &[serde_json::json!("r4")], "rate_limited")
        .await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("retry")),
        "{refused}"
    );
    // A refused join left the caller out of the call.
    fourth
        .err("leave_call", &[serde_json::json!("r4")], "not_in_call")
        .await;
}

/// Finding 3: TURN over TCP and TLS closes connections that have no
/// allocation: silent ones, half-sent frames, and connections whose
/// allocation ended; a connection with an allocation stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_turn_tcp_and_tls_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let r = crate::support::start(|c| {
        c.turn.tcp_idle_secs = 1;
        c.tls.self_signed = true;
    })
    .await;
    let relay = r.running.relay().unwrap();
    let tcp = relay.tcp_addr().expect("TURN over TCP");
    let tls = relay.tls_addr().expect("TURN over TLS");

    let mut silent = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(tcp).await.unwrap();
    // Half a STUN header, then nothing.
    half.write_all(&[0x00, 0x03, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42])
        .await
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(noom::tls::client_accepting_any_certificate());
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut silent_tls = connector
        .connect(name, tokio::net::TcpStream::connect(tls).await.unwrap())
        .await
        .expect("TLS handshake");
    let mut allocated = TurnClient::tcp(tcp, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("alice", 600));
    assert!(is_success(&allocated.allocate().await));

    let wait = Duration::from_secs(4);
    assert!(
        closed_within(&mut silent, wait).await,
        "silent TCP stays open"
    );
    assert!(
        closed_within(&mut half, wait).await,
        "half-sent frame stays open"
    );
    assert!(
        closed_within(&mut silent_tls, wait).await,
        "silent TLS stays open"
    );

    // The allocated connection outlived the idle time and still works.
    let refreshed = allocated
        .authed(stun::message::METHOD_REFRESH, || {
            vec![Box::new(turn::proto::lifetime::Lifetime(
                Duration::from_secs(600),
            ))]
        })
        .await;
    assert!(is_success(&refreshed), "allocated connection was closed");
    // Once its allocation is gone, it goes too.
    let gone = allocated
        .authed(stun::message::METHOD_REFRESH, || {
            vec![Box::new(turn::proto::lifetime::Lifetime(Duration::ZERO))]
        })
        .await;
    assert!(is_success(&gone));
    let started = std::time::Instant::now();
    assert!(allocated.recv(wait).await.is_none());
    assert!(
        started.elapsed() < wait,
        "connection without allocation stays open"
    );
    let mut metrics = String::new();
    relay.render_metrics(&mut metrics);
    let closed = sample(&metrics, "noom_relay_idle_closed_total");
    assert!(closed >= 4.0, "{closed}");
}

/// Finding 3: one address cannot hold more TURN TCP connections than it may
/// have allocations (each allocation over TCP needs one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_tcp_connections_per_address_are_capped() {
    let r = crate::support::start(|c| c.turn.max_allocations_per_ip = 5).await;
    let tcp = r
        .running
        .relay()
        .unwrap()
        .tcp_addr()
        .expect("TURN over TCP");
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(tokio::net::TcpStream::connect(tcp).await.unwrap());
    }
    let mut closed = 0;
    for s in held.iter_mut() {
        if closed_within(s, Duration::from_millis(200)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 3, "connections over the address's quota are closed");
    // Another address is not affected.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(tcp).await.unwrap();
    assert!(!closed_within(&mut other, Duration::from_millis(200)).await);
}
