//! The store on its own: seq allocation, paging and age-based retention.

use std::sync::Arc;

use noom::metrics::Metrics;
use noom::store::{HistoryQuery, Retention, Store, StoreOptions};

fn open(dir: &std::path::Path) -> Store {
    Store::open(
        dir,
        &StoreOptions {
            cache_bytes: 8 << 20,
            commit_window: std::time::Duration::ZERO,
            ..StoreOptions::default()
        },
        Arc::new(Metrics::default()),
    )
    .unwrap()
}

fn noop(_: noom::store::Message) -> noom::store::AfterFlush {
    Box::new(|_| Box::pin(async {}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_retention_can_empty_a_room_and_seqs_still_continue() {
    let dir = tempfile::TempDir::new().unwrap();
    let day = 86_400_000i64;
    {
        let store = open(dir.path());
        let stop = tokio_util::sync::CancellationToken::new();
        let committer = tokio::spawn({
            let (store, stop) = (store.clone(), stop.clone());
            async move { store.run_committer(stop).await }
        });
        store.touch_room("old", 0).unwrap();
        store.touch_room("mixed", 0).unwrap();
        for i in 0..5 {
            store
                .append("old", "u", "n", &format!("o{i}"), day + i, noop)
                .unwrap();
            store
                .append("mixed", "u", "n", &format!("m{i}"), day * (i + 1), noop)
                .unwrap();
        }
        // History shows only what is durable.
        store.durable().await.unwrap();
        let policy = Retention {
            max_messages: 0,
            max_age_ms: 2 * day,
        };
        let removed = store.enforce_retention(&policy, 5 * day).unwrap();
        // "old": all 5 are older than 3 days; "mixed": days 1 and 2 go.
        assert_eq!(removed, 7);
        let all = HistoryQuery {
            before: None,
            after: None,
            limit: 100,
        };
        assert!(store.history("old", all).unwrap().is_empty());
        let left: Vec<u64> = store
            .history("mixed", all)
            .unwrap()
            .iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(left, vec![3, 4, 5]);
        stop.cancel();
        committer.await.unwrap();
        store.flush().await.unwrap();
    }
    let store = open(dir.path());
    assert_eq!(
        store.room("old").unwrap().last_seq,
        5,
        "the counter survives an emptied room"
    );
    let m = store
        .append("old", "u", "n", "again", 6 * day, noop)
        .unwrap();
    assert_eq!(m.seq, 6);
    // A room the index lost (its record was in a flush that failed) is
    // created again by its next message.
    let first = store.append("nowhere", "u", "n", "x", 0, noop).unwrap();
    assert_eq!(first.seq, 1);
}
