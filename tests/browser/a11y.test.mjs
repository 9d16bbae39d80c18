// Accessibility, checked by axe-core (the engine behind Lighthouse and the
// browsers' accessibility audits) on every page of the app: the home page,
// a room before and during a call (with the host's tools, and a newcomer
// waiting in the lobby), and the admin login and dashboard. No
// violation rated serious or critical is allowed. Two of the pages read the
// app in Korean.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { spawnSync } from "node:child_process";
import { BIN, openPage, roomPath, waitEntered, joinCall, expectLiveTiles, sendMessage, useServerAndBrowser } from "./harness.mjs";

const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const PASSWORD = "a11y admin secret";
const env = useServerAndBrowser({
  server: () => {
    const hashed = spawnSync(BIN, ["hash-password"], { input: PASSWORD + "\n", encoding: "utf8" });
    assert.equal(hashed.status, 0, hashed.stderr);
    return { env: { NOOM_ADMIN_PASSWORD_HASH: hashed.stdout.trim() } };
  },
});

/** axe's serious and critical violations on `page` now, as readable lines. */
async function violations(page) {
  // Through the debugging protocol: the pages' CSP (rightly) refuses inline scripts.
  if (!(await page.evaluate(() => Boolean(window.axe)))) await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ")})`);
}

test("home, room, call and admin pages have no serious or critical axe violations", async () => {
  const found = {};
  const home = await openPage(env.browser, env.server, "/", { nickname: "Ann" });
  await home.getByTestId("connection").and(home.locator('[data-state="connected"]')).waitFor();
  await home.locator("#room-input").fill("   ");
  await home.getByTestId("enter-room").click(); // with its error shown
  found.home = await violations(home);

  const ann = await openPage(env.browser, env.server, roomPath("accessible"), { nickname: "Ann" });
  const ben = await openPage(env.browser, env.server, roomPath("accessible"), { nickname: "Ben" });
  await waitEntered(ann);
  await waitEntered(ben);
  await sendMessage(ben, "hello https://example.com");
  found.room = await violations(ann);
  await joinCall(ann);
  await joinCall(ben);
  await expectLiveTiles(ann, ["Ben"]);
  await ann.getByTestId("raise-hand").click();
  await ann.getByTestId("react").click();
  found.call = await violations(ann);
  await ann.getByTestId("shortcuts").click();
  found.shortcuts = await violations(ann);
  await ann.keyboard.press("Escape");
  // The host's tools: speaker view, the lobby with someone waiting, a member's menu.
  await ann.getByTestId("layout-toggle").click();
  await ann.getByTestId("lobby-room").check();
  // (Cat and the phone read the app in Korean: the same checks, the other table.)
  const cat = await openPage(env.browser, env.server, roomPath("accessible"), { nickname: "Cat", locale: "ko-KR" });
  await cat.getByTestId("lobby-wait").waitFor();
  found.lobby = await violations(cat);
  await ann.getByTestId("lobby-list").locator("li").waitFor();
  await ann.locator("#members li", { hasText: "Ben" }).getByTestId("member-menu").click();
  found.host = await violations(ann);
  await ann.getByTestId("lobby-room").uncheck();
  await cat.context().close();

  const phone = await openPage(env.browser, env.server, roomPath("accessible"), { nickname: "Pho", locale: "ko-KR", viewport: { width: 390, height: 844 } });
  await waitEntered(phone);
  found.phone = await violations(phone);

  const admin = await openPage(env.browser, env.server, "/admin");
  await admin.waitForURL("**/admin/login");
  found.login = await violations(admin);
  await admin.getByTestId("password").fill(PASSWORD);
  await admin.getByTestId("login").click();
  await admin.waitForURL(/\/admin$/);
  await admin.locator('#rooms tr[data-room="accessible"]').getByTestId("admin-room").click();
  await admin.getByTestId("room-detail").waitFor();
  found.admin = await violations(admin);

  for (const page of [home, ann, ben, phone, admin]) await page.context().close();
  const all = Object.entries(found).flatMap(([where, list]) => list.map((v) => `${where}: ${v}`));
  assert.deepEqual(all, [], all.join("\n"));
});
