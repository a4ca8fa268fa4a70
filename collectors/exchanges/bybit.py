"""Bybit v5 public websocket: topics, subscribe/ping messages and the frame parser.

Endpoints (one connection per category)::

    wss://stream.bybit.com/v5/public/linear     USDT/USDC contracts -> bybit:BTC/USDT:USDT, bybit:BTC/USDC:USDC
    wss://stream.bybit.com/v5/public/spot       spot                -> bybit:BTC/USDT
    wss://stream.bybit.com/v5/public/inverse    inverse contracts   -> bybit:BTC/USD:BTC (replay; the
                                                                       collector takes linear and spot)

Ids are named as ccxt names them (``collectors.symbols.Markets.wire_info``: the registry,
else Bybit's naming rules), so a capture of any listed symbol replays.

Topics handled (``<name>.<native id>``; orderbook depth 1/50/200/1000, and the older 500)::

    publicTrade.BTCUSDT        -> Trade
    orderbook.200.BTCUSDT      -> DepthSnapshot (type=snapshot) / DepthDiff (type=delta)
    tickers.BTCUSDT            -> Mark, OpenInterest (contracts: linear, inverse), Quote
                                  (contracts' bid1/ask1, only for symbols without a book on
                                  the connection); spot tickers carry none of these
    allLiquidation.BTCUSDT     -> Liquidation (contracts; also the deprecated liquidation.<id>)
    kline.1.BTCUSDT            -> nothing (bars come from trades or the REST backfill)
    {"op": "subscribe"|"ping"|"pong", ...} acks      -> nothing (failed subscribe raises)

Order book rule (Bybit's, not Binance's; https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook):
every ``snapshot`` replaces the book and its ``u`` restarts the chain (``u == 1``: Bybit
restarted its book service, "overwrite the locally saved orderbook"); each ``delta`` must
carry ``u == previous u + 1``. ``orderbook.1`` (linear, inverse and spot) sends snapshots
only, re-sent with the same ``u`` after 3 s without a change; depths 50/200/1000 (and the
older 500; spot 200 is pushed every 200 ms, linear every 100 ms) send one snapshot per
subscription, then deltas. A delta with ``u == 1`` on a book further along (a restart the
venue announced as a delta) breaks the chain instead of being taken for a duplicate. A
delta becomes ``DepthDiff(first_update_id=u, update_id=u, prev_update_id=u-1)``, which is Binance's spot
chain rule (``U == last u + 1``; the first diff spans ``snapshot u + 1``), so the generic
``collectors/book.BookBuilder`` built with ``Market.SPOT`` syncs Bybit books and writes
every ``sequence_break``/``resync`` gap. One thing differs from Binance's REST snapshots
(which a synced builder ignores): a Bybit snapshot frame *is* the book, whenever it comes,
and diffs buffered before it are older. ``apply_to_book`` feeds it to the builder as such
(``BookBuilder.load_snapshot``). The parser only counts chain breaks per topic
(``breaks``), so every gap comes from one place.
``seq`` (cross sequence, shared with trades) is not part of the book rule.

Quotes: the best bid/offer of a symbol comes from its order book when the connection
carries one (any depth; ``orderbook.1`` is Bybit's BBO stream): the book builder emits a
``Quote`` at every change of the top (``BookBuilder(quotes=True)``, ``VenueFeed.book_quotes``),
stamped with the update's ``ts`` and ``u``. Linear ``tickers`` bid1/ask1 (a 100 ms sample
of the same top, with the ticker's ``cs``) give quotes only for symbols without a book
topic on the connection, so one symbol's quotes never mix the two.

One book per symbol and connection, fed by one topic: a connection may carry several
depths of a symbol (hftbacktest's Bybit collector records ``orderbook.1``, ``.50`` and
``.500`` of every symbol), each with its own ``u`` chain, so mixing them would break the
chain at every frame. ``book_natives`` names the books the connection carries, as
``<depth>.<native id>`` (the topic's tail; ``book_native`` of a frame) or a bare native id
(depth not known): the replayer scans the whole capture first, so the deepest depth of
each symbol feeds its book from the first frame and the others are ignored, in every file
of a capture alike (a book continued from an earlier file's state keeps its chain). Where
no depth is known, the deepest topic seen so far feeds it: frames of a shallower topic
after a deeper one are ignored (the deeper topic's first snapshot replaces the book).
When ``book_natives`` names a symbol's ``orderbook.1`` beside a deeper depth, its quotes
come from ``orderbook.1`` (Bybit's BBO stream, pushed every 10 ms where a 200-level book
is pushed every 100 ms), a ``Quote`` at every change of the best level with its ``u`` and
``ts``, and its book must not quote (``book_quotes(symbol)`` is False).

Tickers: a ``snapshot`` carries every field, a ``delta`` only the changed ones, so deltas
merge into the last full ticker of the symbol (deltas before the first snapshot are
counted in ``dropped`` and ignored). Mark rows come out when a frame touches markPrice,
indexPrice, fundingRate or nextFundingTime; open-interest rows when it touches
openInterest or openInterestValue.

Event times, each table's declared clock (``tickstore.TsClock``): trades ``T`` and
liquidations ``T`` (transaction time); books, their quotes and tickers ``ts`` (event time:
"the timestamp that the system generates the data", as Binance's ``E``; a book's ``cts``,
the matching engine's time, is its transaction time and is absent from older captures, so
it is not used). All ms on the wire, ns out.

Sides: trades ``S`` is the taker's side (``Buy`` = buyer aggressor, +1); liquidations ``S``
is the *position's* side ("When you receive a Buy update, this means that a long position
has been liquidated"), i.e. the forced order sells: -1 in ``liquidations``. Any other value
is an ``InvalidValue``, never a guessed side.
"""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass, field

import orjson

from collectors.events import (
    DepthDiff,
    DepthSnapshot,
    Liquidation,
    Mark,
    OpenInterest,
    Quote,
    Trade,
)
from collectors.fields import finite, future_ms_to_ns, int64, ms_to_ns, nonneg, positive
from collectors.symbols import MARKETS, MarketType, SymbolNotFound, inverse_oi_value
from tickstore import TradeKind

from . import InvalidValue, MalformedFrame, UnknownStream, UnknownSymbol, VenueErrorFrame

__all__ = [
    "EXCHANGE",
    "Category",
    "Channel",
    "BybitParser",
    "parse",
    "endpoint",
    "topic",
    "subscribe_messages",
    "ping_message",
    "is_control_frame",
    "trade_id",
    "apply_to_book",
    "claims",
    "book_native",
    "category_of_url",
    "infer_category",
]

EXCHANGE = "bybit"
_MAX_ARGS = 10  # Bybit spot refuses a subscribe request with more than 10 args

_BLOCK = int(TradeKind.BLOCK)


class Category(enum.Enum):
    """A v5 public websocket endpoint (Bybit's ``category``)."""

    LINEAR = "linear"
    SPOT = "spot"
    INVERSE = "inverse"  # coin-margined contracts (replay; the collector takes linear and spot)

    @property
    def market_type(self) -> MarketType:
        return MarketType.SPOT if self is Category.SPOT else MarketType.SWAP


class Channel(enum.Enum):
    """What a collector can subscribe to; values are Bybit topic prefixes."""

    TRADES = "publicTrade"
    BOOK = "orderbook"
    TICKERS = "tickers"  # mark/index/funding/open interest (linear), last price (spot)
    LIQUIDATIONS = "allLiquidation"


def endpoint(category: Category, *, testnet: bool = False) -> str:
    host = "stream-testnet.bybit.com" if testnet else "stream.bybit.com"
    return f"wss://{host}/v5/public/{category.value}"


def topic(channel: Channel, native: str, *, depth: int = 200) -> str:
    """``topic(Channel.BOOK, "BTCUSDT", depth=50)`` -> ``"orderbook.50.BTCUSDT"``."""
    if channel is Channel.BOOK:
        if depth not in (1, 50, 200, 500, 1000):
            raise ValueError(f"bybit orderbook depth must be 1, 50, 200, 500 or 1000, got {depth!r}")
        return f"orderbook.{depth}.{native}"
    return f"{channel.value}.{native}"


def subscribe_messages(topics: list[str], *, op: str = "subscribe") -> list[dict]:
    """``{"op":"subscribe","args":[...]}`` messages (for ``SessionConfig.subscribe``),
    at most 10 topics each (Bybit's limit)."""
    if op not in ("subscribe", "unsubscribe"):
        raise ValueError(f"op must be 'subscribe' or 'unsubscribe', got {op!r}")
    if isinstance(topics, str) or not topics:
        raise ValueError(f"topics must be a non-empty list of topic names, got {topics!r}")
    return [{"op": op, "args": list(topics[i : i + _MAX_ARGS])} for i in range(0, len(topics), _MAX_ARGS)]


def ping_message() -> dict:
    """Application ping (``SessionConfig.ping_payload``): Bybit recommends one every 20 s."""
    return {"op": "ping"}


def claims(msg) -> bool:
    """Whether a decoded frame has Bybit v5's public shape: ``{"topic": ..., "data": ...}``
    or a control answer ``{"op": ..., "success"/"ret_msg": ...}``."""
    if not isinstance(msg, dict):
        return False
    if isinstance(msg.get("topic"), str):
        return "data" in msg
    return "op" in msg and ("success" in msg or "ret_msg" in msg or "conn_id" in msg)


def book_native(raw) -> str | None:
    """``"<depth>.<native id>"`` of an ``orderbook.<depth>.<id>`` frame (a byte scan, no JSON),
    else None: what ``BybitParser.book_natives`` takes (see the module docstring)."""
    at = raw.find(b'"topic":"orderbook.')
    if at < 0:
        return None
    end = raw.find(b'"', at + 19)
    topic = raw[at + 19 : end].decode("ascii", "replace")  # "<depth>.<id>"
    depth, _, native = topic.partition(".")
    return topic if native and depth.isdigit() else None


def _booked(book_natives) -> tuple[frozenset, dict, frozenset]:
    """(native ids, {native id: depth of the topic that feeds its book}, native ids whose
    ``orderbook.1`` rides beside a deeper book) of ``book_natives``."""
    natives, depths, level1 = set(), {}, set()
    for item in book_natives:
        depth, dot, native = str(item).partition(".")
        if dot and depth.isdigit() and native:
            natives.add(native)
            depths[native] = max(depths.get(native, 0), int(depth))
            if depth == "1":
                level1.add(native)
        else:
            natives.add(str(item))
    return frozenset(natives), depths, frozenset(n for n in level1 if depths[n] > 1)


def category_of_url(url: str) -> Category | None:
    """``wss://stream.bybit.com/v5/public/linear`` -> LINEAR (REST: ``category=spot``)."""
    if not url or "bybit" not in url:
        return None
    for c in Category:
        if url.rstrip("/").endswith(f"/public/{c.value}") or f"category={c.value}" in url:
            return c
    return None


def infer_category(raw) -> Category | None:
    """The category of a frame from its fields alone; None when they cannot tell.

    Order books look the same everywhere; what differs: derivative trade ids are UUIDs
    (spot: decimal), derivative tickers carry ``markPrice``/``fundingRate`` (spot:
    ``usdIndexPrice``), liquidations exist for derivatives only; among derivatives, inverse
    ids end in ``USD`` (``BTCUSD``, futures ``BTCUSDH25``), linear ones do not. Ids that
    only contracts use (``BTCPERP``, ``BTCUSDT-14AUG26``) are linear whatever the topic.
    """
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not claims(msg) or "topic" not in msg:
        return None
    kind, _, rest = msg["topic"].partition(".")
    native = rest.rpartition(".")[2]
    if _LINEAR_ONLY.match(native):
        return Category.LINEAR
    derivative = Category.INVERSE if _INVERSE_ID.match(native) else Category.LINEAR
    data = msg.get("data")
    if kind == "publicTrade" and isinstance(data, list) and data and isinstance(data[0], dict):
        i = str(data[0].get("i", ""))
        return Category.SPOT if i.isdigit() else derivative if i else None
    if kind == "tickers" and isinstance(data, dict):
        if any(k in data for k in ("markPrice", "fundingRate", "openInterest", "nextFundingTime")):
            return derivative
        if "usdIndexPrice" in data:
            return Category.SPOT
    if kind in ("allLiquidation", "liquidation"):
        return derivative
    return None


# ids only a linear contract has (a USDC perpetual, a dated USDT/USDC future); inverse ids
_LINEAR_ONLY = re.compile(r"^[A-Z0-9]+(PERP|-\d{2}[A-Z]{3}\d{2})$")
_INVERSE_ID = re.compile(r"^[A-Z0-9]+USD([FGHJKMNQUVXZ]\d{2})?$")


def is_control_frame(raw: bytes) -> bool:
    """Pongs and subscription acks (``{"op":...}``, no ``topic``): not market data for the
    session's stale-feed watchdog (``SessionConfig.is_control``)."""
    return b'"topic"' not in raw


def trade_id(i: str) -> int:
    """The int64 trade id of Bybit's ``i``.

    Spot ids are decimal (``"2280000001739247417"``); linear ids are UUIDs
    (``"a9188a0a-82bc-50de-be60-03eedbe3cdd7"``), folded to their first 63 bits so the
    same print always maps to the same id (the ``trades`` key de-duplicates on it).
    """
    if i.isdigit():
        return int(i)
    try:
        return uuid.UUID(i).int >> 65
    except ValueError:
        raise ValueError(f"bybit trade id {i!r} is neither decimal nor a UUID") from None


_SIDES = {"Buy": 1, "Sell": -1}


def _side(value, what: str) -> int:
    """+1 for ``Buy``, -1 for ``Sell``; anything else is not a side."""
    side = _SIDES.get(value) if type(value) is str else None
    if side is None:
        raise InvalidValue(f"{what}={value!r}: expected 'Buy' or 'Sell'")
    return side


def _rate(value, what: str) -> float:
    """A funding rate; ``""`` (a dated future's ticker: no funding) is NaN."""
    return float("nan") if value == "" or value is None else finite(value, what)


def _excerpt(raw) -> str:
    text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "replace")
    return repr(text[:160] + ("..." if len(text) > 160 else ""))


@dataclass
class _Book:
    last_u: int = -1  # -1: no frame seen yet


@dataclass
class BybitParser:
    """Turns raw frames of one connection into events; keeps per-topic state.

    One parser per websocket connection (state is per topic, and topics repeat across
    categories: ``BTCUSDT`` is both spot and linear).
    """

    category: Category
    markets: object = field(default=MARKETS, repr=False)
    book_natives: frozenset = frozenset()  # books this connection carries: "<depth>.<native>" or native ids
    dropped: int = 0  # ticker deltas that arrived before their snapshot
    breaks: dict = field(default_factory=dict)  # topic -> deltas whose u did not follow the last u
    _books: dict = field(default_factory=dict, repr=False)
    _tickers: dict = field(default_factory=dict, repr=False)
    _symbols: dict = field(default_factory=dict, repr=False)
    _depth: dict = field(default_factory=dict, repr=False)  # native id -> depth of the topic feeding its book

    def __post_init__(self):
        self._booked, self._book_depth, self._bbo = _booked(self.book_natives)
        self._depth.update(self._book_depth)
        self._bbo_last: dict = {}  # native -> best (bid px, bid qty, ask px, ask qty) last quoted

    def book_quotes(self, symbol: str) -> bool:
        """Whether the book of tickstore ``symbol`` quotes its top (``BookBuilder(quotes=)``):
        False when the connection carries the symbol's ``orderbook.1`` beside a deeper book,
        whose quotes this parser takes from ``orderbook.1`` (Bybit's 10 ms BBO stream)."""
        for native in self._bbo:
            try:
                if self.symbol(native) == symbol:
                    return False
            except UnknownSymbol:
                continue
        return True

    def symbol(self, native: str) -> str:
        try:
            return self._symbols[native]
        except KeyError:
            pass
        try:
            sym = self.markets.wire_symbol(EXCHANGE, native, category=self.category.value)
        except SymbolNotFound as exc:
            raise UnknownSymbol(str(exc)) from None
        self._symbols[native] = sym
        return sym

    def parse(self, raw: bytes | str, recv_ns: int) -> list:
        """Events in one frame (``[]`` for acks, pongs and klines).

        Raises ``collectors.exchanges.BadFrame`` subclasses: ``MalformedFrame`` (not JSON,
        missing field), ``UnknownStream`` (unknown topic), ``UnknownSymbol``,
        ``VenueErrorFrame`` (a refused subscribe); each message quotes the frame's start.
        """
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedFrame(f"bybit: not JSON ({exc}): {_excerpt(raw)}") from None
        if type(msg) is not dict:
            raise MalformedFrame(f"bybit: expected a JSON object: {_excerpt(raw)}")
        t = msg.get("topic")
        try:
            if t is None:
                return self._control(msg, raw)
            kind = t.split(".", 1)[0]
            if kind == "publicTrade":
                return self._trades(msg, recv_ns)
            if kind == "orderbook":
                return self._book(msg, recv_ns)
            if kind == "tickers":
                return self._ticker(msg, recv_ns)
            if kind in ("allLiquidation", "liquidation"):
                return self._liquidations(msg, recv_ns)
            if kind == "kline":
                return []  # bars come from trades or REST backfill, never from this stream
            raise UnknownStream(f"bybit: unknown topic {t!r}: {_excerpt(raw)}")
        except InvalidValue as exc:
            raise InvalidValue(f"bybit: {exc} in {_excerpt(raw)}") from None
        except (MalformedFrame, UnknownStream, UnknownSymbol, VenueErrorFrame):
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise MalformedFrame(f"bybit: {type(exc).__name__} {exc} in {_excerpt(raw)}") from None

    # -- control ----------------------------------------------------------------------
    def _control(self, msg, raw) -> list:
        # {"success":true,"ret_msg":"","conn_id":"d8bu1olkndm7crnfs1e0-j6akw","req_id":"","op":"subscribe"}
        # {"success":true,"ret_msg":"pong","conn_id":"...","op":"ping"}   (spot: {"op":"pong",...})
        if "op" not in msg:
            raise UnknownStream(f"bybit: frame has neither 'topic' nor 'op': {_excerpt(raw)}")
        if msg.get("success") is False:
            raise VenueErrorFrame(f"bybit {self.category.value}: {msg['op']} refused: {msg.get('ret_msg')!r}: {_excerpt(raw)}")
        return []

    # -- trades -----------------------------------------------------------------------
    def _trades(self, msg, recv_ns: int) -> list:
        # {"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1786310819681,"data":[
        #   {"T":1786310819680,"s":"BTCUSDT","S":"Sell","v":"0.004","p":"65114.20","L":"MinusTick",
        #    "i":"a9188a0a-82bc-50de-be60-03eedbe3cdd7","BT":false,"RPI":false,"seq":753843954913}]}
        # S is the taker side: Buy = buyer aggressor. BT: a block trade (an OTC print reported
        # to the tape) -> kind BLOCK; the rest are order-book trades (tickstore.TradeKind),
        # RPI (retail price improvement) fills included: they are order-book trades.
        # https://bybit-exchange.github.io/docs/v5/websocket/public/trade
        out = []
        for x in msg["data"]:
            out.append(
                Trade(
                    self.symbol(x["s"]),
                    ms_to_ns(x["T"], recv_ns, "T"),
                    recv_ns,
                    int64(trade_id(x["i"]), "i"),
                    positive(x["p"], "p"),
                    nonneg(x["v"], "v"),
                    _side(x["S"], "S"),
                    _BLOCK if x.get("BT") else 0,
                )
            )
        return out

    # -- order book -------------------------------------------------------------------
    def _book(self, msg, recv_ns: int) -> list:
        # {"topic":"orderbook.200.BTCUSDT","type":"delta","ts":1786310818130,"data":{"s":"BTCUSDT",
        #   "b":[["65095.30","0.005"],["65093.10","0"]],"a":[["65116.60","0"]],"u":15076953,
        #   "seq":753843913870},"cts":1786310818129}
        # (snapshot: same shape, type "snapshot", up to 200 levels a side, best first; ts is
        # the frame's "ts" (event time), see the module docstring)
        d = msg["data"]
        native = d["s"]
        depth = int(msg["topic"].split(".", 2)[1])
        known = self._book_depth.get(native)
        if known is not None:
            if depth == 1 and native in self._bbo:
                return self._bbo_quote(msg, d, native, recv_ns)
            if depth != known:
                return []  # another depth of a symbol whose book comes from its deepest topic
        else:
            deepest = self._depth.get(native, 0)
            if depth < deepest:
                return []  # the symbol's deeper book on this connection says all this one does
            if depth > deepest:
                self._depth[native] = depth
        sym = self.symbol(native)
        u = int64(d["u"], "u")
        ts = ms_to_ns(msg["ts"], recv_ns, "ts")
        bids = [(nonneg(p, "price"), nonneg(q, "size")) for p, q in d["b"]]
        asks = [(nonneg(p, "price"), nonneg(q, "size")) for p, q in d["a"]]
        kind = msg["type"]
        if kind not in ("snapshot", "delta"):
            raise MalformedFrame(f"bybit: orderbook frame of type {kind!r}, expected 'snapshot' or 'delta'")
        book = self._books.setdefault(msg["topic"], _Book())
        if kind == "snapshot":
            book.last_u = u
            return [DepthSnapshot(sym, ts, recv_ns, u, bids, asks)]
        if book.last_u >= 0 and u != book.last_u + 1:
            self.breaks[msg["topic"]] = self.breaks.get(msg["topic"], 0) + 1
        book.last_u = u
        return [DepthDiff(sym, ts, recv_ns, u, u, u - 1, bids, asks)]

    def _bbo_quote(self, msg, d, native: str, recv_ns: int) -> list:
        """An ``orderbook.1`` frame of a symbol whose book is a deeper topic: a ``Quote`` when
        the best bid/offer changed (the 3 s keep-alive repeat changes nothing); an empty side
        is NaN."""
        nan = float("nan")
        last = self._bbo_last.get(native)
        b, a = d["b"], d["a"]
        best = [
            nonneg(b[0][0], "price") if b else nan, nonneg(b[0][1], "size") if b else nan,
            nonneg(a[0][0], "price") if a else nan, nonneg(a[0][1], "size") if a else nan,
        ]
        if msg["type"] == "delta":  # level 1 is snapshots only today; older spot streams sent deltas
            if last is None:
                return []  # no snapshot yet: the other side is not known
            for i, side in ((0, b), (2, a)):
                if not side:
                    best[i : i + 2] = last[i : i + 2]  # that side did not change
                elif best[i + 1] == 0.0:
                    best[i : i + 2] = nan, nan  # the best level left; the next one is not in a level-1 stream
        best = tuple(best)
        if last is not None and all(x == y or (x != x and y != y) for x, y in zip(best, last)):
            return []
        self._bbo_last[native] = best
        return [Quote(self.symbol(native), ms_to_ns(msg["ts"], recv_ns, "ts"), recv_ns, int64(d["u"], "u"), *best)]

    # -- tickers ----------------------------------------------------------------------
    _MARK_FIELDS = ("markPrice", "indexPrice", "fundingRate", "nextFundingTime")
    _OI_FIELDS = ("openInterest", "openInterestValue")

    def _ticker(self, msg, recv_ns: int) -> list:
        # https://bybit-exchange.github.io/docs/v5/websocket/public/ticker: "This topic utilises
        # the snapshot field and delta field. If a response param is not found in the message,
        # then its value has not changed." Spot tickers are snapshots without mark/funding.
        # {"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT","lastPrice":"65114.30",
        #   "markPrice":"65117.44","indexPrice":"65137.76","openInterest":"59891.732",
        #   "openInterestValue":"3899996265.01","fundingIntervalHour":"8","nextFundingTime":"1786320000000",
        #   "fundingRate":"0.0001","bid1Price":"65114.20","bid1Size":"5.954","ask1Price":"65114.30",
        #   "ask1Size":"10.470",...},"cs":753843907770,"ts":1786310817883}
        # {"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT","bid1Price":"65114.20",
        #   "bid1Size":"6.054","ask1Price":"65114.30","ask1Size":"10.486"},"cs":753843907770,"ts":1786310817883}
        # Dated futures (USDT/USDC futures, inverse futures) have no funding: "fundingRate":"",
        # "nextFundingTime":"0" or "" -> rate NaN, next funding time 0 (as Binance's delivery marks).
        d = msg["data"]
        native = d["symbol"]
        if msg.get("type") == "snapshot":
            state = dict(d)
            self._tickers[native] = state
        else:
            state = self._tickers.get(native)
            if state is None:
                self.dropped += 1
                return []
            state.update(d)
        if self.category is Category.SPOT:
            return []  # spot tickers carry no mark, funding or open interest
        sym = self.symbol(native)
        ts = ms_to_ns(msg["ts"], recv_ns, "ts")
        out: list = []
        if any(k in d for k in self._MARK_FIELDS) and "markPrice" in state and "indexPrice" in state:
            nxt = state.get("nextFundingTime")
            out.append(
                Mark(
                    sym,
                    ts,
                    recv_ns,
                    finite(state["markPrice"], "markPrice"),
                    finite(state["indexPrice"], "indexPrice"),
                    _rate(state.get("fundingRate"), "fundingRate"),
                    future_ms_to_ns(nxt, recv_ns, "nextFundingTime") if nxt not in (None, "") else 0,
                )
            )
        if any(k in d for k in self._OI_FIELDS) and "openInterest" in state:
            oi = nonneg(state["openInterest"], "openInterest")
            if self.category is Category.INVERSE:
                # openInterest counts contracts of 1 USD ("BTCUSD(inverse) is USD",
                # https://bybit-exchange.github.io/docs/v5/market/open-interest): valued in
                # the quote currency by the one rule of every path (collectors.symbols);
                # openInterestValue is in the coin, not the quote: not used
                value = inverse_oi_value(sym, oi)
            elif "openInterestValue" in state:
                value = nonneg(state["openInterestValue"], "openInterestValue")
            else:
                value = float("nan")
            out.append(OpenInterest(sym, ts, oi, value))
        if (
            native not in self._depth  # with a book on the connection, quotes come from the book
            and native not in self._booked
            and any(k in d for k in ("bid1Price", "bid1Size", "ask1Price", "ask1Size"))
            and "bid1Price" in state
        ):
            out.append(
                Quote(
                    sym,
                    ts,
                    recv_ns,
                    int64(msg.get("cs", 0), "cs"),
                    nonneg(state["bid1Price"], "bid1Price"),
                    nonneg(state["bid1Size"], "bid1Size"),
                    nonneg(state["ask1Price"], "ask1Price"),
                    nonneg(state["ask1Size"], "ask1Size"),
                )
            )
        return out

    # -- liquidations -----------------------------------------------------------------
    def _liquidations(self, msg, recv_ns: int) -> list:
        # https://bybit-exchange.github.io/docs/v5/websocket/public/all-liquidation
        # {"topic":"allLiquidation.ROSEUSDT","type":"snapshot","ts":1739502303204,
        #  "data":[{"T":1739502302929,"s":"ROSEUSDT","S":"Sell","v":"20000","p":"0.04499"}]}
        # S is the side of the liquidated *position*: "Buy" = a long was liquidated, i.e.
        # a forced sell (-1 in the liquidations table); "Sell" = a short, a forced buy (+1).
        # p is the bankruptcy price, v the executed size; ts is T.
        # Deprecated liquidation.<sym> (https://bybit-exchange.github.io/docs/v5/websocket/public/liquidation):
        # data is one object {"updatedTime","symbol","side","size","price"} (the table of
        # that page names the time "updateTime"), same side convention.
        data = msg["data"]
        rows = data if isinstance(data, list) else [data]
        out = []
        for x in rows:
            if "S" in x:
                native, t, side, price, size = x["s"], x["T"], x["S"], x["p"], x["v"]
            else:
                native, side, price, size = x["symbol"], x["side"], x["price"], x["size"]
                t = x["updatedTime"] if "updatedTime" in x else x["updateTime"]
            out.append(
                Liquidation(self.symbol(native), ms_to_ns(t, recv_ns, "T"), recv_ns, -_side(side, "S"),
                            positive(price, "p"), nonneg(size, "v"))
            )
        return out


_DEFAULT_PARSERS: dict[Category, BybitParser] = {}


def parse(raw: bytes | str, recv_ns: int, category: Category) -> list:
    """One frame -> events through a process-wide parser per category (see ``BybitParser``).

    Book and ticker state lives in that parser: a process that opens two connections of
    one category must give each its own ``BybitParser``.
    """
    p = _DEFAULT_PARSERS.get(category)
    if p is None:
        p = _DEFAULT_PARSERS[Category(category)] = BybitParser(Category(category))
    return p.parse(raw, recv_ns)


def apply_to_book(book, event) -> list:
    """Feed one Bybit depth event to a ``collectors.book.BookBuilder`` (``Market.SPOT`` rule).

    A snapshot *is* the book (Bybit: "on a snapshot, reset your local book"), so it is
    loaded whole (``BookBuilder.load_snapshot``): the book is valid from the snapshot's
    time on, its grid point is emitted, and diffs buffered before it are dropped. Against
    a synced book::

        same u              the venue re-sending an unchanged book (orderbook.1 does every
                            3 s): nothing changes
        u == book u + 1     the next state (orderbook.1 streams are snapshots only): seamless
        any other u         updates between are unknown (u == 1: Bybit restarted its book
                            service; a jump: updates skipped) -> ``resync`` gap, no rows for
                            the span; except on a snapshot-only stream (the book never saw
                            a delta), where each snapshot is the whole story and u may jump

    A *delta* with ``u == 1`` on a book further along is Bybit's restart announced as a
    delta: the chain is broken (``sequence_break`` gap; the collector resubscribes), never
    taken for a duplicate of an early update.

    Returns the builder's ``BookTop``/``Gap`` rows.
    """
    if type(event) is DepthDiff:
        if event.update_id == 1 and book.synced and book.update_id > 1:
            return book.break_chain(event, f"bybit restarted its book: a delta with u=1 after u={book.update_id}")
        return book.on_diff(event)
    if isinstance(event, DepthSnapshot):
        if book.synced:
            u, last = event.update_id, book.update_id
            if u == last:
                return []
            continuous = u == last + 1 or (book.stats.diffs == 0 and u > last)
            return book.load_snapshot(event, broken=not continuous)
        return book.load_snapshot(event)
    return book.on_diff(event)
