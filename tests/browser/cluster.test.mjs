// Three nodes sharing Redis and PostgreSQL (docs/cluster.md): pages on
// different nodes chat in one room and hold a three-person call.
//
// The test starts its own Redis and PostgreSQL (scripts/lib/services.sh,
// inside the suite's network namespace) and skips with a message where they
// are not installed; .ci/run installs them.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { createServer } from "node:net";
import {
  BIN,
  ROOT,
  expectLiveTiles,
  joinCall,
  launchBrowser,
  openPage,
  roomPath,
  sendMessage,
  startServer,
  waitEntered,
} from "./harness.mjs";

const hasPostgres = existsSync("/usr/lib/postgresql") && readdirSync("/usr/lib/postgresql").length > 0;
const hasRedis = spawnSync("sh", ["-c", "command -v redis-server"]).status === 0;
const skip = hasPostgres && hasRedis ? false : "needs redis-server and PostgreSQL (apt-get install -y redis-server postgresql)";

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Redis and PostgreSQL for the test, stopped (and removed) by `stop()`. */
async function startServices() {
  const [pg, redis] = [await freePort(), await freePort()];
  const script = `trap 'exit 0' TERM; source scripts/lib/services.sh && start_postgres ${pg} && start_redis ${redis} && echo READY && while sleep 1; do :; done`;
  const child = spawn("bash", ["-c", script], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise((r) => child.once("exit", r));
  await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      if (out.includes("READY")) resolve();
    });
    exited.then((code) => reject(new Error(`services did not start (${code}): ${out}`)));
  });
  return {
    postgres: `postgres://noom@127.0.0.1:${pg}/postgres`,
    redis: `redis://127.0.0.1:${redis}/`,
    async stop() {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

const env = { services: null, nodes: [], browser: null };
before(async () => {
  if (skip) return;
  env.services = await startServices();
  const hashed = spawnSync(BIN, ["hash-password"], { input: "cluster admin\n", encoding: "utf8" });
  assert.equal(hashed.status, 0, hashed.stderr);
  const shared = {
    NOOM_CLUSTER_REDIS_URL: env.services.redis,
    NOOM_STORE_BACKEND: "postgres",
    NOOM_STORE_POSTGRES_URL: env.services.postgres,
    NOOM_STORE_POSTGRES_POOL: "4",
    NOOM_TURN_SECRET: "a secret the three nodes share",
    NOOM_ADMIN_PASSWORD_HASH: hashed.stdout.trim(),
    NOOM_CALL_MODE: "mesh",
  };
  // One at a time: the first creates the schema.
  for (const id of ["one", "two", "three"]) {
    env.nodes.push(await startServer({ env: { ...shared, NOOM_CLUSTER_NODE_ID: id } }));
  }
  env.browser = await launchBrowser();
});
after(async () => {
  await env.browser?.close();
  for (const node of env.nodes) await node.stop();
  await env.services?.stop();
});

test("pages on three nodes chat in one room and hold one call", { skip }, async () => {
  const room = "across nodes";
  const pages = [];
  try {
    for (const [i, nickname] of ["Ann", "Ben", "Cat"].entries()) {
      const page = await openPage(env.browser, env.nodes[i], roomPath(room), { nickname });
      await waitEntered(page);
      pages.push(page);
    }
    const [ann, ben, cat] = pages;
    // Everyone is listed everywhere (members and counts are the cluster's).
    for (const page of pages) {
      await page.waitForFunction(() => document.querySelectorAll("#members li").length === 3, null, { timeout: 10000 });
    }
    // A message said on node one shows on nodes two and three.
    await sendMessage(ann, "hello from node one");
    for (const page of [ben, cat]) {
      await page.locator("#messages .message .text", { hasText: "hello from node one" }).waitFor({ timeout: 10000 });
    }
    // One call, each page on its own node.
    for (const page of pages) await joinCall(page);
    await expectLiveTiles(ann, ["Ben", "Cat"]);
    await expectLiveTiles(ben, ["Ann", "Cat"]);
    await expectLiveTiles(cat, ["Ann", "Ben"]);
    for (const page of pages) assert.deepEqual(page.errors, []);
  } finally {
    for (const page of pages) await page.context().close();
  }
});
