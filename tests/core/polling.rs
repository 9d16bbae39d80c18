//! The HTTP long-polling transport, driven by hand at the Engine.IO level.

use serde_json::{Value, json};

use crate::common::*;

struct Poller {
    http: reqwest::Client,
    url: String,
    /// Packets received but not yet matched by `until`.
    pending: std::sync::Mutex<std::collections::VecDeque<String>>,
}

impl Poller {
    async fn open(base: &str) -> Poller {
        let http = reqwest::Client::new();
        let body = http
            .get(format!("{base}/socket.io/?EIO=4&transport=polling"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let open: Value =
            serde_json::from_str(body.strip_prefix('0').expect("OPEN packet")).unwrap();
        let sid = open["sid"].as_str().unwrap().to_string();
        Poller {
            http,
            url: format!("{base}/socket.io/?EIO=4&transport=polling&sid={sid}"),
            pending: Default::default(),
        }
    }

    async fn send(&self, packet: &str) {
        let resp = self
            .http
            .post(&self.url)
            .body(packet.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }

    /// Packets from one GET (records are separated by 0x1e); pings are answered.
    async fn poll(&self) -> Vec<String> {
        let body = self
            .http
            .get(&self.url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut packets = Vec::new();
        for p in body.split('\u{1e}') {
            if p == "2" {
                self.send("3").await;
            } else {
                packets.push(p.to_string());
            }
        }
        packets
    }

    /// The first packet starting with `prefix`, polling as long as needed;
    /// other packets stay pending for later calls.
    async fn until(&self, prefix: &str) -> String {
        for _ in 0..10 {
            {
                let mut pending = self.pending.lock().unwrap();
                if let Some(i) = pending.iter().position(|p| p.starts_with(prefix)) {
                    return pending.remove(i).unwrap();
                }
            }
            let fresh = self.poll().await;
            self.pending.lock().unwrap().extend(fresh);
        }
        panic!("no packet starting with {prefix}");
    }
}

fn body(packet: &str, prefix: &str) -> Value {
    serde_json::from_str(&packet[prefix.len()..]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_speaks_the_same_contract() {
    let s = TestServer::start().await;
    let mut ws_peer = s.client().await;
    ws_peer.enter("mixed").await;

    let p = Poller::open(&s.base).await;
    p.send("40").await;
    let connected = p.until("40").await;
    assert!(connected.starts_with("40{\"sid\""), "{connected}");
    let session = body(&p.until("42[\"session\"").await, "42");
    assert_eq!(session[1]["session"].as_str().map(str::len), Some(64));
    let rooms = body(&p.until("42[\"room_change\"").await, "42");
    assert_eq!(rooms[1], json!([{ "name": "mixed", "count": 1 }]));

    p.send(r#"421["enter_room","mixed"]"#).await;
    let ack = body(&p.until("431").await, "431");
    assert_eq!(ack[0]["ok"], true, "{ack}");
    assert_eq!(ack[0]["count"], 2);
    assert_eq!(ws_peer.event("welcome").await.args[0], "mixed");

    p.send(r#"422["new_message","mixed","over polling"]"#).await;
    let ack = body(&p.until("432").await, "432");
    assert_eq!(ack[0]["message"]["seq"], 1);
    assert_eq!(
        ws_peer.event("new_message").await.args[0]["text"],
        "over polling"
    );

    ws_peer.say("mixed", "over websocket").await;
    let event = body(&p.until("42[\"new_message\"").await, "42");
    assert_eq!(event[1]["text"], "over websocket");

    p.send(r#"423["nickname",17]"#).await;
    let ack = body(&p.until("433").await, "433");
    assert_eq!(ack[0]["error"]["code"], "invalid_argument");

    let metrics = get_text(&s.url("/metrics")).await;
    assert!(
        metrics.contains("noom_connections{transport=\"polling\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("noom_connections{transport=\"websocket\"} 1"),
        "{metrics}"
    );
}
