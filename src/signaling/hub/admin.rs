//! What the admin page reads of the live state, and the changes it makes:
//! made here like the users' own (membership, groups and the events that
//! tell the clients concerned), so the hub stays the one owner of membership.

use std::collections::HashMap;

use crate::signaling::SocketIo;
use socketioxide::socket::Sid;

use super::{Hub, State, call_group, chat_group};
use crate::signaling::protocol::{KickReason, events};

/// A member of a room as the admin page shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemberDetail {
    pub id: String,
    pub user: String,
    pub nickname: String,
    pub address: Option<String>,
    /// ms since the Unix epoch.
    pub connected_since: i64,
    pub in_call: bool,
    /// The node it is connected to.
    pub node: String,
}

/// Members and call participants of a live room.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveCounts {
    pub members: usize,
    pub in_call: usize,
}

/// Administration: what the admin page reads, and the changes it makes, made
/// here like the users' own (membership, groups and the events that tell the
/// clients concerned).
impl Hub {
    /// Members and call size of every room with members now.
    pub fn live_room_counts(&self) -> HashMap<String, LiveCounts> {
        self.state
            .lock()
            .rooms
            .iter()
            .map(|(name, r)| {
                let counts = LiveCounts {
                    members: r.members.len(),
                    in_call: r.call.len(),
                };
                (name.clone(), counts)
            })
            .collect()
    }

    /// The members of `room`, in order of entry.
    pub fn room_members(&self, room: &str) -> Vec<MemberDetail> {
        let state = self.state.lock();
        let Some(live) = state.rooms.get(room) else {
            return Vec::new();
        };
        live.members
            .iter()
            .filter_map(|sid| {
                let in_call = live.call.contains(sid);
                if let Some(c) = state.conns.get(sid) {
                    return Some(MemberDetail {
                        id: sid.to_string(),
                        user: c.user.clone(),
                        nickname: c.nickname.clone(),
                        address: c.addr.map(|a| a.to_string()),
                        connected_since: c.since,
                        in_call,
                        node: self.roster.node().to_string(),
                    });
                }
                let r = state.remote.get(sid)?;
                Some(MemberDetail {
                    id: sid.to_string(),
                    user: r.presence.user.clone(),
                    nickname: r.presence.nickname.clone(),
                    address: r.presence.addr.clone(),
                    connected_since: r.presence.since,
                    in_call,
                    node: r.node.clone(),
                })
            })
            .collect()
    }

    /// The connections of the public user id `user`.
    pub fn connections_of_user(&self, user: &str) -> Vec<Sid> {
        self.state
            .lock()
            .conns
            .iter()
            .filter(|(_, c)| c.user == user)
            .map(|(sid, _)| *sid)
            .collect()
    }

    /// Ends the call of `room`: its participants leave it and get
    /// `call_ended`. Returns how many there were.
    pub fn end_call(&self, io: &SocketIo, room: &str) -> usize {
        let mut state = self.state.lock();
        let State { conns, rooms, .. } = &mut *state;
        let Some(live) = rooms.get_mut(room) else {
            return 0;
        };
        // Another node's participants are its own to end.
        let ended: Vec<Sid> = live
            .call
            .iter()
            .filter(|id| conns.contains_key(id))
            .copied()
            .collect();
        live.call.retain(|id| !conns.contains_key(id));
        live.hands.retain(|id| !conns.contains_key(id));
        for sid in &ended {
            if let Some(c) = conns.get_mut(sid) {
                c.calls.retain(|r| r != room);
            }
            self.end_media(*sid, room);
            if let Some(s) = io.get_socket(*sid) {
                s.leave(call_group(room));
                let _ = s.emit(events::CALL_ENDED, &(room,));
            }
        }
        for sid in &ended {
            self.touched(&state, *sid);
        }
        ended.len()
    }

    /// Takes every member out of `room` (and its call); they get
    /// `room_closed`. Returns how many there were.
    pub fn close_room(&self, io: &SocketIo, room: &str) -> usize {
        let mut state = self.state.lock();
        let members: Vec<Sid> = state
            .rooms
            .get(room)
            .map(|r| r.members.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|id| state.conns.contains_key(id))
            .collect();
        for sid in &members {
            self.leave_locked(&mut state, *sid, room, false);
            if let Some(s) = io.get_socket(*sid) {
                let _ = s.emit(events::ROOM_CLOSED, &(room,));
                s.leave(chat_group(room));
                s.leave(call_group(room));
            }
        }
        let left = state.rooms.get(room).map_or(0, |r| r.members.len());
        if left == 0 {
            state.rooms.remove(room);
        }
        state.directory.set_count(room, left);
        members.len()
    }

    /// Carries out another node's administrator's order on this node's
    /// connections.
    pub async fn carry_out(&self, io: &SocketIo, order: crate::cluster::Order) {
        use crate::cluster::Order;
        tracing::info!(target: "noom::admin", ?order, "carrying out an order of another node's administrator");
        match order {
            Order::Kick { sid, reason } => {
                let reason = if reason == "session_revoked" {
                    KickReason::SessionRevoked
                } else {
                    KickReason::Disconnected
                };
                if let Ok(sid) = sid.parse::<Sid>() {
                    self.kick(io, sid, reason);
                }
            }
            Order::EndCall { room } => {
                if self.end_call(io, &room) > 0 {
                    self.roster.settled().await;
                }
            }
            Order::CloseRoom { room } => {
                self.close_room(io, &room);
                self.room_closed(&room);
                self.rooms_changed();
            }
            Order::RemoveFromCall { sid, room, by } => {
                if let Ok(sid) = sid.parse::<Sid>() {
                    self.remove_from_call_here(io, sid, &room, &by).await;
                }
            }
            Order::RemoveFromRoom {
                user,
                room,
                payload,
            } => self.remove_from_room_here(io, &user, &room, &payload).await,
            Order::Admission {
                sid,
                room,
                admitted,
            } => {
                if let Ok(sid) = sid.parse::<Sid>() {
                    self.admission_here(io, sid, &room, admitted).await;
                }
            }
            Order::RevokeUser { user } => {
                if let Some(relay) = &self.relay {
                    relay.revoke_user(&user);
                }
                for sid in self.connections_of_user(&user) {
                    self.kick(io, sid, KickReason::SessionRevoked);
                }
            }
        }
    }

    /// Other nodes' connections of `user`.
    pub fn remote_connections_of_user(&self, user: &str) -> usize {
        self.state
            .lock()
            .remote
            .values()
            .filter(|r| r.presence.user == user)
            .count()
    }

    /// Whether `sid` is a connection of another node.
    pub fn is_remote(&self, sid: Sid) -> bool {
        self.state.lock().remote.contains_key(&sid)
    }

    /// Members and call participants of `room` on other nodes.
    pub fn remote_in_room(&self, room: &str) -> (usize, usize) {
        let state = self.state.lock();
        let Some(live) = state.rooms.get(room) else {
            return (0, 0);
        };
        let remote = |ids: &Vec<Sid>| {
            ids.iter()
                .filter(|id| state.remote.contains_key(id))
                .count()
        };
        (remote(&live.members), remote(&live.call))
    }

    /// Closes the connection `sid` after telling it why (`kicked`); its rooms
    /// hear `bye` as on any disconnect. False when there is no such connection.
    pub fn kick(&self, io: &SocketIo, sid: Sid, reason: KickReason) -> bool {
        match io.get_socket(sid) {
            Some(s) => {
                let _ = s.emit(events::KICKED, &reason.payload());
                let _ = s.disconnect();
                true
            }
            None => false,
        }
    }
}
