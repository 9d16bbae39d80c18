/**
 * devices.js: camera, microphone and screen capture, and the level meter.
 *
 * It exists to keep getUserMedia / getDisplayMedia / enumerateDevices and
 * their many failure modes in one place, and to turn each failure into one of
 * a few named reasons the page can explain (MediaFailure.reason):
 *   insecure  no navigator.mediaDevices: a plain-HTTP origin away from localhost
 *   denied    the person or the browser refused the permission
 *   noDevice  no camera and no microphone
 *   busy      the device exists but cannot be opened (used by another program)
 *   media     anything else (detail in .message)
 * No DOM code here apart from reading the browser's media APIs.
 */

/**
 * The camera is opened at the largest size a call may send
 * (`serverSendHeight`, 720p by default): the media server gets it in three
 * layers, and each mesh connection's encoder scales it to MESH_SEND_HEIGHT.
 */
const VIDEO = { frameRate: { ideal: 24, max: 30 } };
/** The capture height of a mesh call: enough for a 6-tile mesh without melting a laptop. */
export const MESH_SEND_HEIGHT = 360;

/**
 * The capture height of a call through the media server, the top of its
 * three simulcast layers (a quarter, half and all of it): 720, unless
 * `localStorage["noom.sendHeight"]` says 360 or 180 (a slow uplink or CPU).
 */
export function serverSendHeight() {
  let asked = 0;
  try {
    asked = Number(localStorage.getItem("noom.sendHeight"));
  } catch {
    /* storage blocked: the default */
  }
  return [180, 360, 720].includes(asked) ? asked : 720;
}

/** Camera constraints for `height` lines (16:9). */
function captureConstraints(height) {
  return { width: { ideal: Math.round((height * 16) / 9) }, height: { ideal: height }, frameRate: { ...VIDEO.frameRate } };
}
const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

export class MediaFailure extends Error {
  constructor(reason, message) {
    super(message || reason);
    this.name = "MediaFailure";
    this.reason = reason;
  }
}

/** getUserMedia exists only in secure contexts (https://, localhost). */
export function mediaSupported() {
  return Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
}

export function screenShareSupported() {
  return Boolean(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
}

function classify(err) {
  if (err instanceof MediaFailure) return err;
  const name = err && err.name;
  switch (name) {
    case "NotAllowedError":
    case "SecurityError":
    case "PermissionDeniedError":
      return new MediaFailure("denied", err.message);
    case "NotFoundError":
    case "DevicesNotFoundError":
    case "OverconstrainedError":
      return new MediaFailure("noDevice", err.message);
    case "NotReadableError":
    case "TrackStartError":
    case "AbortError":
      return new MediaFailure("busy", err.message);
    default:
      return new MediaFailure("media", (err && (err.message || name)) || "unknown error");
  }
}

function videoConstraints(deviceId) {
  const size = captureConstraints(serverSendHeight());
  return deviceId ? { ...size, deviceId: { exact: deviceId } } : size;
}

function audioConstraints(deviceId) {
  return deviceId ? { ...AUDIO, deviceId: { exact: deviceId } } : { ...AUDIO };
}

/** One track of `kind` ("audio" | "video") from `deviceId` (or the default). */
export async function getTrack(kind, deviceId) {
  if (!mediaSupported()) throw new MediaFailure("insecure");
  const constraints =
    kind === "audio" ? { audio: audioConstraints(deviceId) } : { video: videoConstraints(deviceId) };
  try {
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    return stream.getTracks()[0];
  } catch (err) {
    if (deviceId && err && err.name === "OverconstrainedError") return getTrack(kind, null);
    throw classify(err);
  }
}

/**
 * Camera and microphone, asked for together (one permission prompt), falling
 * back to whichever exists. Resolves { audio, video, missing } where a missing
 * kind is null and listed in `missing`; rejects with a MediaFailure when
 * nothing at all could be opened.
 */
export async function getCameraAndMic({ audioId = null, videoId = null, video = true } = {}) {
  if (!mediaSupported()) throw new MediaFailure("insecure");
  const md = navigator.mediaDevices;
  try {
    const stream = await md.getUserMedia({
      audio: audioConstraints(audioId),
      video: video ? videoConstraints(videoId) : false,
    });
    return {
      audio: stream.getAudioTracks()[0] || null,
      video: stream.getVideoTracks()[0] || null,
      missing: video ? [] : ["video"],
    };
  } catch (err) {
    const failure = classify(err);
    if (failure.reason === "denied" || failure.reason === "insecure") throw failure;
    // One of the two may be missing or busy: try each alone.
    const [audio, videoTrack] = await Promise.all([
      getTrack("audio", audioId).catch((e) => e),
      video ? getTrack("video", videoId).catch((e) => e) : Promise.resolve(null),
    ]);
    const ok = (t) => t && !(t instanceof Error);
    if (!ok(audio) && !ok(videoTrack)) {
      const reasons = [audio, videoTrack].filter((e) => e instanceof MediaFailure).map((e) => e.reason);
      if (reasons.includes("denied")) throw new MediaFailure("denied");
      if (reasons.includes("busy")) throw new MediaFailure("busy");
      throw failure.reason === "media" ? failure : new MediaFailure("noDevice");
    }
    const missing = [];
    if (!ok(audio)) missing.push("audio");
    if (!ok(videoTrack)) missing.push("video");
    return { audio: ok(audio) ? audio : null, video: ok(videoTrack) ? videoTrack : null, missing };
  }
}

/** The screen (or a window or tab), video only. */
export async function getScreen() {
  if (!screenShareSupported()) throw new MediaFailure("unsupported");
  try {
    const stream = await navigator.mediaDevices.getDisplayMedia({
      video: { frameRate: { ideal: 15, max: 30 } },
      audio: false,
    });
    const track = stream.getVideoTracks()[0];
    if ("contentHint" in track) track.contentHint = "detail";
    return track;
  } catch (err) {
    throw classify(err);
  }
}

/** { audio: [MediaDeviceInfo], video: [MediaDeviceInfo] } (labels only after a grant). */
export async function listDevices() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) {
    return { audio: [], video: [] };
  }
  const all = await navigator.mediaDevices.enumerateDevices();
  return {
    audio: all.filter((d) => d.kind === "audioinput" && d.deviceId),
    video: all.filter((d) => d.kind === "videoinput" && d.deviceId),
  };
}

/** Call `handler` when devices are plugged in or out. Returns an unsubscribe function. */
export function onDeviceChange(handler) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.addEventListener) return () => {};
  navigator.mediaDevices.addEventListener("devicechange", handler);
  return () => navigator.mediaDevices.removeEventListener("devicechange", handler);
}

/** Whether the camera permission is already granted (so a preview may start unasked). */
export async function cameraGranted() {
  try {
    const [cam, mic] = await Promise.all([
      navigator.permissions.query({ name: "camera" }),
      navigator.permissions.query({ name: "microphone" }),
    ]);
    return cam.state === "granted" || mic.state === "granted";
  } catch {
    return false;
  }
}

/**
 * Microphone level, 0..1, reported to `onLevel` about 12 times a second while
 * a track is attached. One AudioContext per meter, resumed on the first click
 * (browsers start it suspended without a user gesture).
 */
export class LevelMeter {
  constructor(onLevel) {
    this.onLevel = onLevel;
    this.ctx = null;
    this.source = null;
    this.analyser = null;
    this.timer = null;
    this.data = null;
  }

  attach(track) {
    this.detach();
    if (!track || !window.AudioContext) return;
    if (!this.ctx) {
      this.ctx = new AudioContext();
      const resume = () => this.ctx && this.ctx.state === "suspended" && this.ctx.resume();
      document.addEventListener("pointerdown", resume, { capture: true });
      document.addEventListener("keydown", resume, { capture: true });
    }
    if (this.ctx.state === "suspended") this.ctx.resume().catch(() => {});
    this.source = this.ctx.createMediaStreamSource(new MediaStream([track]));
    this.analyser = this.ctx.createAnalyser();
    this.analyser.fftSize = 512;
    this.data = new Float32Array(this.analyser.fftSize);
    this.source.connect(this.analyser);
    this.timer = setInterval(() => this._sample(track), 80);
  }

  _sample(track) {
    if (!this.analyser) return;
    if (!track.enabled || track.readyState !== "live") {
      this.onLevel(0);
      return;
    }
    this.analyser.getFloatTimeDomainData(this.data);
    let sum = 0;
    for (const v of this.data) sum += v * v;
    const rms = Math.sqrt(sum / this.data.length);
    // Speech RMS sits around 0.01..0.3: map to 0..1 on a log scale.
    const level = Math.max(0, Math.min(1, (20 * Math.log10(rms + 1e-8) + 60) / 50));
    this.onLevel(level);
  }

  detach() {
    clearInterval(this.timer);
    this.timer = null;
    if (this.source) this.source.disconnect();
    this.source = null;
    this.analyser = null;
    this.onLevel(0);
  }
}
