// Bun's built-in pub/sub (uWebSockets' TopicTree): /sub subscribes to the topic, /pub does
// not; every message is published to every subscriber. Usage: bun bun_server.js PORT
const port = Number(process.argv[2]);
const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(req, server) {
    const sub = new URL(req.url).pathname !== "/pub";
    if (server.upgrade(req, { data: { sub } })) return;
    return new Response("websocket only", { status: 426 });
  },
  websocket: {
    perMessageDeflate: false,
    maxPayloadLength: 16 * 1024 * 1024,
    open(ws) {
      if (ws.data.sub) ws.subscribe("bench");
    },
    message(_ws, message) {
      server.publish("bench", message);
    },
  },
});
console.log(`bun pub/sub on ${server.port}`);
