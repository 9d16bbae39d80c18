/**
 * home.js: the home page (GET /).
 *
 * It exists to show who you are (nickname, changeable), the live list of
 * public rooms with head counts (pushed by `room_change`), and a form that
 * joins or creates a room by going to /r/<name>. All protocol work is in
 * protocol.js; user text reaches the DOM only through textContent/attributes.
 */
import { NoomClient } from "/static/js/protocol.js";
import { fieldError, showConnection, showStatus } from "/static/js/ui.js";
import { errorText, localize, t } from "/static/js/i18n.js";

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
const nicknameError = $("nickname-error");
const roomError = $("room-error");
const limits = document.querySelector("main.home").dataset;
const ROOM_NAME_MAX = Number(limits.roomNameMax) || 64;


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
    count.setAttribute("aria-label", info.count === 1 ? t("home.onePerson") : t("home.people", { n: info.count }));
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
  if (!name) {
    fieldError(nicknameError, nicknameInput, t("home.nicknameBlank"));
    nicknameInput.focus();
    return;
  }
  fieldError(nicknameError, nicknameInput, "");
  const button = nicknameForm.querySelector("button");
  button.disabled = true;
  try {
    const ack = await client.setNickname(name);
    renderNickname(ack.nickname);
    nicknameInput.value = "";
    showStatus(status, t("home.saved"));
  } catch (err) {
    if (err.code === "invalid_nickname") fieldError(nicknameError, nicknameInput, errorText(err));
    else showStatus(status, errorText(err), err.code);
  } finally {
    button.disabled = false;
  }
});

joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = roomInput.value.trim();
  const length = [...name].length;
  if (!length) {
    fieldError(roomError, roomInput, t("home.roomBlank"));
  } else if (length > ROOM_NAME_MAX) {
    fieldError(roomError, roomInput, t("home.roomTooLong", { n: ROOM_NAME_MAX, len: length }));
  } else {
    // Read by the room page on its first entry: only a new room takes it.
    const asked = { unlisted: $("unlisted-input").checked, password: $("password-input").value };
    if (asked.unlisted || asked.password) sessionStorage.setItem(`noom.create.${name}`, JSON.stringify(asked));
    window.location.assign(roomHref(name));
    return;
  }
  roomInput.focus();
});
nicknameInput.addEventListener("input", () => fieldError(nicknameError, nicknameInput, ""));
roomInput.addEventListener("input", () => fieldError(roomError, roomInput, ""));

// Sent back here from a room address whose name cannot be used.
const params = new URLSearchParams(window.location.search);
if (params.get("error") === "invalid_room") {
  fieldError(roomError, roomInput, t("home.roomInvalid", { n: ROOM_NAME_MAX }));
  history.replaceState(null, "", "/");
}

showConnection(connection, client.state);
