//! Restarts on the same data directory: sessions, rooms and history come back.

use serde_json::json;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_keeps_sessions_rooms_and_history() {
    let s = TestServer::start().await;
    let a = s.client().await;
    a.ok("nickname", &[json!("Persistent Pat")]).await;
    a.enter("archive").await;
    for i in 1..=30 {
        a.say("archive", &format!("before restart {i}")).await;
    }
    let (token, user) = (a.token.clone(), a.user.clone());
    // A client still connected during shutdown is disconnected, and holds nothing open.
    let mut a = a;
    let dir = s.stop().await;
    a.event("disconnect").await;

    let running = start_in(dir.path(), |_| {}).await;
    let base = format!("http://{}", running.http_addr());
    let back = connect(&base, Some(&token)).await;
    assert_eq!(back.user, user);
    assert_eq!(back.nickname, "Persistent Pat");
    assert_eq!(back.rooms, vec![json!({ "name": "archive", "count": 0 })]);

    let entered = back
        .ok("enter_room", &[json!("archive"), json!({ "after": 25 })])
        .await;
    let texts: Vec<_> = entered["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(
        texts,
        (26..=30)
            .map(|i| json!(format!("before restart {i}")))
            .collect::<Vec<_>>()
    );
    assert_eq!(back.say("archive", "after restart").await["seq"], 31);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_trims_history_without_reusing_seqs() {
    let s = TestServer::start_with(|c| {
        c.store.retention_max_messages = 3;
        c.store.retention_interval_secs = 1;
    })
    .await;
    let a = s.client().await;
    a.enter("short memory").await;
    for i in 1..=8 {
        a.say("short memory", &format!("m{i}")).await;
    }
    let mut kept = Vec::new();
    for _ in 0..40 {
        kept = seqs(&a.ok("history", &[json!("short memory")]).await["messages"]);
        if kept.len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(kept, vec![6, 7, 8]);
    drop(a);
    let dir = s.stop().await;

    let running = start_in(dir.path(), |c| c.store.retention_max_messages = 3).await;
    let base = format!("http://{}", running.http_addr());
    let b = connect(&base, None).await;
    b.enter("short memory").await;
    assert_eq!(b.say("short memory", "m9").await["seq"], 9);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_from_another_schema_is_refused() {
    let dir = tempfile::TempDir::new().unwrap();
    let settings = config(dir.path()).store;
    if settings.backend == "postgres" {
        // The schema made by a first start, then marked newer.
        noom::App::start(config(dir.path()))
            .await
            .unwrap()
            .shutdown()
            .await
            .unwrap();
        let (client, connection) =
            tokio_postgres::connect(&settings.postgres_url, tokio_postgres::NoTls)
                .await
                .unwrap();
        let driver = tokio::spawn(connection);
        client
            .execute(
                &format!(
                    "UPDATE {}.noom_schema SET version = 99",
                    settings.postgres_schema
                ),
                &[],
            )
            .await
            .unwrap();
        drop(client);
        let _ = driver.await;
    } else {
        let db = sled::open(dir.path().join("data").join(noom::store::DB_DIR)).unwrap();
        db.insert("schema_version", &99u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let err = noom::App::start(config(dir.path()))
        .await
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(text.contains("schema version 99"), "{text}");
}
