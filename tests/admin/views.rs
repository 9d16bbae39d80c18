//! What the admin sees is what real clients created, over the API and live.

use std::time::Duration;

use serde_json::{Value, json};

use crate::admin::{self, Admin};
use crate::common::{WAIT, seqs};

#[tokio::test]
async fn overview_and_room_show_real_clients() {
    let server = admin::server().await;
    let ana = server.client().await;
    ana.ok("nickname", &[json!("Ana")]).await;
    let bo = server.client().await;
    ana.enter("lobby").await;
    bo.enter("lobby").await;
    bo.enter("quiet").await;
    for i in 0..7 {
        ana.say("lobby", &format!("hello {i}")).await;
    }
    ana.ok("join_call", &[json!("lobby")]).await;
    let admin = Admin::login(&server).await;

    let (status, o) = admin.get("/admin/api/overview").await;
    assert_eq!(status, 200, "{o}");
    assert_eq!(o["version"], noom::VERSION);
    // The node's name, as /healthz gives it.
    let health: Value = reqwest::get(server.url("/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        health["node"].as_str().is_some_and(noom::node::valid_id),
        "{health}"
    );
    assert_eq!(o["node"], health["node"]);
    assert_eq!(o["connections"]["websocket"], 2);
    assert_eq!(o["connections"]["polling"], 0);
    assert_eq!(o["rooms_total"], 2);
    let lobby = &o["rooms"][0];
    assert_eq!(lobby["name"], "lobby");
    assert_eq!(lobby["members"], 2);
    assert_eq!(lobby["in_call"], 1);
    assert_eq!(lobby["messages"], 7);
    assert_eq!(lobby["last_seq"], 7);
    assert!(lobby["last_activity"].as_i64().is_some_and(|t| t > 0));
    assert_eq!(o["rooms"][1]["name"], "quiet");
    assert_eq!(o["rooms"][1]["messages"], 0);
    assert!(
        ["ok", "starting"].contains(&o["relay"]["status"].as_str().unwrap_or("")),
        "{o}"
    );
    let metric = |name: &str| {
        o["metrics"]
            .as_array()
            .and_then(|m| m.iter().find(|s| s["name"] == name))
            .map(|s| s["value"].clone())
    };
    assert_eq!(metric("noom_messages_stored_total"), Some(json!(7.0)));
    assert_eq!(
        metric("noom_connections{transport=\"websocket\"}"),
        Some(json!(2.0))
    );

    let (status, room) = admin.get("/admin/api/rooms/lobby").await;
    assert_eq!(status, 200);
    assert_eq!(room["in_call"], 1);
    let members = room["members"].as_array().expect("members");
    assert_eq!(members.len(), 2);
    let a = &members[0];
    assert_eq!(a["nickname"], "Ana");
    assert_eq!(a["user"], ana.user.as_str());
    assert_eq!(a["id"], ana.c.sid.as_str());
    assert_eq!(a["transport"], "websocket");
    assert_eq!(a["address"], "127.0.0.1");
    assert_eq!(a["in_call"], true);
    assert!(a["connected_since"].as_i64().is_some_and(|t| t > 0));
    assert_eq!(members[1]["id"], bo.c.sid.as_str());
    assert_eq!(members[1]["in_call"], false);

    // History with paging, newest first page, then older.
    let (_, page) = admin.get("/admin/api/rooms/lobby/messages?limit=3").await;
    assert_eq!(seqs(&page), [5, 6, 7]);
    let (_, page) = admin
        .get("/admin/api/rooms/lobby/messages?limit=3&before=5")
        .await;
    assert_eq!(seqs(&page), [2, 3, 4]);
    assert_eq!(page[0]["text"], "hello 1");
    let (status, bad) = admin.get("/admin/api/rooms/lobby/messages?limit=x").await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(admin.get("/admin/api/rooms/nowhere").await.0, 404);
    assert_eq!(admin.get("/admin/api/rooms/nowhere/messages").await.0, 404);

    let (status, metrics) = admin.get("/admin/api/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.as_array().is_some_and(|m| m.len() > 10));
    let (status, relay) = admin.get("/admin/api/allocations").await;
    assert_eq!(status, 200);
    assert!(relay["allocations"].is_array());
}

#[tokio::test]
async fn relay_allocations_are_listed_and_end_on_revoke() {
    use turn::client::{Client as TurnClient, ClientConfig};
    let server = admin::server_with(|c| c.turn.public_ip = "127.0.0.1".into()).await;
    let relay = server.running.relay().cloned().expect("relay");
    let member = server.client().await;
    member.enter("lobby").await;
    let ack = member.ok("join_call", &[json!("lobby")]).await;
    let turn = ack["iceServers"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["username"].is_string()))
        .expect("a TURN server")
        .clone();
    let addr = relay.udp_addr().to_string();
    let username = turn["username"].as_str().expect("username").to_string();
    let password = turn["credential"].as_str().expect("credential").to_string();
    let turn_client = || async {
        let conn = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("udp");
        let client = TurnClient::new(ClientConfig {
            stun_serv_addr: addr.clone(),
            turn_serv_addr: addr.clone(),
            username: username.clone(),
            password: password.clone(),
            realm: "noom".into(),
            software: String::new(),
            rto_in_ms: 0,
            conn: std::sync::Arc::new(conn),
            vnet: None,
        })
        .await
        .expect("turn client");
        client.listen().await.expect("listen");
        client
    };
    let client = turn_client().await;
    let _relayed = client.allocate().await.expect("allocation");

    let admin = Admin::login(&server).await;
    let (_, view) = admin.get("/admin/api/allocations").await;
    let allocations = view["allocations"].as_array().expect("allocations");
    let mine = allocations
        .iter()
        .find(|a| a["user"] == member.user.as_str())
        .unwrap_or_else(|| panic!("the allocation is listed: {view}"));
    assert_eq!(mine["transport"], "udp");
    assert!(
        mine["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1:"))
    );
    assert!(mine["relayed"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(mine["bytes_to_peers"].is_u64() && mine["age_secs"].is_u64());

    // Revoking the user ends its allocations and refuses the credentials it got.
    let (status, _) = admin
        .post(&format!("/admin/api/users/{}/revoke", member.user))
        .await;
    assert_eq!(status, 200);
    let (_, view) = admin.get("/admin/api/allocations").await;
    assert!(
        view["allocations"]
            .as_array()
            .is_some_and(|a| a.iter().all(|a| a["user"] != member.user.as_str())),
        "{view}"
    );
    let again = turn_client().await;
    assert!(
        again.allocate().await.is_err(),
        "revoked credentials still allocate"
    );
    let _ = again.close().await;
    let _ = client.close().await;
}

#[tokio::test]
async fn the_live_namespace_pushes_changes() {
    let server = admin::server().await;
    let admin = Admin::login(&server).await;
    let mut live = admin.live().await.expect("admin namespace");
    let first = live.wait_event("overview", WAIT).await.expect("overview");
    assert_eq!(first.args[0]["rooms_total"], 0);

    let ana = server.client().await;
    ana.enter("lobby").await;
    // The next pushes show the room appear.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let o = live.wait_event("overview", WAIT).await.expect("overview");
        if o.args[0]["rooms"][0]["name"] == "lobby" {
            assert_eq!(o.args[0]["rooms"][0]["members"], 1);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "lobby never showed");
    }

    let ack = live.request("watch", &[json!("lobby")]).await.expect("ack");
    assert_eq!(ack["ok"], true);
    assert_eq!(ack["room"]["members"].as_array().map(Vec::len), Some(1));
    let bo = server.client().await;
    bo.enter("lobby").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = live.wait_event("room", WAIT).await.expect("room");
        let ids: Vec<&Value> = r.args[0]["members"]
            .as_array()
            .map(|m| m.iter().map(|m| &m["id"]).collect())
            .unwrap_or_default();
        if ids.len() == 2 {
            assert_eq!(ids[1], bo.c.sid.as_str());
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "bo never showed");
    }
    let bad = live.request("watch", &[json!(42)]).await.expect("ack");
    assert_eq!(bad["error"]["code"], "invalid_argument");
}
