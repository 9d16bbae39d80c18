/**
 * moderation.js: the room's host, lock and lobby, on the room page.
 *
 * It exists so the host's tools stay out of the chat code: it marks the
 * host in the member list, gives the host a menu per member (make host,
 * mute, remove from the call or the room), the lock and lobby switches and
 * the list of people waiting in the lobby; and it tells a newcomer kept in
 * the lobby that they wait, and what the host decided. The server decides
 * everything (docs/protocol.md); this module only asks and shows. Names
 * reach the DOM through textContent only.
 */
import { errorText, t } from "/static/js/i18n.js";
import { showStatus } from "/static/js/ui.js";

const $ = (id) => document.getElementById(id);

/**
 * client: the NoomClient; room: its name; notice(text): a line in the chat;
 * announce(text): read out politely; status: the status element;
 * reenter(): enter the room again (once let in from the lobby).
 */
export function setupModeration({ client, room, notice, announce, status, reenter }) {
  const panel = $("host-panel");
  const lockBox = $("lock-room");
  const lobbyBox = $("lobby-room");
  const lobbyWrap = $("lobby-list-wrap");
  const lobbyList = $("lobby-list");
  const lockedBadge = $("locked");
  const wait = $("lobby-wait");
  const waitText = $("lobby-wait-text");
  const askAgain = $("lobby-ask");

  let settings = { host: null, locked: false, lobby: false };
  let waiting = [];
  let rerender = () => {};

  const isHost = () => Boolean(client.user) && settings.host === client.user;

  async function act(kind, options) {
    try {
      return await client.moderate(kind, room, options);
    } catch (err) {
      showStatus(status, errorText(err), err.code);
      return null;
    }
  }

  function renderPanel() {
    panel.hidden = !isHost();
    lockBox.checked = settings.locked;
    lobbyBox.checked = settings.lobby;
    lockedBadge.hidden = !settings.locked;
    renderLobby();
  }

  function renderLobby() {
    const show = isHost() && waiting.length > 0;
    lobbyWrap.hidden = !show;
    const items = (show ? waiting : []).map((member) => {
      const li = document.createElement("li");
      li.dataset.id = member.id;
      const name = document.createElement("span");
      name.className = "lobby-name";
      name.textContent = member.nickname;
      const decide = (admit, testid, label, named) => {
        const button = document.createElement("button");
        button.type = "button";
        button.className = admit ? "secondary small" : "ghost small";
        button.dataset.testid = testid;
        button.textContent = t(label);
        button.setAttribute("aria-label", t(named, { name: member.nickname }));
        button.addEventListener("click", () => act("admit", { to: member.id, admit }));
        return button;
      };
      const admit = decide(true, "admit", "mod.admit", "mod.admitName");
      const deny = decide(false, "deny", "mod.deny", "mod.denyName");
      li.append(name, admit, deny);
      return li;
    });
    lobbyList.replaceChildren(...items);
  }

  function setSettings(next, { quiet = false } = {}) {
    const before = settings;
    settings = { host: next.host ?? null, locked: next.locked === true, lobby: next.lobby === true };
    if (!quiet) {
      if (before.host !== settings.host && settings.host) {
        if (settings.host === client.user) notice(t("mod.youHost"));
        else if (hostName()) notice(t("mod.nowHost", { name: hostName() }));
      }
      if (before.locked !== settings.locked) notice(t(settings.locked ? "mod.roomLocked" : "mod.roomUnlocked"));
      if (before.lobby !== settings.lobby) notice(t(settings.lobby ? "mod.lobbyOn" : "mod.lobbyOff"));
    }
    if (!isHost()) waiting = [];
    renderPanel();
    rerender();
  }

  let members = () => [];
  function hostName() {
    const host = members().find((m) => m.user === settings.host);
    return host ? host.nickname : null;
  }

  lockBox.addEventListener("change", async () => {
    const ack = await act("room_settings", { locked: lockBox.checked });
    if (!ack) lockBox.checked = settings.locked;
  });
  lobbyBox.addEventListener("change", async () => {
    const ack = await act("room_settings", { lobby: lobbyBox.checked });
    if (!ack) lobbyBox.checked = settings.lobby;
  });

  client.on("room_settings", (e) => {
    if (e.room === room) setSettings(e);
  });
  client.on("lobby", (e) => {
    if (e.room !== room || !isHost()) return;
    const known = new Set(waiting.map((m) => m.id));
    const fresh = e.waiting.filter((m) => !known.has(m.id));
    waiting = e.waiting;
    renderLobby();
    for (const m of fresh) {
      notice(t("mod.someoneWaiting", { name: m.nickname }));
      announce(t("mod.someoneWaiting", { name: m.nickname }));
    }
  });

  // ---- a newcomer kept in the lobby -----------------------------------------

  function showWaiting(text, canAsk) {
    wait.hidden = false;
    waitText.textContent = text;
    askAgain.hidden = !canAsk;
  }

  client.on("admission", async (e) => {
    if (e.room !== room || wait.hidden) return;
    if (e.admitted) {
      wait.hidden = true;
      await reenter();
    } else {
      showWaiting(t("mod.denied"), true);
    }
  });
  askAgain.addEventListener("click", async () => {
    askAgain.hidden = true;
    await reenter();
  });

  return {
    /** The enter_room ack's host, lock, lobby and waiting list. */
    entered(ack, memberList) {
      members = memberList;
      wait.hidden = true;
      waiting = Array.isArray(ack.waiting) ? ack.waiting : [];
      setSettings(ack, { quiet: true });
    },
    /**
     * Why enter_room was refused, when moderation is why; returns false for
     * any other error.
     */
    refused(err) {
      if (err.code === "in_lobby") {
        showWaiting(t("mod.inLobby"), false);
        return true;
      }
      if (err.code === "room_locked" || err.code === "removed") {
        wait.hidden = true;
        showStatus(status, t(err.code === "removed" ? "mod.removed" : "mod.locked"), err.code);
        return true;
      }
      return false;
    },
    /** Marks the host in a member list entry, and gives the host a menu for it. */
    decorate(li, member) {
      if (member.user === settings.host) {
        const badge = document.createElement("span");
        badge.className = "badge-host";
        badge.dataset.testid = "host-badge";
        badge.textContent = t("mod.host");
        li.append(" ", badge);
      }
      if (!isHost() || member.user === client.user) return;
      const menu = document.createElement("details");
      menu.className = "member-menu";
      const summary = document.createElement("summary");
      summary.dataset.testid = "member-menu";
      summary.setAttribute("aria-label", t("mod.actionsFor", { name: member.nickname }));
      summary.textContent = "⋯";
      const actions = document.createElement("div");
      actions.className = "member-actions";
      const entries = [
        ["make-host", "mod.makeHost", "set_host", {}],
        ["mute-member", "mod.mute", "mute", {}],
        ["remove-call", "mod.removeCall", "remove", { from: "call" }],
        ["remove-room", "mod.removeRoom", "remove", { from: "room" }],
      ];
      for (const [testid, label, kind, extra] of entries) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "ghost small";
        button.dataset.testid = testid;
        button.textContent = t(label);
        button.addEventListener("click", async () => {
          menu.open = false;
          const ack = await act(kind, { to: member.id, ...extra });
          if (ack && kind === "mute") showStatus(status, t("mod.mutedDone", { name: member.nickname }));
        });
        actions.append(button);
      }
      menu.append(summary, actions);
      li.append(menu);
    },
    setRerender(fn) {
      rerender = fn;
    },
    isHost,
  };
}
