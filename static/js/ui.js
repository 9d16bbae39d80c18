/**
 * ui.js: the few DOM helpers that every page shares (connection banner,
 * status line, icons), so home.js and room.js show states the same way.
 * Text goes in through textContent only; icons are built with
 * createElementNS from the path data below (no markup strings).
 */
import { t } from "/static/js/i18n.js";

/** Show a NoomClient connection state in the banner element. */
export function showConnection(element, state) {
  element.dataset.state = state;
  element.textContent = t(`conn.${state}`) === `conn.${state}` ? state : t(`conn.${state}`);
}

let statusTimer = null;

/**
 * Show a short message in a status line; `code` (an error code) marks it as
 * an error and is kept in data-code. Plain notices clear themselves.
 */
export function showStatus(element, text, code) {
  clearTimeout(statusTimer);
  element.textContent = text || "";
  element.classList.toggle("error", Boolean(code));
  if (code) element.dataset.code = code;
  else delete element.dataset.code;
  if (!code && text) {
    statusTimer = setTimeout(() => showStatus(element, ""), 4000);
  }
}

// 24x24 stroke icons (drawn for Noom).
const ICONS = {
  mic: ["M9 5a3 3 0 0 1 6 0v6a3 3 0 0 1-6 0z", "M5 11a7 7 0 0 0 14 0", "M12 18v3"],
  micOff: ["M9 5a3 3 0 0 1 6 0v6a3 3 0 0 1-6 0z", "M5 11a7 7 0 0 0 14 0", "M12 18v3", "M3 3l18 18"],
  camera: ["M3 7h12v10H3z", "M15 10.5l6-3.5v10l-6-3.5"],
  cameraOff: ["M3 7h12v10H3z", "M15 10.5l6-3.5v10l-6-3.5", "M3 3l18 18"],
  screen: ["M3 4h18v12H3z", "M8 20h8", "M12 16v4"],
  screenStop: ["M3 4h18v12H3z", "M8 20h8", "M12 16v4", "M9 7l6 6", "M15 7l-6 6"],
  leave: ["M3 14c5-5 13-5 18 0l-2.5 3-3.5-1.5V13c-2-.8-4-.8-6 0v2.5L5.5 17z"],
  devices: ["M4 6h9", "M17 6h3", "M15 4v4", "M4 12h3", "M11 12h9", "M9 10v4", "M4 18h11", "M19 18h1", "M17 16v4"],
  chat: ["M4 5h16v11H9l-5 4z"],
  hand: ["M8 13V5.5a1.5 1.5 0 0 1 3 0V11", "M11 10V4.5a1.5 1.5 0 0 1 3 0V11", "M14 10V5.5a1.5 1.5 0 0 1 3 0V14", "M8 12.5V9.5a1.5 1.5 0 0 0-3 0V15a6 6 0 0 0 6 6h1a5 5 0 0 0 5-5v-2"],
  smile: ["M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18", "M8.5 14.5c1.8 2 5.2 2 7 0", "M9 9.5h.01", "M15 9.5h.01"],
  pin: ["M9 4h6", "M10 4v6l-3 4h10l-3-4V4", "M12 14v6"],
  speakerView: ["M3 4h18v11H3z", "M3 18h5v3H3z", "M9.5 18h5v3h-5z", "M16 18h5v3h-5z"],
  keyboard: ["M3 6h18v12H3z", "M7 10h.01", "M11 10h.01", "M15 10h.01", "M7 14h10"],
};

/** An <svg> icon, hidden from assistive technology (the button text names it). */
export function icon(name) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", "icon");
  for (const d of ICONS[name] || []) {
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

/**
 * Says why `input`'s value was refused, in `el` next to it (role=alert);
 * an empty text clears it.
 */
export function fieldError(el, input, text) {
  el.textContent = text;
  el.hidden = !text;
  if (text) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

/** Set a button's icon (first child svg) and visible label (.label span). */
export function setButton(button, iconName, label) {
  const old = button.querySelector("svg.icon");
  const fresh = icon(iconName);
  if (old) old.replaceWith(fresh);
  else button.prepend(fresh);
  let span = button.querySelector(".label");
  if (!span) {
    span = document.createElement("span");
    span.className = "label";
    button.append(span);
  }
  span.textContent = label;
}

/** The one or two letters shown in place of a video that is off. */
export function initials(name) {
  const words = String(name || "?").trim().split(/\s+/).filter(Boolean);
  if (!words.length) return "?";
  const chars = [...words[0]];
  if (words.length === 1) return chars.slice(0, 2).join("").toUpperCase();
  return (chars[0] + [...words[1]][0]).toUpperCase();
}
