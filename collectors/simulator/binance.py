"""Binance's dialect of the simulated exchange (spot, USD-M, COIN-M: one port each)::

    GET /stream?streams=btcusdt@trade/btcusdt@depth@100ms/...   websocket (also /ws/<streams>)
        -> {"stream": "btcusdt@trade", "data": {...}}; on the socket {"method": "SUBSCRIBE"|
           "UNSUBSCRIBE"|"LIST_SUBSCRIPTIONS", "params": [...], "id": n} -> {"result": ..., "id": n}
    GET /api/v3/depth?symbol=BTCUSDT&limit=1000    spot snapshot   {"lastUpdateId", "bids", "asks"}
    GET /fapi/v1/depth | /dapi/v1/depth            futures snapshot (+ "E", "T"; COIN-M "symbol", "pair")
    GET /api/v3/ping | /fapi/v1/ping | /dapi/v1/ping   {}

Each step of a symbol: a depth diff (``U``/``u`` spanning its changes, ``pu`` on futures =
previous ``u``; served as ``@depth@100ms``, ``@depth@0ms`` and ``@depth``), one trade frame
per print (contiguous ids), a bookTicker (``u`` = book update id), on futures a markPrice
every 1000 ms (mark, index, predicted ``r``, next 8-hourly ``T``) and sometimes a
forceOrder. Partial books ``@depth5``/``10``/``20`` are served at their pace (``@100ms``
every 100 ms; ``@500ms`` futures; no suffix: 250 ms futures, 1000 ms spot) whenever a
step crosses it, in Binance's shapes: spot ``{"lastUpdateId", "bids", "asks"}`` (no time,
no symbol), futures ``{"e": "depthUpdate", "E", "T", "s", "U", "u", "pu", "b", "a"}`` with
``pu`` the ``u`` of the stream's previous frame. The server pings every ``ping_interval_s`` and drops clients that stop ponging.

``ReplayMarket`` serves a recorded Binance capture (``collectors.capture``) instead, at
its recorded pace times ``speed``; the REST snapshot served is the latest recorded one at
or before the replay position.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import orjson

from collectors.capture import CaptureReader, FrameKind
from collectors.exchanges.binance import Endpoints, Market, from_tickstore, native_symbol_of_url, to_tickstore
from collectors.replay import ReplayError, detect

from .market import START, Dialect, Frame, SymbolMarket, Tick

__all__ = ["BinanceDialect", "ReplayMarket"]

_DEPTH_PATH = {Market.SPOT: "/api/v3/depth", Market.USDM: "/fapi/v1/depth", Market.COINM: "/dapi/v1/depth"}
_PING_PATH = {Market.SPOT: "/api/v3/ping", Market.USDM: "/fapi/v1/ping", Market.COINM: "/dapi/v1/ping"}
_FUNDING_MS = 8 * 3600 * 1000
_DIFF_STREAM = re.compile(r"^[a-z0-9_]+@depth(@\d+ms)?$")


def _wrap(stream: str, data: dict) -> bytes:
    return orjson.dumps({"stream": stream, "data": data})


def depth_aliases(stream_base: str) -> tuple[str, ...]:
    """A diff feed serves every diff stream name of a symbol (``btcusdt@depth@100ms``, ...)."""
    return (f"{stream_base}@depth@100ms", f"{stream_base}@depth@0ms", f"{stream_base}@depth")


@dataclass
class _Ids:
    update_id: int  # last u sent
    last_u: int  # u of the previous diff (futures pu)
    partial_u: dict = None  # partial-book pace (ms) -> u of its previous frame (futures pu)


# partial-book stream suffixes and their pace in ms (spot, futures); None: not served there
_PARTIAL_PACES = (("@100ms", 100, 100), ("@500ms", None, 500), ("", 1000, 250))


class BinanceDialect(Dialect):
    exchange = "binance"
    markets = Market
    app_ping = False

    def __init__(self, config, market: Market):
        super().__init__(config, market)
        self._ids: dict[str, _Ids] = {}

    @classmethod
    def market_of(cls, symbol: str) -> Market:
        return from_tickstore(symbol)[1]

    @classmethod
    def native_of(cls, symbol: str) -> str:
        return from_tickstore(symbol)[0]

    def grid(self, base: str) -> tuple[float, float, int]:
        price, tick = START.get(base, (100.0, 0.01))
        if self.market is Market.SPOT:
            return price, tick / 10, 5  # spot trades finer than the perpetual
        return price, tick, 3

    @property
    def perp(self) -> bool:
        return self.market is not Market.SPOT

    def ids(self, m: SymbolMarket) -> _Ids:
        st = self._ids.get(m.symbol)
        if st is None:
            u = m.rng.randrange(10**9, 10**10)
            st = self._ids[m.symbol] = _Ids(u, u, {})
        return st

    # -- the server -------------------------------------------------------------------------
    def endpoints(self, port: int) -> Endpoints:
        return Endpoints(f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}", _DEPTH_PATH[self.market])

    def ws_route(self, path: str, query: dict) -> set[str] | None:
        if path.startswith("/ws/"):
            return set(path[4:].split("/"))
        if path in ("/stream", "/ws"):
            return set(filter(None, query.get("streams", "").split("/")))
        return None

    def control(self, conn, data: bytes, source) -> list[Frame]:
        try:
            msg = orjson.loads(data)
            method, params, rid = msg["method"], msg.get("params", []), msg.get("id")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return [Frame("", "", orjson.dumps({"error": {"code": 2, "msg": f"Invalid request {data[:80]!r}"}}))]
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
        return [Frame("", "", orjson.dumps(reply))]

    def http(self, method, path, query, body, source, now_ms):
        if method != "GET":
            return 405, {"code": -1100, "msg": f"method {method} not allowed"}
        if path == _PING_PATH[self.market]:
            return 200, {}
        if path != _DEPTH_PATH[self.market]:
            return 404, {"code": -1, "msg": f"no route {path} on the simulated {self.market.value} market"}
        native = query.get("symbol", "").upper()
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            limit = -1
        if limit <= 0 or limit > 5000:
            return 400, {"code": -1100, "msg": f"Illegal characters found in parameter 'limit'; legal range is '1..5000', got {query.get('limit')!r}."}
        book = source.snapshot(native, limit, now_ms)
        if book is None:
            return 400, {"code": -1121, "msg": f"Invalid symbol {native!r}."}
        if self.sent is not None:
            self.sent.snapshots += 1
        return 200, book

    def rest_book(self, m: SymbolMarket, limit: int, now_ms: int) -> dict:
        bids, asks = m.top(limit)
        body = {"lastUpdateId": self.ids(m).update_id}
        if self.market is not Market.SPOT:
            body["E"] = now_ms
            body["T"] = now_ms
        if self.market is Market.COINM:
            body["symbol"] = m.native
            body["pair"] = m.native.split("_")[0]
        body["bids"] = [[m.px(p), m.q(q)] for p, q in bids]
        body["asks"] = [[m.px(p), m.q(q)] for p, q in asks]
        return body

    # -- generation -------------------------------------------------------------------------
    def encode(self, m: SymbolMarket, tick: Tick) -> list[Frame]:
        fut, now, sym, native = self.market is not Market.SPOT, tick.now_ms, m.symbol, m.native
        stream = native.lower()
        st = self.ids(m)
        k = len(tick.bids) + len(tick.asks)
        first, st.update_id = st.update_id + 1, st.update_id + k
        diff = {"e": "depthUpdate", "E": now}
        if fut:
            diff["T"] = now
        diff.update({"s": native, "U": first, "u": st.update_id})
        if fut:
            diff["pu"] = st.last_u
        if self.market is Market.COINM:
            diff["ps"] = native.split("_")[0]
        diff["b"] = [[m.px(p), m.q(q)] for p, q in tick.bids]
        diff["a"] = [[m.px(p), m.q(q)] for p, q in tick.asks]
        st.last_u = st.update_id
        out = [Frame(name, sym, _wrap(name, diff), depth=True) for name in depth_aliases(stream)]
        for t in tick.trades:
            d = {"e": "trade", "E": now, "T": now} if fut else {"e": "trade", "E": now}
            d.update({"s": native, "t": t.serial, "p": m.px(t.price), "q": m.q(t.qty)})
            if fut:
                d.update({"X": "MARKET", "m": not t.buyer})
            else:
                d.update({"T": now, "m": not t.buyer, "M": True})
            name = f"{stream}@trade"
            out.append(Frame(name, sym, _wrap(name, d), trade_ids=(t.serial,)))
        out += self._partials(m, st, now)
        bt, bq, at, aq = m.best()
        q = {"e": "bookTicker", "u": st.update_id, "E": now, "T": now} if fut else {"u": st.update_id}
        q.update({"s": native, "b": m.px(bt), "B": m.q(bq), "a": m.px(at), "A": m.q(aq)})
        name = f"{stream}@bookTicker"
        out.append(Frame(name, sym, _wrap(name, q)))
        c = tick.ctx
        if c is not None:
            mk = {
                "e": "markPriceUpdate", "E": now, "s": native, "p": f"{c.mark:.8f}", "i": f"{c.index:.8f}",
                "P": f"{c.settle:.8f}", "r": f"{c.funding:.8f}", "T": (now // _FUNDING_MS + 1) * _FUNDING_MS,
            }
            name = f"{stream}@markPrice@1s"
            out.append(Frame(name, sym, _wrap(name, mk)))
        liq = tick.liquidation
        if liq is not None:
            qty = m.q(liq.qty)
            o = {
                "s": native, "S": "SELL" if liq.sell else "BUY", "o": "LIMIT", "f": "IOC", "q": qty,
                "p": m.px(liq.price), "ap": m.px(liq.avg), "X": "FILLED", "l": qty, "z": qty, "T": now,
            }
            name = f"{stream}@forceOrder"
            out.append(Frame(name, sym, _wrap(name, {"e": "forceOrder", "E": now, "o": o})))
        return out


    def _partials(self, m: SymbolMarket, st: _Ids, now: int) -> list[Frame]:
        """The partial-book frames due at this step (a pace boundary crossed since the last)."""
        fut, tick_ms, stream = self.market is not Market.SPOT, self.config.tick_ms, m.native.lower()
        due = [(suffix, pace) for suffix, spot_pace, fut_pace in _PARTIAL_PACES
               if (pace := fut_pace if fut else spot_pace) is not None and now // pace != (now - tick_ms) // pace]
        if not due:
            return []
        bids, asks = m.top(20)
        bids = [[m.px(p), m.q(q)] for p, q in bids]
        asks = [[m.px(p), m.q(q)] for p, q in asks]
        out = []
        for suffix, pace in due:
            prev = st.partial_u.get(pace, st.update_id - 1)
            st.partial_u[pace] = st.update_id
            for n in (5, 10, 20):
                name = f"{stream}@depth{n}{suffix}"
                if fut:
                    d = {"e": "depthUpdate", "E": now, "T": now, "s": m.native, "U": prev + 1, "u": st.update_id, "pu": prev,
                         "b": bids[:n], "a": asks[:n]}
                else:
                    d = {"lastUpdateId": st.update_id, "bids": bids[:n], "asks": asks[:n]}
                out.append(Frame(name, m.symbol, _wrap(name, d)))
        return out


class ReplayMarket:
    """Recorded Binance frames of one market, served at their recorded pace times ``speed``.

    The capture is read once at start (bounded by the files). Symbol-less REST snapshots
    (hftbacktest) belong to their file's depth stream, as in ``collectors.replay``. The
    feed starts when the first client subscribes, so a client sees the whole capture.
    """

    def __init__(self, config, market: Market, paths: list[str]):
        self.config = config
        self.market = market
        self.dialect = BinanceDialect(config, market)
        self.skip: set[str] = set()
        self.frames: list[tuple[int, Frame]] = []
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

    @staticmethod
    def market_of_file(path, market: Market | None) -> Market:
        found = {m for _, m in detect(Path(path), venue="binance", market=market).values()}
        if len(found) != 1:
            raise ReplayError(f"{str(path)!r} holds frames of several Binance markets {sorted(m.value for m in found)}")
        return found.pop()

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
                for name in depth_aliases(stream.partition("@")[0]):
                    self.frames.append((f.recv_ns, Frame(name, symbol, f.raw, depth=True)))
            else:
                self.frames.append((f.recv_ns, Frame(stream, symbol, f.raw, trade_ids=() if trade_id is None else (trade_id,))))

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
