//! Socket.IO signaling and chat: the server half of `docs/protocol.md`.
//!
//! A connect middleware resolves the session and registers the event handlers
//! before the client is told it is connected, so no early request is lost.
//! Every request goes through [`route`]: rate limit, argument parsing, one
//! acknowledgement object (`{ ok: true, ... }` or `{ ok: false, error }`).

mod call;
mod chat;
pub mod delivery;
pub mod directory;
pub mod hub;
pub mod media;
mod moderation;
pub mod protocol;
mod rate;
pub mod validate;

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::Value;
use socketioxide::TransportType;
use socketioxide::extract::{State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::DisconnectReason;
use tokio_util::sync::CancellationToken;

pub use chat::{PAGE_DEFAULT, PAGE_MAX, PASSWORD_MAX, history_params, page_query};
pub use hub::Hub;
use protocol::{ApiError, Args, ErrorCode, Reply, events};
use rate::Verdict;

use crate::metrics::Metrics;

/// The Socket.IO adapter: socketioxide's Redis adapter on the cluster's bus,
/// which keeps every broadcast on this node when it runs alone.
pub type Adapter =
    socketioxide_redis::CustomRedisAdapter<socketioxide::adapter::Emitter, crate::cluster::Bus>;
pub type SocketIo = socketioxide::SocketIo<Adapter>;
pub type SocketRef = socketioxide::extract::SocketRef<Adapter>;
pub type BroadcastOperators = socketioxide::operators::BroadcastOperators<Adapter>;
pub type AckSender = socketioxide::extract::AckSender<Adapter>;

/// Delay that coalesces bursts of room changes into one `room_change` broadcast.
const ROOM_CHANGE_COALESCE: Duration = Duration::from_millis(50);
/// How often the room list is recomputed even when nothing was announced.
const ROOM_LIST_RECHECK: Duration = Duration::from_secs(30);
/// Longest accepted session token (ours are 64 hex characters).
const TOKEN_MAX: usize = 128;
/// Binary attachments one packet may announce (they are refused anyway).
const BINARY_ATTACHMENTS_MAX: usize = 16;
/// How long the attachments of a binary packet may take to arrive.
const BINARY_COMPLETION: Duration = Duration::from_secs(5);

/// The hub as socketioxide state: a weak reference, so that connections that
/// outlive a shutdown (an engine task still closing) never keep the store open.
#[derive(Clone)]
struct HubRef(Weak<Hub>);

impl HubRef {
    fn get(&self) -> Option<Arc<Hub>> {
        self.0.upgrade()
    }
}

/// How long a request to the other nodes (for example the sockets in a room,
/// for the admin page) waits for their answers.
const CLUSTER_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The adapter could not subscribe to its channels on the bus.
#[derive(Debug, thiserror::Error)]
#[error("the Socket.IO adapter could not start on Redis: {0}")]
pub struct AdapterError(pub String);

/// Builds the Socket.IO layer to mount on the HTTP router, and its handle.
/// `bus` carries broadcasts to the other nodes (or nowhere, alone); the
/// default namespace is ready (subscribed on the bus) when this returns.
pub async fn layer(
    hub: &Arc<Hub>,
    bus: crate::cluster::Bus,
) -> Result<(SocketIoLayer<Adapter>, SocketIo), AdapterError> {
    let max_payload = hub.config.limits.max_payload_bytes;
    let adapter = socketioxide_redis::RedisAdapterCtr::new_with_driver(
        bus,
        socketioxide_redis::RedisAdapterConfig::new()
            .with_prefix(hub.config.cluster.name.clone())
            .with_request_timeout(CLUSTER_REQUEST_TIMEOUT),
    );
    let (layer, io) = socketioxide::SocketIo::builder()
        .with_adapter::<Adapter>(adapter)
        .with_state(HubRef(Arc::downgrade(hub)))
        .max_payload(max_payload)
        .ws_max_message_size(max_payload as usize)
        .ws_max_frame_size(max_payload as usize)
        .max_buffer_size(1024)
        // Binary payloads are refused (`invalid_argument`), but their
        // attachments are buffered before that: at most what one packet may
        // carry, and only briefly. More closes that connection.
        .with_parser(
            socketioxide::ParserConfig::common()
                .max_incoming_binary_buf_size(max_payload as usize)
                .max_incoming_binaries(BINARY_ATTACHMENTS_MAX)
                .packet_completion_timeout(BINARY_COMPLETION),
        )
        // Most frames are small; the buffer grows for the few large ones (SDP).
        .ws_read_buffer_size(1024)
        .build_layer();
    io.ns("/", on_connect.with(authenticate))
        .await
        .map_err(|e| AdapterError(e.to_string()))?;
    Ok((layer, io))
}

/// Emits the room list to everyone when it changes: the first change after a
/// quiet spell goes out after a short coalescing delay, later ones at most
/// once per `rooms.broadcast_interval_ms`, so rooms toggled in a loop cannot
/// make the server send full lists to everyone many times a second. A periodic
/// recheck catches rooms that age out of the active window.
pub async fn broadcast_room_changes(hub: Arc<Hub>, io: SocketIo, shutdown: CancellationToken) {
    let interval = Duration::from_millis(hub.config.rooms.broadcast_interval_ms);
    let mut last = hub.room_list().version;
    let mut last_sent = tokio::time::Instant::now() - interval;
    let mut recheck = tokio::time::interval(ROOM_LIST_RECHECK);
    loop {
        tokio::select! {
            _ = hub.wait_rooms_changed() => {}
            _ = recheck.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let at = (tokio::time::Instant::now() + ROOM_CHANGE_COALESCE).max(last_sent + interval);
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = shutdown.cancelled() => return,
        }
        let list = hub.room_list();
        if list.version != last {
            // Every node sends the list (the same everywhere) to its own clients.
            let _ = io.local().emit(events::ROOM_CHANGE, &*list.json).await;
            last = list.version;
            last_sent = tokio::time::Instant::now();
        }
    }
}

/// Tells the other nodes this node's health (what `/healthz` says, and its
/// connections) with each heartbeat, until `shutdown`: the admin page of
/// any node lists every node's.
pub async fn tell_health(
    hub: Arc<Hub>,
    io: SocketIo,
    cert: Option<Arc<crate::tls::CertStore>>,
    shutdown: CancellationToken,
) {
    let started = std::time::Instant::now();
    let mut every = tokio::time::interval(crate::cluster::roster::HEARTBEAT);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let (_, mut health) = hub.health(cert.as_deref()).await;
        let (websocket, polling) = connections_by_transport(&io);
        health["connections"] = serde_json::json!(websocket + polling);
        health["uptime_secs"] = serde_json::json!(started.elapsed().as_secs());
        hub.roster.set_health(&health);
    }
}

/// Applies what the roster learns of the other nodes to the hub, and tells
/// this node's clients what no other node could tell them (the members of
/// a node that died, changes made while Redis was away).
pub async fn follow_cluster(
    hub: Arc<Hub>,
    io: SocketIo,
    mut events: tokio::sync::mpsc::UnboundedReceiver<crate::cluster::RosterEvent>,
    shutdown: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            e = events.recv() => match e {
                Some(e) => e,
                None => return,
            },
            _ = shutdown.cancelled() => return,
        };
        let event = match event {
            crate::cluster::RosterEvent::Order(order) => {
                hub.carry_out(&io, order).await;
                continue;
            }
            other => other,
        };
        // A node that stopped or died: the media sessions this node carries
        // for its participants end now (their pages come back through
        // another node, with new sessions).
        let node_gone = match &event {
            crate::cluster::RosterEvent::Node { node, conns } if conns.is_empty() => {
                Some(node.clone())
            }
            _ => None,
        };
        // And the calls whose media that node carried start anew elsewhere.
        if let Some(node) = &node_gone {
            for room in hub.calls_placed_on(node).await {
                tracing::info!(%room, %node, "the node carrying a call's media is gone: its participants here start new sessions");
                let _ = io
                    .local()
                    .to(hub::call_group(&room))
                    .emit(events::MEDIA_CLOSED, &(room.as_str(),))
                    .await;
            }
        }
        let news = hub.apply_remote(event);
        if news.is_empty() {
            continue;
        }
        if node_gone.is_some()
            && let Some(sfu) = &hub.sfu
        {
            for (room, member) in &news.call_left {
                sfu.leave(&hub::Hub::media_key_of(&member.id, room));
            }
        }
        for room in &news.lobbies {
            hub.lobby_changed(&io, room).await;
        }
        let why = protocol::Departure::Disconnected;
        for left in &news.left {
            left.announce(|group| io.local().to(group), why).await;
        }
        for (room, member) in &news.call_left {
            let _ = io
                .local()
                .to(hub::call_group(room))
                .emit(events::PEER_LEFT, &(room.as_str(), member, why.payload()))
                .await;
        }
        for (room, member, count) in &news.entered {
            let _ = io
                .local()
                .to(hub::chat_group(room))
                .emit(events::WELCOME, &(room.as_str(), member, count))
                .await;
        }
        for (room, member) in &news.joined {
            let _ = io
                .local()
                .to(hub::call_group(room))
                .emit(events::PEER_JOINED, &(room.as_str(), member))
                .await;
        }
    }
}

/// Delivers messages that the store found stored after their sender was told
/// `unconfirmed` (its disk was full): to the whole room, the sender included,
/// as ordinary `new_message` events (clients skip a seq they already have).
pub async fn deliver_late_messages(hub: Arc<Hub>, io: SocketIo, shutdown: CancellationToken) {
    let mut late = hub.store.late_messages();
    loop {
        let message = tokio::select! {
            m = late.recv() => match m {
                Some(m) => m,
                None => return,
            },
            _ = shutdown.cancelled() => return,
        };
        tracing::info!(room = %message.room, seq = message.seq, "delivering a message confirmed late");
        let _ = io
            .to(hub::chat_group(&message.room))
            .emit(events::NEW_MESSAGE, &message)
            .await;
    }
}

/// Counts of open connections by transport: (websocket, polling).
pub fn connections_by_transport(io: &SocketIo) -> (u64, u64) {
    let sockets = io.sockets();
    let ws = sockets
        .iter()
        .filter(|s| s.transport_type() == TransportType::Websocket)
        .count() as u64;
    (ws, sockets.len() as u64 - ws)
}

#[derive(Debug, thiserror::Error)]
#[error("the server could not open a session; try again")]
struct SessionUnavailable;

/// Resolves the session from the handshake `auth` and prepares the socket.
async fn authenticate(
    s: SocketRef,
    State(hub): State<HubRef>,
    TryData(auth): TryData<Value>,
) -> Result<(), SessionUnavailable> {
    let hub = hub.get().ok_or(SessionUnavailable)?;
    let token = auth
        .ok()
        .and_then(|a| a.get("session").and_then(Value::as_str).map(str::to_owned))
        .filter(|t| !t.is_empty() && t.len() <= TOKEN_MAX);
    let known = match &token {
        Some(t) => hub.store.session(t, hub::now_ms()).await.map_err(|e| {
            tracing::error!(error = %e, "cannot read session");
            SessionUnavailable
        })?,
        None => None,
    };
    // A new session costs nothing on disk: it is stored when the client
    // enters a room or sets a nickname (so connects work on a full disk too).
    let (token, key, session) = match (token, known) {
        (Some(token), Some((key, session))) => (token, key, session),
        _ => hub.store.create_session(hub::now_ms()),
    };
    tracing::debug!(sid = %s.id, user = %session.user, "connected");
    // Put there by `http::attach_client` on the handshake request.
    let addr = s
        .req_parts()
        .extensions
        .get::<crate::http::ClientAddr>()
        .map(|c| c.ip);
    hub.register(s.id, key, session, token, addr);
    // A group of its own, named after its id: what another node's request
    // for this one (a call signal) is broadcast to.
    s.join(s.id);
    Metrics::inc(&hub.metrics.connections_total);

    route(&s, "nickname", chat::nickname);
    route(&s, "rooms", chat::rooms);
    route(&s, "enter_room", chat::enter_room);
    route(&s, "leave_room", chat::leave_room);
    route(&s, "new_message", chat::new_message);
    route(&s, "history", chat::history);
    route(&s, "join_call", call::join_call);
    route(&s, "leave_call", call::leave_call);
    route(&s, "raise_hand", call::raise_hand);
    route(&s, "reaction", call::reaction);
    // A liveness check: the page asks when it suspects its connection died
    // under it (a network change), and reconnects if no answer comes soon.
    route(&s, "alive", |_, _, _, _| async {
        Ok(protocol::ok(serde_json::json!({})))
    });
    route(&s, "media_join", media::media_join);
    route(&s, "media_offer", media::media_offer);
    route(&s, "media_answer", media::media_answer);
    route(&s, "media_state", media::media_state);
    route(&s, "media_view", media::media_view);
    for kind in ["set_host", "mute", "remove", "room_settings", "admit"] {
        route(&s, kind, move |h, s, io, a| {
            moderation::moderate(kind, h, s, io, a)
        });
    }
    route(&s, "offer", |h, s, io, a| {
        call::forward(call::Signal::Offer, h, s, io, a)
    });
    route(&s, "answer", |h, s, io, a| {
        call::forward(call::Signal::Answer, h, s, io, a)
    });
    route(&s, "ice", |h, s, io, a| {
        call::forward(call::Signal::Ice, h, s, io, a)
    });
    s.on_disconnect(on_disconnect);
    Ok(())
}

/// After the client is told it is connected: its session, then the room list.
async fn on_connect(s: SocketRef, State(hub): State<HubRef>) {
    let Some(hub) = hub.get() else { return };
    if let Some(session) = hub.take_session_event(s.id) {
        let _ = s.emit(events::SESSION, &session);
    }
    let _ = s.emit(events::ROOM_CHANGE, &*hub.room_list().json);
}

async fn on_disconnect(
    s: SocketRef,
    io: SocketIo,
    reason: DisconnectReason,
    State(hub): State<HubRef>,
) {
    let Some(hub) = hub.get() else { return };
    hub.leave_lobbies(&io, s.id).await;
    let replaced = hub.replaced(s.id);
    // A page that says goodbye (leaving, or closing) has left; a connection
    // that dropped may come back in a moment: the others may keep its peer
    // connections meanwhile, and the server its media session.
    let why = match reason {
        _ if replaced => protocol::Departure::Disconnected,
        DisconnectReason::ClientNSDisconnect | DisconnectReason::ServerNSDisconnect => {
            protocol::Departure::Left
        }
        _ => protocol::Departure::Disconnected,
    };
    let departures = hub
        .disconnect(s.id, why == protocol::Departure::Disconnected)
        .await;
    hub.roster.settled().await;
    for left in &departures {
        left.announce(|group| s.to(group), why).await;
    }
    if !departures.is_empty() {
        hub.rooms_changed();
    }
}

/// Logs an answer or event that could not go out: a warning when the
/// connection's buffer was full (it was lost), a debug line when the
/// connection had closed meanwhile (a page that left; nothing to do).
pub(crate) fn unsent(e: &socketioxide::SendError, sid: &str, event: &str, what: &str) {
    use socketioxide::{SendError, SocketError};
    match e {
        SendError::Socket(SocketError::Closed) => {
            tracing::debug!(sid, event, "{what}: the connection had closed")
        }
        _ => tracing::warn!(sid, event, error = %e, "{what}"),
    }
}

/// A request whose handling takes this long is logged (it points at a
/// stalled runtime or a slow media server).
const SLOW_REQUEST: std::time::Duration = std::time::Duration::from_secs(1);

/// Registers a request handler behind the rate limit and the ack convention.
fn route<F, Fut, R>(s: &SocketRef, event: &'static str, handler: F)
where
    F: Fn(Arc<Hub>, SocketRef, SocketIo, Args) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<R, ApiError>> + Send + 'static,
    R: Into<Reply> + Send + 'static,
{
    s.on(
        event,
        move |s: SocketRef,
              io: SocketIo,
              State(hub): State<HubRef>,
              ack: AckSender,
              TryData(args): TryData<Args>| {
            let handler = handler.clone();
            async move {
                let started = std::time::Instant::now();
                let Some(hub) = hub.get() else {
                    let closing = ApiError::new(ErrorCode::Internal, "the server is shutting down");
                    let _ = ack.send(&closing.to_ack());
                    return;
                };
                let result = match hub.admit(s.id) {
                    Verdict::Allow => match args {
                        Ok(args) => handler(hub.clone(), s.clone(), io, args).await.map(Into::into),
                        Err(_) => Err(ApiError::invalid_argument(
                            "arguments must be JSON values (binary payloads are not accepted)",
                        )),
                    },
                    Verdict::Refuse => {
                        Metrics::inc(&hub.metrics.rate_limited);
                        Err(ApiError::new(
                            ErrorCode::RateLimited,
                            "too many requests; slow down and retry",
                        ))
                    }
                    Verdict::Disconnect => {
                        Metrics::inc(&hub.metrics.flood_disconnects);
                        tracing::warn!(sid = %s.id, "closing a connection that ignores the rate limit");
                        let _ = s.disconnect();
                        return;
                    }
                };
                let reply = match result {
                    Ok(reply) => reply,
                    Err(e) => {
                        tracing::debug!(sid = %s.id, event, code = e.code.as_str(), message = %e.message, "request refused");
                        Reply::Value(e.to_ack())
                    }
                };
                let took = started.elapsed();
                if took >= SLOW_REQUEST {
                    tracing::warn!(sid = %s.id, event, ms = took.as_millis() as u64, "a request took long to answer");
                }
                if let Err(e) = ack.send(&reply) {
                    unsent(&e, &s.id.to_string(), event, "an answer could not be sent");
                }
            }
        },
    );
}
