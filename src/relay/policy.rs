//! Which peers the relay may reach: no open relay into private networks.
//!
//! By default a peer in loopback, private (RFC 1918, fc00::/7), link-local,
//! CGNAT, multicast, unspecified, broadcast or documentation ranges is refused
//! (403 at CreatePermission and ChannelBind). `allow_peers` opens ranges again,
//! `deny_peers` closes more; deny wins. The server's own public address stays
//! reachable, so two clients on the same server can relay to each other.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use parking_lot::RwLock;

pub struct PeerPolicy {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    /// The relay's own addresses: reachable on relay ports only, so that two
    /// clients can meet through their allocations without the relay becoming
    /// a way into the server's other services.
    own: Vec<IpAddr>,
    relay_ports: std::ops::RangeInclusive<u16>,
    /// Exact socket addresses allowed for internal use (the self-test's echo).
    exempt: RwLock<HashSet<SocketAddr>>,
}

fn refused_by_default(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return refused_v4(v4);
            }
            let seg0 = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg0 & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (seg0 == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
                || v6.segments()[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible (deprecated)
                || v6 == Ipv6Addr::UNSPECIFIED
        }
    }
}

fn refused_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_multicast()
        || v4.is_broadcast()
        || v4.is_unspecified()
        || v4.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64.0.0/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || o[0] >= 240 // reserved
}

impl PeerPolicy {
    pub fn new(
        allow: Vec<IpNet>,
        deny: Vec<IpNet>,
        own: Vec<IpAddr>,
        relay_ports: std::ops::RangeInclusive<u16>,
    ) -> Self {
        Self {
            allow,
            deny,
            own,
            relay_ports,
            exempt: RwLock::new(HashSet::new()),
        }
    }

    /// True when the relay may send to `peer`.
    pub fn permits(&self, peer: SocketAddr) -> bool {
        let ip = peer.ip();
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        if self.exempt.read().contains(&peer) {
            return true;
        }
        if self.own.contains(&ip) && self.relay_ports.contains(&peer.port()) {
            return true;
        }
        !refused_by_default(ip) || self.allow.iter().any(|n| n.contains(&ip))
    }

    pub fn exempt(&self, addr: SocketAddr) {
        self.exempt.write().insert(addr);
    }

    pub fn unexempt(&self, addr: SocketAddr) {
        self.exempt.write().remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_ranges_refused_by_default_public_allowed() {
        let policy = PeerPolicy::new(
            vec![],
            vec![],
            vec!["203.0.113.7".parse().unwrap()],
            49152..=65535,
        );
        for refused in [
            "127.0.0.1:9",
            "10.1.2.3:9",
            "172.16.0.1:9",
            "192.168.1.1:9",
            "169.254.1.1:9",
            "100.64.0.1:9",
            "224.0.0.1:9",
            "255.255.255.255:9",
            "0.0.0.0:9",
            "[::1]:9",
            "[fd00::1]:9",
            "[fe80::1]:9",
            "[::ffff:10.0.0.1]:9",
            "[ff02::1]:9",
            "[::]:9",
        ] {
            assert!(!policy.permits(p(refused)), "{refused} must be refused");
        }
        for allowed in [
            "8.8.8.8:53",
            "[2606:4700::1111]:443",
            "100.128.0.1:9",
            "203.0.113.7:50000",
        ] {
            assert!(policy.permits(p(allowed)), "{allowed} must be allowed");
        }
        // The server's own address, outside the relay ports (its SSH, its web app): refused.
        assert!(!policy.permits(p("203.0.113.7:22")));
    }

    #[test]
    fn allow_and_deny_lists_override_and_deny_wins() {
        let policy = PeerPolicy::new(
            vec![
                "127.0.0.0/8".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap(),
            ],
            vec![
                "10.9.0.0/16".parse().unwrap(),
                "8.8.8.8/32".parse().unwrap(),
            ],
            vec![],
            49152..=65535,
        );
        assert!(policy.permits(p("127.0.0.1:9")));
        assert!(policy.permits(p("10.1.0.1:9")));
        assert!(!policy.permits(p("10.9.0.1:9")));
        assert!(!policy.permits(p("8.8.8.8:53")));
        policy.exempt(p("192.168.0.9:7"));
        assert!(policy.permits(p("192.168.0.9:7")));
        assert!(!policy.permits(p("192.168.0.9:8")));
    }
}
