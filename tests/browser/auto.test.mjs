// call.mode = "auto" (the default): four pages call in a mesh; a fifth joins,
// past call.mesh_max (4), and every page moves to the media server without a
// reload and without any tile's video stopping for more than 2 s.
import { test } from "node:test";
import assert from "node:assert/strict";
import { openPage, roomPath, joinCall, expectLiveTiles, useServerAndBrowser } from "./harness.mjs";

const env = useServerAndBrowser();

/** Starts recording, per remote tile, the longest wait between two video frames. */
function watchFrames(page) {
  return page.evaluate(() => {
    window.frameGaps = {};
    window.watchStart = performance.now();
    for (const tile of document.querySelectorAll('[data-testid="tile"]')) {
      const name = tile.querySelector(".tile-name").textContent;
      const video = tile.querySelector("video");
      // For a failure's message: when the longest wait ended, and when the
      // tile's source moved to the server (ms since the watch began).
      const rec = { last: performance.now(), longest: 0, endedAt: 0, src: video.srcObject, swappedAt: [] };
      window.frameGaps[name] = rec;
      const tick = () => {
        const now = performance.now();
        if (video.srcObject !== rec.src) {
          rec.src = video.srcObject;
          rec.swappedAt.push(Math.round(now - window.watchStart));
        }
        if (now - rec.last > rec.longest) rec.endedAt = Math.round(now - window.watchStart);
        rec.longest = Math.max(rec.longest, now - rec.last);
        rec.last = now;
        video.requestVideoFrameCallback(tick);
      };
      video.requestVideoFrameCallback(tick);
    }
  });
}

/** The longest frame gap per watched tile so far (the current wait included). */
function frameGaps(page) {
  return page.evaluate(() =>
    Object.fromEntries(
      Object.entries(window.frameGaps).map(([n, r]) => {
        const now = performance.now();
        const current = now - r.last;
        const gap = Math.round(Math.max(r.longest, current));
        const endedAt = current > r.longest ? Math.round(now - window.watchStart) : r.endedAt;
        return [n, { gap, endedAt, swappedAt: r.swappedAt }];
      }),
    ),
  );
}

test("auto: a fifth participant moves a mesh call to the media server", async () => {
  const room = "auto call";
  const names = ["Ava", "Bo", "Cy", "Di"];
  const pages = [];
  for (const nickname of names) pages.push(await openPage(env.browser, env.server, roomPath(room), { nickname }));
  for (const page of pages) await joinCall(page);
  for (const [i, page] of pages.entries()) {
    await expectLiveTiles(page, names.filter((_, j) => j !== i));
    assert.equal(await page.evaluate(() => window.noomCall.mode()), "mesh");
    assert.equal(await page.evaluate(() => window.noomCall.connections()), 3);
  }
  for (const page of pages) await watchFrames(page);

  const eve = await openPage(env.browser, env.server, roomPath(room), { nickname: "Eve" });
  await joinCall(eve);
  assert.equal(await eve.evaluate(() => window.noomCall.mode()), "sfu");
  await expectLiveTiles(eve, names);
  for (const [i, page] of pages.entries()) {
    await page.waitForFunction(
      () => window.noomCall.mode() === "sfu" && window.noomCall.connections() === 1,
      null,
      { timeout: 15000 },
    );
    await expectLiveTiles(page, [...names.filter((_, j) => j !== i), "Eve"]);
    const gaps = await frameGaps(page);
    for (const [name, { gap }] of Object.entries(gaps)) {
      assert.ok(gap <= 2000, `${names[i]} saw ${name}'s video stop for ${gap} ms: ${JSON.stringify(gaps)}`);
    }
  }
  for (const page of [...pages, eve]) await page.context().close();
});
