//! The store on its own: seq allocation, paging and age-based retention.

use std::sync::Arc;

use noom::metrics::Metrics;
use noom::store::{Appended, HistoryQuery, Message, NewMessage, Retention, Store, StoreOptions};

async fn open(dir: &std::path::Path) -> Store {
    Store::open(
        dir,
        &StoreOptions {
            cache_bytes: 8 << 20,
            commit_window: std::time::Duration::ZERO,
            ..StoreOptions::default()
        },
        Arc::new(Metrics::default()),
    )
    .await
    .unwrap()
}

fn message(room: &str, text: &str, ts: i64) -> NewMessage {
    NewMessage {
        room: room.into(),
        user: "u".into(),
        nickname: "n".into(),
        text: text.into(),
        ts,
    }
}

/// Appends without waiting for the outcome.
async fn append(store: &Store, room: &str, text: &str, ts: i64) {
    store
        .append(message(room, text, ts), Box::new(|_| Box::pin(async {})))
        .await
        .unwrap();
}

/// Appends and waits until the message is durable; returns it with its seq.
async fn append_durable(store: &Store, room: &str, text: &str, ts: i64) -> Message {
    let (tx, rx) = tokio::sync::oneshot::channel();
    store
        .append(
            message(room, text, ts),
            Box::new(move |appended| {
                let _ = tx.send(appended);
                Box::pin(async {})
            }),
        )
        .await
        .unwrap();
    match rx.await.unwrap() {
        Appended::Durable(m) => m,
        other => panic!("not durable: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_retention_can_empty_a_room_and_seqs_still_continue() {
    let dir = tempfile::TempDir::new().unwrap();
    let day = 86_400_000i64;
    {
        let store = open(dir.path()).await;
        let stop = tokio_util::sync::CancellationToken::new();
        let committer = tokio::spawn({
            let (store, stop) = (store.clone(), stop.clone());
            async move { store.run(stop).await }
        });
        store.touch_room("old", 0).await.unwrap();
        store.touch_room("mixed", 0).await.unwrap();
        for i in 0..5 {
            append(&store, "old", &format!("o{i}"), day + i).await;
            append(&store, "mixed", &format!("m{i}"), day * (i + 1)).await;
        }
        // History shows only what is durable.
        store.durable().await.unwrap();
        let policy = Retention {
            max_messages: 0,
            max_age_ms: 2 * day,
        };
        let removed = store.enforce_retention(&policy, 5 * day).await.unwrap();
        // "old": all 5 are older than 3 days; "mixed": days 1 and 2 go.
        assert_eq!(removed, 7);
        let all = HistoryQuery {
            before: None,
            after: None,
            limit: 100,
        };
        assert!(store.history("old", all).await.unwrap().is_empty());
        let left: Vec<u64> = store
            .history("mixed", all)
            .await
            .unwrap()
            .iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(left, vec![3, 4, 5]);
        stop.cancel();
        committer.await.unwrap();
        store.flush().await.unwrap();
    }
    let store = open(dir.path()).await;
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        async move { store.run(stop).await }
    });
    assert_eq!(
        store.room("old").await.unwrap().last_seq,
        5,
        "the counter survives an emptied room"
    );
    let m = append_durable(&store, "old", "again", 6 * day).await;
    assert_eq!(m.seq, 6);
    // A room the index lost (its record was in a flush that failed) is
    // created again by its next message.
    let first = append_durable(&store, "nowhere", "x", 0).await;
    assert_eq!(first.seq, 1);
}
