//! Calls through a media server in a cluster: each call's media lives on one
//! node, and the other nodes carry their participants' media requests to it.
//!
//! Where a call's media lives is recorded in Redis (`<cluster>:media:<room>`,
//! the node's id). The first media session of a call places it on the live
//! node whose media server holds the fewest participants (each node writes
//! its count to `<cluster>:sfu-load:<node>`); a Lua script makes the choice
//! atomic, so participants arriving on several nodes at once agree on one.
//! The node holding a call's sessions renews its record ([`PLACEMENT_TTL`]);
//! a call whose node died is placed again by its next request.
//!
//! Requests travel as JSON on the pub/sub channel of the node they are for
//! (`<cluster>:media-ask:<node>`), answers on the asker's. The browser's media
//! goes straight to the chosen node: its answer carries that node's address.
//! What the media server tells a participant goes to its socket through the
//! Socket.IO adapter (a group named after the socket id), wherever it is
//! connected.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use socketioxide_redis::drivers::Driver;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::bus::{Bus, RedisBus};

/// How long a call's placement lives without renewal: its node renews it
/// while it holds sessions of the call, and a node that died loses it.
pub const PLACEMENT_TTL: Duration = Duration::from_secs(10);
/// How often a node renews its placements and writes its load.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);
/// Longest a request waits for the node it went to (the media loop itself
/// answers within 5 s).
const ASK_WITHIN: Duration = Duration::from_secs(6);

/// Sets `KEYS[1]` (a call's placement) to `ARGV[1]` unless another live
/// placement is there: when it is missing or names `ARGV[2]` (a node taken
/// for dead). Returns the placement in force.
const PLACE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  return ARGV[1]
end
return cur
"#;

/// The node `KEYS[1]` (a call's placement) names, if it is `ARGV[1]` (this
/// node) or alive (its key, `ARGV[2]` + node, is there); else nil.
const HOST: &str = r#"
local host = redis.call('GET', KEYS[1])
if not host then return false end
if host == ARGV[1] or redis.call('EXISTS', ARGV[2] .. host) == 1 then return host end
return false
"#;

/// Renews `KEYS[1]` for `ARGV[2]` ms if it names `ARGV[1]`.
const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// What one node asks of the media server of another, for a participant
/// connected to it (the fields are the media server's own arguments; SDP
/// as text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MediaAsk {
    Join {
        room: String,
        key: String,
        label: String,
        sdp: String,
        screen: Option<String>,
    },
    Offer {
        key: String,
        sdp: String,
    },
    Answer {
        key: String,
        sdp: String,
    },
    View {
        key: String,
        views: Vec<(String, u32)>,
    },
    Rekey {
        from: String,
        to: String,
        label: String,
    },
    Leave {
        key: String,
    },
}

/// A request the node it went to refused: the error code and message for
/// the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: String,
    pub message: String,
}

/// Carries out a request of another node (set by the signaling layer).
pub type Serve = Arc<dyn Fn(MediaAsk) -> BoxFuture<'static, Result<Value, Refusal>> + Send + Sync>;

/// A message on a node's media channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum Wire {
    /// `id` 0: no answer wanted.
    Ask {
        id: u64,
        from: String,
        ask: MediaAsk,
    },
    Reply {
        id: u64,
        result: Result<Value, Refusal>,
    },
}

/// Why a placement or a request across nodes failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaLinkError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the media server of node `{0}` did not answer in time")]
    Timeout(String),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

/// This node's end of the media routes (nothing alone).
pub struct MediaLink {
    node: String,
    redis: Option<(RedisBus, String)>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Value, Refusal>>>>,
    next: AtomicU64,
}

impl MediaLink {
    pub fn new(bus: &Bus, prefix: &str, node: &str) -> MediaLink {
        MediaLink {
            node: node.to_string(),
            redis: match bus {
                Bus::Alone => None,
                Bus::Redis(bus) => Some((bus.clone(), prefix.to_string())),
            },
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }

    /// Whether calls may be placed on other nodes.
    pub fn is_clustered(&self) -> bool {
        self.redis.is_some()
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    fn placement_key(prefix: &str, room: &str) -> String {
        format!("{prefix}:media:{room}")
    }

    /// The live node the media of `room`'s call is placed on, if any
    /// (alone: this one).
    pub async fn host(&self, room: &str) -> Result<Option<String>, MediaLinkError> {
        let Some((bus, prefix)) = &self.redis else {
            return Ok(Some(self.node.clone()));
        };
        // One round trip: every media request of a participant asks this.
        let mut conn = bus.conn();
        Ok(redis::Script::new(HOST)
            .key(Self::placement_key(prefix, room))
            .arg(&self.node)
            .arg(format!("{prefix}:alive:"))
            .invoke_async(&mut conn)
            .await?)
    }

    /// Whether `node` is alive (its liveness key is there).
    pub async fn is_alive(&self, node: &str) -> Result<bool, MediaLinkError> {
        let Some((bus, prefix)) = &self.redis else {
            return Ok(node == self.node);
        };
        let mut conn = bus.conn();
        Ok(redis::cmd("EXISTS")
            .arg(format!("{prefix}:alive:{node}"))
            .query_async(&mut conn)
            .await?)
    }

    /// The node the media of `room`'s call is placed on, alive or not.
    pub async fn placed_on(&self, room: &str) -> Result<Option<String>, MediaLinkError> {
        let Some((bus, prefix)) = &self.redis else {
            return Ok(Some(self.node.clone()));
        };
        let mut conn = bus.conn();
        Ok(redis::cmd("GET")
            .arg(Self::placement_key(prefix, room))
            .query_async(&mut conn)
            .await?)
    }

    /// Places the media of `room`'s call, unless a live node has it: on the
    /// live node with the fewest media participants. Returns the node.
    pub async fn place(&self, room: &str) -> Result<String, MediaLinkError> {
        let Some((bus, prefix)) = &self.redis else {
            return Ok(self.node.clone());
        };
        let key = Self::placement_key(prefix, room);
        let mut conn = bus.conn();
        let current: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
        let live = super::roster::live_nodes(bus, prefix)
            .await
            .map_err(|e| match e {
                super::roster::RosterError::Redis(e) => MediaLinkError::Redis(e),
                super::roster::RosterError::Json(e) => MediaLinkError::Json(e),
            })?;
        if let Some(current) = &current
            && (current == &self.node || live.contains(current))
        {
            return Ok(current.clone());
        }
        // The least loaded node that runs a media server (its load key is
        // there); this one if none said yet.
        let mut choice = self.node.clone();
        if !live.is_empty() {
            let keys: Vec<String> = live
                .iter()
                .map(|n| format!("{prefix}:sfu-load:{n}"))
                .collect();
            let loads: Vec<Option<u64>> =
                redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
            if let Some((node, _)) = live
                .iter()
                .zip(loads)
                .filter_map(|(n, l)| l.map(|l| (n, l)))
                // Ties go to this node, then by name: stable.
                .min_by_key(|(n, l)| (*l, *n != &self.node, (*n).clone()))
            {
                choice = node.clone();
            }
        }
        let dead = current.unwrap_or_default();
        let placed: String = redis::Script::new(PLACE)
            .key(&key)
            .arg(&choice)
            .arg(&dead)
            .arg(PLACEMENT_TTL.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        if placed == choice {
            tracing::info!(room, node = %placed, "a call's media is placed");
        }
        Ok(placed)
    }

    /// Renews the placements of the calls whose sessions this node holds,
    /// and writes how many media participants it has.
    pub async fn renew(&self, rooms: &[String], participants: u64) -> Result<(), MediaLinkError> {
        let Some((bus, prefix)) = &self.redis else {
            return Ok(());
        };
        let mut conn = bus.conn();
        let ttl = PLACEMENT_TTL.as_millis() as u64;
        let script = redis::Script::new(RENEW);
        for room in rooms {
            let _: i64 = script
                .key(Self::placement_key(prefix, room))
                .arg(&self.node)
                .arg(ttl)
                .invoke_async(&mut conn)
                .await?;
        }
        redis::cmd("SET")
            .arg(format!("{prefix}:sfu-load:{}", self.node))
            .arg(participants)
            .arg("PX")
            .arg(ttl)
            .exec_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Asks the media server of `node` and waits for its answer.
    pub async fn ask(
        &self,
        node: &str,
        ask: MediaAsk,
    ) -> Result<Result<Value, Refusal>, MediaLinkError> {
        let Some((bus, prefix)) = &self.redis else {
            return Err(MediaLinkError::Timeout(node.to_string()));
        };
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id, tx);
        let wire = Wire::Ask {
            id,
            from: self.node.clone(),
            ask,
        };
        let sent = publish(bus, prefix, node, &wire).await;
        if let Err(e) = sent {
            self.pending.lock().remove(&id);
            return Err(e);
        }
        match tokio::time::timeout(ASK_WITHIN, rx).await {
            Ok(Ok(result)) => Ok(result),
            _ => {
                self.pending.lock().remove(&id);
                Err(MediaLinkError::Timeout(node.to_string()))
            }
        }
    }

    /// Tells the media server of `node` something that needs no answer (a
    /// session ends); best effort, in a task.
    pub fn tell(&self, node: &str, ask: MediaAsk) {
        let Some((bus, prefix)) = &self.redis else {
            return;
        };
        let (bus, prefix, node) = (bus.clone(), prefix.clone(), node.to_string());
        let wire = Wire::Ask {
            id: 0,
            from: self.node.clone(),
            ask,
        };
        tokio::spawn(async move {
            if let Err(e) = publish(&bus, &prefix, &node, &wire).await {
                tracing::debug!(node, error = %e, "a media message to another node was lost");
            }
        });
    }

    /// Serves the other nodes' requests with `serve` and takes the answers
    /// to this node's, until `shutdown`. Alone it returns at once.
    pub async fn run(self: Arc<Self>, serve: Serve, shutdown: CancellationToken) {
        let Some((bus, prefix)) = &self.redis else {
            return;
        };
        let channel = format!("{prefix}:media-ask:{}", self.node);
        let mut stream = loop {
            match Bus::Redis(bus.clone())
                .subscribe(channel.clone(), 1024)
                .await
            {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take media requests of other nodes yet; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(RENEW_EVERY) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        };
        loop {
            let body = tokio::select! {
                m = stream.next() => match m {
                    Some((_, body)) => body,
                    None => {
                        tracing::error!("the media request subscription ended");
                        return;
                    }
                },
                _ = shutdown.cancelled() => return,
            };
            match serde_json::from_slice::<Wire>(&body) {
                Ok(Wire::Reply { id, result }) => {
                    if let Some(tx) = self.pending.lock().remove(&id) {
                        let _ = tx.send(result);
                    }
                }
                Ok(Wire::Ask { id, from, ask }) => {
                    let (serve, bus, prefix) = (serve.clone(), bus.clone(), prefix.clone());
                    tokio::spawn(async move {
                        let result = serve(ask).await;
                        if id == 0 {
                            return;
                        }
                        let reply = Wire::Reply { id, result };
                        if let Err(e) = publish(&bus, &prefix, &from, &reply).await {
                            tracing::debug!(node = %from, error = %e, "a media answer to another node was lost");
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "a media message that is not ours"),
            }
        }
    }
}

async fn publish(
    bus: &RedisBus,
    prefix: &str,
    node: &str,
    wire: &Wire,
) -> Result<(), MediaLinkError> {
    let mut conn = bus.conn();
    redis::cmd("PUBLISH")
        .arg(format!("{prefix}:media-ask:{node}"))
        .arg(serde_json::to_vec(wire)?)
        .exec_async(&mut conn)
        .await?;
    Ok(())
}
