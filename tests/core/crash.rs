//! Crash safety of the real binary: every acknowledged message survives SIGKILL.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use noom::client::Client;
use parking_lot::Mutex;
use serde_json::{Value, json};

const ROOMS: usize = 4;
const CLIENTS: usize = 8;
const SENDERS_PER_CLIENT: usize = 4;
const KILL_AFTER_ACKS: usize = 3000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_noom"))
        .args(["--http", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .env("NOOM_TURN_LISTEN", "127.0.0.1:0")
        .env("NOOM_SFU_LISTEN", "127.0.0.1:0")
        // The senders go as fast as acks come back: lift the per-connection limit.
        .env("NOOM_LIMITS_EVENTS_PER_SEC", "1000000")
        .env("NOOM_LIMITS_EVENTS_BURST", "1000000")
        .envs(crate::common::store_env(dir))
        .stdout(Stdio::null())
        .spawn()
        .expect("noom binary starts")
}

async fn wait_healthy(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("server at {base} did not become healthy");
}

async fn all_messages(base: &str, room: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let url = format!("{base}/api/rooms/{room}/messages?after={after}&limit=200");
        let page: Vec<Value> = reqwest::get(url).await.unwrap().json().await.unwrap();
        if page.is_empty() {
            return out;
        }
        after = page.last().unwrap()["seq"].as_u64().unwrap();
        out.extend(page);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_sigkill() {
    let dir = tempfile::TempDir::new().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn(dir.path(), port);
    wait_healthy(&base).await;

    let acked: Arc<Mutex<Vec<(String, u64, String)>>> = Arc::default();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let client = Arc::new(Client::connect(&base, None).await.unwrap());
        let room = format!("crash-{}", c % ROOMS);
        let ack = client.request("enter_room", &[json!(room)]).await.unwrap();
        assert_eq!(ack["ok"], true);
        for t in 0..SENDERS_PER_CLIENT {
            let (client, room, acked) = (client.clone(), room.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let text = format!("c{c}-t{t}-{i}");
                    match client
                        .request("new_message", &[json!(room), json!(text)])
                        .await
                    {
                        Ok(ack) if ack["ok"] == true => {
                            let seq = ack["message"]["seq"].as_u64().unwrap();
                            acked.lock().push((room.clone(), seq, text));
                        }
                        _ => return,
                    }
                }
            }));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().len() < KILL_AFTER_ACKS {
        assert!(
            Instant::now() < deadline,
            "too slow: {} acks",
            acked.lock().len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL, with senders in full flight
    child.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().clone();
    assert!(acked.len() >= KILL_AFTER_ACKS);

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn(dir.path(), port);
    wait_healthy(&base).await;
    let mut stored: HashMap<String, HashMap<u64, String>> = HashMap::new();
    for r in 0..ROOMS {
        let room = format!("crash-{r}");
        let messages = all_messages(&base, &room).await;
        let seqs: Vec<u64> = messages
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{room}: seqs contiguous from 1"
        );
        let texts: HashSet<&str> = messages
            .iter()
            .map(|m| m["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts.len(), messages.len(), "{room}: no duplicates");
        stored.insert(
            room,
            messages
                .iter()
                .map(|m| {
                    (
                        m["seq"].as_u64().unwrap(),
                        m["text"].as_str().unwrap().to_string(),
                    )
                })
                .collect(),
        );
    }
    for (room, seq, text) in &acked {
        assert_eq!(
            stored[room].get(seq),
            Some(text),
            "acked message {room}#{seq} lost"
        );
    }

    // A new message continues the sequence, and SIGTERM stops the server cleanly.
    let client = Client::connect(&base, None).await.unwrap();
    client
        .request("enter_room", &[json!("crash-0")])
        .await
        .unwrap();
    let ack = client
        .request("new_message", &[json!("crash-0"), json!("after the crash")])
        .await
        .unwrap();
    assert_eq!(
        ack["message"]["seq"].as_u64().unwrap(),
        stored["crash-0"].len() as u64 + 1
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "graceful shutdown exits 0");
}
