// The server restarts (SIGTERM, same data directory and port) under two open
// pages in a call: both show the reconnecting banner and come back, the
// messages sent meanwhile appear exactly once, and the call is rebuilt.
import { test } from "node:test";
import assert from "node:assert/strict";
import { openPage, roomPath, waitEntered, joinCall, expectLiveTiles, until, sendMessage, useServerAndBrowser } from "./harness.mjs";

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
