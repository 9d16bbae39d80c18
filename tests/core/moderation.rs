//! Room moderation through real connections: the creator is the host; the
//! host mutes, removes, hands over, locks and keeps a lobby; everyone else
//! sees it through the contract's events, and nothing else can do it.

use serde_json::{Value, json};

use crate::common::{Connected, TestServer, connect, start_in};

/// The socket id of `c` in `room`, from the member list of its entry ack.
fn my_id(c: &Connected, ack: &Value) -> String {
    ack["members"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["user"] == c.user.as_str()))
        .and_then(|m| m["id"].as_str())
        .expect("own member entry")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_mutes_removes_and_hands_the_room_over() {
    let s = TestServer::start().await;
    let mut a = s.client().await;
    let mut b = s.client().await;
    let ack = a.enter("town").await;
    assert_eq!(ack["host"], a.user.as_str(), "the creator is the host");
    assert_eq!(
        (ack["locked"].clone(), ack["lobby"].clone()),
        (json!(false), json!(false))
    );
    let a_id = my_id(&a, &ack);
    let ack = b.enter("town").await;
    assert_eq!(ack["host"], a.user.as_str(), "the others see who hosts");
    let b_id = my_id(&b, &ack);

    // Only the host; junk is refused with a clear code.
    b.err("mute", &[json!("town"), json!({ "to": a_id })], "not_host")
        .await;
    b.err(
        "room_settings",
        &[json!("town"), json!({ "locked": true })],
        "not_host",
    )
    .await;
    for (event, opts) in [
        ("remove", json!({ "to": b_id, "from": "everywhere" })),
        ("remove", json!({ "to": 5, "from": "call" })),
        ("mute", json!({})),
        ("room_settings", json!({})),
        ("room_settings", json!({ "locked": "yes" })),
        ("admit", json!({ "to": b_id })),
    ] {
        a.err(event, &[json!("town"), opts], "invalid_argument")
            .await;
    }
    a.err(
        "set_host",
        &[json!("town"), json!({ "to": "AAAAAAAAAAAAAAAA" })],
        "not_in_room",
    )
    .await;
    a.err(
        "mute",
        &[json!("elsewhere"), json!({ "to": b_id })],
        "not_in_room",
    )
    .await;

    // Mute: asked of the participant, who stays free to unmute.
    a.ok("join_call", &[json!("town")]).await;
    b.err("mute", &[json!("town"), json!({ "to": b_id })], "not_host")
        .await;
    a.err(
        "mute",
        &[json!("town"), json!({ "to": b_id })],
        "not_in_call",
    )
    .await;
    b.ok("join_call", &[json!("town")]).await;
    a.ok("mute", &[json!("town"), json!({ "to": b_id })]).await;
    let e = b.event("muted").await;
    assert_eq!(e.args[0], "town");
    assert_eq!(e.args[1]["by"]["nickname"], a.nickname.as_str());

    // Out of the call: the others see the participant leave; the room stays.
    a.ok(
        "remove",
        &[json!("town"), json!({ "to": b_id, "from": "call" })],
    )
    .await;
    let e = b.event("removed").await;
    assert_eq!(e.args[1]["from"], "call");
    let e = a.event("peer_left").await;
    assert_eq!(e.args[1]["id"], b_id.as_str());
    b.say("town", "still here").await;
    b.ok("join_call", &[json!("town")]).await;
    a.event("peer_joined").await;

    // Handing over: everyone hears it, and the old host is an ordinary member.
    a.ok("set_host", &[json!("town"), json!({ "to": b_id })])
        .await;
    let b_user = b.user.clone();
    for c in [&mut a, &mut b] {
        let e = c.event("room_settings").await;
        assert_eq!(e.args[1]["host"], b_user.as_str());
    }
    a.err("mute", &[json!("town"), json!({ "to": b_id })], "not_host")
        .await;
    b.err(
        "remove",
        &[json!("town"), json!({ "to": b_id, "from": "room" })],
        "invalid_argument",
    )
    .await;

    // Out of the room: every tab of that session, for `rooms.removal_secs`.
    let a2 = connect(&s.url(""), Some(&a.token)).await;
    a2.enter("town").await;
    b.ok(
        "remove",
        &[json!("town"), json!({ "to": a_id, "from": "room" })],
    )
    .await;
    let e = a.event("removed").await;
    assert_eq!(e.args[1]["from"], "room");
    assert!(e.args[1]["until"].as_i64().is_some());
    let e = b.event("peer_left").await;
    assert_eq!(e.args[1]["id"], a_id.as_str());
    a.err(
        "new_message",
        &[json!("town"), json!("hello?")],
        "not_in_room",
    )
    .await;
    a2.err(
        "new_message",
        &[json!("town"), json!("hello?")],
        "not_in_room",
    )
    .await;
    let ack = a.err("enter_room", &[json!("town")], "removed").await;
    assert!(
        ack["error"]["message"].as_str().unwrap().contains("60 min"),
        "{ack}"
    );
    // A reload is the same session: still out.
    let reloaded = connect(&s.url(""), Some(&a.token)).await;
    reloaded
        .err("enter_room", &[json!("town")], "removed")
        .await;
    let (status, room) = crate::common::get_json(&s.url("/api/rooms")).await;
    assert_eq!(status, 200);
    assert_eq!(room[0]["count"], 1, "{room}");

    // Still out after a restart.
    let dir = s.stop().await;
    let running = start_in(dir.path(), |_| {}).await;
    let base = format!("http://{}", running.http_addr());
    let again = connect(&base, Some(&a.token)).await;
    again.err("enter_room", &[json!("town")], "removed").await;
    let host = connect(&base, Some(&b.token)).await;
    assert_eq!(host.enter("town").await["host"], b.user.as_str());
    running.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_room_and_a_lobby_keep_newcomers_out_until_let_in() {
    let s = TestServer::start().await;
    let mut a = s.client().await;
    let mut b = s.client().await;
    a.enter("club").await;
    b.enter("club").await;
    let ack = a
        .ok("room_settings", &[json!("club"), json!({ "locked": true })])
        .await;
    assert_eq!(
        (ack["locked"].clone(), ack["lobby"].clone()),
        (json!(true), json!(false))
    );
    let e = b.event("room_settings").await;
    assert_eq!(
        e.args[1],
        json!({ "host": a.user, "locked": true, "lobby": false })
    );

    // Nobody new; members come back (another tab, a reload).
    let c = s.client().await;
    c.err("enter_room", &[json!("club")], "room_locked").await;
    b.ok("leave_room", &[json!("club")]).await;
    b.enter("club").await;
    let b2 = connect(&s.url(""), Some(&b.token)).await;
    b2.enter("club").await;

    // The lobby: a newcomer waits, the host sees it and decides.
    a.ok(
        "room_settings",
        &[json!("club"), json!({ "locked": false, "lobby": true })],
    )
    .await;
    assert_eq!(a.event("lobby").await.args[1]["waiting"], json!([]));
    let mut c = s.client().await;
    c.err("enter_room", &[json!("club")], "in_lobby").await;
    let e = a.event("lobby").await;
    let waiting = &e.args[1]["waiting"];
    assert_eq!(waiting.as_array().map(Vec::len), Some(1), "{waiting}");
    assert_eq!(waiting[0]["nickname"], c.nickname.as_str());
    let c_id = waiting[0]["id"].as_str().unwrap().to_string();
    b.err(
        "admit",
        &[json!("club"), json!({ "to": c_id, "admit": true })],
        "not_host",
    )
    .await;
    c.err(
        "new_message",
        &[json!("club"), json!("let me in")],
        "not_in_room",
    )
    .await;
    a.ok(
        "admit",
        &[json!("club"), json!({ "to": c_id, "admit": false })],
    )
    .await;
    assert_eq!(
        c.event("admission").await.args[1],
        json!({ "admitted": false })
    );
    assert_eq!(a.event("lobby").await.args[1]["waiting"], json!([]));
    c.err("enter_room", &[json!("club")], "in_lobby").await;
    a.event("lobby").await;
    // A host who enters (again) finds the waiting list in the ack.
    let a2 = connect(&s.url(""), Some(&a.token)).await;
    let ack = a2.enter("club").await;
    assert_eq!(ack["waiting"][0]["id"], c_id.as_str());
    assert_eq!(
        b2.enter("club").await["waiting"],
        json!([]),
        "only the host sees it"
    );
    a.ok(
        "admit",
        &[json!("club"), json!({ "to": c_id, "admit": true })],
    )
    .await;
    assert_eq!(
        c.event("admission").await.args[1],
        json!({ "admitted": true })
    );
    assert_eq!(a.event("lobby").await.args[1]["waiting"], json!([]));
    c.enter("club").await;
    a.err(
        "admit",
        &[json!("club"), json!({ "to": c_id, "admit": true })],
        "not_in_room",
    )
    .await;

    // Someone who gives up leaves the lobby.
    let d = s.client().await;
    d.err("enter_room", &[json!("club")], "in_lobby").await;
    assert_eq!(
        a.event("lobby").await.args[1]["waiting"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    d.c.close();
    assert_eq!(a.event("lobby").await.args[1]["waiting"], json!([]));

    // Turning the lobby off lets in whoever waits.
    let mut e = s.client().await;
    e.err("enter_room", &[json!("club")], "in_lobby").await;
    a.ok("room_settings", &[json!("club"), json!({ "lobby": false })])
        .await;
    assert_eq!(
        e.event("admission").await.args[1],
        json!({ "admitted": true })
    );
    e.enter("club").await;

    // A lock outlives a restart; those let in before come back.
    a.ok("room_settings", &[json!("club"), json!({ "locked": true })])
        .await;
    let dir = s.stop().await;
    let running = start_in(dir.path(), |_| {}).await;
    let base = format!("http://{}", running.http_addr());
    let stranger = connect(&base, None).await;
    stranger
        .err("enter_room", &[json!("club")], "room_locked")
        .await;
    for token in [&a.token, &b.token, &c.token] {
        let back = connect(&base, Some(token)).await;
        let ack = back.enter("club").await;
        assert_eq!(ack["locked"], true);
    }
    running.shutdown().await.expect("shutdown");
}

/// A removal lasts `rooms.removal_secs`, then the session may enter again;
/// one connection waits in no more lobbies than it may be in rooms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_ends_and_lobbies_are_bounded_per_connection() {
    let s = TestServer::start_with(|c| {
        c.rooms.removal_secs = 1;
        c.limits.rooms_per_connection = 2;
    })
    .await;
    let host = s.client().await;
    let guest = s.client().await;
    host.enter("brief").await;
    let ack = guest.enter("brief").await;
    let guest_id = my_id(&guest, &ack);
    host.ok(
        "remove",
        &[json!("brief"), json!({ "to": guest_id, "from": "room" })],
    )
    .await;
    guest.err("enter_room", &[json!("brief")], "removed").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    guest.enter("brief").await;
    guest.ok("leave_room", &[json!("brief")]).await;

    // Three rooms with a lobby, each its own host's (a host is in rooms too).
    let mut hosts = Vec::new();
    for room in ["l1", "l2", "l3"] {
        let h = s.client().await;
        h.enter(room).await;
        h.ok("room_settings", &[json!(room), json!({ "lobby": true })])
            .await;
        hosts.push(h);
    }
    let waiter = s.client().await;
    waiter.err("enter_room", &[json!("l1")], "in_lobby").await;
    waiter.err("enter_room", &[json!("l2")], "in_lobby").await;
    waiter.err("enter_room", &[json!("l3")], "room_full").await;
    // Asking again where it already waits is not a new place.
    waiter.err("enter_room", &[json!("l1")], "in_lobby").await;
}
