"""Python `websockets` as a client of a socketry echo server.

    python client_check.py URL (deflate|none)

Checks: text and binary at the length boundaries up to 16 MiB, a fragmented message, ping/pong,
that compression was (or was not) negotiated, and the close code echoed back. Exits non-zero on
the first mismatch.
"""
import asyncio
import os
import sys

from websockets.asyncio.client import connect

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20, 16 << 20]


def text_of(n):
    return ("aé€" * (n // 6 + 1)).encode()[:n].decode("utf-8", "ignore")


async def main(url, compression):
    comp = "deflate" if compression == "deflate" else None
    async with connect(url, compression=comp, max_size=None) as ws:
        names = [e.name for e in ws.protocol.extensions]
        expected = ["permessage-deflate"] if comp else []
        assert names == expected, f"extensions {names}, expected {expected}"
        if comp:
            # socketry's server limits the client's window to 12 bits where the offer allows it
            # (websockets offers client_max_window_bits).
            bits = ws.protocol.extensions[0].local_max_window_bits
            assert bits == 12, f"client window {bits} bits, expected 12"
        # A repeat 6,000 bytes back: out of a 12-bit window's reach, so a client that ignored
        # the limit would send a distance the server refuses.
        far = os.urandom(6000) * 3
        await ws.send(far)
        assert await ws.recv() == far, "far repeat"
        for n in SIZES:
            text = text_of(n)
            await ws.send(text)
            assert await ws.recv() == text, f"text {n}"
            data = bytes(i % 251 for i in range(n))
            await ws.send(data)
            assert await ws.recv() == data, f"binary {n}"
        await ws.send(["frag", "mented ", "ünïcode"])
        assert await ws.recv() == "fragmented ünïcode", "fragmented"
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)
        await ws.close(code=4000, reason="done")
        assert ws.protocol.close_rcvd is not None, "no close frame from the server"
        assert ws.protocol.close_rcvd.code == 4000, f"close code {ws.protocol.close_rcvd.code}"
    print(f"python client vs socketry server ({compression}): ok")


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), 60))
