// Call set-up benchmark (not a test; CI does not run it):
//   node tests/browser/bench-setup.mjs [runs=10]
//
// Two pages of one headless Chromium against the real binary. Ann is in the
// call; Ben opens the room page (the preview starts by itself, permission
// being granted), and once his camera shows, clicks "Join call". Measured:
//   joiner: from Ben's click to the first decoded frame of Ann's video at Ben
//           (requestVideoFrameCallback on her tile);
//   both:   from the same click until Ann has also shown Ben's first frame.
// Each run is a fresh room page for Ben; prints every run and the medians.
import { startServer, launchBrowser, openPage, roomPath, joinCall, waitEntered, until, sleep } from "./harness.mjs";

const runs = Number(process.argv[2] ?? 10);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const server = await startServer();
const browser = await launchBrowser();
const joiner = [];
const both = [];
try {
  const ann = await openPage(browser, server, roomPath("bench"), { nickname: "Ann" });
  await joinCall(ann);
  const ben = await openPage(browser, server, roomPath("bench"), { nickname: "Ben" });
  for (let i = 0; i < runs; i++) {
    if (i > 0) await ben.reload();
    await waitEntered(ben);
    // The preview is up: the camera is delivering frames.
    await ben.waitForFunction(() => {
      const v = document.getElementById("preview-video");
      return v.srcObject && v.readyState >= 2 && v.currentTime > 0;
    });
    await sleep(300);
    const benId = await ben.evaluate(() => window.noomCall && document.querySelector("#members li.self").dataset.id);
    await ben.getByTestId("join-call").click();
    const t = await until(ben, () => {
      const tm = window.noomCall.timings();
      const first = Object.values(tm.firstFrame)[0];
      return first !== undefined && { click: performance.timeOrigin + tm.joinClickedAt, first: first - tm.joinClickedAt };
    }, null, { what: "first remote frame at Ben", timeout: 30000, interval: 20 });
    const annFirst = await until(ann, (id) => {
      const f = window.noomCall.timings().firstFrame[id];
      return f !== undefined && performance.timeOrigin + f;
    }, benId, { what: "first frame of Ben at Ann", timeout: 30000, interval: 20 });
    joiner.push(t.first);
    both.push(Math.max(t.first, annFirst - t.click));
    console.log(`run ${i + 1}: joiner ${t.first.toFixed(0)} ms, both ${both.at(-1).toFixed(0)} ms`);
    // Ann must have dropped the old Ben before the next run.
    await ben.getByTestId("leave-call").click();
    await until(ann, () => window.noomCall.peers().length === 0, null, { what: "Ann alone again" });
  }
  console.log(
    `median of ${runs}: joiner ${median(joiner).toFixed(0)} ms (min ${Math.min(...joiner).toFixed(0)}, max ${Math.max(...joiner).toFixed(0)}); ` +
      `both directions ${median(both).toFixed(0)} ms (min ${Math.min(...both).toFixed(0)}, max ${Math.max(...both).toFixed(0)})`,
  );
} finally {
  await browser.close();
  await server.stop();
}
