// Socket.IO 4.8, websocket transport only: role=pub connections do not join the room; every
// "m" event is emitted to the room. Usage: node socketio_server.mjs PORT
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2]);
const http = createServer();
const io = new Server(http, { transports: ["websocket"], perMessageDeflate: false, serveClient: false, maxHttpBufferSize: 16 << 20 });
io.on("connection", (socket) => {
  if (socket.handshake.query.role !== "pub") socket.join("bench");
  socket.on("m", (data) => io.to("bench").emit("m", data));
});
http.listen(port, "127.0.0.1", () => console.log(`socket.io on ${port}`));
