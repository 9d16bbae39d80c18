//! The listen ports and the relay: bound here, or answered by a running noom
//! (asked over HTTP(S) on loopback).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Report;
use crate::config::{Config, Resolved, ResolvedTurn};
use crate::relay::Relay;
use crate::tls;

/// How long a probe of a running noom may take.
const PROBE: Duration = Duration::from_secs(8);

/// Checks that the web ports can be bound; returns whether a running noom
/// answers on `server.http`.
pub(super) async fn check_ports(
    config: &Config,
    at: &Resolved,
    data_in_use: bool,
    r: &mut Report,
) -> bool {
    let http = at.http;
    let mut running = false;
    match std::net::TcpListener::bind(http) {
        Ok(_) => r.ok("ports", format!("{http} (web) is free")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            match probe_json(http, config.tls_enabled(), "/healthz").await {
                Some(body) if body.get("version").is_some() => {
                    running = true;
                    r.ok("ports", format!("{http} (web) is served by a running noom"));
                }
                _ => r.fail(
                    "ports",
                    format!("{http} (web) is taken by another program"),
                    "stop that program or choose another server.http",
                ),
            }
        }
        Err(e) => r.fail(
            "ports",
            format!("cannot listen on {http} (web): {e}"),
            bind_fix(http),
        ),
    }
    if !running && data_in_use {
        r.warn(
            "ports",
            "the data directory is in use but no noom answers on server.http",
            "is another noom running with a different config? Stop it first",
        );
    }
    if let Some(redirect) = at.http_redirect {
        check_tcp_port(r, "ports", redirect, "HTTP redirect", running);
    }
    if let Some(sfu) = &at.sfu {
        check_udp_port(r, sfu.listen, "media server", running);
    }
    running
}

/// A TCP port noom will listen on: free, or held by the running noom (`running`).
fn check_tcp_port(r: &mut Report, area: &'static str, addr: SocketAddr, what: &str, running: bool) {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => r.ok(area, format!("{addr} ({what}) is free")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && running => r.ok(
            area,
            format!("{addr} ({what}) is in use by the running noom"),
        ),
        Err(e) => r.fail(
            area,
            format!("cannot listen on {addr} ({what}): {e}"),
            bind_fix(addr),
        ),
    }
}

/// A UDP port: free, or held by the running noom (a UDP port cannot be
/// asked who holds it, so a taken port while noom runs is taken as noom's).
fn check_udp_port(r: &mut Report, addr: SocketAddr, what: &str, running: bool) {
    match std::net::UdpSocket::bind(addr) {
        Ok(_) => r.ok("ports", format!("{addr}/udp ({what}) is free")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && running => r.ok(
            "ports",
            format!("{addr}/udp ({what}) is in use by the running noom"),
        ),
        Err(e) => r.fail(
            "ports",
            format!("cannot listen on {addr}/udp ({what}): {e}"),
            format!(
                "stop the program holding UDP port {} or change sfu.listen (or set sfu.enabled = false)",
                addr.port()
            ),
        ),
    }
}

fn bind_fix(addr: SocketAddr) -> String {
    if addr.port() < 1024 {
        format!(
            "ports below 1024 need a capability: systemd AmbientCapabilities=CAP_NET_BIND_SERVICE \
             (deploy/noom.service) or `setcap cap_net_bind_service=+ep $(which noom)`; or stop what holds {addr}"
        )
    } else {
        format!("stop what holds {addr} or choose another address")
    }
}

pub(super) async fn check_relay(
    config: &Config,
    at: &Resolved,
    noom_running: bool,
    r: &mut Report,
) {
    if !config.turn.enabled {
        r.warn(
            "relay",
            "the built-in STUN/TURN relay is disabled (turn.enabled = false)",
            "calls between networks behind NATs need a relay: enable it or configure your own",
        );
        return;
    }
    // Any secret works for the self-test (it mints its own credentials):
    // the check does not create the data directory's secret file.
    let mut turn = config.turn.clone();
    if turn.secret.is_empty() {
        turn.secret = format!("check-{:032x}", rand::random::<u128>());
    }
    let turns = at.turn.turns;
    if turns.is_some() && config.turn.public_host.is_empty() {
        r.warn(
            "relay",
            "TURNS is on but turn.public_host is empty: browsers get turns: URLs with an IP \
             address, which the certificate must name",
            "set turn.public_host to the certificate's host name (e.g. the host of server.public_url)",
        );
    }
    if let Some(addr) = turns {
        check_tcp_port(r, "relay", addr, "TURNS", noom_running);
    }
    let dir = std::env::temp_dir();
    let only_udp_tcp = ResolvedTurn {
        turns: None,
        ..at.turn.clone()
    };
    match Relay::start(&turn, &only_udp_tcp, &dir, None).await {
        Ok(relay) => {
            let test = relay.self_test().await;
            relay.shutdown().await;
            let public = relay.public_ip();
            if test.ok {
                r.ok(
                    "relay",
                    format!(
                        "started on {} and self-tested: {} (advertised address {public})",
                        config.turn.listen, test.detail
                    ),
                );
            } else {
                r.fail(
                    "relay",
                    format!("self-test failed on {}: {}", config.turn.listen, test.detail),
                    "check turn.listen / turn.public_ip and that the firewall lets UDP 3478 and the relay range in",
                );
            }
            if !public.is_loopback()
                && !crate::net::local_addresses().is_empty()
                && !crate::net::local_addresses().contains(&public)
            {
                r.warn(
                    "relay",
                    format!("the relay advertises {public}, which is not an address of this machine"),
                    "fine behind a 1:1 NAT (most clouds) when UDP/TCP 3478, TCP 5349 and the relay range \
                     are forwarded; otherwise correct turn.public_ip",
                );
            }
            if crate::relay::is_internal(public) {
                r.warn(
                    "relay",
                    format!("the relay advertises {public}, which the internet cannot reach"),
                    "set turn.public_ip to this server's public address (behind NAT: forward UDP/TCP 3478, 5349 and the relay range)",
                );
            }
        }
        Err(e) => {
            let http = Some(at.http);
            let running = match http {
                Some(http) if noom_running => {
                    probe_json(http, config.tls_enabled(), "/api/relay/self-test").await
                }
                _ => None,
            };
            match running {
                Some(body) if body.get("ok") == Some(&Value::Bool(true)) => r.ok(
                    "relay",
                    format!(
                        "{} is held by the running noom, whose relay self-test passed",
                        config.turn.listen
                    ),
                ),
                Some(body) => r.fail(
                    "relay",
                    format!(
                        "the running noom's relay self-test failed: {}",
                        body.get("detail")
                            .and_then(Value::as_str)
                            .unwrap_or("no detail")
                    ),
                    "see its log; check turn.listen / turn.public_ip and the firewall",
                ),
                None => r.fail(
                    "relay",
                    format!("the relay cannot start: {e}"),
                    format!(
                        "stop the program holding {} (e.g. coturn) or choose another turn.listen",
                        config.turn.listen
                    ),
                ),
            }
        }
    }
}

/// GETs `path` from a server on `addr` (loopback when it listens on all
/// addresses) and parses the body as JSON. Over TLS, the certificate is not
/// verified: this only asks the local server how it is doing.
pub(super) async fn probe_json(addr: SocketAddr, https: bool, path: &str) -> Option<Value> {
    let target = if addr.ip().is_unspecified() {
        let ip = match addr {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    };
    tokio::time::timeout(PROBE, async {
        let tcp = TcpStream::connect(target).await.ok()?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n\r\n",
            crate::net::host_of(target)
        );
        let raw = if https {
            let name = rustls_pki_types::ServerName::IpAddress(target.ip().into());
            let mut tls = tokio_rustls::TlsConnector::from(tls::client_accepting_any_certificate())
                .connect(name, tcp)
                .await
                .ok()?;
            exchange(&mut tls, &request).await?
        } else {
            let mut tcp = tcp;
            exchange(&mut tcp, &request).await?
        };
        let text = String::from_utf8_lossy(&raw);
        let (_, body) = text.split_once("\r\n\r\n")?;
        serde_json::from_str(body.trim()).ok()
    })
    .await
    .ok()
    .flatten()
}

async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    request: &str,
) -> Option<Vec<u8>> {
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    // A TLS peer may close without close_notify: keep what arrived.
    let _ = stream.read_to_end(&mut raw).await;
    (!raw.is_empty()).then_some(raw)
}
