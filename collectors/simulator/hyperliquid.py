"""Hyperliquid's dialect of the simulated exchange (perpetuals, one port)::

    ws  /ws
        -> {"method":"subscribe","subscription":{"type":"trades","coin":"BTC"}}
           types: trades, l2Book, bbo, activeAssetCtx; allDexsAssetCtxs (no coin)
        <- {"channel":"subscriptionResponse","data":{"method":"subscribe","subscription":{...}}}
           then what the venue sends at once: the book, the bbo, the asset context and the
           most recent trades (a backlog a reconnecting client receives again)
        -> {"method":"ping"}   <- {"channel":"pong"}
        -> {"method":"unsubscribe","subscription":{...}}
        errors: {"channel":"error","data":"..."} (bad JSON, unknown type or coin, twice subscribed)
    POST /info {"type":"l2Book","coin":"BTC"}   -> {"coin","time","levels"}

Channels, as the real ones (shapes checked against hftbacktest's ``hyperliquid/btcusd_20250126``
capture and the Python SDK's cassettes):

- ``trades``: ``{"channel":"trades","data":[{"coin","side":"B"|"A","px","sz","time","hash",
  "tid","users":[buyer, seller]}]}``, the step's prints; ``tid`` is a random 50-bit id
  (Hyperliquid's are not consecutive);
- ``l2Book``: the whole book, 20 levels a side ``{"px","sz","n"}``, every ~500 ms (the
  venue pushes one per block); ``time`` only grows;
- ``bbo``: best bid/offer each step it changed;
- ``activeAssetCtx``: every 1000 ms ``{"coin","ctx":{"funding","openInterest","oraclePx",
  "markPx","midPx","premium","impactPxs",...}}`` (no timestamp, as the real one);
- ``allDexsAssetCtxs`` (subscribed without a coin): every 1000 ms one frame
  ``{"ctxs":[["",[ctx, ...]],["<builder dex>",[...]]]}``, the contexts of the main dex
  in the order of its ``meta`` universe: a simulated coin's context at its asset index in
  the registry (``collectors.symbols``, ccxt's market id: BTC 0, ETH 1, SOL 5, ...), the
  assets it does not simulate as not trading (prices ``"0.0"``, ``midPx``/``premium``/
  ``impactPxs`` null, as the venue shows delisted ones), and one builder-deployed dex
  (``"sim"``, one asset) after it, as the venue lists HIP-3 dexes.

There is **no liquidation channel** (Hyperliquid has no public liquidation stream), so
``liquidation_prob`` generates nothing here. Keep-alive is the client's ``ping``: the
server sends no websocket pings and drops a client silent for ``pong_timeout_s`` (the
venue: 60 s). ``skip_sequence`` withholds the next ``l2Book``; as every book frame is the
whole book and carries no sequence number, a client cannot notice, and does not need to.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import orjson

from collectors.exchanges.binance import Endpoints
from collectors.exchanges.hyperliquid import Market

from collectors.symbols import MARKETS

from .market import START, Dialect, Frame, SymbolMarket, Tick, market_info

__all__ = ["HyperliquidDialect"]

_TYPES = ("trades", "l2Book", "bbo", "activeAssetCtx")
_GLOBAL = ("allDexsAssetCtxs",)  # subscribed without a coin
_LEVELS = 20
_BOOK_MS = 500  # one l2Book push per ~block
_RECENT = 10  # trades sent on subscribe


@dataclass
class _Coin:
    recent: deque = field(default_factory=lambda: deque(maxlen=_RECENT))  # last trade rows
    bbo: tuple | None = None  # last published (bid ticks, bid qty, ask ticks, ask qty)


class HyperliquidDialect(Dialect):
    exchange = "hyperliquid"
    markets = Market
    app_ping = True

    def __init__(self, config, market: Market):
        super().__init__(config, market)
        self._coins: dict[str, _Coin] = {}
        self._book_every = max(1, round(_BOOK_MS / config.tick_ms))

    @classmethod
    def market_of(cls, symbol: str) -> Market:
        _info(symbol)
        return Market.PERP

    @classmethod
    def native_of(cls, symbol: str) -> str:
        return _info(symbol).native

    def grid(self, base: str) -> tuple[float, float, int]:
        price, tick = START.get(base, (100.0, 0.01))
        return price, tick * 10, 5 if base == "BTC" else 4

    def _coin(self, m: SymbolMarket) -> _Coin:
        c = self._coins.get(m.native)
        if c is None:
            c = self._coins[m.native] = _Coin()
        return c

    # -- the server -------------------------------------------------------------------------
    def endpoints(self, port: int) -> Endpoints:
        return Endpoints(f"ws://127.0.0.1:{port}/ws", f"http://127.0.0.1:{port}", "/info")

    def ws_route(self, path: str, query: dict) -> set[str] | None:
        return set() if path == "/ws" else None

    @staticmethod
    def _error(text: str) -> Frame:
        return Frame("", "", orjson.dumps({"channel": "error", "data": text}))

    def control(self, conn, data: bytes, source) -> list[Frame]:
        try:
            msg = orjson.loads(data)
            method = msg["method"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return [self._error(f"Error parsing JSON into valid websocket request: {data[:80].decode('utf-8', 'replace')}")]
        if method == "ping":
            return [Frame("", "", b'{"channel":"pong"}')]
        sub = msg.get("subscription")
        if method not in ("subscribe", "unsubscribe") or not isinstance(sub, dict):
            return [self._error(f"Error parsing JSON into valid websocket request: {data[:80].decode('utf-8', 'replace')}")]
        kind, coin = sub.get("type"), sub.get("coin")
        m = source.by_native.get(coin) if isinstance(coin, str) else None
        if not (kind in _TYPES and m is not None or kind in _GLOBAL and coin is None):
            return [self._error(f"Invalid subscription {orjson.dumps(sub).decode()}")]
        key = kind if kind in _GLOBAL else f"{kind}:{coin}"
        if method == "unsubscribe":
            if key not in conn.streams:
                return [self._error(f"Already unsubscribed: {orjson.dumps(sub).decode()}")]
            conn.streams.discard(key)
            return [self._ack(method, sub)]
        if key in conn.streams:
            return [self._error(f"Already subscribed: {orjson.dumps(sub).decode()}")]
        conn.streams.add(key)
        out = [self._ack(method, sub)]
        if kind == "l2Book":
            out.append(Frame("", m.symbol, self._book(m)))
        elif kind == "bbo":
            out.append(Frame("", m.symbol, self._bbo(m, m.best())))
        elif kind == "activeAssetCtx" and m.ctx is not None:
            out.append(Frame("", m.symbol, self._ctx(m)))
        elif kind == "allDexsAssetCtxs" and any(x.ctx is not None for x in source.by_native.values()):
            out.append(Frame("", "", self._all_ctxs(source)))
        elif kind == "trades":
            recent = list(self._coin(m).recent)
            if recent:
                ids = tuple(r["tid"] for r in recent)
                out.append(Frame("", m.symbol, orjson.dumps({"channel": "trades", "data": recent}), trade_ids=ids))
        return out

    @staticmethod
    def _ack(method: str, sub: dict) -> Frame:
        echo = dict(sub)
        if echo.get("type") == "l2Book":  # the venue echoes the optional fields it filled in
            echo.setdefault("nSigFigs", None)
            echo.setdefault("mantissa", None)
        return Frame("", "", orjson.dumps({"channel": "subscriptionResponse", "data": {"method": method, "subscription": echo}}))

    def http(self, method, path, query, body, source, now_ms):
        if path != "/info":
            return 404, {"error": f"no route {path} on the simulated hyperliquid"}
        if method != "POST":
            return 405, {"error": f"method {method} not allowed on /info"}
        try:
            req = orjson.loads(body)
            kind = req["type"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return 422, {"error": f"Failed to deserialize the JSON body into the target type: {body[:80]!r}"}
        if kind != "l2Book":
            return 422, {"error": f"unsupported info type {kind!r} in the simulator (see collectors.restsim for history)"}
        m = source.by_native.get(req.get("coin"))
        if m is None:
            return 200, None  # the venue answers null for an unknown coin
        if self.sent is not None:
            self.sent.snapshots += 1
        return 200, orjson.loads(self._book(m))["data"]

    def rest_book(self, m: SymbolMarket, limit: int, now_ms: int) -> dict:
        return orjson.loads(self._book(m))["data"]

    # -- generation -------------------------------------------------------------------------
    @staticmethod
    def _n(qty: float) -> int:
        return 1 + int(qty * 7) % 13  # orders at a level: any deterministic count will do

    def _book(self, m: SymbolMarket) -> bytes:
        bids, asks = m.top(_LEVELS)
        levels = [[{"px": m.px(p), "sz": m.q(q), "n": self._n(q)} for p, q in side] for side in (bids, asks)]
        return orjson.dumps({"channel": "l2Book", "data": {"coin": m.native, "time": m.now_ms, "levels": levels}})

    def _bbo(self, m: SymbolMarket, best) -> bytes:
        bt, bq, at, aq = best
        bbo = [{"px": m.px(bt), "sz": m.q(bq), "n": self._n(bq)}, {"px": m.px(at), "sz": m.q(aq), "n": self._n(aq)}]
        return orjson.dumps({"channel": "bbo", "data": {"coin": m.native, "time": m.now_ms, "bbo": bbo}})

    def _ctx(self, m: SymbolMarket) -> bytes:
        return orjson.dumps({"channel": "activeAssetCtx", "data": {"coin": m.native, "ctx": self._ctx_fields(m)}})

    @staticmethod
    def _idle_ctx() -> dict:
        """The context of an asset that does not trade (the venue's delisted ones look so)."""
        return {"funding": "0.0", "openInterest": "0.0", "prevDayPx": "0.0", "dayNtlVlm": "0.0", "premium": None,
                "oraclePx": "0.0", "markPx": "0.0", "midPx": None, "impactPxs": None, "dayBaseVlm": "0.0"}

    def _all_ctxs(self, source) -> bytes:
        index = {int(mk.ccxt_id): mk.native for mk in MARKETS.markets("hyperliquid") if (mk.ccxt_id or "").isdigit()}
        live = {coin: self._ctx_fields(m) for coin, m in source.by_native.items() if m.ctx is not None}
        top = max([i for i, coin in index.items() if coin in live], default=-1)
        main = [live.get(index.get(i), None) or self._idle_ctx() for i in range(top + 1)]
        builder = [self._idle_ctx()]
        return orjson.dumps({"channel": "allDexsAssetCtxs", "data": {"ctxs": [["", main], ["sim", builder]]}})

    def after_step(self, source, now_ms: int) -> list[Frame]:
        if now_ms % 1000 < self.config.tick_ms and any(m.ctx is not None for m in source.by_native.values()):
            return [Frame("allDexsAssetCtxs", "", self._all_ctxs(source))]
        return []

    def _ctx_fields(self, m: SymbolMarket) -> dict:
        c = m.ctx
        bt, _, at, _ = m.best()
        d = m.decimals + 1
        ctx = {
            "funding": f"{c.funding:.8f}", "openInterest": f"{c.oi:.3f}", "prevDayPx": f"{c.index * 0.99:.{d}f}",
            "dayNtlVlm": f"{c.oi * c.mark * 3:.2f}", "premium": f"{(c.mark - c.index) / c.index:.8f}",
            "oraclePx": f"{c.index:.{d}f}", "markPx": f"{c.mark:.{d}f}", "midPx": f"{(bt + at) / 2 * m.tick:.{d}f}",
            "impactPxs": [m.px(bt), m.px(at)], "dayBaseVlm": f"{c.oi * 3:.3f}",
        }
        return ctx

    def encode(self, m: SymbolMarket, tick: Tick) -> list[Frame]:
        coin, sym, now = m.native, m.symbol, tick.now_ms
        st = self._coin(m)
        out: list[Frame] = []
        if tick.trades:
            rows = []
            for t in tick.trades:
                rng = m.rng
                buyer, seller = f"0x{rng.getrandbits(160):040x}", f"0x{rng.getrandbits(160):040x}"
                rows.append({"coin": coin, "side": "B" if t.buyer else "A", "px": m.px(t.price), "sz": m.q(t.qty),
                             "time": now, "hash": f"0x{rng.getrandbits(256):064x}", "tid": rng.getrandbits(50),
                             "users": [buyer, seller]})
            st.recent.extend(rows)
            out.append(Frame(f"trades:{coin}", sym, orjson.dumps({"channel": "trades", "data": rows}),
                             trade_ids=tuple(r["tid"] for r in rows)))
        if (now // self.config.tick_ms) % self._book_every == 0:
            out.append(Frame(f"l2Book:{coin}", sym, self._book(m), depth=True))
        best = m.best()
        if best != st.bbo:
            st.bbo = best
            out.append(Frame(f"bbo:{coin}", sym, self._bbo(m, best)))
        if tick.ctx is not None:
            out.append(Frame(f"activeAssetCtx:{coin}", sym, self._ctx(m)))
        return out


def _info(symbol: str):
    return market_info("hyperliquid", symbol)
