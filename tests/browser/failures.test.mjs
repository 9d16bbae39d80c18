// Each way a call can fail to start is explained, and chat keeps working:
// an insecure origin (no navigator.mediaDevices), permission denied, no
// camera, and a full call (room_full).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser, openPage, roomPath, waitEntered, joinCall, until } from "./harness.mjs";

let server, full, browser;

before(async () => {
  server = await startServer();
  // A server whose calls hold two participants (the smallest allowed), to reach room_full cheaply.
  full = await startServer({ env: { NOOM_LIMITS_CALL_MAX: "2" } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await full?.stop();
});

async function chatStillWorks(page, other, text) {
  await page.fill("#message-input", text);
  await page.getByTestId("send").click();
  await page.locator("#messages .message.own .text", { hasText: text }).waitFor();
  if (other) await other.locator("#messages .message .text", { hasText: text }).waitFor();
}

// What a plain-HTTP page away from localhost looks like: no mediaDevices at all.
const insecure = () => {
  Object.defineProperty(Navigator.prototype, "mediaDevices", { get: () => undefined, configurable: true });
};

// The person (or a policy) refuses the camera and microphone.
const denied = () => {
  const refuse = () => Promise.reject(new DOMException("Permission denied", "NotAllowedError"));
  navigator.mediaDevices.getUserMedia = refuse;
};

// A computer with a microphone and no camera.
const noCamera = () => {
  const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (c) =>
    c && c.video ? Promise.reject(new DOMException("Requested device not found", "NotFoundError")) : real(c);
};

test("insecure origin: says HTTPS is needed; chat works", async () => {
  const page = await openPage(browser, server, roomPath("fail insecure"), { init: insecure });
  const other = await openPage(browser, server, roomPath("fail insecure"));
  await waitEntered(page);
  const error = page.getByTestId("media-error");
  await error.waitFor();
  assert.match(await error.textContent(), /HTTPS/);
  assert.equal(await error.getAttribute("data-reason"), "insecure");
  await chatStillWorks(page, other, "typed over plain http");
  await page.context().close();
  await other.context().close();
});

test("permission denied: explained; joining still lets you watch; chat works", async () => {
  const page = await openPage(browser, server, roomPath("fail denied"), { init: denied });
  await waitEntered(page);
  const error = page.getByTestId("media-error");
  await error.waitFor();
  assert.equal(await error.getAttribute("data-reason"), "denied");
  assert.match(await error.textContent(), /denied/);
  await joinCall(page);
  assert.deepEqual(await page.evaluate(() => window.noomCall.local().audioTrack), null);
  await chatStillWorks(page, null, "no camera for me");
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test("no camera: joins with the microphone and says so", async () => {
  const page = await openPage(browser, server, roomPath("fail nocam"), { init: noCamera, nickname: "Mic" });
  const other = await openPage(browser, server, roomPath("fail nocam"), { nickname: "Cam" });
  await waitEntered(page);
  const error = page.getByTestId("media-error");
  await error.waitFor();
  assert.equal(await error.getAttribute("data-reason"), "noCamera");
  await joinCall(page);
  await joinCall(other);
  // The peer sees an audio-only participant: connected, camera-off tile.
  await until(other, () => {
    const tile = document.querySelector('[data-testid="tile"]');
    return tile && tile.dataset.state === "connected" && tile.dataset.video === "off" && tile.dataset.audio === "on";
  }, null, { what: "audio-only tile" });
  await chatStillWorks(page, other, "audio only");
  await page.context().close();
  await other.context().close();
});

test("room full: explained with room_full; chat works", async () => {
  const first = await openPage(browser, full, roomPath("fail full"));
  const other = await openPage(browser, full, roomPath("fail full"));
  const second = await openPage(browser, full, roomPath("fail full"));
  await joinCall(first);
  await joinCall(other);
  await waitEntered(second);
  await second.getByTestId("join-call").click();
  const status = second.getByTestId("call-status");
  await status.and(second.locator('[data-code="room_full"]')).waitFor();
  assert.match(await status.textContent(), /full: at most 2 people/);
  assert.equal(await second.evaluate(() => window.noomCall.phase()), "prejoin");
  await chatStillWorks(second, first, "I will wait");
  await other.context().close();
  await first.context().close();
  await second.context().close();
});
