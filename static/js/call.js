/**
 * call.js: the N-party mesh video call of one room (no DOM code).
 *
 * It exists to own everything WebRTC: the local camera/microphone/screen
 * tracks and their state (muted, camera off, sharing), one RTCPeerConnection
 * per peer, the negotiation through protocol.js's `signal`, and the state
 * each peer announces over its data channel. The page (call-ui.js) listens to
 * the events below and draws tiles and controls.
 *
 * Negotiation: the "perfect negotiation" pattern. Roles are fixed per pair and
 * known to both sides without a message: the peer whose socket id sorts
 * lower (plain string comparison) is *polite* (it rolls back its own offer
 * when offers collide), the other is *impolite* (it ignores the colliding
 * offer). The newcomer opens each connection: its `join_call` ack lists the
 * peers and it sends each an offer; existing participants create their side
 * when that offer arrives (or on `peer_joined`, whichever comes first).
 *
 * Media: every connection has one audio and one video (camera) transceiver,
 * both sendrecv, created by the newcomer and adopted by the answerer. Mute is
 * `track.enabled = false` on the one microphone track (silence goes out);
 * camera off stops the camera (its light goes off) and sends no video track;
 * device switches use `replaceTrack` on every sender, so none of them needs a
 * renegotiation (and the muted/off state carries over). A shared screen is a
 * video track of its own, on a sendonly transceiver added by the sharer the
 * first time (one renegotiation) and reused after: the others keep seeing
 * the sharer's camera beside it. Video transceivers after the first are
 * screens, on both sides (m-line order).
 * Each side tells the other its state on a negotiated data channel (id 0):
 * `{ type: "state", audio, video, screen }`.
 *
 * Failure: a connection that goes `disconnected` for 4 s or `failed` gets an
 * ICE restart (`restartIce`, renegotiated through the same pattern); one
 * still not connected 12 s later, or whose data channel closes (the peer's
 * page closed its side), is dropped with its tile. `peer_left`/`bye` drop it
 * at once, unless the server says the peer's connection to it merely
 * dropped (`disconnected`): then a connection that still carries media is
 * kept AWAY_GRACE_MS for the peer's return. A reconnect (ours or the
 * server's restart) does not tear the call down either: we join again
 * saying our previous socket id (`was`), and each side re-keys the
 * connections still up to the other's new id (checked against its user id)
 * instead of negotiating anew. Trickled candidates are relayed as they
 * come, `null` (end of candidates) included.
 *
 * Through the media server: when `join_call` answers `media: "sfu"`, the
 * call's media goes through the server instead (call-sfu.js): one connection
 * to it, a `RemoteMember` per participant in place of a `Peer`, the same
 * events for the page.
 *
 * Events (CustomEvent detail):
 *   local        {}                         local tracks or state changed
 *   peer-added   { peer }
 *   peer-updated { peer }                   connection state, remote state or tracks
 *   peer-removed { peer, reason }           left | bye | failed | closed | rejoin | leave
 *   peer-rekeyed { peer, from }             the peer came back under a new socket id (was `from`)
 *   joined       { peers }                  / left {}
 */
import { RemoteMember, ServerSession } from "/static/js/call-sfu.js";
import { ParamQueue, PathWatch } from "/static/js/path.js";
import { MESH_SEND_HEIGHT, getCameraAndMic, getScreen, getTrack } from "/static/js/devices.js";
import { Speakers } from "/static/js/speakers.js";

const DISCONNECTED_GRACE_MS = 2000; // "disconnected" this long -> ICE restart
const REBUILD_DELAY_MS = 300; // a pair that failed: the impolite side opens a new connection after this
const SWITCH_GRACE_MS = 5000; // moving to the media server: mesh tiles shown at most this long
const SWITCH_CLOSE_MS = 8000; // ...and mesh connections kept this long (the other side may still show them)
const MEDIA_RECENT_MS = 1000; // media this recent: the network works (see `_mediaArriving`)
const SILENT_POLL_MS = 100; // a peer's silent path is looked at this often until it is heard again
const HAND_RETRY_MS = 300; // a hand change refused as too soon is sent again this much later
const KEYFRAME_SETTLE_MS = 150; // a path change: a fresh keyframe once the changes settle this long
const RESTART_GIVE_UP_MS = 12000; // not connected this long after a restart -> drop
const AWAY_GRACE_MS = 15000; // a peer whose signaling dropped: its connection kept this long for its return
const ABSENT_GRACE_MS = 3000; // ...but after our own reconnect, one the call no longer lists only this long
const PENDING_STATE_MS = 10000; // a media state for a member not here yet is kept this long
const PENDING_STATES_MAX = 64; // ...for at most this many members

/** Outgoing video bitrate per connection, by how many connections share the uplink. */
function maxBitrateFor(connections) {
  if (connections <= 1) return 1_200_000;
  if (connections === 2) return 900_000;
  if (connections === 3) return 700_000;
  return 500_000;
}

/**
 * The RTCPeerConnection configuration. By default every path is tried (host,
 * STUN, TURN). The preference `localStorage["noom.relay"]` forces the relay,
 * which hides one's own addresses from the other participants and is how to
 * check a relay: "on" (any TURN transport), "udp" or "tcp" (only that one).
 */
export function rtcConfiguration(iceServers, preference = relayPreference()) {
  const servers = Array.isArray(iceServers) ? iceServers : [];
  if (!["on", "udp", "tcp"].includes(preference)) return { iceServers: servers };
  const keep = (url) =>
    /^turns?:/.test(url) && (preference === "on" || url.endsWith(`transport=${preference}`) || (preference === "tcp" && url.startsWith("turns:")));
  const relays = servers
    .map((s) => ({ ...s, urls: [].concat(s.urls || []).filter(keep) }))
    .filter((s) => s.urls.length > 0);
  return { iceServers: relays, iceTransportPolicy: "relay" };
}

function relayPreference() {
  try {
    return localStorage.getItem("noom.relay") || "";
  } catch {
    return "";
  }
}

class Peer {
  constructor(call, member, iceServers) {
    this.call = call;
    this.id = member.id;
    this.user = member.user;
    this.nickname = member.nickname || "";
    this.polite = call.client.id < member.id;
    this.pc = new RTCPeerConnection(rtcConfiguration(iceServers));
    this.audioTx = null;
    this.videoTx = null;
    this.screenTx = null; // ours, sendonly, once we shared a screen
    this.dc = null;
    this.remoteStream = new MediaStream();
    this.screenStream = new MediaStream(); // the peer's shared screen
    this.remote = { audio: true, video: true, screen: false, known: false };
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.settingAnswer = false;
    this.collisions = 0; // offers that crossed ours (resolved by the roles)
    this.queue = Promise.resolve();
    this.closed = false;
    this.restartTimer = null;
    this.giveUpTimer = null;
    this.restarting = false;
    this.connectedOnce = false;
    this.interrupted = false; // went disconnected/failed since last connected
    this.keyframeTimer = null;
    this.pathWatched = false;
    this.heardAgainAt = -Infinity; // when its packets came back after a silence
    // Its path silent (path.js): our video to it paused until it is heard again.
    this.path = new PathWatch(() => this.pc.getStats(), {
      onSilent: (why) => this._wentSilent(why),
      onHeard: () => this._heardAgain(),
    });
    this.silenceTimer = null;
    this.params = new ParamQueue(); // setParameters calls, one at a time
    this.createdAt = performance.now();
    this.firstFrameAt = null;
    this._wire();
  }

  get state() {
    if (this.closed) return "closed";
    const s = this.pc.connectionState;
    // A restart of a connection that stayed connected ends when its ICE does.
    if (this.restarting && s === "connected" && this.pc.iceConnectionState === "connected") this.restarting = false;
    // The media stopped: say so (the tile shows it), not a still frame.
    if (s === "disconnected" || (this.restarting && s !== "connected")) return "reconnecting";
    return s;
  }

  _wire() {
    const pc = this.pc;
    pc.onnegotiationneeded = async () => {
      if (this.closed || pc.signalingState !== "stable") return;
      try {
        this.makingOffer = true;
        await pc.setLocalDescription();
        this._send(pc.localDescription);
      } catch (err) {
        this.call._log("offer failed", this.id, err);
      } finally {
        this.makingOffer = false;
      }
    };
    pc.onicecandidate = ({ candidate }) => {
      if (!this.closed) this.call.client.signal("ice", this.id, candidate || null);
    };
    pc.ontrack = ({ track, transceiver }) => {
      // The first video m-line is the camera; any later one a shared screen.
      const videos = pc.getTransceivers().filter((t) => t.receiver.track.kind === "video");
      const screen = track.kind === "video" && videos.length > 1 && transceiver !== videos[0];
      const stream = screen ? this.screenStream : this.remoteStream;
      for (const old of stream.getTracks()) {
        if (old.kind === track.kind && old !== track) stream.removeTrack(old);
      }
      if (!stream.getTracks().includes(track)) stream.addTrack(track);
      const update = () => this.call._emit("peer-updated", { peer: this });
      track.onmute = update;
      track.onunmute = update;
      this.call._emit("peer-updated", { peer: this });
    };
    pc.onconnectionstatechange = () => this._onConnectionState();
  }

  /**
   * Both sides create the same negotiated channel (no `datachannel` event
   * asymmetry). The caller creates it before its first offer, the answerer
   * while applying that offer: created any earlier, it would make the
   * answerer fire negotiationneeded and send a needless colliding offer.
   */
  _openChannel() {
    if (this.dc) return;
    this.dc = this.pc.createDataChannel("noom-state", { negotiated: true, id: 0, ordered: true });
    this.dc.onopen = () => this.sendState();
    this.dc.onmessage = ({ data }) => this._onData(data);
    this.dc.onclose = () => {
      if (!this.closed) this.call._drop(this, "closed");
    };
  }

  _send(description) {
    this.call.client.signal(description.type === "offer" ? "offer" : "answer", this.id, description);
  }

  /** The newcomer's side: one sendrecv transceiver per kind, then negotiationneeded offers. */
  openAsCaller() {
    const { audio, video, screen } = this.call._outgoing();
    this.audioTx = this.pc.addTransceiver(audio || "audio", { direction: "sendrecv" });
    this.videoTx = this.pc.addTransceiver(video || "video", { direction: "sendrecv" });
    if (screen) this.screenTx = this.pc.addTransceiver(screen, { direction: "sendonly" });
    this._openChannel();
  }

  /** The answerer's side: adopt the transceivers the offer created, and send on them. */
  _adoptTransceivers() {
    for (const tx of this.pc.getTransceivers()) {
      if (tx.stopped || tx.currentDirection === "stopped") continue;
      const kind = tx.receiver.track.kind;
      if (kind === "audio" && !this.audioTx) this.audioTx = tx;
      if (kind === "video" && !this.videoTx) this.videoTx = tx;
    }
    for (const tx of [this.audioTx, this.videoTx]) {
      if (tx && tx.direction !== "sendrecv") tx.direction = "sendrecv";
    }
    this._openChannel();
    return this.applyTracks();
  }

  /** Put the current outgoing tracks on the senders (no renegotiation). */
  async applyTracks() {
    const { audio, video, screen } = this.call._outgoing();
    const jobs = [];
    if (this.audioTx && this.audioTx.sender.track !== audio) jobs.push(this.audioTx.sender.replaceTrack(audio));
    if (this.videoTx && this.videoTx.sender.track !== video) jobs.push(this.videoTx.sender.replaceTrack(video));
    if (screen && !this.screenTx && this.videoTx && !this.closed) {
      // The first share on this connection: a track of its own (renegotiates once).
      this.screenTx = this.pc.addTransceiver(screen, { direction: "sendonly" });
    } else if (this.screenTx && this.screenTx.sender.track !== screen) {
      jobs.push(this.screenTx.sender.replaceTrack(screen));
    }
    await Promise.all(jobs).catch((err) => this.call._log("replaceTrack failed", this.id, err));
    await this.setBitrate(this.call.peers.size);
  }

  /**
   * The encoding of our video to this peer: a bitrate shared by the mesh,
   * and the camera scaled to MESH_SEND_HEIGHT (it is opened larger, for
   * the media server's top layer). A shared screen goes at its own size.
   */
  async setBitrate(connections) {
    const sender = this.videoTx && this.videoTx.sender;
    if (!sender) return;
    await this._withParams(sender, (params) => {
      if (!params.encodings || !params.encodings.length) return false;
      const max = maxBitrateFor(connections);
      const track = sender.track;
      const height = track && track === this.call.camera ? track.getSettings().height || 0 : 0;
      const scale = Math.max(1, height / MESH_SEND_HEIGHT);
      const encoding = params.encodings[0];
      if (encoding.maxBitrate === max && (encoding.scaleResolutionDownBy || 1) === scale) return false;
      encoding.maxBitrate = max;
      encoding.scaleResolutionDownBy = scale;
      return true;
    });
  }

  /** Our video's path to this peer is silent (path.js): paused. */
  get silent() {
    return this.path.silent;
  }

  _withParams(sender, change) {
    return this.params.edit(sender, change);
  }

  /**
   * The path of this connection changed (an ICE restart, a new network, a
   * connection back from "disconnected"): the other side lost our video
   * meanwhile, and its request for a new keyframe may have been lost with
   * it (Chromium asks again only after about 3 s). Send one now: pausing
   * the video encodings and resuming them starts the stream on a keyframe.
   */
  freshKeyframe() {
    clearTimeout(this.keyframeTimer);
    // Once per burst of changes (a restart changes the pair more than once).
    this.keyframeTimer = setTimeout(() => {
      this.keyframeTimer = null;
      // Not while the path is down (its pair changes as ICE looks for
      // another): the return to "connected", or of the peer's packets
      // (`observe`), asks again.
      if (this.closed || this.silent || this.pc.connectionState !== "connected") return;
      this.call._log("keyframe after a path change", this.id);
      this._setVideoActive(false);
      this._setVideoActive(true);
    }, KEYFRAME_SETTLE_MS);
  }

  /**
   * The path is down (nothing heard from the peer for SILENCE_MS, or
   * "disconnected", "failed"): stop encoding our video to this peer until
   * it is back. Frames made meanwhile would wait in the browser's pacer,
   * reach the peer seconds late when the path returns, and its jitter
   * buffer would then hold every later frame as long (measured: 2 s and
   * more of delay for many seconds after a 5 s link drop). Its return
   * resumes the encodings (`freshKeyframe`), which starts the stream again
   * on a keyframe.
   */
  pauseVideo() {
    this._setVideoActive(false, true);
  }

  /**
   * Turns every encoding of our camera and screen to this peer on or off.
   * `fresh`: also empty what the browser keeps of the video sent so far.
   * Chromium keeps the packets it sent for a few seconds to resend them on
   * request, and resends by itself those that the peer's first feedback
   * after an outage reports lost with nothing after them ("early loss
   * detection"): here, everything we sent into a dead path before the
   * pause. The peer never asked for them, takes them for new frames seconds
   * late, and its receive timing then holds every later frame for up to
   * 3 s (measured: half of the 5 s link drops). A change of the encoding's
   * codec makes Chromium build the sending stream again, with an empty
   * history: so the pause switches to another negotiated codec, and the
   * resume back to the one in use before (nothing is sent in between, and
   * the stream starts again on a keyframe). A browser without
   * `encodings[].codec` just pauses.
   */
  _setVideoActive(active, fresh = false) {
    for (const tx of [this.videoTx, this.screenTx]) {
      const sender = tx && tx.sender;
      if (!sender || !sender.track) continue;
      const apply = (switchCodec) =>
        this._withParams(sender, (params) => {
          if (!params.encodings || params.encodings.every((e) => (e.active !== false) === active)) return false;
          const codec = switchCodec ? this._codecFor(tx, params, active, fresh) : null;
          params.encodings.forEach((e) => {
            e.active = active;
            if (codec) e.codec = codec;
          });
          return true;
        });
      apply(true).then((ok) => {
        if (ok) return;
        tx.pausedCodec = null; // refused (a browser without `codec`?): a plain pause or resume
        return apply(false);
      });
    }
  }

  /**
   * The codec for a pause that empties the history (another negotiated
   * one than that in use, which is remembered), or for the resume after it
   * (the one remembered); null when there is nothing to switch.
   */
  _codecFor(tx, params, active, fresh) {
    const codecs = (params.codecs || []).filter((c) => !/\/(rtx|red|ulpfec|flexfec-03)$/i.test(c.mimeType));
    const same = (a, b) => a.mimeType === b.mimeType && (a.sdpFmtpLine || "") === (b.sdpFmtpLine || "");
    if (active) {
      const back = tx.pausedCodec;
      tx.pausedCodec = null;
      return back && codecs.find((c) => same(c, back)) ? back : null;
    }
    if (!fresh) return null;
    const now = (params.encodings[0] && params.encodings[0].codec) || codecs[0];
    const other = now && codecs.find((c) => !same(c, now));
    if (!other) return null;
    tx.pausedCodec = now;
    return other;
  }

  /** One reading of this connection's statistics (the mesh's poll, see speakers.js). */
  observe(report, now) {
    this.path.reading(report, now, this.connectedOnce);
  }

  /**
   * The browser lost its network (`offline`): the path to this peer is down
   * for sure, so our video pauses now rather than after SILENCE_MS of
   * silence (less is sent into the dead path). Heard again resumes it.
   */
  lostNetwork() {
    if (this.closed || !this.connectedOnce) return;
    this.path.offline();
  }

  _wentSilent(why) {
    this.call._log(`${why}: video paused`, this.id);
    this.pauseVideo();
    // Until the peer is heard again, look more often than the mesh's poll.
    clearInterval(this.silenceTimer);
    this.silenceTimer = setInterval(() => {
      if (!this.closed && this.silent) this.path.look(this.connectedOnce);
    }, SILENT_POLL_MS);
  }

  _heardAgain() {
    this.heardAgainAt = performance.now();
    clearInterval(this.silenceTimer);
    this.silenceTimer = null;
    this.call._log("heard again: video resumed", this.id);
    // At once (resuming starts on a keyframe): every 100 ms counts here.
    this._setVideoActive(true);
  }

  sendState() {
    if (this.dc && this.dc.readyState === "open") {
      try {
        this.dc.send(JSON.stringify({ type: "state", ...this.call.localState() }));
      } catch {
        /* closing */
      }
    }
  }

  _onData(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg && msg.type === "retired") {
      this._otherSideRetired();
      return;
    }
    if (!msg || msg.type !== "state") return;
    this.remote = {
      audio: msg.audio !== false,
      video: msg.video !== false,
      screen: msg.screen === true,
      known: true,
    };
    this.call._emit("peer-updated", { peer: this });
  }

  /** Handle one relayed signal; called in arrival order through `queue`. */
  handleSignal(signal) {
    this.queue = this.queue
      .then(() => (signal.kind === "ice" ? this._onCandidate(signal.candidate) : this._onDescription(signal.description)))
      .catch((err) => this.call._log("signal failed", this.id, signal.kind, err));
    return this.queue;
  }

  async _onDescription(description) {
    if (this.closed || !description || typeof description.type !== "string") return;
    const pc = this.pc;
    const readyForOffer = !this.makingOffer && (pc.signalingState === "stable" || this.settingAnswer);
    const collision = description.type === "offer" && !readyForOffer;
    if (collision) this.collisions += 1;
    this.ignoreOffer = !this.polite && collision;
    if (this.ignoreOffer) return;
    this.settingAnswer = description.type === "answer";
    try {
      await pc.setRemoteDescription(description); // rolls our offer back if we are polite
    } finally {
      this.settingAnswer = false;
    }
    if (description.type === "offer") {
      await this._adoptTransceivers();
      await pc.setLocalDescription();
      this._send(pc.localDescription);
    }
  }

  async _onCandidate(candidate) {
    if (this.closed) return;
    try {
      if (candidate && candidate.candidate) await this.pc.addIceCandidate(candidate);
      else await this.pc.addIceCandidate(); // null / empty: end of candidates
    } catch (err) {
      if (!this.ignoreOffer && this.pc.remoteDescription) throw err;
    }
  }

  /**
   * A new candidate pair under a connection that stays "connected" (an ICE
   * restart, or the browser moving to a new network by itself): the other
   * side needs a keyframe, as after an interruption.
   */
  _watchPath() {
    if (this.pathWatched) return;
    const transport = this.pc.getSenders().map((sender) => sender.transport).find(Boolean);
    const ice = transport && transport.iceTransport;
    if (!ice) return;
    this.pathWatched = true;
    ice.addEventListener("selectedcandidatepairchange", () => {
      if (!this.closed && this.connectedOnce) this.freshKeyframe();
    });
  }

  _onConnectionState() {
    if (this.closed) return;
    const s = this.pc.connectionState;
    this.call._log("connection", this.id, s);
    if (s === "connected") {
      if (this.interrupted || this.restarting) this.freshKeyframe();
      this._watchPath();
      this.interrupted = false;
      this.connectedOnce = true;
      this.restarting = false;
      clearTimeout(this.restartTimer);
      clearTimeout(this.giveUpTimer);
      this.restartTimer = this.giveUpTimer = null;
      this.setBitrate(this.call.peers.size);
    } else if (s === "disconnected") {
      this.interrupted = true;
      this.pauseVideo();
      clearTimeout(this.restartTimer);
      this.restartTimer = setTimeout(() => this.restartIce(), DISCONNECTED_GRACE_MS);
      // Often the network changed: the signaling connection may be dead too.
      this.call.client.checkAlive();
    } else if (s === "failed") {
      this.interrupted = true;
      this.pauseVideo();
      this.call.client.checkAlive();
      this.restartIce();
    } else if (s === "closed") {
      this.call._drop(this, "closed");
      return;
    }
    this.call._emit("peer-updated", { peer: this });
  }

  /**
   * After a reconnect (ours or the peer's): bring a connection that lost
   * its media back. An offer of ours that went to the peer's dead
   * connection is sent again; otherwise an ICE restart. `force`: restart
   * even a connection that still looks connected (our own connection to
   * the server died: most likely our network changed, and the pair in use
   * with it, the browser just has not noticed). A path that survived is
   * not cut by it: the browser keeps using the old pair until a new one
   * answers.
   */
  async recover(force = false) {
    if (this.closed) return;
    // Our connection to the server dropped, but this peer's packets came
    // back since (a link that went down and up, same address): its path
    // works. A restart would only move the call to new pairs and hold the
    // video for seconds (measured: 3.0-3.5 s back instead of 0.5 s).
    if (force && this.heardAgainAt > this.call.lostServerAt) {
      this.call._log("path came back by itself: no ICE restart", this.id);
      force = false;
    }
    if (!force && this.pc.connectionState === "connected") return;
    if (this.pc.signalingState === "have-local-offer") {
      if (!force && this.pc.localDescription) {
        this._send(this.pc.localDescription);
        return;
      }
      // An offer made while offline carries no usable candidates: start over.
      try {
        await this.pc.setLocalDescription({ type: "rollback" });
      } catch {
        /* not in a state to roll back: the restart below still goes */
      }
    }
    this.restartIce(force);
  }

  restartIce(force = false) {
    if (this.closed || (!force && this.pc.connectionState === "connected")) return;
    this.restarting = true;
    this.call._log("ICE restart", this.id);
    try {
      this.pc.restartIce(); // -> negotiationneeded -> offer with new credentials
    } catch (err) {
      this.call._log("restartIce failed", err);
    }
    if (!this.giveUpTimer) {
      this.giveUpTimer = setTimeout(() => {
        if (!this.closed && this.pc.connectionState !== "connected") this.call._drop(this, "failed");
      }, RESTART_GIVE_UP_MS);
    }
    this.call._emit("peer-updated", { peer: this });
  }

  /**
   * After a move to the media server: the other side now shows us through
   * the server, so this connection need not carry our media any more (its
   * encoders cost CPU while both streams run). Once both sides are done
   * with it, it closes.
   */
  _otherSideRetired() {
    this.otherSideRetired = true;
    for (const tx of [this.audioTx, this.videoTx, this.screenTx]) {
      if (tx && tx.sender.track) tx.sender.replaceTrack(null).catch(() => {});
    }
    if (this.retired) this.close();
  }

  /** We show the other side through the server now: tell it (see `_otherSideRetired`). */
  retire() {
    this.retired = true;
    if (this.dc && this.dc.readyState === "open") {
      try {
        this.dc.send(JSON.stringify({ type: "retired" }));
      } catch {
        /* closing */
      }
    }
    if (this.otherSideRetired) this.close();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.restartTimer);
    clearTimeout(this.giveUpTimer);
    clearTimeout(this.awayTimer);
    clearInterval(this.silenceTimer);
    if (this.dc) this.dc.onclose = null;
    this.pc.onconnectionstatechange = null;
    try {
      this.pc.close();
    } catch {
      /* already closed */
    }
    for (const track of this.remoteStream.getTracks()) this.remoteStream.removeTrack(track);
    for (const track of this.screenStream.getTracks()) this.screenStream.removeTrack(track);
  }
}

export class Call extends EventTarget {
  /** client: a NoomClient; room: the room name. */
  constructor(client, room) {
    super();
    this.client = client;
    this.room = room;
    this.pendingStates = new Map(); // socket id -> { state, at }: states of members not here yet
    this.audio = null; // microphone track
    this.camera = null; // camera track (null while the camera is off or missing)
    this.screen = null; // screen-share track
    this.muted = false;
    this.cameraOff = false;
    this.audioId = null; // chosen devices (null: the default)
    this.videoId = null;
    this.mediaFailure = null;
    this.peers = new Map(); // socket id -> Peer (mesh) or RemoteMember (media server)
    this.mode = "mesh"; // or "sfu": the call's media goes through the server
    this.server = null; // the ServerSession of a media-server call
    this.active = false; // in the call (join_call acked)
    this.joining = false; // join_call in flight
    this.iceServers = [];
    this.lookup = null; // (socket id) -> Member, set by the page
    this.speakers = new Speakers(this);
    this.hands = []; // raised hands in the call, in order (socket ids)
    this.lostServerAt = -Infinity; // when our signaling connection last dropped
    client.mediaArriving = () => this._mediaArriving();
    this._subs = [
      client.on("disconnect", () => (this.lostServerAt = performance.now())),
      client.on("peer_joined", ({ room: r, member }) => r === room && this._onPeerJoined(member)),
      client.on("peer_left", ({ room: r, member, reason }) => r === room && member && this._onDeparture(member.id, "left", reason)),
      client.on("bye", ({ room: r, member, reason }) => r === room && member && this._onDeparture(member.id, "bye", reason)),
      client.on("member_update", ({ room: r, member }) => r === room && this._onMemberUpdate(member)),
      client.on("signal", (signal) => this._onSignal(signal)),
      client.on("media_offer", ({ room: r, description }) => r === room && this.server && this.server.onOffer(description)),
      client.on("media_closed", ({ room: r }) => r === room && this.server && this.active && this.server.restart()),
      client.on("media_state", ({ room: r, state }) => r === room && this._onMediaState(state)),
      client.on("call_media", ({ room: r, media }) => r === room && media === "sfu" && this._switchToServer()),
      client.on("active_speaker", ({ room: r, speakers }) => r === room && this.mode === "sfu" && this.speakers.fromServer(speakers)),
      client.on("hands", ({ room: r, hands }) => r === room && this.active && this._setHands(hands)),
      client.on("reaction", ({ room: r, from, emoji }) => r === room && this.active && this._emit("reaction", { from, emoji })),
    ];
    // The browser lost its network: every mesh path is down (Peer.lostNetwork).
    const offline = () => {
      for (const peer of this.peers.values()) if (peer instanceof Peer) peer.lostNetwork();
      if (this.server) this.server.lostNetwork();
    };
    window.addEventListener("offline", offline);
    this._subs.push(() => window.removeEventListener("offline", offline));
  }

  _emit(type, detail = {}) {
    // A mesh peer retired by the move to the media server no longer speaks for its tile.
    if (detail.peer && detail.peer.retired) return;
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Subscribe; the handler gets `detail`. */
  on(type, handler) {
    const listener = (event) => handler(event.detail);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  _log(...args) {
    console.debug("noom call:", ...args);
  }

  // ---- local media -------------------------------------------------------

  /**
   * What goes out now: { audio, video, screen } tracks (any may be null).
   * The camera and a shared screen are tracks of their own, so the others
   * keep seeing our face while we share.
   */
  _outgoing() {
    return { audio: this.audio, video: this.cameraOff ? null : this.camera, screen: this.screen };
  }

  /** The same, for the media server. */
  _serverOutgoing() {
    return this._outgoing();
  }

  /** The state peers are told about (`video`: the camera). */
  localState() {
    return {
      audio: Boolean(this.audio) && !this.muted,
      video: Boolean(this.camera) && !this.cameraOff,
      screen: Boolean(this.screen),
    };
  }

  get hasMedia() {
    return Boolean(this.audio || this.camera);
  }

  /**
   * Open the camera and microphone (for the preview, or on joining). Resolves
   * with the list of missing kinds; rejects with a MediaFailure (the call can
   * still be joined to watch and listen).
   */
  async startMedia() {
    if (this.audio || this.camera) return [];
    this.mediaFailure = null;
    try {
      const { audio, video, missing } = await getCameraAndMic({
        audioId: this.audioId,
        videoId: this.videoId,
        video: !this.cameraOff,
      });
      this._setAudio(audio);
      this._setCamera(video);
      this._localChanged();
      return missing.filter((kind) => !(kind === "video" && this.cameraOff));
    } catch (err) {
      this.mediaFailure = err;
      this._localChanged();
      throw err;
    }
  }

  /** Stop every local track (leaving the call, or the page). */
  stopMedia() {
    for (const track of [this.audio, this.camera, this.screen]) if (track) track.stop();
    this.audio = this.camera = this.screen = null;
    this._localChanged();
  }

  _setAudio(track) {
    if (this.audio && this.audio !== track) this.audio.stop();
    this.audio = track || null;
    if (this.audio) {
      this.audio.enabled = !this.muted;
      if (this.audioId === null) this.audioId = this.audio.getSettings().deviceId || null;
      this.audio.onended = () => {
        if (this.audio === track) {
          this.audio = null;
          this._localChanged();
        }
      };
    }
  }

  _setCamera(track) {
    if (this.camera && this.camera !== track) this.camera.stop();
    this.camera = track || null;
    if (this.camera) {
      if (this.videoId === null) this.videoId = this.camera.getSettings().deviceId || null;
      this.camera.onended = () => {
        if (this.camera === track) {
          this.camera = null;
          this._localChanged();
        }
      };
    }
  }

  /** How large the page shows each member: [{ from, width, height }] (device pixels; 0: not shown). */
  setViews(views) {
    if (this.server) this.server.setViews(views);
  }

  /** Tracks changed: senders, peers and the page learn about it. */
  async _localChanged() {
    this._emit("local");
    if (this.server) {
      this.server.sendState();
      await this.server.applyTracks();
      return;
    }
    const jobs = [];
    for (const peer of this.peers.values()) {
      jobs.push(peer.applyTracks());
      peer.sendState();
    }
    await Promise.all(jobs);
  }

  setMuted(muted) {
    this.muted = Boolean(muted);
    if (this.audio) this.audio.enabled = !this.muted;
    this._localChanged();
  }

  async setCameraOff(off) {
    this.cameraOff = Boolean(off);
    if (this.cameraOff) {
      this._setCamera(null); // stops it: the camera light goes off
      await this._localChanged();
      return;
    }
    if (!this.camera) {
      try {
        this._setCamera(await getTrack("video", this.videoId));
      } catch (err) {
        this.cameraOff = true;
        await this._localChanged();
        throw err;
      }
    }
    await this._localChanged();
  }

  /** Switch the microphone ("audio") or camera ("video") to `deviceId`, in or out of a call. */
  async switchDevice(kind, deviceId) {
    if (kind === "audio") {
      this.audioId = deviceId || null;
      if (!this.audio && !this.active) return;
      const track = await getTrack("audio", this.audioId);
      this._setAudio(track); // keeps the muted state (enabled = !muted)
    } else {
      this.videoId = deviceId || null;
      if (this.cameraOff) return; // used when the camera comes back on
      // Release the old camera first: many phones cannot open two at once.
      this._setCamera(null);
      try {
        this._setCamera(await getTrack("video", this.videoId));
      } catch (err) {
        await this._localChanged();
        throw err;
      }
    }
    await this._localChanged();
  }

  async startShare() {
    if (this.screen) return;
    const track = await getScreen();
    track.onended = () => this.stopShare();
    this.screen = track;
    await this._localChanged();
  }

  async stopShare() {
    if (!this.screen) return;
    const track = this.screen;
    this.screen = null;
    track.onended = null;
    track.stop();
    await this._localChanged(); // the screen's sender goes quiet (kept for the next share)
  }

  // ---- the call ------------------------------------------------------------

  /**
   * join_call, then an offer to every peer (except those whose connection
   * to us survived a reconnect: re-keyed). Throws a ProtocolError (e.g.
   * room_full). `was`: our socket id before a reconnect.
   */
  async join(was = null) {
    // While the request is in flight, a later joiner may already offer to us.
    this.joining = true;
    let ack;
    try {
      ack = await this.client.joinCall(this.room, was ? { was } : undefined);
    } finally {
      this.joining = false;
    }
    this.active = true;
    this.myId = this.client.id;
    this.client.keepAlive(true);
    this._setHands(Array.isArray(ack.hands) ? ack.hands : []);
    this.iceServers = Array.isArray(ack.iceServers) ? ack.iceServers : [];
    this.mode = ack.media === "sfu" ? "sfu" : "mesh";
    this.speakers.start();
    // The server kept our media session for us: the same connection, its
    // ICE restarted on our new network. Otherwise a session of the last
    // connection, with its members, is over.
    const resumed = this.mode === "sfu" && ack.resumed === true && Boolean(this.server && this.server.pc);
    if (!resumed && this.server) {
      for (const peer of [...this.peers.values()]) if (!(peer instanceof Peer)) this._drop(peer, "rejoin");
      for (const old of (this.retired || []).splice(0)) old.close();
      this.server.close();
      this.server = null;
    }
    // Connections kept across a reconnect carry nothing through the media server.
    if (this.mode === "sfu") for (const peer of [...this.peers.values()]) if (peer instanceof Peer) this._drop(peer, "rejoin");
    for (const member of ack.peers || []) {
      // (Our own last connection, if the server still had it, is not a peer.)
      if (!member || member.id === this.client.id || member.id === was) continue;
      const held = this.peers.get(member.id);
      if (held) {
        // Still in the call under the same id (only our connection dropped).
        clearTimeout(held.awayTimer);
        held.awayTimer = null;
        if (held instanceof Peer) {
          // Our connection to the server died under us: most likely our
          // network changed, and with it the path of this connection.
          held.recover(Boolean(was));
        }
        continue;
      }
      if (this._adopt(member)) continue;
      const peer = this._addPeer(member);
      if (this.mode === "mesh") peer.openAsCaller();
    }
    // After our own reconnect: a member we still hold that the call no
    // longer lists most likely left while we were away (we missed its
    // `peer_left`); it is kept only briefly, in case it is reconnecting too
    // (its own join then re-keys it).
    if (was) {
      const listed = new Set((ack.peers || []).map((m) => m && m.id));
      for (const peer of [...this.peers.values()]) {
        if (listed.has(peer.id) || !peer.awayTimer) continue;
        clearTimeout(peer.awayTimer);
        peer.awayTimer = null;
        this._holdAway(peer, ABSENT_GRACE_MS);
      }
    }
    if (resumed) {
      this.server.resume();
    } else if (this.mode === "sfu") {
      this.server = new ServerSession(this, rtcConfiguration(this.iceServers));
      try {
        await this.server.start();
      } catch (err) {
        this.server.close();
        this.server = null;
        this.active = false;
        for (const peer of [...this.peers.values()]) this._drop(peer, "leave");
        try {
          await this.client.leaveCall(this.room);
        } catch {
          /* the error below is the one to show */
        }
        throw err;
      }
    }
    // Who speaks now: `active_speaker` says only changes, and a page back
    // from a reconnect may have missed the last one.
    if (this.mode === "sfu") this.speakers.fromServer(Array.isArray(ack.speakers) ? ack.speakers : []);
    this._emit("joined", { peers: ack.peers || [] });
    return ack;
  }

  async leave() {
    const wasActive = this.active;
    this.active = false;
    this.client.keepAlive(false);
    this._setHands([]);
    // The others learn it first: closing our connections (many decoders
    // through the media server) can take a while on a busy machine.
    const told =
      wasActive && this.client.connected
        ? this.client.leaveCall(this.room).catch((err) => this._log("leave_call failed", err))
        : Promise.resolve();
    this.speakers.stop();
    this._closeServer();
    for (const peer of [...this.peers.values()]) this._drop(peer, "leave");
    await told;
    this.stopMedia();
    this._emit("left");
  }

  /**
   * After a reconnect our socket id changed and the server forgot our call
   * (it may have restarted, or our network changed under us): keep the
   * mesh's peer connections, and join again under our previous id; those
   * the others still hold are re-keyed (and restarted if their media
   * stopped), and we offer to whoever we have no connection with. The
   * media server's session ends with the signaling, so it starts again.
   */
  async rejoin() {
    if (!this.active) return;
    const was = this.myId;
    // Mesh connections, and the media server's session with its members,
    // are kept: the server may still have them for us (`join`).
    for (const peer of [...this.peers.values()]) {
      if (peer instanceof Peer ? !peer.closed : Boolean(this.server)) this._holdAway(peer);
      else this._drop(peer, "rejoin");
    }
    try {
      await this.join(was);
    } catch (err) {
      this.active = false;
      this._emit("left", { error: err });
      throw err;
    }
  }

  /**
   * Whether media reached us in the last MEDIA_RECENT_MS, from any peer or
   * the media server (each receiver's synchronization sources: cheap, no
   * statistics). The liveness check asks it: media arriving means the
   * network works, whatever the signaling server's delay.
   */
  _mediaArriving() {
    if (!this.active) return false;
    // Mesh peers, and those standing in for members during a move to the server.
    const meshes = [...this.peers.values()].map((p) => (p instanceof Peer ? p : p.standIn));
    const pcs = meshes.filter((p) => p && !p.closed).map((p) => p.pc);
    if (this.server && this.server.pc) pcs.push(this.server.pc);
    const now = performance.now();
    const wall = Date.now();
    for (const pc of pcs) {
      for (const receiver of pc.getReceivers()) {
        for (const source of receiver.getSynchronizationSources()) {
          // (The clock of `timestamp` is the page's in the spec, the wall
          // clock in older Chromium: either counts.)
          const age = Math.min(Math.abs(now - source.timestamp), Math.abs(wall - source.timestamp));
          if (age < MEDIA_RECENT_MS) return true;
        }
      }
    }
    return false;
  }

  _addPeer(member) {
    if (this.mode === "sfu") {
      const remote = new RemoteMember(this, member);
      this.peers.set(remote.id, remote);
      this._emit("peer-added", { peer: remote });
      this._takePendingState(remote);
      return remote;
    }
    const peer = new Peer(this, member, this.iceServers);
    this.peers.set(peer.id, peer);
    this._emit("peer-added", { peer });
    for (const p of this.peers.values()) p.setBitrate(this.peers.size);
    return peer;
  }

  /**
   * The call grew past the mesh: move to the media server. Each mesh peer
   * stays as its member's stand-in (its tile keeps playing) until the member
   * plays through the server, or SWITCH_GRACE_MS passed.
   */
  async _switchToServer() {
    if (!this.active || this.mode === "sfu") return;
    this._log("moving the call to the media server");
    const mesh = this.peers;
    this.mode = "sfu";
    this.peers = new Map();
    for (const old of mesh.values()) {
      const member = new RemoteMember(this, { id: old.id, user: old.user, nickname: old.nickname });
      member.remote = { ...old.remote };
      member.standIn = old;
      this.peers.set(member.id, member);
    }
    this.server = new ServerSession(this, rtcConfiguration(this.iceServers));
    this.retired = [];
    setTimeout(() => {
      for (const old of this.retired.splice(0)) old.close();
    }, SWITCH_CLOSE_MS);
    const started = performance.now();
    const poll = setInterval(async () => {
      const waiting = [...this.peers.values()].filter((m) => m.standIn);
      if (!waiting.length || this.mode !== "sfu") {
        clearInterval(poll);
        return;
      }
      if (performance.now() - started > SWITCH_GRACE_MS) {
        for (const member of waiting) this._retire(member);
        return;
      }
      const pc = this.server && this.server.pc;
      if (!pc || pc.connectionState !== "connected") return;
      try {
        const report = await pc.getStats();
        for (const member of waiting) if (member.standIn && member.playsIn(report)) this._retire(member);
      } catch {
        /* closed meanwhile */
      }
    }, 150);
    try {
      await this.server.start();
    } catch (err) {
      this._log("media server session failed", err);
      if (this.server) this.server.restart();
    }
  }

  /**
   * `member` plays through the server (or we stop waiting): its tile shows
   * that. The mesh connection stays open a little longer: the other side
   * may still be showing it while its own server stream starts.
   */
  _retire(member) {
    const old = member.standIn;
    if (!old) return;
    member.standIn = null;
    old.retire(); // closes it when the other side is done with it too
    if (this.retired && this.mode === "sfu") this.retired.push(old);
    else old.close();
    this._emit("peer-updated", { peer: member });
  }

  _closeServer() {
    for (const old of (this.retired || []).splice(0)) old.close();
    if (this.server) this.server.close();
    this.server = null;
    this.mode = "mesh";
  }

  _onMediaState(state) {
    if (!state || typeof state.from !== "string") return;
    const member = this.peers.get(state.from);
    if (member instanceof RemoteMember) {
      member.setState(state);
      return;
    }
    // Its member is not here yet (its tracks, or its re-key after a
    // reconnect, are on their way): the state waits for it a while.
    const now = Date.now();
    for (const [id, p] of this.pendingStates) if (now - p.at > PENDING_STATE_MS) this.pendingStates.delete(id);
    if (this.pendingStates.size < PENDING_STATES_MAX) this.pendingStates.set(state.from, { state, at: now });
  }

  /** A member arrived or took a new id: a state said before it came applies. */
  _takePendingState(member) {
    const pending = this.pendingStates.get(member.id);
    if (!pending) return;
    this.pendingStates.delete(member.id);
    if (Date.now() - pending.at <= PENDING_STATE_MS) member.setState(pending.state);
  }

  _drop(peer, reason) {
    if (this.peers.get(peer.id) !== peer) {
      peer.close();
      // A stand-in whose connection the other side closed first.
      const member = this.peers.get(peer.id);
      if (member && member.standIn === peer) this._retire(member);
      return;
    }
    this.peers.delete(peer.id);
    peer.close();
    this._emit("peer-removed", { peer, reason });
    for (const p of this.peers.values()) if (p instanceof Peer) p.setBitrate(this.peers.size);
    if (reason === "failed") this._rebuild(peer);
  }

  /**
   * A pair whose connection did not come back after an ICE restart, while
   * both are still in the call: a new connection, opened by the impolite
   * side (the polite one answers its offer as a newcomer's).
   */
  _rebuild(peer) {
    if (!this.active || this.mode !== "mesh" || peer.polite) return;
    const member = this.lookup ? this.lookup(peer.id) : null;
    if (!member) return;
    setTimeout(() => {
      if (!this.active || this.mode !== "mesh" || this.peers.has(member.id)) return;
      this._log("opening a new connection to", member.id);
      this._addPeer(member).openAsCaller();
    }, REBUILD_DELAY_MS);
  }

  /**
   * A peer left the call (`peer_left`) or the room (`bye`). One whose
   * connection to the server merely dropped keeps its connection to us a
   * while, if it still carries media: it may come back (`_adopt`).
   */
  _onDeparture(id, kind, reason) {
    const peer = this.peers.get(id);
    if (reason === "disconnected" && peer instanceof Peer && !peer.closed && peer.pc.connectionState === "connected") {
      this._holdAway(peer);
      return;
    }
    // Through the media server, its session is kept a while for its return too.
    if (reason === "disconnected" && peer instanceof RemoteMember && this.server) {
      this._holdAway(peer);
      return;
    }
    this._dropId(id, kind);
  }

  /** Keeps `peer` `ms` (AWAY_GRACE_MS) for its return under a new socket id. */
  _holdAway(peer, ms = AWAY_GRACE_MS) {
    if (peer.awayTimer) return;
    peer.awayTimer = setTimeout(() => {
      peer.awayTimer = null;
      if (this.peers.get(peer.id) === peer) this._dropId(peer.id, "left");
    }, ms);
  }

  /**
   * `member` came back (it says the socket id it `was`): the connection we
   * hold under that id, if it is of the same user and still open, is its
   * own again under the new id. Returns whether it was re-keyed.
   */
  _adopt(member) {
    if (!member.was || member.was === member.id) return false;
    const peer = this.peers.get(member.was);
    if (!peer || peer.closed || peer.user !== member.user || this.peers.has(member.id)) return false;
    // Through the media server: its tracks keep coming from the session the
    // server took over for it; only the id changes.
    if (peer instanceof RemoteMember) return this.mode === "sfu" && this._rekey(peer, member);
    if (this.mode !== "mesh") return false;
    clearTimeout(peer.awayTimer);
    peer.awayTimer = null;
    this.peers.delete(peer.id);
    const from = peer.id;
    peer.id = member.id;
    peer.nickname = member.nickname || peer.nickname;
    // Roles follow the ids; both sides re-key to the same new pair.
    peer.polite = this.client.id < member.id;
    this.peers.set(peer.id, peer);
    this._log("kept the connection across a reconnect", from, "->", peer.id);
    this._emit("peer-rekeyed", { peer, from });
    this._emit("peer-updated", { peer });
    peer.sendState();
    // Its network likely changed under it: what we sent meanwhile did not
    // all arrive (and may still be queued), so start it again on a keyframe.
    peer.freshKeyframe();
    peer.recover();
    return true;
  }

  /** A member of a media-server call came back as `member` (a new socket id). */
  _rekey(remote, member) {
    clearTimeout(remote.awayTimer);
    remote.awayTimer = null;
    const from = remote.id;
    this.peers.delete(from);
    remote.id = member.id;
    remote.nickname = member.nickname || remote.nickname;
    this.peers.set(remote.id, remote);
    this._log("kept a member across its reconnect", from, "->", remote.id);
    this._emit("peer-rekeyed", { peer: remote, from });
    this._emit("peer-updated", { peer: remote });
    this._takePendingState(remote);
    return true;
  }

  _dropId(id, reason) {
    const peer = this.peers.get(id);
    if (peer) this._drop(peer, reason);
    // Whoever leaves the call takes its hand down (the server too, silently).
    if (this.hands.includes(id)) this._setHands(this.hands.filter((h) => h !== id));
  }

  _setHands(hands) {
    this.hands = [...hands];
    this._emit("hands", { hands: this.hands });
  }

  /** Whether our hand is up. */
  get handRaised() {
    return this.hands.includes(this.client.id);
  }

  /**
   * Raise or lower our hand (the server keeps the order). The server takes
   * a change at most every 250 ms per connection: one refused as too soon
   * (a hand raised and lowered at once) is sent again after that, unless
   * the hand already is where it was to go, so the last press counts.
   */
  async raiseHand(raised) {
    let ack;
    try {
      ack = await this.client.raiseHand(this.room, raised);
    } catch (err) {
      if (err.code !== "rate_limited") throw err;
      await new Promise((resolve) => setTimeout(resolve, HAND_RETRY_MS));
      if (this.handRaised === raised) return;
      ack = await this.client.raiseHand(this.room, raised);
    }
    this._setHands(Array.isArray(ack.hands) ? ack.hands : []);
  }

  /** An emoji to the others of the call (shown on our own tile too). */
  async react(emoji) {
    await this.client.react(this.room, emoji);
    this._emit("reaction", { from: this.client.id, emoji });
  }

  _onPeerJoined(member) {
    if (!(this.active || this.joining) || !member || member.id === this.client.id) return;
    const old = this.peers.get(member.id);
    if (old) return; // its offer (or, through the media server, its track) came first
    if (this._adopt(member)) {
      // Back from a reconnect, its connection still up. Through the media
      // server it missed what we said meanwhile (a mesh peer hears it on
      // its data channel): say our state again.
      if (this.server) this.server.sendState();
      return;
    }
    this._addPeer(member); // its offer follows (or its tracks, from the server)
    if (this.server) this.server.sendState(); // the newcomer learns our state
  }

  _onMemberUpdate(member) {
    const peer = member && this.peers.get(member.id);
    if (!peer) return;
    peer.nickname = member.nickname;
    this._emit("peer-updated", { peer });
  }

  _onSignal(signal) {
    if (!(this.active || this.joining) || !signal || signal.from === this.client.id) return;
    if (this.mode === "sfu") return; // no peer-to-peer negotiation through the media server
    let peer = this.peers.get(signal.from);
    // An offer from a new connection of that peer (a rebuilt pair: another
    // DTLS certificate) replaces the one we hold.
    if (peer instanceof Peer && signal.kind === "offer" && peer.pc.remoteDescription) {
      const print = (sdp) => (/a=fingerprint:(\S+ \S+)/.exec(sdp || "") || [])[1];
      const fresh = print(signal.description && signal.description.sdp);
      if (fresh && fresh !== print(peer.pc.remoteDescription.sdp)) {
        this._drop(peer, "replaced");
        peer = null;
      }
    }
    if (!peer) {
      // Only an offer opens a connection; stray answers/candidates of a dropped one are ignored.
      if (signal.kind !== "offer") return;
      const member = this.lookup ? this.lookup(signal.from) : null;
      peer = this._addPeer(member || { id: signal.from, nickname: "" });
    }
    peer.handleSignal(signal);
  }

  /**
   * Renegotiate every connection now with an ICE restart, as a failure
   * would (used by the tests to make both sides offer at once).
   */
  renegotiate() {
    if (this.server) {
      this.server.restart();
      return;
    }
    for (const peer of this.peers.values()) {
      if (!peer.closed) peer.pc.restartIce();
    }
  }

  /** Forget everything (page unload). */
  destroy() {
    this.speakers.stop();
    this._closeServer();
    for (const peer of this.peers.values()) peer.close();
    this.peers.clear();
    for (const unsub of this._subs) unsub();
    this.stopMedia();
  }

  /** Per-peer numbers for the page and for tests: inbound video frames, audio energy. */
  async stats() {
    const out = [];
    // Through the media server every member shares one connection: its
    // inbound streams are told apart by their tracks.
    const shared = this.server && this.server.pc;
    let sharedReport = null;
    if (shared) {
      try {
        sharedReport = await shared.getStats();
      } catch {
        /* closed meanwhile */
      }
    }
    for (const peer of this.peers.values()) {
      // What the tile shows: a member's mesh stand-in while switching.
      const shown = peer.standIn || peer;
      const pc = shown.pc || shared;
      if (!pc) continue;
      const mine = new Set(shown.remoteStream.getTracks().map((t) => t.id));
      const row = {
        id: peer.id,
        nickname: peer.nickname,
        polite: peer.polite,
        collisions: peer.collisions,
        connectionState: pc.connectionState,
        signalingState: pc.signalingState,
        media: shown.pc ? "mesh" : "sfu",
        remote: { ...peer.remote },
        remoteTracks: peer.remoteStream.getTracks().map((t) => ({ kind: t.kind, muted: t.muted, readyState: t.readyState })),
        sending: {
          audio: peer.audioTx && peer.audioTx.sender.track ? { enabled: peer.audioTx.sender.track.enabled, label: peer.audioTx.sender.track.label } : null,
          video: peer.videoTx && peer.videoTx.sender.track ? { enabled: peer.videoTx.sender.track.enabled, label: peer.videoTx.sender.track.label } : null,
          screen: peer.screenTx && peer.screenTx.sender.track ? { label: peer.screenTx.sender.track.label } : null,
        },
        framesDecoded: 0,
        frameWidth: 0,
        frameHeight: 0,
        // The candidate pair in use: its local side's type ("host", "srflx",
        // "relay") and, for a relay, the transport to the TURN server.
        path: null,
        totalAudioEnergy: 0,
        audioLevel: 0,
        firstFrameMs: peer.firstFrameAt,
      };
      try {
        const report = shown.pc ? await shown.pc.getStats() : sharedReport;
        if (!report) throw new Error("no report");
        report.forEach((s) => {
          if (s.type === "transport" && s.selectedCandidatePairId) {
            const pair = report.get(s.selectedCandidatePairId);
            const local = pair && report.get(pair.localCandidateId);
            if (local) row.path = { type: local.candidateType, protocol: local.protocol, relayProtocol: local.relayProtocol || null };
          }
          if (s.type !== "inbound-rtp") return;
          // A member's own tracks only (a shared screen is counted apart).
          if (!mine.has(s.trackIdentifier)) return;
          if (s.kind === "video") {
            row.framesDecoded += s.framesDecoded || 0;
            row.frameWidth = s.frameWidth || row.frameWidth;
            row.frameHeight = s.frameHeight || row.frameHeight;
          } else if (s.kind === "audio") {
            row.totalAudioEnergy += s.totalAudioEnergy || 0;
            row.audioLevel = Math.max(row.audioLevel, s.audioLevel || 0);
          }
        });
      } catch {
        /* closed meanwhile */
      }
      out.push(row);
    }
    return out;
  }
}
