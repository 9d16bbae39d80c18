// In-call controls, as the other side sees them: mute, camera off/on, camera
// and microphone switch (the call keeps going, the muted state stays),
// screen share start/stop, raised hands in order, reactions, and the
// keyboard shortcuts with their help dialog.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser, openPage, roomPath, joinCall, expectLiveTiles, until, sleep } from "./harness.mjs";

let server, browser, ann, ben;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  ann = await openPage(browser, server, roomPath("controls"), { nickname: "Ann" });
  ben = await openPage(browser, server, roomPath("controls"), { nickname: "Ben" });
  await joinCall(ann);
  await joinCall(ben);
  await expectLiveTiles(ann, ["Ben"]);
  await expectLiveTiles(ben, ["Ann"]);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Ben's view of Ann: her tile's data attributes and what his connection receives. */
async function annSeenByBen() {
  return ben.evaluate(async () => {
    const tile = [...document.querySelectorAll('[data-testid="tile"]')].find(
      (t) => t.querySelector(".tile-name").textContent === "Ann",
    );
    const [s] = (await window.noomCall.stats()).filter((x) => x.nickname === "Ann");
    return {
      audio: tile.dataset.audio,
      video: tile.dataset.video,
      screen: tile.dataset.screen,
      micIconShown: !tile.querySelector('[data-testid="tile-muted"]').hidden,
      label: tile.getAttribute("aria-label"),
      remote: s.remote,
      framesDecoded: s.framesDecoded,
      frameWidth: s.frameWidth,
      totalAudioEnergy: s.totalAudioEnergy,
    };
  });
}

/** What Ann's connection to Ben sends. */
async function annSending() {
  const [s] = await ann.evaluate(() => window.noomCall.stats());
  return s.sending;
}

async function benSeesAnnVideoAdvance() {
  const a = (await annSeenByBen()).framesDecoded;
  await until(ben, async (a) => {
    const [s] = (await window.noomCall.stats()).filter((x) => x.nickname === "Ann");
    return s.framesDecoded > a + 3;
  }, a, { what: "Ann's video advancing at Ben", timeout: 15000 });
}

test("mute is seen by the peer: track disabled, indicator, silence", async () => {
  const before = await annSeenByBen();
  assert.equal(before.audio, "on");
  assert.equal(before.micIconShown, false);

  await ann.getByRole("button", { name: "Mute", exact: true }).click();
  await ann.getByRole("button", { name: "Unmute", exact: true }).waitFor();
  assert.equal((await annSending()).audio.enabled, false, "Ann's microphone track is disabled");
  await until(ben, () => {
    const tile = document.querySelector('[data-testid="tile"]');
    return tile.dataset.audio === "off" && !tile.querySelector('[data-testid="tile-muted"]').hidden;
  }, null, { what: "muted indicator at Ben" });
  const muted = await annSeenByBen();
  assert.equal(muted.remote.audio, false);
  assert.match(muted.label, /Muted/);
  // What arrives is silence: the audio energy stops growing (the fake mic beeps).
  await sleep(600);
  const e1 = (await annSeenByBen()).totalAudioEnergy;
  await sleep(1500);
  const e2 = (await annSeenByBen()).totalAudioEnergy;
  assert.ok(e2 - e1 < 0.001, `silence while muted (energy grew by ${e2 - e1})`);

  await ann.getByRole("button", { name: "Unmute", exact: true }).click();
  await until(ben, () => document.querySelector('[data-testid="tile"]').dataset.audio === "on", null, {
    what: "unmuted at Ben",
  });
  assert.equal((await annSending()).audio.enabled, true);
});

test("camera off and on is seen by the peer", async () => {
  await ann.getByRole("button", { name: "Camera off", exact: true }).click();
  await ann.getByRole("button", { name: "Camera on", exact: true }).waitFor();
  await until(ann, async () => (await window.noomCall.stats())[0].sending.video === null, null, {
    what: "no video track going out",
  });
  assert.equal(await ann.evaluate(() => window.noomCall.local().videoTrack), null, "camera released");
  await until(ben, () => document.querySelector('[data-testid="tile"]').dataset.video === "off", null, {
    what: "camera-off tile at Ben",
  });
  assert.equal((await annSeenByBen()).remote.video, false);
  // Its accessible name says so; Ann's own tile is named as hers, camera off too.
  assert.match((await annSeenByBen()).label, /^Ann, .*Camera is off/);
  assert.match(await ann.getByTestId("tile-self").getAttribute("aria-label"), /^Ann \(You\), Camera is off/);
  // Ben's tile shows Ann's initials instead of a frozen picture.
  assert.equal(await ben.locator('[data-testid="tile"] .video-off').isVisible(), true);
  assert.equal(await ben.locator('[data-testid="tile"] video').isVisible(), false);

  await ann.getByRole("button", { name: "Camera on", exact: true }).click();
  await until(ben, () => document.querySelector('[data-testid="tile"]').dataset.video === "on", null, {
    what: "camera back at Ben",
  });
  await benSeesAnnVideoAdvance();
});

test("camera and microphone switch keep the call going and the muted state", async () => {
  const first = await annSending();
  assert.match(first.video.label, /fake_device_0/);

  // The pickers live in the "Devices" panel during the call.
  await ann.getByTestId("devices").click();
  const cameras = await ann
    .locator("#camera-select option")
    .evaluateAll((os) => os.map((o) => ({ id: o.value, label: o.textContent })));
  assert.equal(cameras.length, 3, "three fake cameras");
  await ann.selectOption("#camera-select", cameras.find((c) => c.label === "fake_device_2").id);
  await until(ann, async () => {
    const [s] = await window.noomCall.stats();
    return s.sending.video && /fake_device_2/.test(s.sending.video.label);
  }, null, { what: "Ann sending from another camera" });
  await benSeesAnnVideoAdvance();

  // Mute, then switch the microphone: the new one is muted too.
  await ann.getByRole("button", { name: "Mute", exact: true }).click();
  const mics = await ann.locator("#mic-select option").evaluateAll((os) => os.map((o) => o.value));
  assert.ok(mics.length >= 2, "several fake microphones");
  const oldLabel = (await annSending()).audio.label;
  const current = await ann.inputValue("#mic-select");
  const other = mics.find((id) => id !== current && id !== "default");
  await ann.selectOption("#mic-select", other);
  const after = await until(ann, async (oldLabel) => {
    const [s] = await window.noomCall.stats();
    return s.sending.audio && s.sending.audio.label !== oldLabel && s.sending.audio;
  }, oldLabel, { what: "Ann sending from another microphone" });
  assert.equal(after.enabled, false, "still muted after the switch");
  assert.equal((await annSeenByBen()).audio, "off");
  await ann.getByRole("button", { name: "Unmute", exact: true }).click();
  await until(ben, () => document.querySelector('[data-testid="tile"]').dataset.audio === "on", null, {
    what: "unmuted at Ben",
  });
  await ann.getByTestId("devices").click();
  await benSeesAnnVideoAdvance();
  assert.deepEqual(ann.errors, []);
});

test("a screen share is a track of its own: Ben sees it large, and Ann's camera beside it", async () => {
  await ann.getByRole("button", { name: "Share screen", exact: true }).click();
  await ann.getByRole("button", { name: "Stop sharing", exact: true }).waitFor();
  await until(ann, async () => {
    const [s] = await window.noomCall.stats();
    return s.sending.screen && /^(screen|window|tab|web-contents)/i.test(s.sending.screen.label) && /fake_device/.test(s.sending.video.label);
  }, null, { what: "Ann sending her screen and her camera" });
  // Ben shows the fake 1280x720 screen large, on a tile of its own.
  const screen = await until(ben, () => {
    const tile = document.querySelector('[data-testid="tile-screen"]');
    const video = tile && tile.querySelector("video");
    return tile && tile.classList.contains("tile-featured") && video.videoWidth > 640 && video.currentTime > 0 && { name: tile.querySelector(".tile-name").textContent, width: video.videoWidth };
  }, null, { what: "Ann's screen large at Ben", timeout: 20000 });
  assert.equal(screen.name, "Ann's screen");
  // Her camera keeps playing on her own tile, at camera size.
  await benSeesAnnVideoAdvance();
  const camera = await annSeenByBen();
  assert.ok(camera.frameWidth > 0 && camera.frameWidth <= 640, `camera at Ben: ${camera.frameWidth}`);
  assert.equal(camera.screen, "true");
  assert.match(camera.label, /sharing/i);

  await ann.getByRole("button", { name: "Stop sharing", exact: true }).click();
  await ann.getByRole("button", { name: "Share screen", exact: true }).waitFor();
  await until(ben, () => !document.querySelector('[data-testid="tile-screen"]') && document.querySelector('[data-testid="tile"]').dataset.screen === "false", null, {
    what: "screen tile gone at Ben",
    timeout: 20000,
  });
  await benSeesAnnVideoAdvance();
  // A second share reuses the connection's screen sender (no new m-line).
  await ann.getByRole("button", { name: "Share screen", exact: true }).click();
  await ben.getByTestId("tile-screen").waitFor({ timeout: 20000 });
  await ann.getByRole("button", { name: "Stop sharing", exact: true }).click();
  await ben.getByTestId("tile-screen").waitFor({ state: "detached", timeout: 20000 });
  assert.deepEqual(ann.errors, []);
  assert.deepEqual(ben.errors, []);
});

test("both sides renegotiate at once (ICE restart): roles resolve the collision", async () => {
  // Both pages restart ICE at the same wall-clock moment, so each makes an
  // offer before the other's arrives (tried a few times in case one wins the race).
  let a, b;
  for (let attempt = 0; attempt < 4; attempt++) {
    const at = Date.now() + 400;
    const fire = (at) => setTimeout(() => window.noomCall.renegotiate(), Math.max(0, at - Date.now()));
    await Promise.all([ann.evaluate(fire, at), ben.evaluate(fire, at)]);
    await sleep(500);
    for (const page of [ann, ben]) {
      await until(page, async () => {
        const [s] = await window.noomCall.stats();
        return s.signalingState === "stable" && s.connectionState === "connected";
      }, null, { what: "stable and connected after the collision" });
    }
    [a] = await ann.evaluate(() => window.noomCall.stats());
    [b] = await ben.evaluate(() => window.noomCall.stats());
    if (a.collisions + b.collisions >= 1) break;
  }
  assert.notEqual(a.polite, b.polite, "one polite, one impolite");
  assert.ok(a.collisions + b.collisions >= 1, "the offers did cross");
  await benSeesAnnVideoAdvance();
  const annBefore = (await ann.evaluate(() => window.noomCall.stats()))[0].framesDecoded;
  await until(ann, async (n) => (await window.noomCall.stats())[0].framesDecoded > n + 3, annBefore, {
    what: "Ben's video advancing at Ann",
  });
  assert.deepEqual(ann.errors, []);
  assert.deepEqual(ben.errors, []);
});

/** The hand badge `page` shows on `nick`'s tile ("" for none); `self` for its own tile. */
function handOf(page, nick) {
  return page.evaluate((nick) => {
    const tile =
      nick === null
        ? document.querySelector('[data-testid="tile-self"]')
        : [...document.querySelectorAll('[data-testid="tile"]')].find((t) => t.querySelector(".tile-name").textContent === nick);
    const badge = tile && tile.querySelector('[data-testid="tile-hand"]');
    return badge ? badge.textContent : "";
  }, nick);
}

test("hands go up in order, by button and by the H key; reactions float over the tile", async () => {
  // Ben by button, then Ann by keyboard: Ben first in line, Ann second, for both.
  await ben.getByTestId("raise-hand").click();
  await until(ann, () => {
    const t = [...document.querySelectorAll('[data-testid="tile"]')].find((x) => x.querySelector(".tile-name").textContent === "Ben");
    return t && t.querySelector('[data-testid="tile-hand"]')?.textContent === "✋ 1";
  }, null, { what: "Ben's hand at Ann", timeout: 5000 });
  await ann.locator("body").click({ position: { x: 5, y: 5 } });
  await ann.keyboard.press("h");
  await until(ben, () => {
    const t = [...document.querySelectorAll('[data-testid="tile"]')].find((x) => x.querySelector(".tile-name").textContent === "Ann");
    return t && t.querySelector('[data-testid="tile-hand"]')?.textContent === "✋ 2";
  }, null, { what: "Ann's hand second at Ben", timeout: 5000 });
  // Her own tile too, once her request is answered.
  await until(ann, () => document.querySelector('[data-testid="tile-self"] [data-testid="tile-hand"]')?.textContent === "✋ 2", null, {
    what: "Ann's own hand second",
    timeout: 5000,
  });
  assert.equal(await ann.getByTestId("raise-hand").getAttribute("aria-pressed"), "true");
  // Ben lowers his: Ann moves up.
  await ben.getByRole("button", { name: "Lower hand" }).click();
  await until(ann, () => document.querySelector('[data-testid="tile-self"] [data-testid="tile-hand"]')?.textContent === "✋ 1", null, {
    what: "Ann first in line",
    timeout: 5000,
  });
  assert.equal(await handOf(ann, "Ben"), "");
  await ann.getByRole("button", { name: "Lower hand" }).click();
  await until(ben, () => !document.querySelector('[data-testid="tile-hand"]'), null, { what: "no hands", timeout: 5000 });

  // A reaction from Ben floats over his tile at Ann's.
  await ben.getByTestId("react").click();
  await ben.getByTestId("reactions").getByRole("button", { name: "🎉" }).click();
  await until(ann, () => {
    const t = [...document.querySelectorAll('[data-testid="tile"]')].find((x) => x.querySelector(".tile-name").textContent === "Ben");
    return t && t.querySelector('[data-testid="tile-reaction"]')?.textContent === "🎉";
  }, null, { what: "Ben's reaction at Ann", timeout: 5000 });
  await ben.getByTestId("react").click(); // closes the choices
  assert.deepEqual([ann.errors, ben.errors], [[], []]);
});

test("keyboard shortcuts: M and V in the call, not while typing; ? shows them", async () => {
  await ann.locator("body").click({ position: { x: 5, y: 5 } });
  await ann.keyboard.press("m");
  await ann.getByRole("button", { name: "Unmute" }).waitFor();
  await ann.keyboard.press("m");
  await ann.getByRole("button", { name: "Mute", exact: true }).waitFor();
  // (V while the camera is still switching does nothing, as a click would.)
  const cameraReady = () => until(ann, () => !document.querySelector('[data-testid="camera"]').disabled, null, { what: "camera button ready" });
  await ann.keyboard.press("v");
  await ann.getByRole("button", { name: "Camera on" }).waitFor();
  await cameraReady();
  await ann.keyboard.press("v");
  await ann.getByRole("button", { name: "Camera off" }).waitFor();
  await cameraReady();
  // Typing an "m" in the chat box types it.
  await ann.locator("#message-input").click();
  await ann.keyboard.type("mv");
  assert.equal(await ann.locator("#message-input").inputValue(), "mv");
  assert.equal(await ann.getByRole("button", { name: "Mute", exact: true }).count(), 1);
  await ann.locator("#message-input").fill("");

  // ? opens the list (a modal dialog); Escape closes it and gives focus back.
  await ann.locator("body").click({ position: { x: 5, y: 5 } });
  await ann.keyboard.press("?");
  const dialog = ann.getByTestId("shortcuts-dialog");
  await dialog.waitFor({ state: "visible" });
  const keys = await dialog.locator("kbd").allTextContents();
  assert.deepEqual(keys, ["M", "V", "H", "?"]);
  await ann.keyboard.press("Escape");
  await dialog.waitFor({ state: "hidden" });
  // And from its button.
  await ann.getByTestId("shortcuts").click();
  await dialog.waitFor({ state: "visible" });
  await ann.getByTestId("shortcuts-close").click();
  await dialog.waitFor({ state: "hidden" });
  assert.deepEqual(ann.errors, []);
});
