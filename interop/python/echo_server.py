"""Python `websockets` echo server for interop tests: echoes every message; the text
"__extensions__" is answered with the negotiated extensions (or "none").

    python echo_server.py PORT
"""
import asyncio
import sys

from websockets.asyncio.server import serve


async def handler(ws):
    async for message in ws:
        if message == "__extensions__":
            names = [e.name for e in ws.protocol.extensions]
            await ws.send(",".join(names) or "none")
        else:
            await ws.send(message)


async def main(port):
    async with serve(handler, "127.0.0.1", port, compression="deflate", max_size=None):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
