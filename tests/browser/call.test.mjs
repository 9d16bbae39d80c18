// The mesh call: three pages see each other's video, a departure removes the
// tile everywhere within 2 s, a late fourth sees everyone, and a page that
// drops (closed) is removed the same way; a speaking peer's tile lights up.
import { test } from "node:test";
import assert from "node:assert/strict";
import { openPage, roomPath, joinCall, expectLiveTiles, expectSpeakingShown, tileNames, useServerAndBrowser } from "./harness.mjs";

const env = useServerAndBrowser();

/** Resolves with the ms it took `page` to lose the tile of `nick`; fails after 2 s. */
async function tileGoneWithin2s(page, nick) {
  const start = Date.now();
  await page.waitForFunction(
    (nick) => ![...document.querySelectorAll('[data-testid="tile"] .tile-name')].some((n) => n.textContent === nick),
    nick,
    { timeout: 2000, polling: 50 },
  );
  return Date.now() - start;
}

test("three join, one leaves, a fourth joins late, one drops", async () => {
  const room = "mesh call";
  const ann = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ann" });
  const ben = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ben" });
  const cat = await openPage(env.browser, env.server, roomPath(room), { nickname: "Cat" });

  await joinCall(ann);
  await joinCall(ben);
  await joinCall(cat);
  // Our own video is shown as it is: no dimming "connecting" overlay.
  assert.equal(await ann.getByTestId("tile-self").getByTestId("tile-overlay").isHidden(), true);

  // Each shows two remote tiles whose video advances.
  await expectLiveTiles(ann, ["Ben", "Cat"]);
  await expectLiveTiles(ben, ["Ann", "Cat"]);
  await expectLiveTiles(cat, ["Ann", "Ben"]);
  for (const page of [ann, ben, cat]) {
    assert.equal(await page.getByTestId("tile-self").count(), 1, "one self tile");
    assert.equal(await page.locator("#grid").getAttribute("data-count"), "3");
  }
  // The page names the controls as the issue lists them.
  for (const name of ["Leave call", "Mute", "Camera off", "Share screen"]) {
    assert.equal(await ann.getByRole("button", { name, exact: true }).count(), 1, name);
  }

  // Cat leaves: her tile disappears from Ann and Ben within 2 s.
  await cat.getByRole("button", { name: "Leave call" }).click();
  const gone = await Promise.all([tileGoneWithin2s(ann, "Cat"), tileGoneWithin2s(ben, "Cat")]);
  assert.ok(gone.every((ms) => ms <= 2000), `gone in ${gone} ms`);
  assert.deepEqual(await tileNames(ann), ["Ben"]);
  assert.deepEqual(await tileNames(ben), ["Ann"]);
  // Cat is back at the preview, and her camera is released.
  await cat.getByTestId("join-call").waitFor();
  assert.equal(await cat.evaluate(() => window.noomCall.peers().length), 0);
  await cat.context().close();

  // Dan joins late and sees everyone; everyone sees Dan.
  const dan = await openPage(env.browser, env.server, roomPath(room), { nickname: "Dan" });
  await joinCall(dan);
  await expectLiveTiles(dan, ["Ann", "Ben"]);
  await expectLiveTiles(ann, ["Ben", "Dan"]);
  await expectLiveTiles(ben, ["Ann", "Dan"]);

  // Dan's page goes away without "Leave call" (tab closed): no frozen tile.
  await dan.close();
  const dropped = await Promise.all([tileGoneWithin2s(ann, "Dan"), tileGoneWithin2s(ben, "Dan")]);
  assert.ok(dropped.every((ms) => ms <= 2000), `dropped in ${dropped} ms`);
  await expectLiveTiles(ann, ["Ben"]);

  for (const page of [ann, ben]) assert.deepEqual(page.errors, [], "no page errors");
});

test("a peer who speaks lights up its tile; muted, it does not", async () => {
  const room = "mesh speakers";
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

test("on a phone the call uses the width: two columns of portrait tiles", async () => {
  const room = "mesh phone";
  const phone = await openPage(env.browser, env.server, roomPath(room), { nickname: "Pia", viewport: { width: 390, height: 844 } });
  const ben = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ben" });
  const cat = await openPage(env.browser, env.server, roomPath(room), { nickname: "Cat" });
  try {
    for (const page of [phone, ben, cat]) await joinCall(page);
    await expectLiveTiles(phone, ["Ben", "Cat"]);
    const shape = await phone.evaluate(() => {
      const grid = document.querySelector('[data-testid="grid"]');
      const tiles = [...grid.children].map((t) => t.getBoundingClientRect());
      return { cols: grid.dataset.cols, width: grid.clientWidth, tiles: tiles.map((r) => ({ w: r.width, h: r.height })) };
    });
    assert.equal(shape.cols, "2", JSON.stringify(shape));
    for (const t of shape.tiles) {
      assert.ok(t.h > t.w, `portrait tiles: ${JSON.stringify(shape)}`);
      assert.ok(t.w > shape.width * 0.4, `each tile takes about half the width: ${JSON.stringify(shape)}`);
    }
    assert.deepEqual(phone.errors, []);
  } finally {
    for (const page of [phone, ben, cat]) await page.context().close();
  }
});
