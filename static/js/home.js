/**
 * home.js: the home page (GET /).
 *
 * It exists to show who you are (nickname, changeable), the live list of
 * public rooms with head counts (pushed by `room_change`), and a form that
 * joins or creates a room by going to /r/<name>. All protocol work is in
 * protocol.js; user text reaches the DOM only through textContent/attributes.
 */
import { NoomClient } from "/static/js/protocol.js";
import { showConnection, showStatus } from "/static/js/ui.js";
import { localize, t } from "/static/js/i18n.js";

localize();

const client = new NoomClient();

const $ = (id) => document.getElementById(id);
const connection = $("connection");
const status = $("status");
const nicknameCurrent = $("nickname-current");
const nicknameForm = $("nickname-form");
const nicknameInput = $("nickname-input");
const joinForm = $("join-form");
const roomInput = $("room-input");
const roomList = $("rooms");
const roomsEmpty = $("rooms-empty");

function roomHref(name) {
  return "/r/" + encodeURIComponent(name);
}

function renderNickname(nickname) {
  nicknameCurrent.textContent = nickname ?? "…";
  if (!nicknameInput.value && document.activeElement !== nicknameInput) {
    nicknameInput.placeholder = nickname ?? t("home.newNickname");
  }
}

function renderRooms(rooms) {
  const items = rooms.map((info) => {
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.href = roomHref(info.name);
    link.textContent = info.name;
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = String(info.count);
    count.title = t("home.online", { n: info.count });
    li.dataset.room = info.name;
    li.append(link, count);
    return li;
  });
  roomList.replaceChildren(...items);
  roomsEmpty.hidden = items.length > 0;
}

client.on("status", ({ state }) => showConnection(connection, state));
client.on("session", ({ nickname }) => renderNickname(nickname));
client.on("room_change", ({ rooms }) => renderRooms(rooms));

nicknameForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = nicknameInput.value.trim();
  if (!name) return;
  const button = nicknameForm.querySelector("button");
  button.disabled = true;
  try {
    const ack = await client.setNickname(name);
    renderNickname(ack.nickname);
    nicknameInput.value = "";
    showStatus(status, t("home.saved"));
  } catch (err) {
    showStatus(status, err.message, err.code);
  } finally {
    button.disabled = false;
  }
});

joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = roomInput.value.trim();
  if (!name) return;
  window.location.assign(roomHref(name));
});

showConnection(connection, client.state);
