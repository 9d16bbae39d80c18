// Simulcast through the media server (call.mode = "sfu"): a page publishes
// its camera in three layers (180, 360 and 720 lines), and the server sends
// each subscriber the layer that fills its tile, lowered when the
// subscriber's link cannot carry it. The relay caps each allocation at
// 400 kbit/s here: a page forced through it has a narrow link to the server.
// Only Pia sends video (the others have no camera): one 720p encoder is what
// this machine's two cores hold without the browser dropping layers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { openPage, roomPath, joinCall, until, useServerAndBrowser } from "./harness.mjs";

const env = useServerAndBrowser({ server: { env: { NOOM_CALL_MODE: "sfu", NOOM_TURN_BANDWIDTH_KBPS: "400" } } });
const audioOnly = ["microphone"];

/** The height at which `page` receives Pia's video now (0: none yet). */
async function piaHeight(page) {
  const row = (await page.evaluate(() => window.noomCall.stats())).find((s) => s.nickname === "Pia");
  return row ? row.frameHeight : 0;
}

/** Polls both pages until `ok(a, b)` holds for their heights of Pia's video; returns them. */
async function heightsUntil(a, b, ok, what) {
  const seen = [];
  const deadline = Date.now() + 30000;
  for (;;) {
    const pair = [await piaHeight(a), await piaHeight(b)];
    seen.push(pair);
    if (ok(...pair)) return pair;
    assert.ok(Date.now() < deadline, `${what}: heights seen ${JSON.stringify(seen.slice(-12))}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Pia's tile height on `page`, in device pixels. */
function tileHeight(page) {
  return page.evaluate(() => {
    const t = [...document.querySelectorAll('[data-testid="tile"]')].find((x) => x.querySelector(".tile-name").textContent === "Pia");
    return t ? Math.round(t.querySelector("video").clientHeight * devicePixelRatio) : 0;
  });
}

test("a small tile gets the small layer; a large tile a larger one", async () => {
  const room = "layers by size";
  const pia = await openPage(env.browser, env.server, roomPath(room), { nickname: "Pia", sendHeight: 720 });
  // Sam shows Pia large (a 2x screen); Tom makes his window small.
  const sam = await openPage(env.browser, env.server, roomPath(room), { nickname: "Sam", deviceScaleFactor: 2, permissions: audioOnly });
  const tom = await openPage(env.browser, env.server, roomPath(room), { nickname: "Tom", permissions: audioOnly });
  for (const page of [pia, sam, tom]) await joinCall(page);
  await tom.setViewportSize({ width: 640, height: 400 });
  for (let i = 0; i < 50 && (await tileHeight(tom)) > 180; i++) await new Promise((r) => setTimeout(r, 100));
  const [samTile, tomTile] = [await tileHeight(sam), await tileHeight(tom)];
  assert.ok(tomTile > 0 && tomTile <= 180 && samTile > 360, `Pia's tile: ${samTile} px high for Sam, ${tomTile} for Tom`);

  // Tom's tile is at most 180 lines: the quarter layer fills it. Sam's needs more.
  const [small, large] = await heightsUntil(tom, sam, (t, s) => t > 0 && t <= 180 && s > 180, "Tom low, Sam higher");
  assert.ok(large > small);
  for (const page of [pia, sam, tom]) assert.deepEqual(page.errors, []);
  for (const page of [pia, sam, tom]) await page.context().close();
});

test("a subscriber with little bandwidth gets a lower layer than one with plenty", async () => {
  const room = "layers by bandwidth";
  const pia = await openPage(env.browser, env.server, roomPath(room), { nickname: "Pia", sendHeight: 720 });
  // Both show Pia large; Uma's media goes through the relay's 400 kbit/s allocation.
  const vic = await openPage(env.browser, env.server, roomPath(room), { nickname: "Vic", deviceScaleFactor: 2, permissions: audioOnly });
  const uma = await openPage(env.browser, env.server, roomPath(room), {
    nickname: "Uma",
    deviceScaleFactor: 2,
    permissions: audioOnly,
    init: `localStorage.setItem("noom.relay", "udp")`,
  });
  for (const page of [pia, vic, uma]) await joinCall(page);
  await heightsUntil(vic, uma, (v, u) => v > 0 && u > 0, "Pia's video on both pages");
  const [umaPath] = (await uma.evaluate(() => window.noomCall.stats())).map((s) => s.path);
  assert.equal(umaPath?.type, "relay", JSON.stringify(umaPath));

  // Vic gets the top layer; the loss on Uma's narrow link brings hers down.
  const [wide, narrow] = await heightsUntil(vic, uma, (v, u) => v > 360 && u > 0 && u < v, "Vic high, Uma lower");
  assert.ok(narrow < wide);
  for (const page of [pia, vic, uma]) await page.context().close();
});
