//! A node killed under chat load: its clients go on through another node
//! without losing an acknowledged message, and its members leave every
//! count within the documented time.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::json;

use crate::common::connect;
use crate::support::Cluster;

/// A node's members are gone from the others' counts within this (the
/// liveness key's TTL plus a heartbeat, docs/cluster.md), plus slack for a
/// loaded test machine.
const DEAD_NODE_GONE: Duration = Duration::from_secs(9);

/// Sends numbered messages in `room` through `base` until `stop`, records
/// each acknowledged seq; when the connection breaks, goes on through
/// `fallback` with the same session.
async fn sender(
    base: String,
    fallback: String,
    room: &'static str,
    acked: Arc<Mutex<BTreeSet<u64>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (usize, usize) {
    let mut c = connect(&base, None).await;
    c.enter(room).await;
    let token = c.token.clone();
    let (mut sent, mut failed) = (0, 0);
    let mut moved = false;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // 40 a second: under the default per-connection limit (50).
        tokio::time::sleep(Duration::from_millis(25)).await;
        sent += 1;
        match tokio::time::timeout(
            Duration::from_secs(2),
            c.c.request("new_message", &[json!(room), json!(format!("m{sent}"))]),
        )
        .await
        {
            Ok(Ok(ack)) if ack["ok"] == json!(true) => {
                acked.lock().insert(
                    ack["message"]["seq"]
                        .as_u64()
                        .unwrap_or_else(|| panic!("no seq: {ack}")),
                );
            }
            Ok(Ok(ack)) => panic!("a refusal that is not the node's death: {ack}"),
            _ => {
                failed += 1;
                assert!(!moved, "the fallback node failed too");
                moved = true;
                // Its node died: the same session, through another node.
                c = connect(&fallback, Some(&token)).await;
                c.enter(room).await;
            }
        }
    }
    (sent, failed)
}

/// Reads `room` live through `base` as a page does; when the connection
/// breaks, enters again through `fallback` with `after:` the last seq it has.
/// Returns every seq it got live, in order (duplicates included), and those
/// its second `enter_room` returned.
async fn follower(
    base: String,
    fallback: String,
    room: &'static str,
    ready: tokio::sync::oneshot::Sender<()>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<u64>, Vec<u64>) {
    let mut c = connect(&base, None).await;
    c.enter(room).await;
    let token = c.token.clone();
    let _ = ready.send(());
    let mut got: Vec<u64> = Vec::new();
    let mut entered: Vec<u64> = Vec::new();
    let mut moved = false;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(200), c.c.next_event()).await {
            Err(_) => continue,
            Ok(Some(e)) if e.name == "new_message" => {
                got.push(e.args[0]["seq"].as_u64().expect("seq"));
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                assert!(!moved, "the fallback node closed too");
                moved = true;
                c = connect(&fallback, Some(&token)).await;
                let last = got.iter().max().copied().unwrap_or(0);
                let ack = c
                    .ok(
                        "enter_room",
                        &[json!(room), json!({ "after": last, "limit": 200 })],
                    )
                    .await;
                for m in ack["messages"].as_array().expect("messages") {
                    entered.push(m["seq"].as_u64().expect("seq"));
                }
            }
        }
    }
    // What is still on its way.
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), c.c.next_event()).await
    {
        if e.name == "new_message" {
            got.push(e.args[0]["seq"].as_u64().expect("seq"));
        }
    }
    (got, entered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_no_acknowledged_message() {
    let Some(cluster) = Cluster::start("node killed under load", 1).await else {
        return;
    };
    let mut doomed = cluster.spawn_binary("doomed").await;
    let survivor = cluster.base(0).to_string();
    let mut watcher = connect(&survivor, None).await;
    watcher.enter("load").await;

    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A reader on the node that dies, there before the first message.
    let (ready, is_ready) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(follower(
        doomed.base.clone(),
        survivor.clone(),
        "load",
        ready,
        stop.clone(),
    ));
    is_ready.await.expect("the reader entered");
    watcher.event("welcome").await;
    let mut senders = Vec::new();
    for i in 0..4 {
        // Three senders on the node that dies, one on the survivor.
        let base = if i < 3 {
            doomed.base.clone()
        } else {
            survivor.clone()
        };
        senders.push(tokio::spawn(sender(
            base,
            survivor.clone(),
            "load",
            acked.clone(),
            stop.clone(),
        )));
    }
    // The watcher sees the four senders arrive.
    for _ in 0..4 {
        watcher.event("welcome").await;
    }
    // Load for a while, then SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(10);
    while acked.lock().len() < 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = acked.lock().len();
    assert!(
        before >= 100,
        "only {before} messages acknowledged before the kill"
    );
    doomed.kill();
    let killed = Instant::now();

    // Within the documented time the survivor says goodbye to the dead
    // node's four members (three senders and the reader: `bye`,
    // disconnected).
    let mut byes = 0;
    while byes < 4 {
        let left = Instant::now().saturating_duration_since(killed);
        let e = tokio::time::timeout(
            DEAD_NODE_GONE.saturating_sub(left),
            watcher.c.wait_event("bye", DEAD_NODE_GONE),
        )
        .await;
        match e {
            Ok(Ok(bye)) => {
                assert_eq!(
                    bye.args[3]["reason"],
                    json!("disconnected"),
                    "{:?}",
                    bye.args
                );
                byes += 1;
            }
            _ => panic!("{byes} of the dead node's 4 members left within {DEAD_NODE_GONE:?}"),
        }
    }
    let gone_after = killed.elapsed();

    // Load goes on through the survivor a while, then stops.
    let resumed = acked.lock().len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while acked.lock().len() < resumed + 150 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut moved = 0;
    for s in senders {
        let (_, failed) = s.await.expect("sender");
        moved += failed;
    }
    assert!(moved >= 3, "the dead node's senders moved ({moved})");
    let (live, entered) = reader.await.expect("reader");

    // Every acknowledged message is in the history, read through the survivor.
    let reader = connect(&survivor, None).await;
    let mut stored = BTreeSet::new();
    let mut after = 0u64;
    loop {
        let page = reader
            .ok(
                "history",
                &[json!("load"), json!({ "after": after, "limit": 200 })],
            )
            .await;
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in &messages {
            stored.insert(m["seq"].as_u64().expect("seq"));
        }
        after = messages
            .last()
            .and_then(|m| m["seq"].as_u64())
            .expect("seq");
    }
    let acked = acked.lock().clone();
    let lost: Vec<&u64> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    // Seqs are contiguous: nothing stored twice, nothing skipped.
    let max = *stored.iter().max().expect("messages");
    assert_eq!(stored.len() as u64, max, "seqs 1..={max} without a gap");
    // The reader that moved has every message: no gap. The live stream
    // never repeats one; its re-entry's ack may also hold one that was on
    // its way to the room meanwhile (the contract: a client keeps one copy
    // per seq, as the web app does).
    let once: BTreeSet<u64> = live.iter().copied().collect();
    assert_eq!(once.len(), live.len(), "the live stream repeated a message");
    let overlap = entered.iter().filter(|s| once.contains(s)).count();
    let mut has = once.clone();
    has.extend(entered.iter().copied());
    let missed: Vec<&u64> = stored.difference(&has).collect();
    assert!(missed.is_empty(), "the reader that moved missed {missed:?}");
    eprintln!(
        "the reader's re-entry returned {} messages, {overlap} of them also live",
        entered.len()
    );
    eprintln!(
        "{} messages acknowledged ({before} before the kill); the dead node's members left after {gone_after:?}",
        acked.len()
    );
}
