/**
 * protocol.js: Noom's browser-side client of the wire contract (Socket.IO v5).
 *
 * It exists so that the pages never touch the socket directly: this module
 * owns the connection, the session token in localStorage, the request/ack
 * convention ({ok:true,...} or {ok:false,error:{code,message}}) and the list
 * of server events. It has no DOM code; pages subscribe with `on()`.
 *
 * Events dispatched (CustomEvent, payload in `detail`):
 *   session      { session, user, nickname }
 *   room_change  { rooms: [RoomInfo] }
 *   welcome      { room, member, count }
 *   bye          { room, member, count, reason }   reason: left | removed | disconnected
 *   member_update{ room, member }
 *   new_message  { message }
 *   peer_joined  { room, member }          someone joined a call we are in
 *   peer_left    { room, member, reason }  someone left it (before their `bye`)
 *   kicked       { reason, message }      an administrator closed this connection
 *                                        (no automatic reconnect follows)
 *   room_closed  { room }                 an administrator closed the room
 *   call_ended   { room }                 an administrator ended the room's call
 *   history_cleared { room }              an administrator deleted the history
 *   message_deleted { room, seq }         an administrator deleted one message
 *   media_offer  { room, description }   the media server offers a new description
 *   media_closed { room }                the media server ended our session
 *   media_state  { room, state }         a participant's { from, audio, video, screen }
 *   call_media   { room, media }         the call moved to the media server ("sfu")
 *   active_speaker { room, speakers }    who speaks now, loudest first (socket ids)
 *   hands        { room, hands }         raised hands in the order they went up (socket ids)
 *   reaction     { room, from, emoji }   someone of the call reacted
 *                                        (calls through the media server)
 *   signal       { kind, from, description?, candidate? }
 *                kind: offer | answer | ice (WebRTC negotiation relayed by the server)
 *   connect      { reconnect: boolean }   every (re)connection
 *   reconnect    {}                       only after a previous connection
 *   disconnect   { reason }
 *   status       { state }  connecting | connected | reconnecting | reconnected | failed | kicked
 *
 * A connection can die without the browser noticing (its network changed
 * under it: a laptop on another Wi-Fi, a phone off Wi-Fi): `checkAlive()`
 * asks the server (`alive`, a cheap acknowledged request) and, with no
 * answer within ALIVE_TIMEOUT_MS, closes the connection and reconnects at
 * once. It runs on the browser's network events, when the page comes back
 * to the foreground, when a call's media stalls, and every HEARTBEAT_MS
 * while `keepAlive(true)` (in a call), so a dead connection is found in
 * about two seconds instead of the Engine.IO ping's 45. While a call's media
 * still arrives (`mediaArriving`), the network evidently works: a late
 * answer is then a busy server's, and the check waits up to
 * ALIVE_PATIENCE_MS.
 */
import { io } from "/static/vendor/socket.io/socket.io.esm.min.js";

const SESSION_KEY = "noom.session";
const ACK_TIMEOUT_MS = 10000;
const ALIVE_TIMEOUT_MS = 1500; // an `alive` not answered this long: the connection is dead
const ALIVE_PATIENCE_MS = 6000; // ...unless media still arrives (`mediaArriving`): then up to this long
const ALIVE_SLOW_MS = 800; // ...and the banner says "reconnecting" once it is this late
const HEARTBEAT_MS = 1000; // checks while keepAlive(true)
const STEP_MS = 100; // how often a check looks at the clock
const STEP_MAX_MS = 100; // ...and the most one look may count (a late look, on a busy page, counts no more)

/** An error from the server's ack, or a local one (timeout, offline). */
export class ProtocolError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "ProtocolError";
    this.code = code;
  }
}

// localStorage can throw (disabled storage, private modes): fall back to memory.
let memoryToken = null;
function loadToken() {
  try {
    return localStorage.getItem(SESSION_KEY) || memoryToken;
  } catch {
    return memoryToken;
  }
}
function saveToken(token) {
  memoryToken = token;
  try {
    if (token) localStorage.setItem(SESSION_KEY, token);
    else localStorage.removeItem(SESSION_KEY);
  } catch {
    /* memory only */
  }
}

export class NoomClient extends EventTarget {
  constructor(url) {
    super();
    this.user = null;
    this.nickname = null;
    this.rooms = [];
    this.state = "connecting";
    this._everConnected = false;
    this._droppedToken = false;
    this._kicked = false;

    const options = {
      // Retries come soon and stay frequent (0.5 s, then at most every 2 s,
      // with jitter): a laptop whose link returns is back within a couple of
      // seconds, not after the default's 5 s backoff.
      reconnectionDelay: 500,
      reconnectionDelayMax: 2000,
      // Function form: every (re)connection sends the latest stored token.
      auth: (cb) => {
        const session = loadToken();
        cb(session ? { session } : {});
      },
    };
    this.socket = url ? io(url, options) : io(options);
    this._checking = null; // the `alive` check in flight
    // Set by a call: whether media still arrives from the others. Then the
    // network works, and a late answer is a busy server's, not a dead
    // connection's: the check waits longer before it gives up.
    this.mediaArriving = () => false;
    this._heartbeat = null;
    this._wire();
    // The network changed, or the page is back: is the connection still alive?
    const check = () => this.checkAlive();
    // The network is back while we wait to retry: retry now.
    window.addEventListener("online", () => (this.socket.connected ? check() : this._reconnectNow()));
    window.addEventListener("offline", check);
    if (navigator.connection && navigator.connection.addEventListener) navigator.connection.addEventListener("change", check);
    document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && check());
  }

  /**
   * Asks the server whether this connection still works; resolves true if
   * it answered. Without an answer in time the connection is closed and a
   * new one opened at once (the page then re-enters its rooms as after any
   * reconnect). One check at a time.
   */
  checkAlive() {
    if (!this.socket.connected) return Promise.resolve(false);
    if (this._checking) return this._checking;
    const socket = this.socket;
    const id = socket.id;
    const before = this.state;
    this._checking = new Promise((resolve) => {
      // Time is counted in short steps, each worth at most STEP_MAX_MS: a
      // page whose thread was busy (a heavy call on a slow machine) has not
      // waited for the server all that while, and must not give up on it.
      let waited = 0;
      let last = performance.now();
      let answered = false;
      let patient = false;
      const finish = (alive) => {
        clearInterval(timer);
        resolve(alive);
      };
      const timer = setInterval(() => {
        const now = performance.now();
        waited += Math.min(now - last, STEP_MAX_MS);
        last = now;
        if (answered) return;
        if (waited >= ALIVE_SLOW_MS && this.state !== "reconnecting") this._setState("reconnecting");
        if (waited >= ALIVE_TIMEOUT_MS) {
          if (waited < ALIVE_PATIENCE_MS && this.mediaArriving()) {
            if (!patient) console.info("noom: the server answers slowly, but media still arrives: waiting");
            patient = true;
            return;
          }
          finish(false);
          if (socket.connected && socket.id === id) this._reconnectNow();
        }
      }, STEP_MS);
      socket.emitWithAck("alive").then(
        () => {
          answered = true;
          if (this.state === "reconnecting" && socket.connected && socket.id === id) this._setState(before);
          finish(true);
        },
        () => finish(false),
      );
    }).finally(() => {
      this._checking = null;
    });
    return this._checking;
  }

  /** Checks every HEARTBEAT_MS while `on` (a call is running). */
  keepAlive(on) {
    clearInterval(this._heartbeat);
    this._heartbeat = on ? setInterval(() => this.checkAlive(), HEARTBEAT_MS) : null;
  }

  /** Drops a dead connection and opens a new one now (no backoff for this first try). */
  _reconnectNow() {
    if (this._kicked || this.state === "failed") return;
    if (!this.socket.connected) {
      // Waiting out a retry delay: start over at once.
      if (!this._everConnected) return;
      console.info("noom: the network is back; reconnecting now");
      this.socket.disconnect();
      this.socket.connect();
      return;
    }
    console.info("noom: the connection stopped answering; reconnecting");
    const manager = this.socket.io;
    const delay = manager.reconnectionDelay();
    manager.reconnectionDelay(0);
    const restore = () => {
      manager.reconnectionDelay(delay);
      manager.off("reconnect_attempt", restore);
    };
    manager.on("reconnect_attempt", restore);
    this._setState("reconnecting");
    manager.engine.close();
  }

  /** The socket id of this connection (= Member.id), or undefined while offline. */
  get id() {
    return this.socket.id;
  }

  get connected() {
    return this.socket.connected;
  }

  /**
   * Leaves every room and call at once when the page goes away (tab closed,
   * navigation): the others see us go now, not whenever the browser gets
   * round to closing the connection. A page restored from the back/forward
   * cache connects again (and the page re-enters its rooms as after any
   * reconnect).
   */
  closeWithPage() {
    window.addEventListener("pagehide", () => this.socket.disconnect());
    window.addEventListener("pageshow", (event) => {
      if (event.persisted && !this.socket.connected) this.socket.connect();
    });
  }

  /** Subscribe to an event; the handler gets `detail`. Returns an unsubscribe function. */
  on(type, handler) {
    const listener = (event) => handler(event.detail);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  _emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("status", { state });
  }

  _wire() {
    const s = this.socket;

    s.on("connect", () => {
      const reconnect = this._everConnected;
      this._everConnected = true;
      this._droppedToken = false;
      this._setState(reconnect ? "reconnected" : "connected");
      this._emit("connect", { reconnect });
      if (reconnect) this._emit("reconnect");
    });

    s.on("disconnect", (reason) => {
      if (reason !== "io client disconnect") console.info(`noom: disconnected (${reason})`);
      this._emit("disconnect", { reason });
      if (reason === "io client disconnect") {
        this._setState("failed");
        return;
      }
      if (this._kicked) {
        this._setState("kicked");
        return;
      }
      this._setState("reconnecting");
      // The client does not reconnect by itself after a server-side
      // disconnect (e.g. a graceful shutdown): try again shortly.
      if (reason === "io server disconnect") {
        setTimeout(() => s.connect(), 1000 + Math.random() * 1000);
      }
    });

    s.on("connect_error", (err) => {
      if (s.active) {
        // Transport-level failure: the manager retries with backoff.
        this._setState(this._everConnected ? "reconnecting" : "connecting");
        return;
      }
      // The server refused the handshake. A stale token is the likely cause:
      // drop it once and start a fresh session; otherwise give up visibly.
      if (!this._droppedToken && loadToken()) {
        this._droppedToken = true;
        saveToken(null);
        s.connect();
        return;
      }
      this._setState("failed");
      console.warn("noom: connection refused", err && err.message);
    });

    s.io.on("reconnect_attempt", () => this._setState("reconnecting"));

    s.on("session", (data) => {
      if (!data || typeof data !== "object") return;
      if (data.session) saveToken(data.session);
      this.user = data.user ?? null;
      this.nickname = data.nickname ?? null;
      this._emit("session", { session: data.session, user: this.user, nickname: this.nickname });
    });

    s.on("room_change", (rooms) => {
      this.rooms = Array.isArray(rooms) ? rooms : [];
      this._emit("room_change", { rooms: this.rooms });
    });

    s.on("welcome", (room, member, count) => this._emit("welcome", { room, member, count }));
    // Why someone left: "left", "removed", or "disconnected" (it may be back in a moment).
    const reasonOf = (info) => (info && typeof info.reason === "string" ? info.reason : "left");
    s.on("bye", (room, member, count, info) => this._emit("bye", { room, member, count, reason: reasonOf(info) }));
    s.on("member_update", (room, member) => {
      if (member && member.user === this.user) this.nickname = member.nickname;
      this._emit("member_update", { room, member });
    });
    s.on("new_message", (message) => this._emit("new_message", { message }));

    s.on("kicked", (info) => {
      this._kicked = true;
      const detail = info && typeof info === "object" ? info : {};
      this._emit("kicked", { reason: detail.reason ?? "disconnected", message: detail.message ?? "" });
    });
    s.on("room_closed", (room) => this._emit("room_closed", { room }));
    s.on("call_ended", (room) => this._emit("call_ended", { room }));
    s.on("history_cleared", (room) => this._emit("history_cleared", { room }));
    s.on("message_deleted", (room, seq) => this._emit("message_deleted", { room, seq }));

    // Moderation (docs/protocol.md): the room's host, lock and lobby.
    s.on("room_settings", (room, settings) => {
      if (!settings || typeof settings !== "object") return;
      this._emit("room_settings", {
        room,
        host: typeof settings.host === "string" ? settings.host : null,
        locked: settings.locked === true,
        lobby: settings.lobby === true,
      });
    });
    s.on("lobby", (room, info) => {
      const waiting = info && Array.isArray(info.waiting) ? info.waiting.filter((m) => m && typeof m.id === "string") : [];
      this._emit("lobby", { room, waiting });
    });
    s.on("admission", (room, info) => this._emit("admission", { room, admitted: Boolean(info && info.admitted) }));
    s.on("muted", (room, info) => this._emit("muted", { room, by: (info && info.by) || null }));
    s.on("removed", (room, info) => {
      const detail = info && typeof info === "object" ? info : {};
      this._emit("removed", { room, from: detail.from === "room" ? "room" : "call", by: detail.by || null });
    });

    s.on("peer_joined", (room, member) => this._emit("peer_joined", { room, member }));
    s.on("peer_left", (room, member, info) => this._emit("peer_left", { room, member, reason: reasonOf(info) }));
    s.on("media_offer", (room, description) => this._emit("media_offer", { room, description }));
    s.on("media_closed", (room) => this._emit("media_closed", { room }));
    s.on("media_state", (room, state) => this._emit("media_state", { room, state }));
    s.on("call_media", (room, media) => this._emit("call_media", { room, media }));
    s.on("hands", (room, info) => {
      const hands = info && Array.isArray(info.hands) ? info.hands.filter((id) => typeof id === "string") : [];
      this._emit("hands", { room, hands });
    });
    s.on("reaction", (room, info) => {
      if (!info || typeof info.from !== "string" || typeof info.emoji !== "string") return;
      this._emit("reaction", { room, from: info.from, emoji: info.emoji });
    });
    s.on("active_speaker", (room, info) => {
      const speakers = info && Array.isArray(info.speakers) ? info.speakers.filter((x) => typeof x === "string") : [];
      this._emit("active_speaker", { room, speakers });
    });
    for (const kind of ["offer", "answer", "ice"]) {
      s.on(kind, (data) => {
        if (!data || typeof data !== "object" || typeof data.from !== "string") return;
        const detail = { kind, from: data.from };
        if (kind === "ice") detail.candidate = data.candidate ?? null;
        else detail.description = data.description;
        this._emit("signal", detail);
      });
    }
  }

  /**
   * Send a request and resolve with its success ack. Rejects with a
   * ProtocolError: the server's code, or `offline` / `timeout` locally.
   * Requests are not buffered while offline (a late resend could duplicate
   * a message the user already retried).
   */
  async request(event, ...args) {
    if (!this.socket.connected) {
      throw new ProtocolError("offline", "Not connected to the server.");
    }
    let ack;
    try {
      ack = await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, ...args);
    } catch {
      // The connection may have died under us: find out now, not at the
      // next Engine.IO ping.
      this.checkAlive();
      throw new ProtocolError("timeout", "The server did not answer in time.");
    }
    if (!ack || typeof ack !== "object") {
      throw new ProtocolError("internal", "Malformed answer from the server.");
    }
    if (ack.ok !== true) {
      const error = ack.error || {};
      throw new ProtocolError(error.code || "internal", error.message || "Request failed.");
    }
    return ack;
  }

  /** -> { ok, nickname } */
  async setNickname(name) {
    const ack = await this.request("nickname", name);
    this.nickname = ack.nickname;
    return ack;
  }

  /** -> { ok, rooms } */
  listRooms() {
    return this.request("rooms");
  }

  /** options: { after?, limit? } -> { ok, room, count, members, messages } */
  enterRoom(room, options) {
    return options ? this.request("enter_room", room, options) : this.request("enter_room", room);
  }

  /** -> { ok } */
  leaveRoom(room) {
    return this.request("leave_room", room);
  }

  /** -> { ok, message } */
  sendMessage(room, text) {
    return this.request("new_message", room, text);
  }

  /** options: { before?, after?, limit? } -> { ok, messages } */
  history(room, options = {}) {
    return this.request("history", room, options);
  }

  /**
   * -> { ok, peers: [Member], iceServers: [RTCIceServer], media, hands };
   * options.was: our socket id before a reconnect (the others keep their
   * connections to us).
   */
  joinCall(room, options) {
    return options ? this.request("join_call", room, options) : this.request("join_call", room);
  }

  /** -> { ok } */
  leaveCall(room) {
    return this.request("leave_call", room);
  }

  /**
   * Start a session with the media server from our offer -> { ok, answer }.
   * options.screen: the mid of the offer's m-line that carries a shared screen.
   */
  mediaJoin(room, offer, options = {}) {
    return this.request("media_join", room, offer, options);
  }

  /** A new offer of ours within the media session (an ICE restart) -> { ok, answer } */
  mediaOffer(room, offer) {
    return this.request("media_offer", room, offer);
  }

  /** Answer the media server's offer -> { ok } */
  mediaAnswer(room, answer) {
    return this.request("media_answer", room, answer);
  }

  /**
   * Tell the media server how large we show each participant's video:
   * views = [{ from, width, height }] in device pixels (0: not shown) -> { ok }
   */
  mediaView(room, views) {
    return this.request("media_view", room, views);
  }

  /** Raise or lower our hand in the call -> { ok, hands } */
  raiseHand(room, raised) {
    return this.request("raise_hand", room, { raised: Boolean(raised) });
  }

  /** Send an emoji to the call (one of the server's six) -> { ok } */
  react(room, emoji) {
    return this.request("reaction", room, { emoji });
  }

  /**
   * A host's action in the room -> { ok, ... }: kind is "set_host", "mute",
   * "remove" ({ to, from: "call" | "room" }), "room_settings" ({ locked?,
   * lobby? }) or "admit" ({ to, admit }).
   */
  moderate(kind, room, options) {
    return this.request(kind, room, options);
  }

  /** Tell the call our { audio, video, screen } (media server calls) -> { ok } */
  mediaState(room, state) {
    return this.request("media_state", room, state);
  }

  /**
   * Relay one WebRTC negotiation message to the call participant `to`:
   * kind "offer" | "answer" with `{ type, sdp }`, or "ice" with an
   * RTCIceCandidate (JSON) or null (end of candidates). Fire and forget (the
   * ack is optional): a signal is dropped while offline rather than buffered,
   * since the peer ids it names do not survive a reconnect.
   */
  signal(kind, to, payload) {
    if (!this.socket.connected) return false;
    const field = kind === "ice" ? "candidate" : "description";
    const body = { to, [field]: payload ?? null };
    if (field === "description" && payload && typeof payload.toJSON === "function") {
      body.description = payload.toJSON();
    } else if (field === "candidate" && payload && typeof payload.toJSON === "function") {
      body.candidate = payload.toJSON();
    }
    this.socket.emit(kind, body);
    return true;
  }
}
