// The chat demo over https:// with HTTP/2 in a real browser (Debian's chromium, driven by
// playwright-core): the page loads over h2, its WebSocket goes over the same connection as an
// RFC 8441 extended CONNECT, and two pages chat through it. What the server saw is asserted
// from its own request log (`--log-requests`): the page's GET / and the socket's CONNECT /ws,
// both HTTP/2, from the same peer address (one TCP connection).
// Usage: node http2.test.mjs https://localhost:PORT/ SERVER_LOG SPKI_HASH SCREENSHOT.png
import { chromium } from "playwright-core";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, serverLog, spki, screenshot] = process.argv.slice(2);
if (!url || !serverLog || !spki || !screenshot) {
  console.error("usage: node http2.test.mjs URL SERVER_LOG SPKI_HASH SCREENSHOT");
  process.exit(2);
}
const TIMEOUT = 10_000;
const userDataDir = mkdtempSync(join(tmpdir(), "socketry-chromium-h2-"));

function fail(message) {
  throw new Error(message);
}

// The lines `request METHOD PATH VERSION peer=ADDR` the server printed so far.
function requests() {
  return readFileSync(serverLog, "utf8")
    .split("\n")
    .map((line) => line.match(/^request (\S+) (\S+) (\S+) peer=(\S+)$/))
    .filter(Boolean)
    .map(([, method, path, version, peer]) => ({ method, path, version, peer }));
}

async function joinRoom(context, name, room) {
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const response = await page.goto(url);
  const protocol = await page.evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);
  if (protocol !== "h2") fail(`the page loaded over ${protocol}, not h2`);
  if (!response.ok()) fail(`the page answered ${response.status()}`);
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
    // Trust the test's self-signed certificate (by its key) as if a CA had signed it.
    `--ignore-certificate-errors-spki-list=${spki}`,
  ],
});
try {
  const alice = await joinRoom(context, "alice", "h2");
  const bob = await joinRoom(context, "bob", "h2");
  await alice.fill("#text", "hello over one connection");
  await alice.click("#send-button");
  for (const page of [alice, bob]) {
    await page.waitForFunction(
      () => [...document.querySelectorAll("#log p")].some((p) => p.textContent === "alice: hello over one connection"),
    );
  }

  // From the server's side: each WebSocket came as an HTTP/2 extended CONNECT, on the
  // connection that served a page.
  const seen = requests();
  const pages = seen.filter((r) => r.method === "GET" && r.path === "/");
  const sockets = seen.filter((r) => r.path === "/ws");
  if (sockets.length < 2) fail(`the server saw ${sockets.length} websocket requests: ${JSON.stringify(seen)}`);
  for (const socket of sockets) {
    if (socket.method !== "CONNECT" || socket.version !== "HTTP/2.0") {
      fail(`a websocket came as ${socket.method} ${socket.version}, not an HTTP/2 CONNECT`);
    }
    if (!pages.some((page) => page.peer === socket.peer && page.version === "HTTP/2.0")) {
      fail(`the websocket from ${socket.peer} is not on a page's connection: ${JSON.stringify(seen)}`);
    }
  }
  await bob.screenshot({ path: screenshot });
  console.log(`browser: chat over HTTP/2 ok (${sockets.length} sockets as extended CONNECT on the pages' connection); screenshot ${screenshot}`);
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
