//! Where a call's media server is, and the media requests carried to it.
//!
//! Alone, every call's media goes through this node's media server. In a
//! cluster a call's media lives on one node (`cluster::media` places it), and
//! a participant connected elsewhere has its requests carried there: the
//! node it is connected to checks them (call membership, its address's
//! budgets), the call's node carries them out.

use std::sync::Arc;

use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpOffer};

use super::Hub;
use crate::cluster::MediaLink;
use crate::cluster::media::{MediaAsk, Refusal};
use crate::sfu::{Sfu, SfuError};
use crate::signaling::protocol::{ApiError, ErrorCode};

/// Where the media of a call is.
pub enum MediaHost {
    Here(Arc<Sfu>),
    /// Another node (its id).
    There(String),
}

fn unavailable() -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        "this server runs no media server (sfu.enabled is off, or it could not start)",
    )
}

/// The client's error for a refusal of the media server.
pub fn refused(e: SfuError) -> ApiError {
    match e {
        SfuError::Sdp(reason) => ApiError::invalid_argument(format!(
            "the media server refused the description: {reason}"
        )),
        SfuError::Full(n) => ApiError::new(
            ErrorCode::RoomFull,
            format!("the media server is full ({n} participants)"),
        ),
        SfuError::NoSession(_) => ApiError::new(
            ErrorCode::NotInCall,
            "no media session: send media_join first",
        ),
        other => ApiError::new(ErrorCode::Unavailable, other.to_string()),
    }
}

fn offer_of(sdp: &str) -> Result<SdpOffer, ApiError> {
    SdpOffer::from_sdp_string(sdp)
        .map_err(|e| ApiError::invalid_argument(format!("the offer cannot be read: {e}")))
}

fn answer_of(sdp: &str) -> Result<SdpAnswer, ApiError> {
    SdpAnswer::from_sdp_string(sdp)
        .map_err(|e| ApiError::invalid_argument(format!("the answer cannot be read: {e}")))
}

fn answer_json(answer: &SdpAnswer) -> Value {
    json!({ "type": "answer", "sdp": answer.to_sdp_string() })
}

/// Carries out `ask` on this node's media server; the acknowledgement's
/// fields.
pub async fn serve(sfu: &Sfu, ask: MediaAsk) -> Result<Value, ApiError> {
    match ask {
        MediaAsk::Join {
            room,
            key,
            label,
            sdp,
            screen,
        } => {
            let joined = sfu
                .join(&room, &key, &label, offer_of(&sdp)?, screen.as_deref())
                .await
                .map_err(refused)?;
            // Which of the offer's receive m-lines carry whose track: the
            // socket id of its publisher, as the stream id says on tracks
            // offered later.
            let tracks: Vec<Value> = joined
                .slots
                .iter()
                .map(|(mid, from)| json!({ "mid": mid, "from": from }))
                .collect();
            Ok(json!({ "answer": answer_json(&joined.answer), "tracks": tracks }))
        }
        MediaAsk::Offer { key, sdp } => {
            let answer = sfu.offer(&key, offer_of(&sdp)?).await.map_err(refused)?;
            Ok(json!({ "answer": answer_json(&answer) }))
        }
        MediaAsk::Answer { key, sdp } => {
            sfu.answer(&key, answer_of(&sdp)?).await.map_err(refused)?;
            Ok(json!({}))
        }
        MediaAsk::View { key, views } => {
            sfu.view(&key, views).await.map_err(refused)?;
            Ok(json!({}))
        }
        MediaAsk::Rekey { from, to, label } => {
            sfu.rekey(&from, &to, &label).await.map_err(refused)?;
            Ok(json!({}))
        }
        MediaAsk::Leave { key } => {
            sfu.leave(&key);
            Ok(json!({}))
        }
    }
}

/// What another node asks of this one's media server, answered.
pub async fn serve_remote(hub: Arc<Hub>, ask: MediaAsk) -> Result<Value, Refusal> {
    let result = match &hub.sfu {
        Some(sfu) => serve(sfu, ask).await,
        None => Err(unavailable()),
    };
    result.map_err(|e| Refusal {
        code: e.code.as_str().to_string(),
        message: e.message,
    })
}

/// Ends the media session `key` in the call of `room`, on this node's
/// media server and, in a cluster, on the one the call is placed on (a
/// message, or a task: fine under a lock).
pub fn leave_media(sfu: Option<&Arc<Sfu>>, link: &Arc<MediaLink>, key: &str, room: &str) {
    if let Some(sfu) = sfu {
        sfu.leave(key);
    }
    if !link.is_clustered() {
        return;
    }
    let (link, key, room) = (link.clone(), key.to_string(), room.to_string());
    tokio::spawn(async move {
        if let Ok(Some(node)) = link.host(&room).await
            && node != link.node()
        {
            link.tell(&node, MediaAsk::Leave { key });
        }
    });
}

impl Hub {
    /// Where the media of `room`'s call is; `place`: put it somewhere if it
    /// is nowhere yet (a session starts).
    pub async fn media_host(&self, room: &str, place: bool) -> Result<MediaHost, ApiError> {
        let sfu = self.sfu.clone().ok_or_else(unavailable)?;
        let link = &self.media_link;
        if !link.is_clustered() {
            return Ok(MediaHost::Here(sfu));
        }
        let host = if place {
            link.place(room).await.map(Some)
        } else {
            link.host(room).await
        };
        match host {
            Ok(Some(node)) if node == link.node() => Ok(MediaHost::Here(sfu)),
            Ok(Some(node)) => Ok(MediaHost::There(node)),
            Ok(None) => Err(ApiError::new(
                ErrorCode::NotInCall,
                "no media session: send media_join first",
            )),
            Err(e) => Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("cannot find the call's media server: {e}"),
            )),
        }
    }

    /// Carries out `ask` on the media server of `room`'s call, wherever it is.
    pub async fn media_ask(
        &self,
        room: &str,
        ask: MediaAsk,
        place: bool,
    ) -> Result<Value, ApiError> {
        match self.media_host(room, place).await? {
            MediaHost::Here(sfu) => serve(&sfu, ask).await,
            MediaHost::There(node) => match self.media_link.ask(&node, ask).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(refusal)) => Err(ApiError::new(
                    ErrorCode::named(&refusal.code).unwrap_or(ErrorCode::Unavailable),
                    refusal.message,
                )),
                Err(e) => Err(ApiError::new(ErrorCode::Unavailable, e.to_string())),
            },
        }
    }

    /// Ends the media session `key` in the call of `room`, wherever it is
    /// (a message, or a task in a cluster: fine under the lock).
    pub fn leave_media(&self, key: &str, room: &str) {
        leave_media(self.sfu.as_ref(), &self.media_link, key, room);
    }

    /// The node `node` is gone (it stopped, or died): the calls of this
    /// node's participants whose media it carried. Their pages must start
    /// new sessions (a new `media_join` places the call on a live node)
    /// rather than wait for their browsers to give up on it.
    pub async fn calls_placed_on(&self, node: &str) -> Vec<String> {
        // A node that rewrote its (empty) membership after a Redis outage
        // is still there, and so are the sessions it carries.
        if !matches!(self.media_link.is_alive(node).await, Ok(false)) {
            return Vec::new();
        }
        let mut rooms: Vec<String> = self
            .media_sessions
            .lock()
            .keys()
            .filter_map(|key| key.split_once(':').map(|(_, room)| room.to_string()))
            .collect();
        rooms.sort();
        rooms.dedup();
        let mut placed = Vec::new();
        for room in rooms {
            if let Ok(Some(host)) = self.media_link.placed_on(&room).await
                && host == node
            {
                placed.push(room);
            }
        }
        placed
    }

    /// Keeps the placements of the calls whose media this node carries,
    /// and tells the others its load, until `shutdown` (alone: returns).
    pub async fn keep_placements(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let Some(sfu) = self.sfu.clone() else { return };
        if !self.media_link.is_clustered() {
            return;
        }
        let mut every = tokio::time::interval(crate::cluster::media::RENEW_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let Ok(reports) = sfu.report().await else {
                continue;
            };
            // Keys are `{sid}:{room}`.
            let mut rooms: Vec<String> = reports
                .iter()
                .filter_map(|r| r.key.split_once(':').map(|(_, room)| room.to_string()))
                .collect();
            rooms.sort();
            rooms.dedup();
            if let Err(e) = self.media_link.renew(&rooms, reports.len() as u64).await {
                tracing::debug!(error = %e, "the calls' media placements could not be renewed");
            }
        }
    }
}
