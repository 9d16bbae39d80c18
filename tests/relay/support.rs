//! Servers with a relay on loopback, and helpers around them.

use std::net::SocketAddr;

use noom::Running;
use noom::client::turn::{Reply, TurnClient};
use noom::config::Config;
use tempfile::TempDir;

use crate::common::TestServer;

/// A test server (see `common`) and its relay's UDP address.
pub struct Relayed {
    pub running: Running,
    pub turn: SocketAddr,
    pub base: String,
    pub _dir: TempDir,
}

pub const SECRET: &str = "test-secret-0123456789";
pub const REALM: &str = "noom";

/// A test server whose relay has the secret [`SECRET`], once its start-up
/// self-test passed.
pub async fn start(tweak: impl FnOnce(&mut Config)) -> Relayed {
    let TestServer { running, base, dir } = TestServer::builder()
        .tweak(|c| c.turn.secret = SECRET.into())
        .tweak(tweak)
        .start()
        .await;
    let relay = running.relay().expect("relay enabled");
    // Let the start-up self-test finish, so its allocation does not count in quotas.
    for _ in 0..600 {
        if relay.last_self_test().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let test = relay.last_self_test();
    if !test.as_ref().is_some_and(|t| t.ok) {
        let mut probe = TurnClient::udp(relay.udp_addr(), REALM).await.unwrap();
        let answered = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            probe.request(stun::message::METHOD_BINDING, vec![], false),
        )
        .await
        .is_ok_and(|reply| reply.is_ok());
        let again = relay.self_test().await;
        panic!(
            "self-test failed: {test:?}; binding answered afterwards: {answered}; second self-test: {again:?}"
        );
    }
    assert!(
        test.as_ref().is_some_and(|t| t.ok),
        "relay self-test passes: {test:?}"
    );
    let turn = relay.udp_addr();
    Relayed {
        running,
        turn,
        base,
        _dir: dir,
    }
}

/// Loopback peers are refused by default; most tests relay to local echoes.
pub fn allow_loopback(c: &mut Config) {
    c.turn.allow_peers = vec!["127.0.0.0/8".into()];
}

/// The relayed address of an Allocate success (a test failure without one).
pub fn relayed(reply: &impl Reply) -> SocketAddr {
    noom::client::turn::relayed(reply).expect("an XOR-RELAYED-ADDRESS")
}

/// coturn-style REST credentials for `user`, valid for `ttl_secs` (negative: expired).
pub fn rest_credentials(user: &str, ttl_secs: i64) -> (String, String) {
    noom::client::turn::credentials(SECRET, user, ttl_secs)
}

/// A UDP socket for a peer on loopback. Loopback is this host's own address,
/// which the relay reaches only on its relay ports: the peer binds one of them.
pub async fn peer_socket() -> tokio::net::UdpSocket {
    use rand::Rng;
    for _ in 0..1000 {
        let port: u16 = rand::rng().random_range(49152..=65535);
        if let Ok(sock) = tokio::net::UdpSocket::bind(("127.0.0.1", port)).await {
            return sock;
        }
    }
    panic!("no free port in the relay range");
}

/// A UDP echo peer on loopback.
pub async fn echo_peer() -> SocketAddr {
    let sock = peer_socket().await;
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let _ = sock.send_to(&buf[..n], from).await;
        }
    });
    addr
}
