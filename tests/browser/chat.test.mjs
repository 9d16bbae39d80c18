// Chat between two pages (HTML shown as text), the home page's live room list,
// the Korean interface, and the chat drawer on a phone-sized screen.
import { test } from "node:test";
import assert from "node:assert/strict";
import { openPage, roomPath, waitEntered, until, sendMessage, useServerAndBrowser } from "./harness.mjs";

const env = useServerAndBrowser();

test("two pages chat; HTML in a message is shown as text", async () => {
  const room = "chat <room>";
  const ann = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ann" });
  const ben = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ben <b>" });
  await waitEntered(ann);
  await waitEntered(ben);
  assert.equal(await ann.locator("#room-name").textContent(), room);
  await ann.locator("#members li", { hasText: "Ben <b>" }).waitFor();

  await sendMessage(ann, "hello Ben");
  await ben.locator("#messages .message .text", { hasText: "hello Ben" }).waitFor();
  // Read out to Ben through a polite live region (not to Ann, who wrote it).
  assert.equal(await ben.getByTestId("announce").textContent(), "Ann: hello Ben");
  assert.equal(await ben.getByTestId("announce").getAttribute("aria-live"), "polite");
  assert.equal(await ann.getByTestId("announce").textContent(), "");

  const html = '<img src=x onerror="window.pwned=1"><b>bold</b> & <script>window.pwned=2</script>';
  await sendMessage(ben, html);
  const shown = ann.locator("#messages .message .text").last();
  await shown.getByText(html, { exact: true }).waitFor();
  assert.equal(await shown.textContent(), html);
  assert.equal(await ann.locator("#messages img, #messages b, #messages script").count(), 0, "no markup made it in");
  assert.equal(await ann.evaluate(() => window.pwned), undefined);
  // Own messages are marked; the other's are not.
  assert.equal(await ben.locator("#messages .message.own").count(), 1);
  assert.equal(await ann.locator("#messages .message:not(.own)").count(), 1);
  // Nicknames are text too.
  assert.equal(await ann.locator("#messages .message:not(.own) .nick").textContent(), "Ben <b>");

  // A newcomer gets the history on entry.
  const cat = await openPage(env.browser, env.server, roomPath(room), { nickname: "Cat" });
  await waitEntered(cat);
  await cat.locator("#messages .message .text", { hasText: "hello Ben" }).waitFor();
  assert.equal(await cat.locator("#messages .message").count(), 2);
  await ann.locator("#messages .notice", { hasText: "Cat joined" }).waitFor();
  for (const p of [ann, ben, cat]) {
    assert.deepEqual(p.errors, []);
    await p.context().close();
  }
});

test("the home page's room list updates live", async () => {
  const home = await openPage(env.browser, env.server, "/");
  await home.getByTestId("connection").and(home.locator('[data-state="connected"]')).waitFor();
  const item = (name) => home.locator(`#rooms li[data-room="${name}"]`);

  const visitor = await openPage(env.browser, env.server, roomPath("live list"));
  await waitEntered(visitor);
  await item("live list").locator(".count", { hasText: "1" }).waitFor();
  assert.equal(await item("live list").locator(".count").getAttribute("aria-label"), "1 person");
  const second = await openPage(env.browser, env.server, roomPath("live list"));
  await waitEntered(second);
  await item("live list").locator(".count", { hasText: "2" }).waitFor();
  assert.equal(await item("live list").locator(".count").getAttribute("aria-label"), "2 people");
  await second.context().close();
  await item("live list").locator(".count", { hasText: "1" }).waitFor();

  // Clicking a room enters it.
  await item("live list").getByRole("link").click();
  await home.waitForURL(/\/r\/live%20list$/);
  await waitEntered(home);
  await visitor.context().close();
  await home.context().close();
});

test("Korean interface, English test ids", async () => {
  const page = await openPage(env.browser, env.server, roomPath("한국어 방"), { locale: "ko-KR" });
  await waitEntered(page);
  assert.equal(await page.evaluate(() => document.documentElement.lang), "ko");
  assert.equal((await page.getByTestId("join-call").textContent()).trim(), "통화 참여");
  assert.equal((await page.getByTestId("send").textContent()).trim(), "보내기");
  // "1명 접속 중", the number joined to its counter word.
  assert.equal(await page.getByTestId("member-count-label").textContent(), "1명 접속 중");
  assert.equal((await page.getByTestId("copy-invite").textContent()).trim(), "초대 링크 복사");
  assert.equal(await page.getByTestId("prejoin-name").evaluate((i) => i.labels[0].textContent.trim()), "내 이름");
  await page.getByRole("button", { name: "통화 참여" }).click();
  await page.getByRole("button", { name: "통화 나가기" }).waitFor();
  for (const [id, name] of [
    ["mute", "음소거"],
    ["camera", "카메라 끄기"],
    ["share-screen", "화면 공유"],
    ["raise-hand", "손 들기"],
    ["react", "반응"],
  ]) {
    assert.equal((await page.getByTestId(id).textContent()).trim(), name, id);
  }
  assert.equal((await page.getByTestId("layout-toggle").textContent()).trim(), "발표자 보기");
  await page.getByTestId("shortcuts").click();
  const dialog = page.getByTestId("shortcuts-dialog");
  await dialog.waitFor({ state: "visible" });
  assert.match(await dialog.textContent(), /단축키/);
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "hidden" });
  await page.getByTestId("leave-call").click();
  await page.getByTestId("join-call").waitFor();
  await page.context().close();
});

test("on a phone the chat is a drawer with an unread count", async () => {
  const phone = await openPage(env.browser, env.server, roomPath("drawer"), {
    viewport: { width: 390, height: 760 },
    nickname: "Phone",
  });
  const desk = await openPage(env.browser, env.server, roomPath("drawer"), { nickname: "Desk" });
  await waitEntered(phone);
  await waitEntered(desk);
  assert.equal(await phone.locator("#message-input").isVisible(), false, "drawer closed");
  await sendMessage(desk, "ping");
  await phone.getByTestId("unread").getByText("1").waitFor();
  await phone.getByTestId("chat-toggle").click();
  await phone.locator("#message-input").waitFor({ state: "visible" });
  await phone.locator("#messages .message .text", { hasText: "ping" }).waitFor({ state: "visible" });
  assert.equal(await phone.getByTestId("unread").isVisible(), false);
  await sendMessage(phone, "pong");
  await desk.locator("#messages .message .text", { hasText: "pong" }).waitFor();
  await phone.keyboard.press("Escape");
  await phone.locator("#message-input").waitFor({ state: "hidden" });
  // Focus goes back to the button that opened the drawer.
  assert.equal(await phone.evaluate(() => document.activeElement.dataset.testid), "chat-toggle");
  await phone.context().close();
  await desk.context().close();
});

test("pre-join preview: camera and microphone pickers, live level meter", async () => {
  const page = await openPage(env.browser, env.server, roomPath("preview"));
  await waitEntered(page);
  await page.waitForFunction(() => document.getElementById("preview-video").readyState >= 2);
  const cams = await page.locator("#camera-select option").allTextContents();
  const mics = await page.locator("#mic-select option").allTextContents();
  assert.deepEqual(cams, ["fake_device_0", "fake_device_1", "fake_device_2"]);
  assert.ok(mics.length >= 2 && mics.every((m) => m.startsWith("Fake")), mics.join());
  // The fake microphone beeps: the meter must move.
  await page.waitForFunction(() => Number(document.getElementById("level").getAttribute("aria-valuenow")) > 10);
  // Picking another camera before joining changes the preview.
  const id = await page.locator("#camera-select option", { hasText: "fake_device_2" }).getAttribute("value");
  await page.selectOption("#camera-select", id);
  await until(page, () => window.noomCall.local().videoTrack?.label === "fake_device_2", null, {
    what: "preview from fake_device_2",
  });
  await page.context().close();
});

test("the home page says why a nickname or a room name is refused, next to the field", async () => {
  const home = await openPage(env.browser, env.server, "/");
  try {
    await home.getByTestId("connection").and(home.locator('[data-state="connected"]')).waitFor();
    // A nickname of spaces.
    await home.locator("#nickname-input").fill("    ");
    await home.getByTestId("save-nickname").click();
    const nicknameError = home.getByTestId("nickname-error");
    await nicknameError.waitFor();
    assert.match(await nicknameError.textContent(), /not a space/);
    assert.equal(await home.locator("#nickname-input").getAttribute("aria-invalid"), "true");
    // Typing clears it.
    await home.locator("#nickname-input").fill("Ann");
    await nicknameError.waitFor({ state: "hidden" });

    // The room field takes no more than a room name may have...
    assert.equal(await home.locator("#room-input").getAttribute("maxlength"), "64");
    await home.locator("#room-input").fill("   ");
    await home.getByTestId("enter-room").click();
    await home.getByTestId("room-error").getByText("not a space").waitFor();
    assert.equal(new URL(home.url()).pathname, "/");

    // ...and a room address with a name that cannot be used comes back here saying so.
    await home.goto(env.server.url(roomPath("x".repeat(65))));
    await home.waitForURL((url) => url.pathname === "/" && url.search === "");
    assert.match(await home.getByTestId("room-error").textContent(), /1 to 64 characters/);
    assert.deepEqual(home.errors, []);
  } finally {
    await home.context().close();
  }
});

test("the room asks for your name before the call, and copies its invite link", async () => {
  const room = "invite me";
  const ann = await openPage(env.browser, env.server, roomPath(room), {
    nickname: "Ann",
    permissions: ["camera", "microphone", "clipboard-read", "clipboard-write"],
  });
  const ben = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ben" });
  try {
    await waitEntered(ann);
    await waitEntered(ben);
    // Copy invite link: the room's address, on the clipboard.
    await ann.getByTestId("copy-invite").click();
    await ann.getByTestId("invite-status").getByText("Invite link copied.").waitFor();
    assert.equal(await ann.evaluate(() => navigator.clipboard.readText()), env.server.url(roomPath(room)));

    // The pre-join panel has the session's name; a blank one is refused there.
    const name = ann.getByTestId("prejoin-name");
    assert.equal(await name.inputValue(), "Ann");
    await name.fill("  ");
    await ann.getByTestId("join-call").click();
    await ann.getByTestId("prejoin-name-error").getByText("not a space").waitFor();
    assert.equal(await ann.getByTestId("prejoin").isVisible(), true, "still before the call");
    // A new name is the nickname from then on: the others see it.
    await name.fill("Annie");
    await ann.getByTestId("join-call").click();
    await ann.getByTestId("leave-call").waitFor();
    await ben.locator("#members li", { hasText: "Annie" }).waitFor();
    assert.deepEqual([ann.errors, ben.errors], [[], []]);
  } finally {
    for (const page of [ann, ben]) await page.context().close();
  }
});

test("multi-line messages with Shift+Enter; web addresses become safe links", async () => {
  const room = "lines and links";
  const ann = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ann" });
  const ben = await openPage(env.browser, env.server, roomPath(room), { nickname: "Ben" });
  try {
    await waitEntered(ann);
    await waitEntered(ben);
    // Shift+Enter is a new line; Enter sends.
    const input = ann.locator("#message-input");
    await input.click();
    await ann.keyboard.type("first line");
    await ann.keyboard.press("Shift+Enter");
    await ann.keyboard.type("second line");
    await ann.keyboard.press("Enter");
    const got = ben.locator("#messages .message .text", { hasText: "second line" });
    await got.waitFor();
    assert.equal(await got.textContent(), "first line\nsecond line");
    assert.equal(await input.inputValue(), "");

    // An address is a link (opened apart from the page); markup and other
    // schemes stay text.
    await sendMessage(ann, "see https://example.com/a?b=1&c=<i>x</i>. not javascript:alert(1) or <a href=https://evil.test>");
    const text = ben.locator("#messages .message .text", { hasText: "see https://example.com" });
    await text.waitFor();
    const links = await text.evaluate((p) =>
      [...p.querySelectorAll("*")].map((el) => ({ tag: el.tagName, href: el.getAttribute("href"), rel: el.rel, target: el.target, text: el.textContent })),
    );
    assert.deepEqual(links, [
      { tag: "A", href: "https://example.com/a?b=1&c=", rel: "noopener noreferrer", target: "_blank", text: "https://example.com/a?b=1&c=" },
      { tag: "A", href: "https://evil.test/", rel: "noopener noreferrer", target: "_blank", text: "https://evil.test" },
    ]);
    assert.equal(
      await text.textContent(),
      "see https://example.com/a?b=1&c=<i>x</i>. not javascript:alert(1) or <a href=https://evil.test>",
    );
    assert.deepEqual([ann.errors, ben.errors], [[], []]);
  } finally {
    for (const page of [ann, ben]) await page.context().close();
  }
});

test("a room created unlisted stays off the home page's list; its link still works", async () => {
  const creator = await openPage(env.browser, env.server, "/", { nickname: "Una" });
  const watcher = await openPage(env.browser, env.server, "/");
  try {
    await watcher.getByTestId("connection").and(watcher.locator('[data-state="connected"]')).waitFor();
    await creator.getByTestId("create-unlisted").check();
    await creator.locator("#room-input").fill("hidden place");
    await creator.getByTestId("enter-room").click();
    await creator.waitForURL(/\/r\/hidden%20place$/);
    await waitEntered(creator);
    await creator.getByTestId("unlisted").waitFor({ state: "visible" });
    await sendMessage(creator, "only by link");
    // A public room entered after it shows up on the watcher's list; the unlisted one never does.
    const other = await openPage(env.browser, env.server, roomPath("public place"));
    await waitEntered(other);
    await watcher.locator('#rooms li[data-room="public place"]').waitFor();
    assert.equal(await watcher.locator('#rooms li[data-room="hidden place"]').count(), 0);
    // Its link works, and says it is unlisted.
    await other.goto(env.server.url(roomPath("hidden place")));
    await waitEntered(other);
    await other.locator("#messages .message .text", { hasText: "only by link" }).waitFor();
    await other.getByTestId("unlisted").waitFor({ state: "visible" });
    assert.equal(await watcher.locator('#rooms li[data-room="hidden place"]').count(), 0);
    await other.context().close();
  } finally {
    for (const page of [creator, watcher]) await page.context().close();
  }
});

test("a room with a password asks for it, says when it is wrong, and remembers it", async () => {
  const owner = await openPage(env.browser, env.server, "/", { nickname: "Ola" });
  const guest = await openPage(env.browser, env.server, "/", { nickname: "Gil" });
  try {
    await owner.getByTestId("connection").and(owner.locator('[data-state="connected"]')).waitFor();
    await owner.getByTestId("create-password").fill("tulip 42");
    await owner.locator("#room-input").fill("locked room");
    await owner.getByTestId("enter-room").click();
    await waitEntered(owner);
    await owner.getByTestId("protected").waitFor({ state: "visible" });
    await sendMessage(owner, "behind the door");

    // The guest's page asks for the password; the history stays hidden.
    await guest.goto(env.server.url(roomPath("locked room")));
    await guest.getByTestId("password-form").waitFor({ state: "visible" });
    assert.equal(await guest.locator("#messages .message").count(), 0);
    await guest.getByTestId("room-password").fill("tulip 41");
    await guest.getByTestId("room-password-enter").click();
    await guest.getByTestId("password-error").getByText("not this room's password").waitFor();
    assert.equal(await guest.locator("#messages .message").count(), 0);
    await guest.getByTestId("room-password").fill("tulip 42");
    await guest.getByTestId("room-password-enter").click();
    await guest.locator("#messages .message .text", { hasText: "behind the door" }).waitFor();
    await guest.getByTestId("password-form").waitFor({ state: "hidden" });
    // A reload does not ask again.
    await guest.reload();
    await waitEntered(guest);
    assert.equal(await guest.getByTestId("password-form").isVisible(), false);
    assert.deepEqual([owner.errors, guest.errors], [[], []]);
  } finally {
    for (const page of [owner, guest]) await page.context().close();
  }
});
