//! Call requests: joining and leaving a room's mesh call, and relaying the
//! WebRTC negotiation (offer, answer, ICE candidates) between its participants.
//!
//! The server never reads SDP; it only checks that sender and recipient share a
//! call and stamps `from` itself, so nobody can speak for someone else.

use std::str::FromStr;
use std::sync::Arc;

use super::{SocketIo, SocketRef};
use serde_json::{Value, json};
use socketioxide::socket::Sid;

use super::chat::room_arg;
use super::hub::{Hub, call_group};
use super::protocol::{ApiError, Args, Departure, ErrorCode, bool_field, events, ok};
use crate::metrics::Metrics;

pub async fn join_call(
    hub: Arc<Hub>,
    s: SocketRef,
    io: SocketIo,
    args: Args,
) -> Result<Value, ApiError> {
    let room = room_arg(&hub, &args)?;
    let opts = args.opt_object(1, "options")?;
    let was = match opts.get("was") {
        None | Some(Value::Null) => None,
        Some(Value::String(w)) if (1..=64).contains(&w.len()) => Some(w.clone()),
        Some(_) => {
            return Err(ApiError::invalid_argument(
                "`was` must be a socket id (1 to 64 characters)",
            ));
        }
    };
    // Credentials first: a join refused for lack of them changes nothing.
    let ice = ice_servers(&hub, &s)?;
    // In a cluster another node may have moved the call to the media
    // server: its placement says so.
    if hub.media_link.is_clustered()
        && hub.sfu.is_some()
        && let Ok(Some(_)) = hub.media_link.host(&room).await
    {
        hub.call_through_server(&room);
    }
    // Joins of this call in flight on other nodes count as participants.
    let clustered = hub.roster.is_clustered() && !hub.in_call(s.id, &room);
    let others_joining = if clustered {
        hub.roster.joining(&room, &s.id.to_string()).await
    } else {
        Vec::new()
    };
    let joined = hub.join_call(&s, &room, was.clone(), &others_joining);
    if clustered && joined.is_err() {
        hub.roster.joined(&room, &s.id.to_string(), true);
    }
    let joined = joined?;
    hub.roster.settled().await;
    // Written: the join stops counting as in flight once the others have
    // surely applied it.
    if clustered {
        hub.roster.joined(&room, &s.id.to_string(), false);
    }
    // Through the media server: the session of the connection this one
    // replaces is taken back (the page restarts its ICE), not started anew,
    // before the others hear of it (they re-key its tiles).
    let resumed = match was.as_deref() {
        Some(w) if joined.media == "sfu" => hub.resume_media(s.id, w, &room).await,
        _ => false,
    };
    // The others switch to the media server before they hear of the
    // newcomer, which will not offer to them.
    if joined.switched {
        let _ = s
            .to(call_group(&room))
            .emit(events::CALL_MEDIA, &(room.as_str(), joined.media))
            .await;
    }
    if !joined.already {
        let _ = s
            .to(call_group(&room))
            .emit(events::PEER_JOINED, &(room.as_str(), &joined.me))
            .await;
    }
    // The connection this one replaces, if the server still has it, is a
    // ghost: close it now (the others re-keyed to this one already), rather
    // than at its ping timeout.
    if let Some(ghost) = was.as_deref().and_then(|w| hub.replace(s.id, w))
        && let Some(old) = io.get_socket(ghost)
    {
        tracing::debug!(sid = %s.id, ghost = %ghost, "closing the connection this one replaces");
        let _ = old.disconnect();
    }
    Ok(ok(json!({
        "peers": joined.peers,
        "iceServers": ice,
        "media": joined.media,
        "hands": joined.hands,
        "resumed": resumed,
        // Through the media server: who speaks now (`active_speaker` says
        // only changes, and a page back from a reconnect missed some).
        "speakers": hub.speakers_of(&room),
    })))
}

/// The reactions a call offers (anything else is `invalid_argument`).
pub const REACTIONS: [&str; 6] = ["👍", "👏", "😂", "❤️", "🎉", "😮"];

/// `raise_hand`: `room`, `{ raised }`; the others get `hands` with the
/// raised hands in order.
pub async fn raise_hand(
    hub: Arc<Hub>,
    s: SocketRef,
    _io: SocketIo,
    args: Args,
) -> Result<Value, ApiError> {
    let room = room_arg(&hub, &args)?;
    let raised = bool_field(args.object(1, "hand")?, "raised")?;
    let (hands, changed) = hub.raise_hand(s.id, &room, raised)?;
    if changed {
        hub.roster.settled().await;
        let _ = s
            .to(call_group(&room))
            .emit(events::HANDS, &(room.as_str(), json!({ "hands": hands })))
            .await;
    }
    Ok(ok(json!({ "hands": hands })))
}

/// `reaction`: `room`, `{ emoji }`, one of [`REACTIONS`]; the others get
/// `reaction` with `from`.
pub async fn reaction(
    hub: Arc<Hub>,
    s: SocketRef,
    _io: SocketIo,
    args: Args,
) -> Result<Value, ApiError> {
    let room = room_arg(&hub, &args)?;
    let emoji = match args.object(1, "reaction")?.get("emoji") {
        Some(Value::String(e)) if REACTIONS.contains(&e.as_str()) => e.clone(),
        _ => {
            return Err(ApiError::invalid_argument(format!(
                "`emoji` must be one of {}",
                REACTIONS.join(" ")
            )));
        }
    };
    hub.admit_reaction(s.id, &room)?;
    let _ = s
        .to(call_group(&room))
        .emit(
            events::REACTION,
            &(
                room.as_str(),
                json!({ "from": s.id.to_string(), "emoji": emoji }),
            ),
        )
        .await;
    Ok(ok(json!({})))
}

/// The ICE servers handed to a call participant: the built-in relay's STUN and
/// TURN URLs with this connection's credentials; none when it is disabled.
fn ice_servers(hub: &Hub, s: &SocketRef) -> Result<Vec<Value>, ApiError> {
    match &hub.relay {
        Some(relay) => Ok(relay.ice_servers_with(&hub.turn_credentials(s.id, relay)?)),
        None => Ok(Vec::new()),
    }
}

pub async fn leave_call(
    hub: Arc<Hub>,
    s: SocketRef,
    _io: SocketIo,
    args: Args,
) -> Result<Value, ApiError> {
    let room = room_arg(&hub, &args)?;
    let me = hub.leave_call(&s, &room)?;
    hub.roster.settled().await;
    let _ = s
        .to(call_group(&room))
        .emit(
            events::PEER_LEFT,
            &(room.as_str(), &me, Departure::Left.payload()),
        )
        .await;
    Ok(ok(json!({})))
}

/// Which field of a signal carries the payload, and whether `null` is allowed there.
#[derive(Clone, Copy)]
pub enum Signal {
    Offer,
    Answer,
    Ice,
}

impl Signal {
    fn event(self) -> &'static str {
        match self {
            Signal::Offer => events::OFFER,
            Signal::Answer => events::ANSWER,
            Signal::Ice => events::ICE,
        }
    }

    fn field(self) -> &'static str {
        match self {
            Signal::Offer | Signal::Answer => "description",
            Signal::Ice => "candidate",
        }
    }

    fn check(self, payload: Option<&Value>) -> Result<Value, ApiError> {
        let field = self.field();
        match (self, payload) {
            (Signal::Ice, Some(Value::Null)) => Ok(Value::Null),
            (Signal::Ice, Some(v @ Value::Object(_))) => Ok(v.clone()),
            (_, Some(v @ Value::Object(m))) if m.get("type").is_some_and(Value::is_string) => {
                Ok(v.clone())
            }
            (Signal::Ice, _) => Err(ApiError::invalid_argument(
                "`candidate` must be an RTCIceCandidate object or null",
            )),
            _ => Err(ApiError::invalid_argument(format!(
                "`{field}` must be an RTCSessionDescription object with a `type`"
            ))),
        }
    }
}

/// Forwards an offer, answer or ICE candidate to one peer of the caller's
/// call (browser to browser: this is signaling, not the TURN relay).
pub async fn forward(
    kind: Signal,
    hub: Arc<Hub>,
    s: SocketRef,
    io: SocketIo,
    args: Args,
) -> Result<Value, ApiError> {
    let body = args.object(0, "signal")?;
    let to = match body.get("to") {
        Some(Value::String(to)) => to,
        _ => {
            return Err(ApiError::invalid_argument(
                "`to` must be the socket id of a call participant",
            ));
        }
    };
    let payload = kind.check(body.get(kind.field()))?;
    let not_in_call = || {
        ApiError::new(
            ErrorCode::NotInCall,
            format!("`{to}` is not in a call with you"),
        )
    };
    let to = Sid::from_str(to).map_err(|_| not_in_call())?;
    if to == s.id || !hub.share_call(s.id, to) {
        return Err(not_in_call());
    }
    let mut out = serde_json::Map::new();
    out.insert("from".into(), Value::String(s.id.to_string()));
    out.insert(kind.field().into(), payload);
    let out = Value::Object(out);
    match io.get_socket(to) {
        Some(target) => target
            .emit(kind.event(), &out)
            .map_err(|_| ApiError::new(ErrorCode::NotInCall, "the peer's connection is closing"))?,
        // On another node: to its own group, through the cluster's bus.
        None => io.to(to).emit(kind.event(), &out).await.map_err(|e| {
            tracing::warn!(error = %e, "a call signal could not reach another node");
            ApiError::new(
                ErrorCode::Internal,
                "the peer's node could not be reached; try again",
            )
        })?,
    }
    Metrics::inc(&hub.metrics.signals_relayed);
    Ok(ok(json!({})))
}
