//! The bus between nodes: the pub/sub that the Socket.IO adapter
//! (`socketioxide-redis`) carries broadcasts, socket-addressed events and
//! requests on.
//!
//! Alone (no `cluster.redis_url`) the bus carries nothing: every broadcast
//! stays on this node, as with socketioxide's local adapter. With Redis, one
//! multiplexed connection (redis' `ConnectionManager`, RESP3) publishes,
//! subscribes and receives the messages of its subscriptions as pushes. It
//! reconnects by itself when Redis restarts and subscribes again to what it
//! had, so a node recovers without a restart; what was published meanwhile
//! is lost to it (Redis pub/sub keeps nothing), which the clients cover by
//! asking for what they missed (`after: seq`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;

/// How long one Redis command may take before it fails (a request waiting
/// on it answers with an error rather than hanging).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one attempt to connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest pause between two reconnection attempts.
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(1);
/// The oldest Redis whose RESP3 pushes the bus relies on.
const REDIS_MAJOR_MIN: u32 = 7;

/// Why the bus could not start or a command failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("Redis at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error(
        "Redis at {url} is version {version}; noom needs Redis {REDIS_MAJOR_MIN} or later (RESP3)"
    )]
    TooOld { url: String, version: String },
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// The adapter's driver: nothing when alone, Redis in a cluster.
#[derive(Clone)]
pub enum Bus {
    Alone,
    Redis(RedisBus),
}

/// One Redis connection shared by the adapter and the cluster's own
/// commands (membership, heartbeats).
#[derive(Clone)]
pub struct RedisBus {
    conn: ConnectionManager,
    handlers: Handlers,
    /// `host:port` of the server, without credentials: for logs and errors.
    pub address: String,
    /// The server's version, as `INFO server` says it.
    pub version: String,
    /// Redis does not answer (a command failed; the roster's heartbeat
    /// says when it answers again): broadcasts stay on this node meanwhile
    /// instead of each waiting for Redis to fail.
    down: Arc<AtomicBool>,
    /// Broadcasts that did not reach the other nodes.
    dropped: Arc<AtomicU64>,
}

impl RedisBus {
    /// Redis answered (`true`) or failed (`false`).
    pub fn mark(&self, up: bool) {
        let was_down = self.down.swap(!up, Ordering::SeqCst);
        if up && was_down {
            let dropped = self.dropped.swap(0, Ordering::Relaxed);
            tracing::info!(
                dropped,
                "Redis answers again: broadcasts reach the other nodes"
            );
        }
    }

    /// Whether Redis is taken for unavailable.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// A handle on the connection for commands (cheap: it is multiplexed).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

/// `host:port` (or the socket path) of a Redis URL, never its password.
pub fn redis_address(url: &str) -> String {
    match url.into_connection_info() {
        Ok(info) => info.addr().to_string(),
        Err(_) => "(an invalid URL)".into(),
    }
}

/// Connects to Redis at `url` and checks its version.
pub async fn connect(url: &str) -> Result<RedisBus, BusError> {
    let address = redis_address(url);
    let failed = |source| BusError::Connect {
        url: address.clone(),
        source,
    };
    let info = url.into_connection_info().map_err(failed)?;
    // Pushes (the messages of subscriptions) need RESP3.
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let info = info.set_redis_settings(settings);
    let client = redis::Client::open(info).map_err(failed)?;
    let handlers: Handlers = Arc::default();
    let on_push = {
        let handlers = handlers.clone();
        move |push: PushInfo| -> Result<(), std::convert::Infallible> {
            deliver(&handlers, push);
            Ok(())
        }
    };
    let config = ConnectionManagerConfig::new()
        .set_push_sender(on_push)
        .set_automatic_resubscription()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_max_delay(RECONNECT_DELAY_MAX)
        // A command fails soon while Redis is away (the heartbeat notices
        // its return) rather than retrying for seconds.
        .set_number_of_retries(2);
    let mut conn = ConnectionManager::new_with_config(client, config)
        .await
        .map_err(failed)?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .map_err(failed)?;
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < REDIS_MAJOR_MIN {
        return Err(BusError::TooOld {
            url: address,
            version,
        });
    }
    Ok(RedisBus {
        conn,
        handlers,
        address,
        version,
        down: Arc::default(),
        dropped: Arc::default(),
    })
}

/// Hands a message of a subscription to the adapter's stream for its channel.
fn deliver(handlers: &Handlers, push: PushInfo) {
    match push.kind {
        PushKind::Message | PushKind::SMessage => {
            let mut data = push.data.into_iter();
            let (Some(chan), Some(body)) = (data.next(), data.next()) else {
                return;
            };
            let (Ok(chan), Ok(body)) = (
                redis::from_redis_value::<String>(chan),
                redis::from_redis_value::<Vec<u8>>(body),
            ) else {
                tracing::warn!("a Redis message that is not (channel, bytes)");
                return;
            };
            let Some(tx) = handlers.read().get(&chan).cloned() else {
                return;
            };
            if let Err(e) = tx.try_send((chan, body)) {
                // The adapter is behind by a whole buffer: this node is overloaded.
                tracing::warn!(error = %e, "a cluster message was dropped: the node is not keeping up");
            }
        }
        PushKind::Disconnection => {
            tracing::warn!("the connection to Redis dropped; reconnecting");
        }
        _ => {}
    }
}

impl Driver for Bus {
    type Error = BusError;

    /// Never fails: the adapter would then skip this node's own sockets
    /// too. While Redis is away, broadcasts reach this node's sockets only
    /// (pub/sub would lose them anyway; clients fetch what they missed).
    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), BusError> {
        match self {
            Bus::Alone => Ok(()),
            Bus::Redis(bus) => {
                if bus.is_down() {
                    bus.dropped.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                let mut conn = bus.conn.clone();
                if let Err(e) = redis::cmd("PUBLISH")
                    .arg(chan)
                    .arg(val)
                    .exec_async(&mut conn)
                    .await
                {
                    bus.dropped.fetch_add(1, Ordering::Relaxed);
                    if !bus.down.swap(true, Ordering::SeqCst) {
                        tracing::warn!(error = %e, "Redis does not answer: broadcasts stay on this node until it does");
                    }
                }
                Ok(())
            }
        }
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, BusError> {
        match self {
            Bus::Alone => Ok(MessageStream::new_empty()),
            Bus::Redis(bus) => {
                let (tx, rx) = mpsc::channel(size);
                bus.handlers.write().insert(chan.clone(), tx);
                bus.conn.clone().subscribe(chan.as_str()).await?;
                Ok(MessageStream::new(rx))
            }
        }
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), BusError> {
        match self {
            Bus::Alone => Ok(()),
            Bus::Redis(bus) => {
                bus.handlers.write().remove(&chan);
                bus.conn.clone().unsubscribe(chan.as_str()).await?;
                Ok(())
            }
        }
    }

    /// How many nodes listen on `chan` (this one included).
    async fn num_serv(&self, chan: &str) -> Result<u16, BusError> {
        match self {
            Bus::Alone => Ok(1),
            Bus::Redis(bus) => {
                let mut conn = bus.conn.clone();
                let (_, count): (String, u16) = redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(chan)
                    .query_async(&mut conn)
                    .await?;
                Ok(count)
            }
        }
    }
}
