//! Calls inside rooms: joining and leaving a room's call, and who shares a
//! call with whom (signaling is forwarded only between them).

use crate::signaling::SocketRef;
use socketioxide::socket::Sid;

use super::{Hub, State, call_group, gone, member_of, not_in_room};
use crate::metrics::Metrics;
use crate::signaling::protocol::{ApiError, ErrorCode, Member};

/// The most participants a call in a mesh holds, whatever `limits.call_max`
/// says: every participant uploads its video once per peer.
pub const MESH_CALL_MAX: u64 = 6;

/// How long the media session of a connection that dropped is kept for
/// its page to take back (`join_call` with `was`): as long as the others
/// keep showing it.
pub const MEDIA_PARK: std::time::Duration = std::time::Duration::from_secs(15);

/// A media session whose connection dropped, waiting for its page.
pub struct Parked {
    session: crate::store::SessionKey,
    /// Tells this parking from a later one of the same key.
    since: std::time::Instant,
}

/// Least time between two reactions of one connection.
pub const REACTION_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// Least time between two changes of one connection's hand (each one goes to
/// every participant of the call).
pub const HAND_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// What `join_call` did.
pub struct Joined {
    pub me: Member,
    pub peers: Vec<Member>,
    /// Raised hands, in order (socket ids).
    pub hands: Vec<String>,
    /// Was already in the call.
    pub already: bool,
    /// How the call's media travels now: `mesh` or `sfu`.
    pub media: &'static str,
    /// This join moved the call from the mesh to the media server: the
    /// others must switch.
    pub switched: bool,
}

impl Hub {
    /// The media server's name for `sid`'s session in the call of `room`.
    pub fn media_key(sid: Sid, room: &str) -> String {
        Self::media_key_of(&sid.to_string(), room)
    }

    /// [`Hub::media_key`] of a socket id as text (of any node).
    pub fn media_key_of(sid: &str, room: &str) -> String {
        format!("{sid}:{room}")
    }

    /// Ends `sid`'s media session in the call of `room`, if it has one
    /// (a message to the media loop: fine under the lock).
    pub(super) fn end_media(&self, sid: Sid, room: &str) {
        let key = Self::media_key(sid, room);
        if self.media_sessions.lock().contains_key(&key) || self.parked.lock().contains_key(&key) {
            self.leave_media(&key, room);
        } else if let Some(sfu) = &self.sfu {
            sfu.leave(&key);
        }
        self.media_ended(&key);
    }

    /// `sid` (of `session`) dropped while in the call of `room`: its media
    /// session, if it has one, is kept [`MEDIA_PARK`] for the page to take
    /// back once it reconnects, then ended (a task; fine under the lock).
    pub(super) fn park_media(&self, sid: Sid, room: &str, session: crate::store::SessionKey) {
        let key = Self::media_key(sid, room);
        if self.sfu.is_none() || !self.media_sessions.lock().contains_key(&key) {
            return;
        }
        let since = std::time::Instant::now();
        self.parked
            .lock()
            .insert(key.clone(), Parked { session, since });
        let (parked, sessions) = (self.parked.clone(), self.media_sessions.clone());
        let (sfu, link) = (self.sfu.clone(), self.media_link.clone());
        let room = room.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(MEDIA_PARK).await;
            let expired = {
                let mut parked = parked.lock();
                let expired = parked.get(&key).is_some_and(|p| p.since == since);
                if expired {
                    parked.remove(&key);
                }
                expired
            };
            if expired {
                super::media_route::leave_media(sfu.as_ref(), &link, &key, &room);
                sessions.lock().remove(&key);
            }
        });
    }

    /// `sid` joined the call of `room` again after a reconnect, saying it
    /// `was` another socket id: the media session of that connection, kept
    /// for its return or still held by its ghost, becomes `sid`'s if both
    /// are of the same session. Returns whether it did (the page then
    /// restarts ICE on it instead of starting a new one).
    pub async fn resume_media(&self, sid: Sid, was: &str, room: &str) -> bool {
        if self.sfu.is_none() {
            return false;
        }
        let Ok(old) = was.parse::<Sid>() else {
            return false;
        };
        if old == sid {
            return false;
        }
        let (from, to) = (Self::media_key(old, room), Self::media_key(sid, room));
        let ours =
            {
                let state = self.state.lock();
                let Some(session) = state.conns.get(&sid).map(|c| c.session) else {
                    return false;
                };
                match self.parked.lock().get(&from) {
                    Some(p) => p.session == session,
                    None => {
                        state.conns.get(&old).is_some_and(|c| {
                            c.session == session && c.calls.iter().any(|r| r == room)
                        }) && self.media_sessions.lock().contains_key(&from)
                    }
                }
            };
        if !ours {
            return false;
        }
        let rekey = crate::cluster::media::MediaAsk::Rekey {
            from: from.clone(),
            to: to.clone(),
            label: sid.to_string(),
        };
        if let Err(e) = self.media_ask(room, rekey, false).await {
            tracing::debug!(%from, %to, error = %e, "media session not taken back");
            return false;
        }
        self.parked.lock().remove(&from);
        // Its address's count follows it.
        let mut sessions = self.media_sessions.lock();
        if let Some(held) = sessions.remove(&from) {
            sessions.insert(to, held);
        }
        true
    }

    /// Counts a media session about to start for `sid` against its
    /// address's budgets (`sfu.joins_per_ip_per_min`, `sfu.sessions_per_ip`);
    /// a session that replaces one of the same key reuses its count.
    pub fn admit_media(&self, sid: Sid, room: &str) -> Result<(), ApiError> {
        let key = Self::media_key(sid, room);
        let Some(ip) = self.state.lock().conns.get(&sid).and_then(|c| c.addr) else {
            return Ok(());
        };
        if let Err(wait) = self.media_rate.try_take(&ip, std::time::Instant::now()) {
            Metrics::inc(&self.metrics.rate_limited);
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "too many media sessions started from your network address; retry in {} s",
                    wait.as_secs().max(1)
                ),
            ));
        }
        let mut sessions = self.media_sessions.lock();
        if sessions.contains_key(&key) {
            return Ok(());
        }
        let held = self.media_held.take(ip).ok_or_else(|| {
            ApiError::new(
                ErrorCode::RoomFull,
                "too many media sessions from your network address (sfu.sessions_per_ip)",
            )
        })?;
        sessions.insert(key, held);
        Ok(())
    }

    /// A media session ended: its address may open another.
    pub fn media_ended(&self, key: &str) {
        self.media_sessions.lock().remove(key);
    }

    /// True when `sid` is in the call of `room`.
    pub fn in_call(&self, sid: Sid, room: &str) -> bool {
        self.state
            .lock()
            .conns
            .get(&sid)
            .is_some_and(|c| c.calls.iter().any(|r| r == room))
    }

    /// Adds `sid` to the call of `room`: itself, the other participants, and
    /// how the call's media travels now.
    /// `was`: the socket id the caller had before a reconnect, told to the
    /// others with its member. `joining`: connections joining the call on
    /// other nodes now; those not among its participants here yet count
    /// against its cap.
    pub fn join_call(
        &self,
        socket: &SocketRef,
        room: &str,
        was: Option<String>,
        joining: &[String],
    ) -> Result<Joined, ApiError> {
        let sid = socket.id;
        let mut state = self.state.lock();
        let State {
            conns,
            remote,
            rooms,
            ..
        } = &mut *state;
        let conn = conns.get_mut(&sid).ok_or_else(gone)?;
        if !conn.rooms.iter().any(|r| r == room) {
            return Err(not_in_room(room));
        }
        // The connection this one replaces (same session), if still here,
        // is not a peer of it: the others re-key it, and it is closed.
        let session = conn.session;
        let ghost = was.as_deref().and_then(|w| w.parse::<Sid>().ok());
        if was.is_some() {
            conn.was = was;
        }
        let live = rooms.get_mut(room).ok_or_else(|| not_in_room(room))?;
        let already = live.call.contains(&sid);
        if live.call.is_empty() {
            // A new call: nothing of the last one carries over.
            live.through_server = false;
            live.speakers.clear();
        }
        let mut switched = false;
        if !already {
            let size = live.call.len() + 1;
            let through_server = self.media_for(size, live.through_server);
            let cap = if through_server {
                self.config.limits.call_max
            } else {
                self.config.limits.call_max.min(MESH_CALL_MAX)
            };
            let in_flight = joining
                .iter()
                .filter(|j| !live.call.iter().any(|id| id.to_string() == **j))
                .count() as u64;
            if live.call.len() as u64 + in_flight >= cap {
                return Err(ApiError::new(
                    ErrorCode::RoomFull,
                    format!("the call is full ({cap} participants)"),
                ));
            }
            switched = through_server && !live.through_server && !live.call.is_empty();
            live.through_server = through_server;
            live.call.push(sid);
            conn.calls.push(room.to_string());
            socket.join(call_group(room));
        }
        let me = conn.member(sid);
        let peers = live
            .call
            .iter()
            .filter(|id| **id != sid)
            // The ghost (of another node: the same user said so).
            .filter(|id| {
                !(Some(**id) == ghost && conns.get(id).is_none_or(|c| c.session == session))
            })
            .filter_map(|id| member_of(conns, remote, *id))
            .collect();
        let hands = live.hands.iter().map(|s| s.to_string()).collect();
        let joined = Joined {
            me,
            peers,
            hands,
            already,
            media: if live.through_server { "sfu" } else { "mesh" },
            switched,
        };
        self.touched(&state, sid);
        Ok(joined)
    }

    /// The call of `room`, under way, goes through the media server (as
    /// another node decided).
    pub fn call_through_server(&self, room: &str) {
        if let Some(live) = self.state.lock().rooms.get_mut(room)
            && !live.call.is_empty()
        {
            live.through_server = true;
        }
    }

    /// Whether a call of `size` goes through the media server, by
    /// `call.mode`; `now` is whether it already does (`auto` never goes back).
    fn media_for(&self, size: usize, now: bool) -> bool {
        if self.sfu.is_none() {
            return false;
        }
        match self.config.call.mode.as_str() {
            "sfu" => true,
            "auto" => now || size as u64 > self.config.call.mesh_max,
            _ => false,
        }
    }

    pub fn leave_call(&self, socket: &SocketRef, room: &str) -> Result<Member, ApiError> {
        let sid = socket.id;
        let mut state = self.state.lock();
        let State { conns, rooms, .. } = &mut *state;
        let conn = conns.get_mut(&sid).ok_or_else(gone)?;
        let Some(at) = conn.calls.iter().position(|r| r == room) else {
            return Err(not_in_call(room));
        };
        conn.calls.swap_remove(at);
        if let Some(live) = rooms.get_mut(room) {
            live.call.retain(|id| *id != sid);
            live.hands.retain(|id| *id != sid);
        }
        socket.leave(call_group(room));
        self.end_media(sid, room);
        let member = conn.member(sid);
        self.touched(&state, sid);
        Ok(member)
    }

    /// Raises or lowers `sid`'s hand in the call of `room`; returns the
    /// raised hands in order (socket ids).
    ///
    /// Returns the hands, and whether they changed (only a change is
    /// announced). Changes are throttled to one per [`HAND_EVERY`].
    pub fn raise_hand(
        &self,
        sid: Sid,
        room: &str,
        raised: bool,
    ) -> Result<(Vec<String>, bool), ApiError> {
        let mut state = self.state.lock();
        let state = &mut *state;
        let live = state
            .rooms
            .get_mut(room)
            .filter(|live| live.call.contains(&sid))
            .ok_or_else(|| not_in_call(room))?;
        let up = live.hands.contains(&sid);
        let changed = raised != up;
        if changed {
            let conn = state.conns.get_mut(&sid).ok_or_else(gone)?;
            self.spaced(
                &mut conn.last_hand,
                HAND_EVERY,
                "a hand goes up or down at most four times a second",
            )?;
            if raised {
                live.hands.push(sid);
            } else {
                live.hands.retain(|id| *id != sid);
            }
        }
        let hands = live.hands.iter().map(|s| s.to_string()).collect();
        if changed {
            self.touched(state, sid);
        }
        Ok((hands, changed))
    }

    /// Admits a reaction of `sid` in the call of `room`: one per
    /// [`REACTION_EVERY`].
    pub fn admit_reaction(&self, sid: Sid, room: &str) -> Result<(), ApiError> {
        let mut state = self.state.lock();
        let conn = state.conns.get_mut(&sid).ok_or_else(gone)?;
        if !conn.calls.iter().any(|r| r == room) {
            return Err(not_in_call(room));
        }
        self.spaced(
            &mut conn.last_reaction,
            REACTION_EVERY,
            "reactions are limited to four a second",
        )
    }

    /// One action of a connection at least `every` after its last (`last`,
    /// updated when let through); `rate_limited` with `refusal` otherwise.
    fn spaced(
        &self,
        last: &mut Option<std::time::Instant>,
        every: std::time::Duration,
        refusal: &str,
    ) -> Result<(), ApiError> {
        let now = std::time::Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < every) {
            Metrics::inc(&self.metrics.rate_limited);
            return Err(ApiError::new(ErrorCode::RateLimited, refusal));
        }
        *last = Some(now);
        Ok(())
    }

    /// `sid` came back from a reconnect, and says it `was` another socket
    /// id. If that connection is still here, of the same session, it is a
    /// ghost (its network went away under it, and the server has not noticed
    /// yet): it is marked replaced, and returned so the caller closes it.
    pub fn replace(&self, sid: Sid, was: &str) -> Option<Sid> {
        let old: Sid = was.parse().ok()?;
        if old == sid {
            return None;
        }
        let mut state = self.state.lock();
        let session = state.conns.get(&sid)?.session;
        let ghost = state.conns.get_mut(&old).filter(|c| c.session == session)?;
        ghost.replaced = true;
        Some(old)
    }

    /// Whether a newer connection of the session replaced `sid`.
    pub fn replaced(&self, sid: Sid) -> bool {
        self.state
            .lock()
            .conns
            .get(&sid)
            .is_some_and(|c| c.replaced)
    }

    /// The public user id behind a connection.
    pub fn user_of(&self, sid: Sid) -> Option<String> {
        self.state.lock().conns.get(&sid).map(|c| c.user.clone())
    }

    /// True when `a` (of this node) and `b` (of any node) are in the same call.
    pub fn share_call(&self, a: Sid, b: Sid) -> bool {
        let state = self.state.lock();
        let Some(x) = state.conns.get(&a) else {
            return false;
        };
        let theirs = match state.conns.get(&b) {
            Some(y) => &y.calls,
            None => match state.remote.get(&b) {
                Some(r) => &r.presence.calls,
                None => return false,
            },
        };
        x.calls.iter().any(|room| theirs.contains(room))
    }
}

fn not_in_call(room: &str) -> ApiError {
    ApiError::new(ErrorCode::NotInCall, format!("not in the call of `{room}`"))
}
