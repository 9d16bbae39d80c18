//! The web server under abuse: slow and silent clients, many connections from
//! one address, running out of file descriptors, and the CSP header.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::TestServer;
use crate::env::{
    Binary, Spawn, closed_within, measure, measure_under_abuse, metric, within_twice,
};

/// A TCP connection to `addr` from the loopback address `from`.
async fn connect_from(from: &str, addr: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().unwrap())?;
    socket.connect(addr).await
}

/// Finding 4: a connection that sends nothing, one that sends its head a byte
/// at a time, one that sends its body slowly, and an idle kept-alive one
/// are all closed after their timeouts; meanwhile a normal visitor is served
/// as fast as when it is quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_http_clients_are_closed() {
    let server = TestServer::start_with(|c| {
        c.server.header_timeout_secs = 1;
        c.server.body_timeout_secs = 2;
    })
    .await;
    let addr = server.addr();
    let quiet = measure(&server.base, 5).await;

    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(connect_from("127.0.0.2", addr).await.unwrap());
    }
    let mut dribble = connect_from("127.0.0.2", addr).await.unwrap();
    let dribbler = tokio::spawn(async move {
        let started = Instant::now();
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if dribble.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if started.elapsed() > Duration::from_secs(10) {
                break;
            }
        }
        started.elapsed()
    });
    let mut slow_body = connect_from("127.0.0.2", addr).await.unwrap();
    slow_body
        .write_all(
            b"POST /admin/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\npassword=",
        )
        .await
        .unwrap();
    let body_started = Instant::now();
    let body_writer = tokio::spawn(async move {
        for _ in 0..100 {
            if slow_body.write_all(b"a").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(1), slow_body.read_to_end(&mut answer)).await;
        answer
    });
    let mut kept = connect_from("127.0.0.2", addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    let loaded = measure_under_abuse(&server.base, 5, quiet).await;
    within_twice("slow HTTP clients", quiet, loaded);

    for (i, s) in silent.iter_mut().enumerate() {
        assert!(
            closed_within(s, Duration::from_secs(3)).await,
            "silent connection {i} still open"
        );
    }
    assert!(
        closed_within(&mut kept, Duration::from_secs(3)).await,
        "idle keep-alive still open"
    );
    let dribbled = dribbler.await.unwrap();
    assert!(
        dribbled < Duration::from_secs(4),
        "a head sent a byte at a time was accepted for {dribbled:?}"
    );
    let answer = body_writer.await.unwrap();
    assert!(
        body_started.elapsed() < Duration::from_secs(6),
        "a slow body was read for {:?}",
        body_started.elapsed()
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "slow body answered: {answer}"
    );
    assert!(metric(&server.base, "noom_http_timeouts_total").await >= 100.0);
}

/// Finding 4: one address cannot hold more than `server.connections_per_ip`
/// connections; others keep being served at the usual speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_capped() {
    let server = TestServer::start_with(|c| c.server.connections_per_ip = 50).await;
    let addr = server.addr();
    let quiet = measure(&server.base, 5).await;
    let mut held = Vec::new();
    for _ in 0..80 {
        held.push(connect_from("127.0.0.2", addr).await.unwrap());
    }
    let mut closed = 0;
    for s in held.iter_mut() {
        if closed_within(s, Duration::from_millis(100)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 30, "connections over the cap are closed at once");
    let loaded = measure_under_abuse(&server.base, 5, quiet).await;
    within_twice("many connections from one address", quiet, loaded);
    assert_eq!(
        metric(&server.base, "noom_connections_refused_total").await,
        30.0
    );
    // Closing them frees the address's quota.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from("127.0.0.2", addr).await.unwrap();
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    again.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Finding 3: at the open-files limit, the accept loops (HTTP and TURN over
/// TCP) pause instead of spinning, and the server recovers once descriptors
/// are free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_does_not_spin() {
    let server = Binary::start(Spawn {
        nofile: Some(128),
        ..Spawn::default()
    })
    .await;
    let mut flood = Vec::new();
    for port in [server.turn, server.http] {
        for _ in 0..200 {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)).await {
                flood.push(s);
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.cpu();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = server.cpu() - before;
    assert!(
        used < Duration::from_millis(500),
        "the server burnt {used:?} of CPU in 2 s while out of descriptors"
    );
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/healthz", server.base)).await
            && r.status().as_u16() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery after the flood");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Finding 11: pages may connect only to their own origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csp_allows_connections_only_to_the_server_itself() {
    let server = TestServer::start().await;
    for path in ["/", "/r/lobby", "/admin/login"] {
        let resp = reqwest::get(server.url(path)).await.unwrap();
        let csp = resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        let connect = csp
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("connect-src"))
            .expect("a connect-src directive");
        assert_eq!(connect, "connect-src 'self'", "{path}: {csp}");
    }
}
