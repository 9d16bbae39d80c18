//! The media server through the wire contract: `media_join`, the server's
//! `media_offer` and the client's `media_answer` over Socket.IO, media over
//! UDP, and the session's end when its participant leaves the call.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid};

use crate::common::{Connected, TestServer, connect, get_text};
use crate::peer::{Peer, pump_all};

/// Enters `room` and joins its call.
async fn in_call(server: &TestServer, room: &str) -> Connected {
    let c = server.client().await;
    c.enter(room).await;
    c.ok("join_call", &[json!(room)]).await;
    c
}

/// `media_join` with an offer of one audio m-line in `dir`; applies the answer.
async fn media_join(c: &Connected, room: &str, peer: &mut Peer, dir: Direction) -> Mid {
    let (offer, pending, mid) = peer.offer(MediaKind::Audio, dir);
    let ack = c
        .ok(
            "media_join",
            &[
                json!(room),
                json!({ "type": "offer", "sdp": offer.to_sdp_string() }),
            ],
        )
        .await;
    assert_eq!(ack["answer"]["type"], "answer", "{ack}");
    let answer = SdpAnswer::from_sdp_string(ack["answer"]["sdp"].as_str().unwrap()).unwrap();
    peer.rtc.sdp_api().accept_answer(pending, answer).unwrap();
    mid
}

/// Pumps the peers until `c` gets a `media_offer` for `room`; its SDP.
async fn next_media_offer(c: &mut Connected, room: &str, peers: &mut [&mut Peer]) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "no media_offer");
        if let Some(e) =
            c.c.drain_events()
                .into_iter()
                .find(|e| e.name == "media_offer")
        {
            assert_eq!(e.args[0], room);
            assert_eq!(e.args[1]["type"], "offer");
            return e.args[1]["sdp"].as_str().unwrap().to_string();
        }
        pump_all(peers, Duration::from_millis(20)).await;
    }
}

/// Pumps the peers until `c` gets a `media_offer` for `room`; answers it with
/// `peers[which]` through `media_answer`. Returns the offer's and the
/// answer's SDP.
async fn answer_media_offer(
    c: &mut Connected,
    room: &str,
    peers: &mut [&mut Peer],
    which: usize,
) -> (String, String) {
    let text = next_media_offer(c, room, peers).await;
    let offer = SdpOffer::from_sdp_string(&text).unwrap();
    let answer = peers[which]
        .rtc
        .sdp_api()
        .accept_offer(offer)
        .unwrap()
        .to_sdp_string();
    c.ok(
        "media_answer",
        &[json!(room), json!({ "type": "answer", "sdp": answer })],
    )
    .await;
    (text, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_participants_exchange_media_through_the_server() {
    let server = TestServer::start().await;
    let alice = in_call(&server, "class").await;
    let mut bob = in_call(&server, "class").await;
    let (mut a, mut b) = (Peer::new().await, Peer::new().await);
    let mic = media_join(&alice, "class", &mut a, Direction::SendOnly).await;
    media_join(&bob, "class", &mut b, Direction::RecvOnly).await;
    pump_all(&mut [&mut a, &mut b], Duration::from_millis(500)).await;
    assert!(
        a.connected && b.connected,
        "ICE and DTLS up with the server"
    );
    answer_media_offer(&mut bob, "class", &mut [&mut a, &mut b], 1).await;
    for n in 0..30u64 {
        a.send_audio(mic, n, &[7; 40]);
        pump_all(&mut [&mut a, &mut b], Duration::from_millis(20)).await;
    }
    pump_all(&mut [&mut a, &mut b], Duration::from_millis(300)).await;
    assert!(
        b.received.len() >= 25,
        "bob got {} of 30 frames",
        b.received.len()
    );
    let sfu = server.running.sfu().expect("the media server runs");
    assert_eq!(sfu.stats().await.unwrap().participants, 2);
    let metrics = get_text(&server.url("/metrics")).await;
    let sample = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    };
    assert_eq!(sample("noom_sfu_participants"), 2.0);
    assert!(sample("noom_sfu_forwarded_total") >= 25.0);
    assert!(sample("noom_sfu_offers_total") >= 1.0);

    // Leaving the call ends the session on the server.
    bob.ok("leave_call", &[json!("class")]).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while sfu.stats().await.unwrap().participants != 1 {
        assert!(
            Instant::now() < deadline,
            "bob's media session outlived the call"
        );
        pump_all(&mut [&mut a, &mut b], Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_call_participants_may_open_a_session_and_junk_is_refused() {
    let server = TestServer::start().await;
    let watcher = server.client().await;
    watcher.enter("class").await;
    let mut peer = Peer::new().await;
    let (offer, _, _) = peer.offer(MediaKind::Audio, Direction::SendOnly);
    let good = json!({ "type": "offer", "sdp": offer.to_sdp_string() });
    watcher
        .err("media_join", &[json!("class"), good.clone()], "not_in_call")
        .await;
    let member = in_call(&server, "class").await;
    for bad in [
        json!("v=0"),
        json!({ "type": "answer", "sdp": offer.to_sdp_string() }),
        json!({ "type": "offer" }),
        json!({ "type": "offer", "sdp": "v=0\r\nnonsense" }),
        Value::Null,
    ] {
        member
            .err("media_join", &[json!("class"), bad], "invalid_argument")
            .await;
    }
    // Options that are not an object, or a screen mid that is not a string.
    for bad in [
        json!("screen"),
        json!({ "screen": 1 }),
        json!({ "screen": "" }),
        json!({ "screen": "x".repeat(33) }),
    ] {
        member
            .err(
                "media_join",
                &[json!("class"), good.clone(), bad],
                "invalid_argument",
            )
            .await;
    }
    // An answer that cannot be read.
    member
        .err(
            "media_answer",
            &[
                json!("class"),
                json!({ "type": "answer", "sdp": "v=0\r\n" }),
            ],
            "invalid_argument",
        )
        .await;
    member.ok("media_join", &[json!("class"), good]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_media_server_a_join_is_unavailable() {
    let server = TestServer::start_with(|c| c.sfu.enabled = false).await;
    assert!(server.running.sfu().is_none());
    let member = in_call(&server, "class").await;
    let mut peer = Peer::new().await;
    let (offer, _, _) = peer.offer(MediaKind::Audio, Direction::SendOnly);
    member
        .err(
            "media_join",
            &[
                json!("class"),
                json!({ "type": "offer", "sdp": offer.to_sdp_string() }),
            ],
            "unavailable",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_mode_is_in_the_join_ack_and_states_reach_the_call() {
    let mesh = TestServer::start().await;
    let c = mesh.client().await;
    c.enter("class").await;
    let ack = c.ok("join_call", &[json!("class")]).await;
    assert_eq!(ack["media"], "mesh", "{ack}");

    let server = TestServer::start_with(|c| c.call.mode = "sfu".into()).await;
    let alice = server.client().await;
    alice.enter("class").await;
    assert_eq!(
        alice.ok("join_call", &[json!("class")]).await["media"],
        "sfu"
    );
    let mut bob = in_call(&server, "class").await;
    let state = json!({ "audio": false, "video": true, "screen": false });
    alice.ok("media_state", &[json!("class"), state]).await;
    let e = bob.event("media_state").await;
    assert_eq!(e.args[0], "class");
    assert_eq!(e.args[1]["audio"], false);
    assert_eq!(e.args[1]["video"], true);
    assert!(e.args[1]["from"].as_str().is_some_and(|f| !f.is_empty()));
    alice
        .err(
            "media_state",
            &[json!("class"), json!({ "audio": "yes" })],
            "invalid_argument",
        )
        .await;
    let outsider = server.client().await;
    outsider.enter("class").await;
    outsider
        .err(
            "media_state",
            &[
                json!("class"),
                json!({ "audio": true, "video": true, "screen": false }),
            ],
            "not_in_call",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_moves_a_growing_call_to_the_media_server_until_it_empties() {
    let server = TestServer::start_with(|c| c.call.mesh_max = 2).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    let c = server.client().await;
    for x in [&a, &b, &c] {
        x.enter("class").await;
    }
    assert_eq!(a.ok("join_call", &[json!("class")]).await["media"], "mesh");
    assert_eq!(b.ok("join_call", &[json!("class")]).await["media"], "mesh");
    a.event("peer_joined").await;
    // The third crosses mesh_max: it joins through the server, the others
    // are told to switch before they hear of it.
    assert_eq!(c.ok("join_call", &[json!("class")]).await["media"], "sfu");
    for x in [&mut a, &mut b] {
        let e = x.event("call_media").await;
        assert_eq!(
            (e.args[0].as_str(), e.args[1].as_str()),
            (Some("class"), Some("sfu"))
        );
        let joined = x.event("peer_joined").await;
        assert!(joined.received >= e.received);
    }
    // It stays there when the call shrinks, until the call empties.
    c.ok("leave_call", &[json!("class")]).await;
    b.ok("leave_call", &[json!("class")]).await;
    assert_eq!(b.ok("join_call", &[json!("class")]).await["media"], "sfu");
    a.ok("leave_call", &[json!("class")]).await;
    b.ok("leave_call", &[json!("class")]).await;
    assert_eq!(a.ok("join_call", &[json!("class")]).await["media"], "mesh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_media_server_a_call_stays_a_small_mesh() {
    let server = TestServer::start_with(|c| c.sfu.enabled = false).await;
    let mut members = Vec::new();
    for _ in 0..7 {
        let m = server.client().await;
        m.enter("big").await;
        members.push(m);
    }
    for m in &members[..6] {
        assert_eq!(m.ok("join_call", &[json!("big")]).await["media"], "mesh");
    }
    members[6]
        .err("join_call", &[json!("big")], "room_full")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_gets_a_bounded_number_of_media_sessions() {
    let server = TestServer::start_with(|c| {
        c.sfu.sessions_per_ip = 1;
        c.sfu.joins_per_ip_per_min = 3;
    })
    .await;
    let first = in_call(&server, "class").await;
    let second = in_call(&server, "class").await;
    let offer = |peer: &mut Peer| {
        let (offer, _, _) = peer.offer(MediaKind::Audio, Direction::SendOnly);
        json!({ "type": "offer", "sdp": offer.to_sdp_string() })
    };
    let mut peer = Peer::new().await;
    first
        .ok("media_join", &[json!("class"), offer(&mut peer)])
        .await;
    // Every test client comes from 127.0.0.1: the second session is refused...
    second
        .err(
            "media_join",
            &[json!("class"), offer(&mut peer)],
            "room_full",
        )
        .await;
    // ...until the first one's session ends with its call.
    first.ok("leave_call", &[json!("class")]).await;
    second
        .ok("media_join", &[json!("class"), offer(&mut peer)])
        .await;
    // Starting sessions is budgeted too (3 a minute here, all used).
    second
        .err(
            "media_join",
            &[json!("class"), offer(&mut peer)],
            "rate_limited",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_tells_whether_the_media_server_runs() {
    let server = TestServer::start().await;
    let (status, body) = crate::common::get_json(&server.url("/healthz")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sfu"]["status"], "ok", "{body}");
    assert_eq!(body["sfu"]["sessions"], 0, "{body}");

    let off = TestServer::start_with(|c| c.sfu.enabled = false).await;
    let (status, body) = crate::common::get_json(&off.url("/healthz")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sfu"]["status"], "disabled", "{body}");

    // Its port held by another program: the server runs (calls stay in the
    // mesh) and says what is wrong.
    let squatter = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let taken = TestServer::start_with(|c| c.sfu.listen = format!("127.0.0.1:{port}")).await;
    assert!(taken.running.sfu().is_none());
    let (status, body) = crate::common::get_json(&taken.url("/healthz")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["sfu"]["status"], "failing", "{body}");
    assert!(
        body["sfu"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&port.to_string())),
        "{body}"
    );
    drop(squatter);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_may_renegotiate_its_own_session() {
    let server = TestServer::start().await;
    let c = in_call(&server, "class").await;
    let mut peer = Peer::new().await;
    let (early, _, _) = peer.offer(MediaKind::Audio, Direction::SendOnly);
    // Before a session exists there is nothing to renegotiate.
    c.err(
        "media_offer",
        &[
            json!("class"),
            json!({ "type": "offer", "sdp": early.to_sdp_string() }),
        ],
        "not_in_call",
    )
    .await;
    let mut peer = Peer::new().await;
    media_join(&c, "class", &mut peer, Direction::SendOnly).await;
    pump_all(&mut [&mut peer], Duration::from_millis(300)).await;
    // A second track (a screen share, say): the browser offers, the server answers.
    let (offer, pending, _) = peer.offer(MediaKind::Video, Direction::SendOnly);
    let ack = c
        .ok(
            "media_offer",
            &[
                json!("class"),
                json!({ "type": "offer", "sdp": offer.to_sdp_string() }),
            ],
        )
        .await;
    let answer = SdpAnswer::from_sdp_string(ack["answer"]["sdp"].as_str().unwrap()).unwrap();
    peer.rtc.sdp_api().accept_answer(pending, answer).unwrap();
}

/// Pumps the peers until `c` gets an `active_speaker` event for `room`; its speakers.
async fn next_speakers(
    c: &mut Connected,
    room: &str,
    peers: &mut [&mut Peer],
    send: &mut dyn FnMut(&mut [&mut Peer]),
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        assert!(Instant::now() < deadline, "no active_speaker");
        if let Some(e) =
            c.c.drain_events()
                .into_iter()
                .find(|e| e.name == "active_speaker")
        {
            assert_eq!(e.args[0], room);
            return e.args[1]["speakers"]
                .as_array()
                .expect("a speakers array")
                .iter()
                .map(|s| s.as_str().expect("socket ids").to_string())
                .collect();
        }
        send(peers);
        pump_all(peers, Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speakers_are_announced_and_the_admin_sees_each_media_session() {
    const TOKEN: &str = "sfu-test-api-token-0123456789abcdef";
    let server = TestServer::start_with(|c| c.admin.api_token = TOKEN.into()).await;
    let alice = in_call(&server, "talk").await;
    let mut bob = server.client().await;
    bob.enter("talk").await;
    let joined = bob.ok("join_call", &[json!("talk")]).await;
    let alice_id = joined["peers"][0]["id"]
        .as_str()
        .expect("alice's id")
        .to_string();
    let (mut a, mut b) = (Peer::new().await, Peer::new().await);
    let mic = media_join(&alice, "talk", &mut a, Direction::SendOnly).await;
    media_join(&bob, "talk", &mut b, Direction::RecvOnly).await;
    pump_all(&mut [&mut a, &mut b], Duration::from_millis(500)).await;
    answer_media_offer(&mut bob, "talk", &mut [&mut a, &mut b], 1).await;

    // Alice talks (-20 dBov): the call hears that she speaks.
    let frames = std::cell::Cell::new(0u64);
    let talk = |level: i8| {
        let frames = &frames;
        move |peers: &mut [&mut Peer]| {
            frames.set(frames.get() + 1);
            peers[0].send_audio_level(mic, frames.get(), level);
        }
    };
    let speakers = next_speakers(&mut bob, "talk", &mut [&mut a, &mut b], &mut talk(-20)).await;
    assert_eq!(speakers, vec![alice_id.clone()]);
    // Who joins now (or rejoins after a reconnect) learns it with its join:
    // `active_speaker` only says changes.
    let carl = server.client().await;
    carl.enter("talk").await;
    let joined = carl.ok("join_call", &[json!("talk")]).await;
    assert_eq!(joined["speakers"], json!([alice_id.clone()]));
    carl.ok("leave_call", &[json!("talk")]).await;

    // The admin room view shows both sessions: Alice's media comes in,
    // Bob's goes out, both straight over UDP.
    let send = talk(-20);
    for _ in 0..60 {
        send(&mut [&mut a, &mut b]);
        pump_all(&mut [&mut a, &mut b], Duration::from_millis(20)).await;
    }
    let detail: Value = reqwest::Client::new()
        .get(server.url("/admin/api/rooms/talk"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let members = detail["members"].as_array().expect("members");
    let media = |id: &str| {
        members
            .iter()
            .find(|m| m["id"] == id)
            .map(|m| m["media"].clone())
            .expect("a member")
    };
    let (of_alice, of_bob) = (
        media(&alice_id),
        members
            .iter()
            .find(|m| m["id"] != alice_id.as_str())
            .map(|m| m["media"].clone())
            .expect("bob"),
    );
    assert_eq!(of_alice["transport"], "udp", "{detail}");
    assert!(of_alice["bitrate_in"].as_u64().unwrap() > 0, "{detail}");
    assert!(of_bob["bitrate_out"].as_u64().unwrap() > 0, "{detail}");
    assert!(
        of_bob["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with("127.0.0.1:")),
        "{detail}"
    );

    // She stops: after a moment nobody speaks.
    let speakers = next_speakers(&mut bob, "talk", &mut [&mut a, &mut b], &mut talk(-127)).await;
    assert!(speakers.is_empty(), "{speakers:?}");

    // What the page shows, for the layers; junk is refused.
    bob.ok(
        "media_view",
        &[
            json!("talk"),
            json!([{ "from": alice_id, "width": 320, "height": 180 }]),
        ],
    )
    .await;
    for bad in [
        json!("big"),
        json!([{ "from": "", "height": 180 }]),
        json!([{ "from": alice_id }]),
        json!([{ "from": alice_id, "height": -1 }]),
        json!([{ "from": alice_id, "height": 100_000 }]),
        Value::Array(vec![json!({ "from": "x", "height": 1 }); 101]),
    ] {
        bob.err("media_view", &[json!("talk"), bad], "invalid_argument")
            .await;
    }
    let outsider = server.client().await;
    outsider.enter("talk").await;
    outsider
        .err("media_view", &[json!("talk"), json!([])], "not_in_call")
        .await;
}

/// A full call of 50: the newest member's session carries everyone else's
/// audio and video, and its answer (which grows with every member) still
/// fits in what one Socket.IO packet may carry by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_of_fifty_negotiates_within_the_packet_limit() {
    const MEMBERS: usize = 50;
    // Every limit but the per-address ones (all clients here are 127.0.0.1)
    // at its default: the packet limit is under test.
    let server = TestServer::start_with(|c| {
        c.call.mode = "sfu".into();
        c.sfu.sessions_per_ip = 100;
        c.sfu.joins_per_ip_per_min = 1000;
    })
    .await;
    let mut members = Vec::new();
    for _ in 0..MEMBERS {
        let c = in_call(&server, "assembly").await;
        // What a page publishes: its microphone and its camera.
        let mut peer = Peer::new().await;
        let mut api = peer.rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let ack = c
            .ok(
                "media_join",
                &[
                    json!("assembly"),
                    json!({ "type": "offer", "sdp": offer.to_sdp_string() }),
                ],
            )
            .await;
        let answer = SdpAnswer::from_sdp_string(ack["answer"]["sdp"].as_str().unwrap()).unwrap();
        peer.rtc.sdp_api().accept_answer(pending, answer).unwrap();
        members.push((c, peer));
    }
    let (mut last, mut peer) = members.pop().unwrap();
    // A track is offered to the others once its publisher's ICE and DTLS
    // are up: every member connects, in parallel.
    let others: Vec<_> = members
        .into_iter()
        .map(|(c, mut p)| {
            tokio::spawn(async move {
                p.pump(Duration::from_secs(6)).await;
                (c, p)
            })
        })
        .collect();
    // The newest answers each offer, as a page does, until it has everyone.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut offer, mut answer) = (String::new(), String::new());
    while offer.matches("\r\na=sendonly").count() < 2 * (MEMBERS - 1) {
        assert!(
            Instant::now() < deadline,
            "the 50th was offered {} of {} tracks",
            offer.matches("\r\na=sendonly").count(),
            2 * (MEMBERS - 1)
        );
        (offer, answer) = answer_media_offer(&mut last, "assembly", &mut [&mut peer], 0).await;
    }
    // Only Opus and VP8 are offered: each codec more costs every m-line.
    assert!(!offer.contains("H264") && !offer.contains("VP9"), "{offer}");
    eprintln!(
        "50-person call: offer {} bytes, answer {} bytes",
        offer.len(),
        answer.len()
    );
    for t in others {
        t.await.unwrap();
    }
}

/// A participant whose connection drops keeps its media session a while:
/// back under the same session with `join_call { was }`, the ack says
/// `resumed` and the session is its own under its new socket id (an ICE
/// restart offer is answered, media reaches the others again, what the
/// server offered meanwhile is offered again). Another session cannot take
/// it; one not taken back ends after the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_participant_takes_its_media_session_back() {
    let server = TestServer::start_with(|c| c.call.mode = "sfu".into()).await;
    let sfu = server.running.sfu().expect("the media server runs");
    let alice = in_call(&server, "class").await;
    let mut bob = in_call(&server, "class").await;
    let (mut a, mut b) = (Peer::new().await, Peer::new().await);
    let mic = media_join(&alice, "class", &mut a, Direction::SendOnly).await;
    media_join(&bob, "class", &mut b, Direction::RecvOnly).await;
    pump_all(&mut [&mut a, &mut b], Duration::from_millis(500)).await;
    answer_media_offer(&mut bob, "class", &mut [&mut a, &mut b], 1).await;

    // Alice's connection drops: her session stays, the others are told why.
    let old = alice.c.sid.clone();
    alice.c.close();
    let left = bob.event("peer_left").await;
    assert_eq!(left.args[2], json!({ "reason": "disconnected" }));
    pump_all(&mut [&mut a, &mut b], Duration::from_millis(200)).await;
    assert_eq!(sfu.stats().await.unwrap().participants, 2, "kept for her");

    // Meanwhile Carol publishes: the offer to Alice's session goes nowhere.
    let carol = in_call(&server, "class").await;
    let mut c = Peer::new().await;
    media_join(&carol, "class", &mut c, Direction::SendOnly).await;
    pump_all(&mut [&mut a, &mut b, &mut c], Duration::from_millis(300)).await;

    // Someone else saying it was Alice gets nothing of hers.
    let mallory = server.client().await;
    mallory.enter("class").await;
    let ack = mallory
        .ok("join_call", &[json!("class"), json!({ "was": old })])
        .await;
    assert_eq!(ack["resumed"], false, "{ack}");

    // Alice is back: her session is hers again, under her new id.
    let mut alice2 = connect(&server.url(""), Some(&alice.token)).await;
    alice2.enter("class").await;
    let ack = alice2
        .ok("join_call", &[json!("class"), json!({ "was": old })])
        .await;
    assert_eq!(ack["resumed"], true, "{ack}");
    assert_eq!(ack["media"], "sfu");
    let restart = {
        let mut api = a.rtc.sdp_api();
        api.ice_restart(true);
        api.apply().unwrap()
    };
    let ack = alice2
        .ok(
            "media_offer",
            &[
                json!("class"),
                json!({ "type": "offer", "sdp": restart.0.to_sdp_string() }),
            ],
        )
        .await;
    let answer = SdpAnswer::from_sdp_string(ack["answer"]["sdp"].as_str().unwrap()).unwrap();
    a.rtc.sdp_api().accept_answer(restart.1, answer).unwrap();
    // Carol's track, offered while Alice was away, is offered again.
    let offer = next_media_offer(&mut alice2, "class", &mut [&mut a, &mut b, &mut c]).await;
    assert!(offer.contains(carol.c.sid.as_str()), "{offer}");
    let before = b.received.len();
    for n in 100..130u64 {
        a.send_audio(mic, n, &[9; 40]);
        pump_all(&mut [&mut a, &mut b, &mut c], Duration::from_millis(20)).await;
    }
    pump_all(&mut [&mut a, &mut b, &mut c], Duration::from_millis(300)).await;
    assert!(
        b.received.len() - before >= 25,
        "bob got {} of 30 frames after Alice's return",
        b.received.len() - before
    );
    assert_eq!(sfu.stats().await.unwrap().participants, 3);

    // Carol says goodbye (a closed tab): her session ends at once.
    carol.c.send_raw("41".into()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while sfu.stats().await.unwrap().participants != 2 {
        assert!(
            Instant::now() < deadline,
            "a goodbye kept its media session"
        );
        pump_all(&mut [&mut a, &mut b, &mut c], Duration::from_millis(50)).await;
    }

    // Bob drops and does not come back: his session ends after the grace.
    bob.c.close();
    let deadline = Instant::now() + noom::signaling::hub::MEDIA_PARK + Duration::from_secs(5);
    while sfu.stats().await.unwrap().participants != 1 {
        assert!(
            Instant::now() < deadline,
            "a parked session outlived its grace"
        );
        pump_all(&mut [&mut a], Duration::from_millis(100)).await;
    }
}
