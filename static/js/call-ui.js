/**
 * call-ui.js: the video-call part of the room page (DOM only).
 *
 * It exists to draw what call.js does: the pre-join preview (camera and
 * microphone pickers, level meter, the reason when media cannot start), the
 * grid of tiles (one per participant, with nickname, mute state and
 * connection state; removed the moment a peer goes), the call controls, and
 * the explanation of every failure. Chat never depends on any of it.
 *
 * Also exposes `window.noomCall`, a small read-only hook for the browser
 * tests and the set-up benchmark (participant states, per-peer stats, and
 * when the first remote frame of each peer was shown).
 */
import { Call } from "/static/js/call.js";
import { LevelMeter, cameraGranted, listDevices, mediaSupported, onDeviceChange, screenShareSupported } from "/static/js/devices.js";
import { errorText, t } from "/static/js/i18n.js";
import { fieldError, icon, initials, setButton } from "/static/js/ui.js";
import { CallLayout } from "/static/js/layout.js";

const $ = (id) => document.getElementById(id);
// A join that failed with one of these (the connection dropped or the server
// was slow while it ran) is tried again, for this long after the click.
const JOIN_TRANSIENT = new Set(["timeout", "offline", "unavailable"]);
const JOIN_RETRY_WITHIN_MS = 30000;
const JOIN_TRIES = 3;
const JOIN_RETRY_PAUSE_MS = 1000; // before a retry on a connection that still answers

export function setupCall({ client, room, lookup, notice }) {
  const call = new Call(client, room);
  call.lookup = lookup;

  const stage = $("stage");
  const prejoin = $("prejoin");
  const previewVideo = $("preview-video");
  const previewAvatar = $("preview-avatar");
  const previewLevelBar = $("preview-level-bar");
  const pickers = $("device-pickers");
  const cameraSelect = $("camera-select");
  const micSelect = $("mic-select");
  const level = $("level");
  const levelBar = $("level-bar");
  const mediaError = $("media-error");
  // Shown with the insecure-origin error: how the operator turns HTTPS on.
  const httpsHelp = $("https-help");
  const startPreviewButton = $("start-preview");
  const joinButton = $("join-call");
  const grid = $("grid");
  const controls = $("controls");
  const muteButton = $("mute");
  const cameraButton = $("camera");
  const shareButton = $("share");
  const devicesToggle = $("devices-toggle");
  const devicesPanel = $("devices-panel");
  const leaveButton = $("leave-call");
  const handButton = $("raise-hand");
  const reactButton = $("react");
  const reactionsPanel = $("reactions-panel");
  const shortcutsButton = $("shortcuts-open");
  const shortcutsDialog = $("shortcuts-dialog");
  const nameInput = $("prejoin-name");
  const nameError = $("prejoin-name-error");
  const callStatus = $("call-status");
  const layoutButton = $("layout-toggle");

  let phase = "prejoin"; // prejoin | joining | incall
  let selfTile = null;
  const tiles = new Map(); // peer id -> { el, video, peer }
  const screens = new Map(); // peer id -> the tile of its shared screen (media server calls)
  const timings = { joinClickedAt: null, joinedAt: null, firstFrame: {} };
  let speaking = false;

  // ---- messages ------------------------------------------------------------

  function mediaMessage(err) {
    switch (err && err.reason) {
      case "insecure":
        return t("err.insecure");
      case "denied":
        return t("err.denied");
      case "noDevice":
        return t("err.noDevice");
      case "busy":
        return t("err.busy");
      default:
        return t("err.media", { detail: (err && err.message) || "?" });
    }
  }

  function showMediaError(text, reason) {
    mediaError.textContent = text || "";
    mediaError.hidden = !text;
    if (reason) mediaError.dataset.reason = reason;
    else delete mediaError.dataset.reason;
    httpsHelp.hidden = reason !== "insecure";
  }

  let statusTimer = null;
  function showCallStatus(text, { error = false, code = null, sticky = false } = {}) {
    clearTimeout(statusTimer);
    callStatus.textContent = text || "";
    callStatus.classList.toggle("error", error);
    if (code) callStatus.dataset.code = code;
    else delete callStatus.dataset.code;
    if (text && !sticky) statusTimer = setTimeout(() => showCallStatus(""), 6000);
  }

  // ---- level meter -----------------------------------------------------------

  const meter = new LevelMeter((value) => {
    const pct = Math.round(value * 100);
    levelBar.style.transform = `scaleX(${value})`;
    previewLevelBar.style.transform = `scaleX(${value})`;
    level.setAttribute("aria-valuenow", String(pct));
    const now = value > 0.35;
    if (now !== speaking && selfTile) {
      selfTile.el.dataset.speaking = String(now);
      relabel(selfTile);
    }
    speaking = now;
  });
  let meteredTrack = null;
  function updateMeter() {
    if (call.audio === meteredTrack) return;
    meteredTrack = call.audio;
    if (meteredTrack) meter.attach(meteredTrack);
    else meter.detach();
  }

  // ---- device pickers -------------------------------------------------------

  function fillSelect(select, devices, currentId, kindLabel, noneLabel) {
    const options = devices.map((device, i) => {
      const option = document.createElement("option");
      option.value = device.deviceId;
      option.textContent = device.label || t("call.deviceN", { kind: kindLabel, n: i + 1 });
      return option;
    });
    if (!options.length) {
      const option = document.createElement("option");
      option.value = "";
      option.textContent = noneLabel;
      options.push(option);
    }
    select.replaceChildren(...options);
    select.disabled = !devices.length;
    if (currentId && devices.some((d) => d.deviceId === currentId)) select.value = currentId;
  }

  async function refreshDevices() {
    const { audio, video } = await listDevices().catch(() => ({ audio: [], video: [] }));
    const videoId = (call.camera && call.camera.getSettings().deviceId) || call.videoId;
    const audioId = (call.audio && call.audio.getSettings().deviceId) || call.audioId;
    fillSelect(cameraSelect, video, videoId, t("call.camera"), t("call.noCameraOption"));
    fillSelect(micSelect, audio, audioId, t("call.microphone"), t("call.noMicOption"));
  }

  async function onPick(kind, select) {
    select.disabled = true;
    try {
      await call.switchDevice(kind, select.value);
    } catch (err) {
      showCallStatus(t("err.switchFailed", { detail: mediaMessage(err) }), { error: true });
    } finally {
      select.disabled = false;
      refreshDevices();
    }
  }
  cameraSelect.addEventListener("change", () => onPick("video", cameraSelect));
  micSelect.addEventListener("change", () => onPick("audio", micSelect));
  onDeviceChange(() => refreshDevices());

  // ---- preview ---------------------------------------------------------------

  function renderPreview() {
    const video = call._outgoing().video;
    setVideo(previewVideo, video ? new MediaStream([video]) : null);
    previewVideo.classList.toggle("mirror", Boolean(video) && video === call.camera);
    prejoin.dataset.video = video ? "on" : "off";
    previewAvatar.textContent = initials(client.nickname);
  }

  async function startPreview() {
    startPreviewButton.hidden = true;
    showMediaError("");
    try {
      const missing = await call.startMedia();
      if (missing.includes("video") && missing.includes("audio")) showMediaError(t("err.noDevice"), "noDevice");
      else if (missing.includes("video")) showMediaError(t("err.noCamera"), "noCamera");
      else if (missing.includes("audio")) showMediaError(t("err.noMic"), "noMic");
    } catch (err) {
      showMediaError(mediaMessage(err), err.reason || "media");
      if (err.reason !== "insecure") startPreviewButton.hidden = false;
    }
    await refreshDevices();
  }
  startPreviewButton.addEventListener("click", () => startPreview());

  // ---- tiles -----------------------------------------------------------------

  function setVideo(video, stream) {
    if (video.srcObject === stream) return;
    video.srcObject = stream;
    if (stream) video.play().catch(() => {});
  }

  function makeTile({ id, self, key = id }) {
    const el = document.createElement("figure");
    el.className = "tile";
    el.setAttribute("data-testid", self ? "tile-self" : "tile");
    el.dataset.peer = id;
    el.dataset.key = key;
    if (self) el.dataset.self = "true";
    const video = document.createElement("video");
    video.autoplay = true;
    video.playsInline = true;
    if (self) video.muted = true;
    const off = document.createElement("div");
    off.className = "video-off";
    const avatar = document.createElement("span");
    avatar.className = "avatar";
    avatar.setAttribute("aria-hidden", "true");
    off.append(avatar);
    const overlay = document.createElement("div");
    overlay.className = "tile-overlay";
    overlay.setAttribute("data-testid", "tile-overlay");
    const bar = document.createElement("figcaption");
    bar.className = "tile-bar";
    const mic = document.createElement("span");
    mic.className = "tile-mic";
    mic.setAttribute("role", "img");
    mic.setAttribute("aria-label", t("call.muted"));
    mic.setAttribute("data-testid", "tile-muted");
    mic.append(icon("micOff"));
    const name = document.createElement("span");
    name.className = "tile-name";
    name.setAttribute("data-testid", "tile-name");
    const state = document.createElement("span");
    state.className = "tile-state";
    state.setAttribute("data-testid", "tile-state");
    bar.append(mic, name, state);
    // Pin: this tile goes large, in any view, until unpinned.
    const pin = document.createElement("button");
    pin.type = "button";
    pin.className = "tile-pin";
    pin.setAttribute("data-testid", "tile-pin");
    pin.setAttribute("aria-pressed", "false");
    pin.append(icon("pin"));
    pin.addEventListener("click", () => arrange.togglePin(el.dataset.key));
    el.append(video, off, overlay, bar, pin);
    return { el, video, avatar, overlay, mic, name, state, pin };
  }

  /** The pin button's accessible name follows the tile's name. */
  function namePin(tile, name) {
    tile.pin.setAttribute("aria-label", t("call.pin", { name }));
  }

  const arrange = new CallLayout({
    grid,
    pager: { nav: $("pager"), prev: $("page-prev"), next: $("page-next"), label: $("page-label") },
    onChange: () => reportViews(),
    label: (page, pages) => t("call.page", { page, pages }),
  });

  /** Places and sizes the tiles (layout.js): grid or speaker view, pins, shares, pages. */
  function layout() {
    arrange.update();
  }

  function renderLayoutButton() {
    const speakerView = arrange.view === "speaker";
    setButton(layoutButton, "speakerView", t("call.speakerView"));
    layoutButton.setAttribute("aria-pressed", String(speakerView));
  }
  layoutButton.addEventListener("click", () => {
    arrange.setView(arrange.view === "speaker" ? "grid" : "speaker");
    renderLayoutButton();
  });
  renderLayoutButton();

  /**
   * Through the media server: tell it how large each member's video shows
   * (device pixels; 0 when it does not), so it sends the simulcast layer
   * that fills the tile and no larger. Batched; the session drops repeats.
   */
  let viewTimer = null;
  function reportViews() {
    if (viewTimer) return;
    viewTimer = setTimeout(() => {
      viewTimer = null;
      if (call.mode !== "sfu") return;
      const ratio = window.devicePixelRatio || 1;
      const views = [...tiles.entries()].map(([id, tile]) => {
        const shown = tile.el.dataset.video === "on" && tile.el.isConnected && !document.hidden;
        const size = (px) => (shown ? Math.round(px * ratio) : 0);
        return { from: id, width: size(tile.video.clientWidth), height: size(tile.video.clientHeight) };
      });
      call.setViews(views);
    }, 100);
  }
  new ResizeObserver(() => layout()).observe(grid);

  function renderSelf() {
    if (!selfTile) return;
    const s = call.localState();
    const video = call._outgoing().video;
    setVideo(selfTile.video, video ? new MediaStream([video]) : null);
    selfTile.video.classList.toggle("mirror", Boolean(video) && video === call.camera);
    selfTile.el.dataset.audio = s.audio ? "on" : "off";
    selfTile.el.dataset.video = video ? "on" : "off";
    selfTile.el.dataset.screen = String(s.screen);
    selfTile.el.dataset.state = "connected";
    // Our own video is never "connecting": no dimming overlay on it.
    selfTile.overlay.textContent = "";
    selfTile.overlay.hidden = true;
    selfTile.mic.hidden = s.audio;
    const nickname = client.nickname || "";
    selfTile.name.textContent = `${nickname} (${t("call.you")})`;
    namePin(selfTile, selfTile.name.textContent);
    selfTile.avatar.textContent = initials(nickname);
    selfTile.state.textContent = s.screen ? t("call.sharing") : "";
    labelTile(selfTile, selfTile.name.textContent, { muted: !s.audio, cameraOff: !video, sharing: s.screen });
  }

  /**
   * A tile's accessible name: who, then what a sighted person sees on it
   * (muted, camera off, sharing, speaking, a connection problem).
   */
  function labelTile(tile, name, { muted = false, cameraOff = false, sharing = false, state = "" } = {}) {
    tile.labelParts = { name, muted, cameraOff, sharing, state };
    const speaking = tile.el.dataset.speaking === "true";
    const parts = [
      name,
      muted ? t("call.muted") : "",
      cameraOff ? t("call.cameraIsOff") : "",
      sharing ? t("call.sharing") : "",
      speaking ? t("call.speaking") : "",
      state,
    ];
    tile.el.setAttribute("aria-label", parts.filter(Boolean).join(", "));
  }

  /** Speaking changed on a tile: its name says so. */
  function relabel(tile) {
    if (tile && tile.labelParts) labelTile(tile, tile.labelParts.name, tile.labelParts);
  }

  function renderPeer(peer) {
    const tile = tiles.get(peer.id);
    if (!tile) return;
    const state = peer.state;
    const connected = state === "connected";
    const videoTrack = peer.remoteStream.getVideoTracks()[0];
    const hasVideo = Boolean(videoTrack) && peer.remote.video && connected;
    const stream = peer.remoteStream.getTracks().length ? peer.remoteStream : null;
    if (tile.streamTracks !== peer.remoteStream.getTracks().map((tr) => tr.id).join()) {
      tile.streamTracks = peer.remoteStream.getTracks().map((tr) => tr.id).join();
      // A fresh MediaStream per track set: the element picks up new tracks at once.
      setVideo(tile.video, stream ? new MediaStream(peer.remoteStream.getTracks()) : null);
      watchFrames(peer, tile);
    }
    tile.el.dataset.state = state;
    tile.el.dataset.audio = peer.remote.audio ? "on" : "off";
    tile.el.dataset.video = hasVideo ? "on" : "off";
    const screenBefore = tile.el.dataset.screen;
    tile.el.dataset.screen = String(peer.remote.screen);
    tile.mic.hidden = peer.remote.audio;
    tile.name.textContent = peer.nickname || "…";
    namePin(tile, tile.name.textContent);
    tile.avatar.textContent = initials(peer.nickname);
    const stateText = connected ? "" : t(`call.state.${state}`) === `call.state.${state}` ? state : t(`call.state.${state}`);
    tile.state.textContent = connected ? (peer.remote.screen ? t("call.sharing") : "") : stateText;
    // A tile whose video stopped while its connection still looks fine (the
    // network changed under it) says so too, rather than showing a still frame.
    const frozen = connected && tile.el.dataset.frozen === "true";
    tile.overlay.textContent = frozen ? t("call.state.reconnecting") : connected ? "" : stateText;
    tile.overlay.hidden = connected && !frozen;
    labelTile(tile, peer.nickname, {
      muted: !peer.remote.audio,
      cameraOff: connected && !hasVideo,
      sharing: peer.remote.screen,
      state: stateText,
    });
    renderScreen(peer);
    // A mesh share shows on the sharer's tile: it goes large (or back).
    if (screenBefore !== tile.el.dataset.screen) layout();
    reportViews();
  }

  /** A member's shared screen through the media server: a large tile of its own. */
  function renderScreen(peer) {
    const track = peer.screenStream ? peer.screenStream.getVideoTracks()[0] : null;
    const shown = Boolean(track) && peer.remote.screen && peer.state === "connected" && tiles.has(peer.id);
    let tile = screens.get(peer.id);
    if (!shown) {
      if (tile) removeScreenTile(peer.id);
      return;
    }
    if (!tile) {
      tile = makeTile({ id: peer.id, self: false, key: `screen:${peer.id}` });
      tile.el.classList.add("tile-screen");
      tile.el.setAttribute("data-testid", "tile-screen");
      tile.el.dataset.screen = "true";
      tile.el.dataset.video = "on";
      tile.el.dataset.state = "connected";
      tile.mic.hidden = true;
      screens.set(peer.id, tile);
      grid.prepend(tile.el);
      layout();
    }
    if (tile.track !== track) {
      tile.track = track;
      setVideo(tile.video, new MediaStream([track]));
    }
    tile.name.textContent = t("call.screenOf", { name: peer.nickname || "…" });
    tile.el.setAttribute("aria-label", tile.name.textContent);
    namePin(tile, tile.name.textContent);
  }

  function removeScreenTile(id) {
    const tile = screens.get(id);
    if (!tile) return;
    screens.delete(id);
    tile.video.srcObject = null;
    tile.el.remove();
    layout();
  }

  /**
   * Every second: a shown camera tile whose frames stopped for two seconds
   * while its connection is up is marked frozen (its overlay says
   * "reconnecting"), and the signaling connection is checked: a network
   * change often takes both down.
   */
  const FROZEN_AFTER_S = 2;
  setInterval(() => {
    if (phase !== "incall" || document.hidden) return;
    for (const [id, tile] of tiles) {
      const el = tile.el;
      const watched = el.dataset.video === "on" && el.dataset.state === "connected" && !el.hidden && el.dataset.screen !== "true";
      const frames = tile.frames || 0;
      let frozen = false;
      if (!watched || frames !== tile.lastFrames) {
        tile.lastFrames = frames;
        tile.stillFor = 0;
      } else {
        tile.stillFor = (tile.stillFor || 0) + 1;
        frozen = frames > 0 && tile.stillFor >= FROZEN_AFTER_S;
      }
      if ((el.dataset.frozen === "true") !== frozen) {
        el.dataset.frozen = String(frozen);
        const peer = call.peers.get(id);
        if (peer) renderPeer(peer);
        if (frozen) client.checkAlive();
      }
    }
  }, 1000);

  function watchFrames(peer, tile) {
    const video = tile.video;
    if (!("requestVideoFrameCallback" in video)) return;
    const onFrame = (now) => {
      if (!tiles.has(peer.id) || tiles.get(peer.id) !== tile) return;
      if (timings.firstFrame[peer.id] === undefined) {
        timings.firstFrame[peer.id] = now;
        peer.firstFrameAt = now;
      }
      tile.frames = (tile.frames || 0) + 1;
      video.requestVideoFrameCallback(onFrame);
    };
    if (!tile.watching) {
      tile.watching = true;
      video.requestVideoFrameCallback(onFrame);
    }
  }

  function addPeerTile(peer) {
    if (tiles.has(peer.id)) return;
    const tile = makeTile({ id: peer.id, self: false });
    tiles.set(peer.id, tile);
    grid.append(tile.el);
    layout();
    renderPeer(peer);
    renderHands();
  }

  function removePeerTile(peer, reason) {
    const tile = tiles.get(peer.id);
    if (!tile) return;
    tiles.delete(peer.id);
    tile.video.srcObject = null;
    tile.el.remove();
    removeScreenTile(peer.id);
    layout();
    if (reason === "failed" || reason === "closed") {
      if (phase === "incall" && reason === "failed") showCallStatus(t("call.lostPeer", { name: peer.nickname || "?" }), { error: true });
    }
  }

  // ---- controls --------------------------------------------------------------

  function renderControls() {
    const s = call.localState();
    setButton(muteButton, call.muted ? "micOff" : "mic", call.muted ? t("call.unmute") : t("call.mute"));
    muteButton.dataset.on = String(!call.muted);
    muteButton.disabled = !call.audio;
    const camOn = Boolean(call.camera) && !call.cameraOff;
    setButton(cameraButton, camOn ? "camera" : "cameraOff", camOn ? t("call.cameraOff") : t("call.cameraOn"));
    cameraButton.dataset.on = String(camOn);
    setButton(shareButton, s.screen ? "screenStop" : "screen", s.screen ? t("call.stopShare") : t("call.share"));
    shareButton.dataset.on = String(s.screen);
    shareButton.hidden = !screenShareSupported();
    setButton(devicesToggle, "devices", t("call.devices"));
    setButton(leaveButton, "leave", t("call.leave"));
    const up = call.handRaised;
    setButton(handButton, "hand", up ? t("call.lowerHand") : t("call.raiseHand"));
    handButton.dataset.on = String(up);
    handButton.setAttribute("aria-pressed", String(up));
    setButton(reactButton, "smile", t("call.react"));
    setButton(shortcutsButton, "keyboard", t("call.shortcuts"));
    shortcutsButton.title = `${t("call.shortcuts")} (?)`;
  }

  // ---- hands, reactions, shortcuts ---------------------------------------------

  const REACTIONS = ["👍", "👏", "😂", "❤️", "🎉", "😮"];
  for (const emoji of REACTIONS) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "reaction-choice";
    b.textContent = emoji;
    b.dataset.emoji = emoji;
    b.addEventListener("click", async () => {
      try {
        await call.react(emoji);
      } catch (err) {
        if (err.code !== "rate_limited") showCallStatus(errorText(err), { error: true, code: err.code });
      }
    });
    reactionsPanel.append(b);
  }
  reactButton.addEventListener("click", () => {
    const open = reactionsPanel.hidden;
    reactionsPanel.hidden = !open;
    reactButton.setAttribute("aria-expanded", String(open));
  });

  async function toggleHand() {
    try {
      await call.raiseHand(!call.handRaised);
    } catch (err) {
      // (Pressed faster than four times a second: the hand shows where it is.)
      if (err.code !== "rate_limited") showCallStatus(errorText(err), { error: true, code: err.code });
    }
  }
  handButton.addEventListener("click", () => toggleHand());

  /** Each tile's hand badge: its place in line, or none. */
  function renderHands() {
    const badge = (tile, id) => {
      if (!tile) return;
      const at = call.hands.indexOf(id);
      let el = tile.el.querySelector(".tile-hand");
      if (at < 0) {
        if (el) el.remove();
        delete tile.el.dataset.hand;
        return;
      }
      if (!el) {
        el = document.createElement("span");
        el.className = "tile-hand";
        el.setAttribute("data-testid", "tile-hand");
        tile.el.append(el);
      }
      el.textContent = `✋ ${at + 1}`;
      el.setAttribute("aria-label", t("call.handN", { n: at + 1 }));
      el.setAttribute("role", "img");
      tile.el.dataset.hand = String(at + 1);
    };
    for (const [id, tile] of tiles) badge(tile, id);
    if (selfTile) badge(selfTile, client.id);
    renderControls();
  }
  call.on("hands", () => renderHands());

  /** A reaction floats over the reacting member's tile for a few seconds. */
  call.on("reaction", ({ from, emoji }) => {
    const tile = from === client.id ? selfTile : tiles.get(from);
    if (!tile) return;
    const el = document.createElement("span");
    el.className = "tile-reaction";
    el.setAttribute("data-testid", "tile-reaction");
    el.textContent = emoji;
    tile.el.append(el);
    setTimeout(() => el.remove(), 4000);
    const peer = call.peers.get(from);
    const name = from === client.id ? client.nickname : peer ? peer.nickname : "";
    showCallStatus(t("call.reacted", { name: name || "…", emoji }));
  });

  shortcutsButton.addEventListener("click", () => shortcutsDialog.showModal());

  // M, V, H and ?: in the call, unless typing somewhere.
  document.addEventListener("keydown", (event) => {
    if (phase !== "incall" || event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target;
    const typing =
      target instanceof HTMLElement &&
      (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
    if (typing || shortcutsDialog.open) return;
    const key = event.key.toLowerCase();
    if (key === "m" && call.audio) call.setMuted(!call.muted);
    else if (key === "v") cameraButton.click();
    else if (key === "h") toggleHand();
    else if (event.key === "?") shortcutsDialog.showModal();
    else return;
    event.preventDefault();
  });

  muteButton.addEventListener("click", () => call.setMuted(!call.muted));

  cameraButton.addEventListener("click", async () => {
    cameraButton.disabled = true;
    const turnOn = call.cameraOff || !call.camera;
    try {
      await call.setCameraOff(!turnOn);
    } catch (err) {
      showCallStatus(mediaMessage(err), { error: true });
    } finally {
      cameraButton.disabled = false;
      refreshDevices();
    }
  });

  shareButton.addEventListener("click", async () => {
    shareButton.disabled = true;
    try {
      if (call.screen) await call.stopShare();
      else await call.startShare();
    } catch (err) {
      if (err.reason === "unsupported") showCallStatus(t("err.shareUnsupported"), { error: true });
      else if (err.reason !== "denied") showCallStatus(t("err.shareFailed", { detail: err.message }), { error: true });
      // denied: the person cancelled the picker; nothing to explain
    } finally {
      shareButton.disabled = false;
    }
  });

  devicesToggle.addEventListener("click", () => {
    const open = devicesPanel.hidden;
    devicesPanel.hidden = !open;
    devicesToggle.setAttribute("aria-expanded", String(open));
    if (open) refreshDevices();
  });

  leaveButton.addEventListener("click", () => leave());

  // ---- joining and leaving ---------------------------------------------------

  function setPhase(next) {
    phase = next;
    stage.dataset.phase = next;
    const inCall = next === "incall";
    prejoin.hidden = inCall;
    grid.hidden = !inCall;
    controls.hidden = !inCall;
    joinButton.disabled = next === "joining";
    joinButton.textContent = next === "joining" ? t("call.joining") : t("call.join");
    if (inCall) {
      devicesPanel.append(pickers);
    } else {
      devicesPanel.hidden = true;
      devicesToggle.setAttribute("aria-expanded", "false");
      prejoin.querySelector(".prejoin-side h2").after(pickers);
    }
  }

  // ---- your name --------------------------------------------------------------

  // Prefilled from the session until the visitor edits it.
  let nameEdited = false;
  function fillName() {
    if (!nameEdited && client.nickname) nameInput.value = client.nickname;
  }
  nameInput.addEventListener("input", () => {
    nameEdited = true;
    fieldError(nameError, nameInput, "");
  });
  client.on("session", fillName);
  fillName();

  function nameRefused(text) {
    fieldError(nameError, nameInput, text);
    nameInput.focus();
  }

  /** The name in the pre-join panel becomes the session's nickname; false if refused. */
  async function saveName() {
    const name = nameInput.value.trim();
    if (!name) {
      nameRefused(t("call.nameBlank"));
      return false;
    }
    if (name === client.nickname) return true;
    try {
      await client.setNickname(name);
      nameEdited = false;
      fillName();
      return true;
    } catch (err) {
      nameRefused(errorText(err));
      return false;
    }
  }

  /**
   * call.join(), tried again when the connection dropped or the server was
   * slow while it ran (a network blip, a busy server): the person clicked
   * Join once and expects to be in the call, not to be told to click again.
   * A retry waits for the connection to answer again, and after a reconnect
   * for the page to be back in the room (`rejoin` below says so); it joins
   * under the id the call knew us by, so the others re-key us instead of
   * showing us twice.
   */
  async function joinThroughBlips() {
    const deadline = performance.now() + JOIN_RETRY_WITHIN_MS;
    const earlier = call.myId; // of a call left before: not ours to claim
    for (let tries = 1; ; tries++) {
      const before = call.myId !== earlier ? call.myId : null; // set by an attempt whose join_call went through
      try {
        return await call.join(before && before !== client.id ? before : null);
      } catch (err) {
        const again = JOIN_TRANSIENT.has(err.code) && tries < JOIN_TRIES && performance.now() < deadline;
        if (!again || phase !== "joining") throw err;
        console.info(`noom: the join failed (${err.code}); trying again`);
        const alive = client.connected && (await client.checkAlive());
        if (alive) await new Promise((r) => setTimeout(r, JOIN_RETRY_PAUSE_MS));
        else if (!(await backInRoom(deadline - performance.now()))) throw err;
        if (phase !== "joining") throw err;
      }
    }
  }

  let roomBack = null; // resolves when the page is back in the room after a reconnect
  function backInRoom(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        roomBack = null;
        resolve(false);
      }, Math.max(0, ms));
      roomBack = () => {
        clearTimeout(timer);
        roomBack = null;
        resolve(true);
      };
    });
  }

  async function join() {
    if (phase !== "prejoin") return;
    if (!(await saveName())) return;
    if (phase !== "prejoin") return;
    timings.joinClickedAt = performance.now();
    timings.firstFrame = {};
    setPhase("joining");
    showCallStatus("");
    // The camera and microphone open while the join goes out: their tracks
    // go onto the call's senders when they come (no renegotiation).
    const media =
      !call.hasMedia && mediaSupported() && !(call.mediaFailure && call.mediaFailure.reason === "denied")
        ? startPreview()
        : Promise.resolve();
    try {
      await joinThroughBlips();
    } catch (err) {
      await media;
      setPhase("prejoin");
      if (err.code === "room_full") {
        const n = (String(err.message).match(/\d+/) || ["6"])[0];
        showCallStatus(t("err.roomFull", { n }), { error: true, code: err.code, sticky: true });
      } else {
        showCallStatus(t("err.callFailed", { detail: errorText(err) }), { error: true, code: err.code, sticky: true });
      }
      return;
    }
    timings.joinedAt = performance.now();
    selfTile = makeTile({ id: client.id || "self", self: true });
    grid.prepend(selfTile.el);
    layout();
    setPhase("incall");
    renderSelf();
    renderHands();
  }
  joinButton.addEventListener("click", () => join());

  async function leave() {
    await call.leave();
    for (const [, tile] of tiles) tile.el.remove();
    tiles.clear();
    for (const id of [...screens.keys()]) removeScreenTile(id);
    if (selfTile) selfTile.el.remove();
    selfTile = null;
    layout();
    setPhase("prejoin");
    startPreviewButton.hidden = !mediaSupported();
    renderPreview();
    updateMeter();
  }

  // ---- call events -----------------------------------------------------------

  call.on("local", () => {
    renderPreview();
    renderSelf();
    renderControls();
    updateMeter();
  });
  call.on("peer-added", ({ peer }) => addPeerTile(peer));
  // Our own tile follows the level meter above.
  call.on("speakers", ({ ids }) => {
    for (const [id, tile] of tiles) {
      tile.el.dataset.speaking = String(ids.includes(id));
      relabel(tile);
    }
    arrange.setSpeakers(ids);
  });
  document.addEventListener("visibilitychange", () => reportViews());
  call.on("peer-updated", ({ peer }) => renderPeer(peer));
  call.on("peer-removed", ({ peer, reason }) => removePeerTile(peer, reason));
  // Back under a new socket id, its connection kept: the same tile, re-keyed.
  call.on("peer-rekeyed", ({ peer, from }) => {
    const tile = tiles.get(from);
    if (!tile) return;
    tiles.delete(from);
    tiles.set(peer.id, tile);
    tile.el.dataset.peer = peer.id;
    tile.el.dataset.key = peer.id;
    arrange.rekey(from, peer.id);
    renderPeer(peer);
  });
  call.on("left", ({ error } = {}) => {
    if (error && phase === "incall") {
      leave();
      showCallStatus(t("err.callFailed", { detail: errorText(error) }), { error: true, code: error.code, sticky: true });
    }
  });

  client.on("session", () => {
    renderPreview();
    renderSelf();
  });

  window.addEventListener("pagehide", () => call.destroy());

  // ---- start -----------------------------------------------------------------

  setPhase("prejoin");
  renderControls();
  renderPreview();
  if (!mediaSupported()) {
    showMediaError(t("err.insecure"), "insecure");
    cameraSelect.disabled = micSelect.disabled = true;
  } else {
    cameraGranted().then((granted) => {
      if (granted) startPreview();
      else {
        startPreviewButton.hidden = false;
        refreshDevices();
      }
    });
  }

  // The test and benchmark hook: read-only views, plus an ICE restart (what
  // the page does by itself when a connection fails).
  window.noomCall = {
    phase: () => phase,
    local: () => ({
      ...call.localState(),
      muted: call.muted,
      cameraOff: call.cameraOff,
      audioTrack: call.audio ? { enabled: call.audio.enabled, label: call.audio.label, readyState: call.audio.readyState } : null,
      screenTrack: call.screen ? { width: call.screen.getSettings().width, height: call.screen.getSettings().height } : null,
      videoTrack: call._outgoing().video
        ? {
            label: call._outgoing().video.label,
            readyState: call._outgoing().video.readyState,
            width: call._outgoing().video.getSettings().width,
            height: call._outgoing().video.getSettings().height,
          }
        : null,
    }),
    peers: () => [...call.peers.values()].map((p) => ({ id: p.id, nickname: p.nickname, state: p.state, remote: { ...p.remote } })),
    stats: () => call.stats(),
    // RTCPeerConnections open: one per peer in a mesh, one in all through the media server.
    connections: () => (call.server ? (call.server.pc ? 1 : 0) : [...call.peers.values()].filter((p) => p.pc).length),
    mode: () => call.mode,
    // A tag per RTCPeerConnection object (mesh), given once: the same tag later is the same object.
    connectionTags: () => {
      const pcs = [...call.peers.values()].map((p) => p.pc).filter(Boolean);
      if (call.server && call.server.pc) pcs.push(call.server.pc);
      return pcs.map((pc) => (pc.__noomTag ||= Math.random().toString(36).slice(2)));
    },
    timings: () => JSON.parse(JSON.stringify(timings)),
    // The one action: an ICE restart of every connection, as on a failure.
    renegotiate: () => call.renegotiate(),
  };

  /** After a reconnect (new socket id): rebuild the call if we were in it. */
  return {
    /** The host (or an administrator) muted us: the microphone goes off; we may turn it on again. */
    mutedByHost(text) {
      if (phase !== "incall") return;
      if (!call.muted) call.setMuted(true);
      showCallStatus(text, { sticky: false });
    },
    /** The call was ended from outside (an administrator): back to the preview. */
    async end(text) {
      if (phase !== "incall") return;
      await leave();
      showCallStatus(text, { sticky: true });
    },
    async rejoin() {
      if (roomBack) roomBack(); // a join that the reconnect interrupted goes on
      if (phase !== "incall") return;
      try {
        await call.rejoin();
        if (selfTile) {
          selfTile.el.dataset.peer = client.id;
          selfTile.el.dataset.key = client.id;
        }
      } catch {
        /* `left` handler explains */
      }
    },
    get inCall() {
      return phase === "incall";
    },
  };
}
