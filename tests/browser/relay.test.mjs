// Calls that can only go through Noom's built-in TURN relay: both pages force
// `iceTransportPolicy: "relay"` (the `noom.relay` preference), over UDP and
// over TCP to the relay, and the connection's selected candidate pair must be
// a relay one. The server's relay counters must have moved.
import { test } from "node:test";
import assert from "node:assert/strict";
import { openPage, roomPath, joinCall, expectLiveTiles, useServerAndBrowser } from "./harness.mjs";

const env = useServerAndBrowser();

async function relayedPackets() {
  const text = await (await fetch(`${env.server.base}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("noom_relay_packets_total "));
  return Number(line?.split(" ")[1] ?? 0);
}

for (const transport of ["udp", "tcp"]) {
  test(`a call relayed over TURN/${transport}`, async () => {
    const room = `relay ${transport}`;
    const init = `localStorage.setItem("noom.relay", "${transport}")`;
    const pages = [];
    try {
      const before = await relayedPackets();
      for (const nickname of [`R${transport}1`, `R${transport}2`]) {
        pages.push(await openPage(env.browser, env.server, roomPath(room), { nickname, init }));
      }
      for (const page of pages) await joinCall(page);
      await expectLiveTiles(pages[0], [`R${transport}2`]);
      await expectLiveTiles(pages[1], [`R${transport}1`]);
      for (const page of pages) {
        const stats = await page.evaluate(() => window.noomCall.stats());
        assert.equal(stats.length, 1);
        assert.deepEqual(
          { type: stats[0].path?.type, relayProtocol: stats[0].path?.relayProtocol },
          { type: "relay", relayProtocol: transport },
          JSON.stringify(stats[0].path),
        );
      }
      const after = await relayedPackets();
      assert.ok(after - before > 100, `relay carried the media (${before} -> ${after} packets)`);
      for (const page of pages) assert.deepEqual(page.errors, []);
    } finally {
      for (const page of pages) await page.context().close();
    }
  });
}
