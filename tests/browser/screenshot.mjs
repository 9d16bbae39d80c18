// Makes docs/screenshot-call.png (not a test): a three-party call in progress.
//   node tests/browser/screenshot.mjs [out.png] [--dark] [--phone] [--prejoin] [--speaker]
// --speaker: five people through the media server, one sharing a screen,
// seen in speaker view (docs/screenshot-speaker.png).
import { startServer, launchBrowser, openPage, roomPath, joinCall, expectLiveTiles, sleep, ROOT } from "./harness.mjs";
import { join } from "node:path";

const args = process.argv.slice(2);
const out = args.find((a) => !a.startsWith("--")) ?? join(ROOT, "docs", "screenshot-call.png");
const dark = args.includes("--dark");
const phone = args.includes("--phone");
const prejoinOnly = args.includes("--prejoin");
const speaker = args.includes("--speaker");

const server = await startServer();
const browser = await launchBrowser();
try {
  const room = "Design review";
  const viewport = phone ? { width: 390, height: 780 } : { width: 1280, height: 760 };
  const main = await openPage(browser, server, roomPath(room), { nickname: "Mina", viewport, colorScheme: dark ? "dark" : "light" });
  if (speaker) {
    const names = ["지민", "Sam Taylor", "Ola", "Priya"];
    const others = [];
    for (const nickname of names) others.push(await openPage(browser, server, roomPath(room), { nickname }));
    await main.evaluate(() => localStorage.setItem("noom.view", "speaker"));
    await main.reload();
    for (const p of [main, ...others]) await joinCall(p);
    await expectLiveTiles(main, names, { timeout: 40000 });
    await others[0].getByTestId("share-screen").click();
    await main.getByTestId("tile-screen").waitFor();
    await others[0].fill("#message-input", "Sharing the new mockups now.");
    await others[0].getByTestId("send").click();
    await sleep(3000);
    await main.screenshot({ path: out });
  } else if (prejoinOnly) {
    await main.waitForFunction(() => document.getElementById("preview-video").readyState >= 2);
    await sleep(800);
    await main.screenshot({ path: out });
  } else {
    const jun = await openPage(browser, server, roomPath(room), { nickname: "지민" });
    const sam = await openPage(browser, server, roomPath(room), { nickname: "Sam Taylor" });
    for (const p of [main, jun, sam]) await joinCall(p);
    await expectLiveTiles(main, ["지민", "Sam Taylor"]);
    const say = async (page, text) => {
      await page.fill("#message-input", text);
      await page.getByTestId("send").click();
      await sleep(150);
    };
    await say(jun, "안녕하세요! Sharing the new mockups in a minute.");
    await say(sam, "Sounds good, I'm on mute, the café is loud.");
    if (!phone) await say(main, "Great, go ahead 지민.");
    await sam.getByTestId("mute").click();
    await main.waitForFunction(() => document.querySelector('[data-testid="tile"][data-audio="off"]'));
    await sleep(1200);
    await main.screenshot({ path: out });
  }
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await server.stop();
}
