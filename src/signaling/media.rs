//! Media sessions with the server's SFU: a call participant negotiates one
//! WebRTC session with the server instead of one per peer.
//!
//! `media_join` starts it from the browser's offer, `media_offer` renegotiates
//! from the browser's side, `media_answer` answers the server's own offers
//! (sent as `media_offer` events when other participants' tracks come and
//! go). Only a participant of the room's call may have a session; leaving
//! the call, the room or the server ends it (`Hub::end_media`), and a
//! session the server ends by itself is announced with `media_closed`.

use std::sync::Arc;

use super::{SocketIo, SocketRef};
use serde_json::{Map, Value, json};
use socketioxide::socket::Sid;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use super::chat::room_arg;
use super::hub::Hub;
use super::protocol::{ApiError, Args, ErrorCode, bool_field, events, ok};
use crate::cluster::media::MediaAsk;
use crate::sfu::SfuEvent;

/// The room of a request whose sender must be in its call.
fn call_room(hub: &Hub, s: &SocketRef, args: &Args) -> Result<String, ApiError> {
    let room = room_arg(hub, args)?;
    if !hub.in_call(s.id, &room) {
        return Err(ApiError::new(
            ErrorCode::NotInCall,
            format!("not in the call of `{room}`"),
        ));
    }
    Ok(room)
}

/// The SDP of argument 1, a description `{ type, sdp }` of type `kind`
/// (read by the media server that carries it out, which says what is wrong
/// with it: reading it here as well cost a debug build milliseconds per
/// description while five pages switched to the media server at once).
fn sdp_of(args: &Args, kind: &str) -> Result<String, ApiError> {
    let description: &Map<String, Value> = args.object(1, "description")?;
    if description.get("type").and_then(Value::as_str) != Some(kind) {
        return Err(ApiError::invalid_argument(format!(
            "the description must be of type `{kind}`"
        )));
    }
    description
        .get("sdp")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ApiError::invalid_argument("the description needs an `sdp` string"))
}

/// `unavailable` unless this node runs a media server (a call goes through
/// one only when every node does).
fn needs_sfu(hub: &Hub) -> Result<(), ApiError> {
    if hub.sfu.is_none() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "this server runs no media server (sfu.enabled is off, or it could not start)",
        ));
    }
    Ok(())
}

pub async fn media_join(
    hub: Arc<Hub>,
    s: SocketRef,
    _io: SocketIo,
    args: Args,
) -> Result<Value, ApiError> {
    needs_sfu(&hub)?;
    let room = call_room(&hub, &s, &args)?;
    let sdp = sdp_of(&args, "offer")?;
    let options = args.opt_object(2, "options")?;
    let screen = match options.get("screen") {
        None | Some(Value::Null) => None,
        Some(Value::String(mid)) if (1..=32).contains(&mid.len()) => Some(mid.clone()),
        Some(_) => {
            return Err(ApiError::invalid_argument(
                "`screen` must be the mid (1 to 32 characters) of a video m-line of the offer",
            ));
        }
    };
    hub.admit_media(s.id, &room)?;
    let key = Hub::media_key(s.id, &room);
    let ask = MediaAsk::Join {
        room: room.clone(),
        key: key.clone(),
        label: s.id.to_string(),
        sdp,
        screen,
    };
    match hub.media_ask(&room, ask, true).await {
        Ok(joined) => Ok(ok(joined)),
        Err(e) => {
            hub.media_ended(&key);
            Err(e)
        }
    }
}

pub async fn media_offer(
    hub: Arc<Hub>,
    s: SocketRef,
    _io: SocketIo,
    args: Args,
) -> Result<Value, ApiError> {
    needs_sfu(&hub)?;
    let room = call_room(&hub, &s, &args)?;
    let ask = MediaAsk::Offer {
        key: Hub::media_key(s.id, &room),
        sdp: sdp_of(&args, "offer")?,
    };
    Ok(ok(hub.media_ask(&room, ask, false).await?))
}

pub async fn media_answer(
    hub: Arc<Hub>,
    s: SocketRef,
    _io: SocketIo,
    args: Args,
) -> Result<Value, ApiError> {
    needs_sfu(&hub)?;
    let room = call_room(&hub, &s, &args)?;
    let ask = MediaAsk::Answer {
        key: Hub::media_key(s.id, &room),
        sdp: sdp_of(&args, "answer")?,
    };
    Ok(ok(hub.media_ask(&room, ask, false).await?))
}

/// Most tiles a `media_view` may name (a call holds at most 50 through the
/// media server; a page may name some twice while its layout changes).
const VIEWS_MAX: usize = 100;
/// Largest tile height a page may report (device pixels).
const VIEW_HEIGHT_MAX: u64 = 8192;

/// How large the page shows each participant's video: the media server
/// sends each subscriber the smallest simulcast layer that fills its tile.
pub async fn media_view(
    hub: Arc<Hub>,
    s: SocketRef,
    _io: SocketIo,
    args: Args,
) -> Result<Value, ApiError> {
    needs_sfu(&hub)?;
    let room = call_room(&hub, &s, &args)?;
    let Some(Value::Array(items)) = args.0.get(1) else {
        return Err(ApiError::invalid_argument(
            "the views must be an array of { from, width, height }",
        ));
    };
    if items.len() > VIEWS_MAX {
        return Err(ApiError::invalid_argument(format!(
            "at most {VIEWS_MAX} views at once"
        )));
    }
    let mut views = Vec::with_capacity(items.len());
    for item in items {
        let (Some(from), Some(height)) = (
            item.get("from").and_then(Value::as_str),
            item.get("height").and_then(Value::as_u64),
        ) else {
            return Err(ApiError::invalid_argument(
                "each view needs `from` (a participant id) and `height` (pixels, an integer)",
            ));
        };
        if from.is_empty() || from.len() > 64 || height > VIEW_HEIGHT_MAX {
            return Err(ApiError::invalid_argument(format!(
                "a view's `from` is 1 to 64 characters and its `height` at most {VIEW_HEIGHT_MAX}"
            )));
        }
        views.push((from.to_string(), height as u32));
    }
    let ask = MediaAsk::View {
        key: Hub::media_key(s.id, &room),
        views,
    };
    Ok(ok(hub.media_ask(&room, ask, false).await?))
}

/// A participant's state (microphone on, video on, sharing its screen) to
/// the others of the call: in a mesh each pair says it on its own data
/// channel; through the media server it goes here.
pub async fn media_state(
    hub: Arc<Hub>,
    s: SocketRef,
    _io: SocketIo,
    args: Args,
) -> Result<Value, ApiError> {
    let room = call_room(&hub, &s, &args)?;
    let state = args.object(1, "state")?;
    let flag = |name: &str| bool_field(state, name);
    let body = json!({
        "from": s.id.to_string(),
        "audio": flag("audio")?,
        "video": flag("video")?,
        "screen": flag("screen")?,
    });
    let _ = s
        .to(super::hub::call_group(&room))
        .emit(events::MEDIA_STATE, &(room.as_str(), body))
        .await;
    Ok(ok(json!({})))
}

/// Carries the media server's events to the sockets concerned until `shutdown`.
pub async fn forward_events(
    hub: Arc<Hub>,
    io: SocketIo,
    mut events: UnboundedReceiver<SfuEvent>,
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
        let (key, name, payload) = match &event {
            SfuEvent::Speakers { call, participants } => {
                // Keys are `{sid}:{room}`: the others know a participant by its sid.
                let speakers: Vec<&str> = participants
                    .iter()
                    .filter_map(|k| k.split_once(':').map(|(sid, _)| sid))
                    .collect();
                hub.set_speakers(call, speakers.iter().map(|s| s.to_string()).collect());
                let _ = io
                    .to(super::hub::call_group(call))
                    .emit(
                        events::ACTIVE_SPEAKER,
                        &(call.as_str(), json!({ "speakers": speakers })),
                    )
                    .await;
                continue;
            }
            SfuEvent::Offer { participant, offer } => (
                participant,
                events::MEDIA_OFFER,
                Some(json!({ "type": "offer", "sdp": offer.to_sdp_string() })),
            ),
            SfuEvent::Closed { participant } => {
                hub.media_ended(participant);
                (participant, events::MEDIA_CLOSED, None)
            }
        };
        let Some((sid, room)) = key.split_once(':') else {
            continue;
        };
        let Some(socket) = sid.parse::<Sid>().ok().and_then(|sid| io.get_socket(sid)) else {
            // A participant connected to another node (this node carries
            // its call's media): the group named after its socket id
            // reaches it there.
            if hub.media_link.is_clustered() {
                let to = io.to(sid.to_string());
                let _ = match payload {
                    Some(description) => to.emit(name, &(room, description)).await,
                    None => to.emit(name, &(room,)).await,
                };
            }
            continue;
        };
        let sent = match payload {
            Some(description) => socket.emit(name, &(room, description)),
            None => socket.emit(name, &(room,)),
        };
        if let Err(e) = sent {
            super::unsent(&e, sid, name, "a media server event could not be sent");
        }
    }
}
