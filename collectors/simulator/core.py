"""The simulated exchange's server: ports, websocket and HTTP plumbing, the clock, faults.

One listening port per market (like the venues' hosts), each serving one dialect's
websocket and REST paths (``Dialect.ws_route``/``control``/``http``) from one source of
frames: a ``GeneratedMarket`` stepped every ``tick_ms`` of simulated time (simulated time
runs ``speed`` times the wall clock from ``start_ms``; generation stops after
``max_seconds``), or, Binance only, a ``ReplayMarket`` of a recorded capture.

Connections: the server answers websocket pings; for dialects without an application
ping (Binance) it pings every ``ping_interval_s`` and drops a client whose pong is older
than ``pong_timeout_s``; for the others (Bybit, Hyperliquid) it drops a client that sent
nothing for ``pong_timeout_s``. It closes connections older than ``max_connection_age_s``
and aborts a client whose unsent backlog passes ``max_backlog_bytes`` (a slow consumer).

Misbehaviour on request (thread-safe; each applies to the given market or all):
``drop()`` aborts the TCP connections, ``skip_sequence(symbol)`` withholds the symbol's
next book update (the book and its sequence move on, its clients never hear it),
``malformed(n)`` sends the next ``n`` data frames cut in half, ``stall(seconds)`` sends no
data frames (pings and acks still flow), ``poison(symbol, mutate)`` sends the symbol's next
trade frame through ``mutate(payload) -> payload`` (a field that parses but cannot be right:
``T`` in the year 5138, ``t`` past int64, ``p`` NaN...). ``sent`` records what each symbol's
clients were actually sent intact (tests check the store against it), and the poisoned
frames with the trade ids they carried (``sent.poisoned``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import struct
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import orjson

from collectors.exchanges.binance import Endpoints, Market

from .market import Frame, GeneratedMarket, dialect_class, dialect_of_symbol
from .wire import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, Conn, accept_key, read_ws_frame

__all__ = ["SimulatorConfig", "Simulator", "SentLog"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulatorConfig:
    """What the simulated exchange serves.

    ``symbols`` are tickstore symbols of any simulated venue (``binance:BTC/USDT`` spot,
    ``binance:BTC/USDT:USDT`` USD-M, ``binance:BTC/USD:BTC`` COIN-M, ``bybit:BTC/USDT``,
    ``bybit:BTC/USDT:USDT``, ``hyperliquid:BTC/USDC:USDC``); one port is opened per market
    they span. ``start_ms=None`` starts simulated time at the wall clock (so
    exchange-to-receive latency is meaningful); pass a fixed value for byte-identical runs.
    ``replay`` (Binance captures) replaces the generated markets.
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
            dialect_of_symbol(s).market_of(s)  # raises UnknownSymbol with the value
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
    def markets(self) -> tuple:
        """Generated mode: the markets of ``symbols`` (``binance.Market``, ``bybit.Category``,
        ``hyperliquid.Market`` members), in order (replay mode decides per file)."""
        seen = []
        for s in self.symbols:
            m = dialect_of_symbol(s).market_of(s)
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
    poisoned: list = field(default_factory=list)  # (symbol, trade ids, payload sent)


def _key(market):
    """A market enum member as given, or a Binance market value (``"usdm"``)."""
    return market if isinstance(market, enum.Enum) else Market(market)


class _MarketServer:
    """One market's port: its dialect's websocket streams and REST paths."""

    def __init__(self, sim: "Simulator", market, source):
        self.sim, self.market, self.source = sim, market, source
        self.dialect = source.dialect
        self.dialect.sent = sim.sent
        self.conns: list[Conn] = []
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self.malformed = 0
        self.stall_until = 0.0
        self.poison: list = []  # [symbol, mutate, frames left]

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, self.sim.config.host, 0, limit=1 << 20)
        self.port = self.server.sockets[0].getsockname()[1]

    def broadcast(self, frames: list[Frame]) -> None:
        cfg, log_ = self.sim.config, self.sim.sent
        stalled = time.monotonic() < self.stall_until
        for f in frames:
            if not f.stream:
                log_.skipped_updates += 1
                continue
            if stalled:
                continue
            intact = False
            if self.poison and f.trade_ids:
                f = self._poisoned(f)
            for c in self.conns:
                if f.stream not in c.streams:
                    continue
                if f.poisoned:
                    c.send(OP_TEXT, f.payload, cfg.max_backlog_bytes)
                elif self.malformed > 0:
                    self.malformed -= 1
                    log_.malformed += 1
                    c.send(OP_TEXT, f.payload[: len(f.payload) // 2], cfg.max_backlog_bytes)
                elif c.send(OP_TEXT, f.payload, cfg.max_backlog_bytes):
                    intact = True
                    log_.frames += 1
            if intact and f.trade_ids:
                log_.trade_ids[f.symbol].extend(f.trade_ids)
        self.conns = [c for c in self.conns if not c.closed]

    def _poisoned(self, f: Frame) -> Frame:
        """``f`` mutated by the first pending poison of its symbol (once it has a client)."""
        for p in self.poison:
            if p[0] == f.symbol and any(f.stream in c.streams for c in self.conns):
                payload = p[1](f.payload)
                p[2] -= 1
                if p[2] <= 0:
                    self.poison.remove(p)
                self.sim.sent.poisoned.append((f.symbol, tuple(f.trade_ids), payload))
                return Frame(f.stream, f.symbol, payload, depth=f.depth, poisoned=True)
        return f

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
        body = b""
        try:
            n = int(headers.get("content-length", "0"))
            if 0 < n <= 1 << 20:
                body = await asyncio.wait_for(reader.readexactly(n), 10)
        except (ValueError, asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            await self._http(writer, 400, {"code": -1100, "msg": "bad request body"})
            return
        status, answer = self.dialect.http(method, url.path, query, body, self.source, self.sim.now_ms())
        await self._http(writer, status, answer)

    async def _http(self, writer, status: int, body) -> None:
        data = orjson.dumps(body)
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 422: "Unprocessable Entity"}.get(status, "Error")
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
        streams = self.dialect.ws_route(path, query)
        if streams is None:
            await self._http(writer, 404, {"code": -1, "msg": f"no websocket route {path}"})
            return
        if not key:
            await self._http(writer, 400, {"code": -1, "msg": "missing Sec-WebSocket-Key"})
            return
        writer.write(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n".encode()
        )
        conn = Conn(writer, streams, time.monotonic())
        self.conns.append(conn)
        self.sim.sent.connections += 1
        cfg = self.sim.config
        keepalive = asyncio.ensure_future(self._keepalive(conn))
        try:
            while not conn.closed:
                opcode, data = await read_ws_frame(reader)
                if opcode == OP_PING:
                    conn.send(OP_PONG, data, cfg.max_backlog_bytes)
                elif opcode == OP_PONG:
                    conn.last_pong = time.monotonic()
                elif opcode == OP_CLOSE:
                    conn.send(OP_CLOSE, data[:2], cfg.max_backlog_bytes)
                    break
                elif opcode == OP_TEXT:
                    if self.dialect.app_ping:
                        conn.last_pong = time.monotonic()
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

    def _control(self, conn: Conn, data: bytes) -> None:
        limit, log_ = self.sim.config.max_backlog_bytes, self.sim.sent
        for f in self.dialect.control(conn, data, self.source):
            if conn.send(OP_TEXT, f.payload, limit) and f.trade_ids:
                log_.trade_ids[f.symbol].extend(f.trade_ids)

    async def _keepalive(self, conn: Conn) -> None:
        """Ping (unless clients ping), and hang up on silent clients and old connections."""
        cfg = self.sim.config
        tick = min(cfg.ping_interval_s, cfg.pong_timeout_s, cfg.max_connection_age_s, 1.0)
        next_ping = conn.opened + cfg.ping_interval_s
        while not conn.closed:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if now - conn.last_pong > cfg.pong_timeout_s:
                why = b"ping timeout" if self.dialect.app_ping else b"pong timeout"
                conn.send(OP_CLOSE, struct.pack("!H", 1008) + why, cfg.max_backlog_bytes)
                conn.abort()
            elif now - conn.opened > cfg.max_connection_age_s:
                conn.send(OP_CLOSE, struct.pack("!H", 1000) + b"max connection age", cfg.max_backlog_bytes)
                conn.closed = True
                await asyncio.sleep(0.5)  # let the close frame go out before the socket does
                conn.writer.transport.abort()
            elif now >= next_ping and not self.dialect.app_ping:
                next_ping = now + cfg.ping_interval_s
                conn.send(OP_PING, str(int(now)).encode(), cfg.max_backlog_bytes)


class Simulator:
    """The simulated exchange: ``start()``, read ``endpoints(market)``, ``stop()``.

    Runs its own asyncio loop in a daemon thread; every public method is thread-safe.
    Usable as a context manager.
    """

    def __init__(self, config: SimulatorConfig = SimulatorConfig()):
        self.config = config
        self.sent = SentLog()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: dict = {}  # market enum member -> _MarketServer
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

    @property
    def markets(self) -> tuple:
        """The markets served (one port each)."""
        return tuple(self._servers)

    def endpoints(self, market) -> Endpoints:
        """Where ``market`` is served (``binance.Market.USDM``, ``bybit.Category.LINEAR``,
        ``hyperliquid.Market.PERP``...): the collector's ``endpoints`` for it."""
        srv = self._server(market)
        return srv.dialect.endpoints(srv.port)

    def now_ms(self) -> int:
        """Simulated exchange time."""
        return self.start_ms + int((time.monotonic() - self._t0) * 1000 * self.config.speed)

    # -- misbehaviour -----------------------------------------------------------------
    def drop(self, market=None) -> None:
        """Abort every websocket connection (of ``market``), as a network failure would."""
        def go():
            for srv in self._pick(market):
                for c in srv.conns:
                    c.abort()
                    self.sent.drops += 1
                srv.conns = []
        self._call(go)

    def skip_sequence(self, symbol: str) -> None:
        """Withhold ``symbol``'s next book update: the book moves, its clients never hear it."""
        srv = self._server(dialect_of_symbol(symbol).market_of(symbol))
        self._call(lambda: srv.source.skip.add(symbol))

    def malformed(self, count: int = 1, market=None) -> None:
        """Send the next ``count`` data frames (of ``market``) cut in half."""
        def go():
            for srv in self._pick(market):
                srv.malformed += count
        self._call(go)

    def poison(self, symbol: str, mutate, count: int = 1) -> None:
        """Send ``symbol``'s next ``count`` trade frames as ``mutate(payload)`` (bytes -> bytes)."""
        srv = self._server(dialect_of_symbol(symbol).market_of(symbol))
        self._call(lambda: srv.poison.append([symbol, mutate, count]))

    def stall(self, seconds: float, market=None) -> None:
        """Send no data frames for ``seconds`` (connections stay open, pings flow)."""
        def go():
            for srv in self._pick(market):
                srv.stall_until = time.monotonic() + seconds
        self._call(go)

    def connections(self, market=None) -> int:
        return sum(len([c for c in s.conns if not c.closed]) for s in self._pick(market))

    # -- internals --------------------------------------------------------------------
    def _server(self, market) -> _MarketServer:
        srv = self._servers.get(_key(market))
        if srv is None:
            served = [f"{dialect_class(m).exchange}:{m.value}" for m in self._servers]
            raise ValueError(f"the simulator serves {served}, not {market!r}")
        return srv

    def _pick(self, market):
        return list(self._servers.values()) if market is None else [self._server(market)]

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
        from .binance import ReplayMarket

        cfg = self.config
        self._t0 = time.monotonic()
        self.start_ms = cfg.start_ms if cfg.start_ms is not None else time.time_ns() // 1_000_000
        self._stopping = asyncio.Event()
        if cfg.replay:
            by_market: dict[Market, list[str]] = defaultdict(list)
            for path in cfg.replay:
                by_market[ReplayMarket.market_of_file(path, cfg.replay_market)].append(path)
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

    async def _replay(self, srv: _MarketServer) -> None:
        """Send a recorded market at its recorded pace (``speed`` times), once subscribed."""
        src = srv.source
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
                    f = Frame("", f.symbol, b"", depth=True)
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
            due = self._t0 + i * step_s  # step i goes out when simulated time reaches its time
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            for srv in self._servers.values():
                srv.broadcast(srv.source.step(i))
            i += 1
            self.steps = i
        self.finished.set()
