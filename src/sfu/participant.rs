//! One participant's media session: its str0m `Rtc`, the tracks it
//! publishes, and the tracks of others it receives.
//!
//! A published track is owned here (`Arc<TrackIn>`); the other participants
//! of the call hold weak references, so when a publisher goes, its tracks
//! stop everywhere at the next negotiation. Tracks to receive are added with
//! offers from the server ([`Participant::negotiate`]), sent through
//! signaling; the browser answers through signaling too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{
    Direction, KeyframeRequest, KeyframeRequestKind, MediaData, MediaKind, Mid, Rid,
};
use str0m::{Event, IceConnectionState, Output, Rtc};

use super::estimate::LossEstimate;
use super::layers::{self, LayerMeter, Layers, Selection, Verdict, Want};
use super::stale::Staleness;

/// Tile sizes kept per participant (a call holds at most 50 others through
/// the media server).
const VIEWS_KEPT: usize = 100;
/// Keyframe requests to one layer of a publisher's track, at most one this often.
const KEYFRAME_EVERY: Duration = Duration::from_millis(500);

/// A track a participant publishes.
#[derive(Debug)]
pub struct TrackIn {
    pub origin: u64,
    /// The stream id subscribers see: who the track comes from. It changes
    /// when its publisher's page reconnects and takes its session along
    /// ([`Participant::rename`]).
    label: RwLock<String>,
    /// A shared screen (its label is the publisher's plus [`SCREEN_SUFFIX`]).
    screen: bool,
    pub mid: Mid,
    pub kind: MediaKind,
}

impl TrackIn {
    /// The stream id subscribers see now.
    pub fn label(&self) -> String {
        self.label.read().clone()
    }
}

#[derive(Debug)]
struct TrackInEntry {
    track: Arc<TrackIn>,
    /// Offered to the others. A screen track is offered with its first
    /// packet: most participants never share, and every m-line costs every
    /// subscriber's offer and answer.
    announced: bool,
    /// Per rid (simulcast layers have one each).
    last_keyframe_request: Vec<(Option<Rid>, Instant)>,
    meter: LayerMeter,
}

/// Where a track of someone else stands in this participant's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutState {
    /// To be added with the next offer.
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
    /// Its publisher left: to be stopped with the next offer.
    ToStop(Mid),
    NegotiatingStop(Mid),
}

#[derive(Debug)]
struct TrackOut {
    track: Weak<TrackIn>,
    /// The track's publisher and its mid there (matched per frame without
    /// touching the `Weak`).
    origin: u64,
    source: Option<Mid>,
    state: OutState,
    /// The simulcast layer sent (unused for unlayered tracks).
    selection: Selection,
    /// A frame of it was sent (the first one is logged: join timing).
    started: bool,
    /// A video track (from its publisher's track).
    video: bool,
    /// Nothing was sent while the subscriber was away: the next frame sent
    /// must be a keyframe (see [`SILENCE`]).
    wants_keyframe: bool,
}

impl TrackOut {
    fn mid(&self) -> Option<Mid> {
        match self.state {
            OutState::ToOpen => None,
            OutState::Negotiating(m)
            | OutState::Open(m)
            | OutState::ToStop(m)
            | OutState::NegotiatingStop(m) => Some(m),
        }
    }
}

/// What one participant's output means for the others.
pub enum Propagated {
    /// It publishes a new track.
    TrackOpen(Weak<TrackIn>),
    /// Media of one of its tracks.
    Media(Box<MediaData>),
    /// Its ICE and DTLS came up: media written to it before was lost, so
    /// the tracks it receives need a keyframe each.
    Connected,
    /// Its ICE came back after a restart, or it was heard again after a
    /// silence: what it sends and what it receives start again on keyframes.
    Back,
    /// It asks the publisher of a track it receives for a keyframe (of the
    /// layer it gets).
    Keyframe {
        request: KeyframeRequest,
        origin: u64,
        mid: Mid,
    },
}

/// What [`Participant::forward`] did with a frame.
#[derive(Debug, Default)]
pub struct Forwarded {
    /// Bytes written (0: not sent to this participant).
    pub bytes: usize,
    /// The layer (of the frame's track) to ask its publisher a keyframe of.
    pub ask_keyframe: Option<usize>,
}

/// One participant as the admin room view shows it.
#[derive(Debug, Clone)]
pub struct Report {
    pub key: String,
    /// Where its media comes from (UDP), once it sent any.
    pub remote: Option<SocketAddr>,
    /// What it publishes and receives, bits per second.
    pub bitrate_in: u64,
    pub bitrate_out: u64,
    /// Its link estimate (from the loss it reports), once loss limited it.
    pub estimate: Option<u64>,
    /// Per video track received: whose (their label) and the layer sent.
    pub layers: Vec<(String, Option<&'static str>)>,
}

/// Bytes over a one-second window, as bits per second.
#[derive(Debug)]
struct Rate {
    bytes: u64,
    since: Instant,
    bitrate: u64,
}

impl Rate {
    fn new(now: Instant) -> Self {
        Rate {
            bytes: 0,
            since: now,
            bitrate: 0,
        }
    }

    fn add(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
    }

    /// Closes the window when it is over; true when it was.
    fn tick(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed < Duration::from_secs(1) {
            return false;
        }
        self.bitrate = (self.bytes as f64 * 8.0 / elapsed.as_secs_f64()) as u64;
        self.bytes = 0;
        self.since = now;
        true
    }
}

/// What the browser last reported of one track it receives from us.
#[derive(Debug, Default, Clone, Copy)]
struct Egress {
    packets: u64,
    /// `packets` at the last estimate update.
    packets_before: u64,
    loss: Option<f32>,
    nacks: u64,
}

pub struct Participant {
    /// Unique for the life of the loop (tracks name their origin by it).
    pub id: u64,
    /// The key signaling knows it by.
    pub key: String,
    /// The stream id of its tracks as the others see them.
    pub label: String,
    /// Shared with its tracks' forwarding, which compares it per frame.
    pub call: Arc<str>,
    pub rtc: Rtc,
    pending: Option<SdpPendingOffer>,
    tracks_in: Vec<TrackInEntry>,
    tracks_out: Vec<TrackOut>,
    /// The tile heights its page shows, per publisher label.
    views: HashMap<String, u32>,
    /// The layers are to be chosen again (a view or the estimate changed).
    pub reselect: bool,
    /// Its bandwidth estimate (bits per second, from the loss it reports).
    loss: LossEstimate,
    egress: HashMap<Mid, Egress>,
    pub remote: Option<SocketAddr>,
    /// It had input, or output was written to it: the loop polls it.
    pub dirty: bool,
    /// When its `Rtc` wants time to move next.
    pub next_timeout: Instant,
    /// Tracks came or went: an offer may be due.
    pub needs_offer: bool,
    rate_in: Rate,
    rate_out: Rate,
    /// The mid of the m-line its page shares its screen on, if any.
    pub screen: Option<Mid>,
    /// Its ICE and DTLS are up.
    connected: bool,
    /// Its page restarted ICE (an offer with new credentials): keyframes
    /// both ways once ICE is back.
    ice_restarted: bool,
    /// The ICE username fragment of its page's last offer.
    remote_ufrag: Option<String>,
    /// When a datagram of it last arrived.
    last_heard: Instant,
    /// It was silent a while (a link that went down) and is heard again.
    returned: bool,
    /// Which of its video frames come seconds late (a backlog after its
    /// link returned): those are dropped, not forwarded, until this time
    /// (set when it comes back from an outage, see `STALE_WATCH`).
    staleness: Staleness,
    stale_until: Option<Instant>,
    /// Frames dropped as stale.
    stale_dropped: u64,
}

/// After it comes back from an outage (a silence, an ICE restart), its
/// video frames that arrive seconds late are dropped for this long: the
/// backlog its browser queued meanwhile comes first (see `stale`). At other
/// times late frames are forwarded: a page merely starved of CPU would
/// otherwise freeze until a keyframe.
const STALE_WATCH: Duration = Duration::from_secs(5);

/// A participant silent this long is away (its link is down): it gets no
/// video meanwhile, and when its datagrams arrive again, media was lost on
/// the way both ways (a browser sends audio 50 times a second, and RTCP and
/// ICE checks besides). Not shorter: a page starved of CPU on a busy
/// machine can pause for most of a second, and each return costs
/// keyframes of every layer it sends and receives.
const SILENCE: Duration = Duration::from_millis(1500);

/// What a screen track's stream id adds to its publisher's label.
pub const SCREEN_SUFFIX: &str = ".screen";

impl Participant {
    pub fn new(id: u64, key: String, label: String, call: Arc<str>, rtc: Rtc) -> Self {
        Participant {
            id,
            key,
            label,
            call,
            rtc,
            pending: None,
            tracks_in: Vec::new(),
            tracks_out: Vec::new(),
            views: HashMap::new(),
            reselect: false,
            loss: LossEstimate::default(),
            egress: HashMap::new(),
            remote: None,
            dirty: true,
            next_timeout: Instant::now(),
            needs_offer: true,
            rate_in: Rate::new(Instant::now()),
            rate_out: Rate::new(Instant::now()),
            screen: None,
            connected: false,
            ice_restarted: false,
            remote_ufrag: None,
            last_heard: Instant::now(),
            staleness: Staleness::new(Instant::now()),
            stale_until: None,
            stale_dropped: 0,
            returned: false,
        }
    }

    /// The ICE username fragment its page joined with (a later offer with
    /// another one restarts ICE).
    pub fn set_remote_ufrag(&mut self, ufrag: Option<String>) {
        self.remote_ufrag = ufrag;
    }

    /// A datagram of it arrived at `now` (the time the loop read it: no
    /// second clock read per packet).
    pub fn heard(&mut self, now: Instant) {
        if self.connected && now.saturating_duration_since(self.last_heard) >= SILENCE {
            tracing::debug!(participant = %self.key, "heard again after a silence");
            self.returned = true;
            self.stale_until = Some(now + STALE_WATCH);
        }
        self.last_heard = now;
    }

    /// Whether it came back from a silence since last asked.
    pub fn take_return(&mut self) -> bool {
        std::mem::take(&mut self.returned)
    }

    /// The stream id of a track of the participant labelled `label`.
    fn label_of(label: &str, screen: bool) -> String {
        if screen {
            format!("{label}{SCREEN_SUFFIX}")
        } else {
            label.to_string()
        }
    }

    /// Its page reconnected (a new socket id) and kept this session: it is
    /// known by `key` now, and the others see its tracks come from `label`
    /// (tracks they already receive keep the stream id they were offered
    /// with; their pages re-key the member themselves).
    pub fn rename(&mut self, key: String, label: String) {
        for entry in &self.tracks_in {
            *entry.track.label.write() = Self::label_of(&label, entry.track.screen);
        }
        self.key = key;
        self.label = label;
    }

    /// The layers of its track `mid` as they arrive now.
    pub fn layers_of(&self, mid: Mid) -> Option<Layers> {
        self.tracks_in
            .iter()
            .find(|t| t.track.mid == mid)
            .map(|t| t.meter.layers())
    }

    /// The kind of its track `mid`.
    pub fn kind_of(&self, mid: Mid) -> Option<MediaKind> {
        self.tracks_in
            .iter()
            .find(|t| t.track.mid == mid)
            .map(|t| t.track.kind)
    }

    /// Every track it publishes with its layers (for the others' choice).
    pub fn all_layers(&self) -> impl Iterator<Item = ((u64, Mid), Layers)> + '_ {
        self.tracks_in
            .iter()
            .map(|t| ((t.track.origin, t.track.mid), t.meter.layers()))
    }

    /// Closes the measuring windows; true when a publisher's layers were
    /// measured anew (subscribers choose again).
    pub fn tick(&mut self, now: Instant) -> bool {
        self.rate_in.tick(now);
        if self.rate_out.tick(now) {
            self.update_estimate(now);
        }
        let mut measured = false;
        for t in &mut self.tracks_in {
            measured |= t.meter.tick(now);
        }
        measured
    }

    /// Feeds the loss its browser reported over the last second into its
    /// estimate (weighted by the packets of each track).
    fn update_estimate(&mut self, now: Instant) {
        let (mut lost, mut sent) = (0.0f64, 0u64);
        for e in self.egress.values_mut() {
            let packets = e.packets.saturating_sub(e.packets_before);
            e.packets_before = e.packets;
            if let Some(loss) = e.loss {
                lost += f64::from(loss) * packets as f64;
                sent += packets;
            }
        }
        if sent == 0 {
            return;
        }
        let loss = (lost / sent as f64) as f32;
        tracing::debug!(participant = %self.key, sent = self.rate_out.bitrate, loss, estimate = ?self.loss.get(), "estimate");
        if self.loss.update(self.rate_out.bitrate, loss, now) {
            self.reselect = true;
        }
    }

    /// Retransmission requests its browser sent us (a metric).
    pub fn nacks(&self) -> u64 {
        self.egress.values().map(|e| e.nacks).sum()
    }

    /// The page shows `label`'s video at most this tall (device pixels; 0:
    /// not at all).
    pub fn set_view(&mut self, label: String, height: u32) {
        // Bounded: past VIEWS_KEPT, sizes of nobody it receives are dropped
        // (a page naming made-up participants cannot grow the map).
        if self.views.len() >= VIEWS_KEPT && !self.views.contains_key(&label) {
            let receiving: Vec<String> = self
                .tracks_out
                .iter()
                .filter_map(|t| t.track.upgrade().map(|x| x.label()))
                .collect();
            self.views.retain(|l, _| receiving.contains(l));
            if self.views.len() >= VIEWS_KEPT {
                return;
            }
        }
        self.views.insert(label, height);
        self.reselect = true;
    }

    /// Chooses the layer of every simulcast track it receives, from its
    /// views, the publishers' layers and its bandwidth estimate. Returns the
    /// keyframes to ask for: (publisher, its track, layer).
    pub fn select(
        &mut self,
        layers: &HashMap<(u64, Mid), Layers>,
        now: Instant,
    ) -> Vec<(u64, Mid, usize)> {
        self.reselect = false;
        let mut wants = Vec::new();
        let mut which = Vec::new();
        for (i, t) in self.tracks_out.iter_mut().enumerate() {
            let Some(track) = t.track.upgrade() else {
                continue;
            };
            let Some(l) = layers.get(&(track.origin, track.mid)) else {
                continue;
            };
            if track.kind != MediaKind::Video || !l.iter().any(|x| x.active) {
                continue;
            }
            let want_height = self
                .views
                .get(&track.label())
                .copied()
                .unwrap_or(layers::DEFAULT_HEIGHT);
            t.selection.want_height = want_height;
            wants.push(Want {
                layers: *l,
                want_height,
            });
            which.push((i, track.origin, track.mid));
        }
        // Audio goes first out of the estimate (about 40 kbit/s a stream).
        let audio = self
            .tracks_out
            .iter()
            .filter(|t| {
                t.track
                    .upgrade()
                    .is_some_and(|x| x.kind == MediaKind::Audio)
            })
            .count() as u64
            * 40_000;
        let budget = self.loss.get().map(|e| e.saturating_sub(audio));
        let (picks, _) = layers::choose(&wants, budget);
        tracing::debug!(participant = %self.key, ?wants, ?budget, ?picks, "layers chosen");
        let mut asks = Vec::new();
        for ((i, origin, mid), pick) in which.into_iter().zip(picks) {
            if let Some(layer) = pick
                && self.tracks_out[i].selection.retarget(layer, now)
            {
                asks.push((origin, mid, layer));
            }
        }
        asks
    }

    /// What the admin room view shows of it.
    pub fn report(&self) -> Report {
        let layers = self
            .tracks_out
            .iter()
            .filter_map(|t| {
                let track = t.track.upgrade()?;
                (track.kind == MediaKind::Video && matches!(t.state, OutState::Open(_)))
                    .then(|| (track.label(), t.selection.current.map(|l| layers::RIDS[l])))
            })
            .collect();
        Report {
            key: self.key.clone(),
            remote: self.remote,
            bitrate_in: self.rate_in.bitrate,
            bitrate_out: self.rate_out.bitrate,
            estimate: self.loss.get(),
            layers,
        }
    }

    /// The video tracks it receives now: (publisher, its mid, layer wanted).
    pub fn open_video(&self) -> Vec<(u64, Mid, usize)> {
        self.tracks_out
            .iter()
            .filter(|t| matches!(t.state, OutState::Open(_)))
            .filter_map(|t| {
                let track = t.track.upgrade()?;
                (track.kind == MediaKind::Video).then_some((
                    t.origin,
                    track.mid,
                    t.selection.target,
                ))
            })
            .collect()
    }

    /// Asks its page for a keyframe of every video track it publishes (of
    /// each simulcast layer).
    pub fn refresh_published(&mut self) {
        let mids: Vec<Mid> = self
            .tracks_in
            .iter()
            .filter(|t| t.track.kind == MediaKind::Video)
            .map(|t| t.track.mid)
            .collect();
        for mid in mids {
            let simulcast = self
                .layers_of(mid)
                .is_some_and(|l| l.iter().any(|x| x.active));
            if simulcast {
                for layer in 0..layers::LAYERS {
                    self.request_keyframe(
                        mid,
                        Some(layers::rid_of(layer)),
                        KeyframeRequestKind::Pli,
                    );
                }
            } else {
                self.request_keyframe(mid, None, KeyframeRequestKind::Pli);
            }
        }
    }

    /// Layer switches made for it so far.
    pub fn switches(&self) -> u64 {
        self.tracks_out.iter().map(|t| t.selection.switches).sum()
    }

    /// Tracks of others it receives now.
    pub fn subscriptions(&self) -> usize {
        self.tracks_out
            .iter()
            .filter(|t| matches!(t.state, OutState::Open(_)))
            .count()
    }

    /// The tracks it publishes, for a newcomer to receive.
    pub fn published(&self) -> impl Iterator<Item = Weak<TrackIn>> + '_ {
        self.tracks_in
            .iter()
            .filter(|t| t.announced)
            .map(|t| Arc::downgrade(&t.track))
    }

    /// Handles one event of its `Rtc`; returns what the others of the call
    /// must learn from it, if anything.
    pub fn on_event(&mut self, event: Event) -> Option<Propagated> {
        match event {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.rtc.disconnect();
                None
            }
            // ICE back after a restart (its page moved to another network):
            // what was lost on the way is started again on keyframes.
            Event::IceConnectionStateChange(
                IceConnectionState::Completed | IceConnectionState::Connected,
            ) if self.connected && std::mem::take(&mut self.ice_restarted) => {
                tracing::debug!(participant = %self.key, "ICE restarted");
                self.stale_until = Some(Instant::now() + STALE_WATCH);
                Some(Propagated::Back)
            }
            Event::Connected => {
                self.connected = true;
                tracing::debug!(participant = %self.key, "connected (ICE and DTLS)");
                Some(Propagated::Connected)
            }
            Event::MediaAdded(added) => {
                // Only what the browser sends is a track of its own.
                if !matches!(added.direction, Direction::RecvOnly | Direction::SendRecv) {
                    return None;
                }
                let screen = added.kind == MediaKind::Video && self.screen == Some(added.mid);
                let track = Arc::new(TrackIn {
                    origin: self.id,
                    label: RwLock::new(Self::label_of(&self.label, screen)),
                    screen,
                    mid: added.mid,
                    kind: added.kind,
                });
                let weak = Arc::downgrade(&track);
                self.tracks_in.push(TrackInEntry {
                    track,
                    announced: !screen,
                    last_keyframe_request: Vec::new(),
                    meter: LayerMeter::new(Instant::now()),
                });
                (!screen).then_some(Propagated::TrackOpen(weak))
            }
            Event::MediaData(data) => {
                self.rate_in.add(data.data.len());
                // A screen shared for the first time: the others get its
                // track now (this frame cannot reach them before they
                // answer; they ask for a keyframe once they have).
                if let Some(entry) = self
                    .tracks_in
                    .iter_mut()
                    .find(|t| !t.announced && t.track.mid == data.mid)
                {
                    entry.announced = true;
                    tracing::debug!(participant = %self.key, mid = ?data.mid, "screen shared");
                    return Some(Propagated::TrackOpen(Arc::downgrade(&entry.track)));
                }
                let video = self.kind_of(data.mid) == Some(MediaKind::Video);
                // Seconds late (see `stale`) while it comes back from an
                // outage: dropped; the subscribers need a keyframe after the
                // gap. (The reference follows every frame.)
                let back = self.stale_until.and_then(|t| t.checked_sub(STALE_WATCH));
                let stale = video
                    && self.staleness.is_stale(
                        data.mid,
                        data.rid,
                        data.time,
                        data.network_time,
                        back,
                    );
                if stale && self.stale_until.is_some_and(|t| data.network_time < t) {
                    self.stale_dropped += 1;
                    if self.stale_dropped.is_power_of_two() {
                        tracing::debug!(participant = %self.key, mid = ?data.mid, rid = ?data.rid, dropped = self.stale_dropped, "stale video frames dropped");
                    }
                    self.request_keyframe(data.mid, data.rid, KeyframeRequestKind::Pli);
                    return None;
                }
                // A gap in video: the decoders downstream need a keyframe.
                if !data.contiguous && video {
                    self.request_keyframe(data.mid, data.rid, KeyframeRequestKind::Fir);
                }
                if let Some(layer) = layers::layer_of(data.rid)
                    && let Some(entry) = self.tracks_in.iter_mut().find(|t| t.track.mid == data.mid)
                {
                    entry.meter.on_frame(layer, &data, data.network_time);
                }
                Some(Propagated::Media(Box::new(data)))
            }
            Event::KeyframeRequest(mut request) => {
                let out = self
                    .tracks_out
                    .iter()
                    .find(|t| t.mid() == Some(request.mid))?;
                let track = out.track.upgrade()?;
                // Of the layer this subscriber gets (none for unlayered tracks).
                request.rid = out.selection.current.map(layers::rid_of);
                Some(Propagated::Keyframe {
                    request,
                    origin: track.origin,
                    mid: track.mid,
                })
            }
            Event::MediaEgressStats(stats) => {
                let e = self.egress.entry(stats.mid).or_default();
                e.packets = stats.packets;
                e.nacks = stats.nacks;
                if stats.loss.is_some() {
                    e.loss = stats.loss;
                }
                None
            }
            _ => None,
        }
    }

    /// Asks the browser for a keyframe of its track `mid` (layer `rid`), at
    /// most once a second per layer.
    pub fn request_keyframe(&mut self, mid: Mid, rid: Option<Rid>, kind: KeyframeRequestKind) {
        let Some(entry) = self.tracks_in.iter_mut().find(|t| t.track.mid == mid) else {
            return;
        };
        let now = Instant::now();
        if entry
            .last_keyframe_request
            .iter()
            .any(|(r, t)| *r == rid && now.saturating_duration_since(*t) < KEYFRAME_EVERY)
        {
            return;
        }
        if let Some(mut writer) = self.rtc.writer(mid) {
            // Fails only when the track has no stream yet; the next try will do.
            let result = writer.request_keyframe(rid, kind);
            tracing::debug!(participant = %self.key, ?mid, ?rid, ?result, "keyframe request");
            if result.is_ok() {
                entry.last_keyframe_request.retain(|(r, _)| *r != rid);
                entry.last_keyframe_request.push((rid, now));
            }
        }
    }

    /// Someone else of the call publishes `track`: it is added at the next offer.
    pub fn receive(&mut self, track: Weak<TrackIn>) {
        self.receive_on(track, None);
    }

    /// Like [`Participant::receive`], on an m-line its own offer already
    /// opened for receiving (`mid`): no offer is needed for it.
    pub fn receive_on(&mut self, track: Weak<TrackIn>, slot: Option<Mid>) {
        let (origin, source, video) = track.upgrade().map_or((0, None, false), |t| {
            (t.origin, Some(t.mid), t.kind == MediaKind::Video)
        });
        self.tracks_out.push(TrackOut {
            track,
            origin,
            source,
            state: slot.map_or(OutState::ToOpen, OutState::Open),
            selection: Selection::default(),
            started: false,
            video,
            wants_keyframe: false,
        });
        self.reselect = true;
        self.needs_offer = true;
    }

    /// Writes media of `origin` to the matching track, if this participant
    /// receives it (and, for a simulcast track, it is of the layer chosen
    /// for it). The payload is shared, not copied (`MediaData::data` is an
    /// `Arc`).
    pub fn forward(&mut self, origin: u64, data: &MediaData, now: Instant) -> Forwarded {
        let mut done = Forwarded::default();
        // Before ICE and DTLS are up, media would only pile up in the
        // session (and be stale when it connects: each track asks for a
        // keyframe then).
        if !self.connected {
            return done;
        }
        let Some(out) = self
            .tracks_out
            .iter_mut()
            .find(|o| o.origin == origin && o.source == Some(data.mid))
        else {
            return done;
        };
        let OutState::Open(mid) = out.state else {
            return done;
        };
        // Away (silent since SILENCE: its link is down): no video into the
        // dead path. What was written there would go on numbering its
        // packets, and back, its browser would ask for all it missed
        // (measured: a burst of 350 KB of resends a second after a 5 s link
        // drop, before the first new picture). Back, each video track
        // starts again on a keyframe (asked for when it was heard again).
        if out.video && now.saturating_duration_since(self.last_heard) >= SILENCE {
            if !out.wants_keyframe {
                out.wants_keyframe = true;
                out.selection.pause();
            }
            return done;
        }
        if out.wants_keyframe && data.rid.is_none() {
            if !data.is_keyframe() {
                return done;
            }
            out.wants_keyframe = false;
        }
        let time = match (data.rid, layers::layer_of(data.rid)) {
            (None, _) => data.time,
            // A rid of a client that is not ours: not forwarded.
            (Some(_), None) => return done,
            (Some(_), Some(layer)) => {
                match out
                    .selection
                    .on_frame(layer, data.is_keyframe(), data.time, now)
                {
                    Verdict::Forward(time) => {
                        if out.selection.switched_now {
                            tracing::debug!(participant = %self.key, layer, ?time, "layer switch");
                        }
                        time
                    }
                    Verdict::Drop => return done,
                    Verdict::AskKeyframe(layer) => {
                        done.ask_keyframe = Some(layer);
                        return done;
                    }
                }
            }
        };
        let Some(writer) = self.rtc.writer(mid) else {
            return done;
        };
        let Some(pt) = writer.match_params(data.params) else {
            return done;
        };
        if let Err(e) = writer.write(pt, data.network_time, time, data.data.clone()) {
            tracing::debug!(participant = %self.key, error = %e, "media session failed");
            self.rtc.disconnect();
            return done;
        }
        done.bytes = data.data.len();
        self.rate_out.add(done.bytes);
        if !out.started {
            out.started = true;
            tracing::debug!(participant = %self.key, origin, ?mid, keyframe = data.is_keyframe(), "first frame sent");
        }
        done
    }

    /// Relays a keyframe request to this participant's own track `mid`.
    pub fn keyframe_requested(&mut self, request: &KeyframeRequest, mid: Mid) {
        self.request_keyframe(mid, request.rid, request.kind);
    }

    /// An offer for the tracks to add or stop, when there are any and no
    /// other offer is out.
    pub fn negotiate(&mut self) -> Option<SdpOffer> {
        // Not waiting for ICE and DTLS: the offer's round trip overlaps
        // them (the page applies it after the join's answer).
        if self.pending.is_some() {
            return None; // `needs_offer` stays: asked again after the answer
        }
        self.needs_offer = false;
        for t in &mut self.tracks_out {
            if let OutState::Open(m) = t.state
                && t.track.upgrade().is_none()
            {
                t.state = OutState::ToStop(m);
            }
        }
        // Tracks whose publisher left before they were offered are forgotten.
        self.tracks_out
            .retain(|t| t.state != OutState::ToOpen || t.track.upgrade().is_some());
        let mut change = self.rtc.sdp_api();
        for t in &mut self.tracks_out {
            match t.state {
                OutState::ToOpen => {
                    if let Some(track) = t.track.upgrade() {
                        let mid = change.add_media(
                            track.kind,
                            Direction::SendOnly,
                            Some(track.label()),
                            None,
                            None,
                        );
                        t.state = OutState::Negotiating(mid);
                    }
                }
                OutState::ToStop(mid) => {
                    change.stop_media(mid);
                    t.state = OutState::NegotiatingStop(mid);
                }
                _ => {}
            }
        }
        if !change.has_changes() {
            return None;
        }
        let (offer, pending) = change.apply()?;
        self.pending = Some(pending);
        Some(offer)
    }

    /// The browser's answer to the last offer; returns the video tracks it
    /// now receives, with the layer it is to get (their publisher is asked
    /// for a keyframe, so the first picture comes at once).
    pub fn accept_answer(&mut self, answer: SdpAnswer) -> Result<Vec<(u64, Mid, usize)>, String> {
        let Some(pending) = self.pending.take() else {
            return Err("no offer is waiting for an answer".into());
        };
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| e.to_string())?;
        let mut opened = Vec::new();
        for t in &mut self.tracks_out {
            if let OutState::Negotiating(m) = t.state {
                t.state = OutState::Open(m);
                if let Some(track) = t.track.upgrade()
                    && track.kind == MediaKind::Video
                {
                    opened.push((track.origin, track.mid, t.selection.target));
                }
            }
        }
        self.tracks_out
            .retain(|t| !matches!(t.state, OutState::NegotiatingStop(_)));
        Ok(opened)
    }

    /// Forgets the offer of ours still out, if any (it will not be
    /// answered); its tracks go into the next one. Returns whether there
    /// was one.
    pub fn drop_pending_offer(&mut self) -> bool {
        if self.pending.take().is_none() {
            return false;
        }
        for t in &mut self.tracks_out {
            match t.state {
                OutState::Negotiating(_) => t.state = OutState::ToOpen,
                OutState::NegotiatingStop(m) => t.state = OutState::ToStop(m),
                _ => {}
            }
        }
        true
    }

    /// A new offer from the browser. An offer of ours still out is dropped
    /// (the browser's wins); its tracks are offered again afterwards.
    pub fn accept_offer(&mut self, offer: SdpOffer) -> Result<SdpAnswer, String> {
        let ufrag = ice_ufrag(&offer.to_sdp_string());
        if ufrag.is_some() && self.remote_ufrag.is_some() && ufrag != self.remote_ufrag {
            self.ice_restarted = true;
            self.stale_until = Some(Instant::now() + STALE_WATCH);
        }
        self.remote_ufrag = ufrag.or(self.remote_ufrag.take());
        self.drop_pending_offer();
        self.needs_offer = true;
        self.rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| e.to_string())
    }
}

/// The `a=ice-ufrag` of an SDP.
pub fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .map(str::to_string)
}

/// The deadline, when an output is only that.
pub fn timeout_of(output: &Output) -> Option<Instant> {
    match output {
        Output::Timeout(t) => Some(*t),
        _ => None,
    }
}
