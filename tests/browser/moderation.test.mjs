// Room moderation as the people in the room see it: the creator is the host
// (badged in the member list); the host mutes someone in the call (who may
// unmute), locks the room (a newcomer is refused), turns the lobby on (a
// newcomer, in Korean, waits and is let in), removes someone from the call
// and someone from the room (who cannot come back by reloading).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { startServer, launchBrowser, openPage, roomPath, joinCall, expectLiveTiles, until, waitEntered } from "./harness.mjs";

let server, browser, ann, ben, cleo;
const ROOM = roomPath("moderated");

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  ann = await openPage(browser, server, ROOM, { nickname: "Ann" });
  await waitEntered(ann);
  ben = await openPage(browser, server, ROOM, { nickname: "Ben" });
  await joinCall(ann);
  await joinCall(ben);
  await expectLiveTiles(ann, ["Ben"]);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** The member list of `page`: name text and whether it carries the host badge. */
function membersOf(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll("#members li")].map((li) => ({
      name: li.firstChild.textContent,
      host: Boolean(li.querySelector('[data-testid="host-badge"]')),
    })),
  );
}

/** Clicks `action` in the host's menu for `name`. */
async function hostAction(page, name, action) {
  const li = page.locator("#members li", { hasText: name });
  await li.getByTestId("member-menu").click();
  await li.getByTestId(action).click();
}

test("the creator hosts; only the host sees the host tools", async () => {
  // Each page's list settles on its own (Ben's from his entry, Ann's from
  // Ben's arrival): wait for the expected state, and say what was seen.
  for (const page of [ann, ben]) {
    const expected = [["Ann", true], ["Ben", false]];
    let seen;
    for (const deadline = Date.now() + 15000; Date.now() < deadline; await sleep(100)) {
      seen = (await membersOf(page)).map((m) => [m.name, m.host]).sort();
      if (JSON.stringify(seen) === JSON.stringify(expected)) break;
    }
    assert.deepEqual(seen, expected, "Ann carries the host badge everywhere");
  }
  await ann.getByTestId("host-panel").waitFor();
  assert.equal(await ben.getByTestId("host-panel").isVisible(), false);
  assert.equal(await ben.getByTestId("member-menu").count(), 0, "no menu for non-hosts");
});

test("the host mutes Ben: his microphone goes off, he may turn it on again", async () => {
  await hostAction(ann, "Ben", "mute-member");
  await ben.getByRole("button", { name: "Unmute", exact: true }).waitFor();
  await until(ben, () => /Ann muted your microphone/.test(document.getElementById("call-status").textContent), null, {
    what: "Ben told who muted him",
  });
  await until(ann, () => document.querySelector('[data-testid="tile"]').dataset.audio === "off", null, {
    what: "Ben's tile muted at Ann",
  });
  await ben.getByRole("button", { name: "Unmute", exact: true }).click();
  await until(ann, () => document.querySelector('[data-testid="tile"]').dataset.audio === "on", null, {
    what: "Ben unmuted himself",
  });
});

test("a locked room refuses a newcomer; with the lobby on, a newcomer waits until let in", async () => {
  await ann.getByTestId("lock-room").check();
  await ben.getByTestId("locked").waitFor();
  cleo = await openPage(browser, server, ROOM, { nickname: "Cleo", locale: "ko-KR" });
  await until(cleo, () => document.getElementById("status").dataset.code === "room_locked", null, {
    what: "Cleo refused by the lock",
  });
  assert.match(await cleo.locator("#status").textContent(), /잠긴 방/);
  assert.equal(await ann.locator("#members li").count(), 2, "nobody new got in");

  await ann.getByTestId("lock-room").uncheck();
  await ann.getByTestId("lobby-room").check();
  await until(ben, () => document.getElementById("locked").hidden, null, { what: "unlocked at Ben" });
  await cleo.reload();
  await cleo.getByTestId("lobby-wait").waitFor();
  assert.match(await cleo.getByTestId("lobby-wait").textContent(), /기다리는 중/);
  const waiting = ann.getByTestId("lobby-list").locator("li", { hasText: "Cleo" });
  await waiting.waitFor();
  await until(ann, () => /Cleo is waiting to enter/.test(document.getElementById("messages").textContent), null, {
    what: "Ann told that Cleo waits",
  });
  // Turned away once, Cleo asks again and is let in.
  await waiting.getByTestId("deny").click();
  await until(cleo, () => /허락하지 않았습니다/.test(document.getElementById("lobby-wait-text").textContent), null, {
    what: "Cleo told she was turned away",
  });
  await waiting.waitFor({ state: "detached" });
  await cleo.getByTestId("lobby-ask").click();
  await waiting.waitFor();
  await waiting.getByTestId("admit").click();
  await waitEntered(cleo);
  assert.equal(await cleo.getByTestId("lobby-wait").isVisible(), false);
  await until(ben, () => [...document.querySelectorAll("#members li")].some((li) => li.textContent.startsWith("Cleo")), null, {
    what: "Cleo in Ben's member list",
  });
  await ann.getByTestId("lobby-room").uncheck();
});

test("removed from the call, Ben stays in the room; removed from the room, Cleo cannot come back", async () => {
  await hostAction(ann, "Ben", "remove-call");
  await ben.waitForFunction(() => window.noomCall.phase() !== "incall");
  await until(ben, () => /removed you from the call/.test(document.getElementById("call-status").textContent), null, {
    what: "Ben told he is out of the call",
  });
  await until(ann, () => document.querySelectorAll('[data-testid="tile"]').length === 0, null, {
    what: "Ben's tile gone at Ann",
  });
  assert.equal(await ben.locator("#members li").count(), 3, "Ben is still in the room");

  await hostAction(ann, "Cleo", "remove-room");
  await until(cleo, () => document.getElementById("message-input").disabled, null, { what: "Cleo's chat ends" });
  assert.match(await cleo.locator("#messages").textContent(), /방에서 내보냈습니다/);
  await until(ann, () => document.querySelectorAll("#members li").length === 2, null, { what: "Cleo gone at Ann" });
  await cleo.reload();
  await until(cleo, () => document.getElementById("status").dataset.code === "removed", null, {
    what: "Cleo refused after a reload",
  });
  assert.equal(await ann.locator("#members li").count(), 2);
});

test("the host hands the room over", async () => {
  await hostAction(ann, "Ben", "make-host");
  await ben.getByTestId("host-panel").waitFor();
  await until(ann, () => document.getElementById("host-panel").hidden, null, { what: "Ann's host tools gone" });
  const list = await membersOf(ann);
  assert.deepEqual(list.find((m) => m.name === "Ben").host, true);
  assert.deepEqual([...ann.errors, ...ben.errors, ...(cleo?.errors ?? [])], []);
});

test("a Korean host is told in Korean why the server refused", async () => {
  // The server answers in English; a Korean page shows its code's translation.
  const room = roomPath("방장 오류");
  const dana = await openPage(browser, server, room, { nickname: "Dana", locale: "ko-KR" });
  await waitEntered(dana);
  const eli = await openPage(browser, server, room, { nickname: "Eli" });
  await waitEntered(eli);
  await until(dana, () => document.querySelectorAll("#members li").length === 2, null, { what: "Eli at Dana" });
  // Eli is not in a call: muting him is refused with `not_in_call`.
  await hostAction(dana, "Eli", "mute-member");
  await until(dana, () => document.getElementById("status").dataset.code === "not_in_call", null, {
    what: "Dana told the mute was refused",
  });
  assert.equal(await dana.locator("#status").textContent(), "통화에 참여하고 있지 않습니다.");
  await eli.context().close();
  await dana.context().close();
});
