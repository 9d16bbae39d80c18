//! Bad input: every request answers junk with an error ack, and junk on one
//! connection never disturbs another.

use std::time::Duration;

use noom::client::Client;
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_arguments_get_error_acks_and_the_server_keeps_serving() {
    let s = TestServer::start().await;
    let a = s.client().await;
    a.enter("ok").await;
    let huge = json!("x".repeat(20_000));
    let junk: Vec<Value> = vec![
        json!(null),
        json!(1.5),
        json!(true),
        json!([]),
        json!({}),
        json!([[[[[]]]]]),
        json!({ "room": "ok" }),
        huge.clone(),
    ];
    let events = [
        "nickname",
        "enter_room",
        "leave_room",
        "new_message",
        "history",
        "join_call",
        "leave_call",
        "offer",
        "answer",
        "ice",
    ];
    for event in events {
        a.err(event, &[], "invalid_argument").await;
        for j in &junk {
            let ack = a.req(event, &[j.clone(), j.clone()]).await;
            assert_eq!(ack["ok"], false, "{event}({j}) must fail: {ack}");
            let code = ack["error"]["code"].as_str().unwrap_or_default();
            assert!(
                [
                    "invalid_argument",
                    "invalid_room",
                    "invalid_nickname",
                    "invalid_message"
                ]
                .contains(&code),
                "{event}({j}): {ack}"
            );
        }
    }
    // Unknown events are ignored; the connection stays usable.
    a.c.emit("no_such_event", &[json!(1)]).unwrap();
    a.say("ok", "still here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_and_oversized_payloads_only_close_their_own_connection() {
    let s = TestServer::start_with(|c| c.limits.max_payload_bytes = 16 * 1024).await;
    let mut bystander = s.client().await;
    bystander.enter("calm").await;

    let mut bad = s.client().await;
    bad.c.send_raw("42[\"new_message\", {{{{".into()).unwrap();
    bad.c.send_raw("4zz".into()).unwrap();
    let mut big = s.client().await;
    big.c
        .emit(
            "new_message",
            &[json!("calm"), json!("y".repeat(64 * 1024))],
        )
        .unwrap();
    big.event("disconnect").await;
    // Whatever the malformed packets did to `bad`, the others are untouched.
    let _ = bad
        .c
        .wait_event("disconnect", Duration::from_millis(500))
        .await;
    bystander.say("calm", "fine").await;
    bystander.no_event("disconnect").await;
    let (status, _) = get_json(&s.url("/healthz")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_is_refused_then_disconnected() {
    let s = TestServer::start_with(|c| {
        c.limits.events_per_sec = 5;
        c.limits.events_burst = 5;
    })
    .await;
    let mut flooder = s.client().await;
    let mut calm = s.client().await;
    let mut codes = Vec::new();
    for _ in 0..8 {
        let ack = flooder.req("rooms", &[]).await;
        codes.push(ack["ok"].as_bool().unwrap_or(false));
        if ack["ok"] == false {
            assert_eq!(ack["error"]["code"], "rate_limited");
        }
    }
    assert_eq!(
        codes.iter().filter(|ok| **ok).count(),
        5,
        "burst of 5 then refused: {codes:?}"
    );
    // Keep ignoring the refusals: the server hangs up.
    for _ in 0..10 {
        let _ = flooder.c.emit("rooms", &[]);
    }
    flooder.event("disconnect").await;
    calm.ok("rooms", &[]).await;
    calm.no_event("disconnect").await;
    // The limit refills over time.
    let again = s.client().await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    again.ok("rooms", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_handshakes_get_a_fresh_session() {
    let s = TestServer::start().await;
    for auth in [
        json!(null),
        json!(5),
        json!({ "session": 5 }),
        json!({ "session": "x".repeat(500) }),
        json!([1]),
    ] {
        let mut c = Client::connect(&s.base, Some(auth.clone()))
            .await
            .expect("connects");
        let session = c.wait_event("session", WAIT).await.expect("session");
        assert_eq!(
            session.args[0]["session"].as_str().map(str::len),
            Some(64),
            "{auth}"
        );
    }
}
