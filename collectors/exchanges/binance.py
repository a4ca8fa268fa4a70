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

Times: ``ts`` is the frame's exchange event time ``E``, except trades, whose ``ts`` is the
trade time ``T``. Spot ``bookTicker`` and spot partial-book frames carry no exchange time
at all, so their ``ts`` is the receive time (documented loss, not a guess).

Symbols: ``binance:<ccxt unified symbol>`` whatever the market; the unified symbol tells
the markets apart (``BTC/USDT`` spot, ``BTC/USDT:USDT`` USD-M perpetual,
``BTC/USDT:USDT-240927`` USD-M delivery, ``BTC/USD:BTC`` COIN-M perpetual,
``BTC/USD:BTC-240927`` COIN-M delivery). Spot ids are split on a list of known quote
assets; ``register_symbol`` adds any pair the list gets wrong.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import orjson

from collectors.events import DepthDiff, DepthSnapshot, Liquidation, Mark, Quote, Trade
from collectors.fields import finite, future_ms_to_ns, int64, ms_to_ns, nonneg, positive

from . import BadFrame, InvalidValue, MalformedFrame, OversizedFrame, UnknownStream, UnknownSymbol, VenueErrorFrame

__all__ = [
    "EXCHANGE",
    "Market",
    "Channel",
    "Endpoints",
    "ENDPOINTS",
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


class Market(enum.Enum):
    """The three Binance markets; they differ in hosts, ids and depth sequencing."""

    SPOT = "spot"
    USDM = "usdm"
    COINM = "coinm"

    @property
    def is_futures(self) -> bool:
        return self is not Market.SPOT


class Channel(enum.Enum):
    """What can be subscribed per symbol; the value is the Binance stream suffix."""

    TRADES = "trade"
    AGG_TRADES = "aggTrade"  # do not mix with TRADES for one symbol: the id spaces differ
    QUOTES = "bookTicker"
    DEPTH = "depth@100ms"  # diffs for BookBuilder
    DEPTH_RT = "depth@0ms"  # futures only: every update, undocumented but served
    BOOK5 = "depth5@100ms"  # partial books (self-contained top-N), no sync needed
    BOOK10 = "depth10@100ms"
    BOOK20 = "depth20@100ms"
    MARK = "markPrice@1s"  # futures only: mark, index, predicted funding
    LIQUIDATIONS = "forceOrder"  # futures only

    @property
    def futures_only(self) -> bool:
        return self in (Channel.DEPTH_RT, Channel.MARK, Channel.LIQUIDATIONS)


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

_SNAPSHOT_LIMITS = {
    Market.SPOT: range(1, 5001),
    Market.USDM: (5, 10, 20, 50, 100, 500, 1000),
    Market.COINM: (5, 10, 20, 50, 100, 500, 1000),
}


# -- symbols -------------------------------------------------------------------------------
# Longest first so that e.g. FDUSD wins over USD-like tails and USDT over DT.
_SPOT_QUOTES = tuple(
    sorted(
        "USDT FDUSD USDC BUSD TUSD USDP DAI BTC ETH BNB XRP TRX DOGE DOT EUR TRY GBP BRL AUD "
        "JPY RUB UAH ZAR NGN PLN RON ARS MXN COP CZK IDRT BIDR BKRW BVND PAX VAI UST AEUR EURI".split(),
        key=len,
        reverse=True,
    )
)
_DELIVERY = re.compile(r"^(?P<pair>[A-Z0-9]+)_(?P<expiry>\d{6})$")
_COINM_NATIVE = re.compile(r"^(?P<base>[A-Z0-9]+)USD_(?P<expiry>PERP|\d{6})$")
_UNIFIED = re.compile(r"^(?P<base>[A-Z0-9]+)/(?P<quote>[A-Z0-9]+)(?::(?P<settle>[A-Z0-9]+)(?:-(?P<expiry>\d{6}))?)?$")

# Explicit (market, native) <-> unified pairs, consulted before the rules above.
_REGISTERED: dict[tuple[Market, str], str] = {}
_REGISTERED_BACK: dict[tuple[Market, str], str] = {}


def register_symbol(native: str, unified: str, market: Market) -> None:
    """Declare a mapping the suffix rules cannot derive (e.g. a new spot quote asset)."""
    if not _UNIFIED.match(unified):
        raise ValueError(f"{unified!r} is not a ccxt unified symbol like 'BTC/USDT' or 'BTC/USDT:USDT'")
    _REGISTERED[(market, native.upper())] = unified
    _REGISTERED_BACK[(market, unified)] = native.upper()


def market_of_symbol(unified: str) -> Market:
    """``BTC/USDT`` -> SPOT, ``BTC/USDT:USDT`` -> USDM (settle = quote), ``BTC/USD:BTC`` -> COINM."""
    unified = unified.removeprefix(f"{EXCHANGE}:")
    m = _UNIFIED.match(unified)
    if not m:
        raise UnknownSymbol(f"{unified!r} is not a ccxt unified symbol like 'BTC/USDT' or 'BTC/USDT:USDT'")
    settle = m["settle"]
    if settle is None:
        return Market.SPOT
    if settle == m["quote"]:
        return Market.USDM
    if settle == m["base"]:
        return Market.COINM
    raise UnknownSymbol(f"{unified!r}: settle {settle!r} is neither the quote nor the base asset")


def to_native(unified: str, market: Market | None = None) -> str:
    """ccxt unified (or ``binance:``-prefixed tickstore) symbol -> Binance id, e.g. ``BTCUSD_PERP``."""
    unified = unified.removeprefix(f"{EXCHANGE}:")
    market = market or market_of_symbol(unified)
    hit = _REGISTERED_BACK.get((market, unified))
    if hit:
        return hit
    m = _UNIFIED.match(unified)
    if not m:
        raise UnknownSymbol(f"{unified!r} is not a ccxt unified symbol like 'BTC/USDT' or 'BTC/USDT:USDT'")
    base, quote, settle, expiry = m["base"], m["quote"], m["settle"], m["expiry"]
    if market is Market.SPOT:
        if settle:
            raise UnknownSymbol(f"{unified!r} is a derivative symbol, not a {market.value} one")
        return base + quote
    if market_of_symbol(unified) is not market:
        raise UnknownSymbol(f"{unified!r} is not a {market.value} symbol (it is {market_of_symbol(unified).value})")
    if market is Market.USDM:
        return base + quote + (f"_{expiry}" if expiry else "")
    return f"{base}{quote}_{expiry or 'PERP'}"


def to_unified(native: str, market: Market) -> str:
    """Binance id -> ccxt unified symbol, e.g. (``BTCUSD_PERP``, COINM) -> ``BTC/USD:BTC``."""
    native = native.upper()
    hit = _REGISTERED.get((market, native))
    if hit:
        return hit
    if market is Market.COINM:
        m = _COINM_NATIVE.match(native)
        if not m:
            raise UnknownSymbol(f"{native!r} is not a COIN-M id like 'BTCUSD_PERP' or 'BTCUSD_240927'")
        base, expiry = m["base"], m["expiry"]
        return f"{base}/USD:{base}" + ("" if expiry == "PERP" else f"-{expiry}")
    expiry = None
    if market is Market.USDM:
        m = _DELIVERY.match(native)
        if m:
            native, expiry = m["pair"], m["expiry"]
    for quote in _SPOT_QUOTES:
        if native.endswith(quote) and len(native) > len(quote):
            base = native[: -len(quote)]
            if market is Market.SPOT:
                return f"{base}/{quote}"
            return f"{base}/{quote}:{quote}" + (f"-{expiry}" if expiry else "")
    raise UnknownSymbol(
        f"cannot split {market.value} id {native!r} into base/quote (known quotes: {', '.join(_SPOT_QUOTES)}); "
        f"declare it with register_symbol({native!r}, 'BASE/QUOTE...', Market.{market.name})"
    )


def to_tickstore(native: str, market: Market) -> str:
    """Binance id -> tickstore symbol, e.g. ``binance:BTC/USDT:USDT``."""
    return f"{EXCHANGE}:{to_unified(native, market)}"


def from_tickstore(symbol: str) -> tuple[str, Market]:
    """Tickstore symbol ``binance:...`` -> (Binance id, market)."""
    venue, _, unified = symbol.partition(":")
    if venue != EXCHANGE or not unified:
        raise UnknownSymbol(f"{symbol!r} is not a binance tickstore symbol like 'binance:BTC/USDT:USDT'")
    market = market_of_symbol(unified)
    return to_native(unified, market), market


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
    coinm = "ps" in data or "pair" in data or bool(_COINM_NATIVE.match(str(sym)))
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


class BinanceParser:
    """Raw frame -> events for one market; keeps a native-id -> symbol cache.

    Accepts combined-stream envelopes (``{"stream","data"}``) and raw ``/ws`` frames. Raw
    frames cannot tell a futures partial book from a diff (same shape); use combined
    streams for partial books.
    """

    def __init__(self, market: Market, *, max_frame_bytes: int = MAX_FRAME_BYTES):
        self.market = Market(market)
        self.max_frame_bytes = int(max_frame_bytes)
        self._symbols: dict[str, str] = {}
        self._by_event = {
            "trade": self._trade,
            "aggTrade": self._agg_trade,
            "depthUpdate": self._diff,
            "bookTicker": self._quote,
            "markPriceUpdate": self._mark,
            "forceOrder": self._liquidation,
        }
        self._by_stream: dict[str, tuple] = {}  # stream name -> (handler, native id)
        self._floats: dict = {}  # price/qty string -> float(string), see _levels

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
            sym = self._symbols[native] = to_tickstore(native, self.market)
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
        elif re.fullmatch(r"depth(5|10|20)(@\d+ms)?", kind):
            handler = self._partial
        elif kind == "markPrice" or kind.startswith("markPrice@"):
            handler = self._mark
        else:
            raise UnknownStream(f"unknown Binance stream kind {kind!r}: {_excerpt(raw)}")
        return handler

    def _trade(self, d, recv_ns, _):
        # spot:  {"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000",
        #         "q":"0.02000000","T":1723161255342,"m":true,"M":true}
        # futures: {"e":"trade","E":1723161256322,"T":1723161256322,"s":"BTCUSDT","t":5266583935,
        #         "p":"61800.30","q":"0.006","X":"MARKET","m":false}
        # m = buyer is the maker, i.e. the seller was the aggressor.
        return [
            Trade((self._symbols.get(d["s"]) or self._symbol(d["s"])), ms_to_ns(d["T"], recv_ns, "T"), recv_ns, int64(d["t"], "t"),
                  positive(d["p"], "p"), nonneg(d["q"], "q"), -1 if d["m"] else 1)
        ]

    def _agg_trade(self, d, recv_ns, _):
        # {"e":"aggTrade","E":1626992741575,"a":16599292,"s":"CTKUSDT","p":"1.01100","q":"10",
        #  "f":23961322,"l":23961322,"T":1626992741421,"m":false}
        return [
            Trade((self._symbols.get(d["s"]) or self._symbol(d["s"])), ms_to_ns(d["T"], recv_ns, "T"), recv_ns, int64(d["a"], "a"),
                  positive(d["p"], "p"), nonneg(d["q"], "q"), -1 if d["m"] else 1)
        ]

    def _quote(self, d, recv_ns, _):
        # futures: {"e":"bookTicker","u":5123107839020,"s":"BTCUSDT","b":"61800.20","B":"2.507",
        #           "a":"61800.30","A":"2.510","T":1723161256316,"E":1723161256317}
        # spot (no event time at all, so ts = receive time):
        #           {"u":50093421613,"s":"BTCUSDT","b":"61685.99000000","B":"1.25869000",
        #            "a":"61686.00000000","A":"2.44816000"}
        e = d.get("E")
        return [
            Quote(
                (self._symbols.get(d["s"]) or self._symbol(d["s"])),
                ms_to_ns(e, recv_ns, "E") if e is not None else recv_ns,
                recv_ns,
                int64(d["u"], "u"),
                nonneg(d["b"], "b"),
                nonneg(d["B"], "B"),
                nonneg(d["a"], "a"),
                nonneg(d["A"], "A"),
            )
        ]

    def _diff(self, d, recv_ns, _):
        # spot:    {"e":"depthUpdate","E":1723161255208,"s":"BTCUSDT","U":50093239189,"u":50093239202,
        #           "b":[["61737.63000000","0.00000000"],...],"a":[["61837.64000000","1.54698000"],...]}
        # futures: {"e":"depthUpdate","E":1723161256299,"T":1723161256298,"s":"BTCUSDT",
        #           "U":5123107832006,"u":5123107837557,"pu":5123107831937,"b":[["58710.20","0.014"],...],"a":[...]}
        # coinm adds "ps":"BTCUSD". Spot has no "pu": prev_update_id is -1.
        return [
            DepthDiff(
                (self._symbols.get(d["s"]) or self._symbol(d["s"])),
                ms_to_ns(d["E"], recv_ns, "E"),
                recv_ns,
                int64(d["U"], "U"),
                int64(d["u"], "u"),
                int64(d.get("pu", -1), "pu"),
                self._levels(d["b"]),
                self._levels(d["a"]),
            )
        ]

    def _partial(self, d, recv_ns, stream_symbol):
        # spot (no symbol, no time: both come from the stream name / receive clock):
        #   {"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}
        # futures (same shape as a diff, but a whole top-N book):
        #   {"e":"depthUpdate","E":1571889248277,"T":1571889248276,"s":"BTCUSDT","U":390497796,
        #    "u":390497878,"pu":390497794,"b":[["7403.89","0.002"],...],"a":[["7405.96","3.340"],...]}
        if "lastUpdateId" in d:
            if stream_symbol is None:
                raise MalformedFrame(f"spot partial book without a stream name: {_excerpt(orjson.dumps(d))}")
            return [
                DepthSnapshot(
                    self._symbol(stream_symbol.upper()), recv_ns, recv_ns, int64(d["lastUpdateId"], "lastUpdateId"),
                    self._levels(d["bids"]), self._levels(d["asks"]),
                )
            ]
        return [DepthSnapshot((self._symbols.get(d["s"]) or self._symbol(d["s"])), ms_to_ns(d["E"], recv_ns, "E"), recv_ns,
                              int64(d["u"], "u"), self._levels(d["b"]), self._levels(d["a"]))]

    def _mark(self, d, recv_ns, _):
        # {"e":"markPriceUpdate","E":1680652701000,"s":"BTCUSDT","p":"28146.50000000",
        #  "i":"28159.04955556","P":"28155.67869839","r":"0.00010000","T":1680681600000}
        # Delivery contracts send "r":"" (no funding): stored as NaN.
        r = d["r"]
        return [
            Mark(
                (self._symbols.get(d["s"]) or self._symbol(d["s"])),
                ms_to_ns(d["E"], recv_ns, "E"),
                recv_ns,
                finite(d["p"], "p"),
                finite(d["i"], "i"),
                finite(r, "r") if r != "" else float("nan"),
                future_ms_to_ns(d["T"], recv_ns, "T"),
            )
        ]

    def _liquidation(self, d, recv_ns, _):
        # {"e":"forceOrder","E":1568014460893,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT","f":"IOC",
        #  "q":"0.014","p":"9910","ap":"9910","X":"FILLED","l":"0.014","z":"0.014","T":1568014460893}}
        # S is the liquidation order's side: SELL = a long was liquidated. price/qty are the
        # order's (p, q) like cryptofeed; ts is the order trade time T.
        o = d["o"]
        return [
            Liquidation(self._symbol(o["s"]), ms_to_ns(o["T"], recv_ns, "T"), recv_ns, 1 if o["S"] == "BUY" else -1,
                        positive(o["p"], "p"), nonneg(o["q"], "q"))
        ]


_DEFAULT_PARSERS: dict[Market, BinanceParser] = {}


def _parser(market: Market) -> BinanceParser:
    p = _DEFAULT_PARSERS.get(market)
    if p is None:
        p = _DEFAULT_PARSERS[market] = BinanceParser(Market(market))
    return p


def parse(raw: bytes | str, recv_ns: int, market: Market) -> list:
    """One websocket frame -> events (see ``BinanceParser.parse``)."""
    return _parser(market).parse(raw, recv_ns)


def parse_snapshot(
    raw: bytes | str, recv_ns: int, market: Market, *, native_symbol: str | None = None
) -> DepthSnapshot:
    """One REST depth body -> ``DepthSnapshot`` (see ``BinanceParser.parse_snapshot``)."""
    return _parser(market).parse_snapshot(raw, recv_ns, native_symbol=native_symbol)
