// The admin page in a real browser: log in with a password hashed by
// `noom hash-password`, watch a room fill up live, delete a message (it
// disappears from the members' pages too), end the call, delete the history,
// disconnect a member, revoke a message's author and close the room (the pages
// explain what happened and do not come back by themselves); and moderate
// the room as its host could: mute, lock, lobby, admit, remove, make host.
// In a Korean browser the login and the dashboard speak Korean.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { BIN, openPage, roomPath, waitEntered, sendMessage, joinCall, expectLiveTiles, useServerAndBrowser } from "./harness.mjs";

const PASSWORD = "browser admin secret";
const env = useServerAndBrowser({
  server: () => {
    const hashed = spawnSync(BIN, ["hash-password"], { input: PASSWORD + "\n", encoding: "utf8" });
    assert.equal(hashed.status, 0, hashed.stderr);
    return { env: { NOOM_ADMIN_PASSWORD_HASH: hashed.stdout.trim(), NOOM_CLUSTER_NODE_ID: "node-a1" } };
  },
});

test("an administrator logs in, watches a room live and manages it", async () => {
  const admin = await openPage(env.browser, env.server, "/admin");
  // Not logged in: the login page, and a wrong password is refused.
  await admin.waitForURL("**/admin/login");
  await admin.getByTestId("password").fill("not the password");
  await admin.getByTestId("login").click();
  await admin.getByTestId("login-error").getByText("Wrong password").waitFor();
  await admin.getByTestId("password").fill(PASSWORD);
  await admin.getByTestId("login").click();
  await admin.waitForURL(/\/admin$/);
  await admin.getByTestId("connection").and(admin.locator('[data-state="connected"]')).waitFor();
  // Which node this is (cluster.node_id).
  await admin.getByTestId("node").getByText("node-a1", { exact: true }).waitFor();
  // Alone, the nodes table lists this node, healthy (a cluster's lists
  // every node: tests/cluster).
  const nodeRows = admin.getByTestId("admin-nodes").locator("tr");
  await nodeRows.first().locator("td").nth(1).getByText("ok", { exact: true }).waitFor();
  assert.equal(await nodeRows.count(), 1);
  assert.equal(await nodeRows.first().locator("td").first().textContent(), "node-a1 (this page)");
  // Every action asks first; the test says yes.
  admin.on("dialog", (dialog) => dialog.accept());

  const room = "ops <room>";
  let cat, dan;
  const ann = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ann" });
  await waitEntered(ann);
  const ben = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ben" });
  await waitEntered(ben);
  await sendMessage(ann, "keep this");
  await sendMessage(ann, "remove <b>this</b>");
  await ben.locator("#messages .message .text", { hasText: "remove <b>this</b>" }).waitFor();

  // The room appears live with its two members.
  const row = admin.locator(`#rooms tr[data-room="${room}"]`);
  await row.locator("td:nth-child(2)", { hasText: "2" }).waitFor();
  await row.getByTestId("admin-room").click();
  await admin.getByTestId("room-detail").waitFor();
  assert.equal(await admin.locator("#room-title").textContent(), room);
  const members = admin.getByTestId("admin-members");
  await members.locator("tr", { hasText: "Ann" }).waitFor();
  await members.locator("tr", { hasText: "Ben" }).waitFor();
  assert.equal(await members.locator("tr").count(), 2);
  assert.match(await members.locator("tr", { hasText: "Ben" }).textContent(), /websocket/);

  // Delete one message: gone from the admin history and from both pages.
  const history = admin.getByTestId("admin-history");
  const doomed = history.locator("li", { hasText: "remove <b>this</b>" });
  await doomed.waitFor();
  await doomed.getByTestId("delete-message").click();
  await doomed.waitFor({ state: "detached" });
  for (const page of [ann, ben]) {
    await page.locator("#messages .message .text", { hasText: "remove <b>this</b>" }).waitFor({ state: "detached" });
    assert.equal(await page.locator("#messages .message .text", { hasText: "keep this" }).count(), 1);
  }
  assert.equal(await history.locator("li").count(), 1);
  assert.equal(await admin.locator("#history b").count(), 0, "message text stays text");

  // End the call: both pages leave it (back to the preview) and say why.
  await joinCall(ann);
  await joinCall(ben);
  await expectLiveTiles(ann, ["Ben"]);
  await admin.getByTestId("room-counts").getByText("2 in call").waitFor();

  // Moderation from outside, as the host could: Ann created the room and hosts it.
  await admin.getByTestId("room-counts").getByText("host Ann").waitFor();
  await members.locator("tr", { hasText: "Ben" }).getByTestId("admin-mute").click();
  await ben.getByRole("button", { name: "Unmute", exact: true }).waitFor();
  await ben.getByTestId("call-status").getByText("administrator muted your microphone").waitFor();
  await admin.getByTestId("admin-lock").click();
  await ann.getByTestId("locked").waitFor();
  await admin.getByTestId("room-counts").getByText("locked").waitFor();
  await admin.getByTestId("admin-lock").click();
  await admin.getByTestId("admin-lobby").click();
  await admin.getByTestId("room-counts").getByText("lobby on").waitFor();
  dan = await openPage(env.browser, env.server, roomPath(room), { nickname: "Dan" });
  await dan.getByTestId("lobby-wait").waitFor();
  await ann.getByTestId("lobby-list").locator("li", { hasText: "Dan" }).waitFor();
  await admin.getByTestId("admin-waiting").locator("li", { hasText: "Dan" }).getByTestId("admin-admit").click();
  await waitEntered(dan);
  await members.locator("tr", { hasText: "Dan" }).getByTestId("admin-remove-room").click();
  await dan.locator("#messages .notice", { hasText: "removed you from this room" }).waitFor();
  await members.locator("tr", { hasText: "Dan" }).waitFor({ state: "detached" });
  await admin.getByTestId("admin-lobby").click();
  await admin.getByTestId("room-counts").getByText("lobby on").waitFor({ state: "detached" });
  await members.locator("tr", { hasText: "Ben" }).getByTestId("admin-make-host").click();
  await ben.getByTestId("host-panel").waitFor();
  await admin.getByTestId("room-counts").getByText("host Ben").waitFor();
  await admin.getByTestId("end-call").click();
  for (const page of [ann, ben]) {
    await page.waitForFunction(() => window.noomCall.phase() === "prejoin");
    await page.getByTestId("call-status").getByText("administrator ended the call").waitFor();
  }
  await admin.getByTestId("room-counts").getByText("0 in call").waitFor();

  // Delete the whole history: both pages empty their chat; new messages go on.
  await admin.getByTestId("clear-history").click();
  for (const page of [ann, ben]) {
    await page.locator("#messages .notice", { hasText: "deleted the chat history" }).waitFor();
    assert.equal(await page.locator("#messages .message").count(), 0);
  }
  await history.locator("li").first().waitFor({ state: "detached" });
  await sendMessage(ann, "after the purge");
  await ben.locator("#messages .message .text", { hasText: "after the purge" }).waitFor();

  // Disconnect Ben: his page says so and stays disconnected.
  await members.locator("tr", { hasText: "Ben" }).getByTestId("disconnect").click();
  await ben.getByTestId("connection").and(ben.locator('[data-state="kicked"]')).waitFor();
  await ben.locator("#messages .notice", { hasText: "administrator disconnected you" }).waitFor();
  await members.locator("tr", { hasText: "Ben" }).waitFor({ state: "detached" });
  await ann.locator("#members li", { hasText: "Ben" }).waitFor({ state: "detached" });

  // Revoke the author of a message from the history: Cat's page is told her
  // session ended and does not come back by itself.
  cat = await openPage(env.browser, env.server, roomPath(room), { nickname: "Cat" });
  await waitEntered(cat);
  await sendMessage(cat, "spam spam spam");
  const spam = history.locator("li", { hasText: "spam spam spam" });
  await spam.waitFor();
  await spam.getByTestId("revoke-author").click();
  await cat.getByTestId("connection").and(cat.locator('[data-state="kicked"]')).waitFor();
  await cat.locator("#messages .notice", { hasText: "ended your session" }).waitFor();
  await members.locator("tr", { hasText: "Cat" }).waitFor({ state: "detached" });

  // Close the room: Ann is told, cannot post, and the room leaves the lists.
  await admin.getByTestId("close-room").click();
  await ann.locator("#messages .notice", { hasText: "closed this room" }).waitFor();
  assert.equal(await ann.locator("#message-input").isDisabled(), true);
  await row.waitFor({ state: "detached" });
  const rooms = await (await fetch(env.server.url("/api/rooms"))).json();
  assert.deepEqual(rooms, []);

  for (const page of [admin, ann, ben, cat, dan]) {
    assert.deepEqual(page.errors, []);
    await page.context().close();
  }
});

test("logging out in one tab sends the other admin tab back to the login", async () => {
  const first = await openPage(env.browser, env.server, "/admin/login");
  await first.getByTestId("password").fill(PASSWORD);
  await first.getByTestId("login").click();
  await first.waitForURL(/\/admin$/);
  await first.getByTestId("connection").and(first.locator('[data-state="connected"]')).waitFor();
  // A second tab of the same browser shares the session cookie.
  const second = await first.context().newPage();
  second.errors = [];
  second.on("pageerror", (err) => second.errors.push(String(err)));
  await second.goto("/admin");
  await second.getByTestId("connection").and(second.locator('[data-state="connected"]')).waitFor();
  await first.getByTestId("logout").click();
  await first.waitForURL("**/admin/login");
  await second.waitForURL("**/admin/login", { timeout: 10000 });
  assert.deepEqual(second.errors, []);
  await first.context().close();
});

test("the admin page in Korean: login and its refusal, headings, room actions, a confirmation and its result", async () => {
  // The admin page follows the browser's language like the rest of the app;
  // the test ids stay English.
  const admin = await openPage(env.browser, env.server, "/admin/login", { locale: "ko-KR" });
  await admin.getByTestId("login").getByText("로그인", { exact: true }).waitFor();
  assert.equal(await admin.getByTestId("password").getAttribute("placeholder"), "관리자 비밀번호");
  // The server refuses in English; the page says it in Korean.
  await admin.getByTestId("password").fill("not the password");
  await admin.getByTestId("login").click();
  await admin.getByTestId("login-error").getByText("비밀번호가 틀렸습니다.", { exact: true }).waitFor();
  await admin.getByTestId("password").fill(PASSWORD);
  await admin.getByTestId("login").click();
  await admin.waitForURL(/\/admin$/);
  await admin.getByTestId("connection").and(admin.locator('[data-state="connected"]')).waitFor();
  assert.equal(await admin.evaluate(() => document.documentElement.lang), "ko");
  assert.equal(await admin.title(), "관리 · Noom");
  assert.equal((await admin.locator("h1").textContent()).trim(), "Noom 관리");
  assert.equal((await admin.locator("#rooms-title").textContent()).trim(), "방 목록");
  assert.equal((await admin.getByTestId("logout").textContent()).trim(), "로그아웃");

  const room = "관리 화면";
  const ann = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ann" });
  await waitEntered(ann);
  await admin.locator(`#rooms tr[data-room="${room}"]`).getByTestId("admin-room").click();
  await admin.getByTestId("room-detail").waitFor();
  await admin.getByTestId("room-counts").getByText("참여자 1명").waitFor();
  await admin.getByTestId("room-counts").getByText("호스트 Ann").waitFor();
  for (const [id, name] of [
    ["admin-lock", "방 잠그기"],
    ["admin-lobby", "대기실 켜기"],
    ["end-call", "통화 종료"],
    ["clear-history", "대화 기록 삭제"],
    ["close-room", "방 닫기"],
  ]) {
    assert.equal((await admin.getByTestId(id).textContent()).trim(), name, id);
  }
  const annRow = admin.getByTestId("admin-members").locator("tr", { hasText: "Ann" });
  assert.equal((await annRow.getByTestId("disconnect").textContent()).trim(), "연결 끊기");
  await admin.getByRole("button", { name: "방 잠그기" }).waitFor();

  // An action asks in Korean, then says what it did in Korean.
  const asked = [];
  admin.on("dialog", (dialog) => {
    asked.push(dialog.message());
    dialog.accept();
  });
  await admin.getByTestId("admin-lock").click();
  await admin.getByTestId("admin-status").getByText(`${room} 방을 잠갔습니다.`, { exact: true }).waitFor();
  await admin.getByTestId("admin-lock").getByText("방 잠금 해제", { exact: true }).waitFor();
  assert.deepEqual(asked, [`${room} 방을 잠글까요? 새로 아무도 들어올 수 없게 됩니다.`]);

  // Closing it leaves the server as the other tests expect it.
  await admin.getByTestId("close-room").click();
  await admin.getByTestId("admin-status").getByText(`${room} 방을 닫았습니다.`, { exact: true }).waitFor();
  for (const page of [admin, ann]) {
    assert.deepEqual(page.errors, []);
    await page.context().close();
  }
});
