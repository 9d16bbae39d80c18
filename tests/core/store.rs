//! The store on its own: seq allocation, paging and age-based retention.

use std::sync::Arc;

use noom::metrics::Metrics;
use noom::store::{Appended, HistoryQuery, Message, NewMessage, Retention, Store, StoreOptions};

/// The store of `dir`: sled in it, or (tests on PostgreSQL) its schema.
async fn open(dir: &std::path::Path) -> Store {
    let options = StoreOptions {
        cache_bytes: 8 << 20,
        commit_window: std::time::Duration::ZERO,
        ..StoreOptions::default()
    };
    let metrics = Arc::new(Metrics::default());
    let config = crate::common::config(dir);
    if config.store.backend == "postgres" {
        let settings = noom::store::PgSettings {
            url: config.store.postgres_url,
            pool: 4,
            schema: config.store.postgres_schema,
        };
        return Store::open_postgres(&settings, &options, metrics)
            .await
            .unwrap();
    }
    Store::open(dir, &options, metrics).await.unwrap()
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

/// `noom check` with `store.backend = "postgres"`: an address where nothing
/// answers is a failure that says so; on the tests' PostgreSQL (the second
/// run of this suite) it reports the server's version, then, once a server
/// made the schema, what it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noom_check_reads_a_postgres_store() {
    let dir = tempfile::TempDir::new().unwrap();
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let check = |url: &str, schema: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_noom"))
            .arg("check")
            .args(["--data-dir"])
            .arg(dir.path())
            .env("NOOM_SERVER_HTTP", "127.0.0.1:0")
            .env("NOOM_TURN_LISTEN", "127.0.0.1:0")
            .env("NOOM_SFU_LISTEN", "127.0.0.1:0")
            .env("NOOM_STORE_BACKEND", "postgres")
            .env("NOOM_STORE_POSTGRES_URL", url)
            .env("NOOM_STORE_POSTGRES_SCHEMA", schema)
            .output()
            .expect("noom runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = check(&format!("postgres://noom@127.0.0.1:{unused}/noom"), "noom");
    assert!(
        text.lines().any(|l| l.starts_with("FAIL")
            && l.contains("store")
            && l.contains("cannot be reached")),
        "{text}"
    );
    if !crate::common::on_postgres() {
        return;
    }
    let config = crate::common::config(dir.path());
    let (url, schema) = (
        config.store.postgres_url.clone(),
        config.store.postgres_schema.clone(),
    );
    let text = check(&url, &schema);
    assert!(
        text.lines().any(|l| l.starts_with("ok")
            && l.contains("PostgreSQL")
            && l.contains("created at first start")),
        "{text}"
    );
    let store = open(dir.path()).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let committer = tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        async move { store.run(stop).await }
    });
    append_durable(&store, "r", "one", 1).await;
    stop.cancel();
    committer.await.unwrap();
    let text = check(&url, &schema);
    assert!(
        text.lines().any(|l| l.starts_with("ok")
            && l.contains("PostgreSQL")
            && l.contains("1 rooms, 1 messages")),
        "{text}"
    );
}
