//! Each admin action has its effect on real connected clients, through the
//! contract's events, and is refused cleanly when its target does not exist.

use serde_json::json;

use crate::admin::{self, Admin};
use crate::common::{connect, get_json, seqs};

#[tokio::test]
async fn deleting_a_message_removes_it_everywhere() {
    let server = admin::server().await;
    let ana = server.client().await;
    let mut bo = server.client().await;
    ana.enter("lobby").await;
    bo.enter("lobby").await;
    for text in ["one", "two", "three"] {
        ana.say("lobby", text).await;
    }
    let admin = Admin::login(&server).await;
    let (status, body) = admin.delete("/admin/api/rooms/lobby/messages/2").await;
    assert_eq!(status, 200, "{body}");
    let e = bo.event("message_deleted").await;
    assert_eq!(e.args, [json!("lobby"), json!(2)]);

    let (_, history) = get_json(&server.url("/api/rooms/lobby/messages")).await;
    assert_eq!(seqs(&history), [1, 3]);
    let ack = bo.ok("history", &[json!("lobby"), json!({})]).await;
    assert_eq!(seqs(&ack["messages"]), [1, 3]);
    let (_, room) = admin.get("/admin/api/rooms/lobby").await;
    assert_eq!(room["messages"], 2);

    // Twice, or a seq that never was: 404, nothing announced.
    assert_eq!(
        admin.delete("/admin/api/rooms/lobby/messages/2").await.0,
        404
    );
    assert_eq!(
        admin.delete("/admin/api/rooms/lobby/messages/99").await.0,
        404
    );
    assert_eq!(
        admin.delete("/admin/api/rooms/lobby/messages/x").await.0,
        400
    );
    assert_eq!(
        admin.delete("/admin/api/rooms/nowhere/messages/1").await.0,
        404
    );
    bo.no_event("message_deleted").await;

    // Deleting the newest message never lets its seq be handed out again,
    // even across a restart.
    assert_eq!(
        admin.delete("/admin/api/rooms/lobby/messages/3").await.0,
        200
    );
    let dir = server.stop().await;
    let running = crate::common::start_in(dir.path(), |c| {
        c.admin.password_hash = noom::admin::password::hash(admin::PASSWORD).expect("hash");
    })
    .await;
    let base = format!("http://{}", running.http_addr());
    let ana = connect(&base, Some(&ana.token)).await;
    ana.enter("lobby").await;
    assert_eq!(ana.say("lobby", "four").await["seq"], 4);
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn clearing_history_empties_the_room_and_keeps_seqs_growing() {
    let server = admin::server().await;
    let ana = server.client().await;
    let mut bo = server.client().await;
    ana.enter("lobby").await;
    bo.enter("lobby").await;
    for i in 0..5 {
        ana.say("lobby", &format!("m{i}")).await;
    }
    let admin = Admin::login(&server).await;
    let (status, body) = admin.delete("/admin/api/rooms/lobby/messages").await;
    assert_eq!(status, 200);
    assert_eq!(body["messages"], 5);
    assert_eq!(bo.event("history_cleared").await.args, [json!("lobby")]);
    let (_, history) = get_json(&server.url("/api/rooms/lobby/messages")).await;
    assert_eq!(history, json!([]));
    assert_eq!(ana.say("lobby", "after").await["seq"], 6);
    let (_, room) = admin.get("/admin/api/rooms/lobby").await;
    assert_eq!(room["messages"], 1);
}

#[tokio::test]
async fn ending_a_call_tells_its_participants() {
    let server = admin::server().await;
    let mut ana = server.client().await;
    let mut bo = server.client().await;
    let mut cy = server.client().await;
    for c in [&ana, &bo, &cy] {
        c.enter("lobby").await;
    }
    ana.ok("join_call", &[json!("lobby")]).await;
    bo.ok("join_call", &[json!("lobby")]).await;
    let admin = Admin::login(&server).await;
    let (status, body) = admin.post("/admin/api/rooms/lobby/end-call").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["participants"], 2);
    assert_eq!(ana.event("call_ended").await.args, [json!("lobby")]);
    assert_eq!(bo.event("call_ended").await.args, [json!("lobby")]);
    cy.no_event("call_ended").await;
    // Out of the call: signals are refused, and joining again starts afresh.
    ana.err(
        "offer",
        &[json!({ "to": bo.c.sid, "description": { "type": "offer", "sdp": "x" } })],
        "not_in_call",
    )
    .await;
    let (_, room) = admin.get("/admin/api/rooms/lobby").await;
    assert_eq!(room["in_call"], 0);
    let ack = bo.ok("join_call", &[json!("lobby")]).await;
    assert_eq!(ack["peers"], json!([]));
    // Everyone is still in the chat.
    ana.say("lobby", "still chatting").await;
    assert_eq!(admin.post("/admin/api/rooms/quiet/end-call").await.0, 404);
}

#[tokio::test]
async fn disconnecting_a_member_tells_it_why() {
    let server = admin::server().await;
    let mut ana = server.client().await;
    let mut bo = server.client().await;
    ana.enter("lobby").await;
    bo.enter("lobby").await;
    let admin = Admin::login(&server).await;
    let (status, _) = admin
        .post(&format!("/admin/api/connections/{}/disconnect", bo.c.sid))
        .await;
    assert_eq!(status, 200);
    let kicked = bo.event("kicked").await;
    assert_eq!(kicked.args[0]["reason"], "disconnected");
    assert!(
        kicked.args[0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    bo.event("disconnect").await;
    let bye = ana.event("bye").await;
    assert_eq!(bye.args[1]["id"], bo.c.sid.as_str());
    // The same session may come back (this is not a ban).
    let back = connect(&server.base, Some(&bo.token)).await;
    assert_eq!(back.user, bo.user);
    assert_eq!(
        admin
            .post("/admin/api/connections/nosuchsocket/disconnect")
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn closing_a_room_empties_and_unlists_it() {
    let server = admin::server().await;
    let mut ana = server.client().await;
    let mut bo = server.client().await;
    let mut outside = server.client().await;
    ana.enter("lobby").await;
    bo.enter("lobby").await;
    ana.ok("join_call", &[json!("lobby")]).await;
    // The list everyone sees shows the room first (changes within one
    // coalescing window that end where they began are not announced).
    let listed = json!([{ "name": "lobby", "count": 2 }]);
    while outside.event("room_change").await.args[0] != listed {}
    ana.say("lobby", "bye all").await;
    ana.say("lobby", "really").await;
    let admin = Admin::login(&server).await;
    let (status, body) = admin.post("/admin/api/rooms/lobby/close").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["members"], 2);
    assert_eq!(body["messages"], 2);
    assert_eq!(ana.event("room_closed").await.args, [json!("lobby")]);
    assert_eq!(bo.event("room_closed").await.args, [json!("lobby")]);
    // Out of the room: no longer members, the lists no longer show it.
    ana.err(
        "new_message",
        &[json!("lobby"), json!("hello?")],
        "not_in_room",
    )
    .await;
    let (_, rooms) = get_json(&server.url("/api/rooms")).await;
    assert_eq!(rooms, json!([]));
    // The room list pushed to everyone drops it.
    let mut last = json!(null);
    for _ in 0..4 {
        last = outside.event("room_change").await.args[0].clone();
        if last == json!([]) {
            break;
        }
    }
    assert_eq!(last, json!([]));
    let (_, o) = admin.get("/admin/api/overview").await;
    assert_eq!(o["rooms_total"], 0);
    assert_eq!(admin.get("/admin/api/rooms/lobby").await.0, 404);
    // Entering again opens it afresh; seqs keep growing.
    let ack = bo.enter("lobby").await;
    assert_eq!(ack["messages"], json!([]));
    assert_eq!(bo.say("lobby", "new start").await["seq"], 3);
    assert_eq!(admin.post("/admin/api/rooms/nowhere/close").await.0, 404);
    assert_eq!(admin.post("/admin/api/rooms/%01bad/close").await.0, 400);
}

#[tokio::test]
async fn revoking_a_session_ends_its_identity() {
    let server = admin::server().await;
    let mut ana = server.client().await;
    let mut ana_tab2 = connect(&server.base, Some(&ana.token)).await;
    let bo = server.client().await;
    ana.enter("lobby").await;
    bo.enter("lobby").await;
    let admin = Admin::login(&server).await;
    let (status, body) = admin
        .post(&format!("/admin/api/users/{}/revoke", ana.user))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sessions"], 1);
    assert_eq!(body["connections"], 2);
    for c in [&mut ana, &mut ana_tab2] {
        assert_eq!(c.event("kicked").await.args[0]["reason"], "session_revoked");
        c.event("disconnect").await;
    }
    // The old token no longer names that user.
    let again = connect(&server.base, Some(&ana.token)).await;
    assert_ne!(again.user, ana.user);
    assert_ne!(again.token, ana.token);
    // Unknown or malformed users.
    assert_eq!(
        admin
            .post("/admin/api/users/abcdef0123456789/revoke")
            .await
            .0,
        404
    );
    assert_eq!(admin.post("/admin/api/users/not-hex!/revoke").await.0, 400);
    bo.say("lobby", "unaffected").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_call_ends_its_media_sessions() {
    let server = admin::server().await;
    let ana = server.client().await;
    ana.enter("lobby").await;
    ana.ok("join_call", &[json!("lobby")]).await;
    // A session with the media server (an offer is all it takes to open one).
    let mut rtc = str0m::Rtc::builder()
        .set_crypto_provider(std::sync::Arc::new(str0m::crypto::from_feature_flags()))
        .build(std::time::Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(
        str0m::media::MediaKind::Audio,
        str0m::media::Direction::SendOnly,
        None,
        None,
        None,
    );
    let (offer, _) = api.apply().expect("an offer");
    ana.ok(
        "media_join",
        &[
            json!("lobby"),
            json!({ "type": "offer", "sdp": offer.to_sdp_string() }),
        ],
    )
    .await;
    let sfu = server.running.sfu().expect("media server");
    assert_eq!(sfu.stats().await.unwrap().participants, 1);
    let admin = Admin::login(&server).await;
    let (status, _) = admin.post("/admin/api/rooms/lobby/end-call").await;
    assert_eq!(status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while sfu.stats().await.unwrap().participants != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the media session outlived the call"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The admin page moderates any room as its host could, and sees its host,
/// lock and lobby.
#[tokio::test]
async fn the_admin_moderates_a_room_as_its_host_could() {
    let server = admin::server().await;
    let mut ana = server.client().await;
    let mut bo = server.client().await;
    ana.enter("forum").await;
    let ack = bo.enter("forum").await;
    let bo_id = ack["members"][1]["id"].as_str().expect("id").to_string();
    let admin = Admin::login(&server).await;
    let (_, room) = admin.get("/admin/api/rooms/forum").await;
    assert_eq!(room["host"], ana.user.as_str());
    assert_eq!(
        (room["locked"].clone(), room["lobby"].clone()),
        (json!(false), json!(false))
    );

    let path = "/admin/api/rooms/forum/moderation";
    for bad in [
        json!({}),
        json!({ "action": "explode" }),
        json!([1]),
        json!({ "action": "mute" }),
    ] {
        assert_eq!(admin.post_json(path, &bad).await.0, 400, "{bad}");
    }
    assert_eq!(
        admin
            .post_json(
                "/admin/api/rooms/nowhere/moderation",
                &json!({ "action": "room_settings", "locked": true })
            )
            .await
            .0,
        404
    );

    let (status, body) = admin
        .post_json(path, &json!({ "action": "set_host", "to": bo_id }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ana.event("room_settings").await.args[1]["host"],
        bo.user.as_str()
    );

    bo.ok("join_call", &[json!("forum")]).await;
    let (status, _) = admin
        .post_json(path, &json!({ "action": "mute", "to": bo_id }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        bo.event("muted").await.args[1]["by"],
        json!(null),
        "the admin has no member id"
    );

    admin
        .post_json(path, &json!({ "action": "room_settings", "lobby": true }))
        .await;
    let mut cleo = server.client().await;
    cleo.err("enter_room", &[json!("forum")], "in_lobby").await;
    let (_, room) = admin.get("/admin/api/rooms/forum").await;
    assert_eq!(room["lobby"], true);
    let cleo_id = room["waiting"][0]["id"]
        .as_str()
        .expect("waiting")
        .to_string();
    let (status, _) = admin
        .post_json(
            path,
            &json!({ "action": "admit", "to": cleo_id, "admit": true }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(cleo.event("admission").await.args[1]["admitted"], true);
    cleo.enter("forum").await;

    // Removing the host: the longest present member hosts now.
    let (status, _) = admin
        .post_json(
            path,
            &json!({ "action": "remove", "to": bo_id, "from": "room" }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(bo.event("removed").await.args[1]["from"], "room");
    bo.err("enter_room", &[json!("forum")], "removed").await;
    let (_, room) = admin.get("/admin/api/rooms/forum").await;
    assert_eq!(room["host"], ana.user.as_str());
}
