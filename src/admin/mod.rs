//! The admin page: inspect and manage rooms, people and the relay.
//!
//! Everything here sits behind a login (an Argon2id password, a session cookie
//! and CSRF checks) or the API bearer token; nothing is reachable without one,
//! over HTTP or over the live `/admin` Socket.IO namespace.
//! - [`password`]: hashing, the generated first password;
//! - [`session`]: admin sessions and the failed-login limiter;
//! - [`auth`]: who is calling, forgery checks, the cookie;
//! - [`views`]: the snapshots the page and the API show;
//! - [`actions`]: disconnect, end a call, close a room, delete history, revoke;
//! - [`http`]: the pages and the JSON API under `/admin/api/`;
//! - [`live`]: the `/admin` namespace that pushes the views every second.

mod actions;
pub mod auth;
mod http;
pub mod live;
pub mod password;
pub mod session;
pub mod views;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::signaling::SocketIo;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub use http::router;
pub use password::PasswordError;

use crate::signaling::Hub;
use crate::store::StoreError;
use crate::tls::CertStore;

/// Password checks running at once (each takes ~19 MiB and tens of ms).
const VERIFY_CONCURRENCY: usize = 2;

/// The admin side's state, shared by its routes and its namespace.
pub struct Admin {
    pub hub: Arc<Hub>,
    pub io: SocketIo,
    password_hash: String,
    api_token: Option<String>,
    pub sessions: session::AdminLogins,
    limiter: session::LoginLimiter,
    verifying: tokio::sync::Semaphore,
    started: Instant,
    /// The certificate served, when HTTPS is on (its expiry is a metric).
    cert: Option<Arc<CertStore>>,
}

/// The admin router's state.
pub type AdminRef = Arc<Admin>;

impl Admin {
    pub fn new(
        hub: Arc<Hub>,
        io: SocketIo,
        password_hash: String,
        cert: Option<Arc<CertStore>>,
    ) -> Self {
        let cfg = &hub.config.admin;
        let sessions = session::AdminLogins::new(Duration::from_secs(cfg.session_ttl_secs));
        let limiter = session::LoginLimiter::new(
            cfg.login_failures_max,
            Duration::from_secs(cfg.login_lockout_secs),
        );
        let api_token = Some(cfg.api_token.clone()).filter(|t| !t.is_empty());
        Self {
            hub,
            io,
            password_hash,
            api_token,
            sessions,
            limiter,
            verifying: tokio::sync::Semaphore::new(VERIFY_CONCURRENCY),
            started: Instant::now(),
            cert,
        }
    }

    /// Checks a password on the blocking pool, a few at a time.
    async fn password_matches(&self, password: String) -> bool {
        let Ok(_permit) = self.verifying.acquire().await else {
            return false;
        };
        let hash = self.password_hash.clone();
        tokio::task::spawn_blocking(move || password::verify(&hash, &password))
            .await
            .unwrap_or(false)
    }
}

/// Loads the admin password hash for `config` (generating a password on first
/// start, which is logged once). Runs blocking file I/O and hashing.
pub fn load_password(configured: &str, data_dir: &Path) -> Result<String, PasswordError> {
    let loaded = password::load_or_generate(configured, data_dir)?;
    if let Some(generated) = loaded.generated {
        tracing::warn!(
            "admin password generated: {generated} (log in at /admin; it is stored hashed in \
             {} and will not be shown again; set admin.password_hash to choose your own)",
            data_dir.join(password::PASSWORD_FILE).display()
        );
    }
    Ok(loaded.hash)
}

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_argument"),
            AdminError::Store(StoreError::NoSuchRoom) => (StatusCode::NOT_FOUND, "not_found"),
            AdminError::Store(e) => {
                tracing::error!(error = %e, "store error in an admin request");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            AdminError::Internal(e) => {
                tracing::error!(error = %e, "admin request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        crate::http::json_error(status, code, &self.to_string())
    }
}
