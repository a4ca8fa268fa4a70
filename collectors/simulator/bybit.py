"""Bybit v5's dialect of the simulated exchange (public linear + spot: one port each)::

    ws  /v5/public/linear | /v5/public/spot
        -> {"op":"subscribe","args":["publicTrade.BTCUSDT","orderbook.50.BTCUSDT",
                                     "tickers.BTCUSDT","allLiquidation.BTCUSDT"]}   (spot: <= 10 args)
        <- {"success":true,"ret_msg":"","conn_id":"...","req_id":"","op":"subscribe"}
           (spot: "ret_msg":"subscribe", no req_id), then the snapshots of what was subscribed
        -> {"op":"ping"}   <- {"success":true,"ret_msg":"pong","conn_id":"...","req_id":"","op":"ping"}
        -> {"op":"unsubscribe","args":[...]}; a topic subscribed twice is refused
           ("error:already subscribed,topic:..."), an unknown one too ("error:handler not found,...")
    GET /v5/market/orderbook?category=linear&symbol=BTCUSDT&limit=50   {"retCode":0,"result":{"s","b","a","u","seq","ts","cts"}}
    GET /v5/market/time

Topics, as the real ones (shapes checked against the cryptofeed capture ``BYBIT.jsonl.zst``):

- ``orderbook.{50,200}.<s>`` (linear also 500): a ``snapshot`` of the top N levels on
  subscribe, then a ``delta`` per step with the levels that changed inside the top N
  (``"0"`` = removed), ``u`` = previous ``u`` + 1 per topic, ``seq`` the symbol's cross
  sequence, ``ts``/``cts`` the step time. Every subscriber of a topic shares one chain, so
  a resubscribe gets a snapshot whose ``u`` the following deltas continue.
- ``orderbook.1.<s>`` (Bybit's best bid/offer stream): snapshots only, as Bybit documents
  it - one on subscribe, one per step that changes the top (``u`` + 1), and the same
  snapshot again (same ``u``) after 3 s without a change.
- ``publicTrade.<s>``: the step's prints in one frame; ids are UUIDs on linear and
  decimal on spot (what ``exchanges.bybit.trade_id`` folds to the stored int).
- ``tickers.<s>``: linear: a full ``snapshot`` on subscribe, then ``delta`` frames with only
  the changed fields (bid1/ask1 each step; markPrice, indexPrice, fundingRate,
  nextFundingTime, openInterest(Value) every 1000 ms). Spot: snapshots without bid/ask,
  mark or funding (as Bybit's spot tickers).
- ``allLiquidation.<s>`` (linear): ``[{"T","s","S","v","p"}]``, ``S`` = the liquidated
  position's side.

Keep-alive is the client's application ping (the server sends no websocket pings and
drops a client silent for ``pong_timeout_s``). ``skip_sequence`` withholds the next
orderbook delta: the next one the client sees breaks the ``u`` chain.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

import orjson

from collectors.exchanges import UnknownSymbol
from collectors.exchanges.binance import Endpoints
from collectors.exchanges.bybit import Category, trade_id
from collectors.symbols import MarketType

from .market import START, Dialect, Frame, SymbolMarket, Tick, market_info

__all__ = ["BybitDialect"]

_FUNDING_MS = 8 * 3600 * 1000
_BBO_RESEND_MS = 3000  # orderbook.1: an unchanged book is sent again after 3 s
_SPOT_TRADE_ID0 = 2_280_000_000_000_000_000  # spot ids are decimal, this large (capture)
_MAX_SPOT_ARGS = 10


@dataclass
class _View:
    """The top-N book a topic's subscribers hold (what the deltas were computed against)."""

    depth: int
    u: int
    bids: dict = field(default_factory=dict)  # ticks -> qty
    asks: dict = field(default_factory=dict)
    sent_ms: int = 0  # when the last frame went out (orderbook.1 re-sends an unchanged book)


@dataclass
class _Sym:
    seq: int  # cross sequence (books and trades)
    views: dict = field(default_factory=dict)  # depth -> _View
    ticker: dict | None = None  # last published ticker fields (linear: as strings)
    last_price: int | None = None  # ticks


class BybitDialect(Dialect):
    exchange = "bybit"
    markets = Category
    app_ping = True

    def __init__(self, config, market: Category):
        super().__init__(config, market)
        self._sym: dict[str, _Sym] = {}
        self._depths = (1, 50, 200, 500) if market is Category.LINEAR else (1, 50, 200)

    @classmethod
    def market_of(cls, symbol: str) -> Category:
        info = _info(symbol)
        if info.type is MarketType.SPOT:
            return Category.SPOT
        if info.type is MarketType.SWAP and info.linear:
            return Category.LINEAR
        raise UnknownSymbol(f"{symbol!r}: the simulated bybit serves linear perpetuals and spot only")

    @classmethod
    def native_of(cls, symbol: str) -> str:
        return _info(symbol).native

    def grid(self, base: str) -> tuple[float, float, int]:
        price, tick = START.get(base, (100.0, 0.01))
        return price, tick, 6 if self.market is Category.SPOT else 3

    @property
    def perp(self) -> bool:
        return self.market is Category.LINEAR

    def _state(self, m: SymbolMarket) -> _Sym:
        st = self._sym.get(m.symbol)
        if st is None:
            st = self._sym[m.symbol] = _Sym(seq=random.Random(f"{self.config.seed}:{m.symbol}:seq").randrange(10**10, 10**11))
        return st

    # -- the server -------------------------------------------------------------------------
    def endpoints(self, port: int) -> Endpoints:
        return Endpoints(f"ws://127.0.0.1:{port}/v5/public/{self.market.value}", f"http://127.0.0.1:{port}", "/v5/market/orderbook")

    def ws_route(self, path: str, query: dict) -> set[str] | None:
        return set() if path == f"/v5/public/{self.market.value}" else None

    def _reply(self, conn, op: str, ok: bool, msg: str, req_id) -> Frame:
        body = {"success": ok, "ret_msg": msg, "conn_id": conn.id}
        if self.market is Category.LINEAR or req_id is not None:
            body["req_id"] = "" if req_id is None else req_id
        body["op"] = op
        return Frame("", "", orjson.dumps(body))

    def control(self, conn, data: bytes, source) -> list[Frame]:
        try:
            msg = orjson.loads(data)
            op = msg["op"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return [self._reply(conn, "", False, f"error:request not a json object with op: {data[:80]!r}", None)]
        req_id = msg.get("req_id")
        if op == "ping":
            return [self._reply(conn, "ping", True, "pong", req_id)]
        if op not in ("subscribe", "unsubscribe"):
            return [self._reply(conn, op, False, f"error:unsupported op {op!r}", req_id)]
        args = msg.get("args")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            return [self._reply(conn, op, False, f"error:args must be a list of topics, got {args!r}", req_id)]
        if self.market is Category.SPOT and len(args) > _MAX_SPOT_ARGS:
            return [self._reply(conn, op, False, f"args size >{_MAX_SPOT_ARGS}", req_id)]
        if op == "unsubscribe":
            conn.streams.difference_update(args)
            return [self._reply(conn, op, True, "" if self.market is Category.LINEAR else "unsubscribe", req_id)]
        for t in args:
            if self._topic_market(t, source) is None:
                return [self._reply(conn, op, False, f"error:handler not found,topic:{t}", req_id)]
            if t in conn.streams:
                return [self._reply(conn, op, False, f"error:already subscribed,topic:{t}", req_id)]
        conn.streams.update(args)
        out = [self._reply(conn, op, True, "" if self.market is Category.LINEAR else "subscribe", req_id)]
        for t in args:
            out += self._on_subscribe(t, self._topic_market(t, source))
        return out

    def _topic_market(self, topic: str, source) -> SymbolMarket | None:
        parts = topic.split(".")
        m = source.by_native.get(parts[-1])
        if m is None:
            return None
        if len(parts) == 3 and parts[0] == "orderbook" and parts[1].isdigit() and int(parts[1]) in self._depths:
            return m
        if len(parts) != 2:
            return None
        if parts[0] in ("publicTrade", "tickers") or (parts[0] == "allLiquidation" and self.market is Category.LINEAR):
            return m
        return None

    def _on_subscribe(self, topic: str, m: SymbolMarket) -> list[Frame]:
        """What Bybit sends right after a subscription: the book and the ticker snapshots."""
        kind = topic.split(".")[0]
        if kind == "orderbook":
            view = self._view(m, int(topic.split(".")[1]))
            view.sent_ms = m.now_ms
            return [Frame("", m.symbol, self._book_frame(m, view, "snapshot", sorted(view.bids.items(), reverse=True), sorted(view.asks.items())))]
        if kind == "tickers":
            return [Frame("", m.symbol, self._ticker_frame(m, self._ticker(m), "snapshot"))]
        return []

    def http(self, method, path, query, body, source, now_ms):
        def answer(code: int, msg: str, result) -> tuple[int, dict]:
            return 200, {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": now_ms}

        if method != "GET":
            return 405, {"retCode": 10001, "retMsg": f"method {method} not allowed"}
        if path == "/v5/market/time":
            return answer(0, "OK", {"timeSecond": str(now_ms // 1000), "timeNano": str(now_ms * 1_000_000)})
        if path != "/v5/market/orderbook":
            return 404, {"retCode": 10001, "retMsg": f"no route {path} on the simulated bybit"}
        if query.get("category") != self.market.value:
            return answer(10001, f"params error: category must be {self.market.value!r} here, got {query.get('category')!r}", {})
        m = source.by_native.get(query.get("symbol", ""))
        if m is None:
            return answer(10001, f"params error: symbol invalid: {query.get('symbol')!r}", {})
        try:
            limit = int(query.get("limit", "1"))
        except ValueError:
            limit = -1
        top = 500 if self.market is Category.LINEAR else 200
        if not 1 <= limit <= top:
            return answer(10001, f"params error: limit must be in 1..{top}, got {query.get('limit')!r}", {})
        if self.sent is not None:
            self.sent.snapshots += 1
        return answer(0, "OK", self.rest_book(m, limit, now_ms))

    def rest_book(self, m: SymbolMarket, limit: int, now_ms: int) -> dict:
        bids, asks = m.top(limit)
        st = self._state(m)
        return {"s": m.native, "b": [[m.px(p), m.q(q)] for p, q in bids], "a": [[m.px(p), m.q(q)] for p, q in asks],
                "ts": now_ms, "u": st.seq, "seq": st.seq, "cts": m.now_ms}

    # -- generation -------------------------------------------------------------------------
    def _view(self, m: SymbolMarket, depth: int) -> _View:
        st = self._state(m)
        view = st.views.get(depth)
        if view is None:
            u = random.Random(f"{self.config.seed}:{m.symbol}:{depth}").randrange(10**6, 10**8)
            bids, asks = m.top(depth)
            view = st.views[depth] = _View(depth, u, dict(bids), dict(asks))
        return view

    def _book_frame(self, m: SymbolMarket, view: _View, kind: str, bids, asks) -> bytes:
        now = m.now_ms
        def lv(levels):  # a removed level's size is "0", as Bybit sends it
            return [[m.px(p), m.q(q) if q else "0"] for p, q in levels]

        data = {"s": m.native, "b": lv(bids), "a": lv(asks), "u": view.u, "seq": self._state(m).seq}
        return orjson.dumps({"topic": f"orderbook.{view.depth}.{m.native}", "type": kind, "ts": now, "data": data, "cts": now})

    def _ticker(self, m: SymbolMarket) -> dict:
        """The full ticker of ``m`` now (linear: every field; spot: spot's few)."""
        st = self._state(m)
        bt, bq, at, aq = m.best()
        last = st.last_price if st.last_price is not None else bt
        d = {"symbol": m.native, "lastPrice": m.px(last), "highPrice24h": m.px(last + 150), "lowPrice24h": m.px(last - 150),
             "prevPrice24h": m.px(last - 20), "volume24h": "17573.9120", "turnover24h": "1142118412.9021"}
        if self.market is Category.SPOT:
            d["price24hPcnt"] = "0.0015"
            d["usdIndexPrice"] = m.px((bt + at) // 2)
            return d
        c = m.ctx
        mid = (bt + at) / 2 * m.tick
        mark, index, funding, oi = (c.mark, c.index, c.funding, c.oi) if c is not None else (mid, mid, m.funding, m.oi)
        d.update({
            "tickDirection": "ZeroPlusTick", "markPrice": f"{mark:.{m.decimals + 1}f}", "indexPrice": f"{index:.{m.decimals + 1}f}",
            "openInterest": f"{oi:.3f}", "openInterestValue": f"{oi * mark:.2f}", "fundingIntervalHour": "8",
            "nextFundingTime": str((m.now_ms // _FUNDING_MS + 1) * _FUNDING_MS), "fundingRate": f"{funding:.8f}",
            "bid1Price": m.px(bt), "bid1Size": m.q(bq), "ask1Price": m.px(at), "ask1Size": m.q(aq),
        })
        return d

    def _ticker_frame(self, m: SymbolMarket, data: dict, kind: str) -> bytes:
        st = self._state(m)
        return orjson.dumps({"topic": f"tickers.{m.native}", "type": kind, "data": data, "cs": st.seq, "ts": m.now_ms})

    def encode(self, m: SymbolMarket, tick: Tick) -> list[Frame]:
        st = self._state(m)
        now, sym, native = tick.now_ms, m.symbol, m.native
        out: list[Frame] = []
        for view in st.views.values():
            bids, asks = m.top(view.depth)
            db, da = _changes(view.bids, bids, reverse=True), _changes(view.asks, asks, reverse=False)
            if view.depth == 1:  # snapshots only: at each change of the top, else every 3 s
                if db or da:
                    view.u += 1
                    st.seq += 1
                elif now - view.sent_ms < _BBO_RESEND_MS:
                    continue
                view.sent_ms = now
                top = self._book_frame(m, view, "snapshot", sorted(view.bids.items(), reverse=True), sorted(view.asks.items()))
                out.append(Frame(f"orderbook.1.{native}", sym, top, depth=True))
                continue
            if db or da:
                view.u += 1
                st.seq += 1
                out.append(Frame(f"orderbook.{view.depth}.{native}", sym, self._book_frame(m, view, "delta", db, da), depth=True))
        if tick.trades:
            rows, ids = [], []
            for t in tick.trades:
                st.seq += 1
                i = str(uuid.UUID(int=m.rng.getrandbits(128))) if self.market is Category.LINEAR else str(_SPOT_TRADE_ID0 + t.serial)
                rows.append({"T": now, "s": native, "S": "Buy" if t.buyer else "Sell", "v": m.q(t.qty), "p": m.px(t.price),
                             "L": "PlusTick" if t.buyer else "MinusTick", "i": i, "BT": False, "RPI": False, "seq": st.seq})
                ids.append(trade_id(i))
                st.last_price = t.price
            topic = f"publicTrade.{native}"
            out.append(Frame(topic, sym, orjson.dumps({"topic": topic, "type": "snapshot", "ts": now, "data": rows}), trade_ids=tuple(ids)))
        topic = f"tickers.{native}"
        full = self._ticker(m)
        if self.market is Category.SPOT:
            if tick.trades or now % 1000 < self.config.tick_ms:
                out.append(Frame(topic, sym, self._ticker_frame(m, full, "snapshot")))
        else:
            prev = st.ticker or {}
            changed = {k: v for k, v in full.items() if prev.get(k) != v and k not in _SLOW_FIELDS}
            if tick.ctx is not None:
                changed.update({k: full[k] for k in _SLOW_FIELDS})
            if changed and prev:
                out.append(Frame(topic, sym, self._ticker_frame(m, {"symbol": native, **changed}, "delta")))
            st.ticker = {**prev, **changed} if prev else full
        liq = tick.liquidation
        if liq is not None and self.market is Category.LINEAR:
            topic = f"allLiquidation.{native}"
            row = {"T": now, "s": native, "S": "Buy" if liq.sell else "Sell", "v": m.q(liq.qty), "p": m.px(liq.avg)}
            out.append(Frame(topic, sym, orjson.dumps({"topic": topic, "type": "snapshot", "ts": now, "data": [row]})))
        return out


# fields a linear ticker delta carries only when the 1 s context changed (mark, funding, OI)
_SLOW_FIELDS = ("markPrice", "indexPrice", "openInterest", "openInterestValue", "nextFundingTime", "fundingRate")


def _changes(view: dict, top: list, *, reverse: bool) -> list:
    """Levels of ``top`` that differ from ``view`` (qty 0: left the top N); updates ``view``."""
    new = dict(top)
    out = [(p, 0.0) for p in view if p not in new]
    out += [(p, q) for p, q in top if view.get(p) != q]
    view.clear()
    view.update(new)
    out.sort(reverse=reverse)
    return out



def _info(symbol: str):
    return market_info("bybit", symbol)
