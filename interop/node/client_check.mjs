// Node's ws as a client of a socketry echo server: node client_check.mjs URL (deflate|none)
// Checks text and binary at the length boundaries up to 16 MiB, a fragmented message,
// ping/pong, that compression was (or was not) negotiated, and the close code echoed back.
import WebSocket from "ws";

const [url, mode] = process.argv.slice(2);
const deflate = mode === "deflate";
const SIZES = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20, 16 << 20];

function textOf(n) {
  // "aé€" is 6 bytes of UTF-8; cut on a character boundary at or below n bytes.
  const s = "aé€".repeat(Math.ceil(n / 6) + 1);
  let out = Buffer.from(s).subarray(0, n).toString("utf8");
  while (Buffer.byteLength(out) > n || out.endsWith("\uFFFD")) out = out.slice(0, -1);
  return out;
}

function fail(message) {
  console.error(`node client vs socketry server (${mode}): ${message}`);
  process.exit(1);
}

const timer = setTimeout(() => fail("timed out"), 60_000);
const ws = new WebSocket(url, { perMessageDeflate: deflate, maxPayload: 64 << 20 });
const queue = [];
let waiting = null;
ws.on("message", (data, isBinary) => {
  const item = { data, isBinary };
  if (waiting) { const w = waiting; waiting = null; w(item); } else queue.push(item);
});
const next = () => new Promise((resolve) => {
  if (queue.length) resolve(queue.shift()); else waiting = resolve;
});
ws.on("error", (err) => fail(`error: ${err.message}`));

ws.on("open", async () => {
  const negotiated = ws.extensions;
  if (deflate !== negotiated.startsWith("permessage-deflate")) {
    fail(`extensions "${negotiated}" with compression ${mode}`);
  }
  // ws offers client_max_window_bits: socketry's server limits the client's window to 12 bits.
  // (ws keeps the accepted parameters on its extension object; `extensions` is only names.)
  const bits = deflate && ws._extensions["permessage-deflate"]?.params?.client_max_window_bits;
  if (deflate && bits !== 12) {
    fail(`the client's window is ${bits}, expected 12 bits`);
  }
  // A repeat 6,000 bytes back, out of a 12-bit window's reach: a client that ignored the
  // limit would send a distance the server refuses.
  const block = (await import("node:crypto")).randomBytes(6000);
  const far = Buffer.concat([block, block, block]);
  ws.send(far);
  const r = await next();
  if (!r.isBinary || !r.data.equals(far)) fail("far repeat");
  for (const n of SIZES) {
    const text = textOf(n);
    ws.send(text);
    const t = await next();
    if (t.isBinary || t.data.toString("utf8") !== text) fail(`text ${n}`);
    const bin = Buffer.alloc(n, 0).map((_, i) => i % 251);
    ws.send(bin);
    const b = await next();
    if (!b.isBinary || !b.data.equals(bin)) fail(`binary ${n}`);
  }
  ws.send("frag", { fin: false });
  ws.send("mented ", { fin: false });
  ws.send("ünïcode", { fin: true });
  const f = await next();
  if (f.data.toString("utf8") !== "fragmented ünïcode") fail(`fragmented: ${f.data}`);
  const pong = new Promise((resolve) => ws.once("pong", resolve));
  ws.ping("are you there");
  const payload = await pong;
  if (payload.toString() !== "are you there") fail("pong payload");
  ws.on("close", (code) => {
    clearTimeout(timer);
    if (code !== 4000) fail(`close code ${code}`);
    console.log(`node client vs socketry server (${mode}): ok`);
  });
  ws.close(4000, "done");
});
