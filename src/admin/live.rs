//! The live admin page: the `/admin` Socket.IO namespace.
//!
//! The handshake must carry a valid admin session cookie and come from the
//! same origin (no cross-site WebSocket hijacking); everything else is refused
//! with a `connect_error`. Once connected, the page gets `overview` every second
//! and, for the room it `watch`es, `room` (members, counters). It sends nothing
//! that changes state: actions go through the JSON API and its CSRF checks.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::signaling::{AckSender, SocketIo, SocketRef};
use serde_json::{Value, json};
use socketioxide::extract::TryData;
use socketioxide::handler::ConnectHandler;
use tokio_util::sync::CancellationToken;

use super::Admin;
use super::auth::{self, Via};
use crate::signaling::protocol::events;
use crate::store::StoreError;

/// The namespace of the live admin page.
pub const NAMESPACE: &str = "/admin";
/// How often connected admin pages get fresh views.
pub const TICK: Duration = Duration::from_secs(1);

/// The room an admin page is looking at (socket extension).
#[derive(Clone)]
struct Watched(String);

/// How the socket's administrator logged in (socket extension), so that a
/// logout or an expired session also ends the live connection.
#[derive(Clone)]
struct LoggedIn(Via);

#[derive(Debug, thiserror::Error)]
#[error("not logged in as an administrator (log in at /admin/login)")]
struct NotAdmin;

/// Registers the namespace. It holds the admin state weakly, like the main
/// namespace holds the hub, so that a lingering connection never keeps the
/// store open after shutdown.
pub async fn register(
    io: &SocketIo,
    admin: &Arc<Admin>,
) -> Result<(), crate::signaling::AdapterError> {
    let weak = Arc::downgrade(admin);
    let check = {
        let weak = weak.clone();
        move |s: SocketRef| {
            let weak = weak.clone();
            async move { authenticate(&weak, &s) }
        }
    };
    let connect = move |s: SocketRef| {
        let weak = weak.clone();
        async move { on_connect(weak, s).await }
    };
    io.ns(NAMESPACE, connect.with(check))
        .await
        .map_err(|e| crate::signaling::AdapterError(e.to_string()))
}

fn authenticate(admin: &Weak<Admin>, s: &SocketRef) -> Result<(), NotAdmin> {
    let admin = admin.upgrade().ok_or(NotAdmin)?;
    let parts = s.req_parts();
    let caller = admin
        .identify(&parts.headers, admin.client_addr(parts))
        .ok_or(NotAdmin)?;
    // The cookie is ambient: only the admin page's own origin may use it here.
    if matches!(caller.via, Via::Session { .. }) && !auth::same_origin(&parts.headers) {
        tracing::warn!(target: "noom::admin", client = %caller.addr, "cross-site admin socket refused");
        return Err(NotAdmin);
    }
    s.extensions.insert(LoggedIn(caller.via));
    Ok(())
}

async fn on_connect(admin: Weak<Admin>, s: SocketRef) {
    let Some(a) = admin.upgrade() else { return };
    push_overview(&a, &s).await;
    drop(a);
    s.on(
        "watch",
        move |s: SocketRef, ack: AckSender, TryData(room): TryData<Value>| {
            let admin = admin.clone();
            async move {
                let Some(admin) = admin.upgrade() else { return };
                let reply = match room {
                    Ok(Value::Null) => {
                        s.extensions.remove::<Watched>();
                        json!({ "ok": true })
                    }
                    Ok(Value::String(room)) => {
                        s.extensions.insert(Watched(room.clone()));
                        match detail(&admin, room).await {
                            Some(d) => json!({ "ok": true, "room": d }),
                            None => json!({ "ok": true, "room": null }),
                        }
                    }
                    _ => json!({ "ok": false, "error": {
                        "code": "invalid_argument",
                        "message": "watch takes a room name or null",
                    }}),
                };
                let _ = ack.send(&reply);
            }
        },
    );
}

/// A view as JSON; `None` (logged) on failure.
fn view<T: serde::Serialize>(built: Result<T, StoreError>) -> Option<Value> {
    match built {
        Ok(v) => serde_json::to_value(v).ok(),
        Err(e) => {
            tracing::error!(error = %e, "cannot build a view for the admin page");
            None
        }
    }
}

async fn overview(admin: &Arc<Admin>) -> Option<Value> {
    view(admin.overview().await)
}

/// A room's detail as JSON (`null` when the room is gone).
async fn detail(admin: &Arc<Admin>, room: String) -> Option<Value> {
    view(admin.room_detail(&room).await)
}

async fn push_overview(admin: &Arc<Admin>, s: &SocketRef) {
    if let Some(o) = overview(admin).await {
        let _ = s.emit(events::admin::OVERVIEW, &o);
    }
}

/// Pushes fresh views to the connected admin pages until `shutdown`.
pub async fn run(admin: Arc<Admin>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let Some(ns) = admin.io.of(NAMESPACE) else {
            continue;
        };
        let mut sockets = ns.clone().sockets();
        // A session that ended (logout, expiry) takes its live pages with it.
        sockets.retain(|s| match s.extensions.get::<LoggedIn>() {
            Some(LoggedIn(Via::Token)) => true,
            Some(LoggedIn(Via::Session { token, .. })) if admin.sessions.get(&token).is_some() => {
                true
            }
            _ => {
                let _ = s.clone().disconnect();
                false
            }
        });
        if sockets.is_empty() {
            continue;
        }
        if let Some(o) = overview(&admin).await {
            let _ = ns.emit(events::admin::OVERVIEW, &o).await;
        }
        for s in sockets {
            if let Some(Watched(room)) = s.extensions.get::<Watched>() {
                let d = detail(&admin, room).await.unwrap_or(Value::Null);
                let _ = s.emit(events::admin::ROOM, &d);
            }
        }
    }
}
