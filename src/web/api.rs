//! The JSON API, `/healthz` and `/metrics`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use socketioxide::SocketIo;

use super::Web;

use crate::metrics::Gauges;
use crate::signaling::Hub;
use crate::signaling::protocol::{ApiError, ErrorCode};
use crate::signaling::{page_query, validate};
use crate::store::HistoryQuery;

/// A JSON error body in the same shape as a failed acknowledgement.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "ok": false, "error": { "code": code, "message": message } })),
    )
        .into_response()
}

fn api_error(e: ApiError) -> Response {
    let status = match e.code {
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::InvalidRoom if e.message == "no such room" => StatusCode::NOT_FOUND,
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

/// Reads `?before=&after=&limit=` of a history page (empty means absent), with
/// the same rules as the `history` event.
pub fn history_params(params: HashMap<String, String>) -> Result<HistoryQuery, ApiError> {
    let mut opts = serde_json::Map::new();
    for (name, raw) in params {
        if !matches!(name.as_str(), "before" | "after" | "limit") {
            return Err(ApiError::invalid_argument(format!(
                "unknown parameter `{name}` (expected before, after, limit)"
            )));
        }
        if raw.is_empty() {
            continue;
        }
        let n: u64 = raw.parse().map_err(|_| {
            ApiError::invalid_argument(format!("`{name}` must be a non-negative integer"))
        })?;
        opts.insert(name, Value::from(n));
    }
    page_query(&opts)
}

pub async fn messages(
    State(web): State<Web>,
    Path(room): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let result = (|| {
        let room = validate::room_name(&room, web.hub.config.limits.room_name_max)?;
        Ok(web.hub.store.history(&room, history_params(params)?)?)
    })();
    match result {
        Ok(messages) => Json(messages).into_response(),
        Err(e) => api_error(e),
    }
}

/// The address and scheme the server sees for this request: to check a
/// reverse-proxy set-up (`server.trusted_proxies`) from outside.
pub async fn whoami(
    State(web): State<Web>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
) -> Response {
    Json(json!({
        "ip": web.proxies.client_ip(peer, &headers).to_string(),
        "https": web.proxies.is_https(peer, &headers),
    }))
    .into_response()
}

pub async fn healthz(State(web): State<Web>) -> Response {
    let store = web.hub.store.health();
    // A relay whose self-test has not finished yet is not reported as failing.
    let (relay_ok, relay) = match &web.hub.relay {
        None => match &web.hub.relay_error {
            Some(e) => (false, json!({ "status": "failing", "detail": e })),
            None => (true, json!({ "status": "disabled" })),
        },
        Some(r) => match r.last_self_test() {
            None => (true, json!({ "status": "starting" })),
            Some(t) if t.ok => (true, json!({ "status": "ok" })),
            Some(t) => (false, json!({ "status": "failing", "detail": t.detail })),
        },
    };
    // An expired certificate fails every visitor; one about to expire is a warning.
    let (tls_ok, tls) = match &web.cert {
        None => (true, json!({ "status": "off" })),
        Some(cert) => {
            let left = cert.expires_in_secs();
            let status = match left {
                Some(s) if s <= 0 => "expired",
                Some(s) if s < crate::tls::EXPIRY_WARN_SECS => "expiring",
                _ => "ok",
            };
            (
                status != "expired",
                json!({
                    "status": status,
                    "self_signed": cert.is_self_signed(),
                    "days_left": left.map(|s| s / 86_400),
                    "fingerprint": cert.fingerprint(),
                }),
            )
        }
    };
    let up = store.ok() && relay_ok && tls_ok;
    let mut body = json!({
        "status": if up { "ok" } else { "degraded" },
        "version": crate::VERSION,
        "store": store.status,
        "relay": relay,
        "tls": tls,
    });
    if !store.ok() {
        body["store_detail"] = json!(store.detail);
    }
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The whole Prometheus exposition: the core's metrics, the relay's, and the
/// certificate's expiry when HTTPS is on.
pub fn exposition(hub: &Hub, io: &SocketIo, cert: Option<&crate::tls::CertStore>) -> String {
    let (ws, polling) = crate::signaling::connections_by_transport(io);
    let (rooms_live, calls_live) = hub.live_counts();
    let gauges = Gauges {
        connections_websocket: ws,
        connections_polling: polling,
        rooms_live,
        rooms_known: hub.store.room_count() as u64,
        calls_live,
    };
    let mut text = hub.metrics.render(&gauges);
    if let Some(relay) = &hub.relay {
        relay.render_metrics(&mut text);
    }
    if let Some(left) = cert.and_then(|c| c.expires_in_secs()) {
        crate::metrics::write_metric(
            &mut text,
            "noom_tls_certificate_expiry_seconds",
            "gauge",
            "Seconds until the served TLS certificate expires (negative: expired).",
            &[(String::new(), left as f64)],
        );
    }
    text
}

pub async fn metrics(State(web): State<Web>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        exposition(&web.hub, &web.io, web.cert.as_deref()),
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
