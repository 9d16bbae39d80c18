/**
 * speakers.js: who is speaking in the call, for the page to highlight (no
 * DOM code; used by call.js).
 *
 * Through the media server, the server says it (`active_speaker`: it reads
 * the audio level each browser writes in its packets). In a mesh each page
 * works it out from its own connections' statistics: the audio level of
 * what each peer sends us. (Our own tile follows the microphone's level
 * meter in call-ui.js.) Each reading of a mesh connection also goes to
 * `Peer.observe`, which pauses our video to a peer that went silent.
 */

/** Statistics are read this often in a mesh. */
const POLL_MS = 400;
/** An audio level (0..1, 1 the loudest) above this is speech (about -40 dBov). */
const SPEECH_LEVEL = 0.01;
/** Speaking holds this long after the last loud moment: pauses between words do not end it. */
const HOLD_MS = 1200;

export class Speakers {
  /** call: the Call; it gets a "speakers" event ({ ids }) on each change. */
  constructor(call) {
    this.call = call;
    this.ids = [];
    this.lastLoud = new Map(); // id -> performance.now() of its last loud moment
    this.timer = null;
    this.polling = false;
  }

  /** The server's list (loudest first). */
  fromServer(ids) {
    this._set(ids);
  }

  /** Poll the mesh connections until `stop` (no-op through the media server: it tells us). */
  start() {
    if (this.timer) return;
    this.timer = setInterval(() => this._poll(), POLL_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.lastLoud.clear();
    this._set([]);
  }

  async _poll() {
    const call = this.call;
    if (call.mode !== "mesh" || this.polling) return;
    this.polling = true;
    try {
      const now = performance.now();
      for (const peer of [...call.peers.values()]) {
        if (!peer.pc || peer.closed) continue;
        let report;
        try {
          report = await peer.pc.getStats();
        } catch {
          continue; // closed meanwhile
        }
        report.forEach((s) => {
          if (s.type === "inbound-rtp" && s.kind === "audio" && (s.audioLevel || 0) > SPEECH_LEVEL) this.lastLoud.set(peer.id, now);
        });
        // The same reading tells whether the peer's path is alive (Peer.observe).
        if (!peer.closed) peer.observe(report, now);
      }
      for (const id of [...this.lastLoud.keys()]) if (!call.peers.has(id)) this.lastLoud.delete(id);
      const speaking = [...this.lastLoud.entries()]
        .filter(([, at]) => now - at < HOLD_MS)
        .sort((a, b) => b[1] - a[1])
        .map(([id]) => id);
      if (call.mode === "mesh") this._set(speaking);
    } finally {
      this.polling = false;
    }
  }

  _set(ids) {
    const same = ids.length === this.ids.length && ids.every((id) => this.ids.includes(id));
    if (same) return;
    this.ids = [...ids];
    this.call._emit("speakers", { ids: this.ids });
  }
}
