//! Who the client is, behind a reverse proxy or not.
//!
//! Exists so every place that needs a client's address (logs, rate limits,
//! the admin page) or whether the page was reached over HTTPS (Secure
//! cookies) decides it the same way: a forwarded header counts only when the
//! TCP peer is a configured trusted proxy (`server.trusted_proxies`), and then
//! the client is the rightmost `X-Forwarded-For` hop that is not itself a
//! trusted proxy (everything left of it could be made up by the client).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The client's address: `peer` unless `peer` is a trusted proxy, then the
/// rightmost untrusted `X-Forwarded-For` hop (several header lines count as
/// one list, in order). When every hop is trusted, the leftmost one; when a
/// hop does not parse, the nearest trusted address before it.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.ip().to_canonical();
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return client;
        };
        client = ip;
        if !is_trusted(ip, trusted) {
            return ip;
        }
    }
    client
}

/// Whether the request reached Noom over HTTPS: served over TLS here, or
/// forwarded by a trusted proxy that says `X-Forwarded-Proto: https` (the
/// nearest proxy's value: the last one in a list).
pub fn is_https(
    served_tls: bool,
    peer: SocketAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> bool {
    if served_tls {
        return true;
    }
    if !is_trusted(peer.ip().to_canonical(), trusted) {
        return false;
    }
    headers
        .get_all("x-forwarded-proto")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .next_back()
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    hop.parse::<SocketAddr>()
        .ok()
        .map(|a| a.ip().to_canonical())
}

/// The settings [`client_ip`] and [`is_https`] need, parsed once at start.
#[derive(Debug, Clone, Default)]
pub struct Proxies {
    trusted: Arc<[IpNet]>,
    tls: bool,
}

impl Proxies {
    /// `trusted`: `server.trusted_proxies`; `tls`: whether the listener serves HTTPS.
    pub fn new(trusted: Vec<IpNet>, tls: bool) -> Self {
        Self {
            trusted: trusted.into(),
            tls,
        }
    }

    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        client_ip(peer, headers, &self.trusted)
    }

    pub fn is_https(&self, peer: SocketAddr, headers: &HeaderMap) -> bool {
        is_https(self.tls, peer, headers, &self.trusted)
    }

    pub fn trusted(&self) -> &[IpNet] {
        &self.trusted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().expect("cidr")).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let peer: SocketAddr = "203.0.113.9:4000".parse().expect("addr");
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(
            client_ip(peer, &h, &nets(&["10.0.0.0/8"])),
            ip("203.0.113.9")
        );
        assert!(!is_https(false, peer, &h, &nets(&["10.0.0.0/8"])));
        assert_eq!(client_ip(peer, &h, &[]), ip("203.0.113.9"));
    }

    #[test]
    fn trusted_peer_gives_the_rightmost_untrusted_hop() {
        let peer: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        let trusted = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
        // The client forged 6.6.6.6; the edge proxy 10.1.1.1 appended the real address.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
            ("x-forwarded-for", "10.1.1.1"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(client_ip(peer, &h, &trusted), ip("198.51.100.7"));
        assert!(is_https(false, peer, &h, &trusted));
        // All hops trusted: the leftmost.
        let h = headers(&[("x-forwarded-for", "10.2.2.2, 10.1.1.1")]);
        assert_eq!(client_ip(peer, &h, &trusted), ip("10.2.2.2"));
        // No header: the proxy itself.
        assert_eq!(
            client_ip(peer, &HeaderMap::new(), &trusted),
            ip("127.0.0.1")
        );
        // Garbage stops the walk at the nearest trusted address.
        let h = headers(&[("x-forwarded-for", "198.51.100.7, nonsense")]);
        assert_eq!(client_ip(peer, &h, &trusted), ip("127.0.0.1"));
        // Ports and IPv6 forms.
        let h = headers(&[("x-forwarded-for", "[2001:db8::1]:443")]);
        assert_eq!(client_ip(peer, &h, &trusted), ip("2001:db8::1"));
        let h = headers(&[("x-forwarded-for", "198.51.100.7:5555")]);
        assert_eq!(client_ip(peer, &h, &trusted), ip("198.51.100.7"));
    }

    #[test]
    fn v4_mapped_peers_match_v4_ranges() {
        let peer: SocketAddr = "[::ffff:127.0.0.1]:4000".parse().expect("addr");
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-proto", "http"),
        ]);
        assert_eq!(
            client_ip(peer, &h, &nets(&["127.0.0.0/8"])),
            ip("198.51.100.7")
        );
        assert!(!is_https(false, peer, &h, &nets(&["127.0.0.0/8"])));
        assert!(is_https(true, peer, &h, &[]));
    }
}
