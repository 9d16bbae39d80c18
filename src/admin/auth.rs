//! Who is calling the admin side: the login cookie or the API bearer token,
//! the anti-forgery checks on state-changing requests, and the cookie itself.
//!
//! A session caller's state-changing request must come from the admin page
//! itself: same origin (`Origin` / `Sec-Fetch-Site`) and the session's CSRF
//! token in `X-CSRF-Token` (or the `csrf` form field for logout). Bearer-token
//! callers are scripts: no ambient credential, so no forgery to guard against.

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use sha2::{Digest, Sha256};

use super::{Admin, AdminRef};

/// Name of the admin session cookie.
pub const COOKIE: &str = "noom_admin";
/// Header that carries the CSRF token of the session.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How a caller proved it is an administrator.
#[derive(Debug, Clone)]
pub enum Via {
    Session { token: String, csrf: String },
    Token,
}

/// An authenticated administrator.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The client's address, logged with every action.
    pub addr: IpAddr,
    pub via: Via,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No valid session or token: 401.
    Unauthenticated,
    /// Authenticated, but the request may be forged: 403.
    Forgery,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            Refused::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "log in at /admin/login, or send `Authorization: Bearer <admin.api_token>`",
            ),
            Refused::Forgery => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "cross-site request refused: state changes need the page's X-CSRF-Token from the same origin",
            ),
        };
        let mut response = crate::http::json_error(status, code, message);
        if self == Refused::Unauthenticated {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"noom-admin\""),
            );
        }
        response
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// False when the browser says the request comes from another site.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => {
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
            let authority = origin
                .to_str()
                .ok()
                .and_then(|o| o.split_once("://"))
                .map(|(_, rest)| rest.trim_end_matches('/'));
            matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
        }
    }
}

/// Compares two secrets without leaking where they differ (through their hashes).
pub fn secrets_equal(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

impl Admin {
    /// The client address of a request: the TCP peer, or what a trusted
    /// reverse proxy says (`server.trusted_proxies`; see [`crate::http`]).
    pub fn client_addr(&self, parts: &Parts) -> IpAddr {
        crate::http::ClientAddr::of(&parts.extensions).ip
    }

    /// True when the browser reached the server over HTTPS (directly or
    /// through a trusted proxy): the cookie is then marked `Secure`.
    pub fn over_https(&self, parts: &Parts) -> bool {
        crate::http::ClientAddr::of(&parts.extensions).https
    }

    /// The administrator behind a request, without the forgery checks.
    pub fn identify(&self, headers: &HeaderMap, addr: IpAddr) -> Option<Caller> {
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            let token = auth.to_str().ok()?.strip_prefix("Bearer ")?.trim();
            let expected = self.api_token.as_deref()?;
            return secrets_equal(token, expected).then_some(Caller {
                addr,
                via: Via::Token,
            });
        }
        let token = cookie_value(headers, COOKIE)?;
        let session = self.sessions.get(&token)?;
        Some(Caller {
            addr,
            via: Via::Session {
                token,
                csrf: session.csrf,
            },
        })
    }

    /// The administrator behind a request, with the forgery checks for
    /// anything but GET and HEAD.
    pub fn authorize(&self, parts: &Parts) -> Result<Caller, Refused> {
        let caller = self
            .identify(&parts.headers, self.client_addr(parts))
            .ok_or(Refused::Unauthenticated)?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD);
        if let (false, Via::Session { csrf, .. }) = (safe, &caller.via) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !same_origin(&parts.headers) || !secrets_equal(sent, csrf) {
                return Err(Refused::Forgery);
            }
        }
        Ok(caller)
    }

    /// `Set-Cookie` value that opens a session in the browser.
    pub fn session_cookie(&self, token: &str, secure: bool) -> String {
        let max_age = i64::try_from(self.sessions.ttl().as_secs()).unwrap_or(i64::MAX);
        Cookie::build((COOKIE, token.to_string()))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(secure)
            .max_age(cookie::time::Duration::seconds(max_age))
            .build()
            .to_string()
    }

    /// `Set-Cookie` value that ends the session in the browser.
    pub fn clear_cookie(&self, secure: bool) -> String {
        Cookie::build((COOKIE, ""))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(secure)
            .max_age(cookie::time::Duration::ZERO)
            .build()
            .to_string()
    }
}

/// Extractor for the JSON API: an authorized administrator, or 401/403.
pub struct ApiCaller(pub Caller);

impl FromRequestParts<AdminRef> for ApiCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, admin: &AdminRef) -> Result<Self, Response> {
        admin
            .authorize(parts)
            .map(ApiCaller)
            .map_err(IntoResponse::into_response)
    }
}
