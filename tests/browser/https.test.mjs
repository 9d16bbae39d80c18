// HTTPS built in: a call between two pages over https:// on a non-localhost
// address (10.77.0.1, added to `lo` of the test's network namespace by
// .ci/run), where plain HTTP on the same address shows why calls need HTTPS
// and how to turn it on. The server's certificate is self-signed; Chromium
// runs with --ignore-certificate-errors. Without 10.77.0.1 the call runs on
// https://127.0.0.1 and the plain-HTTP part is skipped (localhost is a
// secure origin even over HTTP, so it cannot show the message).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { networkInterfaces } from "node:os";
import { startServer, launchBrowser, openPage, roomPath, joinCall, expectLiveTiles } from "./harness.mjs";

const ADDRESS = "10.77.0.1";
const hasAddress = Object.values(networkInterfaces())
  .flat()
  .some((i) => i && i.address === ADDRESS);
const HOST = hasAddress ? ADDRESS : "127.0.0.1";
const SKIP_PLAIN = hasAddress
  ? false
  : `${ADDRESS} is not on this machine: run inside \`unshare -n sh -c 'ip link set lo up && ip addr add ${ADDRESS}/32 dev lo && node --test tests/browser/https.test.mjs'\``;

let secure, plain, browser;

before(async () => {
  if (!hasAddress) console.log(`# ${SKIP_PLAIN}; the call runs on https://127.0.0.1 instead`);
  secure = await startServer({ host: HOST, https: true });
  if (hasAddress) plain = await startServer({ host: ADDRESS });
  browser = await launchBrowser(["--ignore-certificate-errors"]);
});

after(async () => {
  await browser?.close();
  await secure?.stop();
  await plain?.stop();
});

test(`a call holds over https://${HOST}`, async () => {
  assert.match(secure.base, /^https:\/\//);
  const room = roomPath("secure call");
  const ann = await openPage(browser, secure, room, { nickname: "Ann", ignoreHTTPSErrors: true });
  const bob = await openPage(browser, secure, room, { nickname: "Bob", ignoreHTTPSErrors: true });
  for (const page of [ann, bob]) {
    assert.equal(await page.evaluate(() => window.isSecureContext), true);
    assert.equal(await page.evaluate(() => location.protocol), "https:");
    assert.equal(await page.getByTestId("media-error").isHidden(), true);
  }
  await joinCall(ann);
  await joinCall(bob);
  await expectLiveTiles(ann, ["Bob"]);
  await expectLiveTiles(bob, ["Ann"]);
  // Everything came over https:// from the one port; the pages are connected
  // (joinCall waits for it), and an https:// page may use only wss:// and
  // https:// for Socket.IO: signaling ran over TLS too.
  const loaded = await ann.evaluate(() => performance.getEntriesByType("resource").map((e) => e.name));
  assert.ok(loaded.length > 0 && loaded.every((u) => u.startsWith(`${secure.base}/`)), JSON.stringify(loaded));
  assert.deepEqual(ann.errors, []);
  assert.deepEqual(bob.errors, []);
  await ann.context().close();
  await bob.context().close();
});

test(`plain http://${ADDRESS} says calls need HTTPS and how to turn it on`, { skip: SKIP_PLAIN }, async () => {
  for (const [locale, how, link] of [
    ["en-US", /self_signed = true/, "How to turn on HTTPS"],
    ["ko-KR", /self_signed = true/, "HTTPS 켜는 방법"],
  ]) {
    const page = await openPage(browser, plain, roomPath("plain call"), { locale });
    assert.equal(await page.evaluate(() => window.isSecureContext), false);
    const error = page.getByTestId("media-error");
    await error.waitFor();
    assert.equal(await error.getAttribute("data-reason"), "insecure");
    assert.match(await error.textContent(), /HTTPS/);
    const help = page.getByTestId("https-help");
    await help.waitFor();
    assert.match(await help.textContent(), how);
    const anchor = page.getByTestId("https-help-link");
    assert.equal(await anchor.textContent(), link);
    // The link leads to the deployment guide this server carries.
    const href = await anchor.getAttribute("href");
    const doc = await page.evaluate(async (href) => (await fetch(href)).text(), href);
    assert.match(doc, /self_signed = true/);
    assert.deepEqual(page.errors, []);
    await page.context().close();
  }
});
