/**
 * room.js: the room page (GET /r/{room}), chat part.
 *
 * It exists to enter the room named in <main data-room>, show its history and
 * live messages, who is here, and the connection state, and to survive
 * reconnects without losing or repeating messages: every message is keyed by
 * its per-room `seq` (a Set of seen seqs, list kept in seq order), and a
 * reconnect re-enters with { after: lastSeq } to fetch only what was missed.
 * User text reaches the DOM only through textContent and attributes.
 *
 * The video call lives in call.js (WebRTC) and call-ui.js (its DOM); this
 * module wires it in: it hands over the member list (for nicknames) and,
 * after a reconnect, re-enters the room first and then rebuilds the call.
 * On phones the chat is a drawer (#side, toggled from the header) with an
 * unread counter; on wide screens it is a side panel.
 */
import { NoomClient } from "/static/js/protocol.js";
import { fieldError, showConnection, showStatus } from "/static/js/ui.js";
import { errorText, localize, t } from "/static/js/i18n.js";
import { setupCall } from "/static/js/call-ui.js";
import { setupModeration } from "/static/js/moderation.js";

localize();

const PAGE = 50; // messages per "older" page
const CATCH_UP_PAGE = 200; // the protocol's maximum history page

const $ = (id) => document.getElementById(id);
const room = $("room").dataset.room;
const connection = $("connection");
const status = $("status");
const memberCount = $("member-count");
const memberList = $("members");
const messageList = $("messages");
const olderButton = $("load-older");
const sendForm = $("send-form");
const messageInput = $("message-input");
const membersCount = $("members-count");
const side = $("side");
const chatToggle = $("chat-toggle");
const chatClose = $("chat-close");
const unread = $("unread");

const client = new NoomClient();

// ---- invite ------------------------------------------------------------------

const unlistedBadge = $("unlisted");
const protectedBadge = $("protected");
const inviteButton = $("copy-invite");
const inviteStatus = $("invite-status");
let inviteTimer = null;
inviteButton.addEventListener("click", async () => {
  const url = `${window.location.origin}/r/${encodeURIComponent(room)}`;
  clearTimeout(inviteTimer);
  try {
    await navigator.clipboard.writeText(url);
    inviteStatus.textContent = t("room.inviteCopied");
    inviteTimer = setTimeout(() => (inviteStatus.textContent = ""), 4000);
  } catch {
    // No clipboard (a plain-HTTP address, or refused): the link to copy by hand.
    inviteStatus.textContent = t("room.inviteManual", { url });
  }
});
// Before the call's own pagehide handler: the server hears first.
client.closeWithPage();

const seen = new Set(); // seqs shown
let firstSeq = Infinity; // lowest seq shown
let lastSeq = 0; // highest seq shown
let entered = false; // at least one successful enter_room
let reachedStart = false; // history has nothing before firstSeq
let loadingOlder = false;
let gapTimer = null;
let closed = false; // an administrator closed the room: never re-enter it
const members = new Map(); // socket id -> Member

// ---- messages ----------------------------------------------------------

function nearBottom() {
  return messageList.scrollHeight - messageList.scrollTop - messageList.clientHeight < 80;
}

function scrollToBottom() {
  messageList.scrollTop = messageList.scrollHeight;
}

/** Web addresses in a message: http(s) only, trailing punctuation left out. */
const URL_RE = /\bhttps?:\/\/[^\s<>"']+/gi;

/**
 * A message's text as nodes: text, and links for the web addresses in it.
 * Only text nodes and <a> elements built here, never HTML from the message.
 */
function linkified(text) {
  const nodes = [];
  let at = 0;
  for (const match of text.matchAll(URL_RE)) {
    let href = match[0].replace(/[.,;:!?)\]}]+$/, "");
    let url = null;
    try {
      url = new URL(href);
    } catch {
      url = null;
    }
    if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) continue;
    if (match.index > at) nodes.push(document.createTextNode(text.slice(at, match.index)));
    const a = document.createElement("a");
    a.href = url.href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    a.textContent = href;
    nodes.push(a);
    at = match.index + href.length;
  }
  if (at < text.length) nodes.push(document.createTextNode(text.slice(at)));
  return nodes;
}

function messageElement(message) {
  const li = document.createElement("li");
  li.className = "message";
  li.classList.toggle("own", message.user === client.user);
  li.dataset.seq = String(message.seq);
  li.dataset.user = message.user;

  const meta = document.createElement("div");
  meta.className = "meta";
  const nick = document.createElement("span");
  nick.className = "nick";
  nick.textContent = message.nickname;
  meta.append(nick);
  if (typeof message.ts === "number") {
    const date = new Date(message.ts);
    const time = document.createElement("time");
    time.dateTime = date.toISOString();
    time.title = date.toLocaleString();
    time.textContent = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    meta.append(" ", time);
  }

  const text = document.createElement("p");
  text.className = "text";
  text.append(...linkified(String(message.text ?? "")));

  li.append(meta, text);
  return li;
}

/** Insert messages not seen yet, in seq order. Returns how many were added. */
function addMessages(messages) {
  let added = 0;
  for (const message of messages || []) {
    if (!message || typeof message.seq !== "number" || seen.has(message.seq)) continue;
    if (message.room !== undefined && message.room !== room) continue;
    seen.add(message.seq);
    const li = messageElement(message);
    if (message.seq > lastSeq) {
      messageList.append(li); // the usual case: newest at the end
    } else {
      const after = [...messageList.querySelectorAll(".message")].find(
        (el) => Number(el.dataset.seq) > message.seq,
      );
      messageList.insertBefore(li, after || null);
    }
    firstSeq = Math.min(firstSeq, message.seq);
    lastSeq = Math.max(lastSeq, message.seq);
    added += 1;
  }
  updateOlderButton();
  if (added) scheduleGapCheck();
  return added;
}

function addNotice(text) {
  const stick = nearBottom();
  const li = document.createElement("li");
  li.className = "notice";
  li.textContent = text;
  messageList.append(li);
  if (stick) scrollToBottom();
}

function updateOlderButton() {
  olderButton.hidden = !(entered && Number.isFinite(firstSeq) && firstSeq > 1 && !reachedStart);
}

/** Fetch everything after lastSeq (after a reconnect with many missed messages). */
async function catchUp() {
  for (let page = 0; page < 50; page += 1) {
    const ack = await client.history(room, { after: lastSeq, limit: CATCH_UP_PAGE });
    if (!addMessages(ack.messages)) break;
  }
}

/**
 * Seqs are contiguous, so a hole between firstSeq and lastSeq means a message
 * was missed (e.g. one sent while our enter_room was in flight). Give
 * in-flight acks a moment, then fetch from the first hole.
 */
function scheduleGapCheck() {
  clearTimeout(gapTimer);
  gapTimer = setTimeout(async () => {
    for (let seq = firstSeq; seq < lastSeq; seq += 1) {
      if (!seen.has(seq)) {
        try {
          const ack = await client.history(room, { after: seq - 1, limit: CATCH_UP_PAGE });
          addMessages(ack.messages);
          // Seqs the server no longer has (deleted) are not holes to refetch.
          const next = ack.messages.length ? ack.messages[0].seq : lastSeq;
          for (let s = seq; s < next; s += 1) seen.add(s);
        } catch {
          /* retried on the next message or reconnect */
        }
        return;
      }
    }
  }, 1500);
}

async function loadOlder() {
  if (loadingOlder || olderButton.hidden) return;
  loadingOlder = true;
  try {
    const ack = await client.history(room, { before: firstSeq, limit: PAGE });
    const fromBottom = messageList.scrollHeight - messageList.scrollTop;
    if (!addMessages(ack.messages)) reachedStart = true;
    messageList.scrollTop = messageList.scrollHeight - fromBottom; // keep the view still
  } catch (err) {
    showStatus(status, errorText(err), err.code);
  } finally {
    loadingOlder = false;
    updateOlderButton();
  }
}

// ---- members -------------------------------------------------------------

function renderMembers() {
  const items = [...members.values()].map((member) => {
    const li = document.createElement("li");
    li.dataset.id = member.id;
    li.dataset.user = member.user;
    li.textContent = member.nickname;
    if (member.id === client.id) {
      li.classList.add("self");
      const you = document.createElement("span");
      you.className = "muted";
      you.textContent = t("room.you");
      li.append(you);
    }
    moderation.decorate(li, member);
    return li;
  });
  memberList.replaceChildren(...items);
}

function setCount(count) {
  memberCount.textContent = String(typeof count === "number" ? count : members.size);
  membersCount.textContent = memberCount.textContent;
}

function setMembers(list, count) {
  members.clear();
  for (const member of list || []) members.set(member.id, member);
  if (client.id && !members.has(client.id)) {
    members.set(client.id, { id: client.id, user: client.user, nickname: client.nickname });
  }
  setCount(count);
  renderMembers();
}

// ---- moderation -------------------------------------------------------------

const moderation = setupModeration({
  client,
  room,
  notice: (text) => addNotice(text),
  announce: (text) => (announcer.textContent = text),
  status,
  reenter: () => enter(),
});
moderation.setRerender(() => renderMembers());

// ---- entering ------------------------------------------------------------

/** The home page asked to create this room unlisted (once, for this tab). */
function creationOptions() {
  const key = `noom.create.${room}`;
  let asked = {};
  try {
    asked = JSON.parse(sessionStorage.getItem(key) || "{}") || {};
  } catch {
    asked = {};
  }
  sessionStorage.removeItem(key);
  const options = {};
  if (asked.unlisted === true) options.unlisted = true;
  if (typeof asked.password === "string" && asked.password) options.password = asked.password;
  return options;
}
const creating = creationOptions();

// A room with a password: the one this tab gave it, kept for reconnects
// (the server forgets who gave it when it restarts).
const passwordKey = `noom.password.${room}`;
if (creating.password) sessionStorage.setItem(passwordKey, creating.password);
const passwordForm = $("password-form");
const passwordInput = $("password-input");
const passwordError = $("password-error");

async function enter() {
  const resuming = lastSeq > 0;
  const options = resuming ? { after: lastSeq } : entered ? {} : { ...creating };
  const password = sessionStorage.getItem(passwordKey);
  if (password) options.password = password;
  try {
    const ack = await client.enterRoom(room, options);
    const stick = !entered || nearBottom();
    entered = true;
    passwordForm.hidden = true;
    unlistedBadge.hidden = ack.unlisted !== true;
    protectedBadge.hidden = ack.protected !== true;
    moderation.entered(ack, () => [...members.values()]);
    setMembers(ack.members, ack.count);
    const added = addMessages(ack.messages);
    if (resuming && added) await catchUp();
    if (stick) scrollToBottom();
  } catch (err) {
    if (err.code === "password_required" || err.code === "wrong_password") {
      sessionStorage.removeItem(passwordKey);
      passwordForm.hidden = false;
      fieldError(passwordError, passwordInput, err.code === "wrong_password" ? t("room.wrongPassword") : "");
      passwordInput.focus();
      return false;
    }
    if (moderation.refused(err)) return false;
    showStatus(status, errorText(err), err.code);
    // A busy or restarting server: worth another try.
    return TRANSIENT.has(err.code) ? "retry" : false;
  }
  return true;
}

/** Errors of enter_room that may pass by themselves. */
const TRANSIENT = new Set(["timeout", "internal", "rate_limited", "offline"]);

/** Enters the room, trying again a few times while the server is busy. */
async function enterPatiently() {
  for (let attempt = 0; ; attempt += 1) {
    const result = await enter();
    if (result !== "retry" || attempt >= 5 || !client.connected) return result === true;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

passwordForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const password = passwordInput.value;
  if (!password) return;
  sessionStorage.setItem(passwordKey, password);
  passwordInput.value = "";
  await enter();
});

// ---- events ----------------------------------------------------------------

// Who was here when our connection (or the server) went away: they come
// back under new socket ids, and that is no news worth a "joined" line.
const RETURN_WINDOW_MS = 30000;
let returning = new Set();
let returningTimer = null;
// Members whose connection dropped (bye, "disconnected"): their "left" line
// waits AWAY_NOTICE_MS, and is never written if they are back by then.
const AWAY_NOTICE_MS = 10000;
const away = new Map(); // user id -> timer of the pending "left" line

client.on("status", ({ state }) => showConnection(connection, state));
client.on("connect", async ({ reconnect }) => {
  if (closed) return;
  if (reconnect) {
    returning = new Set([...members.values()].map((m) => m.user));
    clearTimeout(returningTimer);
    returningTimer = setTimeout(() => (returning = new Set()), RETURN_WINDOW_MS);
  }
  const ok = await enterPatiently();
  if (ok) {
    // What failed while we were offline is over now.
    if (status.dataset.code === "offline" || status.dataset.code === "timeout") showStatus(status, "");
  }
  if (ok && reconnect) callUi.rejoin();
});

client.on("session", () => {
  for (const li of messageList.querySelectorAll(".message")) {
    li.classList.toggle("own", li.dataset.user === client.user);
  }
  const self = members.get(client.id);
  if (self) {
    members.set(client.id, { ...self, user: client.user, nickname: client.nickname });
    renderMembers();
  }
});

/** Read out a message that just arrived from someone else (a polite live region). */
const announcer = $("announce");
function announce(message) {
  if (!message || message.user === client.user) return;
  announcer.textContent = t("room.said", { name: message.nickname, text: message.text });
}

client.on("new_message", ({ message }) => {
  const stick = nearBottom();
  const added = addMessages([message]);
  if (added) announce(message);
  if (added && stick) scrollToBottom();
  if (added && !drawerVisible()) bumpUnread(added);
  // A message of ours that the server could not confirm in time (its disk
  // was full) and then found stored: it is sent after all.
  if (message && message.user === client.user && unconfirmed.delete(message.text)) {
    if (status.dataset.code === "unconfirmed" && unconfirmed.size === 0) showStatus(status, "");
  }
});

client.on("welcome", ({ room: name, member, count }) => {
  if (name !== room || !member) return;
  const isNew = !members.has(member.id);
  // Another connection of the same person is here already (a tab, or the
  // connection this one replaces after a network change): no news.
  const twin = [...members.values()].some((m) => m.user === member.user && m.id !== member.id);
  members.set(member.id, member);
  setCount(count);
  renderMembers();
  const back = returning.has(member.user) || away.has(member.user);
  if (away.has(member.user)) {
    clearTimeout(away.get(member.user));
    away.delete(member.user);
  }
  if (isNew && !back && !twin) addNotice(t("room.joined", { name: member.nickname }));
});

client.on("bye", ({ room: name, member, count, reason }) => {
  if (name !== room || !member) return;
  const known = members.delete(member.id);
  setCount(count);
  renderMembers();
  if (!known) return;
  if (reason !== "disconnected") {
    addNotice(t("room.left", { name: member.nickname }));
    return;
  }
  clearTimeout(away.get(member.user));
  away.set(
    member.user,
    setTimeout(() => {
      away.delete(member.user);
      if (![...members.values()].some((m) => m.user === member.user)) addNotice(t("room.left", { name: member.nickname }));
    }, AWAY_NOTICE_MS),
  );
});

client.on("member_update", ({ room: name, member }) => {
  if (name !== room || !member) return;
  const old = members.get(member.id);
  members.set(member.id, member);
  renderMembers();
  if (old && old.nickname !== member.nickname) {
    addNotice(t("room.renamed", { old: old.nickname, new: member.nickname }));
  }
});

// ---- administration ----------------------------------------------------------

function endChat(text) {
  addNotice(text);
  messageInput.disabled = true;
  for (const button of sendForm.querySelectorAll("button")) button.disabled = true;
}

client.on("kicked", ({ reason }) => {
  callUi.end(t("admin.callEnded"));
  endChat(t(reason === "session_revoked" ? "admin.revoked" : "admin.kicked"));
});
client.on("room_closed", ({ room: name }) => {
  if (name !== room) return;
  closed = true;
  callUi.end(t("admin.callEnded"));
  members.clear();
  setCount(0);
  renderMembers();
  endChat(t("admin.roomClosed"));
});
client.on("removed", ({ room: name, from }) => {
  if (name !== room) return;
  if (from === "call") {
    callUi.end(t("mod.removedFromCall"));
    return;
  }
  closed = true;
  callUi.end(t("mod.removedFromRoom"));
  members.clear();
  setCount(0);
  renderMembers();
  endChat(t("mod.removedFromRoom"));
});
client.on("muted", ({ room: name, by }) => {
  if (name !== room) return;
  const text = by && by.nickname ? t("mod.mutedBy", { name: by.nickname }) : t("mod.mutedByAdmin");
  callUi.mutedByHost(text);
});
client.on("call_ended", ({ room: name }) => {
  if (name === room) callUi.end(t("admin.callEnded"));
});
client.on("history_cleared", ({ room: name }) => {
  if (name !== room) return;
  for (const li of messageList.querySelectorAll(".message")) li.remove();
  // Keep `seen` and lastSeq: the deleted seqs are never handed out again.
  firstSeq = Infinity;
  reachedStart = true;
  updateOlderButton();
  addNotice(t("admin.historyCleared"));
});
client.on("message_deleted", ({ room: name, seq }) => {
  if (name !== room || typeof seq !== "number") return;
  seen.add(seq);
  const li = messageList.querySelector(`.message[data-seq="${seq}"]`);
  if (li) li.remove();
});

// ---- user actions ----------------------------------------------------------

/** Texts the server could not confirm (`unconfirmed`): they may still arrive. */
const unconfirmed = new Set();

// Enter sends, Shift+Enter is a new line (not while an input method composes,
// as when typing Korean), and the box grows with its lines.
messageInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendForm.requestSubmit();
  }
});
function fitMessageInput() {
  messageInput.style.height = "auto";
  messageInput.style.height = `${messageInput.scrollHeight + 2}px`;
}
messageInput.addEventListener("input", fitMessageInput);

sendForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = messageInput.value.trim();
  if (!text) return;
  messageInput.value = "";
  fitMessageInput();
  try {
    const ack = await client.sendMessage(room, text);
    addMessages([ack.message]);
    scrollToBottom();
    if (status.classList.contains("error")) showStatus(status, "");
  } catch (err) {
    if (err.code === "unconfirmed") {
      // It may have been stored: the server delivers it if so. Offering it
      // again could send it twice, so the text is not put back.
      unconfirmed.add(text);
    } else if (!messageInput.value) {
      messageInput.value = text; // not sent: let the user retry
    }
    showStatus(status, errorText(err), err.code);
  }
});

messageList.addEventListener(
  "scroll",
  () => {
    if (messageList.scrollTop < 40) loadOlder();
  },
  { passive: true },
);
olderButton.addEventListener("click", loadOlder);

// ---- chat drawer (phones) ----------------------------------------------------

const narrow = window.matchMedia("(max-width: 56rem)");
let unreadCount = 0;

function drawerVisible() {
  return !narrow.matches || side.dataset.open === "true";
}

function bumpUnread(n) {
  unreadCount += n;
  unread.textContent = String(unreadCount);
  unread.hidden = false;
}

function setDrawer(open) {
  side.dataset.open = String(open);
  chatToggle.setAttribute("aria-expanded", String(open));
  if (open) {
    unreadCount = 0;
    unread.hidden = true;
    scrollToBottom();
    if (narrow.matches) messageInput.focus({ preventScroll: true });
  }
}

chatToggle.addEventListener("click", () => setDrawer(side.dataset.open !== "true"));
chatClose.addEventListener("click", () => {
  setDrawer(false);
  chatToggle.focus();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && narrow.matches && side.dataset.open === "true") {
    setDrawer(false);
    chatToggle.focus();
  }
});

// ---- the call --------------------------------------------------------------

const callUi = setupCall({
  client,
  room,
  lookup: (id) => members.get(id) || null,
  notice: addNotice,
});

showConnection(connection, client.state);
