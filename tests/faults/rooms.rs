//! The room list under abuse: its cost does not grow with the number of
//! rooms ever created, and toggling rooms cannot flood everyone with lists.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{TestServer, connect};
use crate::env::{Binary, Spawn, measure, measure_under_abuse, within_twice};

/// A data directory whose store knows `rooms` rooms, each with a message,
/// all active just now.
async fn data_dir_with_rooms(rooms: usize) -> tempfile::TempDir {
    let dir = tempfile::TempDir::new().unwrap();
    let options = noom::store::StoreOptions::default();
    let store = noom::store::Store::open(
        &dir.path().join("data"),
        &options,
        Arc::new(noom::metrics::Metrics::default()),
    )
    .await
    .unwrap();
    let store = Arc::new(store);
    // The group commit runs until the fixture is written, then stops.
    let stop = tokio_util::sync::CancellationToken::new();
    let committer = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move { store.run(stop).await })
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for i in 0..rooms {
        let room = format!("room-{i:06}");
        store.touch_room(&room, now).await.unwrap();
        // A room with history stays listed while idle.
        store
            .append(
                noom::store::NewMessage {
                    room,
                    user: "seed".into(),
                    nickname: "Seed".into(),
                    text: "hello".into(),
                    ts: now,
                },
                Box::new(|_| Box::pin(async {})),
            )
            .await
            .unwrap();
    }
    store.flush().await.unwrap();
    stop.cancel();
    committer.await.unwrap();
    drop(store);
    dir
}

/// Server CPU per `rooms` request and per connect, with `rooms` rooms known,
/// while five clients ask for the list as fast as the rate limit lets them.
async fn list_cost(rooms: usize) -> (Duration, usize) {
    let dir = data_dir_with_rooms(rooms).await;
    // Retention's first pass (at start) would count every room's messages
    // meanwhile: not what is measured here.
    let server = Binary::start_in(
        dir,
        Spawn {
            env: vec![("NOOM_STORE_RETENTION_MAX_MESSAGES".into(), "0".into())],
            ..Spawn::default()
        },
    )
    .await;
    let quiet = measure(&server.base, 5).await;
    let before = server.cpu();
    let started = Instant::now();
    let mut askers = Vec::new();
    for _ in 0..5 {
        let base = server.base.clone();
        askers.push(tokio::spawn(async move {
            let c = connect(&base, None).await;
            let mut longest = 0;
            // 45 requests a second, under the default limit of 50.
            for _ in 0..90 {
                let ack = c.ok("rooms", &[]).await;
                longest = longest.max(ack["rooms"].as_array().unwrap().len());
                tokio::time::sleep(Duration::from_millis(22)).await;
            }
            longest
        }));
    }
    let loaded = measure_under_abuse(&server.base, 5, quiet).await;
    let mut longest = 0;
    for a in askers {
        longest = longest.max(a.await.unwrap());
    }
    let requests = 5 * 90 + 10;
    let per_request = (server.cpu() - before) / requests;
    within_twice(
        &format!("room list requests with {rooms} rooms"),
        quiet,
        loaded,
    );
    eprintln!(
        "{rooms} rooms: {per_request:?} of server CPU per request, {:?} for the whole run",
        started.elapsed()
    );
    (per_request, longest)
}

/// Finding 7: with 50,000 rooms a `rooms` request or a connect costs about
/// what it costs with 1,000 (the list is bounded and kept encoded), and a
/// normal visitor is not slowed down by clients asking for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_list_cost_does_not_grow_with_the_rooms() {
    let (small, small_len) = list_cost(1_000).await;
    let (large, large_len) = list_cost(50_000).await;
    assert_eq!(small_len, 1000);
    assert_eq!(large_len, 1000, "the list is capped at rooms.list_max");
    assert!(
        large <= small * 2 + Duration::from_micros(500),
        "a request costs {large:?} with 50,000 rooms against {small:?} with 1,000"
    );
}

/// Finding 7: rooms toggled in a loop produce at most one `room_change` per
/// `rooms.broadcast_interval_ms`, and the last state still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toggling_rooms_cannot_flood_everyone_with_lists() {
    let server = TestServer::start_with(|c| {
        c.rooms.broadcast_interval_ms = 1000;
        c.limits.events_per_sec = 1_000_000;
        c.limits.events_burst = 1_000_000;
    })
    .await;
    let mut watcher = server.client().await;
    let toggler = server.client().await;
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let room = format!("t{}", i % 20);
        toggler.enter(&room).await;
        toggler.ok("leave_room", &[json!(room)]).await;
        i += 1;
    }
    toggler.enter("final").await;
    let mut lists = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(2500);
    while let Ok(Ok(e)) = tokio::time::timeout_at(
        deadline.into(),
        watcher.c.wait_event("room_change", Duration::from_secs(5)),
    )
    .await
    {
        lists.push(e.args[0].clone());
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(i > 100, "only {i} toggles");
    assert!(
        (lists.len() as f64) <= elapsed + 1.0,
        "{} lists in {elapsed:.1} s for {i} toggles",
        lists.len()
    );
    let last = lists.last().expect("at least one room_change");
    assert!(
        last.as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "final" && r["count"] == 1),
        "the final state arrives: {last}"
    );
}
