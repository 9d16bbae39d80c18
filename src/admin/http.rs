//! The admin side over HTTP: the login and admin pages, and the JSON API under
//! `/admin/api/` (cookie + CSRF header from the page, or a bearer token).

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;

use super::auth::{self, ApiCaller, Via};
use super::session::Gate;
use super::{AdminError, AdminRef};
use crate::signaling::validate;

/// Longest password checked (hashing cost grows with the input).
const PASSWORD_MAX: usize = 1024;

#[derive(Template, WebTemplate)]
#[template(path = "admin_login.html")]
struct LoginPage {
    error: Option<String>,
    /// What kind of refusal `error` is (the page translates it by this).
    code: &'static str,
    /// Seconds to wait, for `too_many`.
    wait: u64,
    version: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin.html")]
struct AdminPage {
    csrf: String,
    version: &'static str,
}

pub fn router(admin: AdminRef) -> Router {
    Router::new()
        .route("/admin", get(page))
        .route("/admin/", get(page))
        .route("/admin/login", get(login_page).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/api/overview", get(overview))
        .route("/admin/api/rooms/{room}", get(room))
        .route(
            "/admin/api/rooms/{room}/messages",
            get(messages).delete(clear_history),
        )
        .route(
            "/admin/api/rooms/{room}/messages/{seq}",
            delete(delete_message),
        )
        .route("/admin/api/rooms/{room}/end-call", post(end_call))
        .route("/admin/api/rooms/{room}/close", post(close_room))
        .route("/admin/api/rooms/{room}/moderation", post(moderate))
        .route("/admin/api/connections/{id}/disconnect", post(disconnect))
        .route("/admin/api/users/{user}/revoke", post(revoke_user))
        .route("/admin/api/allocations", get(allocations))
        .route("/admin/api/metrics", get(metrics))
        .route("/admin/api/{*rest}", axum::routing::any(unknown))
        .with_state(admin)
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn page(State(admin): State<AdminRef>, parts: Parts) -> Response {
    match admin.identify(&parts.headers, admin.client_addr(&parts)) {
        Some(auth::Caller {
            via: Via::Session { csrf, .. },
            ..
        }) => no_store(
            AdminPage {
                csrf,
                version: crate::VERSION,
            }
            .into_response(),
        ),
        _ => Redirect::to("/admin/login").into_response(),
    }
}

async fn login_page(State(admin): State<AdminRef>, parts: Parts) -> Response {
    if let Some(auth::Caller {
        via: Via::Session { .. },
        ..
    }) = admin.identify(&parts.headers, admin.client_addr(&parts))
    {
        return Redirect::to("/admin").into_response();
    }
    no_store(
        LoginPage {
            error: None,
            code: "",
            wait: 0,
            version: crate::VERSION,
        }
        .into_response(),
    )
}

/// The login page again, with why the login was refused: `code` names the
/// refusal for the page to translate (`admin.refused.<code>` in i18n.js),
/// `error` says it in English.
fn login_refused(status: StatusCode, code: &'static str, wait: u64, error: &str) -> Response {
    let page = LoginPage {
        error: Some(error.to_string()),
        code,
        wait,
        version: crate::VERSION,
    };
    no_store((status, page).into_response())
}

#[derive(Deserialize)]
struct LoginForm {
    password: String,
}

async fn login(
    State(admin): State<AdminRef>,
    parts: Parts,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let addr = admin.client_addr(&parts);
    if !auth::same_origin(&parts.headers) {
        tracing::warn!(target: "noom::admin", client = %addr, "cross-site login attempt refused");
        return login_refused(
            StatusCode::FORBIDDEN,
            "cross_site",
            0,
            "Cross-site login refused.",
        );
    }
    let Ok(Form(form)) = form else {
        return login_refused(
            StatusCode::BAD_REQUEST,
            "bad_form",
            0,
            "Send the password field of the form.",
        );
    };
    if let Gate::Closed(wait) = admin.limiter.attempt(addr) {
        let secs = wait.as_secs().max(1);
        let mut response = login_refused(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many",
            secs,
            &format!("Too many failed logins from your address. Try again in {secs} s."),
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    let ok = form.password.len() <= PASSWORD_MAX && admin.password_matches(form.password).await;
    if !ok {
        tracing::warn!(target: "noom::admin", client = %addr, "failed admin login");
        return login_refused(
            StatusCode::UNAUTHORIZED,
            "wrong_password",
            0,
            "Wrong password.",
        );
    }
    admin.limiter.succeeded(addr);
    let (token, _) = admin.sessions.create();
    tracing::info!(target: "noom::admin", admin = %addr, "admin logged in");
    let mut response = Redirect::to("/admin").into_response();
    if let Ok(v) = HeaderValue::from_str(&admin.session_cookie(&token, admin.over_https(&parts))) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    no_store(response)
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf: String,
}

async fn logout(
    State(admin): State<AdminRef>,
    parts: Parts,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Response {
    let addr = admin.client_addr(&parts);
    let caller = admin.identify(&parts.headers, addr);
    let Some(auth::Caller {
        via: Via::Session { token, csrf },
        ..
    }) = caller
    else {
        return Redirect::to("/admin/login").into_response();
    };
    let sent = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if !auth::same_origin(&parts.headers) || !auth::secrets_equal(&sent, &csrf) {
        return auth::Refused::Forgery.into_response();
    }
    admin.sessions.remove(&token);
    tracing::info!(target: "noom::admin", admin = %addr, "admin logged out");
    let mut response = Redirect::to("/admin/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&admin.clear_cookie(admin.over_https(&parts))) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

fn json<T: serde::Serialize>(value: T) -> Response {
    no_store(Json(value).into_response())
}

fn room_name(admin: &AdminRef, raw: &str) -> Result<String, AdminError> {
    validate::room_name(raw, admin.hub.config.limits.room_name_max)
        .map_err(|e| AdminError::BadRequest(e.message))
}

async fn overview(State(admin): State<AdminRef>, _: ApiCaller) -> Result<Response, AdminError> {
    let overview = admin.overview().await?;
    Ok(json(overview))
}

async fn room(
    State(admin): State<AdminRef>,
    _: ApiCaller,
    Path(room): Path<String>,
) -> Result<Response, AdminError> {
    let name = room_name(&admin, &room)?;
    let detail = admin.room_detail(&name).await?;
    detail
        .map(json)
        .ok_or_else(|| AdminError::NotFound(format!("no room `{room}`")))
}

async fn messages(
    State(admin): State<AdminRef>,
    _: ApiCaller,
    Path(room): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, AdminError> {
    let room = room_name(&admin, &room)?;
    let query =
        crate::signaling::history_params(params).map_err(|e| AdminError::BadRequest(e.message))?;
    let messages = admin.hub.store.history(&room, query).await?;
    Ok(json(messages))
}

async fn allocations(State(admin): State<AdminRef>, _: ApiCaller) -> Response {
    json(admin.relay_view())
}

async fn metrics(State(admin): State<AdminRef>, _: ApiCaller) -> Response {
    json(admin.metrics().await)
}

async fn clear_history(
    State(admin): State<AdminRef>,
    ApiCaller(caller): ApiCaller,
    Path(room): Path<String>,
) -> Result<Response, AdminError> {
    let room = room_name(&admin, &room)?;
    Ok(json(admin.clear_history(&caller, &room).await?))
}

async fn delete_message(
    State(admin): State<AdminRef>,
    ApiCaller(caller): ApiCaller,
    Path((room, seq)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    let room = room_name(&admin, &room)?;
    let seq: u64 = seq
        .parse()
        .map_err(|_| AdminError::BadRequest("`seq` must be a non-negative integer".into()))?;
    Ok(json(admin.delete_message(&caller, &room, seq).await?))
}

async fn end_call(
    State(admin): State<AdminRef>,
    ApiCaller(caller): ApiCaller,
    Path(room): Path<String>,
) -> Result<Response, AdminError> {
    let room = room_name(&admin, &room)?;
    Ok(json(admin.end_call(&caller, &room).await?))
}

async fn close_room(
    State(admin): State<AdminRef>,
    ApiCaller(caller): ApiCaller,
    Path(room): Path<String>,
) -> Result<Response, AdminError> {
    let room = room_name(&admin, &room)?;
    Ok(json(admin.close_room(&caller, &room).await?))
}

async fn moderate(
    State(admin): State<AdminRef>,
    ApiCaller(caller): ApiCaller,
    Path(room): Path<String>,
    body: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, AdminError> {
    let room = room_name(&admin, &room)?;
    let Json(body) = body.map_err(|e| AdminError::BadRequest(e.body_text()))?;
    Ok(json(admin.moderate(&caller, &room, &body).await?))
}

async fn disconnect(
    State(admin): State<AdminRef>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    Ok(json(admin.disconnect(&caller, &id).await?))
}

async fn revoke_user(
    State(admin): State<AdminRef>,
    ApiCaller(caller): ApiCaller,
    Path(user): Path<String>,
) -> Result<Response, AdminError> {
    if user.is_empty() || user.len() > 64 || !user.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AdminError::BadRequest(
            "`user` must be a user id (hex, as the member lists show it)".into(),
        ));
    }
    Ok(json(admin.revoke_user(&caller, &user).await?))
}

/// Unknown API paths: 401 before a login, 404 after.
async fn unknown(_: ApiCaller) -> Response {
    crate::http::json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such admin API endpoint",
    )
}
