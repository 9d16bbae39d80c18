/**
 * admin.js: the admin page (GET /admin), the UI half.
 *
 * It shows what admin-api.js receives (the overview every second, the watched
 * room's members) and turns buttons into API calls, each confirmed first.
 * Text from users (room names, nicknames, messages) reaches the DOM only
 * through textContent. Its own text comes from i18n.js (`admin.*`), in
 * English or Korean.
 */
import { AdminClient } from "/static/js/admin-api.js";
import { errorText, localize, t } from "/static/js/i18n.js";
import { showConnection, showStatus } from "/static/js/ui.js";

localize();
document.title = t("admin.pageTitle");

const $ = (id) => document.getElementById(id);
const root = $("admin");
const client = new AdminClient(root.dataset.csrf);
const statusLine = $("admin-status");

const HISTORY_PAGE = 50;
const HISTORY_RELOAD_MAX = 200;

let selected = null; // room name
let lastDetail = null;
let messages = []; // ascending seq
let olderLeft = false;

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function button(label, testid, onClick, className = "ghost small") {
  const b = el("button", label, className);
  b.type = "button";
  if (testid) b.dataset.testid = testid;
  b.addEventListener("click", onClick);
  return b;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.append(cell);
    else td.textContent = cell === undefined || cell === null ? "" : String(cell);
    tr.append(td);
  }
  return tr;
}

function bitrate(bps) {
  if (!bps) return "0";
  return bps >= 1_000_000 ? `${(bps / 1_000_000).toFixed(1)} Mbit/s` : `${Math.round(bps / 1000)} kbit/s`;
}

/** A participant's media-server session as one line (`names`: socket id -> nickname). */
function mediaText(media, names) {
  if (!media) return "—";
  const parts = [
    media.transport,
    t("admin.mediaIn", { rate: bitrate(media.bitrate_in) }),
    t("admin.mediaOut", { rate: bitrate(media.bitrate_out) }),
  ];
  if (media.estimate) parts.push(t("admin.mediaLink", { rate: bitrate(media.estimate) }));
  const layers = media.layers.map((l) => `${names.get(l.from) ?? l.from}: ${l.layer ?? "—"}`);
  if (layers.length) parts.push(t("admin.mediaLayers", { layers: layers.join(", ") }));
  return parts.join(" · ");
}

function duration(secs) {
  const s = Math.max(0, Math.floor(secs));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return t("admin.days", { d, h });
  if (h) return t("admin.hours", { h, m });
  if (m) return t("admin.minutes", { m, s: s % 60 });
  return t("admin.seconds", { s });
}

function time(ms) {
  if (!ms) return "—";
  return new Date(ms).toLocaleString();
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Runs a confirmed action and reports its outcome in the status line. */
async function act(question, action, done) {
  if (!window.confirm(question)) return;
  try {
    await action();
    showStatus(statusLine, done);
    if (selected) refreshRoom(selected, true);
  } catch (e) {
    showStatus(statusLine, errorText(e), e.code || "error");
  }
}

function renderOverview(o) {
  $("stat-version").textContent = o.version;
  $("stat-node").textContent = o.node;
  $("stat-uptime").textContent = duration(o.uptime_secs);
  $("stat-connections").textContent = String(o.connections.total);
  $("stat-transports").textContent = `${o.connections.websocket} / ${o.connections.polling}`;
  $("stat-rooms").textContent =
    o.rooms_total > o.rooms.length ? t("admin.roomsOf", { shown: o.rooms.length, total: o.rooms_total }) : String(o.rooms_total);
  // The status is one of a few words (translated); its detail is the server's, in English.
  const relayKey = `admin.relayState.${o.relay.status}`;
  const relayState = t(relayKey) === relayKey ? o.relay.status : t(relayKey);
  $("stat-relay").textContent = relayState + (o.relay.detail ? `: ${o.relay.detail}` : "");

  const rooms = $("rooms");
  rooms.replaceChildren(
    ...o.rooms.map((r) => {
      // Selecting a room is an action on this page, not a link.
      const open = el("button", r.name, "link-button");
      open.type = "button";
      open.dataset.testid = "admin-room";
      open.addEventListener("click", () => select(r.name));
      const tr = row([open, r.members, r.in_call, r.messages, time(r.last_activity)]);
      tr.dataset.room = r.name;
      if (r.name === selected) tr.classList.add("selected");
      return tr;
    }),
  );
  $("rooms-empty").hidden = o.rooms.length > 0;

  const allocations = $("allocations");
  allocations.replaceChildren(
    ...o.relay.allocations.map((a) =>
      row([a.user, a.transport, a.client, a.relayed, bytes(a.bytes_to_peers), bytes(a.bytes_to_client), duration(a.age_secs)]),
    ),
  );
  $("allocations-empty").hidden = o.relay.allocations.length > 0;

  $("metrics").replaceChildren(...o.metrics.map((m) => row([m.name, m.value])));

  $("nodes").replaceChildren(...(o.nodes || []).map(nodeRow));
}

/** What is wrong with a node, from its health (the server's words, in English). */
function problems(h) {
  if (!h) return [];
  const out = [];
  if (h.store_detail) out.push(`store: ${h.store_detail}`);
  for (const part of ["relay", "sfu", "cluster"]) {
    if (h[part] && h[part].status === "failing") out.push(`${part}: ${h[part].detail || "failing"}`);
  }
  if (h.tls && (h.tls.status === "expired" || h.tls.status === "expiring")) out.push(`tls: ${h.tls.status}`);
  return out;
}

function nodeRow(n) {
  const h = n.health || {};
  const stateKey = `admin.nodeState.${n.status}`;
  const state = t(stateKey) === stateKey ? n.status : t(stateKey);
  const tr = row([
    n.this ? t("admin.thisNode", { node: n.node }) : n.node,
    state,
    h.version ?? "—",
    h.connections ?? "—",
    h.sfu && h.sfu.sessions !== undefined ? h.sfu.sessions : "—",
    h.uptime_secs !== undefined ? duration(h.uptime_secs) : "—",
    problems(n.health).join("; ") || "—",
  ]);
  tr.dataset.node = n.node;
  tr.dataset.status = n.status;
  return tr;
}

function renderRoom(detail) {
  const section = $("room-detail");
  if (!detail) {
    if (selected) showStatus(statusLine, t("admin.roomGone", { name: selected }));
    section.hidden = true;
    lastDetail = null;
    return;
  }
  section.hidden = false;
  $("room-title").textContent = detail.name;
  const host = detail.members.find((m) => m.user === detail.host);
  const hostText = !detail.host
    ? t("admin.noHost")
    : host
      ? t("admin.hostIs", { name: host.nickname })
      : t("admin.hostAway", { user: detail.host });
  const flags = [detail.locked ? t("admin.flagLocked") : null, detail.lobby ? t("admin.flagLobby") : null].filter(Boolean);
  $("room-counts").textContent =
    t("admin.counts", { members: detail.members.length, inCall: detail.in_call, messages: detail.messages }) +
    `; ${hostText}` +
    (flags.length ? `; ${flags.join(", ")}` : "");
  $("lock-room").textContent = detail.locked ? t("admin.unlockRoom") : t("admin.lockRoom");
  $("lobby-room").textContent = detail.lobby ? t("admin.lobbyTurnOff") : t("admin.lobbyTurnOn");
  const waiting = detail.waiting || [];
  $("waiting-wrap").hidden = waiting.length === 0;
  $("waiting").replaceChildren(
    ...waiting.map((w) => {
      const li = el("li", w.nickname);
      li.append(
        " ",
        button(t("admin.admit"), "admin-admit", () =>
          act(
            t("admin.admitAsk", { name: w.nickname, room: detail.name }),
            () => client.moderate(detail.name, "admit", { to: w.id, admit: true }),
            t("admin.admitDone", { name: w.nickname }),
          ),
        ),
        button(t("admin.deny"), "admin-deny", () =>
          act(
            t("admin.denyAsk", { name: w.nickname }),
            () => client.moderate(detail.name, "admit", { to: w.id, admit: false }),
            t("admin.denyDone", { name: w.nickname }),
          ),
        ),
      );
      return li;
    }),
  );
  $("end-call").disabled = detail.in_call === 0;
  const names = new Map(detail.members.map((m) => [m.id, m.nickname]));
  $("members").replaceChildren(
    ...detail.members.map((m) => {
      const actions = document.createElement("span");
      actions.className = "actions";
      const moderate = (label, testid, question, action, fields, done) =>
        button(label, testid, () => act(question, () => client.moderate(detail.name, action, { to: m.id, ...fields }), done));
      const who = { name: m.nickname, room: detail.name, id: m.id, user: m.user };
      if (m.user !== detail.host) {
        actions.append(moderate(t("admin.makeHost"), "admin-make-host", t("admin.makeHostAsk", who), "set_host", {}, t("admin.makeHostDone", who)));
      }
      if (m.in_call) {
        actions.append(
          moderate(t("admin.mute"), "admin-mute", t("admin.muteAsk", who), "mute", {}, t("admin.muteDone", who)),
          moderate(t("admin.removeCall"), "admin-remove-call", t("admin.removeCallAsk", who), "remove", { from: "call" }, t("admin.removeCallDone", who)),
        );
      }
      actions.append(
        moderate(
          t("admin.removeRoom"), "admin-remove-room",
          t("admin.removeRoomAsk", who),
          "remove", { from: "room" }, t("admin.removeRoomDone", who),
        ),
        button(t("admin.disconnect"), "disconnect", () =>
          act(t("admin.disconnectAsk", who), () => client.disconnect(m.id), t("admin.disconnectDone", who)),
        ),
        button(t("admin.revokeSession"), "revoke", () =>
          act(t("admin.revokeAsk", who), () => client.revokeUser(m.user), t("admin.revokeDone", who)),
        ),
      );
      const tr = row([
        m.nickname, m.user, m.id, m.node, m.transport, m.address ?? "—", time(m.connected_since), m.in_call ? t("admin.yes") : t("admin.no"),
        mediaText(m.media, names), actions,
      ]);
      tr.dataset.member = m.id;
      return tr;
    }),
  );
  const changed = !lastDetail || lastDetail.name !== detail.name ||
    lastDetail.last_seq !== detail.last_seq || lastDetail.messages !== detail.messages;
  lastDetail = detail;
  if (changed) loadHistory(detail.name, false);
}

function renderHistory() {
  const list = $("history");
  list.replaceChildren(
    ...messages.map((m) => {
      const li = el("li");
      li.dataset.seq = String(m.seq);
      li.dataset.testid = "admin-message";
      const meta = el("span", `#${m.seq} ${time(m.ts)} ${m.nickname}`, "meta");
      meta.title = t("admin.userTitle", { user: m.user });
      const text = el("span", m.text, "text");
      const actions = el("span", null, "actions");
      const who = { name: m.nickname, seq: m.seq, user: m.user };
      actions.append(
        button(t("admin.delete"), "delete-message", () =>
          act(t("admin.deleteAsk", who), () => client.deleteMessage(selected, m.seq), t("admin.deleteDone", who)),
        ),
        // The author may have left: their user id is still on the message.
        button(t("admin.revokeAuthor"), "revoke-author", () =>
          act(t("admin.revokeAsk", who), () => client.revokeUser(m.user), t("admin.revokeDone", who)),
        ),
      );
      li.append(meta, text, actions);
      return li;
    }),
  );
  $("history-empty").hidden = messages.length > 0;
  $("older").hidden = !olderLeft;
}

/** Reloads what is shown (or the newest page); `older` prepends a page. */
async function loadHistory(name, older) {
  try {
    let page;
    if (older && messages.length) {
      page = await client.messages(name, { before: messages[0].seq, limit: HISTORY_PAGE });
      if (name !== selected) return;
      olderLeft = page.length === HISTORY_PAGE;
      messages = page.concat(messages);
    } else if (messages.length && messages.length <= HISTORY_RELOAD_MAX) {
      const from = messages[0].seq;
      page = await client.messages(name, { after: from - 1, limit: HISTORY_RELOAD_MAX });
      if (name !== selected) return;
      messages = page;
    } else {
      page = await client.messages(name, { limit: HISTORY_PAGE });
      if (name !== selected) return;
      olderLeft = page.length === HISTORY_PAGE;
      messages = page;
    }
    renderHistory();
  } catch (e) {
    if (e.status === 404) messages = [];
    else showStatus(statusLine, errorText(e), e.code || "error");
    renderHistory();
  }
}

async function refreshRoom(name, force) {
  try {
    const detail = await client.room(name);
    if (name !== selected) return;
    if (force) lastDetail = null;
    renderRoom(detail);
  } catch (e) {
    if (e.status === 404) renderRoom(null);
    else showStatus(statusLine, errorText(e), e.code || "error");
  }
}

async function select(name) {
  selected = name;
  messages = [];
  olderLeft = false;
  lastDetail = null;
  for (const tr of $("rooms").children) tr.classList.toggle("selected", tr.dataset.room === name);
  try {
    renderRoom(await client.watch(name));
  } catch (e) {
    showStatus(statusLine, errorText(e), e.code || "error");
  }
}

$("older").addEventListener("click", () => selected && loadHistory(selected, true));
$("lock-room").addEventListener("click", () => {
  const locked = !(lastDetail && lastDetail.locked);
  act(
    t(locked ? "admin.lockAsk" : "admin.unlockAsk", { room: selected }),
    () => client.moderate(selected, "room_settings", { locked }),
    t(locked ? "admin.lockDone" : "admin.unlockDone", { room: selected }),
  );
});
$("lobby-room").addEventListener("click", () => {
  const lobby = !(lastDetail && lastDetail.lobby);
  act(
    t(lobby ? "admin.lobbyOnAsk" : "admin.lobbyOffAsk", { room: selected }),
    () => client.moderate(selected, "room_settings", { lobby }),
    t(lobby ? "admin.lobbyOnDone" : "admin.lobbyOffDone", { room: selected }),
  );
});
$("end-call").addEventListener("click", () =>
  act(t("admin.endCallAsk", { room: selected }), () => client.endCall(selected), t("admin.endCallDone", { room: selected })),
);
$("clear-history").addEventListener("click", () =>
  act(t("admin.clearHistoryAsk", { room: selected }), () => client.clearHistory(selected), t("admin.clearHistoryDone", { room: selected })),
);
$("close-room").addEventListener("click", () => {
  const name = selected;
  act(
    t("admin.closeRoomAsk", { room: name }),
    async () => {
      await client.closeRoom(name);
      selected = null;
      await client.watch(null);
      $("room-detail").hidden = true;
    },
    t("admin.closeRoomDone", { room: name }),
  );
});

client.on("overview", renderOverview);
client.on("room", (detail) => {
  if (selected && (!detail || detail.name === selected)) renderRoom(detail);
});
client.on("status", ({ state }) => {
  showConnection($("connection"), state);
  if (state === "failed") location.assign("/admin/login");
});
