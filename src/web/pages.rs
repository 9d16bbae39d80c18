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
}

#[derive(Template, WebTemplate)]
#[template(path = "room.html")]
pub struct Room {
    room: String,
    version: String,
}

pub async fn home() -> Home {
    Home {
        version: crate::VERSION.to_string(),
    }
}

/// A room page; a name that breaks the rules sends the visitor home.
pub async fn room(State(web): State<Web>, Path(room): Path<String>) -> Response {
    match validate::room_name(&room, web.hub.config.limits.room_name_max) {
        Ok(room) => Room {
            room,
            version: crate::VERSION.to_string(),
        }
        .into_response(),
        Err(_) => Redirect::to("/").into_response(),
    }
}
