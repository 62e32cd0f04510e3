// Node ws with the usual broadcast loop: clients.forEach(send). Usage: node ws_server.mjs PORT
import { WebSocketServer } from "ws";

const port = Number(process.argv[2]);
const wss = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false, maxPayload: 16 << 20 });
const subscribers = new Set();
wss.on("connection", (ws, req) => {
  if (!req.url.startsWith("/pub")) {
    subscribers.add(ws);
    ws.on("close", () => subscribers.delete(ws));
  }
  ws.on("message", (data, isBinary) => {
    subscribers.forEach((client) => client.send(data, { binary: isBinary }));
  });
});
wss.on("listening", () => console.log(`node ws on ${port}`));
