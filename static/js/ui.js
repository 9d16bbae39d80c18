/**
 * ui.js: the few DOM helpers that both pages share (connection banner,
 * status line), so home.js and room.js show states the same way.
 * Text goes in through textContent only.
 */

const CONNECTION_TEXT = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  reconnected: "Reconnected",
  failed: "Disconnected. Reload the page to try again.",
};

/** Show a NoomClient connection state in the banner element. */
export function showConnection(element, state) {
  element.dataset.state = state;
  element.textContent = CONNECTION_TEXT[state] || state;
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
