//! Facts about this host's network, and accepting TCP connections safely.
//!
//! The relay must know every address of the machine (not only the one it
//! advertises) to keep its peers away from the server's own services, and
//! every accept loop must survive running out of file descriptors without
//! spinning, and UDP sends that must not wait must not be lost either: they
//! live here so that no subsystem has its own copy.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};

/// The addresses of this machine's interfaces (Linux: from /proc, so no
/// system call wrappers are needed), without IPv6 link-local ones (they need a
/// zone, which certificates cannot name). Empty elsewhere.
pub fn local_addresses() -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for (net, kind) in routes() {
        let ip = net.addr();
        let wanted = match ip {
            IpAddr::V4(_) => kind == Kind::Local && net.prefix_len() == 32,
            IpAddr::V6(v6) => !v6.is_unicast_link_local(),
        };
        if wanted && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// Every destination this machine receives as its own: the kernel's local
/// routes (addresses and whole local ranges such as 127.0.0.0/8), the
/// directed broadcast addresses of its subnets, and every IPv6 address of its
/// interfaces. Read afresh on each call, so it follows address changes.
pub fn local_networks() -> Vec<IpNet> {
    let mut out: Vec<IpNet> = Vec::new();
    for (net, _) in routes() {
        if !out.contains(&net) {
            out.push(net);
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An address or range of this machine.
    Local,
    /// A directed broadcast address of one of its subnets.
    Broadcast,
}

/// The kernel's local and broadcast routes (IPv4) and interface addresses (IPv6).
fn routes() -> Vec<(IpNet, Kind)> {
    let mut out = Vec::new();
    // IPv4: /proc/net/fib_trie lists each route key as "|-- a.b.c.d",
    // followed by lines such as "/32 host LOCAL", "/8 host LOCAL" or
    // "/32 link BROADCAST".
    if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
        let mut last: Option<IpAddr> = None;
        for line in trie.lines() {
            let line = line.trim();
            if let Some(addr) = line.strip_prefix("|-- ") {
                last = addr.parse().ok();
                continue;
            }
            let Some(ip) = last else { continue };
            let mut words = line.split_whitespace();
            let (Some(prefix), Some(_scope), Some(kind)) =
                (words.next(), words.next(), words.next())
            else {
                continue;
            };
            let kind = match kind {
                "LOCAL" => Kind::Local,
                "BROADCAST" => Kind::Broadcast,
                _ => continue,
            };
            let Some(len) = prefix.strip_prefix('/').and_then(|p| p.parse::<u8>().ok()) else {
                continue;
            };
            let len = if kind == Kind::Broadcast { 32 } else { len };
            if let Ok(net) = IpNet::new(ip, len) {
                out.push((net, kind));
            }
        }
    }
    // IPv6: /proc/net/if_inet6 starts each line with 32 hex digits.
    if let Ok(list) = std::fs::read_to_string("/proc/net/if_inet6") {
        for line in list.lines() {
            let Some(hex) = line.split_whitespace().next() else {
                continue;
            };
            if hex.len() == 32
                && let Ok(bits) = u128::from_str_radix(hex, 16)
                && let Ok(net) = IpNet::new(IpAddr::V6(Ipv6Addr::from(bits)), 128)
            {
                out.push((net, Kind::Local));
            }
        }
    }
    out
}

/// The host a browser uses for `addr` when nothing better is known.
pub fn host_of(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V6(v6) => format!("[{v6}]"),
        ip => ip.to_string(),
    }
}

/// The address to advertise for a socket bound to `listen`: `listen` itself
/// when it is one address, else this machine's address on its default route
/// (`None` without a default route).
pub fn advertised_ip(listen: IpAddr) -> Option<IpAddr> {
    if listen.is_unspecified() {
        default_route_ip()
    } else {
        Some(listen)
    }
}

/// This machine's address on its default route (nothing is sent).
pub fn default_route_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// The address a client is counted under: IPv4 clients of a dual-stack
/// listener arrive as `::ffff:a.b.c.d`.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Longest pause of an accept loop that keeps failing for lack of resources.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// First pause after such a failure.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(20);

/// Accepts the next connection. Errors that concern one connection only (it
/// was reset before it was accepted) are skipped at once; running out of file
/// descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) pauses the loop,
/// doubling the pause up to a second while it lasts, so that a process at its
/// open-files limit does not spin a core retrying and starve everything else.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    let mut pause = ACCEPT_BACKOFF_MIN;
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                if pause == ACCEPT_BACKOFF_MIN {
                    tracing::warn!(error = %e, "accept failed; pausing (out of file descriptors?)");
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

/// Errors that concern only the connection being accepted.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset | Interrupted
    )
}

/// Sends a datagram now, without waiting: the kernel's answer, not tokio's
/// idea of whether the socket is writable. Tokio's `try_send_to` refuses
/// (WouldBlock) on a socket whose first "writable" event the reactor has not
/// seen yet, and after any full buffer until it sees another: a relay
/// allocation made a moment ago then dropped its first packets (the relay's
/// bandwidth test lost all of them on a busy machine). Errors are the
/// kernel's (WouldBlock when its buffer is really full).
pub fn send_now(
    socket: &tokio::net::UdpSocket,
    buf: &[u8],
    to: SocketAddr,
) -> std::io::Result<usize> {
    match socket.try_send_to(buf, to) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            socket2::SockRef::from(socket).send_to(buf, &to.into())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn local_networks_cover_all_of_loopback() {
        let all = local_networks();
        let lo: IpAddr = "127.0.0.53".parse().unwrap();
        assert!(all.iter().any(|n| n.contains(&lo)), "{all:?}");
        assert!(local_addresses().contains(&IpAddr::from([127, 0, 0, 1])));
    }
}
