//! The other nodes' members in the hub: this node's changes go out to the
//! roster, and what the roster says of the others is merged into the rooms,
//! calls and hands here, so that member lists, counts, the room list and
//! call checks cover the whole cluster.
//!
//! A change another node makes is announced to the clients by that node
//! (its broadcasts reach every node through the adapter). Only what no node
//! could announce (a node that died, changes made while Redis was away) is
//! announced here, by every node to its own clients.

use socketioxide::socket::Sid;

use super::{Hub, Left, Remote, State, member_of};
use crate::cluster::{NodeConns, Presence, RosterEvent};
use crate::signaling::protocol::Member;

/// What the clients of this node must be told after a roster event.
#[derive(Default)]
pub struct Announcements {
    /// Members that left a room (and maybe its call).
    pub left: Vec<Left>,
    /// (room, member, count) of members that appeared in a room.
    pub entered: Vec<(String, Member, usize)>,
    /// (room, member) of members that appeared in a call.
    pub joined: Vec<(String, Member)>,
    /// (room, member) of members that left a call but not its room.
    pub call_left: Vec<(String, Member)>,
    /// Rooms whose lobby changed: their hosts here are told.
    pub lobbies: Vec<String>,
}

impl Announcements {
    pub fn is_empty(&self) -> bool {
        self.left.is_empty()
            && self.entered.is_empty()
            && self.joined.is_empty()
            && self.call_left.is_empty()
            && self.lobbies.is_empty()
    }
}

impl Hub {
    /// Tells the other nodes the new state of this node's connection `sid`
    /// (after any change of its rooms, calls, hand or name).
    pub(super) fn touched(&self, state: &State, sid: Sid) {
        if !self.roster.is_clustered() {
            return;
        }
        let Some(conn) = state.conns.get(&sid) else {
            return;
        };
        let hands = conn
            .calls
            .iter()
            .filter(|room| {
                state
                    .rooms
                    .get(*room)
                    .is_some_and(|l| l.hands.contains(&sid))
            })
            .cloned()
            .collect();
        self.roster.put(
            &sid.to_string(),
            Presence {
                user: conn.user.clone(),
                nickname: conn.nickname.clone(),
                was: conn.was.clone(),
                rooms: conn.rooms.clone(),
                calls: conn.calls.clone(),
                hands,
                waiting: state
                    .lobby
                    .iter()
                    .filter(|(_, waiting)| waiting.contains(&sid))
                    .map(|(room, _)| room.clone())
                    .collect(),
                addr: conn.addr.map(|a| a.to_string()),
                since: conn.since,
            },
        );
    }

    /// Applies what the roster learned of the other nodes; returns what this
    /// node's clients must be told (nothing for ordinary changes: their own
    /// node announced those).
    pub fn apply_remote(&self, event: RosterEvent) -> Announcements {
        let mut out = Announcements::default();
        let mut state = self.state.lock();
        match event {
            RosterEvent::Set {
                node,
                sid,
                presence,
            } => {
                if let Ok(sid) = sid.parse::<Sid>() {
                    set_remote(
                        &mut state,
                        &node,
                        sid,
                        Some(presence),
                        &mut Announcements::default(),
                    );
                }
            }
            RosterEvent::Gone { node, sid } => {
                if let Ok(sid) = sid.parse::<Sid>() {
                    set_remote(&mut state, &node, sid, None, &mut Announcements::default());
                }
            }
            RosterEvent::Node { node, conns } => replace_node(&mut state, &node, conns, &mut out),
            // Carried out by `follow_cluster` before it gets here.
            RosterEvent::Order(_) => {}
            RosterEvent::Snapshot(nodes) => {
                let known: std::collections::HashSet<String> =
                    state.remote.values().map(|r| r.node.clone()).collect();
                for node in known.iter().filter(|n| !nodes.contains_key(*n)) {
                    replace_node(&mut state, node, NodeConns::new(), &mut out);
                }
                for (node, conns) in nodes {
                    replace_node(&mut state, &node, conns, &mut out);
                }
            }
        }
        drop(state);
        self.rooms_changed();
        out
    }

    /// The other nodes this one knows of, with their connections' count.
    pub fn other_nodes(&self) -> std::collections::BTreeMap<String, usize> {
        let mut nodes = std::collections::BTreeMap::new();
        for r in self.state.lock().remote.values() {
            *nodes.entry(r.node.clone()).or_insert(0) += 1;
        }
        nodes
    }
}

/// Makes `node`'s connections `conns`, announcing the differences.
fn replace_node(state: &mut State, node: &str, conns: NodeConns, out: &mut Announcements) {
    let old: Vec<Sid> = state
        .remote
        .iter()
        .filter(|(sid, r)| r.node == node && !conns.contains_key(&sid.to_string()))
        .map(|(sid, _)| *sid)
        .collect();
    for sid in old {
        set_remote(state, node, sid, None, out);
    }
    for (sid, presence) in conns {
        if let Ok(sid) = sid.parse::<Sid>() {
            set_remote(state, node, sid, Some(presence), out);
        }
    }
}

/// Sets (or, with `None`, removes) a connection of another node, keeping
/// rooms, calls, hands and room counts in step; differences go to `out`.
fn set_remote(
    state: &mut State,
    node: &str,
    sid: Sid,
    presence: Option<Presence>,
    out: &mut Announcements,
) {
    if state.conns.contains_key(&sid) {
        return; // ours: never taken from another node's word
    }
    let before = state.remote.get(&sid).map(|r| r.presence.clone());
    let empty = Presence {
        user: String::new(),
        nickname: String::new(),
        was: None,
        rooms: Vec::new(),
        calls: Vec::new(),
        hands: Vec::new(),
        waiting: Vec::new(),
        addr: None,
        since: 0,
    };
    let old = before.clone().unwrap_or_else(|| empty.clone());
    let new = presence.clone().unwrap_or_else(|| empty.clone());
    // The member as it was (for departures) and as it is (for arrivals).
    let was_member = before.as_ref().map(|p| Remote {
        node: node.to_string(),
        presence: p.clone(),
    });
    match presence {
        Some(p) => {
            state.remote.insert(
                sid,
                Remote {
                    node: node.to_string(),
                    presence: p,
                },
            );
        }
        None => {
            state.remote.remove(&sid);
        }
    }
    let State {
        conns,
        remote,
        rooms,
        directory,
        lobby,
        ..
    } = state;
    // Lobbies: who waits where, whatever node it is connected to.
    for room in old.waiting.iter().filter(|r| !new.waiting.contains(r)) {
        if let Some(waiting) = lobby.get_mut(room) {
            waiting.retain(|id| *id != sid);
            if waiting.is_empty() {
                lobby.remove(room);
            }
        }
        out.lobbies.push(room.clone());
    }
    for room in new.waiting.iter().filter(|r| !old.waiting.contains(r)) {
        let waiting = lobby.entry(room.clone()).or_default();
        if !waiting.contains(&sid) && waiting.len() < super::LOBBY_MAX {
            waiting.push(sid);
        }
        out.lobbies.push(room.clone());
    }
    for room in old.rooms.iter().filter(|r| !new.rooms.contains(r)) {
        let count = super::drop_from_room(rooms, directory, room, sid);
        if let Some(m) = &was_member {
            out.left.push(Left {
                room: room.clone(),
                member: m.member(sid),
                count,
                was_in_call: old.calls.contains(room),
            });
        }
    }
    for room in new.rooms.iter().filter(|r| !old.rooms.contains(r)) {
        let live = rooms.entry(room.clone()).or_default();
        if !live.members.contains(&sid) {
            live.members.push(sid);
        }
        directory.set_count(room, live.members.len());
        if let Some(m) = member_of(conns, remote, sid) {
            out.entered.push((room.clone(), m, live.members.len()));
        }
    }
    for room in &new.rooms {
        let Some(live) = rooms.get_mut(room) else {
            continue;
        };
        let in_call = new.calls.contains(room);
        if in_call && !live.call.contains(&sid) {
            if live.call.is_empty() {
                live.through_server = false;
                live.speakers.clear();
            }
            live.call.push(sid);
            if let Some(m) = member_of(conns, remote, sid) {
                out.joined.push((room.clone(), m));
            }
        } else if !in_call {
            live.call.retain(|id| *id != sid);
        }
        let hand = in_call && new.hands.contains(room);
        if hand && !live.hands.contains(&sid) {
            live.hands.push(sid);
        } else if !hand {
            live.hands.retain(|id| *id != sid);
        }
    }
    // A call left while the room was kept.
    if let Some(m) = &was_member {
        for room in old
            .calls
            .iter()
            .filter(|r| !new.calls.contains(r) && new.rooms.contains(r))
        {
            out.call_left.push((room.clone(), m.member(sid)));
        }
    }
}
