"""Hyperliquid perpetuals: subscriptions, frame parser and liquidation polling hooks.

One websocket, ``wss://api.hyperliquid.xyz/ws``; subscriptions are per coin (the venue's
id, ``BTC`` -> ``hyperliquid:BTC/USDC:USDC``)::

    {"method":"subscribe","subscription":{"type":"trades","coin":"BTC"}}         -> Trade
    {"method":"subscribe","subscription":{"type":"l2Book","coin":"BTC"}}         -> DepthSnapshot
                                                                                 (+ BookTop)
    {"method":"subscribe","subscription":{"type":"bbo","coin":"BTC"}}            -> Quote
    {"method":"subscribe","subscription":{"type":"activeAssetCtx","coin":"BTC"}} -> Mark,
                                                                                 OpenInterest
    {"method":"subscribe","subscription":{"type":"allDexsAssetCtxs"}}            -> Mark,
                                                                 OpenInterest per known perp
    {"method":"ping"} -> {"channel":"pong"};  acks are {"channel":"subscriptionResponse",...}

Coins are named as ccxt names them (``collectors.symbols.Markets.wire_info``: the registry,
else ``COIN/USDC:USDC``), so a capture of any perp of the main dex replays. Spot coins
(``@107``, ``PURR/USDC``: spot trades, books and ``activeSpotAssetCtx``) and
builder-deployed perps (``xyz:TSLA``) are refused as ``UnknownSymbol`` frames saying so:
the collector and replay store perpetuals only. ``allMids`` (mid prices without sizes) and
``candle`` frames are recognised and stored nowhere (bars come from trades or the REST
backfill).

Sides (https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/notation):
"B = Bid = Buy, A = Ask = Short. Side is aggressing side for trades": ``B`` is +1 (buyer
aggressor), ``A`` -1; anything else is an ``InvalidValue``.

Books: every ``l2Book`` frame is the whole visible book (20 levels a side), so there is no
diff chain to check; ``update_id`` is the book's ``time`` (ms), which only grows. With
``book_depth`` set, the parser also emits one ``BookTop`` per book frame (Hyperliquid
pushes a book at most every ~0.5 s, so no grid sampling is needed to bound volume).

``activeAssetCtx`` has no exchange timestamp: its events carry ``ts = recv_ns`` (a
documented loss, not a guess). ``allDexsAssetCtxs`` carries the same contexts for every
perp of every dex at once, as ``{"ctxs": [[dex, [ctx, ...]], ...]}`` where a context's
position is the asset's index in that dex's ``meta`` universe and names no coin: contexts
of the main dex (``""``) are mapped through the registry's asset indexes (ccxt's market
id, ``collectors.symbols``), indexes it does not know are skipped (counted in
``unmapped_ctxs``), and so are the builder-deployed dexes (their assets are not in the
registry); so are contexts without a price (``markPx`` 0 or null: an asset that does not
trade). Fields, in both: ``markPx`` -> ``mark.mark_px``, ``oraclePx`` ->
``mark.index_px``, ``funding`` -> ``mark.funding_rate``, ``openInterest`` (in coins) ->
``open_interest.oi`` with ``oi_value = oi * markPx``. Its ``funding`` is the predicted rate of the current hour
(Hyperliquid settles funding hourly, on the hour), so ``next_funding_ts`` is the next
whole hour after the receive time. ``premium`` has no column in ``mark`` and is dropped;
settled rates with their premium come from the REST ``fundingHistory`` (see backfill).

Liquidations: Hyperliquid has **no public liquidation stream** and no public REST list of
liquidations. What exists is per account: ``userFills``/``userFillsByTime`` return an
account's fills, and a fill that was part of a liquidation carries a ``liquidation``
object (``liquidatedUser``, ``markPx``, ``method``). ``LiquidationPoller`` is the REST
polling hook: give it the addresses to watch (e.g. the liquidator vault, or accounts of
interest) and a ``post(body) -> json`` transport; each ``poll()`` asks for fills since
its cursor and returns ``Liquidation`` events, de-duplicated by ``tid``. This sees only
liquidations that touch the watched accounts, never the whole market, so the live
collector (``collectors.venues.HyperliquidFeed``) does not poll: it skips the
``liquidations`` channel for Hyperliquid and writes no liquidation rows.
"""

from __future__ import annotations

import enum
from urllib.parse import urlsplit
from dataclasses import dataclass, field
from typing import Callable

import orjson

from collectors.events import BookTop, DepthSnapshot, Liquidation, Mark, OpenInterest, Quote, Trade
from collectors.fields import finite, int64, ms_to_ns, nonneg, positive
from collectors.symbols import MARKETS, SymbolNotFound

from . import InvalidValue, MalformedFrame, UnknownStream, UnknownSymbol, VenueErrorFrame

__all__ = [
    "EXCHANGE",
    "WS_URL",
    "INFO_URL",
    "Market",
    "Channel",
    "HyperliquidParser",
    "LiquidationPoller",
    "parse",
    "subscribe_messages",
    "ping_message",
    "is_control_frame",
    "fills_request",
    "book_top",
    "parse_l2_snapshot",
    "claims",
    "infer_market",
    "market_of_url",
]

EXCHANGE = "hyperliquid"
WS_URL = "wss://api.hyperliquid.xyz/ws"
INFO_URL = "https://api.hyperliquid.xyz/info"
_MS = 1_000_000
_HOUR_NS = 3600 * 1_000_000_000


class Market(enum.Enum):
    """Hyperliquid's one market a collector connects to (perpetuals, one websocket).

    It names the endpoint in a collector config (``[endpoints.perp]``), as Binance's
    ``Market`` and Bybit's ``Category`` do for theirs.
    """

    PERP = "perp"


class Channel(enum.Enum):
    """Subscription types a collector uses; values are Hyperliquid's ``type`` names."""

    TRADES = "trades"
    BOOK = "l2Book"
    BBO = "bbo"
    ASSET_CTX = "activeAssetCtx"  # mark, oracle, predicted funding, premium, open interest
    ALL_ASSET_CTXS = "allDexsAssetCtxs"  # the same for every perp of every dex, one frame


def subscribe_messages(channels, coins, *, method: str = "subscribe") -> list[dict]:
    """One message per (channel, coin), for ``SessionConfig.subscribe``."""
    if method not in ("subscribe", "unsubscribe"):
        raise ValueError(f"method must be 'subscribe' or 'unsubscribe', got {method!r}")
    if isinstance(coins, str):
        raise ValueError(f"coins must be a list of Hyperliquid coin names, got the string {coins!r}")
    out = []
    for c in channels:
        c = Channel(c)
        if c is Channel.ALL_ASSET_CTXS:  # one subscription for every coin
            out.append({"method": method, "subscription": {"type": c.value}})
        else:
            out += [{"method": method, "subscription": {"type": c.value, "coin": coin}} for coin in coins]
    return out


def claims(msg) -> bool:
    """Whether a decoded frame has Hyperliquid's websocket shape ``{"channel": ..., ...}``."""
    return isinstance(msg, dict) and isinstance(msg.get("channel"), str)


def infer_market(raw) -> Market | None:
    """``Market.PERP`` for a Hyperliquid frame (its one market here), else None."""
    try:
        return Market.PERP if claims(orjson.loads(raw)) else None
    except orjson.JSONDecodeError:
        return None


def market_of_url(url: str) -> Market | None:
    """``Market.PERP`` for a Hyperliquid websocket or ``/info`` URL, else None."""
    host = urlsplit(url).hostname or "" if url else ""
    return Market.PERP if host.endswith(("hyperliquid.xyz", "hyperliquid-testnet.xyz")) else None


def ping_message() -> dict:
    """Application ping; Hyperliquid closes a connection silent for 60 s."""
    return {"method": "ping"}


_CONTROL_CHANNELS = (b'"channel":"pong"', b'"channel":"subscriptionResponse"', b'"channel":"error"')


def is_control_frame(raw: bytes) -> bool:
    """Pongs, subscription acks and errors: not market data for the session's stale-feed
    watchdog (``SessionConfig.is_control``)."""
    head = raw[:48]
    return any(c in head for c in _CONTROL_CHANNELS)


def _excerpt(raw) -> str:
    text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "replace")
    return repr(text[:160] + ("..." if len(text) > 160 else ""))


_SIDES = {"B": 1, "A": -1}


def _side(value) -> int:
    side = _SIDES.get(value) if type(value) is str else None
    if side is None:
        raise InvalidValue(f"side={value!r}: expected 'B' (bid, buyer aggressor) or 'A' (ask)")
    return side


def _levels(side) -> list:
    return [(nonneg(lv["px"], "px"), nonneg(lv["sz"], "sz")) for lv in side]


@dataclass
class HyperliquidParser:
    """Raw websocket frame -> events. ``book_depth``: also emit ``BookTop`` rows of that depth."""

    book_depth: int | None = None
    markets: object = field(default=MARKETS, repr=False)
    unmapped_ctxs: int = 0  # allDexsAssetCtxs contexts of assets the registry does not know
    _symbols: dict = field(default_factory=dict, repr=False)
    _by_index: dict = field(default_factory=dict, repr=False)  # main-dex asset index -> symbol
    _known: int = field(default=-1, repr=False)  # registry size _by_index was built from

    def __post_init__(self):
        if self.book_depth is not None and not 1 <= self.book_depth <= 20:
            raise ValueError(f"hyperliquid books have 20 levels a side; book_depth must be 1..20, got {self.book_depth!r}")

    def symbol(self, coin: str) -> str:
        sym = self._symbols.get(coin)
        if sym is None:
            try:
                sym = self._symbols[coin] = self.markets.wire_symbol(EXCHANGE, coin)
            except SymbolNotFound as exc:
                raise UnknownSymbol(str(exc)) from None
        return sym

    def parse(self, raw: bytes | str, recv_ns: int) -> list:
        """Events in one frame (``[]`` for acks and pongs); raises ``BadFrame`` subclasses."""
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedFrame(f"hyperliquid: not JSON ({exc}): {_excerpt(raw)}") from None
        if type(msg) is not dict or "channel" not in msg:
            raise MalformedFrame(f"hyperliquid: expected an object with 'channel': {_excerpt(raw)}")
        ch = msg["channel"]
        try:
            if ch == "trades":
                return self._trades(msg["data"], recv_ns)
            if ch == "l2Book":
                return self._book(msg["data"], recv_ns)
            if ch == "bbo":
                return self._bbo(msg["data"], recv_ns)
            if ch == "activeAssetCtx":
                return self._ctx(msg["data"], recv_ns)
            if ch == "allDexsAssetCtxs":
                return self._all_ctxs(msg["data"], recv_ns)
            if ch in ("subscriptionResponse", "pong", "allMids", "candle"):
                return []  # acks; mids without sizes and running candles: stored nowhere
            if ch == "activeSpotAssetCtx":
                self.symbol(msg["data"]["coin"])  # refuses the spot coin, saying so
                return []
            if ch == "error":
                raise VenueErrorFrame(f"hyperliquid error: {_excerpt(raw)}")
            raise UnknownStream(f"hyperliquid: unknown channel {ch!r}: {_excerpt(raw)}")
        except InvalidValue as exc:
            raise InvalidValue(f"hyperliquid: {exc} in {_excerpt(raw)}") from None
        except (MalformedFrame, UnknownStream, UnknownSymbol, VenueErrorFrame):
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise MalformedFrame(f"hyperliquid: {type(exc).__name__} {exc} in {_excerpt(raw)}") from None

    def _trades(self, data, recv_ns: int) -> list:
        # {"channel":"trades","data":[{"coin":"BTC","hash":"0xde47...475b","px":"105056.0","side":"B",
        #   "sz":"0.00219","tid":121451470284048,"time":1737918794873,"users":["0xe9ed...","0x6802..."]}]}
        # side is the taker's: B (bid) = buyer aggressor, A (ask) = seller aggressor. The
        # public trade carries no liquidation flag (only a user's fills say "liquidation"),
        # so every print is kind MARKET (tickstore.TradeKind); liquidations: LiquidationPoller.
        return [
            Trade(self.symbol(t["coin"]), ms_to_ns(t["time"], recv_ns, "time"), recv_ns, int64(t["tid"], "tid"),
                  positive(t["px"], "px"), nonneg(t["sz"], "sz"), _side(t["side"]))
            for t in data
        ]

    def _book(self, d, recv_ns: int) -> list:
        # {"channel":"l2Book","data":{"coin":"BTC","time":1737918843542,"levels":[
        #   [{"n":5,"px":"105055.0","sz":"3.03622"},{"n":1,"px":"105054.0","sz":"0.1428"},...],   bids, best first
        #   [{"n":13,"px":"105056.0","sz":"6.34472"},...]]}}                                     asks, best first
        sym = self.symbol(d["coin"])
        t = int64(d["time"], "time")
        bid_side, ask_side = d["levels"]  # exactly two sides: [bids, asks]
        bids, asks = _levels(bid_side), _levels(ask_side)
        out: list = [DepthSnapshot(sym, ms_to_ns(t, recv_ns, "time"), recv_ns, t, bids, asks)]
        if self.book_depth is not None:
            out.append(book_top(out[0], self.book_depth))
        return out

    def _bbo(self, d, recv_ns: int) -> list:
        # {"channel":"bbo","data":{"coin":"BTC","time":1737918843542,
        #   "bbo":[{"px":"105055.0","sz":"3.03622","n":5},{"px":"105056.0","sz":"6.34472","n":13}]}}
        # a side with no order is null: its price and size become NaN.
        bid, ask = d["bbo"]
        nan = float("nan")
        t = int64(d["time"], "time")
        return [
            Quote(
                self.symbol(d["coin"]), ms_to_ns(t, recv_ns, "time"), recv_ns, t,
                nonneg(bid["px"], "px") if bid else nan, nonneg(bid["sz"], "sz") if bid else nan,
                nonneg(ask["px"], "px") if ask else nan, nonneg(ask["sz"], "sz") if ask else nan,
            )
        ]

    def _ctx(self, d, recv_ns: int) -> list:
        # {"channel":"activeAssetCtx","data":{"coin":"BTC","ctx":{"funding":"0.0000125",
        #   "openInterest":"12345.678","oraclePx":"105050.0","markPx":"105055.0","midPx":"105055.5",
        #   "premium":"0.00004","impactPxs":["105055.0","105056.0"],"dayNtlVlm":"...","prevDayPx":"..."}}}
        sym = self.symbol(d["coin"])  # a spot coin is refused here, saying so
        c = d["ctx"]
        if "funding" not in c:
            raise MalformedFrame(f"hyperliquid: a perp asset context of {d['coin']!r} without 'funding'")
        return _ctx_events(sym, c, recv_ns)

    def _all_ctxs(self, d, recv_ns: int) -> list:
        # {"channel":"allDexsAssetCtxs","data":{"ctxs":[["",[{"funding":"0.0000125","openInterest":"12345.6",
        #   "oraclePx":"105050.0","markPx":"105055.0","midPx":"105055.5","premium":"0.00004",
        #   "impactPxs":["105055.0","105056.0"],"dayNtlVlm":"...","prevDayPx":"...","dayBaseVlm":"..."},...]],
        #   ["xyz",[...]]]}}     position in the list = asset index in that dex's meta universe
        out: list = []
        for dex, ctxs in d["ctxs"]:
            if dex != "":
                self.unmapped_ctxs += len(ctxs)  # builder-deployed dex: not in the registry
                continue
            by_index = self._index()
            for i, c in enumerate(ctxs):
                sym = by_index.get(i)
                if sym is None:
                    self.unmapped_ctxs += 1
                    continue
                if not c.get("markPx") or finite(c["markPx"], "markPx") == 0.0:
                    continue  # an asset that does not trade (delisted): no price to store
                out += _ctx_events(sym, c, recv_ns)
        return out

    def _index(self) -> dict:
        """Main-dex asset index -> tickstore symbol, from the registry (rebuilt when it grows)."""
        known = self.markets.markets(EXCHANGE)
        if len(known) != self._known:
            self._by_index = {int(m.ccxt_id): m.tickstore for m in known if m.ccxt_id is not None and m.ccxt_id.isdigit()}
            self._known = len(known)
        return self._by_index


def _ctx_events(sym: str, c: dict, recv_ns: int) -> list:
    """Mark and OpenInterest of one perp asset context (no exchange time: ``ts = recv_ns``)."""
    mark = finite(c["markPx"], "markPx")
    next_funding = (recv_ns // _HOUR_NS + 1) * _HOUR_NS
    oi = nonneg(c["openInterest"], "openInterest")
    return [
        Mark(sym, recv_ns, recv_ns, mark, finite(c["oraclePx"], "oraclePx"), finite(c["funding"], "funding"), next_funding),
        OpenInterest(sym, recv_ns, oi, oi * mark),
    ]


def book_top(snap: DepthSnapshot, depth: int) -> BookTop:
    """The top ``depth`` levels of a full snapshot; missing levels are NaN."""
    nan = float("nan")

    def side(levels):
        px = [p for p, _ in levels[:depth]] + [nan] * max(0, depth - len(levels))
        qty = [q for _, q in levels[:depth]] + [nan] * max(0, depth - len(levels))
        return px, qty

    bpx, bqty = side(snap.bids)
    apx, aqty = side(snap.asks)
    return BookTop(snap.symbol, snap.ts, snap.recv_ns, snap.update_id, bpx, bqty, apx, aqty)


_DEFAULT = HyperliquidParser()


def parse_l2_snapshot(raw: bytes | str, recv_ns: int) -> DepthSnapshot:
    """The REST ``POST /info {"type":"l2Book","coin":...}`` answer -> ``DepthSnapshot``.

    Same body as the websocket ``l2Book`` data: {"coin":"DYDX","time":1689630203930,
    "levels":[[{"n":1,"px":"2.111","sz":"134.4"},...],[...]]}.
    """
    try:
        d = orjson.loads(raw)
        return _DEFAULT._book(d, recv_ns)[0]
    except orjson.JSONDecodeError as exc:
        raise MalformedFrame(f"hyperliquid l2Book: not JSON ({exc}): {_excerpt(raw)}") from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise MalformedFrame(f"hyperliquid l2Book: {type(exc).__name__} {exc} in {_excerpt(raw)}") from None


def parse(raw: bytes | str, recv_ns: int) -> list:
    """One websocket frame -> events (see ``HyperliquidParser.parse``)."""
    return _DEFAULT.parse(raw, recv_ns)


# -- liquidations: REST polling (no public stream exists) -------------------------------------
def fills_request(user: str, start_ms: int, end_ms: int | None = None) -> dict:
    """Body of ``POST /info`` for an account's fills since ``start_ms`` (max 2000 per answer)."""
    if not (isinstance(user, str) and user.startswith("0x") and len(user) == 42):
        raise ValueError(f"hyperliquid user must be a 0x-prefixed 20-byte address, got {user!r}")
    body = {"type": "userFillsByTime", "user": user, "startTime": int(start_ms)}
    if end_ms is not None:
        body["endTime"] = int(end_ms)
    return body


@dataclass
class LiquidationPoller:
    """Polls ``userFillsByTime`` of watched accounts and yields their liquidation fills.

    ``post`` sends one JSON body to ``/info`` and returns the decoded answer (the caller
    owns HTTP, retries and rate limits; tests pass a client of a local server). The side
    follows the liquidations table: +1 a forced buy (a short was liquidated), -1 a forced
    sell. A fill of the liquidated account itself has the forced order's side; a fill of a
    counterparty (the liquidator vault) has the opposite side.
    """

    users: tuple[str, ...]
    post: Callable[[dict], object]
    start_ms: int
    markets: object = field(default=MARKETS, repr=False)
    _cursor: dict = field(default_factory=dict, repr=False)
    _seen: set = field(default_factory=set, repr=False)

    def __post_init__(self):
        if isinstance(self.users, str) or not self.users:
            raise ValueError(f"users must be a non-empty tuple of addresses, got {self.users!r}")
        for u in self.users:
            fills_request(u, 0)  # validates the address
        self._cursor = {u: int(self.start_ms) for u in self.users}

    def poll(self, recv_ns: int) -> list[Liquidation]:
        out: list[Liquidation] = []
        for user in self.users:
            # {"coin":"ETH","px":"1812.7","sz":"3.0","side":"B","time":1688930419047,"dir":"Close Short",
            #  "closedPnl":"-12.3","hash":"0x...","oid":1234,"crossed":true,"fee":"0.5","tid":987654,
            #  "liquidation":{"liquidatedUser":"0xabc...","markPx":"1812.9","method":"market"}}
            fills = self.post(fills_request(user, self._cursor[user]))
            if not isinstance(fills, list):
                raise VenueErrorFrame(f"hyperliquid userFillsByTime for {user}: expected a list, got {str(fills)[:160]!r}")
            for f in fills:
                t = int(f["time"])
                self._cursor[user] = max(self._cursor[user], t)  # inclusive: ties are de-duplicated below
                liq = f.get("liquidation")
                if not liq or (user, f["tid"]) in self._seen or f["coin"].startswith("@") or "/" in f["coin"]:
                    continue
                self._seen.add((user, f["tid"]))
                taker_buy = f["side"] == "B"
                own = str(liq.get("liquidatedUser", "")).lower() == user.lower()
                side = (1 if taker_buy else -1) if own else (-1 if taker_buy else 1)
                sym = self.markets.wire_symbol(EXCHANGE, f["coin"])
                out.append(Liquidation(sym, t * _MS, recv_ns, side, float(f["px"]), float(f["sz"])))
        return out
