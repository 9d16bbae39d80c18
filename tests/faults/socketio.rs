//! Socket.IO under abuse: binary attachments that are never finished, and
//! clients that never read what they are sent.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::common::{TestServer, connect};
use crate::env::{Binary, Spawn, measure, measure_under_abuse, metric, within_twice};

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A raw WebSocket Socket.IO connection, past its CONNECT. `rcvbuf`: the
/// socket's receive buffer, in bytes (small: the server's data backs up fast).
async fn raw(base: &str, rcvbuf: Option<u32>) -> Ws {
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let tcp = socket.connect(addr).await.unwrap();
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    let open = ws.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().starts_with('0'), "{open:?}");
    ws.send(Frame::text("40")).await.unwrap();
    loop {
        let frame = ws.next().await.unwrap().unwrap();
        if frame.to_text().unwrap_or("").starts_with("40") {
            return ws;
        }
    }
}

/// Reads until the server closes the connection; false if it stays open for `wait`.
async fn closed_by_server(ws: &mut Ws, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Frame::Close(_)))) => return true,
            Ok(Some(Ok(_))) => continue,
            Err(_) => return false,
        }
    }
}

/// Finding 5: a client that announces binary attachments and sends large
/// frames without finishing the packet is closed once it has sent more than
/// one packet may carry (64 KiB), and the memory comes back when it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_binary_attachments_are_bounded() {
    // The bound under test is the configured packet size, set here to 64 KiB.
    let server = Binary::start(Spawn {
        env: vec![("NOOM_LIMITS_MAX_PAYLOAD_BYTES".into(), "65536".into())],
        ..Spawn::default()
    })
    .await;
    // The contract still holds: a binary payload is refused with invalid_argument.
    let mut one = raw(&server.base, None).await;
    one.send(Frame::text(
        r#"451-0["nickname",{"_placeholder":true,"num":0}]"#,
    ))
    .await
    .unwrap();
    one.send(Frame::binary(vec![1u8; 16])).await.unwrap();
    let ack = loop {
        let text = one.next().await.unwrap().unwrap().into_text().unwrap();
        if let Some(body) = text.strip_prefix("430") {
            break body.to_string();
        }
    };
    assert!(ack.contains("invalid_argument"), "{ack}");

    // Warm the allocator up with ordinary connections, then take a baseline.
    for _ in 0..100 {
        let _ = raw(&server.base, None).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = server.rss();

    // Half the connections announce more attachments than any packet may
    // have, half announce a few but send more bytes than a packet may carry.
    let chunk = vec![7u8; 60_000];
    let mut tasks = Vec::new();
    for i in 0..100 {
        let base = server.base.clone();
        let chunk = chunk.clone();
        let announced = if i % 2 == 0 { 160 } else { 10 };
        tasks.push(tokio::spawn(async move {
            let mut ws = raw(&base, None).await;
            let header =
                format!(r#"45{announced}-["new_message",{{"_placeholder":true,"num":0}}]"#);
            ws.send(Frame::text(header)).await.unwrap();
            // Up to 160 frames of 60 kB (9.6 MB) while the server lets it.
            for _ in 0..announced.min(160) {
                if ws.send(Frame::binary(chunk.clone())).await.is_err() {
                    break;
                }
            }
            closed_by_server(&mut ws, Duration::from_secs(5)).await
        }));
    }
    let mut peak = 0;
    for t in tasks {
        assert!(
            t.await.unwrap(),
            "a connection over the attachment limits stays open"
        );
        peak = peak.max(server.rss());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "attachments: baseline {:.1} MiB, peak {:.1} MiB, after {:.1} MiB",
        mib(baseline),
        mib(peak),
        mib(after)
    );
    assert!(
        peak < baseline + (48 << 20),
        "100 abusive connections took {:.1} MiB",
        mib(peak - baseline)
    );
    assert!(
        after < baseline + (24 << 20),
        "{:.1} MiB still held after they closed",
        mib(after.saturating_sub(baseline))
    );
    // And the server still serves.
    let c = connect(&server.base, None).await;
    c.enter("after").await;
}

/// Finding 6: a WebSocket client that never reads is disconnected once its
/// outgoing data has waited `limits.slow_consumer_secs`, counted in
/// `/metrics`; the others in its room are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected() {
    let server = TestServer::start_with(|c| {
        c.limits.slow_consumer_secs = 2;
        c.limits.events_per_sec = 10_000;
        c.limits.events_burst = 10_000;
    })
    .await;
    let quiet = measure(&server.base, 5).await;
    let mut watcher = connect(&server.base, None).await;
    watcher.enter("flood").await;
    let mut victim = raw(&server.base, Some(4096)).await;
    victim
        .send(Frame::text(r#"420["enter_room","flood"]"#))
        .await
        .unwrap();
    // Its `welcome` tells who it is; from here on it never reads again.
    let welcome = watcher.event("welcome").await;
    let victim_id = welcome.args[1]["id"].as_str().unwrap().to_string();

    let text: String = "😀".repeat(2000);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut spammers = Vec::new();
    for _ in 0..3 {
        let (base, text, stop) = (server.base.clone(), text.clone(), stop.clone());
        spammers.push(tokio::spawn(async move {
            let c = connect(&base, None).await;
            c.enter("flood").await;
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.say("flood", &text).await;
                sent += 1;
            }
            sent
        }));
    }
    let started = Instant::now();
    let loaded = measure_under_abuse(&server.base, 5, quiet).await;
    let gone = loop {
        match tokio::time::timeout(Duration::from_secs(1), watcher.c.next_event()).await {
            Ok(Some(e)) if e.name == "bye" && e.args[1]["id"] == json!(victim_id) => {
                break Some(started.elapsed());
            }
            _ if started.elapsed() > Duration::from_secs(20) => break None,
            _ => {}
        }
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for s in spammers {
        sent += s.await.unwrap();
    }
    let gone = gone.unwrap_or_else(|| {
        panic!("the client that never reads is still connected after 20 s ({sent} messages sent)")
    });
    eprintln!("slow consumer gone after {gone:?} ({sent} messages of 8 kB sent)");
    within_twice("a slow consumer in the room", quiet, loaded);
    let count = metric(&server.base, "noom_slow_consumer_disconnects_total").await;
    assert!(count >= 1.0, "{count}");
    // The watcher (who reads) still works.
    watcher.say("flood", "still here").await;
    drop(victim);
}

/// Finding 6: a client that reads, but slower than it asks for data (big
/// history pages at the rate limit, read at 8 KiB/s), is closed once its
/// unsent data passes `limits.outgoing_max_kib`: what the server holds for one
/// connection is bounded in bytes, not in packets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsent_data_per_connection_is_bounded_in_bytes() {
    let server = TestServer::start_with(|c| {
        c.limits.outgoing_max_kib = 512;
        c.limits.slow_consumer_secs = 60;
        c.limits.events_per_sec = 10_000;
        c.limits.events_burst = 10_000;
    })
    .await;
    let filler = connect(&server.base, None).await;
    filler.enter("big").await;
    let text = "😀".repeat(2000);
    for _ in 0..60 {
        filler.say("big", &text).await;
    }
    let mut reader = raw(&server.base, Some(4096)).await;
    let started = Instant::now();
    let mut asked = 0;
    let mut read = 0usize;
    let closed = loop {
        if started.elapsed() > Duration::from_secs(20) {
            break false;
        }
        // Ask for a 480 kB page, then read only 1 kB of answers per 125 ms.
        if asked < 40 {
            let ask = Frame::text(format!(r#"42{asked}["history","big",{{"limit":200}}]"#));
            if reader.send(ask).await.is_err() {
                break true;
            }
            asked += 1;
        }
        tokio::time::sleep(Duration::from_millis(125)).await;
        // Straight from the socket, under the WebSocket layer: 1 kB at a time.
        let mut buf = [0u8; 1024];
        let tcp = reader.get_mut();
        match tokio::time::timeout(
            Duration::from_millis(5),
            tokio::io::AsyncReadExt::read(tcp, &mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => read += n,
            Err(_) => {}
        }
    };
    assert!(
        closed,
        "a reader that cannot keep up is still connected after {:?} ({asked} pages asked, {read} bytes read)",
        started.elapsed()
    );
    assert_eq!(
        metric(&server.base, "noom_slow_consumer_disconnects_total").await,
        1.0
    );
    // Everyone else is fine.
    filler.say("big", "still here").await;
}
