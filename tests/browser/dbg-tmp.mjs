import { startServer, launchBrowser, openPage, roomPath, joinCall, expectLiveTiles, sleep } from "./harness.mjs";
const server = await startServer();
const browser = await launchBrowser();
try {
  const ann = await openPage(browser, server, roomPath("d"), { nickname: "Ann" });
  const ben = await openPage(browser, server, roomPath("d"), { nickname: "Ben" });
  await joinCall(ann); await joinCall(ben);
  await expectLiveTiles(ben, ["Ann"]);
  await ann.getByTestId("devices").click();
  const cameras = await ann.locator("#camera-select option").evaluateAll((os) => os.map((o) => o.value));
  await ann.selectOption("#camera-select", cameras[1]);
  for (let i = 0; i < 6; i++) {
    await sleep(1000);
    const a = await ann.evaluate(async () => { const [s] = await window.noomCall.stats(); return [s.sending, s.connectionState, window.noomCall.local()]; });
    const b = await ben.evaluate(async () => { const [s] = await window.noomCall.stats(); return [s.framesDecoded, s.frameWidth, s.remoteTracks]; });
    console.log(JSON.stringify(a), JSON.stringify(b));
  }
  console.log(ann.errors, ben.errors);
} finally { await browser.close(); await server.stop(); }
