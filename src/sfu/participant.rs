//! One participant's media session: its str0m `Rtc`, the tracks it
//! publishes, and the tracks of others it receives.
//!
//! A published track is owned here (`Arc<TrackIn>`); the other participants
//! of the call hold weak references, so when a publisher goes, its tracks
//! stop everywhere at the next negotiation. Tracks to receive are added with
//! offers from the server ([`Participant::negotiate`]), sent through
//! signaling; the browser answers through signaling too.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequest, KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::{Event, IceConnectionState, Output, Rtc};

/// Keyframe requests to one publisher's track, at most one this often.
const KEYFRAME_EVERY: Duration = Duration::from_secs(1);

/// A track a participant publishes.
#[derive(Debug)]
pub struct TrackIn {
    pub origin: u64,
    /// The stream id subscribers see: who the track comes from.
    pub label: String,
    pub mid: Mid,
    pub kind: MediaKind,
}

#[derive(Debug)]
struct TrackInEntry {
    track: Arc<TrackIn>,
    last_keyframe_request: Option<Instant>,
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
    state: OutState,
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
    /// It asks the publisher of a track it receives for a keyframe.
    Keyframe {
        request: KeyframeRequest,
        origin: u64,
        mid: Mid,
    },
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
    /// ICE and DTLS are up: offers may be sent.
    connected: bool,
    pending: Option<SdpPendingOffer>,
    tracks_in: Vec<TrackInEntry>,
    tracks_out: Vec<TrackOut>,
}

impl Participant {
    pub fn new(id: u64, key: String, label: String, call: Arc<str>, rtc: Rtc) -> Self {
        Participant {
            id,
            key,
            label,
            call,
            rtc,
            connected: false,
            pending: None,
            tracks_in: Vec::new(),
            tracks_out: Vec::new(),
        }
    }

    /// The tracks it publishes, for a newcomer to receive.
    pub fn published(&self) -> impl Iterator<Item = Weak<TrackIn>> + '_ {
        self.tracks_in.iter().map(|t| Arc::downgrade(&t.track))
    }

    /// Handles one event of its `Rtc`; returns what the others of the call
    /// must learn from it, if anything.
    pub fn on_event(&mut self, event: Event) -> Option<Propagated> {
        match event {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.rtc.disconnect();
                None
            }
            Event::Connected => {
                self.connected = true;
                None
            }
            Event::MediaAdded(added) => {
                // Only what the browser sends is a track of its own.
                if !matches!(added.direction, Direction::RecvOnly | Direction::SendRecv) {
                    return None;
                }
                let track = Arc::new(TrackIn {
                    origin: self.id,
                    label: self.label.clone(),
                    mid: added.mid,
                    kind: added.kind,
                });
                let weak = Arc::downgrade(&track);
                self.tracks_in.push(TrackInEntry {
                    track,
                    last_keyframe_request: None,
                });
                Some(Propagated::TrackOpen(weak))
            }
            Event::MediaData(data) => {
                if !data.contiguous {
                    self.request_keyframe(data.mid, KeyframeRequestKind::Fir);
                }
                Some(Propagated::Media(Box::new(data)))
            }
            Event::KeyframeRequest(request) => {
                let out = self
                    .tracks_out
                    .iter()
                    .find(|t| t.mid() == Some(request.mid))?;
                let track = out.track.upgrade()?;
                Some(Propagated::Keyframe {
                    request,
                    origin: track.origin,
                    mid: track.mid,
                })
            }
            _ => None,
        }
    }

    /// Asks the browser for a keyframe of its track `mid`, at most once a second.
    pub fn request_keyframe(&mut self, mid: Mid, kind: KeyframeRequestKind) {
        let Some(entry) = self.tracks_in.iter_mut().find(|t| t.track.mid == mid) else {
            return;
        };
        if entry
            .last_keyframe_request
            .is_some_and(|t| t.elapsed() < KEYFRAME_EVERY)
        {
            return;
        }
        if let Some(mut writer) = self.rtc.writer(mid) {
            // Fails only when the track has no stream yet; the next try will do.
            let _ = writer.request_keyframe(None, kind);
            entry.last_keyframe_request = Some(Instant::now());
        }
    }

    /// Someone else of the call publishes `track`: it is added at the next offer.
    pub fn receive(&mut self, track: Weak<TrackIn>) {
        self.tracks_out.push(TrackOut {
            track,
            state: OutState::ToOpen,
        });
    }

    /// Writes media of `origin` to the matching track, if this participant
    /// receives it. Returns whether it was written.
    /// The payload is shared, not copied (`MediaData::data` is an `Arc`).
    pub fn forward(&mut self, origin: u64, data: &MediaData) -> bool {
        // Simulcast layers are chosen per subscriber later; until then only
        // unlayered media and the high layer pass.
        if data.rid.is_some() && data.rid != Some("h".into()) {
            return false;
        }
        let Some(mid) = self
            .tracks_out
            .iter()
            .find(|o| {
                o.track
                    .upgrade()
                    .is_some_and(|t| t.origin == origin && t.mid == data.mid)
            })
            .and_then(|o| match o.state {
                OutState::Open(m) => Some(m),
                _ => None,
            })
        else {
            return false;
        };
        let Some(writer) = self.rtc.writer(mid) else {
            return false;
        };
        let Some(pt) = writer.match_params(data.params) else {
            return false;
        };
        if let Err(e) = writer.write(pt, data.network_time, data.time, data.data.clone()) {
            tracing::debug!(participant = %self.key, error = %e, "media session failed");
            self.rtc.disconnect();
            return false;
        }
        true
    }

    /// Relays a keyframe request to this participant's own track `mid`.
    pub fn keyframe_requested(&mut self, request: &KeyframeRequest, mid: Mid) {
        if let Some(mut writer) = self.rtc.writer(mid) {
            let _ = writer.request_keyframe(request.rid, request.kind);
        }
    }

    /// An offer for the tracks to add or stop, when there are any and no
    /// other offer is out.
    pub fn negotiate(&mut self) -> Option<SdpOffer> {
        if !self.connected || self.pending.is_some() {
            return None;
        }
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
                            Some(track.label.clone()),
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

    /// The browser's answer to the last offer; returns the tracks it now
    /// receives (their publisher is asked for a keyframe, so the first
    /// picture comes at once).
    pub fn accept_answer(&mut self, answer: SdpAnswer) -> Result<Vec<(u64, Mid)>, String> {
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
                    opened.push((track.origin, track.mid));
                }
            }
        }
        self.tracks_out
            .retain(|t| !matches!(t.state, OutState::NegotiatingStop(_)));
        Ok(opened)
    }

    /// A new offer from the browser. An offer of ours still out is dropped
    /// (the browser's wins); its tracks are offered again afterwards.
    pub fn accept_offer(&mut self, offer: SdpOffer) -> Result<SdpAnswer, String> {
        self.pending = None;
        for t in &mut self.tracks_out {
            match t.state {
                OutState::Negotiating(_) => t.state = OutState::ToOpen,
                OutState::NegotiatingStop(m) => t.state = OutState::ToStop(m),
                _ => {}
            }
        }
        self.rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| e.to_string())
    }
}

/// The deadline, when an output is only that.
pub fn timeout_of(output: &Output) -> Option<Instant> {
    match output {
        Output::Timeout(t) => Some(*t),
        _ => None,
    }
}
