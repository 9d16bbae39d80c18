// Layouts: speaker view follows who speaks; a pinned tile stays large in any
// view; a screen shared in a mesh goes large by itself (the sharer's camera
// stays a tile); tiles that do not
// fit go onto pages; and the layout rules hold for a call of 50 (the page's
// own layout.js on 50 tiles in Chromium, at desktop and phone sizes, since
// 50 real participants do not fit this machine).
import { test } from "node:test";
import assert from "node:assert/strict";
import { openPage, roomPath, joinCall, expectLiveTiles, until, useServerAndBrowser } from "./harness.mjs";

const env = useServerAndBrowser();

/** The name on the featured (large) tiles of `page`. */
function featured(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll(".grid .tile-featured")].map((t) => t.querySelector(".tile-name").textContent),
  );
}

async function expectFeatured(page, names, what) {
  await until(page, (names) => {
    const now = [...document.querySelectorAll(".grid .tile-featured")].map((t) => t.querySelector(".tile-name").textContent);
    return JSON.stringify(now) === JSON.stringify(names);
  }, names, { what, timeout: 15000 });
}

function tileNamesShown(page) {
  return page.evaluate(() => [...document.querySelectorAll(".grid .tile:not([hidden]) .tile-name")].map((n) => n.textContent));
}

function tileOf(page, name) {
  return page.locator(".grid .tile", { has: page.locator(".tile-name", { hasText: new RegExp(`^${name}`) }) });
}

test("speaker view follows the speaker; a pin holds; a mesh screen share goes large", async () => {
  const room = "layouts";
  const ann = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ann" });
  const ben = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ben" });
  const cat = await openPage(env.browser, env.server, roomPath(room), { nickname: "Cat" });
  try {
    for (const page of [ann, ben, cat]) await joinCall(page);
    await expectLiveTiles(ann, ["Ben", "Cat"]);
    // Chromium's fake microphones beep all the time: silence two of them.
    for (const page of [ben, cat]) await page.getByTestId("mute").click();
    assert.deepEqual(await featured(ann), [], "the grid features nobody");

    await ann.getByTestId("layout-toggle").click();
    assert.equal(await ann.getByTestId("layout-toggle").getAttribute("aria-pressed"), "true");
    await cat.getByTestId("mute").click(); // Cat speaks
    await expectFeatured(ann, ["Cat"], "Cat large while she speaks");
    const sizes = await ann.evaluate(() =>
      [...document.querySelectorAll(".grid .tile")].map((t) => ({ big: t.classList.contains("tile-featured"), w: t.getBoundingClientRect().width })),
    );
    const big = sizes.find((s) => s.big).w;
    for (const s of sizes.filter((s) => !s.big)) assert.ok(s.w < big / 2, `the others are a band: ${JSON.stringify(sizes)}`);
    await cat.getByTestId("mute").click();
    await ben.getByTestId("mute").click(); // now Ben
    await expectFeatured(ann, ["Ben"], "Ben large once he speaks");

    // A pin beats the speaker, and holds in the grid too.
    await tileOf(ann, "Cat").hover();
    await tileOf(ann, "Cat").getByTestId("tile-pin").click();
    await expectFeatured(ann, ["Cat"], "pinned Cat large");
    assert.equal(await tileOf(ann, "Cat").getByTestId("tile-pin").getAttribute("aria-pressed"), "true");
    assert.equal(await tileOf(ann, "Cat").getByTestId("tile-pin").getAttribute("aria-label"), "Pin Cat");
    await ann.getByTestId("layout-toggle").click(); // back to the grid
    await expectFeatured(ann, ["Cat"], "the pin holds in the grid");
    await tileOf(ann, "Cat").getByTestId("tile-pin").click();
    await expectFeatured(ann, [], "unpinned: an even grid");

    // A screen shared in a mesh goes large by itself; the sharer's camera stays a tile.
    await ben.getByTestId("share-screen").click();
    await ben.getByRole("button", { name: "Stop sharing", exact: true }).waitFor();
    await expectFeatured(ann, ["Ben's screen"], "Ben's share large at Ann");
    assert.deepEqual((await tileNamesShown(ann)).sort(), ["Ann (You)", "Ben", "Ben's screen", "Cat"]);
    assert.equal(await ann.getByTestId("grid").getAttribute("data-presenting"), "true");
    await ben.getByRole("button", { name: "Stop sharing", exact: true }).click();
    await expectFeatured(ann, [], "share over: an even grid");
    // The choice of view is remembered.
    await ann.getByTestId("layout-toggle").click();
    await ann.reload();
    await joinCall(ann);
    assert.equal(await ann.getByTestId("layout-toggle").getAttribute("aria-pressed"), "true");
    for (const page of [ann, ben, cat]) assert.deepEqual(page.errors, []);
  } finally {
    for (const page of [ann, ben, cat]) await page.context().close();
  }
});

test("tiles that do not fit go onto pages, each reachable", async () => {
  const room = "pages";
  // A short phone screen: two portrait tiles fit, the third goes onto page 2.
  const pia = await openPage(env.browser, env.server, roomPath(room), { nickname: "Pia", viewport: { width: 390, height: 520 } });
  const ben = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ben" });
  const cat = await openPage(env.browser, env.server, roomPath(room), { nickname: "Cat" });
  try {
    for (const page of [pia, ben, cat]) await joinCall(page);
    await until(pia, () => document.querySelectorAll(".grid .tile").length === 3, null, { what: "three tiles" });
    const shown = () =>
      pia.evaluate(() => [...document.querySelectorAll(".grid .tile:not([hidden]) .tile-name")].map((n) => n.textContent));
    await pia.getByTestId("pager").waitFor();
    assert.equal(await pia.getByTestId("page-label").textContent(), "Page 1 of 2");
    assert.equal(await pia.getByTestId("page-prev").isDisabled(), true);
    const first = await shown();
    await pia.getByTestId("page-next").click();
    assert.equal(await pia.getByTestId("page-label").textContent(), "Page 2 of 2");
    const second = await shown();
    assert.deepEqual([...first, ...second].sort(), ["Ben", "Cat", "Pia (You)"].sort(), "every tile on exactly one page");
    assert.equal(await pia.getByTestId("page-next").isDisabled(), true);
    // Someone leaves: one page is enough again.
    await cat.getByTestId("leave-call").click();
    await until(pia, () => document.getElementById("pager").hidden, null, { what: "pager gone" });
    assert.equal((await shown()).length, 2);
    assert.deepEqual(pia.errors, []);
  } finally {
    for (const page of [pia, ben, cat]) await page.context().close();
  }
});

test("fifty tiles: large enough to see, the rest on pages, at desktop and phone sizes", async () => {
  const page = await openPage(env.browser, env.server, "/", { viewport: { width: 1440, height: 900 } });
  try {
    const result = await page.evaluate(async () => {
      const { CallLayout } = await import("/static/js/layout.js");
      const lab = (width, height, featuredScreen) => {
        const grid = document.createElement("div");
        grid.className = "grid";
        grid.style.cssText = `position:fixed;left:0;top:0;width:${width}px;height:${height}px`;
        for (let i = 0; i < 50; i += 1) {
          const tile = document.createElement("figure");
          tile.className = "tile";
          tile.dataset.key = `p${i}`;
          if (i === 0) tile.dataset.self = "true";
          if (featuredScreen && i === 7) tile.dataset.screen = "true";
          grid.append(tile);
        }
        const pager = { nav: document.createElement("nav"), prev: document.createElement("button"), next: document.createElement("button"), label: document.createElement("span") };
        document.body.append(grid);
        const layout = new CallLayout({ grid, pager, onChange() {}, label: (p, n) => `${p}/${n}` });
        const measure = () => {
          const box = grid.getBoundingClientRect();
          const shown = [...grid.children].filter((t) => !t.hidden).map((t) => t.getBoundingClientRect());
          return {
            pages: Number(grid.dataset.pages),
            shown: shown.length,
            minWidth: Math.min(...shown.map((r) => r.width)),
            inside: shown.every((r) => r.bottom <= box.bottom + 1 && r.right <= box.right + 1),
            featured: grid.querySelectorAll(".tile-featured").length,
          };
        };
        layout.update();
        const first = measure();
        const seen = new Set();
        for (let p = 0; p < first.pages; p += 1) {
          for (const t of grid.children) if (!t.hidden) seen.add(t.dataset.key);
          layout.turn(1);
        }
        grid.remove();
        return { ...first, reachable: seen.size };
      };
      return { desktop: lab(1040, 700), phone: lab(374, 560), shared: lab(1040, 700, true) };
    });
    const { desktop, phone, shared } = result;
    console.log(`# fifty tiles: ${JSON.stringify(result)}`);
    assert.ok(desktop.minWidth >= 176 && desktop.inside && desktop.pages >= 2, JSON.stringify(desktop));
    assert.ok(desktop.shown >= 12, `a desktop page shows a dozen or more: ${JSON.stringify(desktop)}`);
    assert.equal(desktop.reachable, 50);
    assert.ok(phone.minWidth >= 120 && phone.inside, JSON.stringify(phone));
    assert.equal(phone.reachable, 50);
    assert.equal(shared.featured, 1, "the screen stays large");
    assert.equal(shared.reachable, 50);
    assert.ok(shared.inside && shared.minWidth >= 128, JSON.stringify(shared));
  } finally {
    await page.context().close();
  }
});
