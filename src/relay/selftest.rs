//! Relay self-test: allocate from inside the process with freshly minted
//! credentials (the `turn` crate's client, a real TURN client), relay a packet
//! to a local echo socket and expect it back.
//!
//! Run at start-up and on demand; the result feeds `/healthz` and the log,
//! with the likely cause when it fails.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::UdpSocket;
use turn::client::{Client, ClientConfig};
use webrtc_util::Conn;

use super::Relay;

const TIMEOUT: Duration = Duration::from_secs(5);
/// Echo round trips tried, and how long each waits.
const ECHO_ATTEMPTS: usize = 4;
const ECHO_WAIT: Duration = Duration::from_millis(800);
/// The user id of the self-test's credentials (never a real session's: those are hex).
const SELF_TEST_USER: &str = "self-test";

#[derive(Debug, Clone, Serialize)]
pub struct SelfTest {
    pub ok: bool,
    /// What went wrong and what to check, when not ok.
    pub detail: String,
    pub round_trip_ms: Option<f64>,
    #[serde(skip)]
    pub at: Instant,
}

pub async fn run(relay: &Relay) -> SelfTest {
    let started = Instant::now();
    let step = std::sync::Arc::new(parking_lot::Mutex::new("start"));
    let result = tokio::time::timeout(TIMEOUT, attempt(relay, step.clone())).await;
    let (ok, detail) = match result {
        Ok(Ok(())) => (
            true,
            "allocated and relayed a packet to a local echo".to_string(),
        ),
        Ok(Err(e)) => (false, e),
        Err(_) => (
            false,
            format!(
                "no answer within 5 s (at step {}): is the relay port blocked by a firewall, or turn.listen unreachable from this host?",
                step.lock()
            ),
        ),
    };
    if ok {
        tracing::info!(
            ms = started.elapsed().as_secs_f64() * 1e3,
            "relay self-test passed"
        );
    } else {
        tracing::error!(%detail, "relay self-test FAILED: calls behind NATs will not connect");
    }
    SelfTest {
        ok,
        detail,
        round_trip_ms: ok.then(|| started.elapsed().as_secs_f64() * 1e3),
        at: Instant::now(),
    }
}

/// Where the self-test reaches the relay: its own listen address, or loopback.
fn server_addr(relay: &Relay) -> SocketAddr {
    let udp = relay.udp_addr();
    if udp.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), udp.port())
    } else {
        udp
    }
}

async fn attempt(
    relay: &Relay,
    step: std::sync::Arc<parking_lot::Mutex<&'static str>>,
) -> Result<(), String> {
    let server = server_addr(relay);
    let echo = UdpSocket::bind(SocketAddr::new(server.ip(), 0))
        .await
        .map_err(|e| format!("cannot open the local echo socket: {e}"))?;
    let echo_addr = echo.local_addr().map_err(|e| e.to_string())?;
    // The echo lives in a range the policy refuses; exempt exactly this address.
    relay.policy().exempt(echo_addr);
    let echo_task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            let _ = echo.send_to(&buf[..n], from).await;
        }
    });
    let outcome = relay_round_trip(relay, server, echo_addr, &step).await;
    // Whatever the client managed to close, the test leaves no allocation behind.
    relay.server.table.remove_user(SELF_TEST_USER);
    echo_task.abort();
    relay.policy().unexempt(echo_addr);
    outcome
}

async fn relay_round_trip(
    relay: &Relay,
    server: SocketAddr,
    echo: SocketAddr,
    step: &parking_lot::Mutex<&'static str>,
) -> Result<(), String> {
    *step.lock() = "client";
    let conn = UdpSocket::bind(SocketAddr::new(server.ip(), 0))
        .await
        .map_err(|e| format!("cannot open the client socket: {e}"))?;
    let minted = relay.mint(SELF_TEST_USER);
    let client = Client::new(ClientConfig {
        stun_serv_addr: server.to_string(),
        turn_serv_addr: server.to_string(),
        username: minted.username,
        password: minted.password,
        realm: relay.server.creds.realm.clone(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(conn),
        vnet: None,
    })
    .await
    .map_err(|e| format!("TURN client: {e}"))?;
    client
        .listen()
        .await
        .map_err(|e| format!("TURN client: {e}"))?;
    let result = async {
        let allocation = client.allocate().await.map_err(|e| {
            format!("Allocate failed ({e}): check turn.relay_port_min/max and the secret")
        })?;
        // UDP may lose a packet, and the `turn` client drops ChannelData that
        // arrives while its own ChannelBind is still settling: send a few times.
        let mut buf = [0u8; 64];
        let mut echoed = None;
        for _ in 0..ECHO_ATTEMPTS {
            *step.lock() = "send";
            allocation
                .send_to(b"noom-self-test", echo)
                .await
                .map_err(|e| format!("sending through the relay failed: {e}"))?;
            *step.lock() = "receive";
            if let Ok(received) = tokio::time::timeout(ECHO_WAIT, allocation.recv_from(&mut buf)).await {
                echoed = Some(received.map_err(|e| format!("no echo through the relay: {e}"))?);
                break;
            }
        }
        let Some((n, from)) = echoed else {
            return Err("the echo never came back through the relay: is the relay port range (turn.relay_port_min..max) blocked?".to_string());
        };
        let _ = allocation.close().await;
        if &buf[..n] == b"noom-self-test" && from == echo {
            Ok(())
        } else {
            Err("the relay returned something else than the echo".to_string())
        }
    }
    .await;
    let _ = client.close().await;
    result
}
