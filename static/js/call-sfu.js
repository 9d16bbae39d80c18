/**
 * call-sfu.js: a call's media through the server's media server (SFU), for
 * calls too large for a mesh (no DOM code; used by call.js).
 *
 * One RTCPeerConnection to the server instead of one per peer. We offer once
 * (`media_join`) with one sendonly audio and one sendonly (camera) video
 * transceiver; from then on only the server offers (`media_offer` events: other
 * participants' tracks came or went) and we answer (`media_answer`), so
 * offers never collide. A third sendonly video transceiver carries a shared
 * screen (its mid goes with `media_join`), so the camera keeps going beside
 * it. Device switches, camera off and screen share use `replaceTrack`, as in
 * the mesh, and need no renegotiation.
 *
 * The offer also opens one receive-only audio and video m-line per member
 * already in the call: the server puts their tracks there at once (its ack
 * says whose is on which mid), so the first pictures need no second round
 * of negotiation.
 *
 * The server labels each track it offers later with its sender's socket id
 * (the stream id), which is how a track finds its member's tile; a shared screen
 * has the stream id `<socket id>.screen` and goes to the member's
 * `screenStream`. The server offers it once it carries media. Each member is a
 * `RemoteMember`, with the fields call-ui.js reads of a mesh peer (id,
 * nickname, remoteStream, remote state, connection state). The state a mesh
 * peer says on its data channel goes through the server here (`media_state`).
 *
 * A session the server ends (`media_closed`), or whose connection fails, is
 * started again from a new offer.
 *
 * Video goes out in three simulcast layers (rids q, h, f: a quarter, half
 * and all of the capture size); the server sends each of us the layer that
 * fills our tile, so the page tells it how large it shows each member
 * (`media_view`, from `setViews`).
 *
 * Switching from a mesh (the call grew past `call.mesh_max`): each member's
 * mesh connection stays as its `standIn`, and its tile keeps showing it,
 * until the server connection has decoded the member's video (its stats
 * say so); then the mesh connection is closed. Members that do not play
 * within a few seconds switch anyway.
 */

import { ParamQueue, PathWatch } from "/static/js/path.js";

/** The simulcast layers of our video (the server knows these rids). */
const SIMULCAST = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];
/** A shared screen: one encoding at the captured size (text must stay sharp). */
const SCREEN_ENCODING = { maxBitrate: 2_500_000 };
/** The stream id suffix of a shared screen's track. */
const SCREEN_SUFFIX = ".screen";
/** Views are sent at most this often. */
const VIEW_EVERY_MS = 300;
/** After a reconnect: media from the server within this long means its path survived. */
const SURVIVAL_CHECK_MS = 200;
/** The path to the server is looked at this often (path.js). */
const WATCH_MS = 250;

/** Bytes of media received on `pc` so far (0 if its stats cannot be read). */
async function inboundBytes(pc) {
  let bytes = 0;
  try {
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp") bytes += s.bytesReceived || 0;
    });
  } catch {
    /* closed */
  }
  return bytes;
}

/** A participant of a media-server call, as the page sees it. */
export class RemoteMember {
  constructor(call, member) {
    this.call = call;
    this.id = member.id;
    this.user = member.user;
    this.nickname = member.nickname || "";
    this.remoteStream = new MediaStream();
    this.screenStream = new MediaStream(); // its shared screen, once it shared one
    this.remote = { audio: true, video: true, screen: false, known: false };
    this.closed = false;
    this.createdAt = performance.now();
    this.firstFrameAt = null;
    // Mesh-only fields the stats keep in their shape.
    this.polite = false;
    this.collisions = 0;
    // While switching from a mesh: the mesh Peer whose tile shows meanwhile.
    this.standIn = null;
  }

  /** Something changed: the page redraws, unless a stand-in still shows. */
  changed() {
    if (!this.standIn) this.call._emit("peer-updated", { peer: this });
  }

  /** Whether `report` (the server connection's stats) shows this member's media decoded. */
  playsIn(report) {
    const ids = new Set(this.remoteStream.getTracks().map((t) => t.id));
    let ready = false;
    report.forEach((s) => {
      if (s.type !== "inbound-rtp" || !ids.has(s.trackIdentifier)) return;
      // A few frames: the decoder is past its first keyframe and keeps up.
      if (s.kind === "video" ? s.framesDecoded >= 3 : !this.remote.video && s.packetsReceived > 0) ready = true;
    });
    return ready;
  }

  get state() {
    if (this.closed) return "closed";
    return this.call.server ? this.call.server.state : "new";
  }

  /** A track of this member arrived (or replaces one of the same kind). */
  addTrack(track) {
    const stream = this.remoteStream;
    for (const old of stream.getTracks()) {
      if (old.kind === track.kind && old !== track) stream.removeTrack(old);
    }
    if (!stream.getTracks().includes(track)) stream.addTrack(track);
    const update = () => this.changed();
    track.onmute = update;
    track.onunmute = update;
    track.onended = () => {
      stream.removeTrack(track);
      update();
    };
    update();
  }

  /** Its shared screen's track arrived. */
  addScreen(track) {
    const stream = this.screenStream;
    for (const old of stream.getTracks()) if (old !== track) stream.removeTrack(old);
    if (!stream.getTracks().includes(track)) stream.addTrack(track);
    track.onended = () => {
      stream.removeTrack(track);
      this.changed();
    };
    this.changed();
  }

  setState(state) {
    this.remote = {
      audio: state.audio !== false,
      video: state.video !== false,
      screen: state.screen === true,
      known: true,
    };
    this.changed();
  }

  close() {
    this.closed = true;
    if (this.standIn) this.standIn.close();
    this.standIn = null;
    for (const track of this.remoteStream.getTracks()) this.remoteStream.removeTrack(track);
    for (const track of this.screenStream.getTracks()) this.screenStream.removeTrack(track);
  }
}

/** The one connection to the media server. */
export class ServerSession {
  /** call: the Call; configuration: the RTCPeerConnection configuration. */
  constructor(call, configuration) {
    this.call = call;
    this.configuration = configuration;
    this.pc = null;
    this.audioTx = null;
    this.videoTx = null;
    this.screenTx = null;
    this.slots = new Map(); // mid of a receive m-line of our offer -> whose track it carries (or null)
    this.queue = Promise.resolve();
    this.ready = Promise.resolve(); // our offer's answer applied (see start)
    this.closed = false;
    this.restarting = false;
    this.views = []; // [{ from, width, height }] as the page last reported them
    this.viewsSent = "";
    this.viewTimer = null;
    this.watchTimer = null; // looks at the path to the server (`_watch`)
    this.path = null; // that path (path.js): silent, our video is paused
    this.params = new ParamQueue(); // setParameters calls, one at a time
    this.senderStatsHavePath = null; // whether a sender's statistics list the candidate pairs
  }

  get state() {
    if (this.closed || !this.pc) return "closed";
    const s = this.pc.connectionState;
    if (this.restarting && s !== "connected") return "reconnecting";
    return s;
  }

  /** Opens the connection and negotiates it with the server (`media_join`). */
  async start() {
    if (this.pc) this._closePc();
    // The server may offer the call's tracks as soon as it has answered us
    // (before ICE and DTLS are up): its offers wait until our side applied
    // that answer.
    let applied;
    this.ready = new Promise((resolve) => {
      applied = resolve;
    });
    const pc = new RTCPeerConnection(this.configuration);
    this.pc = pc;
    const { audio, video, screen } = this.call._serverOutgoing();
    this.audioTx = pc.addTransceiver(audio || "audio", { direction: "sendonly" });
    this.videoTx = pc.addTransceiver(video || "video", {
      direction: "sendonly",
      sendEncodings: SIMULCAST.map((layer) => ({ ...layer })),
    });
    this.screenTx = pc.addTransceiver(screen || "video", {
      direction: "sendonly",
      sendEncodings: [{ ...SCREEN_ENCODING }],
    });
    const members = [...this.call.peers.keys()].filter((id) => id !== this.call.client.id);
    const receivers = members.flatMap(() => [
      pc.addTransceiver("audio", { direction: "recvonly" }),
      pc.addTransceiver("video", { direction: "recvonly" }),
    ]);
    this.slots = new Map();
    pc.ontrack = ({ track, streams, transceiver }) => this._onTrack(track, streams, transceiver);
    pc.onconnectionstatechange = () => this._onConnectionState();
    this._watch(pc);
    try {
      await pc.setLocalDescription(await pc.createOffer());
      const ack = await this.call.client.mediaJoin(this.call.room, pc.localDescription.toJSON(), { screen: this.screenTx.mid });
      if (this.pc !== pc || this.closed) return;
      // Spare receive m-lines (a member without its tracks at the server yet) stay unused.
      for (const receiver of receivers) this.slots.set(receiver.mid, null);
      for (const { mid, from } of Array.isArray(ack.tracks) ? ack.tracks : []) {
        if (this.slots.has(mid)) this.slots.set(mid, from);
      }
      await pc.setRemoteDescription(ack.answer);
    } finally {
      applied();
    }
    this.sendState();
    this.viewsSent = ""; // a new session knows nothing of our tiles
    this._sendViews();
  }

  /** How large the page shows each member now: [{ from, width, height }]. */
  setViews(views) {
    this.views = views;
    if (!this.viewTimer) this.viewTimer = setTimeout(() => this._sendViews(), VIEW_EVERY_MS);
  }

  _sendViews() {
    clearTimeout(this.viewTimer);
    this.viewTimer = null;
    const body = JSON.stringify(this.views);
    if (this.closed || !this.pc || body === this.viewsSent || !this.call.client.connected) return;
    this.viewsSent = body;
    this.call.client.mediaView(this.call.room, this.views).catch((err) => {
      this.viewsSent = "";
      this.call._log("media_view failed", err);
    });
  }

  _onTrack(track, streams, transceiver) {
    const mid = transceiver ? transceiver.mid : null;
    // A receive m-line of our own offer: the join's ack said whose it is.
    const slot = this.slots.has(mid);
    const label = slot ? this.slots.get(mid) : streams && streams[0] ? streams[0].id : null;
    const screen = Boolean(label) && label.endsWith(SCREEN_SUFFIX);
    const id = screen ? label.slice(0, -SCREEN_SUFFIX.length) : label;
    if (!id || id === this.call.client.id) return;
    let member = this.call.peers.get(id);
    if (!member) {
      const known = this.call.lookup ? this.call.lookup(id) : null;
      member = this.call._addPeer(known || { id, nickname: "" });
    }
    if (screen) member.addScreen(track);
    else member.addTrack(track);
  }

  /** The server's offer: answer it, in arrival order. */
  onOffer(description) {
    this.queue = this.queue
      .then(() => this.ready)
      .then(async () => {
        if (this.closed || !this.pc) return;
        await this.pc.setRemoteDescription(description);
        await this.pc.setLocalDescription();
        await this.call.client.mediaAnswer(this.call.room, this.pc.localDescription.toJSON());
      })
      .catch((err) => this.call._log("media offer failed", err));
    return this.queue;
  }

  _onConnectionState() {
    if (this.closed) return;
    const s = this.pc.connectionState;
    if (s === "connected") this.restarting = false;
    if (s === "failed") this.restart();
    for (const member of this.call.peers.values()) member.changed();
  }

  /**
   * Our connection to the server dropped and the server kept this session
   * for us. If media from it still arrives (a link that came back with the
   * same address) the path survived and is left alone: restarting ICE
   * towards a server that is ICE-lite drops the old path at once, before
   * the browser may even list the returned interface. Otherwise an ICE
   * restart (`restartIce`).
   */
  async resume() {
    if (this.closed || !this.pc) return;
    const pc = this.pc;
    const before = await inboundBytes(pc);
    await new Promise((resolve) => setTimeout(resolve, SURVIVAL_CHECK_MS));
    if (this.closed || this.pc !== pc) return;
    if (pc.connectionState === "connected" && (await inboundBytes(pc)) > before) {
      this.call._log("media session: the path survived");
      this.sendState();
      this.viewsSent = ""; // told again under our new id
      this._sendViews();
      return;
    }
    this.restartIce();
  }

  /**
   * Our connection to the server dropped and the server kept this session
   * for us (`join_call` said `resumed`): the same session on the network
   * we have now, by an ICE restart we offer (`media_offer`). An offer of
   * the server's left half-done is rolled back (the server offers again
   * after our offer). If that fails, a new session.
   */
  restartIce() {
    if (this.closed || !this.pc) return;
    const pc = this.pc;
    this.restarting = true;
    this.call._log("media session: ICE restart");
    this.queue = this.queue
      .then(() => this.ready)
      .then(async () => {
        if (this.closed || this.pc !== pc) return;
        if (pc.signalingState !== "stable") await pc.setLocalDescription({ type: "rollback" });
        await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
        const ack = await this.call.client.mediaOffer(this.call.room, pc.localDescription.toJSON());
        if (this.closed || this.pc !== pc) return;
        await pc.setRemoteDescription(ack.answer);
        if (pc.connectionState === "connected") this.restarting = false;
        this.sendState();
        this.viewsSent = ""; // told again under our new id
        this._sendViews();
      })
      .catch((err) => {
        this.call._log("media session ICE restart failed", err);
        this.restarting = false;
        this.restart();
      });
    return this.queue;
  }

  /** A new session from a new offer (the old one failed or the server ended it). */
  restart() {
    if (this.closed || this.restarting) return;
    this.restarting = true;
    this.call._log("media session restart");
    this.start().catch((err) => {
      this.call._log("media session restart failed", err);
      this.restarting = false;
    });
  }

  /** Put the current outgoing tracks on the senders (no renegotiation). */
  async applyTracks() {
    if (!this.pc) return;
    const { audio, video, screen } = this.call._serverOutgoing();
    const jobs = [];
    if (this.audioTx && this.audioTx.sender.track !== audio) jobs.push(this.audioTx.sender.replaceTrack(audio));
    if (this.videoTx && this.videoTx.sender.track !== video) jobs.push(this.videoTx.sender.replaceTrack(video));
    if (this.screenTx && this.screenTx.sender.track !== screen) jobs.push(this.screenTx.sender.replaceTrack(screen));
    await Promise.all(jobs).catch((err) => this.call._log("replaceTrack failed", err));
  }

  /**
   * Watches the path to the server, as a mesh page watches each peer's
   * (path.js): when nothing at all comes in for SILENCE_MS
   * (no media, no feedback on ours, no ICE check), or the browser goes
   * offline, our video stops; the first thing heard again starts it, on a
   * keyframe. While the path is down the browser would otherwise queue the
   * frames it cannot send and deliver them seconds late when the path
   * returns: the server drops frames that late, so everyone waits for a
   * keyframe that comes after that backlog, and frames only a little late
   * still get through and make the others' browsers hold every later frame
   * (their receive timing takes the late ones for the new normal).
   */
  _watch(pc) {
    clearInterval(this.watchTimer);
    const path = new PathWatch(() => this._pathStats(pc), {
      onSilent: (why) => {
        this.call._log(`media session: ${why}: video paused`);
        this._setVideoActive(false);
      },
      onHeard: () => {
        this.call._log("media session: heard again: video resumed");
        this._setVideoActive(true);
      },
    });
    this.path = path;
    let looking = false;
    this.watchTimer = setInterval(async () => {
      if (looking || this.pc !== pc || this.closed) return;
      looking = true;
      await path.look(pc.connectionState === "connected");
      looking = false;
    }, WATCH_MS);
  }

  /**
   * Statistics that include the connection's candidate pairs: those of
   * one of our senders (a small report, even in a large call), or else the
   * whole connection's.
   */
  async _pathStats(pc) {
    const sender = [this.audioTx, this.videoTx].map((tx) => tx && tx.sender).find((s) => s && s.track);
    if (sender && this.senderStatsHavePath !== false) {
      const report = await sender.getStats();
      let path = false;
      report.forEach((s) => (path ||= s.type === "candidate-pair"));
      this.senderStatsHavePath = path;
      if (path) return report;
    }
    return pc.getStats();
  }

  /** The browser went offline: the path is down for sure, pause now (`_watch`). */
  lostNetwork() {
    if (!this.closed && this.pc && this.path) this.path.offline();
  }

  /** Turns every encoding of our camera and screen on or off. */
  _setVideoActive(active) {
    for (const tx of [this.videoTx, this.screenTx]) {
      const sender = tx && tx.sender;
      if (!sender || !sender.track) continue;
      this.params.edit(sender, (params) => {
        if (!params.encodings || params.encodings.every((e) => (e.active !== false) === active)) return false;
        params.encodings.forEach((e) => (e.active = active));
        return true;
      });
    }
  }

  /** Tells the call our microphone/camera/screen state. */
  sendState() {
    if (this.closed || !this.call.client.connected) return;
    this.call.client.mediaState(this.call.room, this.call.localState()).catch((err) => this.call._log("media_state failed", err));
  }

  _closePc() {
    clearInterval(this.watchTimer);
    this.watchTimer = null;
    const pc = this.pc;
    this.pc = null;
    if (!pc) return;
    pc.onconnectionstatechange = null;
    pc.ontrack = null;
    try {
      pc.close();
    } catch {
      /* already closed */
    }
  }

  close() {
    this.closed = true;
    clearTimeout(this.viewTimer);
    this._closePc();
  }
}
