//! What the admin page shows, gathered from the live hub, the store, the relay
//! and the metrics: one snapshot type per view, serialized as-is by the JSON
//! API and the live `/admin` namespace.

use std::str::FromStr;

use serde::Serialize;
use socketioxide::TransportType;
use socketioxide::socket::Sid;

use super::Admin;
use crate::relay::AllocationInfo;
use crate::signaling::hub::MemberDetail;
use crate::store::StoreError;

/// Most rooms listed in the overview (busiest first); the total is given too.
pub const ROOMS_SHOWN: usize = 500;

#[derive(Debug, Serialize)]
pub struct Overview {
    pub version: &'static str,
    /// This node's id (`cluster.node_id`, or generated at start).
    pub node: String,
    pub uptime_secs: u64,
    pub connections: Connections,
    pub rooms_total: usize,
    pub rooms: Vec<RoomRow>,
    pub relay: RelayView,
    pub metrics: Vec<Sample>,
    /// Every node of the cluster (alone: this one), by name.
    pub nodes: Vec<NodeRow>,
}

/// One node and its health.
#[derive(Debug, Serialize)]
pub struct NodeRow {
    pub node: String,
    /// The node this page is served by.
    pub this: bool,
    /// `ok`, `degraded` (its `/healthz` fails) or `silent` (its liveness
    /// key expired: it is about to be dropped).
    pub status: String,
    /// What its `/healthz` says, with `connections` and `uptime_secs`.
    pub health: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct Connections {
    pub websocket: u64,
    pub polling: u64,
    pub total: u64,
    /// Admin pages connected for live updates.
    pub admin: u64,
}

#[derive(Debug, Serialize)]
pub struct RoomRow {
    pub name: String,
    pub members: usize,
    pub in_call: usize,
    pub messages: u64,
    pub last_seq: u64,
    /// ms since the Unix epoch.
    pub last_activity: i64,
}

#[derive(Debug, Serialize)]
pub struct RelayView {
    /// disabled, starting, ok or failing
    pub status: &'static str,
    pub detail: Option<String>,
    pub allocations: Vec<AllocationInfo>,
}

/// One line of the `/metrics` exposition: name with labels, and value.
#[derive(Debug, Serialize)]
pub struct Sample {
    pub name: String,
    pub value: f64,
}

#[derive(Debug, Serialize)]
pub struct RoomDetail {
    pub name: String,
    pub members: Vec<MemberRow>,
    pub in_call: usize,
    pub messages: u64,
    pub last_seq: u64,
    pub last_activity: i64,
    /// The host's user id, the lock and the lobby.
    #[serde(flatten)]
    pub settings: crate::signaling::hub::RoomSettings,
    /// Connections waiting in the lobby.
    pub waiting: Vec<crate::signaling::protocol::Member>,
}

#[derive(Debug, Serialize)]
pub struct MemberRow {
    #[serde(flatten)]
    pub member: MemberDetail,
    /// websocket or polling
    pub transport: &'static str,
    /// Its session with the media server, when its call goes through it.
    pub media: Option<MediaRow>,
}

/// A participant's session with the media server.
#[derive(Debug, Serialize)]
pub struct MediaRow {
    /// `udp` straight from the client, or `turn-udp`/`turn-tcp`/`turn-tls`
    /// through this server's relay; `connecting` before any media.
    pub transport: String,
    /// Where its media comes from (the relay's address when relayed).
    pub remote: Option<String>,
    /// What it publishes and receives, bits per second (last second).
    pub bitrate_in: u64,
    pub bitrate_out: u64,
    /// What its link seems to carry (from the loss it reports), when limited.
    pub estimate: Option<u64>,
    /// Per participant whose video it receives: the layer sent (q, h, f;
    /// none before the first keyframe or for unlayered video).
    pub layers: Vec<LayerRow>,
}

#[derive(Debug, Serialize)]
pub struct LayerRow {
    /// The publisher's socket id.
    pub from: String,
    pub layer: Option<&'static str>,
}

fn transport_name(t: TransportType) -> &'static str {
    match t {
        TransportType::Websocket => "websocket",
        TransportType::Polling => "polling",
    }
}

impl Admin {
    /// The whole overview. May count a room's messages the first time it is
    /// shown (a range scan, which the store runs off the async threads).
    pub async fn overview(&self) -> Result<Overview, StoreError> {
        let hub = &self.hub;
        let (websocket, polling) = crate::signaling::connections_by_transport(&self.io);
        let admin = self.io.of("/admin").map_or(0, |ns| ns.sockets().len()) as u64;
        let live = hub.live_room_counts();
        let mut rooms: Vec<RoomRow> = Vec::new();
        let mut all = hub.store.rooms().await?;
        all.retain(|m| !m.closed() || live.contains_key(&m.name));
        let rooms_total = all.len();
        all.sort_by(|a, b| {
            let members = |name: &str| live.get(name).map_or(0, |c| c.members);
            members(&b.name)
                .cmp(&members(&a.name))
                .then(b.last_activity.cmp(&a.last_activity))
                .then(a.name.cmp(&b.name))
        });
        for meta in all.into_iter().take(ROOMS_SHOWN) {
            let counts = live.get(&meta.name).copied().unwrap_or_default();
            rooms.push(RoomRow {
                messages: hub.store.stored_messages(&meta.name).await?,
                name: meta.name,
                members: counts.members,
                in_call: counts.in_call,
                last_seq: meta.last_seq,
                last_activity: meta.last_activity,
            });
        }
        Ok(Overview {
            version: crate::VERSION,
            node: hub.config.cluster.node_id.clone(),
            uptime_secs: self.started.elapsed().as_secs(),
            connections: Connections {
                websocket,
                polling,
                total: websocket + polling,
                admin,
            },
            rooms_total,
            rooms,
            relay: self.relay_view(),
            metrics: self.metrics().await,
            nodes: self.nodes().await,
        })
    }

    /// Every node's health: this one's now, the others' as they last said
    /// (each renews it every second, with its liveness key).
    pub async fn nodes(&self) -> Vec<NodeRow> {
        let hub = &self.hub;
        let (up, mut own) = hub.health(self.cert.as_deref()).await;
        let (websocket, polling) = crate::signaling::connections_by_transport(&self.io);
        own["connections"] = serde_json::json!(websocket + polling);
        own["uptime_secs"] = serde_json::json!(self.started.elapsed().as_secs());
        let me = hub.config.cluster.node_id.clone();
        let mut rows = vec![NodeRow {
            node: me.clone(),
            this: true,
            status: if up { "ok" } else { "degraded" }.into(),
            health: Some(own),
        }];
        // Redis unavailable: this node's own row only (its health says why).
        if let Ok(others) = hub.roster.nodes().await {
            for other in others.into_iter().filter(|n| n.node != me) {
                let status = match &other.health {
                    None => "silent",
                    Some(h) if h["status"] == "ok" => "ok",
                    Some(_) => "degraded",
                };
                rows.push(NodeRow {
                    node: other.node,
                    this: false,
                    status: status.into(),
                    health: other.health,
                });
            }
        }
        rows.sort_by(|a, b| a.node.cmp(&b.node));
        rows
    }

    pub fn relay_view(&self) -> RelayView {
        let hub = &self.hub;
        let (status, detail) = match (&hub.relay, &hub.relay_error) {
            (None, Some(e)) => ("failing", Some(e.clone())),
            (None, None) => ("disabled", None),
            (Some(r), _) => match r.last_self_test() {
                None => ("starting", None),
                Some(t) if t.ok => ("ok", None),
                Some(t) => ("failing", Some(t.detail)),
            },
        };
        let mut allocations = hub
            .relay
            .as_ref()
            .map(|r| r.allocations())
            .unwrap_or_default();
        allocations.sort_by_key(|a| std::cmp::Reverse(a.age_secs));
        RelayView {
            status,
            detail,
            allocations,
        }
    }

    /// Every sample `/metrics` exports, parsed back from its text.
    pub async fn metrics(&self) -> Vec<Sample> {
        self.hub
            .exposition(
                &self.io,
                self.cert.as_deref().and_then(|c| c.expires_in_secs()),
            )
            .await
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                Some(Sample {
                    name: name.to_string(),
                    value: value.parse().ok()?,
                })
            })
            .collect()
    }

    /// The media server's sessions in the call of `room`, by socket id.
    async fn media_sessions(&self, room: &str) -> std::collections::HashMap<String, MediaRow> {
        let Some(sfu) = &self.hub.sfu else {
            return Default::default();
        };
        let Ok(reports) = sfu.report().await else {
            return Default::default();
        };
        let relayed: Vec<AllocationInfo> = self
            .hub
            .relay
            .as_ref()
            .map(|r| r.allocations())
            .unwrap_or_default();
        let suffix = format!(":{room}");
        reports
            .into_iter()
            .filter_map(|r| {
                let sid = r.key.strip_suffix(&suffix)?.to_string();
                let remote = r.remote.map(|a| a.to_string());
                let transport = match &remote {
                    None => "connecting".to_string(),
                    Some(addr) => relayed
                        .iter()
                        .find(|a| &a.relayed == addr)
                        .map_or("udp".to_string(), |a| format!("turn-{}", a.transport)),
                };
                let layers = r
                    .layers
                    .into_iter()
                    .map(|(from, layer)| LayerRow { from, layer })
                    .collect();
                Some((
                    sid,
                    MediaRow {
                        transport,
                        remote,
                        bitrate_in: r.bitrate_in,
                        bitrate_out: r.bitrate_out,
                        estimate: r.estimate,
                        layers,
                    },
                ))
            })
            .collect()
    }

    /// A room's members and counters; `None` for a room that does not exist
    /// (or was closed and nobody is in it).
    pub async fn room_detail(&self, room: &str) -> Result<Option<RoomDetail>, StoreError> {
        let hub = &self.hub;
        let Some(meta) = hub.store.room(room).await else {
            return Ok(None);
        };
        let members = hub.room_members(room);
        if meta.closed() && members.is_empty() {
            return Ok(None);
        }
        let in_call = members.iter().filter(|m| m.in_call).count();
        let mut sessions = self.media_sessions(room).await;
        let members = members
            .into_iter()
            .map(|member| {
                let transport = match Sid::from_str(&member.id)
                    .ok()
                    .and_then(|sid| self.io.get_socket(sid))
                {
                    Some(s) => transport_name(s.transport_type()),
                    // Another node's (its own admin page knows how).
                    None if member.node != hub.roster.node() => "other node",
                    None => "gone",
                };
                let media = sessions.remove(&member.id);
                MemberRow {
                    member,
                    transport,
                    media,
                }
            })
            .collect();
        Ok(Some(RoomDetail {
            name: meta.name.clone(),
            members,
            in_call,
            messages: hub.store.stored_messages(room).await?,
            last_seq: meta.last_seq,
            last_activity: meta.last_activity,
            settings: crate::signaling::hub::RoomSettings::from(
                &hub.store.room_moderation(room).await?,
            ),
            waiting: hub.lobby_of(room),
        }))
    }
}
