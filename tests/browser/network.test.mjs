// A call survives a network change. Two browsers, each in a network
// namespace of its own (as two laptops behind their own links), share a
// bridge with the server. Mid-call one laptop's address changes (a new
// address in another subnet, the old one removed, the default route put
// back: a move to another Wi-Fi), or its link drops for 5 s. Video must
// flow again both ways within MOVE_MS of the change (LINK_BACK_MS of the
// link's return), on the same peer connection, and the banner must say
// "reconnecting" within 3 s of the change. Each case runs in a mesh call
// and through the media server.
//
// Needs root and `ip netns` (.ci/run runs the suite so); skipped otherwise.
// NOOM_NETWORK_RUNS=5 repeats each case and prints the median and worst
// recovery (docs/benchmarks.md, "Network change"); NOOM_NETWORK_MODE=mesh
// or sfu runs one of the two; NOOM_NETWORK_TRACE=1 prints what each side's
// video did every 100 ms until it recovered.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { chromiumExecutable, CHROMIUM_ARGS, startServer, roomPath, joinCall, expectLiveTiles, tileNames, sleep, until } from "./harness.mjs";

const RUNS = Math.max(1, Number(process.env.NOOM_NETWORK_RUNS || 2));
// Issue 15's targets, asserted in both modes: video back both ways within
// 5 s of an address change, within 3 s of a dropped link's return, on the
// same RTCPeerConnection (docs/benchmarks.md, "Network change": in 18 runs
// per mode the worst were 3.2 s and 0.6 s in a mesh, 4.4 s and 0.8 s
// through the media server).
const MOVE_MS = { mesh: 5000, sfu: 5000 };
const LINK_BACK_MS = { mesh: 3000, sfu: 3000 };
const HUB = "10.88.0.1";
const NEW_HUB = "10.89.0.1";
const tag = `${process.pid % 10000}`;
const NS = { a: `noomA${tag}`, b: `noomB${tag}` };
const BRIDGE = `nbr${tag}`;

function ip(...args) {
  return execFileSync("ip", args, { stdio: ["ignore", "pipe", "pipe"] }).toString();
}

/** Whether this machine lets the test build its namespaces. */
function canRun() {
  if (process.getuid && process.getuid() !== 0) return "needs root";
  // Only inside a namespace of the suite's own (.ci/run's `unshare -n`):
  // never add bridges and routes to the machine's real network.
  try {
    const links = ip("-o", "link").trim().split("\n").map((l) => l.split(":")[1].trim());
    if (links.some((l) => l !== "lo")) return "runs only in a network namespace with loopback alone (as .ci/run provides)";
  } catch (err) {
    return `ip unavailable: ${err.message}`;
  }
  try {
    ip("netns", "add", `noomProbe${tag}`);
    ip("netns", "del", `noomProbe${tag}`);
    return null;
  } catch (err) {
    return `ip netns unavailable: ${String(err.stderr || err.message).trim()}`;
  }
}
const skip = canRun();

/** The bridge (the "router"), and two namespaces on it, A at .2 and B at .3. */
function buildNetwork() {
  ip("link", "add", BRIDGE, "type", "bridge");
  ip("addr", "add", `${HUB}/24`, "dev", BRIDGE);
  ip("addr", "add", `${NEW_HUB}/24`, "dev", BRIDGE);
  ip("link", "set", BRIDGE, "up");
  const hosts = { a: "10.88.0.2", b: "10.88.0.3" };
  for (const [k, ns] of Object.entries(NS)) {
    ip("netns", "add", ns);
    ip("link", "add", `v${k}${tag}`, "type", "veth", "peer", "name", `v${k}h${tag}`);
    ip("link", "set", `v${k}${tag}`, "netns", ns);
    ip("link", "set", `v${k}h${tag}`, "master", BRIDGE, "up");
    ip("-n", ns, "link", "set", "lo", "up");
    ip("-n", ns, "addr", "add", `${hosts[k]}/24`, "dev", `v${k}${tag}`);
    ip("-n", ns, "link", "set", `v${k}${tag}`, "up");
    ip("-n", ns, "route", "add", "default", "via", HUB);
    // The other subnet is on the same wire (after a move, A lives there).
    ip("-n", ns, "route", "add", "10.89.0.0/24", "dev", `v${k}${tag}`);
  }
}

function tearDownNetwork() {
  for (const ns of Object.values(NS)) {
    try {
      ip("netns", "del", ns);
    } catch {
      /* not there */
    }
  }
  try {
    ip("link", "del", BRIDGE);
  } catch {
    /* not there */
  }
}

/** A laptop moves: a new address in the other subnet, the old one gone, the default route back. */
function moveA() {
  const dev = `va${tag}`;
  const from = ip("-n", NS.a, "-4", "-o", "addr", "show", "dev", dev).match(/inet (\S+)/)[1];
  const to = from.startsWith("10.88.") ? "10.89.0.2" : "10.88.0.2";
  const subnet = to.startsWith("10.89.") ? "10.88.0.0/24" : "10.89.0.0/24";
  ip("-n", NS.a, "addr", "add", `${to}/24`, "dev", dev);
  ip("-n", NS.a, "addr", "del", from, "dev", dev);
  ip("-n", NS.a, "route", "replace", subnet, "dev", dev);
  ip("-n", NS.a, "route", "replace", "default", "via", to.startsWith("10.89.") ? NEW_HUB : HUB);
}

function linkA(up) {
  ip("-n", NS.a, "link", "set", `va${tag}`, up ? "up" : "down");
  if (up) {
    const addr = ip("-n", NS.a, "-4", "-o", "addr", "show", "dev", `va${tag}`).match(/inet (\S+)/)[1];
    const gw = addr.startsWith("10.89.") ? NEW_HUB : HUB;
    ip("-n", NS.a, "route", "replace", "default", "via", gw);
    ip("-n", NS.a, "route", "replace", addr.startsWith("10.89.") ? "10.88.0.0/24" : "10.89.0.0/24", "dev", `va${tag}`);
  }
}

let server, dir, browsers, pages;

/** Chromium inside namespace `ns`, through a wrapper that enters it. */
async function browserIn(ns, origin) {
  const wrapper = join(dir, `chromium-${ns}`);
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${ns} ${chromiumExecutable()} "$@"\n`);
  chmodSync(wrapper, 0o755);
  return chromium.launch({
    executablePath: wrapper,
    headless: true,
    // A plain-HTTP origin other than localhost gets cameras only this way.
    args: [...CHROMIUM_ARGS.filter((a) => a !== "--headless"), `--unsafely-treat-insecure-origin-as-secure=${origin}`],
  });
}

// Records the connection banner's states with wall-clock times.
const recordBanner = () => {
  window.__banner = [];
  const push = (state) => {
    const last = window.__banner[window.__banner.length - 1];
    if (state && (!last || last.state !== state)) window.__banner.push({ state, at: Date.now() });
  };
  new MutationObserver((records) => {
    // Every state it went through, however briefly: each record's old value, then the current one.
    const mine = records.filter((r) => r.target.id === "connection");
    if (!mine.length) return;
    for (const r of mine.slice(1)) push(r.oldValue);
    push(mine[0].target.dataset.state);
  }).observe(document, { subtree: true, attributes: true, attributeOldValue: true, attributeFilter: ["data-state"] });
};

// NOOM_NETWORK_TRACE=1: each page's peer connections are kept, and every
// 100 ms from a change to the recovery a line says what each side's video
// did (to see where a slow recovery spends its time).
const TRACE = process.env.NOOM_NETWORK_TRACE === "1";
// NOOM_NETWORK_PCAP=dir: each case's UDP traffic, as each namespace saw it,
// goes to dir/<mode>-<case><run>-<a|b>.pcap (tcpdump), to tell when frames
// that arrive after an outage were made.
const PCAP = process.env.NOOM_NETWORK_PCAP;
async function capture(name) {
  if (!PCAP) return async () => {};
  const dumps = ["a", "b"].map((k) =>
    spawn("ip", ["netns", "exec", NS[k], "tcpdump", "-i", `v${k}${tag}`, "-U", "-s", "96", "-w", join(PCAP, `${name}-${k}.pcap`), "udp"], { stdio: "ignore" }),
  );
  await sleep(300);
  return async () => {
    for (const d of dumps) d.kill("SIGINT");
    await sleep(300);
  };
}
const keepConnections = () => {
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new Native(...args);
    window.__pcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
};

/** One trace line of `page`: its video in and out, and the pair in use. */
function traceOf(page) {
  return page.evaluate(async () => {
    const pc = window.__pcs.findLast((p) => p.connectionState !== "closed");
    if (!pc) return "-";
    const report = await pc.getStats();
    let line = `${pc.connectionState}/${pc.iceConnectionState}`;
    const prev = (window.__tracePrev ||= {});
    const delta = (key, s, num, den) => {
      const p = prev[key];
      prev[key] = { num: s[num] || 0, den: s[den] || 0 };
      if (!p || s[den] === p.den) return "-";
      return Math.round((1000 * ((s[num] || 0) - p.num)) / ((s[den] || 0) - p.den));
    };
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") line += ` jb${delta("jb", s, "jitterBufferDelay", "jitterBufferEmittedCount")}/t${delta("jbt", s, "jitterBufferTargetDelay", "jitterBufferEmittedCount")}/m${delta("jbm", s, "jitterBufferMinimumDelay", "jitterBufferEmittedCount")}ms`;
      if (s.type === "inbound-rtp" && s.kind === "audio") line += ` ajb${delta("ajb", s, "jitterBufferDelay", "jitterBufferEmittedCount")}/t${delta("ajbt", s, "jitterBufferTargetDelay", "jitterBufferEmittedCount")}ms`;
      if (s.type === "outbound-rtp" && s.kind === "video" && s.bytesSent) line += ` pace${delta("pace", s, "totalPacketSendDelay", "packetsSent")}ms`;
      if (s.type === "inbound-rtp" && s.kind === "video") line += ` in:${s.framesReceived}r/${s.framesDecoded}f/${s.keyFramesDecoded}k/${s.framesDropped}d/${Math.round(s.bytesReceived / 1000)}kB lost${s.packetsLost} nack${s.nackCount} pli${s.pliCount} fir${s.firCount}`;
      if (s.type === "outbound-rtp" && s.kind === "video" && s.bytesSent) line += ` out:${(report.get(s.codecId) || {}).mimeType || "?"}:${s.framesEncoded}f/${s.keyFramesEncoded}k/${Math.round(s.bytesSent / 1000)}kB rtx${Math.round((s.retransmittedBytesSent || 0) / 1000)}kB nack${s.nackCount} pli${s.pliCount} ${s.qualityLimitationReason} ${Math.round((s.targetBitrate || 0) / 1000)}kbps`;
      if (s.type === "transport" && s.selectedCandidatePairId) {
        const pair = report.get(s.selectedCandidatePairId);
        const local = pair && report.get(pair.localCandidateId);
        line += ` pair:${local ? local.address : "?"} rsp${pair ? pair.responsesReceived : 0}`;
      }
    });
    return line;
  });
}

async function openIn(browser, nickname) {
  const context = await browser.newContext({ baseURL: server.base, viewport: { width: 960, height: 600 }, permissions: ["camera", "microphone"] });
  await context.addInitScript(`localStorage.setItem("noom.sendHeight", "360")`);
  await context.addInitScript(`(${recordBanner})()`);
  if (TRACE) await context.addInitScript(`(${keepConnections})()`);
  const page = await context.newPage();
  page.errors = [];
  page.on("pageerror", (err) => page.errors.push(String(err)));
  if (process.env.NOOM_TEST_CONSOLE === "1") {
    page.on("console", (m) => console.log(`[${nickname} ${Date.now() % 100000}] ${m.text()}`));
  }
  await page.goto("/");
  await page.getByTestId("connection").and(page.locator('[data-state="connected"]')).waitFor();
  await page.fill("#nickname-input", nickname);
  await page.getByTestId("save-nickname").click();
  await page.getByTestId("nickname").getByText(nickname, { exact: true }).waitFor();
  await page.goto(roomPath("on the move"));
  return page;
}

/** Frames decoded from the other side, and the tag of the connection they come on. */
function sample(page) {
  return page.evaluate(async () => {
    const [s] = await window.noomCall.stats();
    return { frames: s ? s.framesDecoded : 0, pc: window.noomCall.connectionTags()[0] || null };
  });
}

/**
 * After `changedAt`, the time at which both pages decode the other's video
 * again (3 frames or more over the last 300 ms or so, all after the
 * change, from 500 ms after it on), in ms.
 */
async function recoveredWithin(changedAt, limitMs) {
  const history = pages.map(() => []);
  const deadline = changedAt + limitMs + 5000;
  for (;;) {
    const now = Date.now();
    const samples = await Promise.all(pages.map(sample));
    samples.forEach((s, i) => history[i].push({ at: now, frames: s.frames }));
    if (TRACE) console.log(`# +${now - changedAt} A ${await traceOf(pages[0])} | B ${await traceOf(pages[1])}`);
    const flowing = history.every((h) => {
      const last = h[h.length - 1];
      const back = h.findLast((x) => x.at <= last.at - 300);
      return last.at - changedAt >= 500 && back && back.at >= changedAt && last.frames - back.frames >= 3;
    });
    if (flowing) return now - changedAt;
    if (now > deadline) {
      for (const page of pages) {
        const seen = await page.evaluate(async () => ({ peers: window.noomCall.peers(), stats: await window.noomCall.stats() }));
        console.log(`# not recovered: ${JSON.stringify({ peers: seen.peers, stats: seen.stats.map((x) => ({ state: x.connectionState, sig: x.signalingState, frames: x.framesDecoded, path: x.path })) })}`);
      }
      try {
        console.log(`# A: ${ip("-n", NS.a, "-4", "-o", "addr").replace(/\n/g, " | ")} routes: ${ip("-n", NS.a, "route").replace(/\n/g, " | ")}`);
        console.log(`# ping A->B: ${execFileSync("ip", ["netns", "exec", NS.a, "ping", "-c1", "-W1", "10.88.0.3"]).toString().split("\n")[1]}`);
      } catch (err) {
        console.log(`# ping failed: ${err.message}`);
      }
      return Infinity;
    }
    await sleep(100);
  }
}

// Through a mesh (one connection per pair) and through the media server
// (each page's one connection to it), unless NOOM_NETWORK_MODE names one.
const MODES = process.env.NOOM_NETWORK_MODE ? [process.env.NOOM_NETWORK_MODE] : ["mesh", "sfu"];
const measured = {};

/** Each change hits a call that runs steadily, not one still recovering from the last. */
const SETTLE_MS = 3000;

before(() => {
  if (skip) return;
  tearDownNetwork();
  buildNetwork();
  dir = mkdtempSync(join(tmpdir(), "noom-netns-"));
});

after(() => {
  if (!skip) tearDownNetwork();
  if (dir) rmSync(dir, { recursive: true, force: true });
  for (const [name, list] of Object.entries(measured)) {
    if (!list.length) continue;
    const sorted = [...list].sort((x, y) => x - y);
    console.log(`# ${name}: recovery ms ${sorted.join(", ")}; median ${sorted[Math.floor(sorted.length / 2)]}, worst ${sorted.at(-1)}`);
  }
});

for (const mode of MODES) {
  describe(`${mode}`, { skip: skip || false }, () => {
    before(async () => {
      const media =
        mode === "sfu"
          ? { NOOM_CALL_MODE: "sfu", NOOM_SFU_LISTEN: `${HUB}:0`, NOOM_SFU_PUBLIC_IP: HUB }
          : { NOOM_SFU_ENABLED: "false" };
      server = await startServer({ host: HUB, env: { NOOM_TURN_ENABLED: "false", ...media } });
      browsers = [await browserIn(NS.a, server.base), await browserIn(NS.b, server.base)];
      pages = [await openIn(browsers[0], "Ana"), await openIn(browsers[1], "Bo")];
      for (const page of pages) await joinCall(page);
      await expectLiveTiles(pages[0], ["Bo"]);
      await expectLiveTiles(pages[1], ["Ana"]);
      measured[`${mode} move`] = [];
      measured[`${mode} drop`] = [];
    });

    after(async () => {
      for (const b of browsers || []) await b.close().catch(() => {});
      browsers = null;
      await server?.stop();
      server = null;
    });

    for (let run = 1; run <= RUNS; run += 1) {
      test(`run ${run}: A's address changes mid-call; video back both ways within ${MOVE_MS[mode]} ms, same connection; banner told within 3 s`, async () => {
        await sleep(SETTLE_MS);
        const before = await Promise.all(pages.map(sample));
        const stopCapture = await capture(`${mode}-move${run}`);
        const bannerFrom = await pages[0].evaluate(() => window.__banner.length);
        const joinedBefore = await Promise.all(pages.map((p) => p.locator("#messages .notice", { hasText: "joined" }).count()));
        const changedAt = Date.now();
        moveA();
        if (process.env.NOOM_TEST_CONSOLE === "1" || PCAP) console.log(`# moved at ${changedAt}`);
        const ms = await recoveredWithin(changedAt, MOVE_MS[mode]);
        await stopCapture();
        measured[`${mode} move`].push(ms);
        console.log(`# ${mode}: address change ${run}: video back in ${ms} ms`);
        assert.ok(ms <= MOVE_MS[mode], `video back both ways within ${MOVE_MS[mode]} ms of the change (took ${ms} ms)`);
        // The page's connection to the server died with the old address: the
        // banner says so within 3 s (even when the browser moved the call's
        // media to the new address by itself sooner).
        await sleep(Math.max(0, changedAt + 3000 - Date.now()));
        const banner = await pages[0].evaluate((from) => window.__banner.slice(from), bannerFrom);
        const told = banner.find((b) => b.state === "reconnecting");
        assert.ok(told && told.at - changedAt <= 3000, `"reconnecting" shown within 3 s: ${JSON.stringify(banner.map((b) => ({ ...b, at: b.at - changedAt })))}`);
        await until(pages[0], () => /connected/.test(document.getElementById("connection").dataset.state), null, { what: "banner back" });
        const after = await Promise.all(pages.map(sample));
        after.forEach((s, i) => assert.equal(s.pc, before[i].pc, "the same RTCPeerConnection, restarted"));
        // No "joined" line for someone who never left, and no tile for anyone but the other.
        for (let i = 0; i < pages.length; i += 1) {
          assert.equal(await pages[i].locator("#messages .notice", { hasText: "joined" }).count(), joinedBefore[i]);
          assert.deepEqual(await tileNames(pages[i]), [i ? "Ana" : "Bo"]);
        }
      });

      test(`run ${run}: A's link drops for 5 s; video back within ${LINK_BACK_MS[mode]} ms of its return`, async () => {
        await sleep(SETTLE_MS);
        const before = await Promise.all(pages.map(sample));
        const stopCapture = await capture(`${mode}-drop${run}`);
        linkA(false);
        await sleep(5000);
        const upAt = Date.now();
        linkA(true);
        if (process.env.NOOM_TEST_CONSOLE === "1" || PCAP) console.log(`# link up at ${upAt}`);
        const ms = await recoveredWithin(upAt, LINK_BACK_MS[mode]);
        await stopCapture();
        measured[`${mode} drop`].push(ms);
        console.log(`# ${mode}: link drop ${run}: video back ${ms} ms after the link returned`);
        assert.ok(ms <= LINK_BACK_MS[mode], `video back within ${LINK_BACK_MS[mode]} ms of the link's return (took ${ms} ms)`);
        const after = await Promise.all(pages.map(sample));
        after.forEach((s, i) => assert.equal(s.pc, before[i].pc, "the same RTCPeerConnection"));
        for (const page of pages) assert.deepEqual(page.errors, []);
      });
    }
  });
}
