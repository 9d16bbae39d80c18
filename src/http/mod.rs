//! What every HTTP handler shares, whichever subsystem serves it: who the
//! client is (address and scheme behind trusted reverse proxies) and the JSON
//! error body.
//!
//! A leaf: it imports nothing else of the crate, so the web app, signaling and
//! the admin side can all depend on it without depending on each other.
//! [`attach_client`] computes the client once per request and puts a
//! [`ClientAddr`] into its extensions; handlers (and Socket.IO connections,
//! through their handshake request) read it from there.

pub mod client_addr;

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub use client_addr::Proxies;

/// The client of a request as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The TCP peer, or the address a trusted reverse proxy forwarded.
    pub ip: IpAddr,
    /// Whether the browser reached the server over HTTPS (here or at the proxy).
    pub https: bool,
}

impl ClientAddr {
    /// The client of a request: from its extensions when [`attach_client`] ran,
    /// else the bare TCP peer (unspecified when unknown).
    pub fn of(extensions: &axum::http::Extensions) -> ClientAddr {
        if let Some(c) = extensions.get::<ClientAddr>() {
            return *c;
        }
        let ip = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        ClientAddr { ip, https: false }
    }
}

/// Middleware (`axum::middleware::map_request_with_state(proxies, attach_client)`)
/// that puts the request's [`ClientAddr`] into its extensions, as `proxies`
/// decide it.
pub async fn attach_client(
    axum::extract::State(proxies): axum::extract::State<Proxies>,
    mut req: Request,
) -> Request {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if let Some(peer) = peer {
        let client = ClientAddr {
            ip: proxies.client_ip(peer, req.headers()),
            https: proxies.is_https(peer, req.headers()),
        };
        req.extensions_mut().insert(client);
    }
    req
}

/// A JSON error body in the same shape as a failed acknowledgement:
/// `{ ok: false, error: { code, message } }`.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "ok": false, "error": { "code": code, "message": message } })),
    )
        .into_response()
}
