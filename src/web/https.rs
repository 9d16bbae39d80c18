//! The HTTPS side of the web server: a TLS listener for the server loop (`serve.rs`), the
//! plain-HTTP port that redirects to HTTPS, and the ACME challenge files
//! served there.
//!
//! TLS handshakes run in tasks of their own (with a deadline), so a slow or
//! silent client cannot hold up the accept loop; finished connections are
//! handed to the server loop like plain TCP ones, with the same `ConnectInfo`. A client
//! that speaks plain HTTP to the HTTPS port (someone typing `http://host:3000`)
//! is recognised by its first byte and redirected instead of getting a broken
//! handshake.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::conn::{Gate, Guarded};
use super::serve::Accept;

/// Longest TLS handshake a client gets.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the server loop to take them.
const QUEUE: usize = 1024;
/// The first byte of a TLS record carrying a handshake (ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// Where `certbot --webroot` puts its HTTP-01 tokens, inside the data directory.
pub const ACME_DIR: &str = "acme-challenge";

/// Connections handed over by the accept loop.
pub struct Incoming<Io> {
    rx: mpsc::Receiver<(Io, SocketAddr)>,
}

/// Accepted, handshaken TLS connections.
pub type TlsIncoming = Incoming<TlsStream<Guarded>>;

/// Connections to the HTTPS port that spoke plain HTTP (served by
/// [`redirect_router`]).
pub type PlainIncoming = Incoming<Guarded>;

impl TlsIncoming {
    /// Accepts on `listener` until `stop`; each connection admitted by `gate`
    /// gets TCP_NODELAY and a TLS handshake with `config`, or goes to the
    /// returned [`PlainIncoming`] when it does not start with a TLS handshake.
    pub fn new(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        gate: Arc<Gate>,
        stop: CancellationToken,
    ) -> (Self, PlainIncoming) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (plain_tx, plain_rx) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (tcp, from) = tokio::select! {
                    accepted = crate::net::accept(&listener) => accepted,
                    _ = stop.cancelled() => return,
                };
                let Some(permit) = gate.admit(from.ip()) else {
                    continue;
                };
                // Chat frames are small and latency-bound: no Nagle delay.
                let _ = tcp.set_nodelay(true);
                let tcp = gate.guard(tcp, permit);
                let (acceptor, tx, plain_tx) = (acceptor.clone(), tx.clone(), plain_tx.clone());
                tokio::spawn(async move {
                    let handshake = async {
                        let mut first = [0u8; 1];
                        match tcp.tcp().peek(&mut first).await {
                            Ok(1) if first[0] != TLS_HANDSHAKE_RECORD => Err(tcp),
                            _ => Ok(acceptor.accept(tcp).await),
                        }
                    };
                    match tokio::time::timeout(HANDSHAKE, handshake).await {
                        Ok(Ok(Ok(tls))) => {
                            let _ = tx.send((tls, from)).await;
                        }
                        Ok(Ok(Err(e))) => {
                            tracing::debug!(%from, error = %e, "TLS handshake failed")
                        }
                        Ok(Err(plain)) => {
                            let _ = plain_tx.send((plain, from)).await;
                        }
                        Err(_) => tracing::debug!(%from, "TLS handshake timed out"),
                    }
                });
            }
        });
        (Incoming { rx }, Incoming { rx: plain_rx })
    }
}

impl<Io> Accept for Incoming<Io>
where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Io = Io;

    async fn accept(&mut self) -> Option<(Self::Io, SocketAddr)> {
        self.rx.recv().await
    }
}

/// Where plain-HTTP requests are sent.
#[derive(Debug, Clone)]
pub struct RedirectTarget {
    /// `server.public_url` when it is an https:// URL (no trailing slash).
    pub base: Option<String>,
    /// The HTTPS port, used with the request's own host otherwise.
    pub https_port: u16,
    /// Fallback host when the request has no usable Host header.
    pub host: String,
    /// The data directory, for ACME HTTP-01 challenge files.
    pub data_dir: PathBuf,
}

/// The plain-HTTP router: ACME challenges answered, everything else redirected.
pub fn redirect_router(target: RedirectTarget) -> Router {
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(acme_challenge))
        .fallback(redirect)
        .with_state(Arc::new(target))
}

async fn redirect(
    State(target): State<Arc<RedirectTarget>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let location = match &target.base {
        Some(base) => format!("{base}{path}"),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
                .map(|a| a.host().to_string())
                .unwrap_or_else(|| target.host.clone());
            match target.https_port {
                443 => format!("https://{host}{path}"),
                port => format!("https://{host}:{port}{path}"),
            }
        }
    };
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, location)],
    )
        .into_response()
}

/// `certbot certonly --webroot -w <data_dir>` writes tokens to
/// `<data_dir>/.well-known/acme-challenge/`; they are served from there.
async fn acme_challenge(
    State(target): State<Arc<RedirectTarget>>,
    Path(token): Path<String>,
) -> Response {
    let valid = !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return StatusCode::NOT_FOUND.into_response();
    }
    let path = target
        .data_dir
        .join(".well-known")
        .join(ACME_DIR)
        .join(&token);
    match tokio::fs::read(&path).await {
        Ok(body) => ([(header::CONTENT_TYPE, "text/plain")], body).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}
