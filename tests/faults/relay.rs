//! The relay under abuse: its own addresses, per-address quotas, idle TCP.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::env::{Netns, netns, runtime, test_name};
use crate::raw::*;
use crate::support::{SECRET, rest_credentials};

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
    let name = test_name(module_path!(), "own_addresses_are_reachable_only_on_relay_ports");
    // 11.22.33.44 is advertised; 55.66.77.88 is another address of the host,
    // inside `allow_peers`. Neither is a documentation address.
    let setup = "ip addr add 11.22.33.44/32 dev lo && ip addr add 55.66.77.88/32 dev lo";
    if let Netns::Done = netns(&name, setup) {
        return;
    }
    runtime().block_on(async {
        let dir = tempfile::TempDir::new().unwrap();
        let mut config = crate::core_support::test_config(dir.path());
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

        let mut alice = Raw::udp(turn).await.creds(rest_credentials("alice", 600));
        let allocated = alice.allocate().await;
        assert!(is_success(&allocated), "allocate: {:?}", error_code(&allocated));
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
        assert!(is_success(&alice.create_permission(&[other_relay_port]).await));
        alice.send_indication(advertised.addr(), b"to the advertised").await;
        alice.send_indication(other.addr(), b"to the other").await;
        assert_eq!(advertised.received().await, None, "reached 11.22.33.44:5353");
        assert_eq!(other.received().await, None, "reached 55.66.77.88:5353");
        assert_eq!(loopback.received().await, None);

        // Two clients of this server still meet through their allocations.
        let mut bob = Raw::udp(turn).await.creds(rest_credentials("bob", 600));
        let bob_relayed = relayed(&bob.allocate().await);
        assert!(is_success(&alice.create_permission(&[bob_relayed]).await));
        let alice_relayed = relayed(&allocated);
        assert!(is_success(&bob.create_permission(&[alice_relayed]).await));
        alice.send_indication(bob_relayed, b"hello bob").await;
        let data = bob.recv(WAIT).await.expect("bob gets a Data indication");
        assert!(
            data.windows(9).any(|w| w == b"hello bob"),
            "bob's indication carries the payload"
        );
        running.shutdown().await.expect("clean shutdown");
    });
}
