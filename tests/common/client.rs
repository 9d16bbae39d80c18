//! Ways into a test server: a Socket.IO session as a browser opens one, a
//! JSON GET, and the seqs of the messages they return.

use std::time::Duration;

use noom::client::{Client, Event};
use serde_json::{Value, json};

/// How long a test waits for an event it expects.
pub const WAIT: Duration = Duration::from_secs(5);

/// A session connected over Socket.IO, past its `session` and first
/// `room_change` events.
pub struct Connected {
    pub c: Client,
    pub token: String,
    pub user: String,
    pub nickname: String,
    pub rooms: Vec<Value>,
}

/// Connects to `base`, resuming the session `token` if given.
pub async fn connect(base: &str, token: Option<&str>) -> Connected {
    let auth = token.map(|t| json!({ "session": t }));
    let mut c = Client::connect(base, auth).await.expect("connects");
    let session = c.wait_event("session", WAIT).await.expect("session event");
    let rooms = c
        .wait_event("room_change", WAIT)
        .await
        .expect("room_change event");
    let s = &session.args[0];
    Connected {
        token: s["session"].as_str().expect("token").to_string(),
        user: s["user"].as_str().expect("user").to_string(),
        nickname: s["nickname"].as_str().expect("nickname").to_string(),
        rooms: rooms.args[0].as_array().cloned().unwrap_or_default(),
        c,
    }
}

impl Connected {
    pub async fn req(&self, event: &str, args: &[Value]) -> Value {
        self.c.request(event, args).await.expect("ack")
    }

    /// A request that must succeed.
    pub async fn ok(&self, event: &str, args: &[Value]) -> Value {
        let ack = self.req(event, args).await;
        assert_eq!(ack["ok"], true, "{event} {args:?} failed: {ack}");
        ack
    }

    /// A request that must fail with `code`.
    pub async fn err(&self, event: &str, args: &[Value], code: &str) -> Value {
        let ack = self.req(event, args).await;
        assert_eq!(ack["ok"], false, "{event} {args:?} should fail: {ack}");
        assert_eq!(ack["error"]["code"], code, "{event} {args:?}: {ack}");
        assert!(
            ack["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "error has a message: {ack}"
        );
        ack
    }

    pub async fn event(&mut self, name: &str) -> Event {
        self.c
            .wait_event(name, WAIT)
            .await
            .unwrap_or_else(|e| panic!("no `{name}` event: {e}"))
    }

    /// The next `name` event about the member `id` (its second argument),
    /// skipping those about others still queued.
    pub async fn event_about(&mut self, name: &str, id: &str) -> Event {
        loop {
            let e = self.event(name).await;
            if e.args[1]["id"] == id {
                return e;
            }
        }
    }

    /// Asserts that no `name` event arrives within a short while.
    pub async fn no_event(&mut self, name: &str) {
        if let Ok(e) = self.c.wait_event(name, Duration::from_millis(300)).await {
            panic!("unexpected `{name}` event: {:?}", e.args);
        }
    }

    pub async fn enter(&self, room: &str) -> Value {
        self.ok("enter_room", &[json!(room)]).await
    }

    pub async fn say(&self, room: &str, text: &str) -> Value {
        self.ok("new_message", &[json!(room), json!(text)]).await["message"].clone()
    }
}

/// The status and JSON body (`null` when not JSON) of a GET of `url`.
pub async fn get_json(url: &str) -> (u16, Value) {
    let resp = reqwest::get(url).await.expect("HTTP request");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// The body of a GET of `url`, as text (e.g. `/metrics`).
pub async fn get_text(url: &str) -> String {
    let resp = reqwest::get(url).await.expect("HTTP request");
    resp.text().await.expect("a text body")
}

/// The `seq` of each message in a JSON array of messages.
pub fn seqs(messages: &Value) -> Vec<u64> {
    messages
        .as_array()
        .expect("an array of messages")
        .iter()
        .map(|m| m["seq"].as_u64().expect("a seq"))
        .collect()
}
