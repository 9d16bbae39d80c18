//! Live membership across nodes: who is connected where, in which rooms and
//! calls, kept in Redis and followed by every node.
//!
//! Each node owns its own connections: it writes each one's [`Presence`]
//! to its hash in Redis (`<cluster>:conns:<node>`) and announces the change
//! on the `<cluster>:roster` channel, in the order the changes happened (one
//! queue, one writer). Every node subscribes to the channel and keeps a copy
//! of the others' connections, which the hub merges with its own to answer
//! member lists, counts and call checks without asking Redis.
//!
//! A node proves it is alive with a key that expires ([`NODE_TTL`]),
//! renewed every [`HEARTBEAT`]. When a node's key is gone, any other node
//! drops its connections (in Redis, and from every node's copy with a
//! message): a node that died leaves every count within `NODE_TTL +
//! HEARTBEAT`. A node only judges others after its own Redis has worked for
//! a whole `NODE_TTL`, so the nodes coming back from a Redis outage do not
//! bury each other.
//!
//! Redis unavailable: changes cannot be written; the node notes that it is
//! behind, and once Redis answers again it writes its whole state anew,
//! announces it, and reloads everyone else's (the hub tells its own clients
//! what changed meanwhile).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use socketioxide_redis::drivers::Driver;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::bus::{Bus, RedisBus};

/// How often a node renews its liveness key and looks at the others'.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a node's liveness key lives without renewal: a node silent this
/// long is taken for dead.
pub const NODE_TTL: Duration = Duration::from_secs(5);

/// The nodes of the cluster `prefix` whose liveness key is there now.
pub async fn live_nodes(bus: &RedisBus, prefix: &str) -> Result<Vec<String>, RosterError> {
    let mut conn = bus.conn();
    let mut nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{prefix}:nodes"))
        .query_async(&mut conn)
        .await?;
    if nodes.is_empty() {
        return Ok(nodes);
    }
    nodes.sort();
    let keys: Vec<String> = nodes
        .iter()
        .map(|n| format!("{prefix}:alive:{n}"))
        .collect();
    let alive: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
    Ok(nodes
        .into_iter()
        .zip(alive)
        .filter_map(|(n, a)| a.map(|_| n))
        .collect())
}

/// How long a call join counts as in flight after its membership change is
/// written: the other nodes have applied it by then.
pub const JOIN_WINDOW: Duration = Duration::from_millis(500);
/// A join still recorded this long after it began is forgotten (its node
/// died, or lost Redis, before it was done).
const JOIN_FORGOTTEN: Duration = Duration::from_secs(5);

/// Records `ARGV[1]` joining the call `KEYS[1]` at Redis's own time (one
/// clock, so the order is the order of arrival), forgets joins older than
/// `ARGV[2]` µs, and returns those that began before it.
const JOINING: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- Lua prints large numbers in 14 digits: these need all 16.
local score = string.format('%.0f', now)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - tonumber(ARGV[2])))
redis.call('ZADD', KEYS[1], score, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. score)
"#;

/// The longest a request waits for its membership change to be written.
const SETTLE_MAX: Duration = Duration::from_secs(3);

/// One connection as the other nodes see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub user: String,
    pub nickname: String,
    /// Its socket id before a reconnect, as it said when joining a call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub was: Option<String>,
    /// Rooms it is in, in the order it entered them.
    #[serde(default)]
    pub rooms: Vec<String>,
    /// Rooms whose call it is in.
    #[serde(default)]
    pub calls: Vec<String>,
    /// Rooms whose call it raised its hand in.
    #[serde(default)]
    pub hands: Vec<String>,
    /// Rooms whose lobby it waits in (their hosts, on any node, let it in).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<String>,
    /// Its client's address, for the admin page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// When it connected, ms since the Unix epoch.
    #[serde(default)]
    pub since: i64,
}

/// Another node's connections, by socket id.
pub type NodeConns = HashMap<String, Presence>;

/// An administrator's action, carried out by every node on its own
/// connections (the node that took it does its part itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum Order {
    /// Close the connection `sid`, telling it why (`disconnected` or
    /// `session_revoked`).
    Kick { sid: String, reason: String },
    /// End the call of `room`.
    EndCall { room: String },
    /// Take everyone out of `room`.
    CloseRoom { room: String },
    /// The sessions of `user` are revoked: close its connections, end its
    /// relay allocations.
    RevokeUser { user: String },
    /// A host or the admin took `sid` out of the call of `room` (`by`: the
    /// `removed` event's `by`).
    RemoveFromCall {
        sid: String,
        room: String,
        by: serde_json::Value,
    },
    /// A host or the admin let `sid`, waiting in the lobby of `room`, in
    /// (or turned it away).
    Admission {
        sid: String,
        room: String,
        admitted: bool,
    },
    /// A host or the admin took `user` out of `room` (`payload`: the
    /// `removed` event's).
    RemoveFromRoom {
        user: String,
        room: String,
        payload: serde_json::Value,
    },
}

/// What the hub learns of the other nodes.
#[derive(Debug)]
pub enum RosterEvent {
    /// An administrator's action on another node, to carry out here.
    Order(Order),
    /// Everything known of the other nodes, replacing what was known (at
    /// start, and after Redis came back).
    Snapshot(HashMap<String, NodeConns>),
    /// One node's connections, replacing what was known of it (empty: the
    /// node is gone, or restarted).
    Node { node: String, conns: NodeConns },
    /// A connection of another node changed.
    Set {
        node: String,
        sid: String,
        presence: Presence,
    },
    /// A connection of another node closed.
    Gone { node: String, sid: String },
}

/// A message on the roster channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum Wire {
    Set {
        node: String,
        sid: String,
        p: Presence,
    },
    Gone {
        node: String,
        sid: String,
    },
    Full {
        node: String,
        conns: NodeConns,
    },
    Order {
        node: String,
        order: Order,
    },
}

enum Change {
    Set(String, Presence),
    Gone(String),
    /// Write this node's whole state anew (after an outage, and at start).
    Rewrite,
}

/// This node's side of the roster: the queue of its changes, and what it
/// has written.
pub struct Roster {
    node: String,
    /// `None` alone: changes go nowhere.
    redis: Option<Shared>,
}

struct Shared {
    bus: RedisBus,
    prefix: String,
    queue: mpsc::UnboundedSender<Change>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Change>>>,
    /// This node's connections as last put: rewritten whole after an outage.
    local: Mutex<NodeConns>,
    /// Changes queued so far, and written (or given up on) so far.
    queued: AtomicU64,
    written: watch::Sender<u64>,
    /// Redis may not have this node's state (at start, after a failed
    /// write, after another node dropped it): it must be rewritten whole.
    behind: AtomicBool,
    /// A rewrite is in the queue.
    rewrite_queued: AtomicBool,
    /// Since when Redis has answered without a failure.
    healthy_since: Mutex<Option<Instant>>,
    /// When Redis last answered a heartbeat.
    last_ok: Mutex<Option<Instant>>,
    /// What this node says of its health (JSON), the value of its
    /// liveness key: any node's admin page lists every node's.
    health: Mutex<Option<String>>,
}

/// A node of the cluster as Redis lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeHealth {
    pub node: String,
    /// What it last said of its health; `None`: its liveness key expired
    /// (it is about to be dropped) or it said nothing yet.
    pub health: Option<serde_json::Value>,
}

/// The roster could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("a roster entry that is not JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl Roster {
    /// The roster of `node` in the cluster `prefix` on `bus` (nothing alone).
    pub fn new(bus: &Bus, prefix: &str, node: &str) -> Roster {
        let redis = match bus {
            Bus::Alone => None,
            Bus::Redis(bus) => {
                let (queue, receiver) = mpsc::unbounded_channel();
                Some(Shared {
                    bus: bus.clone(),
                    prefix: prefix.to_string(),
                    queue,
                    receiver: Mutex::new(Some(receiver)),
                    local: Mutex::new(HashMap::new()),
                    queued: AtomicU64::new(0),
                    written: watch::channel(0).0,
                    behind: AtomicBool::new(true),
                    rewrite_queued: AtomicBool::new(false),
                    healthy_since: Mutex::new(None),
                    last_ok: Mutex::new(None),
                    health: Mutex::new(None),
                })
            }
        };
        Roster {
            node: node.to_string(),
            redis,
        }
    }

    /// Whether other nodes may exist.
    pub fn is_clustered(&self) -> bool {
        self.redis.is_some()
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Queues the new state of one of this node's connections (cheap; fine
    /// under a lock: the write happens in [`Roster::run`]).
    pub fn put(&self, sid: &str, presence: Presence) {
        if let Some(r) = &self.redis {
            r.local.lock().insert(sid.to_string(), presence.clone());
            r.queued.fetch_add(1, Ordering::SeqCst);
            let _ = r.queue.send(Change::Set(sid.to_string(), presence));
        }
    }

    /// Queues the end of one of this node's connections.
    pub fn gone(&self, sid: &str) {
        if let Some(r) = &self.redis {
            r.local.lock().remove(sid);
            r.queued.fetch_add(1, Ordering::SeqCst);
            let _ = r.queue.send(Change::Gone(sid.to_string()));
        }
    }

    /// Has every other node carry out `order` on its own connections
    /// (nothing alone). Fails while Redis does not answer.
    pub async fn order(&self, order: Order) -> Result<(), RosterError> {
        let Some(r) = &self.redis else { return Ok(()) };
        let wire = Wire::Order {
            node: self.node.clone(),
            order,
        };
        let mut conn = r.bus.conn();
        redis::cmd("PUBLISH")
            .arg(format!("{}:roster", r.prefix))
            .arg(serde_json::to_vec(&wire)?)
            .exec_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Waits until the changes queued so far are written (or given up on),
    /// so that what a request then broadcasts reaches the other nodes after
    /// the membership it depends on.
    pub async fn settled(&self) {
        let Some(r) = &self.redis else { return };
        let target = r.queued.load(Ordering::SeqCst);
        let mut written = r.written.subscribe();
        // Bounded: a writer stuck on Redis (or stopped) must not hold requests.
        let _ = tokio::time::timeout(SETTLE_MAX, written.wait_for(|w| *w >= target)).await;
    }

    /// Records that `sid` is joining the call of `room`; returns the
    /// connections that began joining it before, on any node, and are not
    /// done (none alone, or when Redis does not answer: the join then relies
    /// on this node's view). Each node checks a call's capacity against its
    /// own copy of the participants, which another node's newest joiner
    /// reaches a moment later: earlier joins in flight that the copy lacks
    /// count as participants. Only earlier ones, in Redis's order, so of two
    /// joins racing for the last place the first gets it. Release with
    /// [`Roster::joined`].
    pub async fn joining(&self, room: &str, sid: &str) -> Vec<String> {
        let Some(r) = &self.redis else {
            return Vec::new();
        };
        let mut conn = r.bus.conn();
        let counted: Result<Vec<String>, redis::RedisError> = redis::Script::new(JOINING)
            .key(format!("{}:joining:{room}", r.prefix))
            .arg(sid)
            .arg(JOIN_FORGOTTEN.as_micros() as u64)
            .arg(JOIN_FORGOTTEN.as_millis() as u64)
            .invoke_async(&mut conn)
            .await;
        counted.unwrap_or_else(|e| {
            tracing::debug!(room, error = %e, "a call join is not recorded in Redis");
            Vec::new()
        })
    }

    /// The join of `sid` recorded by [`Roster::joining`] is done (or was
    /// refused): it stops counting once the other nodes have surely applied
    /// it ([`JOIN_WINDOW`]; a task).
    pub fn joined(&self, room: &str, sid: &str, refused: bool) {
        let Some(r) = &self.redis else { return };
        let (bus, key, sid) = (
            r.bus.clone(),
            format!("{}:joining:{room}", r.prefix),
            sid.to_string(),
        );
        tokio::spawn(async move {
            if !refused {
                tokio::time::sleep(JOIN_WINDOW).await;
            }
            let mut conn = bus.conn();
            let _: Result<i64, _> = redis::cmd("ZREM")
                .arg(&key)
                .arg(&sid)
                .query_async(&mut conn)
                .await;
        });
    }

    /// What this node says of its health, from its next heartbeat on.
    pub fn set_health(&self, health: &serde_json::Value) {
        if let Some(r) = &self.redis {
            *r.health.lock() = Some(health.to_string());
        }
    }

    /// Every node Redis lists, with what it last said of its health, by
    /// name (alone: none).
    pub async fn nodes(&self) -> Result<Vec<NodeHealth>, RosterError> {
        let Some(r) = &self.redis else {
            return Ok(Vec::new());
        };
        let mut conn = r.bus.conn();
        let mut nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{}:nodes", r.prefix))
            .query_async(&mut conn)
            .await?;
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        nodes.sort();
        let keys: Vec<String> = nodes.iter().map(|n| self.alive_key(r, n)).collect();
        let values: Vec<Option<String>> =
            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        Ok(nodes
            .into_iter()
            .zip(values)
            .map(|(node, value)| NodeHealth {
                node,
                // A node of an older version says only its version.
                health: value.and_then(|v| serde_json::from_str(&v).ok()),
            })
            .collect())
    }

    /// The Redis server's address (`None` alone).
    pub fn redis_address(&self) -> Option<&str> {
        self.redis.as_ref().map(|r| r.bus.address.as_str())
    }

    /// Whether Redis answers now (always true alone).
    pub fn healthy(&self) -> bool {
        // A heartbeat stuck on an unreachable Redis has not failed yet: its
        // silence counts too.
        self.redis.as_ref().is_none_or(|r| {
            r.healthy_since.lock().is_some()
                && r.last_ok
                    .lock()
                    .is_some_and(|at| at.elapsed() < HEARTBEAT * 3)
        })
    }

    /// Writes this node's changes, follows the others' and watches who is
    /// alive, until `shutdown`; what it learns goes to `events`. Alone it
    /// returns at once.
    pub async fn run(
        self: Arc<Self>,
        events: mpsc::UnboundedSender<RosterEvent>,
        shutdown: CancellationToken,
    ) {
        let Some(r) = &self.redis else { return };
        let Some(receiver) = r.receiver.lock().take() else {
            return;
        };
        let channel = format!("{}:roster", r.prefix);
        // Subscribe before reading anything, so no change falls between.
        let mut stream = loop {
            match Bus::Redis(r.bus.clone())
                .subscribe(channel.clone(), 4096)
                .await
            {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot follow the cluster's roster yet; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(HEARTBEAT) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        };
        let writer = tokio::spawn(self.clone().write(receiver, shutdown.clone()));
        // What the others have must be read (at start, and after an outage).
        let mut stale = true;
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some((_, body)) = message else {
                        tracing::error!("the roster subscription ended");
                        break;
                    };
                    match serde_json::from_slice::<Wire>(&body) {
                        Ok(wire) => self.received(r, wire, &events),
                        Err(e) => tracing::warn!(error = %e, "a roster message that is not ours"),
                    }
                }
                _ = beat.tick() => self.heartbeat(r, &mut stale, &events).await,
                _ = shutdown.cancelled() => break,
            }
        }
        writer.abort();
        // A node that stops cleanly leaves at once instead of at its TTL.
        let mut conn = r.bus.conn();
        let _ = redis::pipe()
            .del(self.conns_key(r, &self.node))
            .del(self.alive_key(r, &self.node))
            .srem(format!("{}:nodes", r.prefix), &self.node)
            .publish(
                &channel,
                serde_json::to_vec(&Wire::Full {
                    node: self.node.clone(),
                    conns: HashMap::new(),
                })
                .unwrap_or_default(),
            )
            .exec_async(&mut conn)
            .await;
    }

    fn received(&self, r: &Shared, wire: Wire, events: &mpsc::UnboundedSender<RosterEvent>) {
        let event = match wire {
            Wire::Full { node, conns } if node == self.node => {
                // Another node took this one for dead and dropped its
                // connections: write them again.
                if conns != *r.local.lock() {
                    tracing::warn!(
                        "another node dropped this node's connections; writing them again"
                    );
                    r.behind.store(true, Ordering::SeqCst);
                }
                return;
            }
            Wire::Set { node, .. } | Wire::Gone { node, .. } | Wire::Order { node, .. }
                if node == self.node =>
            {
                return;
            }
            Wire::Order { order, .. } => RosterEvent::Order(order),
            Wire::Set { node, sid, p } => RosterEvent::Set {
                node,
                sid,
                presence: p,
            },
            Wire::Gone { node, sid } => RosterEvent::Gone { node, sid },
            Wire::Full { node, conns } => RosterEvent::Node { node, conns },
        };
        let _ = events.send(event);
    }

    fn alive_key(&self, r: &Shared, node: &str) -> String {
        format!("{}:alive:{node}", r.prefix)
    }

    fn conns_key(&self, r: &Shared, node: &str) -> String {
        format!("{}:conns:{node}", r.prefix)
    }

    /// Writes the queued changes in order; a rewrite of the whole state in
    /// its turn among them.
    async fn write(
        self: Arc<Self>,
        mut receiver: mpsc::UnboundedReceiver<Change>,
        shutdown: CancellationToken,
    ) {
        let Some(r) = &self.redis else { return };
        let channel = format!("{}:roster", r.prefix);
        let key = self.conns_key(r, &self.node);
        let mut conn = r.bus.conn();
        let mut done = 0u64;
        loop {
            let change = tokio::select! {
                c = receiver.recv() => match c {
                    Some(c) => c,
                    None => return,
                },
                _ = shutdown.cancelled() => return,
            };
            let wire = match change {
                Change::Rewrite => {
                    // Everything put so far is in `local`, the changes
                    // skipped while behind included.
                    let local = r.local.lock().clone();
                    let mut pipe = redis::pipe();
                    pipe.atomic().del(&key).ignore();
                    for (sid, p) in &local {
                        pipe.hset(&key, sid, serde_json::to_string(p).unwrap_or_default())
                            .ignore();
                    }
                    let full = Wire::Full {
                        node: self.node.clone(),
                        conns: local,
                    };
                    pipe.publish(&channel, serde_json::to_vec(&full).unwrap_or_default())
                        .ignore();
                    match pipe.exec_async(&mut conn).await {
                        Ok(()) => {
                            r.behind.store(false, Ordering::SeqCst);
                            tracing::info!(node = %self.node, "this node's members are written to Redis");
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot write this node's members to Redis yet");
                        }
                    }
                    r.rewrite_queued.store(false, Ordering::SeqCst);
                    continue;
                }
                // While behind, single changes are pointless: the rewrite
                // after the outage carries them.
                _ if r.behind.load(Ordering::SeqCst) => None,
                Change::Set(sid, p) => Some((
                    redis::cmd("HSET")
                        .arg(&key)
                        .arg(&sid)
                        .arg(serde_json::to_string(&p).unwrap_or_default())
                        .clone(),
                    Wire::Set {
                        node: self.node.clone(),
                        sid,
                        p,
                    },
                )),
                Change::Gone(sid) => Some((
                    redis::cmd("HDEL").arg(&key).arg(&sid).clone(),
                    Wire::Gone {
                        node: self.node.clone(),
                        sid,
                    },
                )),
            };
            done += 1;
            if let Some((command, wire)) = wire {
                // (No MULTI: the change and its announcement need no
                // isolation, and a reconnection between MULTI and EXEC
                // would fail the pair.)
                let mut pipe = redis::pipe();
                pipe.add_command(command)
                    .ignore()
                    .publish(&channel, serde_json::to_vec(&wire).unwrap_or_default())
                    .ignore();
                if let Err(e) = pipe.exec_async(&mut conn).await {
                    tracing::warn!(error = %e, "a membership change could not reach Redis; it is written again when Redis answers");
                    r.behind.store(true, Ordering::SeqCst);
                }
            }
            r.written.send_replace(done);
        }
    }

    /// Renews this node's key; after an outage (or at start) has this
    /// node's state rewritten and reloads the others'; drops the nodes whose
    /// key expired.
    async fn heartbeat(
        &self,
        r: &Shared,
        stale: &mut bool,
        events: &mpsc::UnboundedSender<RosterEvent>,
    ) {
        let mut conn = r.bus.conn();
        let said = r
            .health
            .lock()
            .clone()
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
        let renewed: Result<(), redis::RedisError> = redis::pipe()
            .cmd("SET")
            .arg(self.alive_key(r, &self.node))
            .arg(said)
            .arg("PX")
            .arg(NODE_TTL.as_millis() as u64)
            .ignore()
            .sadd(format!("{}:nodes", r.prefix), &self.node)
            .ignore()
            .exec_async(&mut conn)
            .await;
        r.bus.mark(renewed.is_ok());
        if let Err(e) = renewed {
            if r.healthy_since.lock().take().is_some() {
                tracing::warn!(error = %e, "Redis does not answer: this node cannot see the other nodes' members meanwhile");
            }
            r.behind.store(true, Ordering::SeqCst);
            *stale = true;
            return;
        }
        let since = *r.healthy_since.lock().get_or_insert_with(Instant::now);
        *r.last_ok.lock() = Some(Instant::now());
        if r.behind.load(Ordering::SeqCst) && !r.rewrite_queued.swap(true, Ordering::SeqCst) {
            let _ = r.queue.send(Change::Rewrite);
        }
        if *stale {
            match self.others(r, &mut conn).await {
                Ok(others) => {
                    *stale = false;
                    let _ = events.send(RosterEvent::Snapshot(others));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the other nodes' members yet");
                    return;
                }
            }
        }
        if since.elapsed() >= NODE_TTL
            && let Err(e) = self.bury_dead(r, &mut conn, events).await
        {
            tracing::warn!(error = %e, "cannot check the other nodes");
        }
    }

    /// The other nodes' connections, as Redis has them.
    async fn others(
        &self,
        r: &Shared,
        conn: &mut ConnectionManager,
    ) -> Result<HashMap<String, NodeConns>, RosterError> {
        let nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{}:nodes", r.prefix))
            .query_async(conn)
            .await?;
        let mut others = HashMap::new();
        for node in nodes.into_iter().filter(|n| *n != self.node) {
            let entries: HashMap<String, String> = redis::cmd("HGETALL")
                .arg(self.conns_key(r, &node))
                .query_async(conn)
                .await?;
            let mut conns = NodeConns::new();
            for (sid, json) in entries {
                conns.insert(sid, serde_json::from_str(&json)?);
            }
            others.insert(node, conns);
        }
        Ok(others)
    }

    /// Drops the nodes whose liveness key expired: from Redis, and from
    /// every node's copy (a message, which this node also acts on).
    async fn bury_dead(
        &self,
        r: &Shared,
        conn: &mut ConnectionManager,
        events: &mpsc::UnboundedSender<RosterEvent>,
    ) -> Result<(), RosterError> {
        let nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{}:nodes", r.prefix))
            .query_async(conn)
            .await?;
        let others: Vec<String> = nodes.into_iter().filter(|n| *n != self.node).collect();
        if others.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = others.iter().map(|n| self.alive_key(r, n)).collect();
        let alive: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(conn).await?;
        for (node, alive) in others.iter().zip(alive) {
            if alive.is_some() {
                continue;
            }
            tracing::warn!(node = %node, "a node stopped answering; its connections are dropped");
            let gone = Wire::Full {
                node: node.clone(),
                conns: HashMap::new(),
            };
            redis::pipe()
                .atomic()
                .del(self.conns_key(r, node))
                .srem(format!("{}:nodes", r.prefix), node)
                .publish(format!("{}:roster", r.prefix), serde_json::to_vec(&gone)?)
                .exec_async(conn)
                .await?;
            let _ = events.send(RosterEvent::Node {
                node: node.clone(),
                conns: HashMap::new(),
            });
        }
        Ok(())
    }
}
