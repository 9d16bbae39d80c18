//! The chat half of the contract: sessions, nicknames, rooms, messages, history.

use serde_json::json;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_gets_session_then_room_list_and_keeps_identity() {
    let s = TestServer::start().await;
    let a = s.client().await;
    assert_eq!(a.token.len(), 64, "token is 32 random bytes in hex");
    assert!(!a.user.is_empty() && a.user != a.token);
    assert!(
        a.nickname.starts_with("Anon-"),
        "default nickname: {}",
        a.nickname
    );
    assert!(a.rooms.is_empty());

    let again = connect(&s.base, Some(&a.token)).await;
    assert_eq!(
        (again.user.as_str(), again.token.as_str()),
        (a.user.as_str(), a.token.as_str())
    );

    let unknown = connect(&s.base, Some("not-a-real-token")).await;
    assert_ne!(unknown.user, a.user);
    assert_ne!(unknown.token, "not-a-real-token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nickname_is_validated_persisted_and_announced() {
    let s = TestServer::start().await;
    let a = s.client().await;
    let mut b = s.client().await;
    a.enter("lobby").await;
    b.enter("lobby").await;

    let ack = a.ok("nickname", &[json!("  지민 🦀  ")]).await;
    assert_eq!(ack["nickname"], "지민 🦀");
    let update = b.event("member_update").await;
    assert_eq!(update.args[0], "lobby");
    assert_eq!(update.args[1]["nickname"], "지민 🦀");
    assert_eq!(update.args[1]["user"], a.user.as_str());
    assert_eq!(update.args[1]["id"], a.c.sid.as_str());

    a.err("nickname", &[json!("")], "invalid_nickname").await;
    a.err("nickname", &[json!("x".repeat(33))], "invalid_nickname")
        .await;
    a.err("nickname", &[json!("tab\there")], "invalid_nickname")
        .await;
    a.err("nickname", &[json!(42)], "invalid_argument").await;
    a.err("nickname", &[], "invalid_argument").await;

    let back = connect(&s.base, Some(&a.token)).await;
    assert_eq!(back.nickname, "지민 🦀");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entering_and_leaving_rooms_is_announced_with_counts() {
    let s = TestServer::start().await;
    let mut a = s.client().await;
    let b = s.client().await;

    let ack = a.enter("  design review ").await;
    assert_eq!(ack["room"], "design review");
    assert_eq!(ack["count"], 1);
    assert_eq!(ack["members"][0]["id"], a.c.sid.as_str());
    assert_eq!(ack["messages"], json!([]));
    let list = a.event("room_change").await;
    assert_eq!(
        list.args[0],
        json!([{ "name": "design review", "count": 1 }])
    );

    let ack = b.enter("design review").await;
    assert_eq!(ack["count"], 2);
    let ids: Vec<_> = ack["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(a.c.sid), json!(b.c.sid)]);
    let welcome = a.event("welcome").await;
    assert_eq!(welcome.args[0], "design review");
    assert_eq!(welcome.args[1]["id"], b.c.sid.as_str());
    assert_eq!(welcome.args[2], 2);

    // Entering again is fine and not announced twice.
    let ack = b.enter("design review").await;
    assert_eq!(ack["count"], 2);
    a.no_event("welcome").await;

    let rooms = a.ok("rooms", &[]).await;
    assert_eq!(
        rooms["rooms"],
        json!([{ "name": "design review", "count": 2 }])
    );

    b.ok("leave_room", &[json!("design review")]).await;
    let bye = a.event("bye").await;
    assert_eq!(bye.args[0], "design review");
    assert_eq!(bye.args[1]["id"], b.c.sid.as_str());
    assert_eq!(bye.args[2], 1);
    assert_eq!(bye.args[3], json!({ "reason": "left" }));
    b.err("leave_room", &[json!("design review")], "not_in_room")
        .await;

    // A disconnect is a departure too.
    let c = s.client().await;
    c.enter("design review").await;
    a.event("welcome").await;
    c.c.close();
    let bye = a.event("bye").await;
    assert_eq!(bye.args[1]["id"], c.c.sid.as_str());
    assert_eq!(bye.args[2], 1);
    assert_eq!(bye.args[3], json!({ "reason": "disconnected" }));

    a.err("enter_room", &[json!("")], "invalid_room").await;
    a.err("enter_room", &[json!("x".repeat(65))], "invalid_room")
        .await;
    a.err("enter_room", &[json!("new\nline")], "invalid_room")
        .await;
    a.err("enter_room", &[json!(["lobby"])], "invalid_argument")
        .await;
    a.err(
        "enter_room",
        &[json!("lobby"), json!("after")],
        "invalid_argument",
    )
    .await;
    a.err(
        "enter_room",
        &[json!("lobby"), json!({ "after": -1 })],
        "invalid_argument",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_room_refuses_newcomers() {
    let s = TestServer::start_with(|c| {
        c.limits.room_members_max = 2;
        c.limits.rooms_per_connection = 3;
    })
    .await;
    let a = s.client().await;
    let b = s.client().await;
    let c = s.client().await;
    a.enter("small").await;
    b.enter("small").await;
    c.err("enter_room", &[json!("small")], "room_full").await;
    b.ok("leave_room", &[json!("small")]).await;
    c.enter("small").await;

    // One connection cannot collect rooms without bound.
    c.enter("second").await;
    c.enter("third").await;
    c.err("enter_room", &[json!("fourth")], "room_full").await;
    c.enter("third").await;
    c.ok("leave_room", &[json!("second")]).await;
    c.enter("fourth").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_get_contiguous_seqs_and_reach_the_others_only() {
    let s = TestServer::start().await;
    let mut a = s.client().await;
    let mut b = s.client().await;
    let outsider = s.client().await;
    a.ok("nickname", &[json!("Ana")]).await;
    a.enter("general").await;
    b.enter("general").await;

    let m1 = a.say("general", "  hello  ").await;
    assert_eq!(m1["seq"], 1);
    assert_eq!(m1["room"], "general");
    assert_eq!(m1["text"], "hello");
    assert_eq!(m1["nickname"], "Ana");
    assert_eq!(m1["user"], a.user.as_str());
    assert!(m1["ts"].as_i64().unwrap() > 1_600_000_000_000);
    let got = b.event("new_message").await;
    assert_eq!(got.args[0], m1);

    let html = "<img src=x onerror=alert(1)> & <b>bold</b>";
    let m2 = b.say("general", html).await;
    assert_eq!(m2["seq"], 2);
    assert_eq!(a.event("new_message").await.args[0]["text"], html);
    b.no_event("new_message").await;

    let multi = a.say("general", "line one\r\nline two").await;
    assert_eq!(multi["text"], "line one\nline two");
    assert_eq!(b.event("new_message").await.args[0], multi);

    outsider
        .err(
            "new_message",
            &[json!("general"), json!("hi")],
            "not_in_room",
        )
        .await;
    a.err(
        "new_message",
        &[json!("general"), json!("   ")],
        "invalid_message",
    )
    .await;
    a.err(
        "new_message",
        &[json!("general"), json!("x".repeat(2001))],
        "invalid_message",
    )
    .await;
    a.err(
        "new_message",
        &[json!("general"), json!("bell\u{7}")],
        "invalid_message",
    )
    .await;
    a.err("new_message", &[json!("general")], "invalid_argument")
        .await;
    a.err(
        "new_message",
        &[json!("general"), json!({ "text": "hi" })],
        "invalid_argument",
    )
    .await;
    // The longest valid message, in characters that take 3 bytes each.
    let long = "한".repeat(2000);
    assert_eq!(a.say("general", &long).await["seq"], 4);
    assert_eq!(b.event("new_message").await.args[0]["seq"], 4);

    // Without an ack, a message is still delivered.
    a.c.emit("new_message", &[json!("general"), json!("fire and forget")])
        .unwrap();
    let got = b.event("new_message").await;
    assert_eq!(got.args[0]["text"], "fire and forget");
    assert_eq!(got.args[0]["seq"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_by_seq_and_enter_room_resumes_after_last_seq() {
    let s = TestServer::start_with(|c| c.limits.events_burst = 1000).await;
    let a = s.client().await;
    a.enter("log").await;
    for i in 1..=210 {
        a.say("log", &format!("m{i}")).await;
    }

    let b = s.client().await;
    let entered = b.enter("log").await;
    assert_eq!(
        seqs(&entered["messages"]),
        (161..=210).collect::<Vec<_>>(),
        "newest 50 by default"
    );

    let page = b
        .ok(
            "history",
            &[json!("log"), json!({ "before": 71, "limit": 30 })],
        )
        .await;
    assert_eq!(seqs(&page["messages"]), (41..=70).collect::<Vec<_>>());
    let page = b
        .ok("history", &[json!("log"), json!({ "after": 100 })])
        .await;
    assert_eq!(
        seqs(&page["messages"]),
        (101..=150).collect::<Vec<_>>(),
        "oldest 50 after"
    );
    let page = b
        .ok(
            "history",
            &[json!("log"), json!({ "after": 10, "before": 15 })],
        )
        .await;
    assert_eq!(seqs(&page["messages"]), vec![11, 12, 13, 14]);
    let page = b
        .ok("history", &[json!("log"), json!({ "limit": 1000 })])
        .await;
    assert_eq!(
        seqs(&page["messages"]),
        (11..=210).collect::<Vec<_>>(),
        "at most 200"
    );
    let page = b
        .ok("history", &[json!("log"), json!({ "after": 210 })])
        .await;
    assert_eq!(page["messages"], json!([]));
    b.err(
        "history",
        &[json!("log"), json!({ "limit": 0 })],
        "invalid_argument",
    )
    .await;
    b.err(
        "history",
        &[json!("log"), json!({ "before": "10" })],
        "invalid_argument",
    )
    .await;
    b.err("history", &[json!("nowhere")], "invalid_room").await;

    // A client coming back with the last seq it saw gets exactly what it missed.
    let c = s.client().await;
    let resumed = c
        .ok("enter_room", &[json!("log"), json!({ "after": 205 })])
        .await;
    assert_eq!(seqs(&resumed["messages"]), vec![206, 207, 208, 209, 210]);
    let resumed = c
        .ok(
            "enter_room",
            &[json!("log"), json!({ "after": 0, "limit": 3 })],
        )
        .await;
    assert_eq!(seqs(&resumed["messages"]), vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_list_follows_live_counts() {
    let s = TestServer::start().await;
    let mut watcher = s.client().await;
    let a = s.client().await;
    let b = s.client().await;
    a.enter("busy").await;
    b.enter("busy").await;
    a.enter("quiet").await;
    // Coalesced: wait for the list that reflects all three entries.
    let mut last = serde_json::Value::Null;
    for _ in 0..5 {
        last = watcher.event("room_change").await.args[0].clone();
        if last == json!([{ "name": "busy", "count": 2 }, { "name": "quiet", "count": 1 }]) {
            break;
        }
    }
    assert_eq!(
        last,
        json!([{ "name": "busy", "count": 2 }, { "name": "quiet", "count": 1 }])
    );
    let (status, api) = get_json(&s.url("/api/rooms")).await;
    assert_eq!(status, 200);
    assert_eq!(api, last);

    // Once empty, a room with history stays listed while recently active
    // (count 0); one nobody wrote in leaves the list.
    a.say("busy", "hello").await;
    a.c.close();
    b.c.close();
    let mut last = serde_json::Value::Null;
    for _ in 0..5 {
        last = watcher.event("room_change").await.args[0].clone();
        if last == json!([{ "name": "busy", "count": 0 }]) {
            break;
        }
    }
    assert_eq!(last, json!([{ "name": "busy", "count": 0 }]));
}

/// A room created unlisted is in no list (room_change, `rooms`, `GET
/// /api/rooms`), with members or messages, also after a restart; it is
/// entered by its name like any other. `unlisted` on an existing room
/// changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_rooms_stay_out_of_every_list() {
    let s = TestServer::start().await;
    let a = s.client().await;
    a.err(
        "enter_room",
        &[json!("x"), json!({ "unlisted": "yes" })],
        "invalid_argument",
    )
    .await;
    let ack = a
        .ok(
            "enter_room",
            &[json!("secret"), json!({ "unlisted": true })],
        )
        .await;
    assert_eq!(ack["unlisted"], true);
    let b = s.client().await;
    let ack = b.ok("enter_room", &[json!("secret")]).await;
    assert_eq!(
        (ack["count"].clone(), ack["unlisted"].clone()),
        (json!(2), json!(true))
    );
    a.say("secret", "just us").await;
    // A public room beside it, and one that asks too late to be unlisted.
    a.enter("open").await;
    a.say("open", "hi").await;
    let ack = b
        .ok("enter_room", &[json!("open"), json!({ "unlisted": true })])
        .await;
    assert_eq!(ack["unlisted"], false);
    let want = json!([{ "name": "open", "count": 2 }]);
    assert_eq!(a.ok("rooms", &[]).await["rooms"], want);
    assert_eq!(get_json(&s.url("/api/rooms")).await.1, want);

    // After a restart it is still unlisted.
    let dir = s.stop().await;
    let running = start_in(dir.path(), |_| {}).await;
    let base = format!("http://{}", running.http_addr());
    let c = connect(&base, None).await;
    assert!(
        c.ok("rooms", &[]).await["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["name"] != "secret")
    );
    let ack = c.ok("enter_room", &[json!("secret")]).await;
    assert_eq!(ack["unlisted"], true);
    assert_eq!(ack["messages"][0]["text"], "just us");
    assert!(
        get_json(&format!("{base}/api/rooms"))
            .await
            .1
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["name"] != "secret")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_rooms_leave_the_list_and_empty_ones_are_forgotten() {
    let s = TestServer::start_with(|c| {
        c.rooms.active_window_secs = 0;
        c.store.retention_interval_secs = 1;
    })
    .await;
    let a = s.client().await;
    a.enter("fleeting").await;
    assert_eq!(
        a.ok("rooms", &[]).await["rooms"],
        json!([{ "name": "fleeting", "count": 1 }])
    );
    a.ok("leave_room", &[json!("fleeting")]).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(a.ok("rooms", &[]).await["rooms"], json!([]));

    // A room that never held a message is forgotten by the next retention pass;
    // one with history is kept (its seq counter must never restart).
    a.enter("chatty").await;
    a.say("chatty", "keep me").await;
    a.ok("leave_room", &[json!("chatty")]).await;
    let mut status = 0;
    for _ in 0..30 {
        status = get_json(&s.url("/api/rooms/fleeting/messages")).await.0;
        if status == 404 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 404, "idle room without messages is forgotten");
    let (status, kept) = get_json(&s.url("/api/rooms/chatty/messages")).await;
    assert_eq!((status, kept.as_array().map(Vec::len)), (200, Some(1)));
}

/// A room created with a password: nobody reads or enters it without the
/// password (socket or HTTP); a session that gave it once is let in again;
/// guesses are budgeted per address; it survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_rooms_keep_their_history_to_those_who_know() {
    let s = TestServer::start().await;
    let a = s.client().await;
    for bad in [
        json!({ "password": 7 }),
        json!({ "password": "" }),
        json!({ "password": "x".repeat(129) }),
    ] {
        a.err("enter_room", &[json!("vault"), bad], "invalid_argument")
            .await;
    }
    let ack = a
        .ok(
            "enter_room",
            &[json!("vault"), json!({ "password": "open sesame" })],
        )
        .await;
    assert_eq!(ack["protected"], true);
    a.say("vault", "the combination").await;

    let b = s.client().await;
    b.err("enter_room", &[json!("vault")], "password_required")
        .await;
    b.err("history", &[json!("vault")], "password_required")
        .await;
    b.err(
        "enter_room",
        &[json!("vault"), json!({ "password": "guess" })],
        "wrong_password",
    )
    .await;
    // Over HTTP: the header, never the URL.
    let http = reqwest::Client::new();
    let url = s.url("/api/rooms/vault/messages");
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "password_required");
    let resp = http
        .get(&url)
        .header("X-Room-Password", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .get(&url)
        .header("X-Room-Password", "open sesame")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body[0]["text"], "the combination");

    // The right password lets B in and shows the history; after that its
    // session needs it no more.
    let ack = b
        .ok(
            "enter_room",
            &[json!("vault"), json!({ "password": "open sesame" })],
        )
        .await;
    assert_eq!(ack["messages"][0]["text"], "the combination");
    b.ok("leave_room", &[json!("vault")]).await;
    b.ok("enter_room", &[json!("vault")]).await;
    b.ok("history", &[json!("vault")]).await;
    // A password given to an existing room that has none changes nothing.
    a.enter("open").await;
    let ack = b
        .ok(
            "enter_room",
            &[json!("open"), json!({ "password": "mine now" })],
        )
        .await;
    assert_eq!(ack["protected"], false);

    // Five guesses at once from one address, then one every five seconds.
    let c = s.client().await;
    c.err(
        "enter_room",
        &[json!("vault"), json!({ "password": "g1" })],
        "wrong_password",
    )
    .await;
    c.err(
        "enter_room",
        &[json!("vault"), json!({ "password": "g2" })],
        "rate_limited",
    )
    .await;

    // After a restart the room still has its password.
    let dir = s.stop().await;
    let running = start_in(dir.path(), |_| {}).await;
    let base = format!("http://{}", running.http_addr());
    let d = connect(&base, None).await;
    d.err("enter_room", &[json!("vault")], "password_required")
        .await;
    let resp = http
        .get(format!("{base}/api/rooms/vault/messages"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

/// While a room is being created with a password (its hash takes a while),
/// nobody gets in without it: the password is asked before the room exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_slips_into_a_password_room_while_it_is_being_created() {
    let s = TestServer::start().await;
    let a = s.client().await;
    let b = s.client().await;
    // B's first try can reach the server before A's request when the
    // machine is busy: then B created an open room and A joined it (A's ack
    // says so). That round proves nothing, so another room is tried.
    let mut proven = false;
    for round in 0..5 {
        let room = format!("fresh vault {round}");
        let create_args = [json!(room), json!({ "password": "open sesame" })];
        let creating = a.req("enter_room", &create_args);
        let slipping = async {
            // Tries from just after the creator's request until it is answered.
            let mut tries = Vec::new();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            for _ in 0..40 {
                let ack = b.req("enter_room", &[json!(room)]).await;
                let got_in = ack["ok"] == true;
                tries.push(ack);
                if got_in {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            tries
        };
        let (created, tries) = tokio::join!(creating, slipping);
        assert_eq!(created["ok"], true, "{created}");
        if created["protected"] == false {
            // B was first (or both stepped back when they met): the room
            // is open, and B is in it.
            let last = tries.last().cloned().unwrap_or_default();
            assert_eq!(last["ok"], true, "{created} {tries:?}");
            assert_eq!(last["protected"], false, "{last}");
            continue;
        }
        for ack in &tries {
            assert_eq!(ack["ok"], false, "B got in without the password: {ack}");
            assert_eq!(ack["error"]["code"], "password_required", "{ack}");
        }
        b.err("enter_room", &[json!(room)], "password_required")
            .await;
        b.ok(
            "enter_room",
            &[json!(room), json!({ "password": "open sesame" })],
        )
        .await;
        proven = true;
        break;
    }
    assert!(proven, "B reached the server first in every round");
    // Both at the very same moment, many times: whoever wins, B is never
    // inside a room that has a password it did not give.
    for round in 0..12 {
        let room = format!("photo finish {round}");
        let with_password = [json!(room), json!({ "password": "open sesame" })];
        let without = [json!(room)];
        let (created, entered) = tokio::join!(
            a.req("enter_room", &with_password),
            b.req("enter_room", &without),
        );
        assert_eq!(created["ok"], true, "{created}");
        if created["protected"] == true {
            assert_eq!(
                entered["ok"], false,
                "B got in without the password: {entered}"
            );
            b.err("enter_room", &[json!(room)], "password_required")
                .await;
        } else {
            let again = b.req("enter_room", &[json!(room)]).await;
            assert_eq!(again["ok"], true, "{again}");
            assert_eq!(again["protected"], false, "{again}");
        }
    }
}
