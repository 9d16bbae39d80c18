// Calls through the media server (call.mode = "sfu"): three pages see each
// other's moving video over one connection each to the server, a departure
// removes the tile everywhere within 2 s, and a late fourth sees everyone;
// a shared screen is a track of its own, at full size, beside the camera;
// the admin page shows each member's media session; the server's
// active_speaker lights up the speaking member's tile.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { BIN, openPage, roomPath, joinCall, expectLiveTiles, expectSpeakingShown, tileNames, until, useServerAndBrowser, waitEntered } from "./harness.mjs";

const ADMIN_PASSWORD = "sfu admin secret";
const env = useServerAndBrowser({
  server: () => {
    const hashed = spawnSync(BIN, ["hash-password"], { input: ADMIN_PASSWORD + "\n", encoding: "utf8" });
    assert.equal(hashed.status, 0, hashed.stderr);
    return { env: { NOOM_CALL_MODE: "sfu", NOOM_ADMIN_PASSWORD_HASH: hashed.stdout.trim() } };
  },
});

test("three call through the media server, one leaves, a fourth joins late", async () => {
  const room = "sfu call";
  const ann = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ann" });
  const ben = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ben" });
  const cat = await openPage(env.browser, env.server, roomPath(room), { nickname: "Cat" });
  await joinCall(ann);
  await joinCall(ben);
  await joinCall(cat);

  await expectLiveTiles(ann, ["Ben", "Cat"]);
  await expectLiveTiles(ben, ["Ann", "Cat"]);
  await expectLiveTiles(cat, ["Ann", "Ben"]);
  for (const page of [ann, ben, cat]) {
    const stats = await page.evaluate(() => window.noomCall.stats());
    assert.ok(stats.length === 2 && stats.every((s) => s.media === "sfu"), JSON.stringify(stats));
    // One connection, to the server: no peer-to-peer connections at all.
    assert.equal(await page.evaluate(() => window.noomCall.connections()), 1);
  }

  // Cat leaves: her tile disappears from Ann and Ben within 2 s.
  await cat.getByRole("button", { name: "Leave call" }).click();
  const gone = (page) =>
    page.waitForFunction(
      () => ![...document.querySelectorAll('[data-testid="tile"] .tile-name')].some((n) => n.textContent === "Cat"),
      null,
      { timeout: 2000, polling: 50 },
    );
  await Promise.all([gone(ann), gone(ben)]);
  assert.deepEqual(await tileNames(ann), ["Ben"]);
  assert.deepEqual(await tileNames(ben), ["Ann"]);
  await cat.context().close();

  // Dan joins late and plays everyone's video within 3 s of his click;
  // everyone sees Dan.
  const dan = await openPage(env.browser, env.server, roomPath(room), { nickname: "Dan" });
  await waitEntered(dan);
  const started = Date.now();
  await dan.getByTestId("join-call").click();
  await until(
    dan,
    async (want) => {
      const stats = await window.noomCall.stats();
      return want.every((n) => stats.some((s) => s.nickname === n && s.framesDecoded > 0));
    },
    ["Ann", "Ben"],
    { timeout: 10000, interval: 50, what: "Dan playing Ann and Ben" },
  );
  const took = Date.now() - started;
  console.log(`# late joiner plays everyone ${took} ms after joining`);
  assert.ok(took <= 3000, `the late joiner played everyone after ${took} ms, over 3 s`);
  await expectLiveTiles(dan, ["Ann", "Ben"]);
  await expectLiveTiles(ann, ["Ben", "Dan"]);
  await expectLiveTiles(ben, ["Ann", "Dan"]);
  for (const page of [ann, ben, dan]) await page.context().close();
});

test("a page without UDP reaches the media server through the relay over TCP", async () => {
  const room = "sfu relayed";
  const pages = [];
  try {
    // "tcp": only TURN over TCP candidates (iceTransportPolicy "relay").
    pages.push(
      await openPage(env.browser, env.server, roomPath(room), {
        nickname: "Tess",
        init: `localStorage.setItem("noom.relay", "tcp")`,
      }),
    );
    pages.push(await openPage(env.browser, env.server, roomPath(room), { nickname: "Uma" }));
    for (const page of pages) await joinCall(page);
    await expectLiveTiles(pages[0], ["Uma"]);
    await expectLiveTiles(pages[1], ["Tess"]);
    const [tess] = await pages[0].evaluate(() => window.noomCall.stats());
    assert.equal(tess.media, "sfu");
    assert.deepEqual(
      { type: tess.path?.type, relayProtocol: tess.path?.relayProtocol },
      { type: "relay", relayProtocol: "tcp" },
      JSON.stringify(tess.path),
    );
    for (const page of pages) assert.deepEqual(page.errors, []);
  } finally {
    for (const page of pages) await page.context().close();
  }
});

test("a shared screen is a track of its own: full size, and the camera keeps playing", async () => {
  const room = "sfu screen";
  const ann = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ann" });
  const ben = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ben" });
  const pages = [ann, ben];
  try {
    await joinCall(ann);
    await joinCall(ben);
    await expectLiveTiles(ben, ["Ann"]);
    // Before anyone shares, nobody is offered a screen track.
    assert.equal(await ben.locator('[data-testid="tile-screen"]').count(), 0);

    await ann.getByRole("button", { name: "Share screen", exact: true }).click();
    await ann.getByRole("button", { name: "Stop sharing", exact: true }).waitFor();
    const sent = await ann.evaluate(() => window.noomCall.local().screenTrack);
    assert.ok(sent && sent.height > 0, JSON.stringify(sent));
    // Ben gets Ann's screen in a tile of its own, at the size she captures it...
    const screenFrames = () =>
      ben.evaluate(() => {
        const video = document.querySelector('[data-testid="tile-screen"] video');
        return video ? { frames: video.getVideoPlaybackQuality().totalVideoFrames, height: video.videoHeight } : null;
      });
    await until(
      ben,
      (height) => {
        const video = document.querySelector('[data-testid="tile-screen"] video');
        return Boolean(video) && video.videoHeight === height;
      },
      sent.height,
      { what: `Ann's screen at Ben in ${sent.height} lines`, timeout: 20000 },
    );
    assert.equal(
      await ben.locator('[data-testid="tile-screen"] .tile-name').textContent(),
      "Ann's screen",
    );
    // ...while her camera tile keeps playing, and the screen moves too.
    const before = await screenFrames();
    await expectLiveTiles(ben, ["Ann"]);
    const after = await screenFrames();
    assert.ok(after.frames > before.frames, `screen frames ${before.frames} -> ${after.frames}`);
    assert.deepEqual(await tileNames(ben), ["Ann"]);

    // A late joiner gets the shared screen too (on a receive m-line of its
    // own offer): as Ann's screen, not as someone else.
    const cat = await openPage(env.browser, env.server, roomPath(room), { nickname: "Cat" });
    pages.push(cat);
    await joinCall(cat);
    await until(
      cat,
      (height) => {
        const video = document.querySelector('[data-testid="tile-screen"] video');
        return Boolean(video) && video.videoHeight === height;
      },
      sent.height,
      { what: "Ann's screen at the late Cat", timeout: 20000 },
    );
    await expectLiveTiles(cat, ["Ann", "Ben"]);
    assert.equal(await cat.locator('[data-testid="tile-screen"] .tile-name').textContent(), "Ann's screen");

    // Stopping the share removes the screen tile; the camera tile stays.
    await ann.getByRole("button", { name: "Stop sharing", exact: true }).click();
    await ben.locator('[data-testid="tile-screen"]').waitFor({ state: "detached", timeout: 5000 });
    await cat.locator('[data-testid="tile-screen"]').waitFor({ state: "detached", timeout: 5000 });
    await expectLiveTiles(ben, ["Ann", "Cat"]);
    for (const page of pages) assert.deepEqual(page.errors, []);
  } finally {
    for (const page of pages) await page.context().close();
  }
});

test("the admin page shows each member's media session: transport, bitrates, layers", async () => {
  const room = "sfu watched";
  const ann = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ann" });
  const ben = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ben" });
  const admin = await openPage(env.browser, env.server, "/admin");
  try {
    await joinCall(ann);
    await joinCall(ben);
    await expectLiveTiles(ann, ["Ben"]);
    await admin.waitForURL("**/admin/login");
    await admin.getByTestId("password").fill(ADMIN_PASSWORD);
    await admin.getByTestId("login").click();
    await admin.waitForURL(/\/admin$/);
    await admin.locator(`#rooms tr[data-room="${room}"]`).getByTestId("admin-room").click();
    // Ann's row: UDP straight to the media server, media both ways, and the
    // layer of Ben's video she gets (one of q, h, f).
    const text = await until(
      admin,
      () => {
        const row = [...document.querySelectorAll('[data-testid="admin-members"] tr')].find((tr) => tr.children[0].textContent === "Ann");
        // Columns: nickname, user, socket, node, transport, address, since, call, media server.
        const text = row ? row.children[8].textContent : "";
        const ok = /^udp · in [1-9][\d.]* (k|M)bit\/s · out [1-9][\d.]* (k|M)bit\/s/.test(text) && /layers Ben: [qhf]$/.test(text);
        return ok && text;
      },
      null,
      { what: "Ann's media session on the admin page", timeout: 15000 },
    );
    console.log(`# admin media cell: ${text}`);
    assert.deepEqual(admin.errors, []);
  } finally {
    for (const page of [ann, ben, admin]) await page.context().close();
  }
});

test("the member the media server hears speaking lights up; muted, it does not", async () => {
  const room = "sfu speakers";
  const ann = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ann" });
  const ben = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ben" });
  try {
    await joinCall(ann);
    await joinCall(ben);
    await expectLiveTiles(ann, ["Ben"]);
    await expectSpeakingShown(ann, ben, "Ben");
  } finally {
    for (const page of [ann, ben]) await page.context().close();
  }
});

// Ann's connection to the server drops (her browser goes offline: media
// keeps flowing, signaling does not) and Ben leaves the call meanwhile: Ann
// never hears it. Back online, she joins again; the call no longer lists
// Ben, so his tile goes within a few seconds, not after the 15 s a member
// whose own connection dropped is kept for. (Through the media server:
// in a mesh, Ben's closed peer connection tells Ann by itself.)
test("a member who left while our connection was down leaves our page soon after we are back", async () => {
  const room = "left while away";
  const pages = [];
  for (const nickname of ["Ann", "Ben", "Cat"]) pages.push(await openPage(env.browser, env.server, roomPath(room), { nickname }));
  try {
    for (const page of pages) await joinCall(page);
    await expectLiveTiles(pages[0], ["Ben", "Cat"]);
    await pages[0].context().setOffline(true);
    await until(pages[0], () => document.getElementById("connection").dataset.state === "reconnecting", null, { what: "Ann's banner reconnecting" });
    await pages[1].getByRole("button", { name: "Leave call" }).click();
    await until(pages[2], () => ![...document.querySelectorAll('[data-testid="tile"] .tile-name')].some((n) => n.textContent === "Ben"), null, { what: "Ben's tile gone from Cat" });
    await pages[0].context().setOffline(false);
    const back = Date.now();
    await until(pages[0], () => /connected/.test(document.getElementById("connection").dataset.state), null, { what: "Ann back" });
    await until(pages[0], () => ![...document.querySelectorAll('[data-testid="tile"] .tile-name')].some((n) => n.textContent === "Ben"), null, {
      what: "Ben's tile gone from Ann",
      timeout: 8000,
    });
    console.log(`# Ben's tile left Ann ${Date.now() - back} ms after she was back online`);
    await expectLiveTiles(pages[0], ["Cat"]);
  } finally {
    for (const page of pages) await page.context().close();
  }
});
