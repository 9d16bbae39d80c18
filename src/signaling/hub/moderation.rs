//! Room moderation: the host, the lock, the lobby, muting and removing.
//!
//! A room's host is a public user id (so a session, with all its tabs): the
//! one that created the room, or the first to enter a room that has none. It
//! is kept in the store with the lock, the lobby, who may enter anyway and
//! who was removed, so a restart changes nothing. The host's requests and the
//! admin page's act through the same methods ([`Moderator`]); those that read
//! and write the record take one async lock, so two never interleave (an
//! entry only reads it, unless the room has no host yet).
//!
//! The lobby itself (who waits now) is live state: a waiting connection that
//! goes away simply leaves it.

use crate::signaling::SocketIo;
use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::socket::Sid;

use super::{Hub, State, call_group, chat_group, gone, now_ms};
use crate::signaling::protocol::{
    ApiError, Departure, ErrorCode, Member, bool_field, events, opt_bool,
};
use crate::store::{Ban, Moderation};

/// Most connections waiting in one room's lobby.
pub const LOBBY_MAX: usize = 100;
/// Most user ids a room remembers as allowed in while locked or with a lobby.
const ALLOWED_MAX: usize = 1000;
/// Most removals a room remembers (the oldest are forgotten first).
const BANS_MAX: usize = 1000;

/// Who moderates: the room's host (one of its connections) or an administrator.
#[derive(Debug, Clone, Copy)]
pub enum Moderator {
    Host(Sid),
    Admin,
}

/// Where someone is removed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The call only: they stay in the room and may join the call again.
    Call,
    /// The room (and its call), for `rooms.removal_secs`.
    Room,
}

/// A moderation action, as the host's requests and the admin API name them.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// Hand the room over to this member's user.
    SetHost(Sid),
    /// Ask this participant to turn their microphone off.
    Mute(Sid),
    Remove(Sid, Removal),
    /// Lock the room and/or turn the lobby on or off.
    Settings {
        locked: Option<bool>,
        lobby: Option<bool>,
    },
    /// Let a connection waiting in the lobby in, or turn it away.
    Admit(Sid, bool),
}

impl Action {
    /// The action a request names, from its options object (`to`, `from`,
    /// `locked`, `lobby`, `admit`).
    pub fn parse(kind: &str, opts: &serde_json::Map<String, Value>) -> Result<Self, ApiError> {
        let to = || -> Result<Sid, ApiError> {
            opts.get("to")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && s.len() <= 64)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ApiError::invalid_argument("`to` must be a socket id"))
        };
        let flag = |name: &str| opt_bool(opts, name);
        match kind {
            "set_host" => Ok(Action::SetHost(to()?)),
            "mute" => Ok(Action::Mute(to()?)),
            "remove" => {
                let from = match opts.get("from").and_then(Value::as_str) {
                    Some("call") => Removal::Call,
                    Some("room") => Removal::Room,
                    _ => {
                        return Err(ApiError::invalid_argument(
                            "`from` must be \"call\" or \"room\"",
                        ));
                    }
                };
                Ok(Action::Remove(to()?, from))
            }
            "room_settings" => {
                let (locked, lobby) = (flag("locked")?, flag("lobby")?);
                if locked.is_none() && lobby.is_none() {
                    return Err(ApiError::invalid_argument(
                        "give `locked` and/or `lobby` (booleans)",
                    ));
                }
                Ok(Action::Settings { locked, lobby })
            }
            "admit" => {
                let admit = bool_field(opts, "admit")?;
                Ok(Action::Admit(to()?, admit))
            }
            other => Err(ApiError::invalid_argument(format!(
                "unknown moderation action `{other}`"
            ))),
        }
    }
}

/// What a room's members see of its moderation (`room_settings`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RoomSettings {
    /// The host's user id.
    pub host: Option<String>,
    pub locked: bool,
    pub lobby: bool,
}

impl From<&Moderation> for RoomSettings {
    fn from(m: &Moderation) -> Self {
        Self {
            host: m.host.clone(),
            locked: m.locked,
            lobby: m.lobby,
        }
    }
}

fn not_host() -> ApiError {
    ApiError::new(ErrorCode::NotHost, "only the room's host can do that")
}

fn no_member(room: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotInRoom,
        format!("that connection is not in room `{room}`"),
    )
}

impl Hub {
    /// The moderation record of `room`, its expired removals dropped.
    async fn moderation_of(&self, room: &str) -> Result<Moderation, ApiError> {
        let mut m = self.store.room_moderation(room).await?;
        let now = now_ms();
        m.bans.retain(|b| b.until > now);
        Ok(m)
    }

    /// Checks that `sid` may enter `room` (it is not in it yet): not removed,
    /// not locked out, not kept in the lobby. A connection kept in the lobby
    /// waits there (its host is told) and gets `in_lobby`.
    pub async fn check_entry(&self, io: &SocketIo, sid: Sid, room: &str) -> Result<(), ApiError> {
        let (user, session, already) = {
            let state = self.state.lock();
            let conn = state.conns.get(&sid).ok_or_else(gone)?;
            (
                conn.user.clone(),
                conn.session,
                conn.rooms.iter().any(|r| r == room),
            )
        };
        if already {
            return Ok(());
        }
        // A read only: no need to wait for a moderation change in progress.
        let m = self.moderation_of(room).await?;
        if let Some(ban) = m.bans.iter().find(|b| b.user == user) {
            let minutes = (ban.until - now_ms()).max(0) / 60_000 + 1;
            return Err(ApiError::new(
                ErrorCode::Removed,
                format!(
                    "the host removed you from room `{room}`; you can enter it again in {minutes} min"
                ),
            ));
        }
        if !(m.locked || m.lobby) || m.host.as_deref() == Some(&user) || m.allowed.contains(&user) {
            return Ok(());
        }
        // `None`: it may come in; else it waits (`true`: from now on).
        let waits = (|| -> Result<Option<bool>, ApiError> {
            let mut state = self.state.lock();
            // Another tab of the same session is in: this is no newcomer.
            let session_in = state.rooms.get(room).is_some_and(|live| {
                live.members
                    .iter()
                    .any(|id| state.conns.get(id).is_some_and(|c| c.session == session))
            });
            if session_in {
                return Ok(None);
            }
            if m.locked {
                return Err(ApiError::new(
                    ErrorCode::RoomLocked,
                    format!("room `{room}` is locked: its host lets nobody new in"),
                ));
            }
            // One connection waits in as many lobbies as it may be in rooms.
            let waits = state.lobby.values().filter(|w| w.contains(&sid)).count();
            let here = state.lobby.get(room).is_some_and(|w| w.contains(&sid));
            if !here && waits as u64 >= self.config.limits.rooms_per_connection {
                return Err(ApiError::new(
                    ErrorCode::RoomFull,
                    format!(
                        "a connection can wait in at most {} lobbies at once",
                        self.config.limits.rooms_per_connection
                    ),
                ));
            }
            let waiting = state.lobby.entry(room.to_string()).or_default();
            let arrived = !waiting.contains(&sid);
            if arrived {
                if waiting.len() >= LOBBY_MAX {
                    return Err(ApiError::new(
                        ErrorCode::RoomFull,
                        format!("the lobby of room `{room}` is full; try again later"),
                    ));
                }
                waiting.push(sid);
                self.touched(&state, sid);
            }
            Ok(Some(arrived))
        })()?;
        let Some(arrived) = waits else {
            return Ok(());
        };
        if arrived {
            // The host's node knows of the wait before the host hears of it.
            self.roster.settled().await;
            self.tell_hosts(io, room, &m, true).await;
        }
        Err(ApiError::new(
            ErrorCode::InLobby,
            format!("waiting for the host of room `{room}` to let you in"),
        ))
    }

    /// Makes `sid`'s user the host of `room` when it has none (it just
    /// entered: the creator, or the first entrant of a room without a host).
    /// Returns the room's settings. The entry is made already: a store that
    /// fails here leaves the room without a host for now, and says so in
    /// the log, rather than failing the entry.
    pub async fn claim_host(&self, sid: Sid, room: &str) -> RoomSettings {
        let Some(user) = self.user_of(sid) else {
            return RoomSettings::from(&Moderation::default());
        };
        // Every entry comes here: most rooms have their host already, and
        // need no lock shared by all rooms.
        if let Ok(m) = self.moderation_of(room).await
            && m.host.is_some()
        {
            return RoomSettings::from(&m);
        }
        let _one = self.moderating.lock().await;
        let mut m = match self.moderation_of(room).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(room, error = %e, "cannot read the room's moderation record");
                return RoomSettings::from(&Moderation::default());
            }
        };
        if m.host.is_none() {
            let mut claimed = m.clone();
            claimed.host = Some(user);
            match self.store.set_room_moderation(room, &claimed).await {
                Ok(()) => m = claimed,
                Err(e) => tracing::warn!(room, error = %e, "the room's host could not be stored"),
            }
        }
        RoomSettings::from(&m)
    }

    /// The connections waiting in `room`'s lobby when `sid` is its host's,
    /// else an empty list.
    pub fn lobby_for(&self, sid: Sid, room: &str, settings: &RoomSettings) -> Vec<Member> {
        let state = self.state.lock();
        let is_host = state
            .conns
            .get(&sid)
            .is_some_and(|c| settings.host.as_deref() == Some(&c.user));
        if !is_host {
            return Vec::new();
        }
        waiting_members(&state, room)
    }

    /// The connections waiting in `room`'s lobby (for the admin page).
    pub fn lobby_of(&self, room: &str) -> Vec<Member> {
        waiting_members(&self.state.lock(), room)
    }

    /// Sends the lobby of `room` to its host's connections in the room: of
    /// this node, and with `everywhere` of every node (a node that learns a
    /// change from the roster tells its own only: the others do as well).
    pub async fn tell_hosts(&self, io: &SocketIo, room: &str, m: &Moderation, everywhere: bool) {
        let Some(host) = m.host.as_deref() else {
            return;
        };
        let (waiting, local, remote) = {
            let state = self.state.lock();
            let Some(live) = state.rooms.get(room) else {
                return;
            };
            let mut local = Vec::new();
            let mut remote = Vec::new();
            for id in &live.members {
                match state.conns.get(id) {
                    Some(c) if c.user == host => local.push(*id),
                    Some(_) => {}
                    None if everywhere
                        && state
                            .remote
                            .get(id)
                            .is_some_and(|r| r.presence.user == host) =>
                    {
                        remote.push(*id)
                    }
                    None => {}
                }
            }
            (waiting_members(&state, room), local, remote)
        };
        let payload = (room, json!({ "waiting": waiting }));
        for id in local {
            if let Some(s) = io.get_socket(id) {
                let _ = s.emit(events::LOBBY, &payload);
            }
        }
        for id in remote {
            let _ = io.to(id.to_string()).emit(events::LOBBY, &payload).await;
        }
    }

    /// The lobby of `room` changed as another node said (its connections
    /// came, went or died): this node's hosts are told.
    pub async fn lobby_changed(&self, io: &SocketIo, room: &str) {
        if let Ok(m) = self.moderation_of(room).await
            && m.lobby
        {
            self.tell_hosts(io, room, &m, false).await;
        }
    }

    /// Tells `sid`, waiting in the lobby of `room` (it left it already),
    /// whether it may come in: here, or through its node.
    async fn answer_waiting(&self, io: &SocketIo, sid: Sid, room: &str, admitted: bool) {
        let local = {
            let state = self.state.lock();
            let local = state.conns.contains_key(&sid);
            if local {
                self.touched(&state, sid);
            }
            local
        };
        if local {
            if let Some(s) = io.get_socket(sid) {
                let _ = s.emit(events::ADMISSION, &(room, json!({ "admitted": admitted })));
            }
            return;
        }
        let order = crate::cluster::Order::Admission {
            sid: sid.to_string(),
            room: room.to_string(),
            admitted,
        };
        if let Err(e) = self.roster.order(order).await {
            tracing::warn!(error = %e, "an admission could not reach the other nodes");
        }
    }

    /// Another node's host let `sid` (ours), waiting in the lobby of
    /// `room`, in (or turned it away).
    pub(super) async fn admission_here(&self, io: &SocketIo, sid: Sid, room: &str, admitted: bool) {
        {
            let mut state = self.state.lock();
            if !state.conns.contains_key(&sid) {
                return;
            }
            if let Some(waiting) = state.lobby.get_mut(room) {
                waiting.retain(|id| *id != sid);
                if waiting.is_empty() {
                    state.lobby.remove(room);
                }
            }
        }
        self.answer_waiting(io, sid, room, admitted).await;
    }

    /// A connection went away: out of every lobby it waited in (their hosts
    /// are told).
    pub async fn leave_lobbies(&self, io: &SocketIo, sid: Sid) {
        let rooms: Vec<String> = {
            let mut state = self.state.lock();
            let mut rooms = Vec::new();
            state.lobby.retain(|room, waiting| {
                if let Some(at) = waiting.iter().position(|id| *id == sid) {
                    waiting.remove(at);
                    rooms.push(room.clone());
                }
                !waiting.is_empty()
            });
            rooms
        };
        for room in rooms {
            let Ok(m) = self.moderation_of(&room).await else {
                continue;
            };
            self.roster.settled().await;
            self.tell_hosts(io, &room, &m, true).await;
        }
    }

    /// Carries out a moderation action in `room` for `by`; returns the
    /// fields of its ack.
    pub async fn moderate(
        &self,
        io: &SocketIo,
        by: Moderator,
        room: &str,
        action: Action,
    ) -> Result<Value, ApiError> {
        let _one = self.moderating.lock().await;
        let mut m = self.moderation_of(room).await?;
        let by_member = match by {
            Moderator::Admin => None,
            Moderator::Host(sid) => {
                let state = self.state.lock();
                let conn = state.conns.get(&sid).ok_or_else(gone)?;
                if !conn.rooms.iter().any(|r| r == room) {
                    return Err(super::not_in_room(room));
                }
                if m.host.as_deref() != Some(&conn.user) {
                    return Err(not_host());
                }
                Some(conn.member(sid))
            }
        };
        let by_json = json!({ "by": by_member });
        let reply = match action {
            Action::SetHost(to) => {
                let user = self.member_user(to, room)?;
                m.host = Some(user);
                self.store.set_room_moderation(room, &m).await?;
                self.announce_settings(io, room, &m).await;
                json!({ "host": m.host })
            }
            Action::Mute(to) => {
                if !self.in_call_anywhere(to, room) {
                    return Err(not_in_this_call(room));
                }
                match io.get_socket(to) {
                    Some(s) => {
                        let _ = s.emit(events::MUTED, &(room, &by_json));
                    }
                    // Another node's: to its own group, through the bus.
                    None => {
                        let _ = io.to(to).emit(events::MUTED, &(room, &by_json)).await;
                    }
                }
                json!({})
            }
            Action::Remove(to, Removal::Call) => {
                if let Moderator::Host(me) = by
                    && me == to
                {
                    return Err(ApiError::invalid_argument(
                        "leave the call instead of removing yourself",
                    ));
                }
                if self.is_remote(to) {
                    // Its node takes it out (and tells the call).
                    if !self.in_call_anywhere(to, room) {
                        return Err(not_in_this_call(room));
                    }
                    self.order_or_fail(crate::cluster::Order::RemoveFromCall {
                        sid: to.to_string(),
                        room: room.to_string(),
                        by: by_json.clone(),
                    })
                    .await?;
                    return Ok(json!({}));
                }
                let in_call = {
                    let state = self.state.lock();
                    let conn = state.conns.get(&to).ok_or_else(|| no_member(room))?;
                    conn.calls.iter().any(|r| r == room)
                };
                if !in_call {
                    return Err(not_in_this_call(room));
                }
                self.remove_from_call_here(io, to, room, &by_json).await;
                json!({})
            }
            Action::Remove(to, Removal::Room) => {
                let user = self.member_user(to, room)?;
                if m.host.as_deref() == Some(user.as_str()) {
                    if matches!(by, Moderator::Host(_)) {
                        return Err(ApiError::invalid_argument(
                            "the host cannot remove themselves; hand the room over first",
                        ));
                    }
                    m.host = None;
                }
                let until = now_ms()
                    .saturating_add((self.config.rooms.removal_secs as i64).saturating_mul(1000));
                m.bans.retain(|b| b.user != user);
                m.bans.push(Ban {
                    user: user.clone(),
                    until,
                });
                if m.bans.len() > BANS_MAX {
                    m.bans.remove(0);
                }
                m.allowed.retain(|u| *u != user);
                // What the removed connections are told, on every node.
                let removed_payload: Value;
                let departures;
                {
                    let mut state = self.state.lock();
                    let mut payload = by_json.clone();
                    payload["from"] = json!("room");
                    payload["until"] = json!(until);
                    departures = self.take_out_of_room(&mut state, io, &user, room, &payload);
                    removed_payload = payload;
                    // The host left with them: the longest present member
                    // (of any node, but not of the removed user) takes over.
                    if m.host.is_none() {
                        m.host = state.rooms.get(room).and_then(|live| {
                            live.members
                                .iter()
                                .filter_map(|id| super::member_of(&state.conns, &state.remote, *id))
                                .map(|member| member.user)
                                .find(|u| *u != user)
                        });
                    }
                }
                // The other nodes take that user's connections out too.
                self.order_or_fail(crate::cluster::Order::RemoveFromRoom {
                    user: user.clone(),
                    room: room.to_string(),
                    payload: removed_payload,
                })
                .await?;
                self.store.set_room_moderation(room, &m).await?;
                // The departed are out of the groups already.
                for left in &departures {
                    left.announce(|group| io.to(group), Departure::Removed)
                        .await;
                }
                self.rooms_changed();
                self.announce_settings(io, room, &m).await;
                json!({ "until": until })
            }
            Action::Settings { locked, lobby } => {
                let was_open = !(m.locked || m.lobby);
                let lobby_was = m.lobby;
                if let Some(locked) = locked {
                    m.locked = locked;
                }
                if let Some(lobby) = lobby {
                    m.lobby = lobby;
                }
                if !(m.locked || m.lobby) {
                    m.allowed.clear();
                } else if was_open {
                    // Whoever is in now may come back (a reload, a restart).
                    let state = self.state.lock();
                    if let Some(live) = state.rooms.get(room) {
                        for id in &live.members {
                            if let Some(member) = super::member_of(&state.conns, &state.remote, *id)
                                && !m.allowed.contains(&member.user)
                            {
                                m.allowed.push(member.user);
                            }
                        }
                    }
                    trim_allowed(&mut m.allowed);
                }
                self.store.set_room_moderation(room, &m).await?;
                if lobby_was && !m.lobby {
                    // Nobody waits for a lobby that is gone: everyone may come in
                    // (unless the room is locked now).
                    let waiting = self.state.lock().lobby.remove(room).unwrap_or_default();
                    for sid in waiting {
                        self.answer_waiting(io, sid, room, !m.locked).await;
                    }
                }
                self.announce_settings(io, room, &m).await;
                json!({ "locked": m.locked, "lobby": m.lobby })
            }
            Action::Admit(to, admit) => {
                let user = {
                    let mut state = self.state.lock();
                    let waiting = state.lobby.get_mut(room);
                    let at = waiting
                        .as_ref()
                        .and_then(|w| w.iter().position(|id| *id == to));
                    let (Some(waiting), Some(at)) = (waiting, at) else {
                        return Err(ApiError::new(
                            ErrorCode::NotInRoom,
                            format!("that connection is not waiting to enter `{room}`"),
                        ));
                    };
                    waiting.remove(at);
                    if waiting.is_empty() {
                        state.lobby.remove(room);
                    }
                    super::member_of(&state.conns, &state.remote, to).map(|m| m.user)
                };
                if admit && let Some(user) = user {
                    if !m.allowed.contains(&user) {
                        m.allowed.push(user);
                        trim_allowed(&mut m.allowed);
                    }
                    self.store.set_room_moderation(room, &m).await?;
                }
                self.answer_waiting(io, to, room, admit).await;
                self.tell_hosts(io, room, &m, true).await;
                json!({})
            }
        };
        Ok(reply)
    }

    /// The user id of `sid`, a member of `room` (of any node).
    fn member_user(&self, sid: Sid, room: &str) -> Result<String, ApiError> {
        let state = self.state.lock();
        if let Some(c) = state.conns.get(&sid) {
            return c
                .rooms
                .iter()
                .any(|r| r == room)
                .then(|| c.user.clone())
                .ok_or_else(|| no_member(room));
        }
        state
            .remote
            .get(&sid)
            .filter(|r| r.presence.rooms.iter().any(|x| x == room))
            .map(|r| r.presence.user.clone())
            .ok_or_else(|| no_member(room))
    }

    /// Whether `sid` (of any node) is in the call of `room`.
    fn in_call_anywhere(&self, sid: Sid, room: &str) -> bool {
        let state = self.state.lock();
        match state.conns.get(&sid) {
            Some(c) => c.calls.iter().any(|r| r == room),
            None => state
                .remote
                .get(&sid)
                .is_some_and(|r| r.presence.calls.iter().any(|x| x == room)),
        }
    }

    /// Has the other nodes carry out `order`; a clear error when Redis does
    /// not answer.
    async fn order_or_fail(&self, order: crate::cluster::Order) -> Result<(), ApiError> {
        self.roster.order(order).await.map_err(|e| {
            tracing::warn!(error = %e, "a moderation order could not reach the other nodes");
            ApiError::new(
                ErrorCode::Internal,
                "the other nodes could not be reached; try again",
            )
        })
    }

    /// Another node's host or admin took `sid` (ours) out of the call of
    /// `room`: as if done here, the call told through the bus.
    pub(super) async fn remove_from_call_here(
        &self,
        io: &SocketIo,
        sid: Sid,
        room: &str,
        by: &Value,
    ) {
        let member = {
            let mut state = self.state.lock();
            let State { conns, rooms, .. } = &mut *state;
            let Some(conn) = conns.get_mut(&sid) else {
                return;
            };
            let Some(at) = conn.calls.iter().position(|r| r == room) else {
                return;
            };
            conn.calls.swap_remove(at);
            if let Some(live) = rooms.get_mut(room) {
                live.call.retain(|id| *id != sid);
                live.hands.retain(|id| *id != sid);
            }
            self.end_media(sid, room);
            let member = conn.member(sid);
            self.touched(&state, sid);
            member
        };
        self.roster.settled().await;
        if let Some(s) = io.get_socket(sid) {
            s.leave(call_group(room));
            let mut payload = by.clone();
            payload["from"] = json!("call");
            let _ = s.emit(events::REMOVED, &(room, &payload));
        }
        let _ = io
            .to(call_group(room))
            .emit(
                events::PEER_LEFT,
                &(room, &member, Departure::Removed.payload()),
            )
            .await;
    }

    /// Takes this node's connections of `user` out of `room` (and its
    /// call), telling each why (`removed` with `payload`); returns the
    /// departures to announce.
    fn take_out_of_room(
        &self,
        state: &mut State,
        io: &SocketIo,
        user: &str,
        room: &str,
        payload: &Value,
    ) -> Vec<super::Left> {
        let sids: Vec<Sid> = state
            .rooms
            .get(room)
            .map(|live| {
                live.members
                    .iter()
                    .filter(|id| state.conns.get(id).is_some_and(|c| c.user == user))
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        let mut departures = Vec::new();
        for sid in sids {
            if let Some(left) = self.leave_locked(state, sid, room, false) {
                departures.push(left);
            }
            if let Some(s) = io.get_socket(sid) {
                s.leave(chat_group(room));
                s.leave(call_group(room));
                let _ = s.emit(events::REMOVED, &(room, payload));
            }
        }
        departures
    }

    /// Another node's host or admin took `user` out of `room`: this node's
    /// connections of that user leave it, told why.
    pub(super) async fn remove_from_room_here(
        &self,
        io: &SocketIo,
        user: &str,
        room: &str,
        payload: &Value,
    ) {
        let departures = {
            let mut state = self.state.lock();
            self.take_out_of_room(&mut state, io, user, room, payload)
        };
        if departures.is_empty() {
            return;
        }
        self.roster.settled().await;
        for left in &departures {
            left.announce(|group| io.to(group), Departure::Removed)
                .await;
        }
        self.rooms_changed();
    }

    /// Tells the members of `room` its settings, and its (new) host the lobby.
    async fn announce_settings(&self, io: &SocketIo, room: &str, m: &Moderation) {
        let _ = io
            .to(chat_group(room))
            .emit(events::ROOM_SETTINGS, &(room, RoomSettings::from(m)))
            .await;
        if m.lobby {
            self.tell_hosts(io, room, m, true).await;
        }
    }
}

fn waiting_members(state: &State, room: &str) -> Vec<Member> {
    state
        .lobby
        .get(room)
        .map(|waiting| {
            waiting
                .iter()
                .filter_map(|id| super::member_of(&state.conns, &state.remote, *id))
                .collect()
        })
        .unwrap_or_default()
}

fn trim_allowed(allowed: &mut Vec<String>) {
    if allowed.len() > ALLOWED_MAX {
        let extra = allowed.len() - ALLOWED_MAX;
        allowed.drain(..extra);
    }
}

fn not_in_this_call(room: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotInCall,
        format!("that connection is not in the call of `{room}`"),
    )
}
