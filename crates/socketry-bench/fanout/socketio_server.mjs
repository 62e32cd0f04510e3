// Socket.IO 4.8, websocket transport only: role=pub connections do not join the room; every
// "m" event is emitted to the room. With a Redis URL, @socket.io/redis-adapter 8.3 carries the
// room between processes (the cross-node benchmark).
// Usage: node socketio_server.mjs PORT [REDIS_URL]
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2]);
const redisUrl = process.argv[3];
const http = createServer();
const io = new Server(http, { transports: ["websocket"], perMessageDeflate: false, serveClient: false, maxHttpBufferSize: 16 << 20 });
if (redisUrl) {
  const { createClient } = await import("redis");
  const { createAdapter } = await import("@socket.io/redis-adapter");
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
}
io.on("connection", (socket) => {
  if (socket.handshake.query.role !== "pub") socket.join("bench");
  socket.on("m", (data) => io.to("bench").emit("m", data));
});
http.listen(port, "127.0.0.1", () => console.log(`socket.io on ${port}`));
