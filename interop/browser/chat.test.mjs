// The chat demo in a real browser: Debian's chromium driven by playwright-core.
// Two pages join one room, one sends a message, the other must show it; a third page in
// another room must not. A raw socket that joins and never reads (a stalled tab) is
// disconnected as slow while the two pages keep chatting. Usage: node chat.test.mjs http://127.0.0.1:PORT/ SCREENSHOT.png
import { chromium } from "playwright-core";
import { connect } from "node:net";
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

  // A stalled client: a raw socket joins "rust", reads the 101, and never reads again.
  const { hostname, port } = new URL(url);
  const stalled = connect(Number(port), hostname);
  const head = await new Promise((resolve, reject) => {
    stalled.once("error", reject);
    stalled.once("data", (data) => resolve(data.toString("latin1")));
    stalled.write(
      `GET /ws?name=stalled&room=rust HTTP/1.1\r\nHost: ${hostname}:${port}\r\n` +
        "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
  });
  stalled.pause();
  if (!head.startsWith("HTTP/1.1 101")) fail(`stalled client: no upgrade: ${head.slice(0, 40)}`);
  const present = (who) => new RegExp(who).test(document.getElementById("presence").textContent);
  for (const page of [alice, bob]) await page.waitForFunction(present, "stalled");

  // alice sends 12 MB to the room (200 messages of 60,000 characters), five at a time as
  // her echoes come back (a burst past her own 1 MiB queue would make her slow too): far
  // past the stalled client's queue bound plus what its sockets buffer.
  const echoes = () => [...document.querySelectorAll("#log p")].filter((p) => p.textContent.startsWith("alice: yyy")).length;
  for (let sent = 5; sent <= 200; sent += 5) {
    await alice.evaluate(() => {
      const text = "y".repeat(60_000);
      for (let i = 0; i < 5; i++) ws.send(text);
    });
    await alice.waitForFunction((n) => [...document.querySelectorAll("#log p")].filter((p) => p.textContent.startsWith("alice: yyy")).length >= n, sent);
  }
  // The stalled client is disconnected and leaves both pages' presence lists...
  for (const page of [alice, bob]) {
    await page.waitForFunction((who) => !new RegExp(who).test(document.getElementById("presence").textContent), "stalled");
  }
  // ...while the pages got all of alice's messages and keep chatting.
  for (const page of [alice, bob]) {
    await page.waitForFunction(
      () => [...document.querySelectorAll("#log p")].filter((p) => p.textContent.startsWith("alice: yyy")).length === 200,
    );
    if ((await page.evaluate(echoes)) !== 200) fail("a healthy page missed messages");
  }
  await bob.fill("#text", "still here");
  await bob.click("#send-button");
  await alice.waitForFunction(
    () => [...document.querySelectorAll("#log p")].some((p) => p.textContent === "bob: still here"),
  );
  stalled.destroy();

  await bob.screenshot({ path: screenshot });
  console.log(`browser: chat ok (extensions: ${extensions}; stalled client disconnected); screenshot ${screenshot}`);
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
