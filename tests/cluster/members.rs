//! Live membership across nodes: member lists, counts, the room list,
//! nicknames, and call signaling addressed by socket id.

use serde_json::{Value, json};

use crate::common::{WAIT, connect};
use crate::support::Cluster;

/// The names in an `enter_room` ack's member list.
fn names(entered: &Value) -> Vec<String> {
    let mut names: Vec<String> = entered["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["nickname"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

/// Waits until `node`'s room list says `room` has `count` members.
async fn listed(cluster: &Cluster, node: usize, room: &str, count: u64) {
    let client = connect(cluster.base(node), None).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = client.ok("rooms", &[]).await;
        let found = list["rooms"]
            .as_array()
            .and_then(|rooms| rooms.iter().find(|r| r["name"] == json!(room)))
            .and_then(|r| r["count"].as_u64());
        if found == Some(count) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {node} lists `{room}` with {found:?} members, not {count}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_counts_and_nicknames_are_the_clusters() {
    let Some(cluster) = Cluster::start("members across nodes", 3).await else {
        return;
    };
    let mut ann = connect(cluster.base(0), None).await;
    let ben = connect(cluster.base(1), None).await;
    ann.ok("nickname", &[json!("Ann")]).await;
    ben.ok("nickname", &[json!("Ben")]).await;
    ann.enter("meet").await;
    let entered = ben.enter("meet").await;
    assert_eq!(entered["count"], json!(2), "{entered}");
    assert_eq!(names(&entered), ["Ann", "Ben"]);
    let welcome = ann.event("welcome").await;
    assert_eq!(welcome.args[1]["nickname"], json!("Ben"));
    assert_eq!(welcome.args[2], json!(2));
    // Every node's room list counts both.
    for node in 0..3 {
        listed(&cluster, node, "meet", 2).await;
    }

    // A nickname changed on node 1 reaches node 0, and a newcomer on node 2
    // sees it in the member list.
    ben.ok("nickname", &[json!("Benjamin")]).await;
    let update = ann.event("member_update").await;
    assert_eq!(update.args[1]["nickname"], json!("Benjamin"));
    let cat = connect(cluster.base(2), None).await;
    cat.ok("nickname", &[json!("Cat")]).await;
    let entered = cat.enter("meet").await;
    assert_eq!(names(&entered), ["Ann", "Benjamin", "Cat"]);

    // Leaving on node 1: node 0 hears `bye`, and every count drops.
    ben.ok("leave_room", &[json!("meet")]).await;
    let bye = ann.event("bye").await;
    assert_eq!(bye.args[1]["nickname"], json!("Benjamin"));
    assert_eq!(bye.args[2], json!(2));
    for node in 0..3 {
        listed(&cluster, node, "meet", 2).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_call_signals_across_nodes() {
    let Some(cluster) = Cluster::start("a call across nodes", 2).await else {
        return;
    };
    let mut ann = connect(cluster.base(0), None).await;
    let mut ben = connect(cluster.base(1), None).await;
    ann.enter("call").await;
    ben.enter("call").await;
    ann.ok("join_call", &[json!("call")]).await;
    let joined = ben.ok("join_call", &[json!("call")]).await;
    let peers = joined["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 1, "{joined}");
    let ann_id = peers[0]["id"].as_str().expect("id").to_string();
    let peer = ann.event("peer_joined").await;
    let ben_id = peer.args[1]["id"].as_str().expect("id").to_string();

    // Offer, answer and ICE go from one node to the other, stamped `from`.
    let offer = json!({ "type": "offer", "sdp": "v=0 from ben" });
    ben.ok("offer", &[json!({ "to": ann_id, "description": offer })])
        .await;
    let got = ann.event("offer").await;
    assert_eq!(got.args[0]["from"], json!(ben_id));
    assert_eq!(got.args[0]["description"], offer);
    let answer = json!({ "type": "answer", "sdp": "v=0 from ann" });
    ann.ok("answer", &[json!({ "to": ben_id, "description": answer })])
        .await;
    let got = ben.event("answer").await;
    assert_eq!(got.args[0]["from"], json!(ann_id));
    ann.ok("ice", &[json!({ "to": ben_id, "candidate": null })])
        .await;
    assert_eq!(ben.event("ice").await.args[0]["from"], json!(ann_id));

    // Someone of another node who is not in the call cannot be signaled.
    let cat = connect(cluster.base(1), None).await;
    cat.enter("call").await;
    let cat_id = loop {
        // (Ben's own `welcome` may still be queued.)
        let w = ann.event("welcome").await;
        let id = w.args[1]["id"].as_str().expect("id").to_string();
        if id != ben_id {
            break id;
        }
    };
    ann.err(
        "offer",
        &[json!({ "to": cat_id, "description": offer })],
        "not_in_call",
    )
    .await;

    // A raised hand on node 1 is in the hands node 0 gives a newcomer.
    ben.ok("raise_hand", &[json!("call"), json!({ "raised": true })])
        .await;
    let hands = ann.event("hands").await;
    assert_eq!(hands.args[1]["hands"], json!([ben_id]));
    cat.ok("leave_room", &[json!("call")]).await;
    let dan = connect(cluster.base(0), None).await;
    dan.enter("call").await;
    let joined = dan.ok("join_call", &[json!("call")]).await;
    assert_eq!(joined["hands"], json!([ben_id]), "{joined}");
    assert_eq!(
        joined["peers"].as_array().map(Vec::len),
        Some(2),
        "{joined}"
    );

    // Leaving the call on node 1: node 0 hears `peer_left`.
    ben.ok("leave_call", &[json!("call")]).await;
    let left = ann.event("peer_left").await;
    assert_eq!(left.args[1]["id"], json!(ben_id));
}

/// The admin page of one node lists the members of every node, each with
/// its node, and counts them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_sees_members_of_every_node() {
    const TOKEN: &str = "cluster-admin-token-0123456789abcdef";
    let Some(cluster) = Cluster::start_with("admin across nodes", 2, |c| {
        c.admin.api_token = TOKEN.into();
    })
    .await
    else {
        return;
    };
    let mut ann = connect(cluster.base(0), None).await;
    let ben = connect(cluster.base(1), None).await;
    ann.ok("nickname", &[json!("Ann")]).await;
    ben.ok("nickname", &[json!("Ben")]).await;
    ann.enter("watched").await;
    ben.enter("watched").await;
    ann.event("welcome").await;
    let detail: Value = reqwest::Client::new()
        .get(format!("{}/admin/api/rooms/watched", cluster.base(0)))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin API answers")
        .json()
        .await
        .expect("JSON");
    let mut rows: Vec<(String, String, String)> = detail["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["nickname"].as_str().unwrap_or_default().to_string(),
                m["node"].as_str().unwrap_or_default().to_string(),
                m["transport"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("Ann".to_string(), "n0".to_string(), "websocket".to_string()),
            (
                "Ben".to_string(),
                "n1".to_string(),
                "other node".to_string()
            ),
        ],
        "{detail}"
    );
}

/// The admin page of any node lists every node with its health (as each
/// node last said it, every second); a node killed leaves the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_lists_every_nodes_health() {
    const TOKEN: &str = "cluster-admin-token-0123456789abcdef";
    let Some(cluster) = Cluster::start_with("node health", 2, |c| {
        c.admin.api_token = TOKEN.into();
    })
    .await
    else {
        return;
    };
    let mut doomed = cluster.spawn_binary("doomed").await;
    let _ben = connect(cluster.base(1), None).await;
    let overview = || async {
        let o: Value = reqwest::Client::new()
            .get(format!("{}/admin/api/overview", cluster.base(0)))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("admin API answers")
            .json()
            .await
            .expect("JSON");
        o
    };
    let nodes = |o: &Value| -> Vec<(String, bool, String, i64)> {
        o["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| {
                (
                    n["node"].as_str().unwrap_or_default().to_string(),
                    n["this"] == true,
                    n["status"].as_str().unwrap_or_default().to_string(),
                    n["health"]["connections"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    };
    // Each node says its health with its next heartbeat (within a second).
    let want = vec![
        ("doomed".to_string(), false, "ok".to_string(), 0),
        ("n0".to_string(), true, "ok".to_string(), 0),
        ("n1".to_string(), false, "ok".to_string(), 1),
    ];
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen = nodes(&overview().await);
        if seen == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen, want);
    let o = overview().await;
    let n1 = &o["nodes"][2]["health"];
    assert_eq!(n1["node"], "n1", "{o}");
    assert_eq!(n1["store"], "ok", "{o}");
    assert_eq!(n1["cluster"]["status"], "ok", "{o}");
    assert_eq!(n1["version"], env!("CARGO_PKG_VERSION"), "{o}");
    // SIGKILL: its liveness key expires (5 s), then it is dropped.
    doomed.kill();
    let mut listed = Vec::new();
    for _ in 0..100 {
        listed = nodes(&overview().await);
        if !listed.iter().any(|n| n.0 == "doomed") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        listed.iter().map(|n| n.0.as_str()).collect::<Vec<_>>(),
        ["n0", "n1"]
    );
}

/// An administrator's actions on one node reach the connections of every
/// node: ending a call, disconnecting one connection, closing a room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admins_actions_reach_every_node() {
    const TOKEN: &str = "cluster-admin-token-0123456789abcdef";
    let Some(cluster) = Cluster::start_with("admin actions across nodes", 2, |c| {
        c.admin.api_token = TOKEN.into();
    })
    .await
    else {
        return;
    };
    let admin = |path: &str| {
        reqwest::Client::new()
            .post(format!("{}/admin/api/{path}", cluster.base(0)))
            .bearer_auth(TOKEN)
            .send()
    };
    let mut ann = connect(cluster.base(0), None).await;
    let mut ben = connect(cluster.base(1), None).await;
    let mut cat = connect(cluster.base(1), None).await;
    for c in [&ann, &ben, &cat] {
        c.enter("ruled").await;
    }
    ann.ok("join_call", &[json!("ruled")]).await;
    ben.ok("join_call", &[json!("ruled")]).await;
    let ben_id = ann.event("peer_joined").await.args[1]["id"]
        .as_str()
        .expect("id")
        .to_string();

    // Ending the call through node 0 ends it for Ben on node 1 too.
    let ended: Value = admin("rooms/ruled/end-call")
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(ended["participants"], json!(2), "{ended}");
    ann.event("call_ended").await;
    ben.event("call_ended").await;

    // Disconnecting Ben (of node 1) through node 0.
    let r = admin(&format!("connections/{ben_id}/disconnect"))
        .await
        .expect("answers");
    assert_eq!(r.status(), 200);
    assert_eq!(
        ben.event("kicked").await.args[0]["reason"],
        json!("disconnected")
    );

    // Closing the room through node 0 takes Cat (of node 1) out.
    let closed: Value = admin("rooms/ruled/close")
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(closed["ok"], json!(true), "{closed}");
    cat.event("room_closed").await;
    ann.event("room_closed").await;

    // Revoking Cat's user through node 0 closes her connection on node 1,
    // and her session no longer works on either node.
    let r = admin(&format!("users/{}/revoke", cat.user))
        .await
        .expect("answers");
    assert_eq!(r.status(), 200);
    assert_eq!(
        cat.event("kicked").await.args[0]["reason"],
        json!("session_revoked")
    );
    for node in 0..2 {
        let again = connect(cluster.base(node), Some(&cat.token)).await;
        assert_ne!(again.user, cat.user, "node {node} kept the revoked session");
    }
}

/// A host on one node moderates a member on another: mute, take out of the
/// call, take out of the room, hand the room over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_moderates_members_of_another_node() {
    let Some(cluster) = Cluster::start("moderation across nodes", 2).await else {
        return;
    };
    let mut ann = connect(cluster.base(0), None).await;
    let mut ben = connect(cluster.base(1), None).await;
    let mut cat = connect(cluster.base(1), None).await;
    ann.enter("hosted").await; // the first one in hosts it
    ben.enter("hosted").await;
    ann.ok("join_call", &[json!("hosted")]).await;
    ben.ok("join_call", &[json!("hosted")]).await;
    let ben_id = ann.event("peer_joined").await.args[1]["id"]
        .as_str()
        .expect("id")
        .to_string();

    ann.ok("mute", &[json!("hosted"), json!({ "to": ben_id })])
        .await;
    ben.event("muted").await;

    ann.ok(
        "remove",
        &[json!("hosted"), json!({ "to": ben_id, "from": "call" })],
    )
    .await;
    assert_eq!(ben.event("removed").await.args[1]["from"], json!("call"));
    let left = ann.event("peer_left").await;
    assert_eq!(left.args[1]["id"], json!(ben_id));
    // Node 0 knows Ben left the call: he cannot be muted any more.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ack = ann
            .req("mute", &[json!("hosted"), json!({ "to": ben_id })])
            .await;
        if ack["error"]["code"] == json!("not_in_call") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{ack}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    cat.enter("hosted").await;
    let cat_id = loop {
        let w = ann.event("welcome").await;
        let id = w.args[1]["id"].as_str().expect("id").to_string();
        if id != ben_id {
            break id;
        }
    };
    let removed = ann
        .ok(
            "remove",
            &[json!("hosted"), json!({ "to": cat_id, "from": "room" })],
        )
        .await;
    assert!(removed["until"].as_i64().is_some(), "{removed}");
    assert_eq!(cat.event("removed").await.args[1]["from"], json!("room"));
    let bye = ann.event("bye").await;
    assert_eq!(bye.args[1]["id"], json!(cat_id));
    // Banned for a while, whichever node it tries.
    cat.err("enter_room", &[json!("hosted")], "removed").await;

    // Handing the room to Ben, of node 1.
    let handed = ann
        .ok("set_host", &[json!("hosted"), json!({ "to": ben_id })])
        .await;
    assert!(handed["host"].is_string(), "{handed}");
    ben.event("room_settings").await;
}

/// A host on one node keeps a lobby that visitors of another node wait
/// in: the host sees them, lets one in, turns one away, sees one give up,
/// and turning the lobby off lets in whoever waits, whatever their node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lobby_holds_visitors_of_every_node() {
    let Some(cluster) = Cluster::start("lobby across nodes", 2).await else {
        return;
    };
    let mut ann = connect(cluster.base(0), None).await;
    ann.enter("gated").await; // the first one in hosts it
    ann.ok(
        "room_settings",
        &[json!("gated"), json!({ "locked": false, "lobby": true })],
    )
    .await;
    assert_eq!(ann.event("lobby").await.args[1]["waiting"], json!([]));
    let waiting_ids = |e: &noom::client::Event| -> Vec<String> {
        e.args[1]["waiting"]
            .as_array()
            .expect("waiting")
            .iter()
            .map(|m| m["id"].as_str().unwrap_or_default().to_string())
            .collect()
    };

    // Cat, on node 1, waits; Ann, on node 0, sees her and turns her away.
    let mut cat = connect(cluster.base(1), None).await;
    cat.err("enter_room", &[json!("gated")], "in_lobby").await;
    let seen = ann.event("lobby").await;
    let cat_id = waiting_ids(&seen).pop().expect("Cat waits");
    assert_eq!(
        seen.args[1]["waiting"][0]["nickname"],
        cat.nickname.as_str()
    );
    ann.ok(
        "admit",
        &[json!("gated"), json!({ "to": cat_id, "admit": false })],
    )
    .await;
    assert_eq!(
        cat.event("admission").await.args[1],
        json!({ "admitted": false })
    );
    assert_eq!(ann.event("lobby").await.args[1]["waiting"], json!([]));

    // She asks again; this time Ann lets her in, and she enters.
    cat.err("enter_room", &[json!("gated")], "in_lobby").await;
    assert_eq!(
        waiting_ids(&ann.event("lobby").await),
        std::slice::from_ref(&cat_id)
    );
    ann.ok(
        "admit",
        &[json!("gated"), json!({ "to": cat_id, "admit": true })],
    )
    .await;
    assert_eq!(
        cat.event("admission").await.args[1],
        json!({ "admitted": true })
    );
    assert_eq!(ann.event("lobby").await.args[1]["waiting"], json!([]));
    cat.enter("gated").await;
    assert_eq!(ann.event("welcome").await.args[1]["id"], json!(cat_id));

    // Dan, on node 1, gives up: Ann's list empties.
    let dan = connect(cluster.base(1), None).await;
    dan.err("enter_room", &[json!("gated")], "in_lobby").await;
    assert_eq!(waiting_ids(&ann.event("lobby").await).len(), 1);
    dan.c.close();
    assert_eq!(ann.event("lobby").await.args[1]["waiting"], json!([]));

    // Eve, on node 1, waits; the lobby is turned off: she may come in.
    let mut eve = connect(cluster.base(1), None).await;
    eve.err("enter_room", &[json!("gated")], "in_lobby").await;
    assert_eq!(waiting_ids(&ann.event("lobby").await).len(), 1);
    ann.ok(
        "room_settings",
        &[json!("gated"), json!({ "lobby": false })],
    )
    .await;
    assert_eq!(
        eve.event("admission").await.args[1],
        json!({ "admitted": true })
    );
    eve.enter("gated").await;
}

/// Two people racing on two nodes for the last place in a call: one gets
/// it, the other is told the call is full (each node checks its own copy
/// of the participants, so the joins in flight are counted in Redis). A
/// join just after another, with a place left, is not refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_place_in_a_call_goes_to_one_of_two_nodes() {
    let Some(cluster) = Cluster::start_with("call capacity across nodes", 2, |c| {
        c.limits.call_max = 3;
    })
    .await
    else {
        return;
    };
    let ann = connect(cluster.base(0), None).await;
    let ben = connect(cluster.base(1), None).await;
    let cat = connect(cluster.base(0), None).await;
    let dan = connect(cluster.base(1), None).await;
    for round in 0..8 {
        let room = format!("tight {round}");
        for c in [&ann, &ben, &cat, &dan] {
            c.enter(&room).await;
        }
        // Two in, one after the other on two nodes: both fit.
        ann.ok("join_call", &[json!(room)]).await;
        ben.ok("join_call", &[json!(room)]).await;
        // One place left, two on two nodes at once.
        let args = [json!(room)];
        let (c, d) = tokio::join!(cat.req("join_call", &args), dan.req("join_call", &args));
        let got = [&c, &d].iter().filter(|a| a["ok"] == true).count();
        assert_eq!(got, 1, "round {round}: {c} {d}");
        let refused = if c["ok"] == true { &d } else { &c };
        assert_eq!(refused["error"]["code"], "room_full", "{refused}");
    }
}

/// `noom check` on a node of a running cluster reaches Redis, lists the
/// nodes running now, and warns when its name is taken already.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noom_check_lists_the_running_nodes() {
    let Some(cluster) = Cluster::start("check a cluster", 2).await else {
        return;
    };
    // Each node lists itself with its first heartbeat.
    let mut text = String::new();
    for _ in 0..50 {
        text = cluster.check("n2");
        if text.contains("running now: n0, n1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let cluster_line = |text: &str, start: &str| {
        text.lines()
            .any(|l| l.starts_with(start) && l.contains("cluster"))
    };
    assert!(
        text.lines().any(|l| l.starts_with("ok")
            && l.contains("Redis 7")
            && l.contains("running now: n0, n1")),
        "{text}"
    );
    assert!(!cluster_line(&text, "warn"), "{text}");
    let taken = cluster.check("n1");
    assert!(
        taken
            .lines()
            .any(|l| l.starts_with("warn") && l.contains("a node named `n1` is running already")),
        "{taken}"
    );
}
