// The server restarts (SIGTERM, same data directory and port) under two open
// pages in a call: both show the reconnecting banner and come back, the
// messages sent meanwhile appear exactly once, and the call is rebuilt.
import { test } from "node:test";
import assert from "node:assert/strict";
import { openPage, roomPath, waitEntered, joinCall, expectLiveTiles, until, sendMessage, sleep, useServerAndBrowser } from "./harness.mjs";

const env = useServerAndBrowser();

// Records every state the connection banner shows, from the first paint on.
const recordBanner = () => {
  window.__banner = [];
  new MutationObserver(() => {
    const el = document.getElementById("connection");
    if (el && window.__banner[window.__banner.length - 1] !== el.dataset.state) {
      window.__banner.push(el.dataset.state);
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-state"] });
};

/** Message texts shown, in order, and whether any seq is shown twice. */
function shown(page) {
  return page.evaluate(() => {
    const items = [...document.querySelectorAll("#messages .message")];
    const seqs = items.map((li) => li.dataset.seq);
    return { texts: items.map((li) => li.querySelector(".text").textContent), dupSeq: new Set(seqs).size !== seqs.length };
  });
}

test("restart: banners, missed messages once, call rebuilt", async () => {
  const room = "restart room";
  const ann = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ann", init: recordBanner });
  const ben = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ben", init: recordBanner });
  await waitEntered(ann);
  await waitEntered(ben);
  await joinCall(ann);
  await joinCall(ben);
  await expectLiveTiles(ann, ["Ben"]);
  await sendMessage(ann, "before 1");
  await sendMessage(ben, "before 2");
  await ann.locator("#messages .message .text", { hasText: "before 2" }).waitFor();

  // Ben's page is frozen (as a phone freezes a background tab) for the whole
  // restart, so whatever Ann says meanwhile can only reach him as a catch-up.
  const cdp = await ben.context().newCDPSession(ben);
  await cdp.send("Page.setWebLifecycleState", { state: "frozen" });

  await env.server.restart({ downMs: 1500 });

  await until(ann, () => window.__banner.includes("reconnecting") && window.__banner.at(-1) === "reconnected", null, {
    what: "Ann reconnected",
    timeout: 20000,
  });
  for (let i = 1; i <= 3; i++) await sendMessage(ann, `meanwhile ${i}`);

  await cdp.send("Page.setWebLifecycleState", { state: "active" });
  await until(ben, () => window.__banner.includes("reconnecting") && window.__banner.at(-1) === "reconnected", null, {
    what: "Ben reconnected",
    timeout: 20000,
  });
  await ben.locator("#messages .message .text", { hasText: "meanwhile 3" }).waitFor();
  await sendMessage(ben, "after");
  await ann.locator("#messages .message .text", { hasText: "after" }).waitFor();

  const want = ["before 1", "before 2", "meanwhile 1", "meanwhile 2", "meanwhile 3", "after"];
  for (const page of [ann, ben]) {
    const { texts, dupSeq } = await shown(page);
    assert.deepEqual(texts, want);
    assert.equal(dupSeq, false);
  }

  // Both rejoined the call under their new socket ids: live video again, one tile each.
  await expectLiveTiles(ann, ["Ben"], { timeout: 30000 });
  await expectLiveTiles(ben, ["Ann"], { timeout: 30000 });
  assert.deepEqual(ann.errors, []);
  assert.deepEqual(ben.errors, []);
});

/** Watches the grid of a page in a call: tiles removed, frames shown per tile. */
const watchTiles = () => {
  window.__removedTiles = [];
  const start = () => {
    const grid = document.getElementById("grid");
    if (!grid) return setTimeout(start, 50);
    new MutationObserver((records) => {
      for (const r of records) for (const n of r.removedNodes) if (n.dataset && n.dataset.testid === "tile") window.__removedTiles.push(n.dataset.peer);
    }).observe(grid, { childList: true });
  };
  start();
};

/** Per remote tile: its <video> (marked once), frames shown, and the peer id it stands for. */
function tilesNow(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('[data-testid="tile"]')].map((t) => {
      const video = t.querySelector("video");
      if (!video.__mark) video.__mark = `${t.querySelector(".tile-name").textContent}-${Math.random()}`;
      return { name: t.querySelector(".tile-name").textContent, peer: t.dataset.peer, mark: video.__mark, time: video.currentTime };
    }),
  );
}

test("a restart under a 3-person mesh call keeps the calls up: same tiles playing, no repeated notices, no stale error", async () => {
  const room = "restart keeps calls";
  const names = ["Ann", "Ben", "Cat"];
  const pages = [];
  for (const nickname of names) {
    const page = await openPage(env.browser, env.server, roomPath(room), { nickname, init: `(${recordBanner})(); (${watchTiles})();` });
    await waitEntered(page);
    pages.push(page);
  }
  const [ann, ben, cat] = pages;
  try {
    for (const page of pages) await joinCall(page);
    await expectLiveTiles(ann, ["Ben", "Cat"]);
    await expectLiveTiles(ben, ["Ann", "Cat"]);
    await expectLiveTiles(cat, ["Ann", "Ben"]);
    const before = await Promise.all(pages.map(tilesNow));
    const noticesBefore = await Promise.all(pages.map((p) => p.locator("#messages .notice").allTextContents()));

    await env.server.restart({ downMs: 1500 });

    for (const page of pages) {
      await until(page, () => window.__banner.includes("reconnecting") && window.__banner.at(-1) === "reconnected", null, {
        what: "reconnected",
        timeout: 20000,
      });
    }
    // Every connection is re-keyed to the others' new socket ids (as the
    // member list has them), without a new negotiation.
    for (const page of pages) {
      await until(page, () => {
        const ids = new Set([...document.querySelectorAll("#members li")].map((li) => li.dataset.id));
        const peers = window.noomCall.peers();
        return peers.length === 2 && peers.every((p) => ids.has(p.id) && p.state === "connected");
      }, null, { what: "peers re-keyed to the new ids", timeout: 20000 });
    }
    await sleep(1000);
    const after = await Promise.all(pages.map(tilesNow));
    for (let i = 0; i < pages.length; i += 1) {
      const removed = await pages[i].evaluate(() => window.__removedTiles);
      assert.deepEqual(removed, [], `${names[i]}: no tile went away`);
      for (const tile of before[i]) {
        const now = after[i].find((t) => t.mark === tile.mark);
        assert.ok(now, `${names[i]}: the same <video> still shows ${tile.name}`);
        assert.notEqual(now.peer, tile.peer, "under the peer's new socket id");
        assert.ok(now.time > tile.time + 1, `${names[i]}: ${tile.name}'s video kept playing (${tile.time} -> ${now.time})`);
      }
      // Video still advances, and nothing new was written about who joined.
      await expectLiveTiles(pages[i], names.filter((n) => n !== names[i]));
      const notices = await pages[i].locator("#messages .notice").allTextContents();
      assert.deepEqual(notices, noticesBefore[i], `${names[i]}: no repeated notices`);
      assert.equal(await pages[i].locator("#status").textContent(), "", `${names[i]}: no stale error under the message box`);
    }
    // Signaling works under the new ids: a renegotiation (ICE restart) completes.
    await ann.evaluate(() => window.noomCall.renegotiate());
    await expectLiveTiles(ann, ["Ben", "Cat"]);
    for (const page of pages) assert.deepEqual(page.errors, []);
  } finally {
    for (const page of pages) await page.context().close();
  }
});

// The server is slow to answer `alive` (its answers held back 4 s) while the
// others' media still reaches the page: the network works, so the page
// waits (up to 6 s) instead of dropping its connection and the call's. Alone
// in the call, with no media arriving, the same delay is a dead connection:
// the page reconnects after 1.5 s.
test("a slow answer to alive is waited for while media arrives, and not when none does", async () => {
  const room = "slow server room";
  // Socket.IO frames between Ann's page and the server pass through here;
  // while `held`, acks of her `alive` requests wait in `queue`.
  const hold = { held: false, queue: [], aliveIds: new Set() };
  const prepare = (context) =>
    context.routeWebSocket(/\/socket\.io\//, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((msg) => {
        const m = typeof msg === "string" && /^42(\d+)\["alive"/.exec(msg);
        if (m) hold.aliveIds.add(m[1]);
        server.send(msg);
      });
      server.onMessage((msg) => {
        const m = typeof msg === "string" && /^43(\d+)/.exec(msg);
        if (hold.held && m && hold.aliveIds.has(m[1])) hold.queue.push(() => ws.send(msg));
        else ws.send(msg);
      });
      ws.onClose((code, reason) => server.close({ code, reason }));
      server.onClose((code, reason) => ws.close({ code, reason }));
    });
  const release = () => {
    hold.held = false;
    for (const send of hold.queue.splice(0)) {
      try {
        send();
      } catch {
        /* that connection is gone */
      }
    }
  };
  const ann = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ann", prepare });
  const ben = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ben" });
  await joinCall(ann);
  await joinCall(ben);
  await expectLiveTiles(ann, ["Ben"]);
  const gaveUp = (page) => page.said.filter((line) => line.includes("stopped answering")).length;

  // Ben's media flows: 4 s of late answers are waited for.
  hold.held = true;
  await sleep(4000);
  release();
  await sleep(500);
  assert.equal(gaveUp(ann), 0, `Ann kept her connection: ${ann.said.join(" | ")}`);
  assert.ok(ann.said.some((line) => line.includes("media still arrives: waiting")), ann.said.join(" | "));
  await expectLiveTiles(ann, ["Ben"]);
  await until(ann, () => document.getElementById("connection").dataset.state === "connected", null, { what: "banner back to connected" });

  // Ben leaves the call: nothing arrives any more, and a late answer means a dead connection.
  await ben.getByTestId("leave-call").click();
  await until(ann, () => window.noomCall.peers().length === 0, null, { what: "Ann alone in the call" });
  await sleep(1500);
  const before = gaveUp(ann);
  hold.held = true;
  const started = Date.now();
  for (;;) {
    if (gaveUp(ann) > before) break;
    assert.ok(Date.now() - started < 4000, `Ann reconnects within 4 s: ${ann.said.join(" | ")}`);
    await sleep(100);
  }
  release();
  // (How a page comes back after it gave up is network.test.mjs's part.)
  assert.deepEqual(ann.errors, []);
});
