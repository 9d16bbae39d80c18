//! Chat requests: nickname, room list, entering and leaving rooms, messages, history.

use std::sync::Arc;

use std::collections::HashMap;

use super::{SocketIo, SocketRef};
use serde_json::{Value, json};

use super::hub::{Hub, chat_group, now_ms};
use super::protocol::{ApiError, Args, Departure, ErrorCode, Reply, events, ok, opt_bool, opt_u64};
use super::validate;
use crate::metrics::Metrics;
use crate::store::{Appended, HistoryQuery, NewMessage, Settled};

/// Default and maximum page sizes of `enter_room` and `history`.
pub const PAGE_DEFAULT: usize = 50;
pub const PAGE_MAX: usize = 200;

pub async fn nickname(
    hub: Arc<Hub>,
    s: SocketRef,
    io: SocketIo,
    args: Args,
) -> Result<Value, ApiError> {
    let name = validate::nickname(args.str(0, "nickname")?, hub.config.limits.nickname_max)?;
    let updates = hub.set_nickname(s.id, &name).await?;
    hub.store.durable().await?;
    hub.roster.settled().await;
    for (room, member) in updates {
        let _ = io
            .to(chat_group(&room))
            .emit(events::MEMBER_UPDATE, &(room.as_str(), &member))
            .await;
    }
    Ok(ok(json!({ "nickname": name })))
}

pub async fn rooms(
    hub: Arc<Hub>,
    _s: SocketRef,
    _io: SocketIo,
    _args: Args,
) -> Result<Reply, ApiError> {
    Ok(Reply::Rooms(hub.room_list()))
}

pub fn room_arg(hub: &Hub, args: &Args) -> Result<String, ApiError> {
    validate::room_name(args.str(0, "room")?, hub.config.limits.room_name_max)
}

/// Reads `{ before?, after?, limit? }` into a history query.
pub fn page_query(opts: &serde_json::Map<String, Value>) -> Result<HistoryQuery, ApiError> {
    let limit = match opt_u64(opts, "limit")? {
        None => PAGE_DEFAULT,
        Some(0) => return Err(ApiError::invalid_argument("`limit` must be at least 1")),
        Some(n) => (n as usize).min(PAGE_MAX),
    };
    Ok(HistoryQuery {
        before: opt_u64(opts, "before")?,
        after: opt_u64(opts, "after")?,
        limit,
    })
}

/// Reads `?before=&after=&limit=` of a history page (empty means absent), with
/// the same rules as the `history` event.
pub fn history_params(params: HashMap<String, String>) -> Result<HistoryQuery, ApiError> {
    let mut opts = serde_json::Map::new();
    for (name, raw) in params {
        if !matches!(name.as_str(), "before" | "after" | "limit") {
            return Err(ApiError::invalid_argument(format!(
                "unknown parameter `{name}` (expected before, after, limit)"
            )));
        }
        if raw.is_empty() {
            continue;
        }
        let n: u64 = raw.parse().map_err(|_| {
            ApiError::invalid_argument(format!("`{name}` must be a non-negative integer"))
        })?;
        opts.insert(name, Value::from(n));
    }
    page_query(&opts)
}

pub async fn enter_room(
    hub: Arc<Hub>,
    s: SocketRef,
    io: SocketIo,
    args: Args,
) -> Result<Value, ApiError> {
    let room = room_arg(&hub, &args)?;
    let opts = args.opt_object(1, "options")?;
    let mut query = page_query(&opts)?;
    query.before = None;
    let unlisted = opt_bool(&opts, "unlisted")?.unwrap_or(false);
    // `unlisted` only shapes a room being created: an existing room keeps
    // what its creator chose.
    let password = password_option(&opts)?;
    let mut existing = hub.store.room(&room).await;
    let mut exists = existing.is_some();
    // The delivery's order for this room starts after its last message (a
    // first message from another node may otherwise pass one still on its
    // way from a third).
    hub.seed_order(&room, existing.as_ref().map_or(0, |m| m.last_seq) + 1);
    let mut protecting = false;
    if !exists && let Some(password) = &password {
        // The password is hashed, and asked of anyone else, before the
        // room exists: nobody slips in while its creator's entry runs.
        hub.begin_protection(s.id, &room, password).await?;
        // Someone who came without a password may have created it
        // meanwhile: then it is theirs, and open.
        existing = hub.store.room(&room).await;
        exists = existing.is_some() || hub.count(&room) > 0;
        if exists {
            hub.abandon_protection(s.id, &room);
        } else {
            protecting = true;
        }
    }
    // A room with a password lets in only sessions that gave it.
    let protected = if exists {
        let protected = hub.room_access(s.id, &room, password.as_deref()).await?;
        // Removed, locked out, or kept in the lobby.
        hub.check_entry(&io, s.id, &room).await?;
        protected
    } else if protecting {
        true
    } else {
        // Someone may be creating it with a password right now.
        hub.room_access(s.id, &room, None).await?
    };
    // Out of the list before it exists, so no list ever shows it.
    let creating = unlisted && !exists;
    if creating {
        hub.room_unlisted(&room, true);
    }
    let entered = match hub.enter(&s, &room).await {
        Ok(entered) => entered,
        Err(e) => {
            if creating {
                hub.room_unlisted(&room, false);
            }
            if protecting {
                hub.abandon_protection(s.id, &room);
            }
            return Err(e);
        }
    };
    // Its creator may have begun giving it a password after this entry
    // found it open and before it joined (the creator then found nobody in
    // it): whoever came without the password leaves again.
    if !exists
        && !protecting
        && !entered.already
        && let Err(e) = hub.room_access(s.id, &room, None).await
    {
        // Nobody was told of this entry. The room stays out of the list if
        // this entry hid it: the safe side for whoever creates it.
        let _ = hub.leave(&s, &room);
        return Err(e);
    }
    // A password given with the entry that creates a room becomes its own.
    if protecting {
        hub.protect_room(&room).await?;
    }
    if creating {
        hub.store.set_room_unlisted(&room).await?;
    }
    let unlisted = existing.map_or(creating, |meta| meta.unlisted);
    // The creator (or the first entrant of a room without one) is its host.
    let settings = hub.claim_host(s.id, &room).await;
    let waiting = hub.lobby_for(s.id, &room, &settings);
    if !entered.already {
        hub.roster.settled().await;
        let _ = s
            .to(chat_group(&room))
            .emit(
                events::WELCOME,
                &(room.as_str(), &entered.member, entered.count),
            )
            .await;
        hub.rooms_changed();
    }
    let messages = hub.store.history(&room, query).await?;
    // Those messages may still be on their way to the room (queued, or
    // waiting for their order): this socket has them already.
    if let Some(last) = messages.last() {
        hub.handed_out(&room, s.id, last.seq);
    }
    Ok(ok(json!({
        "room": room,
        "count": entered.count,
        "members": entered.members,
        "messages": messages,
        "unlisted": unlisted,
        "protected": protected,
        "host": settings.host,
        "locked": settings.locked,
        "lobby": settings.lobby,
        "waiting": waiting,
    })))
}

pub async fn leave_room(
    hub: Arc<Hub>,
    s: SocketRef,
    _io: SocketIo,
    args: Args,
) -> Result<Value, ApiError> {
    let room = room_arg(&hub, &args)?;
    let Some(left) = hub.leave(&s, &room) else {
        return Err(ApiError::new(
            ErrorCode::NotInRoom,
            format!("not in room `{room}`"),
        ));
    };
    hub.roster.settled().await;
    left.announce(|group| s.to(group), Departure::Left).await;
    hub.rooms_changed();
    Ok(ok(json!({})))
}

pub async fn new_message(
    hub: Arc<Hub>,
    s: SocketRef,
    _io: SocketIo,
    args: Args,
) -> Result<Value, ApiError> {
    let room = room_arg(&hub, &args)?;
    let text = validate::message(args.str(1, "text")?, hub.config.limits.message_max)?;
    let speaker = hub.speaker(s.id, &room)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let metrics = hub.metrics.clone();
    let sender = s.clone();
    let ts = now_ms();
    let new = NewMessage {
        room: room.clone(),
        user: speaker.user,
        nickname: speaker.nickname,
        text,
        ts,
    };
    // Delivered from the store's callback: in seq order, and only once
    // durable. The delivery queue keeps that order without holding the store
    // up while a broadcast goes out to the other nodes.
    let deliveries = hub.deliveries.clone();
    let settled: Settled = Box::new(move |appended| {
        Box::pin(async move {
            if let Appended::Durable(message) = &appended {
                let _ = deliveries
                    .send(super::hub::Delivery {
                        from: sender,
                        message: message.clone(),
                    })
                    .await;
                Metrics::add(&metrics.messages_relayed, speaker.recipients);
            }
            let _ = tx.send(appended);
        })
    });
    hub.store.append(new, settled).await?;
    hub.room_active(&room, ts);
    match rx.await {
        Ok(Appended::Durable(message)) => Ok(ok(json!({ "message": message }))),
        Ok(Appended::Unknown) => Err(ApiError::new(
            ErrorCode::Unconfirmed,
            "the server could not tell whether the message was stored (its disk is full, \
             or its database stopped answering); if it was, it is delivered to the room \
             (and to you) as soon as the server can tell",
        )),
        _ => Err(ApiError::new(
            ErrorCode::Internal,
            "the message could not be stored; it was not sent",
        )),
    }
}

pub async fn history(
    hub: Arc<Hub>,
    s: SocketRef,
    _io: SocketIo,
    args: Args,
) -> Result<Value, ApiError> {
    let room = room_arg(&hub, &args)?;
    let opts = args.opt_object(1, "options")?;
    let password = password_option(&opts)?;
    hub.room_access(s.id, &room, password.as_deref()).await?;
    let messages = hub.store.history(&room, page_query(&opts)?).await?;
    Ok(ok(json!({ "messages": messages })))
}

/// Longest room password, in characters.
pub const PASSWORD_MAX: usize = 128;

/// The optional `password` of an options object: a string of 1 to
/// [`PASSWORD_MAX`] characters.
pub fn password_option(opts: &serde_json::Map<String, Value>) -> Result<Option<String>, ApiError> {
    match opts.get("password") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(p)) if (1..=PASSWORD_MAX).contains(&p.chars().count()) => {
            Ok(Some(p.clone()))
        }
        Some(_) => Err(ApiError::invalid_argument(format!(
            "`password` must be a string of 1 to {PASSWORD_MAX} characters"
        ))),
    }
}
