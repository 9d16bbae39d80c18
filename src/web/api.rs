//! The JSON API, `/healthz` and `/metrics`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Web;

use crate::http::ClientAddr;
use crate::signaling::protocol::{ApiError, ErrorCode};
use crate::signaling::{history_params, validate};

use crate::http::json_error as error;

fn api_error(e: ApiError) -> Response {
    let status = match e.code {
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::InvalidRoom if e.message == "no such room" => StatusCode::NOT_FOUND,
        ErrorCode::PasswordRequired | ErrorCode::WrongPassword => StatusCode::UNAUTHORIZED,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, e.code.as_str(), &e.message)
}

pub async fn rooms(State(web): State<Web>) -> Response {
    let list = web.hub.room_list();
    (
        [(header::CONTENT_TYPE, "application/json")],
        list.json.get().to_string(),
    )
        .into_response()
}

/// A room's history; a room with a password needs it in the
/// `X-Room-Password` header (never in the URL, where logs would keep it).
pub async fn messages(
    State(web): State<Web>,
    Path(room): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    client: Option<axum::Extension<ClientAddr>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let result = async {
        let room = validate::room_name(&room, web.hub.config.limits.room_name_max)?;
        if let Some(hash) = web.hub.store.room_password(&room).await? {
            let given = headers
                .get("x-room-password")
                .and_then(|v| v.to_str().ok())
                .filter(|p| !p.is_empty() && p.chars().count() <= crate::signaling::PASSWORD_MAX);
            web.hub
                .check_password(client.map(|c| c.0.ip), &room, &hash, given)
                .await?;
        }
        Ok::<_, ApiError>(
            web.hub
                .store
                .history(&room, history_params(params)?)
                .await?,
        )
    }
    .await;
    match result {
        Ok(messages) => Json(messages).into_response(),
        Err(e) => api_error(e),
    }
}

/// The address and scheme the server sees for this request: to check a
/// reverse-proxy set-up (`server.trusted_proxies`) from outside.
pub async fn whoami(client: Option<axum::Extension<ClientAddr>>) -> Response {
    let client = client.map(|c| c.0);
    Json(json!({
        "ip": client.map(|c| c.ip.to_string()),
        "https": client.is_some_and(|c| c.https),
    }))
    .into_response()
}

pub async fn healthz(State(web): State<Web>) -> Response {
    let (up, body) = web.hub.health(web.cert.as_deref()).await;
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub async fn metrics(State(web): State<Web>) -> Response {
    let text = web
        .hub
        .exposition(
            &web.io,
            web.cert.as_deref().and_then(|c| c.expires_in_secs()),
        )
        .await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Runs the relay self-test (at most every 10 s; a recent result is reused).
pub async fn relay_self_test(State(web): State<Web>) -> Response {
    match &web.hub.relay {
        None => error(
            StatusCode::NOT_FOUND,
            "relay_disabled",
            "the built-in relay is disabled",
        ),
        Some(relay) => {
            let t = relay
                .self_test_cached(std::time::Duration::from_secs(10))
                .await;
            let status = if t.ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, Json(t)).into_response()
        }
    }
}
