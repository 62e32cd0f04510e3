// The chat demo in a real browser: Debian's chromium driven by playwright-core.
// Two pages join one room, one sends a message, the other must show it; a third page in
// another room must not. Usage: node chat.test.mjs http://127.0.0.1:PORT/ SCREENSHOT.png
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error("usage: node chat.test.mjs URL SCREENSHOT");
  process.exit(2);
}
const TIMEOUT = 10_000;
const userDataDir = mkdtempSync(join(tmpdir(), "socketry-chromium-"));

function fail(message) {
  throw new Error(message);
}

async function joinRoom(context, name, room) {
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  await page.goto(url);
  await page.fill("#name", name);
  await page.fill("#room", room);
  await page.click("#join-button");
  await page.waitForSelector("#send:not([hidden])");
  return page;
}

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  timeout: 30_000,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const alice = await joinRoom(context, "alice", "rust");
  const bob = await joinRoom(context, "bob", "rust");
  const carol = await joinRoom(context, "carol", "elsewhere");

  // Presence: both members of the room see each other.
  for (const page of [alice, bob]) {
    await page.waitForFunction(
      () => /alice/.test(document.getElementById("presence").textContent) &&
        /bob/.test(document.getElementById("presence").textContent),
    );
  }

  // The browser offered permessage-deflate and the demo accepted it.
  const extensions = await alice.evaluate(() => ws.extensions);
  if (!extensions.startsWith("permessage-deflate")) fail(`no compression negotiated: "${extensions}"`);

  await alice.fill("#text", "hello from alice, ünïcödé ✓");
  await alice.click("#send-button");
  await bob.waitForFunction(
    () => [...document.querySelectorAll("#log p")]
      .some((p) => p.textContent === "alice: hello from alice, ünïcödé ✓"),
  );
  // The sender sees its own message too (fan-out to the whole room).
  await alice.waitForFunction(
    () => [...document.querySelectorAll("#log p")].some((p) => p.textContent.startsWith("alice: hello")),
  );

  // Another room hears nothing: carol sends and waits for her own echo, by which time
  // alice's message would have reached her if rooms leaked.
  await carol.fill("#text", "anyone?");
  await carol.click("#send-button");
  await carol.waitForFunction(
    () => [...document.querySelectorAll("#log p")].some((p) => p.textContent === "carol: anyone?"),
  );
  const leaked = await carol.evaluate(
    () => [...document.querySelectorAll("#log p")].some((p) => p.textContent.startsWith("alice:")),
  );
  if (leaked) fail("a message crossed rooms");

  await bob.screenshot({ path: screenshot });
  console.log(`browser: chat ok (extensions: ${extensions}); screenshot ${screenshot}`);
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
