"""Binance spot, USD-M and COIN-M: streams, symbols and frame parsers.

API used by the live session and the replayer::

    from collectors.exchanges.binance import Market, Channel, parse, parse_snapshot
    streams = stream_names("BTC/USDT:USDT", [Channel.TRADES, Channel.DEPTH], market=Market.USDM)
    url = ws_url(Market.USDM, streams)               # combined-stream URL (or subscribe_message)
    events = parse(raw_bytes, recv_ns, Market.USDM)  # -> [Trade | Quote | DepthDiff | ...]
    rest = depth_snapshot_url("BTC/USDT:USDT")       # GET it, then:
    snap = parse_snapshot(body, recv_ns, Market.USDM, native_symbol="BTCUSDT")

``parse`` raises a ``collectors.exchanges.BadFrame`` subclass for frames it cannot use
(malformed JSON, unknown stream, unmappable symbol, oversized, venue error) and returns
``[]`` for control frames (subscription acks). One frame never yields events of two
symbols, except the market-wide ``!markPrice@arr`` streams.

Times (each table's declared clock, ``tickstore.TsClock``): ``ts`` is the frame's exchange
event time ``E`` (quotes, books, diffs, mark), except trades, agg trades and
liquidations, whose ``ts`` is the trade time ``T``, and klines (the bar open ``t``). Spot
``bookTicker`` and spot partial-book frames carry no exchange time at all: a parser that
also sees the symbol's diff-depth stream stamps them with the ``E`` of the first depth
frame whose last update id ``u`` reaches their update id (the book change they show is
part of that depth event; the time is never earlier than the change, so nothing looks
ahead). It holds them until that frame arrives, at most ``hold_ms`` of receive time;
without a depth stream (or past ``hold_ms``) their ``ts`` is the receive time and
``recv_ts`` equals it (documented loss, not a guess). ``drain()`` releases what is held at
the end of the input; ``save_state``/``restore_state`` carry it across a restart.

Trade kinds: futures trades carry ``X`` (``MARKET``, ``INSURANCE_FUND``, ``ADL``, ``NA``),
stored as ``kind`` (``tickstore.TradeKind``: MARKET, LIQUIDATION, ADL, OTHER; an unknown
value is OTHER); spot trades are market trades. ``aggTrade`` frames become ``AggTrade``
events (table ``agg_trades``, with the first/last trade ids), never trades. Closed klines
(``x`` true) become ``Bar`` events (table ``ohlcv_<interval>``, ``1w`` as ``7d``; ``1M``
and open klines are skipped), or nothing at all with ``klines=False``.

Settlements: a ``markPrice`` frame whose next funding time ``T`` moved past the previous
one (with ``E`` at or after it) means the previous funding time settled: a ``Funding``
event at that time with the last predicted rate ``r`` streamed before it and the interval
since the settlement before (else the one to the next). The venue's settled history
(REST) can differ in the last digits (2023-04-05 00:00 BTCUSDT: 2.754e-5 streamed, 2.760e-5
settled); a REST backfill of the day replaces it (``collectors.backfill`` writes only
differences, as a new version).

Symbols: ``binance:<ccxt unified symbol>`` whatever the market; the unified symbol tells
the markets apart (``BTC/USDT`` spot, ``BTC/USDT:USDT`` USD-M perpetual,
``BTC/USDT:USDT-240927`` USD-M delivery, ``BTC/USD:BTC`` COIN-M perpetual,
``BTC/USD:BTC-240927`` COIN-M delivery). Spot ids are split on a list of known quote
assets; ``register_symbol`` adds any pair the list gets wrong. Binance.US speaks the same
protocol (spot only) but is another venue: ``BinanceParser(Market.SPOT, exchange="binanceus")``
makes ``binanceus:BTC/USDT`` symbols, ``ENDPOINTS_US`` are its hosts. The id rules are
``collectors.symbols``' (the one mapping); the functions here are their wire-side names.
"""

from __future__ import annotations

import bisect
import enum
import functools
import re
from collections import deque
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import orjson

from collectors.events import AggTrade, Bar, DepthDiff, DepthSnapshot, Funding, Liquidation, Mark, Quote, Trade
from collectors.symbols import (
    BINANCE_FAMILY,
    BinanceMarket,
    binance_market,
    binance_native,
    binance_unified,
    SymbolNotFound,
    is_coinm_id,
    register_binance,
)
from collectors.fields import finite, future_ms_to_ns, int64, ms_to_ns, nonneg, positive

from tickstore import TradeKind

from . import BadFrame, InvalidValue, MalformedFrame, OversizedFrame, UnknownStream, UnknownSymbol, VenueErrorFrame

__all__ = [
    "EXCHANGE",
    "depth_frame_kind",
    "Market",
    "Channel",
    "Endpoints",
    "ENDPOINTS",
    "ENDPOINTS_US",
    "TRADE_KINDS",
    "MAX_FRAME_BYTES",
    "BinanceParser",
    "parse",
    "parse_snapshot",
    "infer_market",
    "claims",
    "market_of_url",
    "native_symbol_of_url",
    "stream_names",
    "ws_url",
    "subscribe_message",
    "is_control_frame",
    "depth_snapshot_url",
    "to_native",
    "to_unified",
    "to_tickstore",
    "from_tickstore",
    "market_of_symbol",
    "register_symbol",
]

EXCHANGE = "binance"

# Binance drops websocket frames above 1 MiB itself in practice; a REST depth snapshot of
# 5000 levels is ~300 kB, so 4 MiB is generous for both while still catching garbage.
MAX_FRAME_BYTES = 4 << 20


Market = BinanceMarket  # SPOT, USDM, COINM: they differ in hosts, ids and depth sequencing


class Channel(enum.Enum):
    """What can be subscribed per symbol; the value is the Binance stream suffix (config
    files name a channel by its lower-case name or by this value)."""

    TRADES = "trade"
    AGG_TRADES = "aggTrade"  # table agg_trades (its own ids: first/last trade ids kept)
    QUOTES = "bookTicker"
    DEPTH = "depth@100ms"  # diffs for BookBuilder
    DEPTH_RT = "depth@0ms"  # futures only: every update, undocumented but served
    # partial books (self-contained top-N, no sync needed): every frame is a book row at
    # its exchange time (or on the grid, see CollectorConfig.partial_book_rows)
    BOOK5 = "depth5@100ms"
    BOOK10 = "depth10@100ms"
    BOOK20 = "depth20@100ms"
    BOOK5_STD = "depth5"  # the market's standard pace: 250 ms futures, 1000 ms spot
    BOOK10_STD = "depth10"
    BOOK20_STD = "depth20"
    BOOK5_500MS = "depth5@500ms"  # futures only
    BOOK10_500MS = "depth10@500ms"
    BOOK20_500MS = "depth20@500ms"
    MARK = "markPrice@1s"  # futures only: mark, index, predicted funding (and settlements)
    LIQUIDATIONS = "forceOrder"  # futures only
    KLINES = "kline_1m"  # closed 1-minute klines -> ohlcv_1m

    @property
    def futures_only(self) -> bool:
        return self in (Channel.DEPTH_RT, Channel.MARK, Channel.LIQUIDATIONS) or self.value.endswith("@500ms")

    @property
    def partial_levels(self) -> int | None:
        """Levels of a partial-book channel (5, 10, 20); None for other channels."""
        m = _PARTIAL.fullmatch(self.value)
        return int(m.group(1)) if m else None


_PARTIAL = re.compile(r"depth(5|10|20)(?:@\d+ms)?")
_STREAM_DEPTH = re.compile(rb'"stream"\s*:\s*"[^"@]*@(depth[^"]*)"')


def depth_frame_kind(raw: bytes) -> str | None:
    """``"diff"``, ``"partial"`` (a depth5/10/20 frame: the whole top-N book) or None for a
    raw frame, as the parser routes it (by the combined stream's name; a bare
    ``depthUpdate`` event is a diff), from the bytes alone (a cheap scan, no JSON)."""
    m = _STREAM_DEPTH.search(raw, 0, 200)
    if m is not None:
        kind = m.group(1).decode("ascii", "replace")
        if kind == "depth" or kind.startswith("depth@"):
            return "diff"
        return "partial" if _PARTIAL.fullmatch(kind) else None
    if b'"stream"' not in raw[:200] and b'"e":"depthUpdate"' in raw[:200]:
        return "diff"
    return None


@dataclass(frozen=True)
class Endpoints:
    """Where a market lives; tests and the simulator pass their own (127.0.0.1)."""

    ws: str  # base of wss://host[:port]; combined streams are at <ws>/stream?streams=
    rest: str  # base of https://host
    depth_path: str  # REST order-book snapshot path


ENDPOINTS = {
    Market.SPOT: Endpoints("wss://stream.binance.com:9443", "https://api.binance.com", "/api/v3/depth"),
    Market.USDM: Endpoints("wss://fstream.binance.com", "https://fapi.binance.com", "/fapi/v1/depth"),
    Market.COINM: Endpoints("wss://dstream.binance.com", "https://dapi.binance.com", "/dapi/v1/depth"),
}

#: Binance.US (``binanceus``): spot only, the same protocol as Binance spot.
ENDPOINTS_US = {
    Market.SPOT: Endpoints("wss://stream.binance.us:9443", "https://api.binance.us", "/api/v3/depth"),
}

_SNAPSHOT_LIMITS = {
    Market.SPOT: range(1, 5001),
    Market.USDM: (5, 10, 20, 50, 100, 500, 1000),
    Market.COINM: (5, 10, 20, 50, 100, 500, 1000),
}


# -- symbols -------------------------------------------------------------------------------
# One mapping: the id rules live in collectors.symbols; these are the wire-side spellings.
# Their errors are ``UnknownSymbol`` (a ``BadFrame``: a frame naming an id the rules cannot
# map is counted as a bad frame, never stops a feed).
def _wire(fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SymbolNotFound as exc:
            raise UnknownSymbol(str(exc)) from None

    return call


@_wire
def register_symbol(native: str, unified: str, market: Market) -> None:
    """Declare a mapping the suffix rules cannot derive (e.g. a new spot quote asset)."""
    register_binance(native, unified, market)


def _unprefixed(unified: str) -> str:
    venue, sep, rest = unified.partition(":")
    return rest if sep and venue in BINANCE_FAMILY else unified


@_wire
def market_of_symbol(unified: str) -> Market:
    """``BTC/USDT`` -> SPOT, ``BTC/USDT:USDT`` -> USDM (settle = quote), ``BTC/USD:BTC`` -> COINM."""
    return binance_market(_unprefixed(unified))


@_wire
def to_native(unified: str, market: Market | None = None) -> str:
    """ccxt unified (or ``binance:``/``binanceus:``-prefixed tickstore) symbol -> Binance id."""
    return binance_native(_unprefixed(unified), market)


@_wire
def to_unified(native: str, market: Market) -> str:
    """Binance id -> ccxt unified symbol, e.g. (``BTCUSD_PERP``, COINM) -> ``BTC/USD:BTC``."""
    return binance_unified(native, market)


@_wire
def to_tickstore(native: str, market: Market, exchange: str = EXCHANGE) -> str:
    """Binance id -> tickstore symbol, e.g. ``binance:BTC/USDT:USDT`` (``exchange="binanceus"``
    for Binance.US, spot only)."""
    if exchange not in BINANCE_FAMILY:
        raise UnknownSymbol(f"{exchange!r} does not speak Binance's protocol; one of {list(BINANCE_FAMILY)}")
    if exchange != EXCHANGE and Market(market) is not Market.SPOT:
        raise UnknownSymbol(f"{exchange}: {native!r} would be a {Market(market).value} market; {exchange} lists spot markets only")
    return f"{exchange}:{binance_unified(native, market)}"


@_wire
def from_tickstore(symbol: str) -> tuple[str, Market]:
    """Tickstore symbol ``binance:...`` / ``binanceus:...`` -> (Binance id, market)."""
    venue, _, unified = symbol.partition(":")
    if venue not in BINANCE_FAMILY or not unified:
        raise UnknownSymbol(f"{symbol!r} is not a binance tickstore symbol like 'binance:BTC/USDT:USDT'")
    market = binance_market(unified)
    if venue != EXCHANGE and market is not Market.SPOT:
        raise UnknownSymbol(f"{symbol!r}: {venue} lists spot markets only")
    return binance_native(unified, market), market


# -- subscriptions ---------------------------------------------------------------------------
def stream_names(symbol: str, channels, *, market: Market | None = None) -> list[str]:
    """Stream names for one symbol (unified, tickstore or native with ``market``).

    >>> stream_names("BTC/USDT:USDT", [Channel.TRADES, Channel.DEPTH])
    ['btcusdt@trade', 'btcusdt@depth@100ms']
    """
    if "/" in symbol:
        unified = symbol.removeprefix(f"{EXCHANGE}:")
        market = market or market_of_symbol(unified)
        native = to_native(unified, market)
    elif market is None:
        raise ValueError(f"native id {symbol!r} needs market=Market.SPOT|USDM|COINM")
    else:
        native = symbol.upper()
    out = []
    for ch in channels:
        ch = Channel(ch)
        if ch.futures_only and market is Market.SPOT:
            raise ValueError(f"channel {ch.name} ({ch.value}) does not exist on Binance spot (symbol {symbol!r})")
        out.append(f"{native.lower()}@{ch.value}")
    return out


def ws_url(market: Market, streams: list[str], *, endpoints: Endpoints | None = None) -> str:
    """Combined-stream URL; frames then arrive as ``{"stream": ..., "data": ...}``."""
    if not streams:
        raise ValueError("ws_url needs at least one stream name")
    if len(streams) > 1024:
        raise ValueError(f"Binance allows 1024 streams per connection, got {len(streams)}")
    base = (endpoints or ENDPOINTS[market]).ws
    return f"{base}/stream?streams={'/'.join(streams)}"


def is_control_frame(raw: bytes) -> bool:
    """Answers to (un)subscribe requests (``{"result":null,"id":1}``) and error objects: not
    market data for the session's stale-feed watchdog (``SessionConfig.is_control``)."""
    head = raw[:32]
    return b'"result"' in head or head.startswith(b'{"code"')


def subscribe_message(streams: list[str], *, request_id: int = 1, unsubscribe: bool = False) -> bytes:
    """The JSON text frame that (un)subscribes ``streams`` on an open connection."""
    method = "UNSUBSCRIBE" if unsubscribe else "SUBSCRIBE"
    return orjson.dumps({"method": method, "params": list(streams), "id": request_id})


def depth_snapshot_url(
    symbol: str, *, market: Market | None = None, limit: int = 1000, endpoints: Endpoints | None = None
) -> str:
    """REST order-book snapshot URL (``lastUpdateId``) for a unified/tickstore symbol."""
    unified = symbol.removeprefix(f"{EXCHANGE}:")
    market = market or market_of_symbol(unified)
    if limit not in _SNAPSHOT_LIMITS[market]:
        raise ValueError(f"depth limit {limit} is not accepted by Binance {market.value}")
    ep = endpoints or ENDPOINTS[market]
    return f"{ep.rest}{ep.depth_path}?symbol={to_native(unified, market)}&limit={limit}"


def market_of_url(url: str) -> Market | None:
    """Market of a Binance websocket or REST URL (host or path), None if it does not say."""
    parts = urlsplit(url)
    host, path = parts.hostname or "", parts.path
    if host.startswith(("fstream", "fapi")) or path.startswith("/fapi/"):
        return Market.USDM
    if host.startswith(("dstream", "dapi")) or path.startswith("/dapi/"):
        return Market.COINM
    if host.startswith(("stream.binance", "api.binance", "data-stream.binance")) or path.startswith("/api/v3/"):
        return Market.SPOT
    return None


def native_symbol_of_url(url: str) -> str | None:
    """The ``symbol=`` query parameter of a REST URL, if any."""
    values = parse_qs(urlsplit(url).query).get("symbol")
    return values[0].upper() if values else None


def infer_market(raw: bytes) -> Market | None:
    """Which market a frame comes from, from its fields alone; None if it cannot tell.

    Futures frames carry ``pu`` (depth), ``X`` (trade), ``e`` on bookTicker, or are
    markPrice/forceOrder; spot trades carry ``M``. COIN-M ids end ``USD_PERP``/``USD_<date>``
    or the frame carries ``ps``; a REST snapshot with ``E`` is futures, without is spot.
    """
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not claims(msg):
        return None
    data = msg.get("data", msg) if "stream" in msg else msg
    if isinstance(data, list):
        data = data[0] if data and isinstance(data[0], dict) else {}
    if not isinstance(data, dict):
        return None
    if "o" in data and isinstance(data["o"], dict):  # forceOrder nests the order
        data = {**data["o"], "e": data.get("e")}
    sym = data.get("s") or data.get("symbol") or ""
    coinm = "ps" in data or "pair" in data or is_coinm_id(str(sym))
    e = data.get("e")
    if "lastUpdateId" in data and "stream" not in msg:
        if "E" in data or "T" in data:
            return Market.COINM if coinm else Market.USDM
        return Market.SPOT
    if e in ("trade", "aggTrade"):  # spot trades carry the "ignore" field M, futures never
        spot = "M" in data
        futures = not spot
    elif e == "depthUpdate":
        futures = "pu" in data
        spot = not futures
    else:
        futures = e in ("bookTicker", "markPriceUpdate", "forceOrder")
        # spot bookTicker: no "e", prices as strings (Bybit's books carry "b" lists)
        spot = e is None and "u" in data and isinstance(data.get("b"), str) and "s" in data
    if futures or (coinm and not spot):
        return Market.COINM if coinm else Market.USDM
    if spot:
        return Market.SPOT
    return None


def claims(msg) -> bool:
    """Whether a decoded frame has a Binance shape at all (combined-stream envelope, an
    event with ``e``, a REST depth body, a subscription ack, a raw spot bookTicker).

    Bybit frames carry ``topic``/``op`` and Hyperliquid frames ``channel``: never Binance.
    """
    if not isinstance(msg, dict) or "topic" in msg or "channel" in msg or "op" in msg:
        return False
    if "stream" in msg:
        return "data" in msg
    return (
        "e" in msg
        or "lastUpdateId" in msg
        or ("result" in msg and "id" in msg)
        or ("u" in msg and isinstance(msg.get("b"), str) and "s" in msg)
    )


# -- parsers -------------------------------------------------------------------------------
_FLOAT_MEMO = 1 << 17  # level strings remembered per parser (of <= 32 chars: ~15 MB at most)


def _excerpt(raw) -> str:
    text = raw[:160] if isinstance(raw, (bytes, str)) else raw
    return repr(text) + ("..." if len(raw) > 160 else "")


#: Binance's trade type ``X`` (futures ``trade`` frames) -> ``kind``; other values -> OTHER
TRADE_KINDS = {
    "MARKET": TradeKind.MARKET,
    "INSURANCE_FUND": TradeKind.LIQUIDATION,
    "ADL": TradeKind.ADL,
    "NA": TradeKind.OTHER,
}
_KIND_OF = {k: int(v) for k, v in TRADE_KINDS.items()}
_OTHER = int(TradeKind.OTHER)
# kline interval -> ohlcv table suffix (tickstore tables are ohlcv_<n><s|m|h|d>); months: none
_KLINE_FREQ = {i: i for i in "1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d".split()} | {"1w": "7d"}
_NS_PER_HOUR = 3_600_000_000_000
_STATE_FORMAT = 1


def _taker(m) -> int:
    """The taker side of a trade from ``m`` ("Is the buyer the market maker?"): true means
    the seller took the bid, -1; false +1. Anything but a JSON boolean is refused."""
    if m is True:
        return -1
    if m is False:
        return 1
    raise InvalidValue(f"m={m!r}: expected true or false (is the buyer the maker)")


def _order_side(side) -> int:
    """A liquidation order's side ``S``: BUY +1 (a short was liquidated), SELL -1."""
    if side == "BUY":
        return 1
    if side == "SELL":
        return -1
    raise InvalidValue(f"S={side!r}: expected 'BUY' or 'SELL'")


class BinanceParser:
    """Raw frame -> events for one market, in receive order (see the module docstring).

    Accepts combined-stream envelopes (``{"stream","data"}``) and raw ``/ws`` frames. Raw
    frames cannot tell a futures partial book from a diff (same shape); use combined
    streams for partial books. Feed it every frame of a connection in order: spot quote
    times and settlements come from the frames before. ``exchange``: ``binance`` or
    ``binanceus`` (spot only); ``klines``: store closed klines (True) or ignore kline
    frames (False; never bad frames either way); ``hold_ms``: longest a spot quote waits
    for the depth frame that dates it.
    """

    def __init__(self, market: Market, *, max_frame_bytes: int = MAX_FRAME_BYTES, exchange: str = EXCHANGE,
                 klines: bool = True, hold_ms: int = 2000):
        self.market = Market(market)
        if exchange not in BINANCE_FAMILY:
            raise ValueError(f"exchange must be one of {list(BINANCE_FAMILY)}, got {exchange!r}")
        if exchange != EXCHANGE and self.market is not Market.SPOT:
            raise ValueError(f"{exchange} lists spot markets only, not {self.market.value}")
        if hold_ms < 0:
            raise ValueError(f"hold_ms must be >= 0, got {hold_ms}")
        self.exchange = exchange
        self.klines = bool(klines)
        self.hold_ns = int(hold_ms) * 1_000_000
        self.max_frame_bytes = int(max_frame_bytes)
        self._symbols: dict[str, str] = {}
        self._by_event = {
            "trade": self._trade,
            "aggTrade": self._agg_trade,
            "depthUpdate": self._diff,
            "bookTicker": self._quote,
            "markPriceUpdate": self._mark,
            "forceOrder": self._liquidation,
            "kline": self._kline,
        }
        self._by_stream: dict[str, tuple] = {}  # stream name -> (handler, native id)
        self._floats: dict = {}  # price/qty string -> float(string), see _levels
        # spot exchange time (``_dated``): per symbol the (U, u, E) of recent depth frames and
        # the quotes / partial books waiting for theirs; settlements: per symbol the next
        # funding time, its last predicted rate and the last settlement seen
        self._ranges: dict[str, deque] = {}
        self._held: dict[str, deque] = {}
        self._funding: dict[str, list] = {}

    # The dispatch is two dict lookups; handlers build the events directly so a frame
    # costs one orjson.loads plus one dataclass per event.
    def parse(self, raw: bytes | str, recv_ns: int) -> list:
        """One raw frame -> events. Raises ``BadFrame`` subclasses; ``[]`` for acks."""
        if len(raw) > self.max_frame_bytes:
            raise OversizedFrame(f"frame of {len(raw)} bytes exceeds max_frame_bytes={self.max_frame_bytes}")
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedFrame(f"not JSON ({exc}): {_excerpt(raw)}") from None
        if type(msg) is not dict:
            raise MalformedFrame(f"expected a JSON object, got {type(msg).__name__}: {_excerpt(raw)}")
        stream = msg.get("stream")
        try:
            if stream is not None:
                data = msg["data"]
                route = self._by_stream.get(stream)
                if route is None:
                    route = self._route(stream, raw)
                handler, sym_part = route
                if type(data) is list:
                    out = []
                    for item in data:
                        out += handler(item, recv_ns, sym_part)
                    return out
                return handler(data, recv_ns, sym_part)
            e = msg.get("e")
            if e is not None:
                handler = self._by_event.get(e)
                if handler is None:
                    raise UnknownStream(f"unknown Binance event type {e!r}: {_excerpt(raw)}")
                return handler(msg, recv_ns, None)
            if "result" in msg and "id" in msg:  # {"result":null,"id":1}: subscription ack
                return []
            if "error" in msg or "code" in msg:
                raise VenueErrorFrame(f"Binance error frame: {_excerpt(raw)}")
            if "u" in msg and "b" in msg and "s" in msg:  # raw spot bookTicker (no "e")
                return self._quote(msg, recv_ns, None)
            raise UnknownStream(f"frame matches no Binance stream: {_excerpt(raw)}")
        except InvalidValue as exc:
            raise InvalidValue(f"{exc} in {_excerpt(raw)}") from None
        except BadFrame:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedFrame(f"{type(exc).__name__} {exc} in {_excerpt(raw)}") from None

    def parse_snapshot(self, raw: bytes | str, recv_ns: int, *, native_symbol: str | None = None) -> DepthSnapshot:
        """REST ``GET .../depth`` body -> ``DepthSnapshot`` (``update_id`` = ``lastUpdateId``).

        Spot and USD-M bodies do not name the symbol: pass ``native_symbol``.
        """
        # spot: {"lastUpdateId":50093239218,"bids":[["61837.63000000","3.78826000"],...],"asks":[...]}
        # usdm: {"lastUpdateId":5123107852948,"E":1723161256501,"T":1723161256493,"bids":[["61800.20","2.909"],...
        # coinm: {"lastUpdateId":1007198635033,"E":...,"T":...,"symbol":"BTCUSD_PERP","pair":"BTCUSD","bids":...
        if len(raw) > self.max_frame_bytes:
            raise OversizedFrame(f"snapshot of {len(raw)} bytes exceeds max_frame_bytes={self.max_frame_bytes}")
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedFrame(f"REST snapshot is not JSON ({exc}): {_excerpt(raw)}") from None
        if type(d) is not dict or "lastUpdateId" not in d:
            if type(d) is dict and ("code" in d or "msg" in d):
                raise VenueErrorFrame(f"Binance REST error instead of a snapshot: {_excerpt(raw)}")
            raise MalformedFrame(f"REST snapshot without lastUpdateId: {_excerpt(raw)}")
        native = d.get("symbol") or native_symbol
        if not native:
            raise MalformedFrame(
                f"REST snapshot (lastUpdateId={d['lastUpdateId']}) names no symbol; pass native_symbol="
            )
        try:
            ts = ms_to_ns(d["E"], recv_ns, "E") if "E" in d else recv_ns
            return DepthSnapshot(
                self._symbol(native), ts, recv_ns, int64(d["lastUpdateId"], "lastUpdateId"),
                self._levels(d["bids"]), self._levels(d["asks"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedFrame(f"{type(exc).__name__} {exc} in REST snapshot {_excerpt(raw)}") from None

    # -- internals ---------------------------------------------------------------------------
    def _levels(self, levels) -> list:
        """``[["61800.20", "2.909"], ...]`` -> ``[(61800.2, 2.909), ...]``.

        Depth frames are ~70 levels each and the same price and quantity strings come back
        frame after frame (the USD-M capture: 0.9M strings, 33k distinct), so conversions are
        memoised: a dict hit costs about half a ``float()``. Exact, since ``float`` is a pure
        function of the string. Only strings of up to 32 characters are kept, never NaN (a
        shared NaN object would equal itself as a dict key), and the memo is cleared when it
        holds ``_FLOAT_MEMO`` entries, so garbage frames cannot grow it. Malformed levels
        raise as ``float()``/unpacking would (``MalformedFrame`` upstream); a price or size
        that is negative or not finite raises ``InvalidValue`` (checked on a memo miss: the
        memo only holds checked values).
        """
        memo = self._floats
        if len(memo) > _FLOAT_MEMO:
            memo.clear()
        get = memo.get
        out = []
        append = out.append
        for p, q in levels:
            fp = get(p)
            if fp is None:
                fp = nonneg(p, "price")
                if type(p) is str and len(p) <= 32:
                    memo[p] = fp
            fq = get(q)
            if fq is None:
                fq = nonneg(q, "qty")
                if type(q) is str and len(q) <= 32:
                    memo[q] = fq
            append((fp, fq))
        return out

    def _symbol(self, native: str) -> str:
        sym = self._symbols.get(native)
        if sym is None:
            sym = self._symbols[native] = to_tickstore(native, self.market, self.exchange)
        return sym

    def _route(self, stream: str, raw) -> tuple:
        """(handler, lower-case native id or None) of a stream name, cached per name."""
        sym_part, _, kind = stream.partition("@")
        if sym_part.startswith("!"):  # market-wide, e.g. !markPrice@arr@1s
            kind, sym_part = sym_part[1:].partition("@")[0], None
        if len(self._by_stream) > 10_000:  # garbage stream names must not grow the cache forever
            self._by_stream.clear()
        route = self._by_stream[stream] = (self._stream_handler(kind, raw), sym_part)
        return route

    def _stream_handler(self, kind: str, raw):
        if kind in ("trade", "aggTrade", "bookTicker", "forceOrder"):
            handler = self._by_event[kind]
        elif kind == "depth" or kind.startswith("depth@"):
            handler = self._diff
        elif _PARTIAL.fullmatch(kind):
            handler = self._partial
        elif kind == "markPrice" or kind.startswith("markPrice@"):
            handler = self._mark
        elif kind.startswith("kline_"):
            handler = self._kline
        else:
            raise UnknownStream(f"unknown Binance stream kind {kind!r}: {_excerpt(raw)}")
        return handler

    def _trade(self, d, recv_ns, _):
        # spot:  {"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000",
        #         "q":"0.02000000","T":1723161255342,"m":true,"M":true}
        # futures: {"e":"trade","E":1723161256322,"T":1723161256322,"s":"BTCUSDT","t":5266583935,
        #         "p":"61800.30","q":"0.006","X":"MARKET","m":false}
        # m = buyer is the maker, i.e. the seller was the aggressor. X: the trade type (futures).
        x = d.get("X")
        return [
            Trade((self._symbols.get(d["s"]) or self._symbol(d["s"])), ms_to_ns(d["T"], recv_ns, "T"), recv_ns, int64(d["t"], "t"),
                  positive(d["p"], "p"), nonneg(d["q"], "q"), _taker(d["m"]),
                  0 if x is None or x == "MARKET" else _KIND_OF.get(x, _OTHER))
        ]

    def _agg_trade(self, d, recv_ns, _):
        # {"e":"aggTrade","E":1626992741575,"a":16599292,"s":"CTKUSDT","p":"1.01100","q":"10",
        #  "f":23961322,"l":23961322,"T":1626992741421,"m":false}
        first, last = int64(d["f"], "f"), int64(d["l"], "l")
        if last < first:
            raise InvalidValue(f"aggTrade last trade id l={last} is before the first f={first}")
        return [
            AggTrade((self._symbols.get(d["s"]) or self._symbol(d["s"])), ms_to_ns(d["T"], recv_ns, "T"), recv_ns,
                     int64(d["a"], "a"), first, last, positive(d["p"], "p"), nonneg(d["q"], "q"), _taker(d["m"]))
        ]

    def _quote(self, d, recv_ns, _):
        # futures: {"e":"bookTicker","u":5123107839020,"s":"BTCUSDT","b":"61800.20","B":"2.507",
        #           "a":"61800.30","A":"2.510","T":1723161256316,"E":1723161256317}
        # spot (no exchange time at all: dated by the depth stream, see _dated):
        #           {"u":50093421613,"s":"BTCUSDT","b":"61685.99000000","B":"1.25869000",
        #            "a":"61686.00000000","A":"2.44816000"}
        e = d.get("E")
        q = Quote(
            (self._symbols.get(d["s"]) or self._symbol(d["s"])),
            ms_to_ns(e, recv_ns, "E") if e is not None else recv_ns,
            recv_ns,
            int64(d["u"], "u"),
            nonneg(d["b"], "b"),
            nonneg(d["B"], "B"),
            nonneg(d["a"], "a"),
            nonneg(d["A"], "A"),
        )
        return [q] if e is not None else self._dated(q)

    def _diff(self, d, recv_ns, _):
        # spot:    {"e":"depthUpdate","E":1723161255208,"s":"BTCUSDT","U":50093239189,"u":50093239202,
        #           "b":[["61737.63000000","0.00000000"],...],"a":[["61837.64000000","1.54698000"],...]}
        # futures: {"e":"depthUpdate","E":1723161256299,"T":1723161256298,"s":"BTCUSDT",
        #           "U":5123107832006,"u":5123107837557,"pu":5123107831937,"b":[["58710.20","0.014"],...],"a":[...]}
        # coinm adds "ps":"BTCUSD". Spot has no "pu": prev_update_id is -1.
        diff = DepthDiff(
            (self._symbols.get(d["s"]) or self._symbol(d["s"])),
            ms_to_ns(d["E"], recv_ns, "E"),
            recv_ns,
            int64(d["U"], "U"),
            int64(d["u"], "u"),
            int64(d.get("pu", -1), "pu"),
            self._levels(d["b"]),
            self._levels(d["a"]),
        )
        if self.market is Market.SPOT:
            return self._depth_time(diff)
        return [diff]

    def _partial(self, d, recv_ns, stream_symbol):
        # spot (no symbol, no time: the symbol comes from the stream name, the time as for
        # spot quotes):
        #   {"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}
        # futures (same shape as a diff, but a whole top-N book; ts = E):
        #   {"e":"depthUpdate","E":1571889248277,"T":1571889248276,"s":"BTCUSDT","U":390497796,
        #    "u":390497878,"pu":390497794,"b":[["7403.89","0.002"],...],"a":[["7405.96","3.340"],...]}
        if "lastUpdateId" in d:
            if stream_symbol is None:
                raise MalformedFrame(f"spot partial book without a stream name: {_excerpt(orjson.dumps(d))}")
            return self._dated(
                DepthSnapshot(
                    self._symbol(stream_symbol.upper()), recv_ns, recv_ns, int64(d["lastUpdateId"], "lastUpdateId"),
                    self._levels(d["bids"]), self._levels(d["asks"]),
                )
            )
        return [DepthSnapshot((self._symbols.get(d["s"]) or self._symbol(d["s"])), ms_to_ns(d["E"], recv_ns, "E"), recv_ns,
                              int64(d["u"], "u"), self._levels(d["b"]), self._levels(d["a"]))]

    def _mark(self, d, recv_ns, _):
        # {"e":"markPriceUpdate","E":1680652701000,"s":"BTCUSDT","p":"28146.50000000",
        #  "i":"28159.04955556","P":"28155.67869839","r":"0.00010000","T":1680681600000}
        # Delivery contracts send "r":"" (no funding): stored as NaN, no settlements.
        r = d["r"]
        sym = self._symbols.get(d["s"]) or self._symbol(d["s"])
        mark = Mark(
            sym,
            ms_to_ns(d["E"], recv_ns, "E"),
            recv_ns,
            finite(d["p"], "p"),
            finite(d["i"], "i"),
            finite(r, "r") if r != "" else float("nan"),
            future_ms_to_ns(d["T"], recv_ns, "T"),
        )
        if r == "" or not d["T"]:
            return [mark]
        state = self._funding.get(sym)
        if state is None:
            self._funding[sym] = [mark.next_funding_ts, mark.funding_rate, None]
            return [mark]
        due, rate, settled = state
        if mark.next_funding_ts > due and mark.ts >= due:
            # the funding time ``due`` passed: it settled at the last rate predicted for it
            interval = (due - settled) if settled is not None else (mark.next_funding_ts - due)
            state[2] = due
            state[0], state[1] = mark.next_funding_ts, mark.funding_rate
            return [mark, Funding(sym, due, rate, interval / _NS_PER_HOUR)]
        if mark.next_funding_ts >= due:
            state[0], state[1] = mark.next_funding_ts, mark.funding_rate
        else:  # an earlier span than the state (replayed again): it starts over
            self._funding[sym] = [mark.next_funding_ts, mark.funding_rate, None]
        return [mark]

    def _liquidation(self, d, recv_ns, _):
        # {"e":"forceOrder","E":1568014460893,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT","f":"IOC",
        #  "q":"0.014","p":"9910","ap":"9910","X":"FILLED","l":"0.014","z":"0.014","T":1568014460893}}
        # https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/Liquidation-Order-Streams
        # (COIN-M adds "ps":"BTCUSD" in o and counts q in contracts). S is the liquidation
        # order's side: SELL = a long was liquidated (-1). The liquidations table holds what
        # was executed (schema ``liquidations``, every path): price = the average fill price
        # ap, qty = the filled quantity z (the order's limit price p and size q are not
        # kept; COIN-M docs: p 9425.5, ap 9496.5). An update that filled nothing (z = 0) is
        # no liquidation print: no row. ts is o.T.
        o = d["o"]
        qty = nonneg(o["z"], "z")
        if qty == 0:
            return []
        return [
            Liquidation(self._symbol(o["s"]), ms_to_ns(o["T"], recv_ns, "T"), recv_ns, _order_side(o["S"]),
                        positive(o["ap"], "ap"), qty)
        ]

    def _kline(self, d, recv_ns, _):
        # {"e":"kline","E":1638747660000,"s":"BTCUSDT","k":{"t":1638747600000,"T":1638747659999,
        #  "s":"BTCUSDT","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020","h":"0.0025",
        #  "l":"0.0015","v":"1000","n":100,"x":false,"q":"1.0000","V":"500","Q":"0.500","B":"123456"}}
        # Only a closed kline ("x": true) is a bar; the others are its running updates.
        if not self.klines:
            return []
        k = d["k"]
        freq = _KLINE_FREQ.get(k["i"])
        if k["x"] is not True or freq is None:
            if type(k["x"]) is not bool:
                raise InvalidValue(f"k.x={k['x']!r}: expected true or false (is this kline closed)")
            return []
        return [
            Bar(self._symbols.get(d["s"]) or self._symbol(d["s"]), ms_to_ns(k["t"], recv_ns, "t"),
                positive(k["o"], "o"), positive(k["h"], "h"), positive(k["l"], "l"), positive(k["c"], "c"),
                nonneg(k["v"], "v"), freq)
        ]

    # -- spot exchange time --------------------------------------------------------------------
    def _depth_time(self, diff: DepthDiff) -> list:
        """Note a spot depth frame's ids and time; release what it dates."""
        sym = diff.symbol
        ranges = self._ranges.get(sym)
        if ranges is None:
            ranges = self._ranges[sym] = deque(maxlen=256)
        if ranges and diff.update_id <= ranges[-1][1]:
            if diff.update_id >= ranges[0][0]:
                return [diff]  # a duplicate or older frame dates nothing new
            ranges.clear()  # before everything remembered: an earlier span again, start over
        ranges.append((diff.first_update_id, diff.update_id, diff.ts))
        held = self._held.get(sym)
        out = [diff]
        while held and held[0].update_id <= diff.update_id:
            ev = held.popleft()
            ev.ts = diff.ts
            out.append(ev)
        return out + (self._expired(held, diff.recv_ns) if held else [])

    def _dated(self, ev) -> list:
        """A spot quote or partial book (no exchange time): dated now if a depth frame seen
        already covers its update id, held for the next one if the depth stream runs, else
        receive time."""
        ranges = self._ranges.get(ev.symbol)
        if not ranges:
            return [ev]  # no depth stream for this symbol: receive time (ev.ts == ev.recv_ns)
        uid = ev.update_id
        if uid <= ranges[-1][1]:
            if uid >= ranges[0][0]:
                i = bisect.bisect_left(ranges, uid, key=lambda r: r[1])
                ev.ts = ranges[i][2]
            return [ev]  # else older than every depth frame remembered: receive time
        held = self._held.get(ev.symbol)
        if held is None:
            held = self._held[ev.symbol] = deque()
        held.append(ev)
        return self._expired(held, ev.recv_ns)

    def _expired(self, held: deque, now_ns: int) -> list:
        """Held events no depth frame dated within ``hold_ms``: receive time."""
        out = []
        while held and (now_ns - held[0].recv_ns > self.hold_ns or len(held) > 100_000):
            out.append(held.popleft())  # its ts is still its receive time
        return out

    def drain(self) -> list:
        """The end of the input: every held spot quote / partial book, at receive time."""
        out = [ev for held in self._held.values() for ev in held]
        self._held.clear()
        out.sort(key=lambda ev: ev.recv_ns)
        return out

    # -- state across runs ---------------------------------------------------------------------
    def save_state(self) -> dict:
        """What the next run needs to continue exactly (JSON-able): held spot events, the
        recent depth ids per symbol, each symbol's pending funding time and rate."""
        held = []
        for q in (ev for h in self._held.values() for ev in h):
            if type(q) is Quote:
                held.append(["quote", q.symbol, q.recv_ns, q.update_id, q.bid_px, q.bid_qty, q.ask_px, q.ask_qty])
            else:
                held.append(["book", q.symbol, q.recv_ns, q.update_id, q.bids, q.asks])
        return {
            "format": _STATE_FORMAT, "exchange": self.exchange, "market": self.market.value, "held": held,
            "ranges": {s: [list(r) for r in list(rs)[-16:]] for s, rs in self._ranges.items()},
            "funding": {s: list(v) for s, v in self._funding.items()},
        }

    def restore_state(self, state: dict) -> None:
        """Continue from ``save_state``'s dict; ``ValueError`` for another market's state."""
        got = (state.get("format"), state.get("exchange"), state.get("market"))
        if got != (_STATE_FORMAT, self.exchange, self.market.value):
            raise ValueError(f"parser state of (format, exchange, market)={got} does not fit "
                             f"{(_STATE_FORMAT, self.exchange, self.market.value)}")
        self._held.clear()
        for item in state["held"]:
            if item[0] == "quote":
                _, sym, recv, uid, bp, bq, ap, aq = item
                ev = Quote(sym, recv, recv, uid, bp, bq, ap, aq)
            else:
                _, sym, recv, uid, bids, asks = item
                ev = DepthSnapshot(sym, recv, recv, uid, [tuple(x) for x in bids], [tuple(x) for x in asks])
            self._held.setdefault(sym, deque()).append(ev)
        self._ranges = {s: deque((tuple(r) for r in rs), maxlen=256) for s, rs in state["ranges"].items()}
        self._funding = {s: list(v) for s, v in state["funding"].items()}


def _parser(market: Market) -> BinanceParser:
    return BinanceParser(Market(market))


def parse(raw: bytes | str, recv_ns: int, market: Market) -> list:
    """One websocket frame on its own -> events (see ``BinanceParser.parse``). Nothing of
    earlier frames is known: spot quotes keep their receive time, no settlement is seen;
    feed a ``BinanceParser`` every frame in order for those."""
    return _parser(market).parse(raw, recv_ns)


def parse_snapshot(
    raw: bytes | str, recv_ns: int, market: Market, *, native_symbol: str | None = None
) -> DepthSnapshot:
    """One REST depth body -> ``DepthSnapshot`` (see ``BinanceParser.parse_snapshot``)."""
    return _parser(market).parse_snapshot(raw, recv_ns, native_symbol=native_symbol)
