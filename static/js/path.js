/**
 * path.js: whether a connection's network path still works, and one change
 * at a time to a connection's senders (no DOM code; used by call.js for
 * each mesh peer and by call-sfu.js for the media-server session).
 *
 * A connection stays "connected" through a link that is down for seconds;
 * what tells is that nothing at all arrives: no media, no feedback on ours,
 * no ICE check. Media and feedback come many times a second, and ICE checks
 * every few seconds even when neither side sends media. While the path is
 * silent, the callers pause their video: frames made meanwhile would reach
 * the other side seconds late when the path returns (docs/benchmarks.md,
 * "Network change").
 */

/** Nothing at all heard this long: the path is down. */
export const SILENCE_MS = 1000;

/** Everything that came in on a connection's candidate pairs: media, feedback, ICE checks. */
export function heardIn(report) {
  let heard = 0;
  report.forEach((s) => {
    if (s.type === "candidate-pair") heard += (s.bytesReceived || 0) + (s.requestsReceived || 0) + (s.responsesReceived || 0);
  });
  return heard;
}

/**
 * One connection's path. `read()` resolves to a statistics report that
 * lists its candidate pairs; `onSilent(why)` is called when the path goes
 * silent ("nothing heard", or "offline"), `onHeard()` when something
 * arrives again.
 */
export class PathWatch {
  constructor(read, { onSilent, onHeard }) {
    this.read = read;
    this.onSilent = onSilent;
    this.onHeard = onHeard;
    this.total = -1; // what had come in at the last reading (heardIn)
    this.at = performance.now(); // when it last changed
    this.silent = false;
    this.settling = false; // `offline` is reading what came in so far
  }

  /** One reading of the statistics; `armed`: whether silence counts now (the connection was up). */
  reading(report, now, armed = true) {
    if (this.settling) return;
    const heard = heardIn(report);
    if (heard !== this.total) {
      this.total = heard;
      this.at = now;
      if (this.silent) {
        this.silent = false;
        this.onHeard();
      }
      return;
    }
    if (!this.silent && armed && now - this.at >= SILENCE_MS) {
      this.silent = true;
      this.onSilent("nothing heard");
    }
  }

  /** Reads the statistics itself (when no one else polls them). */
  async look(armed = true) {
    try {
      this.reading(await this.read(), performance.now(), armed);
    } catch {
      /* closed meanwhile */
    }
  }

  /**
   * The browser went offline: the path is down for sure, silent now rather
   * than after SILENCE_MS. What came in so far is the baseline; anything
   * more is the path coming back.
   */
  async offline() {
    if (this.silent) return;
    this.silent = true;
    this.settling = true;
    this.onSilent("offline");
    try {
      this.total = heardIn(await this.read());
    } catch {
      /* closed meanwhile */
    } finally {
      this.settling = false;
    }
  }
}

/**
 * Changes to senders' parameters, one at a time: two interleaved would
 * refuse each other (each must set what the latest `getParameters`
 * returned).
 */
export class ParamQueue {
  constructor() {
    this.last = Promise.resolve();
  }

  /** `change(params)` edits `sender`'s parameters (returns false to leave them); resolves to false if the browser refused them. */
  edit(sender, change) {
    const job = this.last.then(async () => {
      try {
        const params = sender.getParameters();
        if (change(params) !== false) await sender.setParameters(params);
        return true;
      } catch {
        return false; // not negotiated yet, or closed
      }
    });
    this.last = job;
    return job;
  }
}
