//! What an administrator can do, and how each action reaches the clients it
//! touches through the wire contract (`docs/protocol.md`, "Administration"):
//! `kicked` before a disconnect, `call_ended`, `room_closed`, `history_cleared`
//! and `message_deleted`. Every action is logged with the administrator's address.

use std::str::FromStr;
use std::sync::Arc;

use serde_json::{Value, json};
use socketioxide::socket::Sid;

use super::auth::Caller;
use super::{Admin, AdminError};
use crate::cluster::Order;
use crate::signaling::hub::{Action, Moderator, chat_group};
use crate::signaling::protocol::{ErrorCode, KickReason, events};

fn log(caller: &Caller, action: &str, target: &str, detail: &str) {
    tracing::info!(
        target: "noom::admin",
        admin = %caller.addr,
        action,
        target_name = target,
        detail,
        "admin action"
    );
}

impl Admin {
    /// Has the other nodes carry out `order` on their connections.
    async fn order(&self, order: Order) -> Result<(), AdminError> {
        self.hub.roster.order(order).await.map_err(|e| {
            tracing::error!(target: "noom::admin", error = %e, "an order could not reach the other nodes");
            AdminError::Internal(format!(
                "the other nodes could not be reached (Redis: {e}); nothing was done there"
            ))
        })
    }

    /// Disconnects one connection (socket id).
    pub async fn disconnect(&self, caller: &Caller, id: &str) -> Result<Value, AdminError> {
        let sid = Sid::from_str(id).ok();
        let kicked = sid.is_some_and(|sid| self.hub.kick(&self.io, sid, KickReason::Disconnected));
        if !kicked {
            // Another node's connection: that node closes it.
            if !sid.is_some_and(|sid| self.hub.is_remote(sid)) {
                return Err(AdminError::NotFound(format!("no connection `{id}`")));
            }
            self.order(Order::Kick {
                sid: id.to_string(),
                reason: "disconnected".into(),
            })
            .await?;
        }
        log(caller, "disconnect", id, "");
        Ok(json!({ "ok": true }))
    }

    /// Ends the call of `room`: its participants get `call_ended` and leave it.
    pub async fn end_call(&self, caller: &Caller, room: &str) -> Result<Value, AdminError> {
        let (_, remote) = self.hub.remote_in_room(room);
        if remote > 0 {
            self.order(Order::EndCall { room: room.into() }).await?;
        }
        let ended = self.hub.end_call(&self.io, room) + remote;
        if ended == 0 {
            return Err(AdminError::NotFound(format!("no call in `{room}`")));
        }
        log(caller, "end_call", room, &format!("{ended} participants"));
        Ok(json!({ "ok": true, "participants": ended }))
    }

    /// Closes `room`: its members get `room_closed` and are taken out, its
    /// history is deleted and it leaves the lists until someone enters it again.
    pub async fn close_room(
        self: &Arc<Self>,
        caller: &Caller,
        room: &str,
    ) -> Result<Value, AdminError> {
        if self.hub.store.room(room).await.is_none() {
            return Err(AdminError::NotFound(format!("no room `{room}`")));
        }
        let (remote, _) = self.hub.remote_in_room(room);
        // Every node takes its own members out (an order to the others even
        // without members there: someone may be entering).
        self.order(Order::CloseRoom { room: room.into() }).await?;
        let members = self.hub.close_room(&self.io, room) + remote;
        let removed = self.hub.store.close_room(room).await?;
        self.hub.store.durable().await?;
        self.hub.room_closed(room);
        self.hub.rooms_changed();
        log(
            caller,
            "close_room",
            room,
            &format!("{members} members out, {removed} messages deleted"),
        );
        Ok(json!({ "ok": true, "members": members, "messages": removed }))
    }

    /// Deletes the whole history of `room`; its members get `history_cleared`.
    pub async fn clear_history(&self, caller: &Caller, room: &str) -> Result<Value, AdminError> {
        if self.hub.store.room(room).await.is_none() {
            return Err(AdminError::NotFound(format!("no room `{room}`")));
        }
        let removed = self.hub.store.clear_history(room).await?;
        self.hub.store.durable().await?;
        self.hub.history_cleared(room);
        self.hub.rooms_changed();
        let _ = self
            .io
            .to(chat_group(room))
            .emit(events::HISTORY_CLEARED, &(room,))
            .await;
        log(
            caller,
            "clear_history",
            room,
            &format!("{removed} messages"),
        );
        Ok(json!({ "ok": true, "messages": removed }))
    }

    /// Deletes one message; the room's members get `message_deleted`.
    pub async fn delete_message(
        &self,
        caller: &Caller,
        room: &str,
        seq: u64,
    ) -> Result<Value, AdminError> {
        if self.hub.store.room(room).await.is_none() {
            return Err(AdminError::NotFound(format!("no room `{room}`")));
        }
        if !self.hub.store.delete_message(room, seq).await? {
            return Err(AdminError::NotFound(format!(
                "no message {seq} in `{room}`"
            )));
        }
        self.hub.store.durable().await?;
        let _ = self
            .io
            .to(chat_group(room))
            .emit(events::MESSAGE_DELETED, &(room, seq))
            .await;
        log(caller, "delete_message", room, &format!("seq {seq}"));
        Ok(json!({ "ok": true }))
    }

    /// A moderation action in `room`, as its host could take it (`docs/protocol.md`,
    /// "Moderation"): `{ action, to?, from?, locked?, lobby?, admit? }` with
    /// `action` one of `set_host`, `mute`, `remove`, `room_settings`, `admit`.
    pub async fn moderate(
        &self,
        caller: &Caller,
        room: &str,
        body: &Value,
    ) -> Result<Value, AdminError> {
        let bad = |m: String| AdminError::BadRequest(m);
        let opts = body
            .as_object()
            .ok_or_else(|| bad("send a JSON object with `action`".into()))?;
        let kind = opts
            .get("action")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("`action` must be a string".into()))?;
        let action = Action::parse(kind, opts).map_err(|e| bad(e.message))?;
        if self.hub.store.room(room).await.is_none() {
            return Err(AdminError::NotFound(format!("no room `{room}`")));
        }
        let mut reply = self
            .hub
            .moderate(&self.io, Moderator::Admin, room, action)
            .await
            .map_err(|e| match e.code {
                ErrorCode::InvalidArgument => AdminError::BadRequest(e.message),
                ErrorCode::Internal => AdminError::Internal(e.message),
                _ => AdminError::NotFound(e.message),
            })?;
        log(caller, kind, room, &body.to_string());
        reply["ok"] = Value::Bool(true);
        Ok(reply)
    }

    /// Revokes every session of the public user id `user`: its tokens stop
    /// working, its connections get `kicked`, its relay allocations end and its
    /// TURN credentials are refused.
    pub async fn revoke_user(&self, caller: &Caller, user: &str) -> Result<Value, AdminError> {
        let sessions = self.hub.store.revoke_user(user).await?;
        let connections = self.hub.connections_of_user(user);
        let remote = self.hub.remote_connections_of_user(user);
        if sessions == 0 && connections.is_empty() && remote == 0 {
            return Err(AdminError::NotFound(format!("no session of user `{user}`")));
        }
        self.hub.store.durable().await?;
        if let Some(relay) = &self.hub.relay {
            relay.revoke_user(user);
        }
        for sid in &connections {
            self.hub.kick(&self.io, *sid, KickReason::SessionRevoked);
        }
        self.order(Order::RevokeUser { user: user.into() }).await?;
        log(
            caller,
            "revoke_user",
            user,
            &format!(
                "{sessions} sessions, {} connections",
                connections.len() + remote
            ),
        );
        Ok(json!({ "ok": true, "sessions": sessions, "connections": connections.len() + remote }))
    }
}
