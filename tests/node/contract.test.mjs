// The wire contract, spoken by the official socket.io client from npm (the
// same release as the vendored browser copy), against the real noom binary.
// Run by .ci/run after `cargo test` has built target/debug/noom.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { io } from "socket.io-client";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const bin = process.env.NOOM_BIN ?? join(root, "target", "debug", "noom");
let server, base, dataDir;

const freePort = () =>
  new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "noom-contract-"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(bin, ["--http", `127.0.0.1:${port}`, "--data-dir", dataDir], {
    env: { ...process.env, RUST_LOG: "warn", NOOM_TURN_LISTEN: "127.0.0.1:0", NOOM_SFU_LISTEN: "127.0.0.1:0" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("noom did not start");
});

after(() => {
  server?.kill("SIGTERM");
  rmSync(dataDir, { recursive: true, force: true });
});

// Connects and resolves once the `session` event has arrived.
function connect(opts = {}) {
  return new Promise((resolve, reject) => {
    const socket = io(base, { reconnection: false, ...opts });
    socket.once("session", (session) => resolve({ socket, session }));
    socket.once("connect_error", reject);
  });
}

for (const transports of [["websocket"], ["polling"], ["polling", "websocket"]]) {
  test(`contract over ${transports.join(" then ")}`, async () => {
    const room = `node-${transports.join("-")}`;
    const { socket: a, session } = await connect({ transports });
    assert.match(session.session, /^[0-9a-f]{64}$/);
    assert.match(session.nickname, /^Anon-/);

    // Same token, same identity.
    const { socket: again, session: same } = await connect({ transports, auth: { session: session.session } });
    assert.equal(same.user, session.user);
    again.close();

    const { socket: b } = await connect({ transports });
    const entered = await a.timeout(5000).emitWithAck("enter_room", room);
    assert.equal(entered.ok, true);
    assert.equal(entered.count, 1);
    const welcome = new Promise((r) => a.once("welcome", (...args) => r(args)));
    await b.timeout(5000).emitWithAck("enter_room", room);
    const [wroom, member, count] = await welcome;
    assert.deepEqual([wroom, member.id, count], [room, b.id, 2]);

    const delivered = new Promise((r) => b.once("new_message", r));
    const sent = await a.timeout(5000).emitWithAck("new_message", room, "héllo 👋");
    assert.equal(sent.ok, true);
    assert.equal(sent.message.seq, 1);
    assert.deepEqual(await delivered, sent.message);

    const refused = await a.timeout(5000).emitWithAck("new_message", room, "");
    assert.equal(refused.ok, false);
    assert.equal(refused.error.code, "invalid_message");
    assert.equal(typeof refused.error.message, "string");

    const history = await b.timeout(5000).emitWithAck("history", room, { after: 0 });
    assert.deepEqual(history.messages, [sent.message]);

    const joined = await a.timeout(5000).emitWithAck("join_call", room);
    assert.deepEqual(joined.peers, []);
    const peerJoined = new Promise((r) => a.once("peer_joined", (...args) => r(args)));
    const bJoined = await b.timeout(5000).emitWithAck("join_call", room);
    assert.equal(bJoined.peers[0].id, a.id);
    assert.equal((await peerJoined)[1].id, b.id);
    const offer = new Promise((r) => a.once("offer", r));
    // Without an ack callback, the request is still processed.
    b.emit("offer", { to: a.id, description: { type: "offer", sdp: "v=0\r\n" } });
    assert.deepEqual(await offer, { from: b.id, description: { type: "offer", sdp: "v=0\r\n" } });

    const bye = new Promise((r) => a.once("bye", (...args) => r(args)));
    const bId = b.id;
    b.close();
    const [, gone, left] = await bye;
    assert.equal(gone.id, bId);
    assert.equal(left, 1);
    a.close();
  });
}
