// The chat demo on two nodes sharing one Redis, in a real browser (Debian's chromium driven
// by playwright-core). A page on node A and a page on node B join one room and see each
// other's messages and presence. Then node B is stopped (Ctrl-C: its pages get 1001) and
// started again on the same port while the page on A keeps sending: the page on B reconnects
// by itself (with backoff) and, through recovery (`?since=`), shows every message it missed,
// in order, without duplicates.
// Usage: node cluster.test.mjs CHAT_BINARY REDIS_URL PORT_A PORT_B SCREENSHOT.png
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { connect } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [binary, redis, portA, portB, screenshot] = process.argv.slice(2);
if (!screenshot) {
  console.error("usage: node cluster.test.mjs CHAT_BINARY REDIS_URL PORT_A PORT_B SCREENSHOT");
  process.exit(2);
}
const TIMEOUT = 30_000;
const MISSED = 20;

function fail(message) {
  throw new Error(message);
}

const nodes = new Set();
// A chat node on `port`, started and waited for (it prints its address once it listens).
function startNode(port) {
  const child = spawn(binary, ["--addr", `127.0.0.1:${port}`, "--redis", redis], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  nodes.add(child);
  child.on("exit", () => nodes.delete(child));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node on ${port} did not start`)), 10_000);
    child.stdout.on("data", (data) => {
      if (data.toString().includes("chat: open")) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once("exit", (code) => reject(new Error(`node on ${port} exited with ${code}`)));
  });
}

async function stopNode(child) {
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGINT");
  await exited;
}

// Waits until nothing listens on `port` any more.
async function portClosed(port) {
  for (let i = 0; i < 200; i++) {
    const open = await new Promise((resolve) => {
      const socket = connect(Number(port), "127.0.0.1");
      socket.once("connect", () => { socket.destroy(); resolve(true); });
      socket.once("error", () => resolve(false));
    });
    if (!open) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  fail(`port ${port} still open`);
}

const userDataDir = mkdtempSync(join(tmpdir(), "socketry-chromium-cluster-"));
let context;
try {
  await startNode(portA);
  let nodeB = await startNode(portB);
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    timeout: 30_000,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  async function joinRoom(port, name) {
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.fill("#name", name);
    await page.fill("#room", "cluster");
    await page.click("#join-button");
    await page.waitForSelector("#send:not([hidden])");
    return page;
  }
  const texts = (page) => page.evaluate(
    () => [...document.querySelectorAll("#log p")].map((p) => p.textContent),
  );
  const alice = await joinRoom(portA, "alice");
  const bob = await joinRoom(portB, "bob");

  // Presence across nodes: each page lists both users.
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => /alice/.test(document.getElementById("presence").textContent) &&
      /bob/.test(document.getElementById("presence").textContent));
  }
  // Messages across nodes, both ways.
  await alice.fill("#text", "hello from A");
  await alice.click("#send-button");
  await bob.waitForFunction(() => [...document.querySelectorAll("#log p")].some((p) => p.textContent === "alice: hello from A"));
  await bob.fill("#text", "hello from B");
  await bob.click("#send-button");
  await alice.waitForFunction(() => [...document.querySelectorAll("#log p")].some((p) => p.textContent === "bob: hello from B"));

  // Node B goes away; its page sees the close and starts reconnecting.
  await stopNode(nodeB);
  await portClosed(portB);
  await bob.waitForFunction(() => [...document.querySelectorAll("#log p")].some((p) => p.textContent.startsWith("disconnected (1001")));
  // Bob leaves alice's presence list (node B said goodbye on its way out).
  await alice.waitForFunction(() => !/bob/.test(document.getElementById("presence").textContent));
  // Alice keeps publishing while B is down.
  for (let i = 0; i < MISSED; i++) {
    await alice.fill("#text", `missed ${i}`);
    await alice.click("#send-button");
  }
  await alice.waitForFunction((n) => [...document.querySelectorAll("#log p")].filter((p) => p.textContent.startsWith("alice: missed ")).length === n, MISSED);
  // B comes back on the same port; the page reconnects by itself and recovers.
  nodeB = await startNode(portB);
  await bob.waitForFunction(() => [...document.querySelectorAll("#log p")].some((p) => p.textContent.startsWith("reconnected to cluster")));
  await bob.waitForFunction((n) => [...document.querySelectorAll("#log p")].some((p) => p.textContent === `recovered ${n} missed messages`), MISSED);
  const log = await texts(bob);
  const missed = log.filter((t) => t.startsWith("alice: missed "));
  const expected = [...Array(MISSED).keys()].map((i) => `alice: missed ${i}`);
  if (JSON.stringify(missed) !== JSON.stringify(expected)) fail(`bob's page shows ${JSON.stringify(missed)}`);
  if (log.filter((t) => t === "alice: hello from A").length !== 1) fail("a message shown twice");
  // And the two chat on: presence is whole again, messages cross.
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => /alice/.test(document.getElementById("presence").textContent) &&
      /bob/.test(document.getElementById("presence").textContent));
  }
  await bob.fill("#text", "back on B");
  await bob.click("#send-button");
  await alice.waitForFunction(() => [...document.querySelectorAll("#log p")].some((p) => p.textContent === "bob: back on B"));
  await bob.screenshot({ path: screenshot });
  console.log(`browser: two-node chat ok (B restarted; ${MISSED} missed messages recovered in order); screenshot ${screenshot}`);
} finally {
  if (context) await context.close();
  for (const child of nodes) child.kill("SIGKILL");
  rmSync(userDataDir, { recursive: true, force: true });
}
