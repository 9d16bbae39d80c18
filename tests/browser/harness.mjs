// Shared by the browser tests and the set-up benchmark: start the real noom
// binary on a free port with a temporary data directory, start headless
// Chromium with a fake camera, microphone and screen, and open pages.
//
// Env: NOOM_BIN (default target/debug/noom), CHROMIUM (default /usr/bin/chromium),
// NOOM_TEST_HEADFUL=1 to watch.
import { before, after } from "node:test";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const BIN = resolve(ROOT, process.env.NOOM_BIN ?? join("target", "debug", "noom"));
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolvePort, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolvePort(port));
    });
  });
}

// The server refuses unknown NOOM_* variables (NOOM_BIN, NOOM_TEST_*): pass
// it only the ones a test sets.
function serverEnv() {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("NOOM_")));
}

/** GET over HTTPS without checking the certificate (the test servers' are self-signed). */
function insecureGet(url) {
  return new Promise((resolveGet, reject) => {
    const req = httpsRequest(url, { rejectUnauthorized: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => resolveGet({ ok: res.statusCode === 200, status: res.statusCode, text: async () => body }));
    });
    req.on("error", reject);
    req.end();
  });
}

/**
 * The real binary on <host>:<free port> (host 127.0.0.1 unless given; with
 * `https: true` it serves HTTPS with a self-signed certificate). It runs in a temporary directory
 * (so no noom.toml of the checkout is read) with its own data directory.
 * `restart()` stops it with SIGTERM and starts it again on the same port and
 * data; `stop()` stops it and removes the data.
 */
export async function startServer({ env = {}, host = "127.0.0.1", https = false } = {}) {
  const home = mkdtempSync(join(tmpdir(), "noom-browser-"));
  const dataDir = join(home, "data");
  const port = await freePort();
  const turnPort = await freePort();
  const base = `${https ? "https" : "http"}://${host}:${port}`;
  // Each server gets its own STUN/TURN port on loopback (the default,
  // 0.0.0.0:3478, would clash between servers and leave the machine).
  const turnEnv = { NOOM_TURN_LISTEN: `127.0.0.1:${turnPort}`, NOOM_TURN_PUBLIC_IP: "127.0.0.1", NOOM_SFU_LISTEN: "127.0.0.1:0" };
  if (https) {
    Object.assign(turnEnv, {
      NOOM_TLS_SELF_SIGNED: "true",
      NOOM_TLS_HOSTS: host,
      NOOM_TURN_TLS_LISTEN: `127.0.0.1:${await freePort()}`,
    });
  }
  const get = https ? insecureGet : fetch;
  let child = null;

  async function up() {
    // As root (CI), the server runs a little ahead of the pages (nice -5):
    // in a deployment it has a machine of its own; here eight browsers share
    // two cores with it, and at equal priority its runtime and media thread
    // waited seconds for CPU when a call's pages all started their media at
    // once (joins answered after 4.4 s, false "connection dead" verdicts).
    const [command, args] =
      process.getuid?.() === 0 && existsSync("/usr/bin/nice")
        ? ["/usr/bin/nice", ["-n", "-5", BIN]]
        : [BIN, []];
    child = spawn(command, [...args, "--http", `${host}:${port}`, "--data-dir", dataDir], {
      cwd: home,
      env: { ...serverEnv(), RUST_LOG: (process.env.NOOM_TEST_SERVER_LOG && process.env.RUST_LOG) || "warn", ...turnEnv, ...env },
      // NOOM_TEST_SERVER_LOG=1 shows the server's log (RUST_LOG from the test's env).
      stdio: ["ignore", process.env.NOOM_TEST_SERVER_LOG ? "inherit" : "ignore", "inherit"],
    });
    const exited = new Promise((r) => child.once("exit", (code, signal) => r({ code, signal })));
    child.exited = exited;
    let last = null;
    for (let i = 0; i < 300; i++) {
      const done = await Promise.race([exited, sleep(0).then(() => null)]);
      if (done) throw new Error(`noom exited at start: ${JSON.stringify(done)}`);
      try {
        const res = await get(`${base}/healthz`);
        last = `${res.status} ${await res.text()}`;
        if (res.ok) return;
      } catch {
        /* not yet */
      }
      await sleep(50);
    }
    throw new Error(`noom did not start within 15 s (healthz: ${last})`);
  }

  async function down() {
    if (!child) return;
    const c = child;
    child = null;
    if (c.exitCode === null && c.signalCode === null) {
      c.kill("SIGTERM");
      const killer = setTimeout(() => c.kill("SIGKILL"), 10000);
      await c.exited;
      clearTimeout(killer);
    }
  }

  await up();
  return {
    base,
    port,
    dataDir,
    url: (path) => base + path,
    async restart({ downMs = 0 } = {}) {
      await down();
      if (downMs) await sleep(downMs);
      await up();
    },
    /** Kills the server at once (SIGKILL), as a crash would. */
    async kill() {
      if (!child) return;
      const c = child;
      child = null;
      c.kill("SIGKILL");
      await c.exited;
    },
    async stop() {
      await down();
      rmSync(home, { recursive: true, force: true });
    },
  };
}

export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-default-apps",
  "--disable-dev-shm-usage",
  "--mute-audio",
  // Fake cameras (three: fake_device_1 delivers Y16 depth frames, which
  // WebRTC cannot encode, so switching tests use fake_device_2), microphone and screen;
  // permission prompts answered yes. getDisplayMedia then returns a fake
  // 1280x720 "screen" without any picker.
  "--use-fake-device-for-media-stream=device-count=3",
  "--use-fake-ui-for-media-stream",
  "--auto-select-desktop-capture-source=Entire screen",
  "--autoplay-policy=no-user-gesture-required",
  // WebRTC between pages of this machine only: loopback candidates allowed,
  // no mDNS (multicast) host names.
  "--allow-loopback-in-peer-connection",
  "--disable-features=WebRtcHideLocalIpsWithMdns,MediaRouter,DialMediaRouteProvider",
  // Pages in background tabs must keep their timers and video running.
  "--disable-background-timer-throttling",
  "--disable-renderer-backgrounding",
  "--disable-backgrounding-occluded-windows",
];

/**
 * The Chromium to launch. Run as root (as `.ci/run` is), Chromium raises its
 * own threads' priority: about 130 at nice -8 and its audio threads in
 * real-time scheduling. Eight pages then starve every other process on two
 * cores, the server included (its runtime saw no CPU for up to 2.7 s, so
 * requests went unanswered for 10 s). A normal user's Chromium cannot do that,
 * and a server does not share its machine with eight browsers; so as root,
 * Chromium runs without the right to raise priority (CAP_SYS_NICE dropped
 * through `setpriv`), as it would for anyone else.
 */
let unprivileged;
export function chromiumExecutable() {
  if (unprivileged !== undefined) return unprivileged;
  unprivileged = CHROMIUM;
  const setpriv = "/usr/bin/setpriv";
  if (process.getuid?.() === 0 && existsSync(setpriv)) {
    const home = mkdtempSync(join(tmpdir(), "noom-chromium-"));
    process.on("exit", () => rmSync(home, { recursive: true, force: true }));
    const wrapper = join(home, "chromium");
    writeFileSync(wrapper, `#!/bin/sh\nexec ${setpriv} --inh-caps=-sys_nice --bounding-set=-sys_nice -- ${CHROMIUM} "$@"\n`);
    chmodSync(wrapper, 0o755);
    unprivileged = wrapper;
  }
  return unprivileged;
}

export async function launchBrowser(extraArgs = []) {
  return chromium.launch({
    executablePath: chromiumExecutable(),
    headless: process.env.NOOM_TEST_HEADFUL !== "1",
    args: [...CHROMIUM_ARGS, ...extraArgs],
  });
}

/**
 * A page in its own browser context (its own storage, so its own session).
 * options: locale ("en-US"), viewport, init (a script run before the page's
 * own, e.g. to take navigator.mediaDevices away), nickname (set on the home
 * page first).
 */
export async function openPage(browser, server, path, options = {}) {
  const context = await browser.newContext({
    locale: options.locale ?? "en-US",
    viewport: options.viewport ?? { width: 1280, height: 720 },
    deviceScaleFactor: options.deviceScaleFactor ?? 1,
    permissions: options.permissions ?? ["camera", "microphone"],
    baseURL: server.base,
    ignoreHTTPSErrors: options.ignoreHTTPSErrors ?? false,
    colorScheme: options.colorScheme ?? "light",
  });
  // Pages send at most 360p (the user preference for a slow computer) unless
  // a test asks for more: eight fake 720p cameras do not fit two cores.
  const sendHeight = options.sendHeight ?? 360;
  await context.addInitScript(`localStorage.setItem("noom.sendHeight", "${sendHeight}")`);
  if (options.init) await context.addInitScript(options.init);
  // A test's own set-up of the context before the page opens (routes).
  if (options.prepare) await options.prepare(context);
  const page = await context.newPage();
  page.errors = [];
  page.on("pageerror", (err) => page.errors.push(String(err)));
  // What the page said of its connection ("noom: ... reconnecting") and of
  // call steps that failed, with the time: a failure's message quotes it
  // (`until`, `joinCall`, `saidBy`).
  page.said = [];
  page.on("console", (m) => {
    const text = m.text();
    // Connection events, and call steps that failed.
    const wanted = m.type() === "debug" ? text.startsWith("noom call:") && / failed/.test(text) : text.startsWith("noom:");
    if (wanted) page.said.push(`${new Date().toISOString().slice(11, 23)} ${text}`);
  });
  if (process.env.NOOM_TEST_CONSOLE === "1") {
    page.on("console", (m) => console.log(`[${options.nickname ?? "page"}] ${m.text()}`));
  }
  if (options.nickname) {
    await page.goto("/");
    await page.getByTestId("connection").and(page.locator('[data-state="connected"]')).waitFor();
    await page.fill("#nickname-input", options.nickname);
    await page.getByTestId("save-nickname").click();
    try {
      await page.getByTestId("nickname").getByText(options.nickname, { exact: true }).waitFor({ timeout: 15000 });
    } catch (err) {
      // Say what the page showed instead.
      const seen = await page.evaluate(() => ({
        nickname: document.querySelector('[data-testid="nickname"]')?.textContent,
        status: document.getElementById("status")?.textContent,
        connection: document.getElementById("connection")?.dataset.state,
      }));
      throw new Error(`nickname ${options.nickname} not shown within 15 s: ${JSON.stringify(seen)}; ${err.message}`);
    }
  }
  await page.goto(path);
  return page;
}

export function roomPath(room) {
  return "/r/" + encodeURIComponent(room);
}

/** Poll `fn` (a page function) until it returns a truthy value; returns it. */
export async function until(page, fn, arg, { timeout = 15000, interval = 100, what = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await page.evaluate(fn, arg);
    if (last) return last;
    await sleep(interval);
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what}; last: ${JSON.stringify(last)}${saidBy([page])}`);
}

/** For a failure's message: what `pages` said of their connections (see openPage), if anything. */
export function saidBy(pages) {
  const lines = pages.flatMap((p) => (p && p.said ? p.said.slice(-6) : []));
  return lines.length ? `; the page said: ${lines.join(" | ")}` : "";
}

/** Wait until the room page has entered the room (connected, members listed). */
export async function waitEntered(page) {
  await page.waitForFunction(() => {
    const b = document.getElementById("connection");
    return b && /connected|reconnected/.test(b.dataset.state) && document.querySelector("#members li.self");
  });
}

/**
 * One server and one browser for a test file: registers the before() and
 * after() hooks and returns an object whose `server` and `browser` are set
 * once the tests run. `server` options may be a function, called in before().
 */
export function useServerAndBrowser({ server = {}, browserArgs = [] } = {}) {
  const env = { server: null, browser: null };
  before(async () => {
    env.server = await startServer(typeof server === "function" ? server() : server);
    env.browser = await launchBrowser(browserArgs);
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.stop();
  });
  return env;
}

/** Send a chat message from a room page and wait until it shows as sent. */
export async function sendMessage(page, text) {
  await page.fill("#message-input", text);
  await page.getByTestId("send").click();
  await page.locator("#messages .message.own .text", { hasText: text }).first().waitFor();
}

/** Click "Join call" and wait for the call phase. */
export async function joinCall(page) {
  await waitEntered(page);
  await page.getByTestId("join-call").click();
  try {
    await page.waitForFunction(() => window.noomCall && window.noomCall.phase() === "incall");
  } catch (err) {
    // Say where the page stood instead.
    const seen = await page
      .evaluate(() => ({
        phase: window.noomCall ? window.noomCall.phase() : null,
        status: document.querySelector('[data-testid="call-status"]')?.textContent,
        connection: document.getElementById("connection")?.dataset.state,
      }))
      .catch((e) => ({ unreadable: String(e) }));
    throw new Error(`not in the call within 30 s: ${JSON.stringify(seen)}${saidBy([page])}; ${err.message}`);
  }
}

/** framesDecoded per remote nickname, from the page's RTCPeerConnection stats. */
export async function framesByNick(page) {
  const stats = await page.evaluate(() => window.noomCall.stats());
  return Object.fromEntries(stats.map((s) => [s.nickname, s.framesDecoded]));
}

/**
 * Wait until `page` shows exactly the remote tiles of `nicks`, all connected,
 * and the video of each advances (framesDecoded grows between two samples).
 */
export async function expectLiveTiles(page, nicks, { timeout = 20000 } = {}) {
  const want = [...nicks].sort();
  await until(
    page,
    (want) => {
      const tiles = [...document.querySelectorAll('[data-testid="tile"]')];
      const names = tiles.map((t) => t.querySelector(".tile-name").textContent).sort();
      return (
        JSON.stringify(names) === JSON.stringify(want) && tiles.every((t) => t.dataset.state === "connected")
      );
    },
    want,
    { timeout, what: `connected tiles ${want.join(", ")}` },
  );
  const first = await until(
    page,
    async (want) => {
      const stats = await window.noomCall.stats();
      const ok = want.every((n) => stats.some((s) => s.nickname === n && s.framesDecoded > 0));
      return ok && Object.fromEntries(stats.map((s) => [s.nickname, s.framesDecoded]));
    },
    want,
    { timeout, what: `first frames from ${want.join(", ")}` },
  );
  const deadline = Date.now() + timeout;
  for (;;) {
    await sleep(700);
    const now = await framesByNick(page);
    if (want.every((n) => now[n] > first[n])) return now;
    if (Date.now() > deadline) {
      throw new Error(`video did not advance: before ${JSON.stringify(first)} after ${JSON.stringify(now)}`);
    }
  }
}

/** Names on the remote tiles of `page`, sorted. */
export async function tileNames(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('[data-testid="tile"] .tile-name')].map((n) => n.textContent).sort(),
  );
}

/**
 * Two pages in a call (`room`): `listener` sees `speaker`'s tile light up
 * while it speaks (Chromium's fake microphone beeps), and, once `speaker`
 * mutes, stay dark. Returns what it saw.
 */
export async function expectSpeakingShown(listener, speaker, speakerNick) {
  const speaking = (page, nick) =>
    page.evaluate((nick) => {
      const tile = [...document.querySelectorAll('[data-testid="tile"]')].find((t) => t.querySelector(".tile-name").textContent === nick);
      return tile ? tile.dataset.speaking === "true" : null;
    }, nick);
  await until(
    listener,
    (nick) => {
      const tile = [...document.querySelectorAll('[data-testid="tile"]')].find((t) => t.querySelector(".tile-name").textContent === nick);
      return Boolean(tile) && tile.dataset.speaking === "true";
    },
    speakerNick,
    { what: `${speakerNick}'s tile lit up as speaking`, timeout: 10000, interval: 50 },
  );
  // Its accessible name says so too (as it was when it lit up).
  await until(
    listener,
    (nick) => [...document.querySelectorAll('[data-testid="tile"]')].some((t) => t.querySelector(".tile-name").textContent === nick && /Speaking/.test(t.getAttribute("aria-label"))),
    speakerNick,
    { what: `${speakerNick}'s tile named as speaking`, timeout: 10000, interval: 50 },
  );
  await speaker.getByRole("button", { name: "Mute", exact: true }).click();
  // The highlight holds over pauses between words (about a second here and
  // through the media server 3 s), then goes out and stays out.
  await until(listener, (nick) => {
    const tile = [...document.querySelectorAll('[data-testid="tile"]')].find((t) => t.querySelector(".tile-name").textContent === nick);
    return Boolean(tile) && tile.dataset.speaking === "false";
  }, speakerNick, { what: `${speakerNick}'s tile dark once muted`, timeout: 8000, interval: 100 });
  for (let i = 0; i < 10; i++) {
    if ((await speaking(listener, speakerNick)) !== false) throw new Error(`${speakerNick}'s tile lit up while muted`);
    await sleep(200);
  }
}
