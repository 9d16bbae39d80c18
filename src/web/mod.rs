//! The HTTP side: pages, the JSON API, health, metrics and embedded static files.
//!
//! Routes follow `docs/protocol.md` ("HTTP"). [`crate::app`] merges the admin
//! side's router and mounts Socket.IO around them; everything else is
//! answered here. The server loop is in [`serve`] and [`conn`], HTTPS and the
//! redirect port in [`https`]; who the client is comes from [`crate::http`].

mod api;
mod assets;
pub mod conn;
pub mod https;
mod pages;
pub mod serve;

use std::sync::Arc;

use crate::signaling::SocketIo;
use axum::Router;
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::signaling::Hub;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct Web {
    pub hub: Arc<Hub>,
    pub io: SocketIo,
    /// The certificate served, when `[tls]` is on (expiry in health and metrics).
    pub cert: Option<Arc<crate::tls::CertStore>>,
}

/// Pages may load only what the server itself serves, and connect only to it:
/// `connect-src 'self'` covers the page's own `ws:`/`wss:` origin (CSP 3), so
/// an injected script could not open a socket to another host.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The web app's routes (pages, API, health, metrics, static files).
pub fn router(web: Web) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/r/{room}", get(pages::room))
        .route("/api/rooms", get(api::rooms))
        .route("/api/rooms/{room}/messages", get(api::messages))
        .route("/api/relay/self-test", get(api::relay_self_test))
        .route("/api/whoami", get(api::whoami))
        .route("/docs/deploy.md", get(assets::deploy_doc))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/static/{*path}", get(assets::serve))
        .fallback(fallback)
        .with_state(web)
}

/// What every response gets, whichever router made it: compression and the
/// security headers (CSP, nosniff, referrer policy).
pub fn with_headers(app: Router) -> Router {
    app.layer(CompressionLayer::new())
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
}

/// Unknown API paths are a JSON 404; any other unknown path goes home.
async fn fallback(uri: Uri) -> Response {
    if uri.path() == "/api" || uri.path().starts_with("/api/") {
        crate::http::json_error(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            "no such API endpoint",
        )
    } else {
        Redirect::to("/").into_response()
    }
}
