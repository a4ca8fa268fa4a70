"""RFC 6455 websocket framing and one client connection, for the simulated exchange.

The stack has no websocket server library (websocket-client is client-only), so the
simulator speaks the protocol itself: unmasked server frames, masked client frames, text,
ping/pong and close. Enough for every venue dialect; nothing venue-specific lives here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import struct

log = logging.getLogger(__name__)

OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest()).decode()


def ws_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


async def read_ws_frame(reader: asyncio.StreamReader, max_bytes: int = 1 << 20) -> tuple[int, bytes]:
    b1, b2 = await reader.readexactly(2)
    opcode, masked, n = b1 & 0x0F, b2 & 0x80, b2 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    if n > max_bytes:
        raise ConnectionError(f"client frame of {n} bytes > {max_bytes}")
    mask = await reader.readexactly(4) if masked else b""
    data = await reader.readexactly(n)
    if mask:
        m = int.from_bytes((mask * (n // 4 + 1))[:n], "big") if n else 0
        data = (int.from_bytes(data, "big") ^ m).to_bytes(n, "big") if n else b""
    return opcode, data


class Conn:
    """One websocket client: what it subscribed to (``streams``: the dialect's routing
    keys), when it last showed life, and a bounded send (a slow client is aborted)."""

    def __init__(self, writer: asyncio.StreamWriter, streams: set[str], opened: float):
        self.writer = writer
        self.streams = streams
        self.opened = opened
        self.last_pong = opened  # last ws pong, or (app-ping dialects) last client message
        self.closed = False
        self.id = f"{id(self):x}"  # a connection id for dialects that report one (Bybit conn_id)

    def send(self, opcode: int, payload: bytes, limit: int) -> bool:
        if self.closed:
            return False
        t = self.writer.transport
        if t.is_closing():
            self.closed = True
            return False
        if t.get_write_buffer_size() > limit:
            log.warning("simulator: aborting a slow client (%d bytes unsent)", t.get_write_buffer_size())
            self.abort()
            return False
        self.writer.write(ws_frame(opcode, payload))
        return True

    def abort(self) -> None:
        self.closed = True
        self.writer.transport.abort()
