//! The HTML pages, rendered from askama templates (auto-escaped).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::Web;
use crate::signaling::validate;

#[derive(Template, WebTemplate)]
#[template(path = "home.html")]
pub struct Home {
    version: String,
    room_name_max: u64,
    nickname_max: u64,
}

#[derive(Template, WebTemplate)]
#[template(path = "room.html")]
pub struct Room {
    room: String,
    version: String,
    nickname_max: u64,
}

pub async fn home(State(web): State<Web>) -> Home {
    let limits = &web.hub.config.limits;
    Home {
        version: crate::VERSION.to_string(),
        room_name_max: limits.room_name_max,
        nickname_max: limits.nickname_max,
    }
}

/// A room page; a name that breaks the rules sends the visitor home, which
/// says why (`?error=invalid_room`).
pub async fn room(State(web): State<Web>, Path(room): Path<String>) -> Response {
    match validate::room_name(&room, web.hub.config.limits.room_name_max) {
        Ok(room) => Room {
            room,
            version: crate::VERSION.to_string(),
            nickname_max: web.hub.config.limits.nickname_max,
        }
        .into_response(),
        Err(_) => Redirect::to("/?error=invalid_room").into_response(),
    }
}
