//! The relay as the rest of the server sees it: `iceServers` in `join_call`,
//! `/healthz`, the self-test endpoint, `/metrics`.

use std::sync::Arc;

use noom::client::Client;
use serde_json::{Value, json};
use tokio::net::UdpSocket;
use turn::client::{Client as TurnClient, ClientConfig};
use webrtc_util::Conn;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_call_hands_out_working_time_limited_credentials() {
    let r = start(allow_loopback).await;
    let mut c = Client::connect(&r.base, None).await.unwrap();
    let session = c.wait_event("session", raw_wait()).await.unwrap();
    let user = session.args[0]["user"].as_str().unwrap().to_string();
    c.request("enter_room", &[json!("relay")]).await.unwrap();
    let ack = c.request("join_call", &[json!("relay")]).await.unwrap();
    let servers = ack["iceServers"].as_array().unwrap();
    let port = r.turn.port();
    assert_eq!(
        servers[0]["urls"],
        json!([format!("stun:127.0.0.1:{port}")])
    );
    assert_eq!(
        servers[1]["urls"],
        json!([
            format!("turn:127.0.0.1:{port}?transport=udp"),
            format!("turn:127.0.0.1:{port}?transport=tcp")
        ])
    );
    let username = servers[1]["username"].as_str().unwrap().to_string();
    let (expiry, for_user) = username.split_once(':').unwrap();
    assert_eq!(
        for_user, user,
        "credentials name the session's public user id"
    );
    let ttl = expiry.parse::<u64>().unwrap() as i64 - chrono_now();
    assert!((590..=600).contains(&ttl), "short-lived: {ttl} s");
    let credential = servers[1]["credential"].as_str().unwrap().to_string();

    // The credentials work with an independent TURN client.
    let peer = echo_peer().await;
    let client = TurnClient::new(ClientConfig {
        stun_serv_addr: r.turn.to_string(),
        turn_serv_addr: r.turn.to_string(),
        username,
        password: credential,
        realm: REALM.into(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()),
        vnet: None,
    })
    .await
    .unwrap();
    client.listen().await.unwrap();
    let relay = client.allocate().await.unwrap();
    relay.send_to(b"hello", peer).await.unwrap();
    let mut buf = [0u8; 16];
    let (n, _) = tokio::time::timeout(raw_wait(), relay.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"hello");

    // The relay counts a packet just after sending it: the echo can arrive first.
    let counted = |a: &noom::relay::AllocationInfo| {
        a.user == user && a.bytes_to_peers >= 5 && a.bytes_to_client >= 5
    };
    let mut allocations = r.running.relay().unwrap().allocations();
    for _ in 0..100 {
        if allocations.iter().any(counted) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        allocations = r.running.relay().unwrap().allocations();
    }
    assert!(allocations.iter().any(counted), "{allocations:?}");
    relay.close().await.unwrap();
    client.close().await.unwrap();
}

fn raw_wait() -> std::time::Duration {
    std::time::Duration::from_secs(5)
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_self_test_and_metrics_report_the_relay() {
    let r = start(|_| {}).await;
    let test: Value = reqwest::get(format!("{}/api/relay/self-test", r.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(test["ok"], true, "{test}");
    let health: Value = reqwest::get(format!("{}/healthz", r.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["relay"]["status"], "ok", "{health}");
    let metrics = reqwest::get(format!("{}/metrics", r.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("noom_relay_up 1"), "{metrics}");
    assert!(
        metrics.contains("noom_relay_allocations_total"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_cannot_start_is_reported_and_chat_keeps_working() {
    let taken = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::TempDir::new().unwrap();
    let running = crate::common::start_in(dir.path(), |c| {
        c.turn.listen = format!("127.0.0.1:{port}");
    })
    .await;
    let base = format!("http://{}", running.http_addr());
    let resp = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(resp.status(), 503);
    let health: Value = resp.json().await.unwrap();
    assert_eq!(health["relay"]["status"], "failing");
    assert!(
        health["relay"]["detail"]
            .as_str()
            .unwrap()
            .contains(&port.to_string()),
        "{health}"
    );
    let c = Client::connect(&base, None).await.unwrap();
    c.request("enter_room", &[json!("still")]).await.unwrap();
    let ack = c.request("join_call", &[json!("still")]).await.unwrap();
    assert_eq!(ack["iceServers"], json!([]));
    running.shutdown().await.unwrap();
}
