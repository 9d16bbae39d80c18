//! The host's requests: hand the room over, mute, remove, lock, lobby, admit.
//!
//! Each is `event(room, options)`; the hub checks that the caller is the
//! room's host and carries it out ([`Hub::moderate`]), as it does for the
//! admin page.

use std::sync::Arc;

use super::{SocketIo, SocketRef};
use serde_json::Value;

use super::chat::room_arg;
use super::hub::{Action, Hub, Moderator};
use super::protocol::{ApiError, Args, ok};

/// Handles the moderation request `kind` (`set_host`, `mute`, `remove`,
/// `room_settings`, `admit`).
pub async fn moderate(
    kind: &'static str,
    hub: Arc<Hub>,
    s: SocketRef,
    io: SocketIo,
    args: Args,
) -> Result<Value, ApiError> {
    let room = room_arg(&hub, &args)?;
    let action = Action::parse(kind, &args.opt_object(1, "options")?)?;
    let reply = hub
        .moderate(&io, Moderator::Host(s.id), &room, action)
        .await?;
    Ok(ok(reply))
}
