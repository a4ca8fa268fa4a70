"""The offline exchange: Binance's wire protocol, served on 127.0.0.1.

One listening port per market (like Binance's hosts), each serving, on one port::

    GET /stream?streams=btcusdt@trade/btcusdt@depth@100ms/...   websocket (RFC 6455)
        -> text frames {"stream": "btcusdt@trade", "data": {...}}; {"method": "SUBSCRIBE"|
           "UNSUBSCRIBE", "params": [...], "id": n} on the socket -> {"result": null, "id": n}
    GET /api/v3/depth?symbol=BTCUSDT&limit=1000    spot snapshot   {"lastUpdateId", "bids", "asks"}
    GET /fapi/v1/depth | /dapi/v1/depth            futures snapshot (+ "E", "T"; COIN-M "symbol", "pair")
    GET /api/v3/ping | /fapi/v1/ping | /dapi/v1/ping   {}

The websocket server is a minimal RFC 6455 implementation on asyncio (the stack has no
server library; websocket-client is client-only): handshake, unmasked server frames,
masked client frames, ping/pong, close. It pings every ``ping_interval_s`` and drops a
client whose pong is older than ``pong_timeout_s``, closes connections older than
``max_connection_age_s`` (Binance: 24 h) and aborts a client whose unsent backlog passes
``max_backlog_bytes`` (a slow consumer), as Binance does.

Two sources of frames:

``GeneratedMarket`` (default): a seeded random walk per symbol, stepped every ``tick_ms``
of simulated time, simulated time running ``speed`` times the wall clock from ``start_ms``.
Each step: a depth diff (1..3 update ids, ``U``/``u``, ``pu`` on futures = previous ``u``),
Poisson(``trades_per_tick``) trades with contiguous ids at the touch, a bookTicker
(``u`` = book update id), on futures a markPrice every 1000 ms (mark, index, predicted
``r``, next 8-hourly ``T``) and a forceOrder with probability ``liquidation_prob``. Trades
do not move the book (documented simplification). The frames are a pure function of
(config, step), so two runs with the same seed and ``start_ms`` send identical bytes;
generation stops after ``max_seconds`` of simulated time (bounded).

``ReplayMarket``: frames read from a recorded capture (``collectors.capture``), sent at
their recorded pace times ``speed`` (a huge ``speed`` = as fast as the loop goes); the REST snapshot served is
the latest recorded one at or before the replay position.

Misbehaviour on request (thread-safe, each applies to the given market or all):
``drop()`` aborts the TCP connections, ``skip_sequence(symbol)`` applies the next depth
update to the book without sending it, ``malformed(n)`` sends the next ``n`` frames cut
in half, ``stall(seconds)`` sends no data frames (pings still flow). The counters in
``sent`` record what each symbol's clients were actually sent intact (tests check the
store against them).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import hashlib
import logging
import math
import random
import re
import struct
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson

from .capture import CaptureReader, FrameKind
from .exchanges.binance import Endpoints, Market, from_tickstore, native_symbol_of_url, to_tickstore
from .replay import _file_market

__all__ = ["SimulatorConfig", "Simulator", "GeneratedMarket", "ReplayMarket", "SentLog"]

log = logging.getLogger(__name__)

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_DEPTH_PATH = {Market.SPOT: "/api/v3/depth", Market.USDM: "/fapi/v1/depth", Market.COINM: "/dapi/v1/depth"}
_PING_PATH = {Market.SPOT: "/api/v3/ping", Market.USDM: "/fapi/v1/ping", Market.COINM: "/dapi/v1/ping"}
_FUNDING_MS = 8 * 3600 * 1000
_DIFF_STREAM = re.compile(r"^[a-z0-9_]+@depth(@\d+ms)?$")
# (price, tick size) a symbol starts from, by base asset; others start at 100.
_START = {"BTC": (60_000.0, 0.1), "ETH": (3_000.0, 0.01), "SOL": (150.0, 0.01), "BNB": (550.0, 0.01)}


@dataclass(frozen=True)
class SimulatorConfig:
    """What the simulated exchange serves.

    ``symbols`` are tickstore symbols (``binance:BTC/USDT`` spot, ``binance:BTC/USDT:USDT``
    USD-M, ``binance:BTC/USD:BTC`` COIN-M); one port is opened per market they span.
    ``start_ms=None`` starts simulated time at the wall clock (so exchange-to-receive
    latency is meaningful); pass a fixed value for byte-identical runs.
    """

    symbols: tuple[str, ...] = ("binance:BTC/USDT", "binance:BTC/USDT:USDT")
    seed: int = 0
    tick_ms: int = 100
    speed: float = 1.0
    start_ms: int | None = None
    max_seconds: float = 3600.0
    trades_per_tick: float = 2.0
    liquidation_prob: float = 0.01
    book_levels: int = 100
    ping_interval_s: float = 20.0
    pong_timeout_s: float = 60.0
    max_connection_age_s: float = 24 * 3600.0
    max_backlog_bytes: int = 32 << 20
    host: str = "127.0.0.1"
    replay: tuple[str, ...] = ()
    replay_market: Market | None = None

    def __post_init__(self):
        if isinstance(self.replay, str):
            raise ValueError(f"simulator replay must be a tuple of capture paths, got the string {self.replay!r}")
        if isinstance(self.symbols, str) or not self.symbols:
            raise ValueError(f"simulator symbols must be a non-empty tuple of tickstore symbols, got {self.symbols!r}")
        for s in self.symbols:
            from_tickstore(s)  # raises UnknownSymbol with the value
        if self.tick_ms <= 0 or self.speed <= 0 or self.max_seconds <= 0:
            raise ValueError(
                f"simulator needs tick_ms, speed, max_seconds > 0; got tick_ms={self.tick_ms} "
                f"speed={self.speed} max_seconds={self.max_seconds}"
            )
        if self.trades_per_tick < 0 or not 0 <= self.liquidation_prob <= 1 or self.book_levels < 5:
            raise ValueError(
                f"simulator needs trades_per_tick >= 0, 0 <= liquidation_prob <= 1, book_levels >= 5; got "
                f"{self.trades_per_tick}, {self.liquidation_prob}, {self.book_levels}"
            )
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the simulator only listens on loopback, got host={self.host!r}")

    @property
    def markets(self) -> tuple[Market, ...]:
        """Generated mode: the markets of ``symbols`` (replay mode decides per file)."""
        seen = []
        for s in self.symbols:
            m = from_tickstore(s)[1]
            if m not in seen:
                seen.append(m)
        return tuple(seen)


@dataclass
class SentLog:
    """What the simulator put on the wire, per tickstore symbol (read after ``stop``)."""

    trade_ids: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    frames: int = 0
    malformed: int = 0
    skipped_updates: int = 0
    drops: int = 0
    connections: int = 0
    snapshots: int = 0


# -- the generated market --------------------------------------------------------------------
class _Book:
    """One symbol's simulated order book, in integer ticks."""

    def __init__(self, symbol: str, market: Market, rng: random.Random, levels: int):
        native, _ = from_tickstore(symbol)
        base = symbol.split(":")[1].split("/")[0]
        price, tick = _START.get(base, (100.0, 0.01))
        if market is Market.SPOT:
            tick = tick / 10  # spot trades finer than the perpetual
        self.symbol, self.market, self.native = symbol, market, native
        self.stream = native.lower()
        self.tick = tick
        self.decimals = max(0, -int(math.floor(math.log10(tick) + 1e-9)))
        self.qty_decimals = 3 if market is not Market.SPOT else 5
        self.levels = levels
        self.rng = rng
        self.mid = int(round(price / tick))
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        self.update_id = rng.randrange(10**9, 10**10)
        self.last_u = self.update_id
        self.trade_id = rng.randrange(10**8, 10**9)
        self.funding = 0.0001
        self.set_levels()

    def px(self, ticks: int) -> str:
        return f"{ticks * self.tick:.{self.decimals}f}"

    def qty(self) -> float:
        return round(self.rng.lognormvariate(-1.0, 1.0), self.qty_decimals) or 10**-self.qty_decimals

    def q(self, qty: float) -> str:
        return f"{qty:.{self.qty_decimals}f}"

    def set_levels(self) -> tuple[list, list]:
        """Bring the book to ``levels`` levels a side around ``mid``; return the changes."""
        want_b = set(range(self.mid - self.levels, self.mid))
        want_a = set(range(self.mid + 1, self.mid + 1 + self.levels))
        changes_b, changes_a = [], []
        for side, want, changes in ((self.bids, want_b, changes_b), (self.asks, want_a, changes_a)):
            for p in sorted(set(side) - want):
                del side[p]
                changes.append((p, 0.0))
            for p in sorted(want - set(side)):
                side[p] = self.qty()
                changes.append((p, side[p]))
        return changes_b, changes_a

    def step(self) -> tuple[list, list]:
        """Random-walk the mid and touch a few levels; returns the (bids, asks) changes."""
        self.mid += self.rng.choice((-1, 0, 0, 1))
        bids, asks = self.set_levels()
        for _ in range(self.rng.randint(1, 3)):
            side, changes = (self.bids, bids) if self.rng.random() < 0.5 else (self.asks, asks)
            p = self.rng.choice(list(side)[:10]) if len(side) > 10 else next(iter(side))
            side[p] = self.qty()
            changes.append((p, side[p]))
        return bids, asks

    def best(self) -> tuple[int, float, int, float]:
        b = max(self.bids)
        a = min(self.asks)
        return b, self.bids[b], a, self.asks[a]

    def snapshot(self, limit: int, now_ms: int) -> dict:
        bids = sorted(self.bids.items(), reverse=True)[:limit]
        asks = sorted(self.asks.items())[:limit]
        body = {"lastUpdateId": self.update_id}
        if self.market is not Market.SPOT:
            body["E"] = now_ms
            body["T"] = now_ms
        if self.market is Market.COINM:
            body["symbol"] = self.native
            body["pair"] = self.native.split("_")[0]
        body["bids"] = [[self.px(p), self.q(q)] for p, q in bids]
        body["asks"] = [[self.px(p), self.q(q)] for p, q in asks]
        return body


@dataclass
class _Frame:
    stream: str  # full stream name, e.g. btcusdt@depth@100ms
    symbol: str
    payload: bytes
    trade_id: int | None = None
    depth: bool = False


class GeneratedMarket:
    """The deterministic generated feed of one market: ``step(i)`` -> frames of step ``i``."""

    def __init__(self, config: SimulatorConfig, market: Market, start_ms: int):
        self.config = config
        self.market = market
        self.start_ms = start_ms
        rng = random.Random(f"{config.seed}:{market.value}")
        self.books = {
            s: _Book(s, market, random.Random(f"{config.seed}:{s}"), config.book_levels)
            for s in config.symbols
            if from_tickstore(s)[1] is market
        }
        self.by_native = {b.native: b for b in self.books.values()}
        self.rng = rng
        self.skip: set[str] = set()  # symbols whose next diff is withheld
        self.max_steps = int(config.max_seconds * 1000 / config.tick_ms)

    def step(self, i: int) -> list[_Frame]:
        cfg, fut = self.config, self.market is not Market.SPOT
        now = self.start_ms + i * cfg.tick_ms
        out: list[_Frame] = []
        for sym, b in self.books.items():
            rng = b.rng
            bids, asks = b.step()
            k = len(bids) + len(asks)
            first, b.update_id = b.update_id + 1, b.update_id + k
            diff = {"e": "depthUpdate", "E": now}
            if fut:
                diff["T"] = now
            diff.update({"s": b.native, "U": first, "u": b.update_id})
            if fut:
                diff["pu"] = b.last_u
            if self.market is Market.COINM:
                diff["ps"] = b.native.split("_")[0]
            diff["b"] = [[b.px(p), b.q(q)] for p, q in bids]
            diff["a"] = [[b.px(p), b.q(q)] for p, q in asks]
            b.last_u = b.update_id
            if sym in self.skip:
                self.skip.discard(sym)
                out.append(_Frame("", sym, b"", depth=True))  # withheld: the book moved, nobody hears it
            else:
                for name in (f"{b.stream}@depth@100ms", f"{b.stream}@depth@0ms", f"{b.stream}@depth"):
                    out.append(_Frame(name, sym, _wrap(name, diff), depth=True))
            bt, bq, at, aq = b.best()
            for _ in range(_poisson(rng, cfg.trades_per_tick)):
                b.trade_id += 1
                buyer = rng.random() < 0.5
                t = {"e": "trade", "E": now, "T": now} if fut else {"e": "trade", "E": now}
                t.update({"s": b.native, "t": b.trade_id, "p": b.px(at if buyer else bt), "q": b.q(b.qty())})
                if fut:
                    t.update({"X": "MARKET", "m": not buyer})
                else:
                    t.update({"T": now, "m": not buyer, "M": True})
                name = f"{b.stream}@trade"
                out.append(_Frame(name, sym, _wrap(name, t), trade_id=b.trade_id))
            q = {"e": "bookTicker", "u": b.update_id, "E": now, "T": now} if fut else {"u": b.update_id}
            q.update({"s": b.native, "b": b.px(bt), "B": b.q(bq), "a": b.px(at), "A": b.q(aq)})
            name = f"{b.stream}@bookTicker"
            out.append(_Frame(name, sym, _wrap(name, q)))
            if fut and now % 1000 < cfg.tick_ms:
                b.funding = min(0.0075, max(-0.0075, b.funding + rng.gauss(0, 0.00002)))
                mid = (bt + at) / 2 * b.tick
                nxt = (now // _FUNDING_MS + 1) * _FUNDING_MS
                m = {
                    "e": "markPriceUpdate", "E": now, "s": b.native,
                    "p": f"{mid * (1 + rng.gauss(0, 1e-5)):.8f}", "i": f"{mid:.8f}",
                    "P": f"{mid * (1 + rng.gauss(0, 2e-5)):.8f}", "r": f"{b.funding:.8f}", "T": nxt,
                }
                name = f"{b.stream}@markPrice@1s"
                out.append(_Frame(name, sym, _wrap(name, m)))
            if fut and rng.random() < cfg.liquidation_prob:
                sell = rng.random() < 0.5
                qty = b.q(b.qty())
                o = {
                    "s": b.native, "S": "SELL" if sell else "BUY", "o": "LIMIT", "f": "IOC", "q": qty,
                    "p": b.px(bt - 5 if sell else at + 5), "ap": b.px(bt if sell else at), "X": "FILLED",
                    "l": qty, "z": qty, "T": now,
                }
                name = f"{b.stream}@forceOrder"
                out.append(_Frame(name, sym, _wrap(name, {"e": "forceOrder", "E": now, "o": o})))
        return out

    def snapshot(self, native: str, limit: int, now_ms: int) -> dict | None:
        b = self.by_native.get(native)
        return None if b is None else b.snapshot(limit, now_ms)


def _wrap(stream: str, data: dict) -> bytes:
    return orjson.dumps({"stream": stream, "data": data})


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:  # normal approximation; Knuth's loop is O(lam)
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class ReplayMarket:
    """Recorded frames of one market, served at their recorded pace times ``speed``.

    The capture is read once at start (bounded by the files). Symbol-less REST snapshots
    (hftbacktest) belong to their file's depth stream, as in ``collectors.replay``. The
    feed starts when the first client subscribes, so a client sees the whole capture.
    """

    def __init__(self, config: SimulatorConfig, market: Market, paths: list[str]):
        self.config = config
        self.market = market
        self.skip: set[str] = set()
        self.frames: list[tuple[int, _Frame]] = []
        self.snapshots: dict[str, list[tuple[int, bytes]]] = defaultdict(list)  # native -> [(index, body)]
        for path in paths:
            self._load(path)
        self.frames.sort(key=lambda item: item[0])  # merge files by receive time (stable per file)
        snaps = [(i, native, body) for native, lst in self.snapshots.items() for i, body in lst]
        # snapshot positions are receive times until here; make them frame indexes
        recv = [r for r, _ in self.frames]
        self.snapshots = defaultdict(list)
        for r, native, body in sorted(snaps):
            self.snapshots[native].append((bisect.bisect_right(recv, r), body))
        self.position = 0  # index of the next frame to send

    def _load(self, path: str) -> None:
        depth_native, pending = None, []
        for f in CaptureReader(path):
            if f.kind is FrameKind.REST:
                if b"lastUpdateId" not in f.raw[:64]:
                    continue
                native = native_symbol_of_url(f.url) if f.url else None
                if native is None:
                    try:
                        native = orjson.loads(f.raw).get("symbol")
                    except orjson.JSONDecodeError:
                        continue
                if native is None and depth_native is None:
                    pending.append(f)
                else:
                    self.snapshots[native or depth_native].append((f.recv_ns, f.raw))
                continue
            if f.kind is not FrameKind.WS:
                continue
            try:
                msg = orjson.loads(f.raw)
                stream = msg["stream"]
                data = msg["data"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue  # not a combined-stream frame: nothing to route it by
            native = stream.partition("@")[0].upper()
            if "@depth" in stream:
                depth_native = native
                for p in pending:
                    self.snapshots[native].append((p.recv_ns, p.raw))
                pending.clear()
            try:
                symbol = to_tickstore(native, self.market)
            except ValueError:
                symbol = native
            trade_id = data.get("t") if isinstance(data, dict) and stream.endswith("@trade") else None
            if _DIFF_STREAM.match(stream):
                # a recorded depth@0ms feed also serves depth@100ms / depth subscribers
                base = stream.partition("@")[0]
                for name in (f"{base}@depth@100ms", f"{base}@depth@0ms", f"{base}@depth"):
                    self.frames.append((f.recv_ns, _Frame(name, symbol, f.raw, depth=True)))
            else:
                self.frames.append((f.recv_ns, _Frame(stream, symbol, f.raw, trade_id=trade_id)))

    def snapshot(self, native: str, limit: int, now_ms: int) -> dict | None:
        lst = self.snapshots.get(native)
        if not lst:
            return None
        # the latest recorded snapshot at or before the replay position, else the first
        body = lst[0][1]
        for i, b in lst:
            if i <= self.position:
                body = b
        d = orjson.loads(body)
        d["bids"], d["asks"] = d["bids"][:limit], d["asks"][:limit]
        return d

    def __len__(self) -> int:
        return len(self.frames)


# -- websocket framing (RFC 6455) ------------------------------------------------------------
_OP_TEXT, _OP_CLOSE, _OP_PING, _OP_PONG = 0x1, 0x8, 0x9, 0xA


def _ws_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


async def _read_ws_frame(reader: asyncio.StreamReader, max_bytes: int = 1 << 20) -> tuple[int, bytes]:
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


class _Conn:
    def __init__(self, writer: asyncio.StreamWriter, streams: set[str], opened: float):
        self.writer = writer
        self.streams = streams
        self.opened = opened
        self.last_pong = opened
        self.closed = False

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
        self.writer.write(_ws_frame(opcode, payload))
        return True

    def abort(self) -> None:
        self.closed = True
        self.writer.transport.abort()


class _MarketServer:
    """One market's port: websocket streams + REST snapshots."""

    def __init__(self, sim: "Simulator", market: Market, source):
        self.sim, self.market, self.source = sim, market, source
        self.conns: list[_Conn] = []
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self.malformed = 0
        self.stall_until = 0.0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, self.sim.config.host, 0, limit=1 << 20)
        self.port = self.server.sockets[0].getsockname()[1]

    def broadcast(self, frames: list[_Frame]) -> None:
        cfg, log_ = self.sim.config, self.sim.sent
        stalled = time.monotonic() < self.stall_until
        for f in frames:
            if not f.stream:
                log_.skipped_updates += 1
                continue
            if stalled:
                continue
            intact = False
            for c in self.conns:
                if f.stream not in c.streams:
                    continue
                if self.malformed > 0:
                    self.malformed -= 1
                    log_.malformed += 1
                    c.send(_OP_TEXT, f.payload[: len(f.payload) // 2], cfg.max_backlog_bytes)
                elif c.send(_OP_TEXT, f.payload, cfg.max_backlog_bytes):
                    intact = True
                    log_.frames += 1
            if intact and f.trade_id is not None:
                log_.trade_ids[f.symbol].append(f.trade_id)
        self.conns = [c for c in self.conns if not c.closed]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _ = lines[0].split(" ", 2)
        except ValueError:
            await self._http(writer, 400, {"code": -1100, "msg": f"bad request line {lines[0]!r}"})
            return
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if headers.get("upgrade", "").lower() == "websocket":
            await self._websocket(reader, writer, url.path, query, headers)
            return
        if method != "GET":
            await self._http(writer, 405, {"code": -1100, "msg": f"method {method} not allowed"})
        elif url.path == _DEPTH_PATH[self.market]:
            await self._depth(writer, query)
        elif url.path == _PING_PATH[self.market]:
            await self._http(writer, 200, {})
        else:
            await self._http(writer, 404, {"code": -1, "msg": f"no route {url.path} on the simulated {self.market.value} market"})

    async def _depth(self, writer, query) -> None:
        native = query.get("symbol", "").upper()
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            limit = -1
        if limit <= 0 or limit > 5000:
            await self._http(writer, 400, {"code": -1100, "msg": f"Illegal characters found in parameter 'limit'; legal range is '1..5000', got {query.get('limit')!r}."})
            return
        body = self.source.snapshot(native, limit, self.sim.now_ms())
        if body is None:
            await self._http(writer, 400, {"code": -1121, "msg": f"Invalid symbol {native!r}."})
            return
        self.sim.sent.snapshots += 1
        await self._http(writer, 200, body)

    async def _http(self, writer, status: int, body) -> None:
        data = orjson.dumps(body)
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}.get(status, "Error")
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            f"Connection: close\r\n\r\n".encode() + data
        )
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    async def _websocket(self, reader, writer, path, query, headers) -> None:
        key = headers.get("sec-websocket-key", "")
        if path.startswith("/ws/"):
            streams = set(path[4:].split("/"))
        elif path in ("/stream", "/ws"):
            streams = set(filter(None, query.get("streams", "").split("/")))
        else:
            await self._http(writer, 404, {"code": -1, "msg": f"no websocket route {path}"})
            return
        if not key:
            await self._http(writer, 400, {"code": -1, "msg": "missing Sec-WebSocket-Key"})
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest()).decode()
        writer.write(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        conn = _Conn(writer, streams, time.monotonic())
        self.conns.append(conn)
        self.sim.sent.connections += 1
        cfg = self.sim.config
        keepalive = asyncio.ensure_future(self._keepalive(conn))
        try:
            while not conn.closed:
                opcode, data = await _read_ws_frame(reader)
                if opcode == _OP_PING:
                    conn.send(_OP_PONG, data, cfg.max_backlog_bytes)
                elif opcode == _OP_PONG:
                    conn.last_pong = time.monotonic()
                elif opcode == _OP_CLOSE:
                    conn.send(_OP_CLOSE, data[:2], cfg.max_backlog_bytes)
                    break
                elif opcode == _OP_TEXT:
                    self._control(conn, data)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            keepalive.cancel()
            conn.closed = True
            try:
                writer.close()
            except RuntimeError:  # the loop is shutting down
                pass

    async def _keepalive(self, conn: _Conn) -> None:
        """Ping, and hang up on clients that stopped ponging or lived too long (as Binance)."""
        cfg = self.sim.config
        tick = min(cfg.ping_interval_s, cfg.pong_timeout_s, cfg.max_connection_age_s, 1.0)
        next_ping = conn.opened + cfg.ping_interval_s
        while not conn.closed:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if now - conn.last_pong > cfg.pong_timeout_s:
                conn.send(_OP_CLOSE, struct.pack("!H", 1008) + b"pong timeout", cfg.max_backlog_bytes)
                conn.abort()
            elif now - conn.opened > cfg.max_connection_age_s:
                conn.send(_OP_CLOSE, struct.pack("!H", 1000) + b"max connection age", cfg.max_backlog_bytes)
                conn.closed = True
                await asyncio.sleep(0.5)  # let the close frame go out before the socket does
                conn.writer.transport.abort()
            elif now >= next_ping:
                next_ping = now + cfg.ping_interval_s
                conn.send(_OP_PING, str(int(now)).encode(), cfg.max_backlog_bytes)

    def _control(self, conn: _Conn, data: bytes) -> None:
        try:
            msg = orjson.loads(data)
            method, params, rid = msg["method"], msg.get("params", []), msg.get("id")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            conn.send(_OP_TEXT, orjson.dumps({"error": {"code": 2, "msg": f"Invalid request {data[:80]!r}"}}), self.sim.config.max_backlog_bytes)
            return
        if method == "SUBSCRIBE":
            conn.streams.update(params)
            reply = {"result": None, "id": rid}
        elif method == "UNSUBSCRIBE":
            conn.streams.difference_update(params)
            reply = {"result": None, "id": rid}
        elif method == "LIST_SUBSCRIPTIONS":
            reply = {"result": sorted(conn.streams), "id": rid}
        else:
            reply = {"error": {"code": 1, "msg": f"Unknown method {method!r}"}, "id": rid}
        conn.send(_OP_TEXT, orjson.dumps(reply), self.sim.config.max_backlog_bytes)


class Simulator:
    """The simulated Binance: ``start()``, read ``endpoints(market)``, ``stop()``.

    Runs its own asyncio loop in a daemon thread; every public method is thread-safe.
    Usable as a context manager.
    """

    def __init__(self, config: SimulatorConfig = SimulatorConfig()):
        self.config = config
        self.sent = SentLog()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: dict[Market, _MarketServer] = {}
        self._t0 = 0.0
        self.start_ms = 0
        self.steps = 0
        self.finished = threading.Event()

    # -- lifecycle --------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> "Simulator":
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="simulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"simulator did not start within {timeout} s")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._shutdown)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> "Simulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def endpoints(self, market: Market) -> Endpoints:
        """Where ``market`` is served: pass to ``binance.ws_url``/``depth_snapshot_url``."""
        srv = self._servers.get(Market(market))
        if srv is None:
            raise ValueError(f"the simulator serves {[m.value for m in self._servers]}, not {Market(market).value}")
        return Endpoints(f"ws://127.0.0.1:{srv.port}", f"http://127.0.0.1:{srv.port}", _DEPTH_PATH[srv.market])

    def now_ms(self) -> int:
        """Simulated exchange time."""
        return self.start_ms + int((time.monotonic() - self._t0) * 1000 * self.config.speed)

    # -- misbehaviour -----------------------------------------------------------------
    def drop(self, market: Market | None = None) -> None:
        """Abort every websocket connection (of ``market``), as a network failure would."""
        def go():
            for srv in self._pick(market):
                for c in srv.conns:
                    c.abort()
                    self.sent.drops += 1
                srv.conns = []
        self._call(go)

    def skip_sequence(self, symbol: str) -> None:
        """Withhold ``symbol``'s next depth diff: the book moves, its clients never hear it."""
        market = from_tickstore(symbol)[1]
        self._call(lambda: self._servers[market].source.skip.add(symbol))

    def malformed(self, count: int = 1, market: Market | None = None) -> None:
        """Send the next ``count`` data frames (of ``market``) cut in half."""
        def go():
            for srv in self._pick(market):
                srv.malformed += count
        self._call(go)

    def stall(self, seconds: float, market: Market | None = None) -> None:
        """Send no data frames for ``seconds`` (connections stay open, pings flow)."""
        def go():
            for srv in self._pick(market):
                srv.stall_until = time.monotonic() + seconds
        self._call(go)

    def connections(self, market: Market | None = None) -> int:
        return sum(len([c for c in s.conns if not c.closed]) for s in self._pick(market))

    # -- internals --------------------------------------------------------------------
    def _pick(self, market):
        return list(self._servers.values()) if market is None else [self._servers[Market(market)]]

    def _call(self, fn) -> None:
        done = threading.Event()

        def run():
            try:
                fn()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        if not done.wait(5):
            raise RuntimeError("simulator loop did not answer within 5 s")

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main(ready))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self, ready: threading.Event) -> None:
        cfg = self.config
        self._t0 = time.monotonic()
        self.start_ms = cfg.start_ms if cfg.start_ms is not None else time.time_ns() // 1_000_000
        self._stopping = asyncio.Event()
        if cfg.replay:
            by_market: dict[Market, list[str]] = defaultdict(list)
            for path in cfg.replay:
                by_market[_file_market(Path(path), cfg.replay_market)].append(path)
            for m, paths in by_market.items():
                self._servers[m] = _MarketServer(self, m, ReplayMarket(cfg, m, paths))
            tasks = [asyncio.ensure_future(self._replay(srv)) for srv in self._servers.values()]
        else:
            for m in cfg.markets:
                self._servers[m] = _MarketServer(self, m, GeneratedMarket(cfg, m, self.start_ms))
            tasks = [asyncio.ensure_future(self._generate())]
        for srv in self._servers.values():
            await srv.start()
        ready.set()
        await self._stopping.wait()
        for t in tasks:
            t.cancel()
        for srv in self._servers.values():
            srv.server.close()
            for c in srv.conns:
                c.abort()
        for srv in self._servers.values():
            try:
                await asyncio.wait_for(srv.server.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass

    def _shutdown(self) -> None:
        self._stopping.set()

    async def _replay(self, srv: "_MarketServer") -> None:
        """Send a recorded market at its recorded pace (``speed`` times), once subscribed."""
        src: ReplayMarket = srv.source
        while not srv.conns:
            await asyncio.sleep(0.01)
        frames, speed = src.frames, self.config.speed
        t0, r0 = time.monotonic(), frames[0][0] if frames else 0
        i, withheld = 0, None
        while i < len(frames):
            due = t0 + (frames[i][0] - r0) / 1e9 / speed
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            batch = []
            now = time.monotonic()
            # everything already due goes out in one burst (and the loop breathes between)
            while i < len(frames) and len(batch) < 1000 and t0 + (frames[i][0] - r0) / 1e9 / speed <= now:
                f = frames[i][1]
                if f.depth and (f.symbol in src.skip or f.payload is withheld):
                    src.skip.discard(f.symbol)
                    withheld = f.payload  # its aliases (other depth stream names) go too
                    f = _Frame("", f.symbol, b"", depth=True)
                batch.append(f)
                i += 1
            src.position = i
            srv.broadcast(batch)
            await asyncio.sleep(0)
        self.finished.set()

    async def _generate(self) -> None:
        cfg = self.config
        step_s = cfg.tick_ms / 1000 / cfg.speed
        max_steps = int(cfg.max_seconds * 1000 / cfg.tick_ms)
        i = 0
        while i < max_steps:
            due = self._t0 + i * step_s  # step i goes out when simulated time reaches its E
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            for srv in self._servers.values():
                srv.broadcast(srv.source.step(i))
            i += 1
            self.steps = i
        self.finished.set()
