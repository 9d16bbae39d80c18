//! Which peers the relay may reach: no open relay into private networks, and
//! no way into the server itself.
//!
//! By default a peer in loopback, private (RFC 1918, fc00::/7), link-local,
//! CGNAT, multicast, unspecified, broadcast or documentation ranges is refused
//! (403 at CreatePermission and ChannelBind). IPv6 forms that carry an IPv4
//! address (IPv4-mapped, SIIT-translated, NAT64 64:ff9b::/96, 6to4, Teredo)
//! are judged by that IPv4 address. `allow_peers` opens ranges again,
//! `deny_peers` closes more; deny wins.
//!
//! The server's own addresses are reachable **only on the relay port range**,
//! whatever `allow_peers` says: two clients of this server meet through their
//! allocations, but the relay is no path to the host's other services (SSH,
//! the web app, a resolver on port 53 or 5353). "Own" means every address the
//! kernel delivers locally (all of 127.0.0.0/8, every interface address and
//! subnet broadcast address), re-read every few seconds so that an address
//! added later is covered too, plus the configured listen and public addresses.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use parking_lot::RwLock;

pub struct PeerPolicy {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    /// The relay's configured addresses (public, listen): always own.
    configured: Vec<IpAddr>,
    /// Every local destination of the host, refreshed by [`PeerPolicy::refresh`].
    local: RwLock<Vec<IpNet>>,
    relay_ports: std::ops::RangeInclusive<u16>,
    /// Exact socket addresses allowed for internal use (the self-test's echo).
    exempt: RwLock<HashSet<SocketAddr>>,
    /// Ports of this server's own services that relayed clients may reach
    /// besides the relay range (the media server's).
    own_ports: RwLock<Vec<u16>>,
}

/// The IPv4 address an IPv6 address stands for, in the translation and
/// tunnelling formats a router may turn back into IPv4.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    match s {
        // IPv4-mapped ::ffff:a.b.c.d
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(v4(hi, lo)),
        // SIIT IPv4-translated ::ffff:0:a.b.c.d (RFC 2765)
        [0, 0, 0, 0, 0xffff, 0, hi, lo] => Some(v4(hi, lo)),
        // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052)
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        // 6to4 2002:AABB:CCDD::/48 (RFC 3056)
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        // Teredo 2001:0::/32: the client's address, inverted, in the last 32 bits (RFC 4380)
        [0x2001, 0, _, _, _, _, hi, lo] => Some(v4(!hi, !lo)),
        _ => None,
    }
}

/// Addresses the internet cannot reach (loopback, private, link-local,
/// CGNAT, documentation, ...), including IPv6 forms that carry one.
pub fn refused_by_default(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return refused_v4(v4);
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible (deprecated)
                || s[..3] == [0x64, 0xff9b, 1] // NAT64 local-use 64:ff9b:1::/48 (RFC 8215)
                || s[..4] == [0x100, 0, 0, 0] // discard-only 100::/64
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
    /// `configured`: the addresses the relay listens on and advertises; the
    /// host's other local addresses are read from the kernel.
    pub fn new(
        allow: Vec<IpNet>,
        deny: Vec<IpNet>,
        configured: Vec<IpAddr>,
        relay_ports: std::ops::RangeInclusive<u16>,
    ) -> Self {
        Self {
            allow,
            deny,
            configured,
            local: RwLock::new(crate::net::local_networks()),
            relay_ports,
            exempt: RwLock::new(HashSet::new()),
            own_ports: RwLock::new(Vec::new()),
        }
    }

    /// Re-reads the host's local addresses (they change when networks do).
    pub fn refresh(&self) {
        let fresh = crate::net::local_networks();
        let mut local = self.local.write();
        if *local != fresh {
            tracing::debug!(addresses = ?fresh, "relay: the host's local addresses changed");
            *local = fresh;
        }
    }

    /// True when `ip` is one of this server's own destinations.
    fn is_own(&self, ip: IpAddr) -> bool {
        self.configured.contains(&ip) || self.local.read().iter().any(|n| n.contains(&ip))
    }

    /// True when the relay may send to `peer`.
    pub fn permits(&self, peer: SocketAddr) -> bool {
        let ip = peer.ip();
        // Judge an IPv6 address that stands for an IPv4 one by both.
        let v4 = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let candidates = [Some(ip), v4];
        let each = || candidates.iter().flatten();
        if each().any(|a| self.deny.iter().any(|n| n.contains(a))) {
            return false;
        }
        if self.exempt.read().contains(&peer) {
            return true;
        }
        if each().any(|a| self.is_own(*a)) {
            return self.relay_ports.contains(&peer.port())
                || self.own_ports.read().contains(&peer.port());
        }
        !refused_by_default(ip) || each().any(|a| self.allow.iter().any(|n| n.contains(a)))
    }

    /// Lets relayed clients reach this server's own addresses on `port`
    /// (the media server's, so a client without UDP reaches it over TURN).
    pub fn open_own_port(&self, port: u16) {
        let mut ports = self.own_ports.write();
        if !ports.contains(&port) {
            ports.push(port);
        }
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

    fn policy(allow: &[&str], deny: &[&str], own: &[&str]) -> PeerPolicy {
        PeerPolicy::new(
            allow.iter().map(|n| n.parse().unwrap()).collect(),
            deny.iter().map(|n| n.parse().unwrap()).collect(),
            own.iter().map(|n| n.parse().unwrap()).collect(),
            49152..=65535,
        )
    }

    #[test]
    fn private_ranges_refused_by_default_public_allowed() {
        let policy = policy(&[], &[], &["5.6.7.8"]);
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
            // IPv6 forms carrying a refused IPv4 address.
            "[::ffff:0:10.0.0.1]:9",
            "[::ffff:0:127.0.0.1]:9",
            "[64:ff9b::10.0.0.1]:9",
            "[64:ff9b::127.0.0.1]:9",
            "[64:ff9b::169.254.169.254]:80",
            "[2002:a00:1::1]:9",
            "[2002:7f00:1::1]:9",
            "[2001:0:4136:e378:8000:63bf:f5ff:fffe]:9", // Teredo, client 10.0.0.1
            "[64:ff9b:1::1]:9",
        ] {
            assert!(!policy.permits(p(refused)), "{refused} must be refused");
        }
        for allowed in [
            "8.8.8.8:53",
            "[2606:4700::1111]:443",
            "100.128.0.1:9",
            "5.6.7.8:50000",
            "[64:ff9b::8.8.8.8]:53",
            "[2002:808:808::1]:53",
        ] {
            assert!(policy.permits(p(allowed)), "{allowed} must be allowed");
        }
    }

    #[test]
    fn own_addresses_only_on_relay_ports_whatever_the_allow_list() {
        // 5.6.7.8 is configured (advertised); the loopback range is the host's own.
        let policy = policy(&["127.0.0.0/8", "5.6.7.0/24"], &[], &["5.6.7.8"]);
        for refused in [
            "5.6.7.8:22",
            "5.6.7.8:5353",
            "[::ffff:5.6.7.8]:5353",
            "[::ffff:0:5.6.7.8]:5353",
            "[64:ff9b::5.6.7.8]:5353",
            "[2002:506:708::1]:5353",
            "127.0.0.1:5353",
            "127.1.2.3:53",
            "[::ffff:127.0.0.1]:5353",
            "[::1]:5353",
        ] {
            assert!(!policy.permits(p(refused)), "{refused} must be refused");
        }
        for allowed in [
            "5.6.7.8:49152",
            "5.6.7.8:65535",
            "127.0.0.1:50000",
            "[64:ff9b::5.6.7.8]:50000",
            // Allowed by the list and not an address of this host.
            "5.6.7.9:5353",
        ] {
            assert!(policy.permits(p(allowed)), "{allowed} must be allowed");
        }
    }

    #[test]
    fn an_opened_own_port_is_reachable_and_only_that_one() {
        let policy = policy(&[], &[], &["5.6.7.8"]);
        assert!(!policy.permits(p("5.6.7.8:3479")));
        policy.open_own_port(3479);
        assert!(policy.permits(p("5.6.7.8:3479")));
        assert!(policy.permits(p("127.0.0.1:3479")));
        assert!(!policy.permits(p("5.6.7.8:3480")));
        assert!(!policy.permits(p("127.0.0.1:22")));
    }

    #[test]
    fn allow_and_deny_lists_override_and_deny_wins() {
        let policy = policy(&["10.0.0.0/8"], &["10.9.0.0/16", "8.8.8.8/32"], &[]);
        assert!(policy.permits(p("10.201.33.4:9")));
        assert!(policy.permits(p("[64:ff9b::10.201.33.4]:9")));
        assert!(!policy.permits(p("10.9.0.1:9")));
        assert!(!policy.permits(p("8.8.8.8:53")));
        assert!(!policy.permits(p("[64:ff9b::8.8.8.8]:53")));
        assert!(!policy.permits(p("[::ffff:8.8.8.8]:53")));
        policy.exempt(p("192.168.0.9:7"));
        assert!(policy.permits(p("192.168.0.9:7")));
        assert!(!policy.permits(p("192.168.0.9:8")));
    }
}
