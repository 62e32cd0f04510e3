// Node's ws as an echo server: node echo_server.mjs PORT [--deflate]
// Echoes every message; the text "__extensions__" is answered with the negotiated extension.
// With --deflate, permessage-deflate at zlib level 1 (as socketry's default) for every
// message (threshold 0), so that the benchmark compares like with like.
import { WebSocketServer } from "ws";

const port = Number(process.argv[2] || 9400);
const deflate = process.argv.includes("--deflate");
const server = new WebSocketServer({
  host: "127.0.0.1",
  port,
  maxPayload: 64 * 1024 * 1024,
  perMessageDeflate: deflate ? { zlibDeflateOptions: { level: 1 }, threshold: 0 } : false,
});
server.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => {
    // "__extensions__" asks what was negotiated (the interop script checks it).
    if (!isBinary && data.length === 14 && data.toString() === "__extensions__") {
      ws.send(ws.extensions ? ws.extensions.split(";")[0] : "none");
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
  ws.on("error", () => {});
});
server.on("listening", () => console.error(`node ws echo on ${port} (deflate: ${deflate})`));
