/**
 * admin-api.js: the admin page's client of the server, with no DOM code.
 *
 * It owns the live connection to the `/admin` Socket.IO namespace (the
 * session cookie authenticates it) and the calls to the JSON API under
 * /admin/api/, which carry the page's CSRF token on every state change.
 *
 * Events dispatched (CustomEvent, payload in `detail`):
 *   overview  { version, uptime_secs, connections, rooms_total, rooms, relay, metrics }
 *   room      RoomDetail | null     the watched room (every second)
 *   status    { state }             connecting | connected | reconnecting | failed
 */
import { io } from "/static/vendor/socket.io/socket.io.esm.min.js";

export class AdminError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.name = "AdminError";
    this.status = status;
    this.code = code;
  }
}

export class AdminClient extends EventTarget {
  constructor(csrf) {
    super();
    this.csrf = csrf;
    this.watched = null;
    this.socket = io("/admin", { withCredentials: true });
    this.socket.on("connect", () => {
      this._emit("status", { state: "connected" });
      // A reconnection forgets what this page was looking at.
      if (this.watched !== null) this.watch(this.watched).catch(() => {});
    });
    this.socket.on("disconnect", (reason) => {
      this._emit("status", { state: "reconnecting" });
      // The server closed it (a logout elsewhere, an expired session, a
      // restart): try again; a refused handshake then leads to the login.
      if (reason === "io server disconnect") setTimeout(() => this.socket.connect(), 1000);
    });
    this.socket.on("connect_error", () => {
      // Refused handshakes mean the login expired: the page goes back to it.
      this._emit("status", { state: this.socket.active ? "reconnecting" : "failed" });
    });
    this.socket.on("overview", (overview) => this._emit("overview", overview));
    this.socket.on("room", (room) => this._emit("room", room));
  }

  on(type, handler) {
    const listener = (event) => handler(event.detail);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Follow one room (its members arrive as `room` events); null stops. */
  async watch(room) {
    this.watched = room;
    const reply = await this.socket.timeout(10000).emitWithAck("watch", room);
    if (!reply.ok) throw new AdminError(400, reply.error.code, reply.error.message);
    return reply.room ?? null;
  }

  async _request(method, path, query, payload) {
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(query || {})) {
      if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
    }
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = this.csrf;
    const init = { method, headers, credentials: "same-origin" };
    if (payload !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    const response = await fetch(url, init);
    let body = null;
    try {
      body = await response.json();
    } catch {
      /* not JSON */
    }
    if (!response.ok) {
      const error = body && body.error ? body.error : { code: "http_" + response.status };
      throw new AdminError(response.status, error.code, error.message);
    }
    return body;
  }

  room(name) {
    return this._request("GET", `/admin/api/rooms/${encodeURIComponent(name)}`);
  }

  /** A page of history: { before?, after?, limit? } like the chat's `history`. */
  messages(name, page) {
    return this._request("GET", `/admin/api/rooms/${encodeURIComponent(name)}/messages`, page);
  }

  disconnect(socketId) {
    return this._request("POST", `/admin/api/connections/${encodeURIComponent(socketId)}/disconnect`);
  }

  revokeUser(user) {
    return this._request("POST", `/admin/api/users/${encodeURIComponent(user)}/revoke`);
  }

  endCall(name) {
    return this._request("POST", `/admin/api/rooms/${encodeURIComponent(name)}/end-call`);
  }

  closeRoom(name) {
    return this._request("POST", `/admin/api/rooms/${encodeURIComponent(name)}/close`);
  }

  /**
   * What the room's host can do: action "set_host" | "mute" | "remove" |
   * "room_settings" | "admit", with its fields ({ to, from, locked, lobby, admit }).
   */
  moderate(name, action, fields) {
    return this._request("POST", `/admin/api/rooms/${encodeURIComponent(name)}/moderation`, null, { action, ...fields });
  }

  clearHistory(name) {
    return this._request("DELETE", `/admin/api/rooms/${encodeURIComponent(name)}/messages`);
  }

  deleteMessage(name, seq) {
    return this._request("DELETE", `/admin/api/rooms/${encodeURIComponent(name)}/messages/${seq}`);
  }
}
