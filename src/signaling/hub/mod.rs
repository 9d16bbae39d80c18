//! The live state of the server: who is connected, in which rooms and calls.
//!
//! The hub is the one owner of live membership: users' requests and the
//! administrator's actions change it through the same methods, which also
//! keep the socketioxide groups (`r:<room>` for chat, `c:<room>` for the call,
//! used only as broadcast groups) in step with it.
//!
//! One lock guards the state. It may cover only in-memory work: map updates,
//! group joins and leaves (in memory too) and non-blocking emits to single
//! sockets. It never covers disk I/O or an `.await`: store writes happen
//! before or after it is taken, and what must be announced to a room is
//! returned to the caller, which broadcasts outside the lock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::signaling::SocketRef;
use parking_lot::Mutex;
use socketioxide::socket::Sid;
use tokio::sync::Notify;

use super::directory::{Directory, Snapshot};
use super::protocol::{ApiError, Departure, ErrorCode, Member, events};
use super::rate::{TokenBucket, Verdict};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{RoomMeta, Session, SessionKey, Store};

mod admin;
mod calls;
mod health;
mod media_route;
mod moderation;
mod remote;

pub use admin::{LiveCounts, MemberDetail};
pub use calls::{Joined, MEDIA_PARK, MESH_CALL_MAX};
pub use media_route::{MediaHost, serve_remote};
pub use moderation::{Action, LOBBY_MAX, Moderator, Removal, RoomSettings};

/// The socketioxide room that carries a chat room's broadcasts.
pub fn chat_group(room: &str) -> String {
    format!("r:{room}")
}

/// The socketioxide room that carries a call's broadcasts.
pub fn call_group(room: &str) -> String {
    format!("c:{room}")
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Conn {
    user: String,
    nickname: String,
    session: SessionKey,
    /// The secret token, held only until the `session` event has carried it.
    token: Option<String>,
    rooms: Vec<String>,
    calls: Vec<String>,
    limiter: TokenBucket,
    /// The client's address, for the admin page.
    addr: Option<IpAddr>,
    /// When the connection was opened, ms since the Unix epoch.
    since: i64,
    /// The TURN credentials minted for this connection, reused while fresh.
    turn: Option<crate::relay::Minted>,
    /// Its last reaction in a call (reactions are throttled).
    last_reaction: Option<std::time::Instant>,
    /// Its last raised or lowered hand (changes are throttled).
    last_hand: Option<std::time::Instant>,
    /// Its socket id before a reconnect, as it said when joining a call.
    was: Option<String>,
    /// A newer connection of its session took its place (see `replace`).
    replaced: bool,
}

impl Conn {
    fn member(&self, sid: Sid) -> Member {
        Member {
            id: sid.to_string(),
            user: self.user.clone(),
            nickname: self.nickname.clone(),
            was: self.was.clone(),
        }
    }
}

#[derive(Default)]
struct LiveRoom {
    /// In order of entry.
    members: Vec<Sid>,
    call: Vec<Sid>,
    /// Raised hands in the call, in the order they went up.
    hands: Vec<Sid>,
    /// The call's media goes through the media server (until it empties).
    through_server: bool,
    /// Who the media server last heard speaking in the call (socket ids,
    /// loudest first): a page that (re)joins learns it with its join, since
    /// `active_speaker` is sent only on a change. Gone with the room.
    speakers: Vec<String>,
}

/// A connection of another node, as its node last said.
struct Remote {
    node: String,
    presence: crate::cluster::Presence,
}

impl Remote {
    fn member(&self, sid: Sid) -> Member {
        Member {
            id: sid.to_string(),
            user: self.presence.user.clone(),
            nickname: self.presence.nickname.clone(),
            was: self.presence.was.clone(),
        }
    }
}

/// Takes `sid` (of any node) out of `room`'s members, call and hands;
/// forgets the room once empty. Returns the members left.
fn drop_from_room(
    rooms: &mut HashMap<String, LiveRoom>,
    directory: &mut Directory,
    room: &str,
    sid: Sid,
) -> usize {
    let Some(live) = rooms.get_mut(room) else {
        return 0;
    };
    live.members.retain(|id| *id != sid);
    live.call.retain(|id| *id != sid);
    live.hands.retain(|id| *id != sid);
    let count = live.members.len();
    if count == 0 {
        rooms.remove(room);
    }
    directory.set_count(room, count);
    count
}

/// The member `sid`, of this node or another.
fn member_of(
    conns: &HashMap<Sid, Conn>,
    remote: &HashMap<Sid, Remote>,
    sid: Sid,
) -> Option<Member> {
    match conns.get(&sid) {
        Some(c) => Some(c.member(sid)),
        None => remote.get(&sid).map(|r| r.member(sid)),
    }
}

struct State {
    /// This node's connections.
    conns: HashMap<Sid, Conn>,
    /// The other nodes' connections (empty when alone).
    remote: HashMap<Sid, Remote>,
    rooms: HashMap<String, LiveRoom>,
    /// The public room list, updated with every count and activity change.
    directory: Directory,
    /// Connections waiting in a room's lobby, in order of arrival.
    lobby: HashMap<String, Vec<Sid>>,
}

/// Shared by every handler (socketioxide state) and the HTTP routes.
pub struct Hub {
    pub config: Arc<Config>,
    pub store: Store,
    /// Live membership shared with the other nodes (does nothing alone).
    pub roster: Arc<crate::cluster::Roster>,
    pub metrics: Arc<Metrics>,
    /// The built-in relay, when enabled.
    pub relay: Option<Arc<crate::relay::Relay>>,
    /// Why the relay is enabled in the configuration but not running.
    pub relay_error: Option<String>,
    /// The media server, when it runs.
    pub sfu: Option<Arc<crate::sfu::Sfu>>,
    /// Where calls' media is placed, and the requests carried to other
    /// nodes' media servers (does nothing alone).
    pub media_link: Arc<crate::cluster::MediaLink>,
    /// Why the media server is enabled in the configuration but not running.
    pub sfu_error: Option<String>,
    state: Mutex<State>,
    rooms_changed: Notify,
    /// TURN credentials minted per client address: what makes them cost something.
    credential_rate: crate::limit::Buckets<IpAddr>,
    /// Media sessions started, per client address.
    media_rate: crate::limit::Buckets<IpAddr>,
    /// Room password checks per address (each costs an Argon2 hash).
    password_rate: crate::limit::Buckets<IpAddr>,
    /// (session, room): sessions that gave a room's password.
    admitted: Mutex<std::collections::HashSet<(SessionKey, String)>>,
    /// Password hashes of rooms being created, until the store has them:
    /// nobody gets in without the password while its creator's entry runs
    /// (nor later, if storing it failed).
    /// (`None` while the hash is being computed.)
    creating: Mutex<HashMap<String, Option<String>>>,
    /// Media sessions open, counted per client address, by session key.
    media_held: Arc<crate::limit::Counts<IpAddr>>,
    media_sessions: Arc<Mutex<HashMap<String, crate::limit::Held<IpAddr>>>>,
    /// Media sessions of connections that dropped (by media key), kept a
    /// while for their page to take back after it reconnects.
    parked: Arc<Mutex<HashMap<String, calls::Parked>>>,
    /// Held while a room's moderation record is read and written.
    moderating: tokio::sync::Mutex<()>,
    /// (room -> socket, seq, when): sockets that got a room's messages up
    /// to `seq` with their `enter_room`, while later copies of those may
    /// still be on their way (see `handed_out`).
    handed: Mutex<HandedOut>,
    /// Stored messages on their way to their rooms (see `deliver_messages`).
    pub deliveries: tokio::sync::mpsc::Sender<Delivery>,
    deliveries_rx: Mutex<Option<tokio::sync::mpsc::Receiver<Delivery>>>,
    /// (room, next seq): where a room's delivery order starts (see `seed_order`).
    seeds: tokio::sync::mpsc::UnboundedSender<(String, u64)>,
    seeds_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<(String, u64)>>>,
}

/// A stored message to deliver to its room (but its sender), in order
/// (see `delivery`).
pub struct Delivery {
    pub from: SocketRef,
    pub message: crate::store::Message,
}

/// How long a socket's "already has up to seq" is kept (see `handed_out`).
const HANDED_KEEP: std::time::Duration = std::time::Duration::from_secs(10);
/// Beyond this many rooms with such entries, expired ones are swept.
const HANDED_ROOMS_SWEEP: usize = 1024;
/// The most such entries kept per room (the oldest go first).
const HANDED_PER_ROOM_MAX: usize = 1024;

/// Per room, the sockets that got its messages up to a seq with their
/// `enter_room`, and when: bounded, entries live [`HANDED_KEEP`] at most
/// whether or not a message of their room comes to clear them.
#[derive(Default)]
struct HandedOut {
    rooms: HashMap<String, Vec<(Sid, u64, Instant)>>,
}

impl HandedOut {
    fn record(&mut self, room: &str, sid: Sid, seq: u64, now: Instant) {
        let fresh = |at: &Instant| now.saturating_duration_since(*at) < HANDED_KEEP;
        if self.rooms.len() >= HANDED_ROOMS_SWEEP {
            self.rooms.retain(|_, list| {
                list.retain(|(_, _, at)| fresh(at));
                !list.is_empty()
            });
        }
        let list = self.rooms.entry(room.to_string()).or_default();
        list.retain(|(_, _, at)| fresh(at));
        if list.len() >= HANDED_PER_ROOM_MAX {
            list.remove(0);
        }
        list.push((sid, seq, now));
    }

    /// Who has `room`'s `seq`. Deliveries go in seq order, so entries below
    /// it are done with.
    fn holders(&mut self, room: &str, seq: u64, now: Instant) -> Vec<Sid> {
        let Some(list) = self.rooms.get_mut(room) else {
            return Vec::new();
        };
        list.retain(|(_, upto, at)| {
            *upto >= seq && now.saturating_duration_since(*at) < HANDED_KEEP
        });
        let out = list.iter().map(|(sid, _, _)| *sid).collect();
        if list.is_empty() {
            self.rooms.remove(room);
        }
        out
    }

    /// Entries kept, over every room.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.rooms.values().map(Vec::len).sum()
    }
}

/// Messages waiting for the delivery task: beyond this, the store waits.
const DELIVERIES_MAX: usize = 65_536;

/// The result of `enter`.
pub struct Entered {
    pub already: bool,
    pub member: Member,
    pub count: usize,
    pub members: Vec<Member>,
}

/// A departure from a room, to announce.
pub struct Left {
    pub room: String,
    pub member: Member,
    pub count: usize,
    pub was_in_call: bool,
}

impl Left {
    /// Tells the others of the room (and of its call) of this departure, and
    /// why: `to` opens a broadcast to a group (a socket's own `to`, which
    /// leaves that socket out, or the server's, for departures made by
    /// someone else).
    pub async fn announce(
        &self,
        to: impl Fn(String) -> crate::signaling::BroadcastOperators,
        why: Departure,
    ) {
        let room = self.room.as_str();
        if self.was_in_call {
            let _ = to(call_group(room))
                .emit(events::PEER_LEFT, &(room, &self.member, why.payload()))
                .await;
        }
        let _ = to(chat_group(room))
            .emit(
                events::BYE,
                &(room, &self.member, self.count, why.payload()),
            )
            .await;
    }
}

/// Identity of a member allowed to speak in a room.
pub struct Speaker {
    pub user: String,
    pub nickname: String,
    /// Other sockets in the room now.
    pub recipients: u64,
}

impl Hub {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        known_rooms: &[RoomMeta],
        metrics: Arc<Metrics>,
        relay: Option<Arc<crate::relay::Relay>>,
        roster: Arc<crate::cluster::Roster>,
    ) -> Self {
        let mut directory = Directory::new(
            (config.rooms.active_window_secs as i64).saturating_mul(1000),
            config.rooms.list_max as usize,
            config.limits.max_payload_bytes as usize,
        );
        for room in known_rooms {
            if room.unlisted {
                directory.hide(&room.name);
            } else {
                directory.insert(&room.name, room.last_activity, room.last_seq > 0);
            }
        }
        let (deliveries, deliveries_rx) = tokio::sync::mpsc::channel(DELIVERIES_MAX);
        let (seeds, seeds_rx) = tokio::sync::mpsc::unbounded_channel();
        Self {
            deliveries,
            deliveries_rx: Mutex::new(Some(deliveries_rx)),
            seeds,
            seeds_rx: Mutex::new(Some(seeds_rx)),
            handed: Mutex::new(HandedOut::default()),
            store,
            metrics,
            relay,
            roster,
            relay_error: None,
            sfu: None,
            media_link: Arc::new(crate::cluster::MediaLink::new(
                &crate::cluster::Bus::Alone,
                "",
                "",
            )),
            sfu_error: None,
            media_rate: {
                let per_min = config.sfu.joins_per_ip_per_min as f64;
                crate::limit::Buckets::new(per_min / 60.0, per_min, 65_536)
            },
            media_held: crate::limit::Counts::new(config.sfu.sessions_per_ip as usize),
            // Five tries at once, then one every five seconds.
            password_rate: crate::limit::Buckets::new(0.2, 5.0, 65_536),
            admitted: Mutex::new(std::collections::HashSet::new()),
            creating: Mutex::new(HashMap::new()),
            media_sessions: Arc::new(Mutex::new(HashMap::new())),
            parked: Arc::new(Mutex::new(HashMap::new())),
            credential_rate: {
                let per_min = config.turn.credentials_per_ip_per_min as f64;
                crate::limit::Buckets::new(per_min / 60.0, per_min, 65_536)
            },
            config,
            state: Mutex::new(State {
                conns: HashMap::new(),
                remote: HashMap::new(),
                rooms: HashMap::new(),
                directory,
                lobby: HashMap::new(),
            }),
            moderating: tokio::sync::Mutex::new(()),
            rooms_changed: Notify::new(),
        }
    }

    /// The TURN credentials of a connection: its own while more than half of
    /// their lifetime is left, else new ones if its address has budget for
    /// them (`turn.credentials_per_ip_per_min`), else `rate_limited`.
    pub fn turn_credentials(
        &self,
        sid: Sid,
        relay: &crate::relay::Relay,
    ) -> Result<crate::relay::Minted, ApiError> {
        let now = crate::relay::unix_now();
        let half = relay.credential_ttl().as_secs() / 2;
        let (user, addr) = {
            let state = self.state.lock();
            let conn = state.conns.get(&sid).ok_or_else(gone)?;
            if let Some(minted) = &conn.turn
                && minted.expires > now + half
            {
                return Ok(minted.clone());
            }
            (conn.user.clone(), conn.addr)
        };
        if let Some(ip) = addr
            && let Err(wait) = self.credential_rate.try_take(&ip, Instant::now())
        {
            Metrics::inc(&self.metrics.rate_limited);
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "too many calls joined from your network address; retry in {} s",
                    wait.as_secs().max(1)
                ),
            ));
        }
        let minted = relay.mint(&user);
        if let Some(conn) = self.state.lock().conns.get_mut(&sid) {
            conn.turn = Some(minted.clone());
        }
        Ok(minted)
    }

    pub fn register(
        &self,
        sid: Sid,
        key: SessionKey,
        session: Session,
        token: String,
        addr: Option<IpAddr>,
    ) {
        let limits = &self.config.limits;
        self.state.lock().conns.insert(
            sid,
            Conn {
                user: session.user,
                nickname: session.nickname,
                session: key,
                token: Some(token),
                rooms: Vec::new(),
                calls: Vec::new(),
                limiter: TokenBucket::new(limits.events_per_sec, limits.events_burst),
                addr,
                since: now_ms(),
                turn: None,
                last_reaction: None,
                last_hand: None,
                was: None,
                replaced: false,
            },
        );
    }

    /// The `session` event's payload, once: the token is forgotten afterwards.
    pub fn take_session_event(&self, sid: Sid) -> Option<serde_json::Value> {
        let mut state = self.state.lock();
        let conn = state.conns.get_mut(&sid)?;
        let token = conn.token.take()?;
        Some(serde_json::json!({
            "session": token,
            "user": conn.user,
            "nickname": conn.nickname,
        }))
    }

    /// Charges one request to the connection's rate limit.
    pub fn admit(&self, sid: Sid) -> Verdict {
        let mut state = self.state.lock();
        match state.conns.get_mut(&sid) {
            Some(conn) => conn.limiter.take(Instant::now()),
            None => Verdict::Refuse,
        }
    }

    /// `sid` got `room`'s messages up to `seq` in an `enter_room` ack: the
    /// delivery leaves it out of those (the contract: a client that
    /// re-enters gets exactly what it missed, once).
    pub fn handed_out(&self, room: &str, sid: Sid, seq: u64) {
        self.handed.lock().record(room, sid, seq, Instant::now());
    }

    /// The sockets that already have `room`'s message `seq` (see
    /// `handed_out`); forgets those that cannot need it any more.
    pub fn already_have(&self, room: &str, seq: u64) -> Vec<Sid> {
        self.handed.lock().holders(room, seq, Instant::now())
    }

    /// Someone enters `room`, whose next message will have seq `next`: the
    /// delivery starts its order there if it has none for the room (in a
    /// cluster only: alone, the store's order is the delivery's).
    pub fn seed_order(&self, room: &str, next: u64) {
        if self.roster.is_clustered() {
            let _ = self.seeds.send((room.to_string(), next));
        }
    }

    /// Where rooms' delivery orders start, for the delivery task.
    pub fn take_seeds(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<(String, u64)>> {
        self.seeds_rx.lock().take()
    }

    /// The queue of messages to deliver, for the one task that delivers them.
    pub fn take_deliveries(&self) -> Option<tokio::sync::mpsc::Receiver<Delivery>> {
        self.deliveries_rx.lock().take()
    }

    /// Wakes the room-list broadcaster.
    pub fn rooms_changed(&self) {
        self.rooms_changed.notify_one();
    }

    pub async fn wait_rooms_changed(&self) {
        self.rooms_changed.notified().await;
    }

    /// Changes the nickname of every connection of the session behind `sid`;
    /// returns the (room, member) pairs to announce.
    pub async fn set_nickname(
        &self,
        sid: Sid,
        nickname: &str,
    ) -> Result<Vec<(String, Member)>, ApiError> {
        let key = self
            .state
            .lock()
            .conns
            .get(&sid)
            .map(|c| c.session)
            .ok_or_else(gone)?;
        // The disk write first, outside the lock.
        self.store.set_nickname(&key, nickname).await?;
        let mut state = self.state.lock();
        let mut updates = Vec::new();
        let mut changed = Vec::new();
        for (id, conn) in state.conns.iter_mut().filter(|(_, c)| c.session == key) {
            conn.nickname = nickname.to_string();
            changed.push(*id);
            for room in &conn.rooms {
                updates.push((room.clone(), conn.member(*id)));
            }
        }
        for id in changed {
            self.touched(&state, id);
        }
        Ok(updates)
    }

    pub async fn enter(&self, socket: &SocketRef, room: &str) -> Result<Entered, ApiError> {
        let sid = socket.id;
        // Check under the lock, write to disk without it, then join under it
        // again (checking again: the room may have filled meanwhile).
        let key = {
            let state = self.state.lock();
            let conn = state.conns.get(&sid).ok_or_else(gone)?;
            if !conn.rooms.iter().any(|r| r == room) {
                self.may_enter(&state, conn, room)?;
            }
            conn.session
        };
        let joined = {
            let state = self.state.lock();
            state
                .conns
                .get(&sid)
                .is_some_and(|c| c.rooms.iter().any(|r| r == room))
        };
        let activity = if joined {
            None
        } else {
            // Others will see this user id from now on: keep the session.
            self.store.keep_session(&key).await?;
            Some(self.store.touch_room(room, now_ms()).await?.last_activity)
        };
        let mut state = self.state.lock();
        let already = {
            let conn = state.conns.get(&sid).ok_or_else(gone)?;
            let already = conn.rooms.iter().any(|r| r == room);
            if !already {
                self.may_enter(&state, conn, room)?;
            }
            already
        };
        let State {
            conns,
            remote,
            rooms,
            directory,
            ..
        } = &mut *state;
        let conn = conns.get_mut(&sid).ok_or_else(gone)?;
        let live = rooms.entry(room.to_string()).or_default();
        if !already {
            live.members.push(sid);
            if let Some(at) = activity {
                directory.touch(room, at);
            }
            directory.set_count(room, live.members.len());
            conn.rooms.push(room.to_string());
            socket.join(chat_group(room));
        }
        let member = conn.member(sid);
        let members = live
            .members
            .iter()
            .filter_map(|id| member_of(conns, remote, *id))
            .collect::<Vec<_>>();
        if !already {
            self.touched(&state, sid);
        }
        Ok(Entered {
            already,
            member,
            count: members.len(),
            members,
        })
    }

    /// Whether `conn` may enter `room` (it is not in it yet): its own room
    /// limit and the room's size.
    fn may_enter(&self, state: &State, conn: &Conn, room: &str) -> Result<(), ApiError> {
        let limits = &self.config.limits;
        if conn.rooms.len() as u64 >= limits.rooms_per_connection {
            return Err(ApiError::new(
                ErrorCode::RoomFull,
                format!(
                    "a connection can be in at most {} rooms at once; leave one first",
                    limits.rooms_per_connection
                ),
            ));
        }
        let members = state.rooms.get(room).map_or(0, |r| r.members.len());
        if members as u64 >= limits.room_members_max {
            return Err(ApiError::new(
                ErrorCode::RoomFull,
                format!("the room is full ({} members)", limits.room_members_max),
            ));
        }
        Ok(())
    }

    /// Removes `sid` from `room` (and its call); `None` when it was not there.
    pub fn leave(&self, socket: &SocketRef, room: &str) -> Option<Left> {
        let left = self.leave_locked(&mut self.state.lock(), socket.id, room, false)?;
        socket.leave(chat_group(room));
        if left.was_in_call {
            socket.leave(call_group(room));
        }
        Some(left)
    }

    /// `dropped`: the connection went away without leaving (its media
    /// session is kept a while for its return, see `park_media`).
    fn leave_locked(&self, state: &mut State, sid: Sid, room: &str, dropped: bool) -> Option<Left> {
        let left = self.leave_locked_quietly(state, sid, room, dropped)?;
        self.touched(state, sid);
        Some(left)
    }

    fn leave_locked_quietly(
        &self,
        state: &mut State,
        sid: Sid,
        room: &str,
        dropped: bool,
    ) -> Option<Left> {
        let State {
            conns,
            rooms,
            directory,
            ..
        } = state;
        let conn = conns.get_mut(&sid)?;
        let at = conn.rooms.iter().position(|r| r == room)?;
        conn.rooms.swap_remove(at);
        let was_in_call = match conn.calls.iter().position(|r| r == room) {
            Some(i) => {
                conn.calls.swap_remove(i);
                true
            }
            None => false,
        };
        if was_in_call {
            if dropped {
                self.park_media(sid, room, conn.session);
            } else {
                self.end_media(sid, room);
            }
        }
        let member = conn.member(sid);
        let count = drop_from_room(rooms, directory, room, sid);
        Some(Left {
            room: room.to_string(),
            member,
            count,
            was_in_call,
        })
    }

    /// Forgets a closed connection; returns its departures to announce.
    /// `dropped`: it went away without saying goodbye (it may come back:
    /// its media sessions are kept a while, see `park_media`).
    pub async fn disconnect(&self, sid: Sid, dropped: bool) -> Vec<Left> {
        let session = self.state.lock().conns.get(&sid).map(|c| c.session);
        if let Some(key) = session {
            self.store.session_used(&key, now_ms()).await;
        }
        let mut state = self.state.lock();
        let rooms = state
            .conns
            .get(&sid)
            .map(|c| c.rooms.clone())
            .unwrap_or_default();
        let left = rooms
            .iter()
            .filter_map(|room| self.leave_locked_quietly(&mut state, sid, room, dropped))
            .collect();
        state.conns.remove(&sid);
        self.roster.gone(&sid.to_string());
        left
    }

    pub fn speaker(&self, sid: Sid, room: &str) -> Result<Speaker, ApiError> {
        let state = self.state.lock();
        let conn = state.conns.get(&sid).ok_or_else(gone)?;
        if !conn.rooms.iter().any(|r| r == room) {
            return Err(not_in_room(room));
        }
        let recipients = state
            .rooms
            .get(room)
            .map_or(0, |r| r.members.len().saturating_sub(1)) as u64;
        Ok(Speaker {
            user: conn.user.clone(),
            nickname: conn.nickname.clone(),
            recipients,
        })
    }

    /// Sockets in `room` now.
    pub fn count(&self, room: &str) -> usize {
        self.state
            .lock()
            .rooms
            .get(room)
            .map_or(0, |r| r.members.len())
    }

    /// The sessions of the open connections (they are in use, whatever
    /// their stored last use says).
    pub fn live_sessions(&self) -> Vec<SessionKey> {
        let keys: std::collections::HashSet<SessionKey> = self
            .state
            .lock()
            .conns
            .values()
            .map(|c| c.session)
            .collect();
        keys.into_iter().collect()
    }

    /// Names of the rooms with members now.
    pub fn live_rooms(&self) -> std::collections::HashSet<String> {
        self.state.lock().rooms.keys().cloned().collect()
    }

    /// (rooms with members, rooms with a call)
    pub fn live_counts(&self) -> (u64, u64) {
        let state = self.state.lock();
        let calls = state.rooms.values().filter(|r| !r.call.is_empty()).count();
        (state.rooms.len() as u64, calls as u64)
    }

    /// The Prometheus exposition: the core's counters and gauges and the
    /// relay's; `cert_expiry_secs` when HTTPS is on.
    pub async fn exposition(
        &self,
        io: &crate::signaling::SocketIo,
        cert_expiry_secs: Option<i64>,
    ) -> String {
        let (ws, polling) = super::connections_by_transport(io);
        let (rooms_live, calls_live) = self.live_counts();
        let gauges = crate::metrics::Gauges {
            connections_websocket: ws,
            connections_polling: polling,
            rooms_live,
            rooms_known: self.store.room_count().await,
            calls_live,
        };
        let mut relay = self.relay.as_ref().map(|r| {
            let mut text = String::new();
            r.render_metrics(&mut text);
            text
        });
        if let Some(sfu) = &self.sfu
            && let Ok(stats) = sfu.stats().await
        {
            let text = relay.get_or_insert_with(String::new);
            render_sfu(text, &stats);
        }
        crate::metrics::exposition(
            &self.config.cluster.node_id,
            &self.metrics,
            &gauges,
            relay.as_deref(),
            cert_expiry_secs,
        )
    }

    /// The public room list: rooms with members now or recent activity, most
    /// members first, then most recently active (see [`Directory`]).
    pub fn room_list(&self) -> Arc<Snapshot> {
        self.state.lock().directory.snapshot(now_ms())
    }

    /// A message was stored in `room` at `ts`: it moves up the room list.
    pub fn room_active(&self, room: &str, ts: i64) {
        self.state.lock().directory.message(room, ts);
    }

    /// An administrator deleted `room`'s history: once empty, it leaves the list.
    pub fn history_cleared(&self, room: &str) {
        self.state.lock().directory.history_cleared(room);
    }

    /// `room` is unlisted from now on (`false`: its creation failed after all).
    pub fn room_unlisted(&self, room: &str, unlisted: bool) {
        let mut state = self.state.lock();
        if unlisted {
            state.directory.hide(room);
        } else {
            state.directory.forget(room);
        }
    }

    /// An administrator closed `room`: it leaves the room list until entered again.
    pub fn room_closed(&self, room: &str) {
        self.state.lock().directory.close(room);
    }

    /// Retention forgot these rooms.
    pub fn rooms_forgotten(&self, names: &[String]) {
        let mut state = self.state.lock();
        for name in names {
            state.directory.forget(name);
        }
    }
}

/// The media server's families of the Prometheus exposition.
fn render_sfu(out: &mut String, s: &crate::sfu::SfuStats) {
    let lines: [(&str, &str, &str, u64); 10] = [
        (
            "noom_sfu_participants",
            "gauge",
            "Media sessions open on the media server.",
            s.participants,
        ),
        (
            "noom_sfu_forwarded_total",
            "counter",
            "Media frames forwarded to subscribers.",
            s.forwarded,
        ),
        (
            "noom_sfu_unmatched_total",
            "counter",
            "Datagrams on the media port that no session accepted.",
            s.unmatched,
        ),
        (
            "noom_sfu_keyframe_requests_total",
            "counter",
            "Keyframe requests of subscribers passed on to publishers.",
            s.keyframe_requests,
        ),
        (
            "noom_sfu_offers_total",
            "counter",
            "Offers the media server sent to renegotiate a session.",
            s.offers,
        ),
        (
            "noom_sfu_forwarded_bytes_total",
            "counter",
            "Bytes of media forwarded to subscribers.",
            s.forwarded_bytes,
        ),
        (
            "noom_sfu_subscriptions",
            "gauge",
            "Tracks of others received, over every media session.",
            s.subscriptions,
        ),
        (
            "noom_sfu_layer_switches_total",
            "counter",
            "Simulcast layer switches made for subscribers.",
            s.layer_switches,
        ),
        (
            "noom_sfu_nacks_total",
            "counter",
            "Retransmission requests (NACK) from subscribers.",
            s.nacks,
        ),
        (
            "noom_sfu_audio_held_total",
            "counter",
            "Audio frames not forwarded: not among a large call's loudest speakers.",
            s.audio_held,
        ),
    ];
    for (name, kind, help, value) in lines {
        crate::metrics::write_metric(out, name, kind, help, &[(String::new(), value as f64)]);
    }
}

pub(super) fn gone() -> ApiError {
    ApiError::new(ErrorCode::Internal, "this connection is closing")
}

pub(super) fn not_in_room(room: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotInRoom,
        format!("not in room `{room}`; enter it first"),
    )
}

impl Hub {
    // ---- room passwords -------------------------------------------------------

    /// Lets `sid` into `room` when the room has no password, its session gave
    /// it before, or `password` is right (checked on the blocking pool,
    /// budgeted per address). A right password admits the session. Returns
    /// whether the room has a password.
    pub async fn room_access(
        &self,
        sid: Sid,
        room: &str,
        password: Option<&str>,
    ) -> Result<bool, ApiError> {
        let pending = self.creating.lock().get(room).cloned();
        let hash = match pending {
            Some(Some(hash)) => hash,
            // Its creator's password is still being hashed: nothing to check
            // against yet, and nobody gets in meanwhile.
            Some(None) => {
                return Err(ApiError::new(
                    ErrorCode::PasswordRequired,
                    format!("room `{room}` is being created with a password; retry in a moment"),
                ));
            }
            None => match self.store.room_password(room).await? {
                Some(hash) => hash,
                None => return Ok(false),
            },
        };
        let (session, addr) = self
            .state
            .lock()
            .conns
            .get(&sid)
            .map_or((None, None), |c| (Some(c.session), c.addr));
        if session.is_some_and(|key| self.admitted.lock().contains(&(key, room.to_string()))) {
            return Ok(true);
        }
        self.check_password(addr, room, &hash, password).await?;
        if let Some(key) = session {
            self.admit_to_room(key, room);
        }
        Ok(true)
    }

    /// Checks `password` against a room's `hash`, budgeted per address.
    pub async fn check_password(
        &self,
        addr: Option<IpAddr>,
        room: &str,
        hash: &str,
        password: Option<&str>,
    ) -> Result<(), ApiError> {
        let Some(password) = password else {
            return Err(ApiError::new(
                ErrorCode::PasswordRequired,
                format!("room `{room}` needs its password"),
            ));
        };
        // Clients of unknown address share one budget.
        let ip = addr.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if let Err(wait) = self.password_rate.try_take(&ip, std::time::Instant::now()) {
            Metrics::inc(&self.metrics.rate_limited);
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "too many password attempts from your network address; retry in {} s",
                    wait.as_secs().max(1)
                ),
            ));
        }
        let (hash, password) = (hash.to_string(), password.to_string());
        let right = tokio::task::spawn_blocking(move || crate::password::verify(&hash, &password))
            .await
            .unwrap_or(false);
        if right {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::WrongPassword,
                format!("wrong password for room `{room}`"),
            ))
        }
    }

    /// Starts giving `room`, which `sid` is about to create, a password:
    /// hashes it and, from then on, asks it of anyone else who enters, even
    /// before the room exists. `sid`'s session is admitted. Finish with
    /// [`Hub::protect_room`] once the room exists, or
    /// [`Hub::abandon_protection`] if the entry failed.
    pub async fn begin_protection(
        &self,
        sid: Sid,
        room: &str,
        password: &str,
    ) -> Result<(), ApiError> {
        {
            let mut creating = self.creating.lock();
            if creating.contains_key(room) {
                // Two entries creating the same room with a password at once.
                return Err(ApiError::new(
                    ErrorCode::PasswordRequired,
                    format!("room `{room}` is being created with another password"),
                ));
            }
            creating.insert(room.to_string(), None);
        }
        let password = password.to_string();
        let hash = tokio::task::spawn_blocking(move || crate::password::hash(&password))
            .await
            .map_err(|e| e.to_string())
            .and_then(|hashed| hashed.map_err(|e| e.to_string()));
        let hash = match hash {
            Ok(hash) => hash,
            Err(e) => {
                self.creating.lock().remove(room);
                return Err(ApiError::new(ErrorCode::Internal, e));
            }
        };
        self.creating.lock().insert(room.to_string(), Some(hash));
        if let Some(key) = self.state.lock().conns.get(&sid).map(|c| c.session) {
            self.admit_to_room(key, room);
        }
        Ok(())
    }

    /// Stores the password [`Hub::begin_protection`] hashed, now that the room exists.
    pub async fn protect_room(&self, room: &str) -> Result<(), ApiError> {
        let Some(Some(hash)) = self.creating.lock().get(room).cloned() else {
            return Ok(());
        };
        // Not stored (the disk is full, the database down): the room keeps
        // asking for it from memory, until a restart.
        self.store.set_room_password(room, &hash).await?;
        self.creating.lock().remove(room);
        Ok(())
    }

    /// The entry of `sid` that was creating `room` with a password failed,
    /// or found the room created by someone else meanwhile.
    pub fn abandon_protection(&self, sid: Sid, room: &str) {
        self.creating.lock().remove(room);
        if let Some(key) = self.state.lock().conns.get(&sid).map(|c| c.session) {
            self.admitted.lock().remove(&(key, room.to_string()));
        }
    }

    /// The media server's latest speakers in the call of `room` (kept
    /// while the room is live).
    pub fn set_speakers(&self, room: &str, speakers: Vec<String>) {
        if let Some(live) = self.state.lock().rooms.get_mut(room) {
            live.speakers = speakers;
        }
    }

    /// Who speaks in the call of `room` now, as the media server last said.
    pub fn speakers_of(&self, room: &str) -> Vec<String> {
        self.state
            .lock()
            .rooms
            .get(room)
            .map(|live| live.speakers.clone())
            .unwrap_or_default()
    }

    fn admit_to_room(&self, key: SessionKey, room: &str) {
        let mut admitted = self.admitted.lock();
        // Bounded: forgetting everyone only asks pages for the password again.
        if admitted.len() >= 100_000 {
            admitted.clear();
        }
        admitted.insert((key, room.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(n: u8) -> Sid {
        format!("AAAAAAAAAAAAAAA{}", (b'A' + n) as char)
            .parse()
            .expect("sid")
    }

    #[test]
    fn handed_out_messages_are_left_out_until_delivery_passes_them() {
        let mut h = HandedOut::default();
        let t = Instant::now();
        h.record("r", sid(1), 10, t);
        assert_eq!(h.holders("r", 9, t), [sid(1)]);
        assert_eq!(h.holders("r", 10, t), [sid(1)]);
        assert!(h.holders("r", 11, t).is_empty());
        assert!(h.holders("r", 10, t).is_empty(), "done with once passed");
    }

    #[test]
    fn handed_out_entries_are_bounded_without_any_delivery() {
        let mut h = HandedOut::default();
        let t = Instant::now();
        for i in 0..HANDED_PER_ROOM_MAX as u64 * 3 {
            h.record("busy", sid(1), i, t);
        }
        assert_eq!(h.len(), HANDED_PER_ROOM_MAX);
        // Rooms that never get a message: swept once they expire.
        for i in 0..HANDED_ROOMS_SWEEP {
            h.record(&format!("quiet-{i}"), sid(2), 1, t);
        }
        let later = t + HANDED_KEEP;
        h.record("new", sid(3), 1, later);
        assert_eq!(h.len(), 1);
    }
}
