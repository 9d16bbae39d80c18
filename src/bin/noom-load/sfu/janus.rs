//! Signaling against Janus 1.1's videoroom plugin through its HTTP API, for
//! the side-by-side run: the same synthetic sessions (`peer`), the same
//! media, Janus's own way of wiring them. Janus gives a participant two
//! PeerConnections: a publisher handle (`join` as publisher, `publish` with
//! our offer) and a multistream subscriber handle (`join` as subscriber with
//! every other feed's audio and video, the video at the requested
//! `substream`; Janus offers, we answer with `start`). Events come by long
//! poll on the session, which also keeps it alive.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::peer::{self, PeerHandle, PeerLog};
use super::received::Window;
use crate::Res;
use crate::http::http_request;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Janus holds a long poll up to 30 s.
const POLL_TIMEOUT: Duration = Duration::from_secs(40);
/// How long an asynchronous answer (an event) may take.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

static TRANSACTION: AtomicU64 = AtomicU64::new(1);

fn transaction() -> String {
    format!("t{}", TRANSACTION.fetch_add(1, Ordering::Relaxed))
}

/// A Janus session: its id, and the events its long poll brings.
pub struct Session {
    addr: String,
    id: u64,
    events: mpsc::UnboundedReceiver<Value>,
    /// Events that arrived while another was awaited.
    held: Vec<Value>,
}

async fn post(addr: &str, path: &str, body: Value) -> Res<Value> {
    let (status, text) =
        http_request(addr, "POST", path, Some(&body.to_string()), REQUEST_TIMEOUT).await?;
    if status != 200 {
        return Err(format!("Janus answered {status} to {body}").into());
    }
    let reply: Value = serde_json::from_str(&text)?;
    if reply.get("janus").and_then(Value::as_str) == Some("error") {
        return Err(format!("Janus refused {body}: {}", reply["error"]).into());
    }
    Ok(reply)
}

impl Session {
    pub async fn create(addr: &str, stop: CancellationToken) -> Res<Session> {
        let reply = post(
            addr,
            "/janus",
            json!({ "janus": "create", "transaction": transaction() }),
        )
        .await?;
        let id = reply
            .pointer("/data/id")
            .and_then(Value::as_u64)
            .ok_or("Janus create: no session id")?;
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(long_poll(addr.to_string(), id, tx, stop));
        Ok(Session {
            addr: addr.to_string(),
            id,
            events,
            held: Vec::new(),
        })
    }

    /// Attaches a videoroom handle; returns its id.
    pub async fn attach(&self) -> Res<u64> {
        let reply = post(
            &self.addr,
            &format!("/janus/{}", self.id),
            json!({
                "janus": "attach",
                "plugin": "janus.plugin.videoroom",
                "transaction": transaction(),
            }),
        )
        .await?;
        reply
            .pointer("/data/id")
            .and_then(Value::as_u64)
            .ok_or_else(|| "Janus attach: no handle id".into())
    }

    /// A plugin message; returns the synchronous reply (`success`) or, after
    /// an `ack`, the event that answers it.
    pub async fn message(&mut self, handle: u64, body: Value, jsep: Option<Value>) -> Res<Value> {
        let t = transaction();
        let mut request = json!({ "janus": "message", "transaction": t, "body": body });
        if let Some(jsep) = jsep {
            request["jsep"] = jsep;
        }
        let reply = post(&self.addr, &format!("/janus/{}/{handle}", self.id), request).await?;
        let reply = match reply.get("janus").and_then(Value::as_str) {
            Some("ack") => self.event(&t).await?,
            _ => reply,
        };
        if let Some(error) = reply.pointer("/plugindata/data/error") {
            return Err(format!("videoroom refused {body}: {error}").into());
        }
        Ok(reply)
    }

    async fn event(&mut self, transaction: &str) -> Res<Value> {
        let is_it = |e: &Value| e.get("transaction").and_then(Value::as_str) == Some(transaction);
        if let Some(i) = self.held.iter().position(is_it) {
            return Ok(self.held.remove(i));
        }
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| format!("no Janus event for {transaction}"))?
                .ok_or("the Janus long poll stopped")?;
            if is_it(&event) {
                return Ok(event);
            }
            // Only events answering a request are of use later.
            if event.get("transaction").is_some() {
                self.held.push(event);
            }
        }
    }
}

/// Long-polls the session until `stop`, passing every event on.
async fn long_poll(
    addr: String,
    id: u64,
    tx: mpsc::UnboundedSender<Value>,
    stop: CancellationToken,
) {
    let path = format!("/janus/{id}?maxev=20");
    loop {
        let polled = tokio::select! {
            _ = stop.cancelled() => return,
            r = http_request(&addr, "GET", &path, None, POLL_TIMEOUT) => r,
        };
        let Ok((200, body)) = polled else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let events = match serde_json::from_str::<Value>(&body) {
            Ok(Value::Array(events)) => events,
            Ok(event) => vec![event],
            Err(_) => continue,
        };
        for event in events {
            if tx.send(event).is_err() {
                return;
            }
        }
    }
}

/// Creates videoroom `room` for `publishers` publishers, simulcast VP8 and Opus.
pub async fn create_room(
    addr: &str,
    room: u64,
    publishers: usize,
    stop: CancellationToken,
) -> Res<()> {
    let mut control = Session::create(addr, stop).await?;
    let handle = control.attach().await?;
    control
        .message(
            handle,
            json!({
                "request": "create",
                "room": room,
                "publishers": publishers,
                "videocodec": "vp8",
                "audiocodec": "opus",
                "bitrate": 0,
                "fir_freq": 0,
                "notify_joining": false,
                "permanent": false,
            }),
            None,
        )
        .await?;
    Ok(())
}

/// A participant's publishing side, published.
pub struct Publisher {
    pub session: Session,
    pub feed: u64,
    pub video_mid: String,
    pub audio_mid: String,
    pub peer: PeerHandle,
    pub peer_task: tokio::task::JoinHandle<PeerLog>,
}

/// Joins `room` as publisher `index` and publishes the synthetic media.
pub async fn publish(
    addr: &str,
    bind: std::net::IpAddr,
    room: u64,
    index: u32,
    window: Arc<Window>,
    stop: CancellationToken,
) -> Res<Publisher> {
    let mut session = Session::create(addr, stop.clone()).await?;
    let handle = session.attach().await?;
    let joined = session
        .message(
            handle,
            json!({
                "request": "join",
                "ptype": "publisher",
                "room": room,
                "display": format!("load-{index}"),
            }),
            None,
        )
        .await?;
    let feed = joined
        .pointer("/plugindata/data/id")
        .and_then(Value::as_u64)
        .ok_or("videoroom join: no publisher id")?;
    let (peer, peer_task) = peer::spawn(bind, index, window, stop).await?;
    let offer = peer.offer(&format!("load-{index}")).await?;
    let published = session
        .message(
            handle,
            json!({ "request": "publish", "audio": true, "video": true }),
            Some(json!({ "type": "offer", "sdp": offer.sdp, "trickle": false })),
        )
        .await?;
    let answer = published
        .pointer("/jsep/sdp")
        .and_then(Value::as_str)
        .ok_or("videoroom publish: no answer")?;
    peer.accept_answer(answer).await?;
    Ok(Publisher {
        session,
        feed,
        video_mid: offer.video_mid,
        audio_mid: offer.audio_mid,
        peer,
        peer_task,
    })
}

/// The receiving side of a participant.
pub struct Subscriber {
    pub peer: PeerHandle,
    pub peer_task: tokio::task::JoinHandle<PeerLog>,
}

/// Subscribes, on `session`, to the audio and video of `feeds` (feed id,
/// audio mid, video mid), the video at `substream`.
#[allow(clippy::too_many_arguments)]
pub async fn subscribe(
    session: &mut Session,
    bind: std::net::IpAddr,
    room: u64,
    index: u32,
    feeds: &[(u64, String, String)],
    substream: u8,
    window: Arc<Window>,
    stop: CancellationToken,
) -> Res<Subscriber> {
    let handle = session.attach().await?;
    let streams: Vec<Value> = feeds
        .iter()
        .flat_map(|(feed, audio, video)| {
            [
                json!({ "feed": feed, "mid": audio }),
                json!({ "feed": feed, "mid": video, "substream": substream }),
            ]
        })
        .collect();
    let attached = session
        .message(
            handle,
            json!({ "request": "join", "ptype": "subscriber", "room": room, "streams": streams }),
            None,
        )
        .await?;
    let offer = attached
        .pointer("/jsep/sdp")
        .and_then(Value::as_str)
        .ok_or("videoroom subscribe: no offer")?;
    let (peer, peer_task) = peer::spawn(bind, index, window, stop).await?;
    let answer = peer.accept_offer(offer).await?;
    session
        .message(
            handle,
            json!({ "request": "start" }),
            Some(json!({ "type": "answer", "sdp": answer, "trickle": false })),
        )
        .await?;
    Ok(Subscriber { peer, peer_task })
}
