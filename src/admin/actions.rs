//! What an administrator can do, and how each action reaches the clients it
//! touches through the wire contract (`docs/protocol.md`, "Administration"):
//! `kicked` before a disconnect, `call_ended`, `room_closed`, `history_cleared`
//! and `message_deleted`. Every action is logged with the administrator's address.

use std::str::FromStr;
use std::sync::Arc;

use serde_json::{Value, json};
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;

use super::auth::Caller;
use super::{Admin, AdminError, blocking};
use crate::signaling::hub::{call_group, chat_group};

/// Why a connection was closed, as `kicked` tells it.
#[derive(Debug, Clone, Copy)]
enum KickReason {
    Disconnected,
    SessionRevoked,
}

impl KickReason {
    fn payload(self) -> Value {
        match self {
            KickReason::Disconnected => json!({
                "reason": "disconnected",
                "message": "An administrator disconnected you.",
            }),
            KickReason::SessionRevoked => json!({
                "reason": "session_revoked",
                "message": "An administrator ended your session.",
            }),
        }
    }
}

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

/// Tells a socket why, then closes it (its rooms hear `bye` as usual).
fn kick(socket: SocketRef, reason: KickReason) {
    let _ = socket.emit("kicked", &reason.payload());
    let _ = socket.disconnect();
}

impl Admin {
    /// Disconnects one connection (socket id).
    pub async fn disconnect(&self, caller: &Caller, id: &str) -> Result<Value, AdminError> {
        let socket = Sid::from_str(id)
            .ok()
            .and_then(|sid| self.io.get_socket(sid))
            .ok_or_else(|| AdminError::NotFound(format!("no connection `{id}`")))?;
        kick(socket, KickReason::Disconnected);
        log(caller, "disconnect", id, "");
        Ok(json!({ "ok": true }))
    }

    /// Ends the call of `room`: its participants get `call_ended` and leave it.
    pub async fn end_call(&self, caller: &Caller, room: &str) -> Result<Value, AdminError> {
        let ended = self.hub.end_call(room);
        if ended.is_empty() {
            return Err(AdminError::NotFound(format!("no call in `{room}`")));
        }
        for sid in &ended {
            if let Some(s) = self.io.get_socket(*sid) {
                s.leave(call_group(room));
                let _ = s.emit("call_ended", &(room,));
            }
        }
        log(
            caller,
            "end_call",
            room,
            &format!("{} participants", ended.len()),
        );
        Ok(json!({ "ok": true, "participants": ended.len() }))
    }

    /// Closes `room`: its members get `room_closed` and are taken out, its
    /// history is deleted and it leaves the lists until someone enters it again.
    pub async fn close_room(
        self: &Arc<Self>,
        caller: &Caller,
        room: &str,
    ) -> Result<Value, AdminError> {
        if self.hub.store.room(room).is_none() {
            return Err(AdminError::NotFound(format!("no room `{room}`")));
        }
        let members = self.hub.clear_room(room);
        for sid in &members {
            if let Some(s) = self.io.get_socket(*sid) {
                let _ = s.emit("room_closed", &(room,));
                s.leave(chat_group(room));
                s.leave(call_group(room));
            }
        }
        let store = self.hub.store.clone();
        let name = room.to_string();
        let removed = blocking(move || Ok(store.close_room(&name)?)).await?;
        self.hub.store.durable().await?;
        self.hub.room_closed(room);
        self.hub.rooms_changed();
        log(
            caller,
            "close_room",
            room,
            &format!("{} members out, {removed} messages deleted", members.len()),
        );
        Ok(json!({ "ok": true, "members": members.len(), "messages": removed }))
    }

    /// Deletes the whole history of `room`; its members get `history_cleared`.
    pub async fn clear_history(&self, caller: &Caller, room: &str) -> Result<Value, AdminError> {
        if self.hub.store.room(room).is_none() {
            return Err(AdminError::NotFound(format!("no room `{room}`")));
        }
        let store = self.hub.store.clone();
        let name = room.to_string();
        let removed = blocking(move || Ok(store.clear_history(&name)?)).await?;
        self.hub.store.durable().await?;
        let _ = self
            .io
            .to(chat_group(room))
            .emit("history_cleared", &(room,))
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
        if self.hub.store.room(room).is_none() {
            return Err(AdminError::NotFound(format!("no room `{room}`")));
        }
        if !self.hub.store.delete_message(room, seq)? {
            return Err(AdminError::NotFound(format!(
                "no message {seq} in `{room}`"
            )));
        }
        self.hub.store.durable().await?;
        let _ = self
            .io
            .to(chat_group(room))
            .emit("message_deleted", &(room, seq))
            .await;
        log(caller, "delete_message", room, &format!("seq {seq}"));
        Ok(json!({ "ok": true }))
    }

    /// Revokes every session of the public user id `user`: its tokens stop
    /// working, its connections get `kicked`, its relay allocations end and its
    /// TURN credentials are refused.
    pub async fn revoke_user(&self, caller: &Caller, user: &str) -> Result<Value, AdminError> {
        let store = self.hub.store.clone();
        let name = user.to_string();
        let sessions = blocking(move || Ok(store.revoke_user(&name)?)).await?;
        let connections = self.hub.connections_of_user(user);
        if sessions == 0 && connections.is_empty() {
            return Err(AdminError::NotFound(format!("no session of user `{user}`")));
        }
        self.hub.store.durable().await?;
        if let Some(relay) = &self.hub.relay {
            relay.revoke_user(user);
        }
        for sid in &connections {
            if let Some(s) = self.io.get_socket(*sid) {
                kick(s, KickReason::SessionRevoked);
            }
        }
        log(
            caller,
            "revoke_user",
            user,
            &format!("{sessions} sessions, {} connections", connections.len()),
        );
        Ok(json!({ "ok": true, "sessions": sessions, "connections": connections.len() }))
    }
}
