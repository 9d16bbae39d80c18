//! The call half of the contract: joining, leaving and relaying negotiation.

use serde_json::json;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_membership_and_signal_relay() {
    let s = TestServer::start_with(|c| c.limits.call_max = 3).await;
    let mut a = s.client().await;
    let mut b = s.client().await;
    let c = s.client().await;
    let d = s.client().await;
    let stranger = s.client().await;
    for x in [&a, &b, &c, &d] {
        x.enter("standup").await;
    }
    stranger.enter("elsewhere").await;

    stranger
        .err("join_call", &[json!("standup")], "not_in_room")
        .await;
    let ack = a.ok("join_call", &[json!("standup")]).await;
    assert_eq!(ack["peers"], json!([]));
    assert!(ack["iceServers"].is_array());

    let ack = b.ok("join_call", &[json!("standup")]).await;
    assert_eq!(ack["peers"][0]["id"], a.c.sid.as_str());
    let joined = a.event("peer_joined").await;
    assert_eq!(joined.args[0], "standup");
    assert_eq!(joined.args[1]["id"], b.c.sid.as_str());

    // The newcomer offers; the server stamps `from` and relays only to `to`.
    let sdp = json!({ "type": "offer", "sdp": "v=0\r\n" });
    b.ok(
        "offer",
        &[json!({ "to": a.c.sid, "description": sdp, "from": "forged" })],
    )
    .await;
    let offer = a.event("offer").await;
    assert_eq!(
        offer.args[0],
        json!({ "from": b.c.sid, "description": sdp })
    );
    let answer = json!({ "type": "answer", "sdp": "v=0\r\n" });
    a.ok("answer", &[json!({ "to": b.c.sid, "description": answer })])
        .await;
    assert_eq!(b.event("answer").await.args[0]["from"], a.c.sid.as_str());
    let cand = json!({ "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0 });
    a.ok("ice", &[json!({ "to": b.c.sid, "candidate": cand })])
        .await;
    assert_eq!(
        b.event("ice").await.args[0],
        json!({ "from": a.c.sid, "candidate": cand })
    );
    a.ok("ice", &[json!({ "to": b.c.sid, "candidate": null })])
        .await;
    assert_eq!(b.event("ice").await.args[0]["candidate"], json!(null));

    // Only between members of the same call.
    c.err(
        "offer",
        &[json!({ "to": a.c.sid, "description": sdp })],
        "not_in_call",
    )
    .await;
    a.err(
        "offer",
        &[json!({ "to": c.c.sid, "description": sdp })],
        "not_in_call",
    )
    .await;
    a.err(
        "offer",
        &[json!({ "to": "no-such-socket", "description": sdp })],
        "not_in_call",
    )
    .await;
    a.err(
        "offer",
        &[json!({ "to": a.c.sid, "description": sdp })],
        "not_in_call",
    )
    .await;
    a.err("offer", &[json!({ "to": b.c.sid })], "invalid_argument")
        .await;
    a.err(
        "offer",
        &[json!({ "to": b.c.sid, "description": "sdp" })],
        "invalid_argument",
    )
    .await;
    a.err(
        "ice",
        &[json!({ "to": b.c.sid, "candidate": 7 })],
        "invalid_argument",
    )
    .await;
    a.err("answer", &[json!("to b")], "invalid_argument").await;
    a.err("answer", &[], "invalid_argument").await;

    // At most `call_max` participants.
    c.ok("join_call", &[json!("standup")]).await;
    d.err("join_call", &[json!("standup")], "room_full").await;
    // Joining twice is not an error and returns the peers again.
    let again = c.ok("join_call", &[json!("standup")]).await;
    assert_eq!(again["peers"].as_array().unwrap().len(), 2);

    c.ok("leave_call", &[json!("standup")]).await;
    for x in [&mut a, &mut b] {
        let left = x.event("peer_left").await;
        assert_eq!(left.args[1]["id"], c.c.sid.as_str());
        assert_eq!(left.args[2], json!({ "reason": "left" }));
    }
    c.err("leave_call", &[json!("standup")], "not_in_call")
        .await;
    d.ok("join_call", &[json!("standup")]).await;

    // Leaving the room leaves the call.
    d.ok("leave_room", &[json!("standup")]).await;
    for x in [&mut a, &mut b] {
        let left = x.event("peer_left").await;
        assert_eq!(left.args[1]["id"], d.c.sid.as_str());
    }

    // So does a dropped connection.
    b.c.close();
    let left = a.event("peer_left").await;
    assert_eq!(left.args[0], "standup");
    assert_eq!(left.args[1]["id"], b.c.sid.as_str());
    // It may come back: the others may keep its peer connections a moment.
    assert_eq!(left.args[2], json!({ "reason": "disconnected" }));
    let ack = c.ok("join_call", &[json!("standup")]).await;
    assert_eq!(
        ack["peers"],
        json!([{ "id": a.c.sid, "user": a.user, "nickname": a.nickname }])
    );

    // Back after a reconnect, a participant says which socket id it had:
    // the others hear it with its member, and see it in their acks.
    let b2 = connect(&s.url(""), Some(&b.token)).await;
    b2.enter("standup").await;
    for junk in [
        json!({ "was": 7 }),
        json!({ "was": "" }),
        json!({ "was": "x".repeat(65) }),
    ] {
        b2.err("join_call", &[json!("standup"), junk], "invalid_argument")
            .await;
    }
    b2.ok("join_call", &[json!("standup"), json!({ "was": b.c.sid })])
        .await;
    // (Earlier joins are still queued: skip to this one.)
    let joined = a.event_about("peer_joined", &b2.c.sid).await;
    assert_eq!(joined.args[1]["was"], b.c.sid.as_str());
    assert_eq!(joined.args[1]["user"], b.user.as_str());
    let ack = a.ok("join_call", &[json!("standup")]).await;
    let back = ack["peers"]
        .as_array()
        .and_then(|p| p.iter().find(|m| m["id"] == b2.c.sid.as_str()))
        .cloned();
    assert_eq!(back.map(|m| m["was"].clone()), Some(json!(b.c.sid)));
}

/// Raised hands keep their order and reach everyone in the call, newcomers
/// included; a departure takes its hand down. Reactions reach the others,
/// from an allowlist, at most four a second per connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hands_in_order_and_reactions() {
    let s = TestServer::start().await;
    let mut a = s.client().await;
    let mut b = s.client().await;
    let late = s.client().await;
    let watcher = s.client().await;
    for x in [&a, &b, &late, &watcher] {
        x.enter("class").await;
    }
    a.ok("join_call", &[json!("class")]).await;
    let joined = b.ok("join_call", &[json!("class")]).await;
    let a_id = joined["peers"][0]["id"].as_str().unwrap().to_string();
    let joined = late.ok("join_call", &[json!("class")]).await;
    let b_id = joined["peers"][1]["id"].as_str().unwrap().to_string();
    late.ok("leave_call", &[json!("class")]).await;

    // Only call participants raise hands; `raised` is a boolean.
    watcher
        .err(
            "raise_hand",
            &[json!("class"), json!({ "raised": true })],
            "not_in_call",
        )
        .await;
    for bad in [json!({}), json!({ "raised": "yes" }), json!(true)] {
        b.err("raise_hand", &[json!("class"), bad], "invalid_argument")
            .await;
    }
    // B raises first, then A: that order, for everyone.
    let ack = b
        .ok("raise_hand", &[json!("class"), json!({ "raised": true })])
        .await;
    assert_eq!(ack["hands"], json!([b_id]));
    assert_eq!(a.event("hands").await.args[1]["hands"], json!([b_id]));
    a.ok("raise_hand", &[json!("class"), json!({ "raised": true })])
        .await;
    assert_eq!(b.event("hands").await.args[1]["hands"], json!([b_id, a_id]));
    // Raising twice changes nothing.
    let again = a
        .ok("raise_hand", &[json!("class"), json!({ "raised": true })])
        .await;
    assert_eq!(again["hands"], json!([b_id, a_id]));
    // ...and is not announced: the next `hands` B gets is A's lowering.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    a.ok("raise_hand", &[json!("class"), json!({ "raised": false })])
        .await;
    assert_eq!(b.event("hands").await.args[1]["hands"], json!([b_id]));
    // A hand goes up or down at most four times a second.
    a.err(
        "raise_hand",
        &[json!("class"), json!({ "raised": true })],
        "rate_limited",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    a.ok("raise_hand", &[json!("class"), json!({ "raised": true })])
        .await;
    assert_eq!(b.event("hands").await.args[1]["hands"], json!([b_id, a_id]));
    // A newcomer learns them with its join.
    let joined = late.ok("join_call", &[json!("class")]).await;
    assert_eq!(joined["hands"], json!([b_id, a_id]));
    // B leaves the call: its hand goes with it.
    b.ok("leave_call", &[json!("class")]).await;
    let joined = watcher.ok("join_call", &[json!("class")]).await;
    assert_eq!(joined["hands"], json!([a_id]));

    // Reactions: to the others, from the allowlist, throttled.
    watcher.ok("leave_call", &[json!("class")]).await;
    watcher
        .err(
            "reaction",
            &[json!("class"), json!({ "emoji": "👍" })],
            "not_in_call",
        )
        .await;
    for bad in [
        json!({ "emoji": "<b>" }),
        json!({ "emoji": 1 }),
        json!("👍"),
    ] {
        a.err("reaction", &[json!("class"), bad], "invalid_argument")
            .await;
    }
    let mut late = late;
    a.ok("reaction", &[json!("class"), json!({ "emoji": "🎉" })])
        .await;
    let got = late.event("reaction").await;
    assert_eq!(got.args[0], "class");
    assert_eq!(got.args[1], json!({ "from": a_id, "emoji": "🎉" }));
    a.err(
        "reaction",
        &[json!("class"), json!({ "emoji": "👍" })],
        "rate_limited",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    a.ok("reaction", &[json!("class"), json!({ "emoji": "👍" })])
        .await;
}

/// A page whose network changed under it reconnects while the server still
/// holds its old connection: joining the call again with `was` closes that
/// ghost at once (a departure the others hear as `disconnected`), but only
/// a ghost of the same session. `alive` answers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_closes_its_ghost_connection() {
    let s = TestServer::start().await;
    let mut a = s.client().await;
    let mut b = s.client().await;
    let stranger = s.client().await;
    for x in [&a, &b, &stranger] {
        x.enter("moving").await;
        x.ok("join_call", &[json!("moving")]).await;
    }
    a.ok("alive", &[]).await;

    // Someone else claiming b's id closes nothing.
    stranger
        .ok("join_call", &[json!("moving"), json!({ "was": b.c.sid })])
        .await;
    b.no_event("disconnect").await;

    let b2 = connect(&s.url(""), Some(&b.token)).await;
    b2.enter("moving").await;
    let ack = b2
        .ok("join_call", &[json!("moving"), json!({ "was": b.c.sid })])
        .await;
    // Its own ghost is not among its peers; a stranger who claimed to be
    // it is (it is someone else).
    let ids: Vec<&str> = ack["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(!ids.contains(&b.c.sid.as_str()), "{ack}");
    assert!(
        ids.contains(&a.c.sid.as_str()) && ids.contains(&stranger.c.sid.as_str()),
        "{ack}"
    );
    let joined = a.event_about("peer_joined", &b2.c.sid).await;
    assert_eq!(joined.args[1]["was"], b.c.sid.as_str());
    b.event("disconnect").await;
    let left = a.event("peer_left").await;
    assert_eq!(left.args[1]["id"], b.c.sid.as_str());
    assert_eq!(left.args[2], json!({ "reason": "disconnected" }));
    let bye = a.event("bye").await;
    assert_eq!(bye.args[1]["id"], b.c.sid.as_str());
    assert_eq!(bye.args[3], json!({ "reason": "disconnected" }));
}
