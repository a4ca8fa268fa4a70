"""What the collector needs from each venue: connections, parsers, book rules, resyncs.

``collectors.collector.Collector`` is one pipeline for every venue (sessions -> journal
-> parser -> books -> store, gap ledger, flushes); a ``VenueFeed`` supplies the parts
that differ, using the venue's module in ``collectors/exchanges/``::

                 connections                        book rule (BookBuilder)   after a break / reset
    binance      spot/usdm/coinm, streams in URL    U/u (spot), pu (futures)  REST GET /depth (journaled)
    bybit        linear, spot; op subscribe <= 10   u == previous u + 1       unsubscribe + subscribe the
                 topics per message; op ping        (snapshot resets)         topic: a fresh snapshot frame
    hyperliquid  /ws; method subscribe per coin;    every l2Book frame is     nothing to ask: the next
                 method ping                        the whole book            frame is the book

Channels are the collector's vocabulary (``binance.Channel`` names, as in config files);
each venue maps the ones it offers and refuses the others by name::

    channel       binance              bybit linear / spot                  hyperliquid
    trades        <s>@trade            publicTrade.<s>                      trades
    quotes        <s>@bookTicker       the book's top: orderbook.1.<s>      bbo
                                       (or the depth topic when configured)
    depth         <s>@depth@100ms      orderbook.50|200.<s>                 l2Book (20 levels)
    mark          <s>@markPrice@1s     tickers.<s>: mark, funding, OI / -   activeAssetCtx: mark, funding, OI
    liquidations  <s>@forceOrder       allLiquidation.<s> / -               none (see below)

Channels a market lacks are skipped for its symbols (Binance and Bybit spot have no mark
or liquidations). Bybit's quotes are the top of a book on both markets, as replay makes
them (``BookBuilder(quotes=True)``): ``quotes`` alone subscribes ``orderbook.1`` (Bybit's
best bid/offer stream, snapshots only; the book is kept for its quotes and writes no book
rows), with ``depth`` the depth topic's book quotes its top (spot tickers carry no bid/ask). **Hyperliquid has no public
liquidation stream** (nor a public REST list): ``liquidations`` is skipped there; the
account-level polling hook is ``exchanges.hyperliquid.LiquidationPoller``.

Tags: every connection's frames are journaled with its tag (``usdm-0``, ``bybit-linear-0``,
``hyperliquid-0``), which names the parser on replay; Binance's tags are unchanged from
before the other venues existed, so old journals replay.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import defaultdict
from dataclasses import dataclass

from .bookstate import parser_key
from .events import DepthSnapshot, Mark, OpenInterest, Quote
from .exchanges import BadFrame
from .exchanges import binance as bn
from .exchanges import bybit as bb
from .exchanges import hyperliquid as hl
from .exchanges.binance import MAX_FRAME_BYTES, Channel, Endpoints, Market
from .symbols import MARKETS, MarketType, venue_of_url
from tickstore.errors import SymbolError

__all__ = ["Venue", "Connection", "VenueFeed", "BinanceFeed", "BinanceUSFeed", "BybitFeed", "HyperliquidFeed", "feed_class", "feed_of_tag"]

log = logging.getLogger(__name__)


class Venue(enum.Enum):
    BINANCE = "binance"
    BINANCEUS = "binanceus"  # Binance.US: Binance's spot protocol, another venue
    BYBIT = "bybit"
    HYPERLIQUID = "hyperliquid"


@dataclass(frozen=True)
class Connection:
    """One websocket connection of a collector.

    ``group``: the market (endpoint key) it belongs to; books of one group share a
    clock for grid flushes. ``streams``: the stream/topic/subscription names riding on it.
    """

    tag: str
    group: enum.Enum
    symbols: tuple[str, ...]
    streams: tuple[str, ...]
    url: str
    subscribe: tuple[dict, ...] = ()
    ping_payload: dict | None = None
    is_control: object = None  # frame -> bool: pongs/acks, not data for the watchdog


def _chunks(items: list[tuple[str, list[str]]], limit: int) -> list[list[tuple[str, list[str]]]]:
    """Consecutive groups of (symbol, streams) with at most ``limit`` streams each (a symbol
    is never split; one with more streams than ``limit`` gets a connection of its own)."""
    groups, chunk, n = [], [], 0
    for s, streams in items:
        if chunk and n + len(streams) > limit:
            groups.append(chunk)
            chunk, n = [], 0
        chunk.append((s, streams))
        n += len(streams)
    groups.append(chunk)
    return groups


class VenueFeed:
    """The venue-specific half of a collector (one instance per ``Collector``).

    Class level (config validation): ``markets`` (endpoint keys), ``ENDPOINTS`` (defaults),
    ``CHANNELS`` (offered), ``check(config)``. Instance level (the running collector):
    ``plan()``, ``parser(tag)``, ``group_of_tag(tag)``, ``book_rule(symbol)`` and the book
    hooks. ``rest_snapshots``: books resync from REST snapshots the collector fetches and
    journals (Binance); otherwise ``resync_messages`` says what to send on the symbol's
    connection. ``snapshots_advance_clock``: book snapshot frames carry exchange time and
    count for grid flushes (diffs always do).
    """

    venue: Venue
    markets: type[enum.Enum]
    ENDPOINTS: dict = {}
    CHANNELS: tuple[Channel, ...] = ()
    rest_snapshots = False
    snapshots_advance_clock = True
    book_quotes = False  # the venue's quotes are the top of its book (BookBuilder(quotes=True))
    partial_books = False  # the venue has partial-book streams besides diffs (Binance depth5/10/20)

    def __init__(self, config):
        self.config = config
        self._parsers: dict = {}
        self._market: dict[str, enum.Enum] = {s: self.market_of(s) for s in config.symbols}

    # -- configuration (class level) ------------------------------------------------------
    @classmethod
    def market_of(cls, symbol: str) -> enum.Enum:
        """The market (endpoint key) of a tickstore symbol; ``ValueError`` naming it if none."""
        raise NotImplementedError

    @classmethod
    def check(cls, config) -> None:
        """Raise ``ValueError("<field>: why")`` for what this venue cannot collect."""
        for s in config.symbols:
            cls.market_of(s)
        bad = [c.name.lower() for c in config.channels if c not in cls.CHANNELS]
        if bad:
            offered = [c.name.lower() for c in cls.CHANNELS]
            raise ValueError(f"channels: {bad} not offered by {cls.venue.value}; offered: {offered}")
        for m, ep in config.endpoints.items():
            if not isinstance(m, cls.markets) or not isinstance(ep, Endpoints):
                raise ValueError(
                    f"endpoints must map {cls.markets.__name__} ({[x.value for x in cls.markets]}) to Endpoints "
                    f"for {cls.venue.value}, got {config.endpoints!r}"
                )

    # -- the running collector ----------------------------------------------------------
    def plan(self) -> list[Connection]:
        raise NotImplementedError

    def parser(self, tag: str):
        """The parser of a connection's frames (``.parse(raw, recv_ns) -> events``)."""
        p = self._parsers.get(tag)
        if p is None:
            p = self._parsers[tag] = self._new_parser(tag)
        return p

    def _new_parser(self, tag: str):
        raise NotImplementedError

    @classmethod
    def group_of_tag(cls, tag: str) -> enum.Enum:
        """The market of a journal tag; ``ValueError`` for a tag this venue never writes."""
        raise NotImplementedError

    def group_of_symbol(self, symbol: str) -> enum.Enum:
        return self._market[symbol]

    def symbols_of_group(self, group) -> tuple[str, ...]:
        return tuple(s for s, m in self._market.items() if m == group)

    def book_rule(self, symbol: str) -> Market:
        """The ``BookBuilder`` sequencing rule of a symbol's diffs (a Binance market)."""
        return self.sequencing(self._market[symbol])

    dropped_events: frozenset = frozenset()  # event classes of unsubscribed channels

    @classmethod
    def quote_books(cls, config) -> bool:
        """Whether books are kept only to quote their top (no book channel configured: the
        venue's best bid/offer stream is a book, Bybit's orderbook.1); they write no book rows."""
        return False

    # -- the venue's wire, without a collector (the replayer, importers) ----------------
    @classmethod
    def new_parser(cls, market, *, max_frame_bytes: int = MAX_FRAME_BYTES, book_natives=frozenset(), markets=None):
        """A fresh parser of the frames of one market (``.parse(raw, recv_ns) -> events``).

        ``book_natives``: native ids whose book the connection carries (``book_quotes``
        venues quote those from the book, never from another stream). ``markets``: the
        ``collectors.symbols.Markets`` mapping native ids (default the built-in table;
        importers add the coins of an archive it lacks); Binance ids need none.
        """
        raise NotImplementedError

    @classmethod
    def book_native(cls, raw: bytes) -> str | None:
        """The native id of a book frame of a ``book_quotes`` venue, else None (cheap scan)."""
        return None

    @classmethod
    def depth_frame_kind(cls, raw: bytes) -> str | None:
        """``"diff"`` or ``"partial"`` for a depth frame of a venue with partial-book streams
        (``partial_books``), else None (cheap scan). A source whose book frames are all
        partial books stores a row per frame by default, as the collector does for a
        config of partial-book channels only (``CollectorConfig.partial_book_rows``)."""
        return None

    @classmethod
    def sequencing(cls, market) -> Market:
        """The ``BookBuilder`` diff rule of a market's books (a Binance ``Market`` value)."""
        return Market.SPOT

    @staticmethod
    def apply_snapshot(book, ev: DepthSnapshot) -> list:
        """A snapshot frame of the venue into ``book`` -> ``BookTop``/``Gap`` rows."""
        return book.on_partial(ev)

    @classmethod
    def claims(cls, msg) -> bool:
        """Whether a decoded frame has this venue's shape (the shapes are disjoint)."""
        raise NotImplementedError

    @classmethod
    def infer_market(cls, raw: bytes):
        """The market a raw frame comes from, or None when its fields cannot tell."""
        raise NotImplementedError

    @classmethod
    def market_of_url(cls, url: str):
        """The market of a websocket/REST URL of this venue, or None."""
        raise NotImplementedError

    def parsers(self) -> dict:
        """``{state key: parser}`` of parsers whose state (``save_state``/``restore_state``)
        must carry across a restart; none by default."""
        return {}

    @classmethod
    def advances_clock(cls, ev: DepthSnapshot) -> bool:
        """Whether a snapshot frame's time counts for grid flushes (``snapshots_advance_clock``)."""
        return cls.snapshots_advance_clock

    # -- book hooks ---------------------------------------------------------------------
    def on_book_snapshot(self, book, ev: DepthSnapshot) -> list:
        """A snapshot frame for a symbol's book -> ``BookTop``/``Gap`` rows."""
        return self.apply_snapshot(book, ev)

    def on_connection_gap(self, book) -> None:
        """The symbol's connection was down: diffs were missed, the book must be rebuilt."""
        book.reset()

    def resync_messages(self, book) -> list[dict]:
        """Messages that make the venue send ``book`` a fresh snapshot ([] for none)."""
        return []


# -- Binance -----------------------------------------------------------------------------------
class BinanceFeed(VenueFeed):
    venue = Venue.BINANCE
    markets = Market
    ENDPOINTS = bn.ENDPOINTS
    CHANNELS = tuple(Channel)
    rest_snapshots = True
    partial_books = True
    snapshots_advance_clock = True  # futures partial books carry E; spot ones as dated (see below)
    exchange = "binance"  # the ccxt id of the symbols (Binance.US: "binanceus")
    TAG_PREFIX = ""  # journal tags: "<market>-<i>" (unchanged since before other venues)

    @classmethod
    def market_of(cls, symbol: str) -> Market:
        if symbol.partition(":")[0] != cls.exchange:
            raise ValueError(f"symbols: {symbol!r} is not a {cls.exchange} tickstore symbol like {cls.EXAMPLE!r}")
        return bn.from_tickstore(symbol)[1]

    EXAMPLE = "binance:BTC/USDT:USDT"

    @classmethod
    def check(cls, config) -> None:
        for s in config.symbols:
            try:
                cls.market_of(s)
            except (BadFrame, ValueError) as exc:
                why = str(exc)
                raise ValueError(why if why.startswith("symbols: ") else f"symbols: {why}") from None
        super().check(config)
        for s in config.symbols:
            if cls.market_of(s) is Market.SPOT and all(c.futures_only for c in config.channels):
                raise ValueError(
                    f"channels: none of {[c.name.lower() for c in config.channels]} exists for {cls.exchange} "
                    f"spot symbol {s!r} (futures only)"
                )
        partial = [c for c in config.channels if c.partial_levels is not None]
        shallow = [c for c in partial if c.partial_levels < config.book_levels]
        if shallow:
            raise ValueError(
                f"channels: {[c.name.lower() for c in shallow]} carry {shallow[0].partial_levels} levels, fewer than "
                f"book_levels={config.book_levels}; use a deeper partial book or a smaller book_levels"
            )

    @classmethod
    def depth_frame_kind(cls, raw: bytes) -> str | None:
        return bn.depth_frame_kind(raw)

    @staticmethod
    def advances_clock(ev: DepthSnapshot) -> bool:
        """A snapshot frame with exchange time (spot partial books not dated by a depth
        frame carry their receive time: ts == recv_ns) moves the grid clock."""
        return ev.ts != ev.recv_ns

    def plan(self) -> list[Connection]:
        cfg = self.config
        by_market: dict[Market, list[tuple[str, list[str]]]] = defaultdict(list)
        for s in cfg.symbols:
            market = self._market[s]
            chans = [c for c in cfg.channels if not (c.futures_only and market is Market.SPOT)]
            by_market[market].append((s, bn.stream_names(s, chans, market=market)))
        out = []
        for market, items in by_market.items():
            for i, g in enumerate(_chunks(items, cfg.streams_per_connection)):
                streams = tuple(st for _, sts in g for st in sts)
                url = bn.ws_url(market, list(streams), endpoints=cfg.endpoints_of(market))
                out.append(Connection(f"{self.TAG_PREFIX}{market.value}-{i}", market, tuple(s for s, _ in g), streams, url,
                                      is_control=bn.is_control_frame))
        return out

    def parser(self, tag: str):
        return self.rest_parser(self.group_of_tag(tag))

    def rest_parser(self, market: Market) -> bn.BinanceParser:
        """The parser of a market (frames and REST snapshots; one per market: spot quote
        times and settlements come from earlier frames of the market)."""
        p = self._parsers.get(market)
        if p is None:
            p = self._parsers[market] = self.new_parser(
                market, max_frame_bytes=self.config.max_frame_bytes, klines=getattr(self.config, "klines", True)
            )
        return p

    def parsers(self) -> dict:
        """``{state key: parser}`` of the parsers made so far (their state is saved with the books)."""
        return {parser_key(type(self), m): p for m, p in self._parsers.items()}

    @classmethod
    def new_parser(cls, market, *, max_frame_bytes: int = MAX_FRAME_BYTES, book_natives=frozenset(),
                   klines: bool = True, markets=None) -> bn.BinanceParser:
        return bn.BinanceParser(Market(market), max_frame_bytes=max_frame_bytes, exchange=cls.exchange, klines=klines)

    @classmethod
    def sequencing(cls, market) -> Market:
        return Market(market)

    @classmethod
    def claims(cls, msg) -> bool:
        return bn.claims(msg)

    @classmethod
    def infer_market(cls, raw: bytes) -> Market | None:
        return bn.infer_market(raw)

    @classmethod
    def market_of_url(cls, url: str) -> Market | None:
        """The market of a URL of this venue (``venue_of_url``: a ``binance.us`` host is
        Binance.US's, any other Binance URL Binance's), None for another venue's."""
        venue = venue_of_url(url)
        if venue != cls.exchange and not (venue is None and cls.exchange == "binance"):
            return None
        return bn.market_of_url(url)

    @classmethod
    def group_of_tag(cls, tag: str) -> Market:
        body = tag[len(cls.TAG_PREFIX):] if tag.startswith(cls.TAG_PREFIX) else None
        try:
            if body is None or (cls.TAG_PREFIX == "" and tag.startswith(BinanceUSFeed.TAG_PREFIX)):
                raise ValueError
            return Market(body.split("-")[0].split(":")[0])
        except ValueError:
            raise ValueError(f"{tag!r} is not a {cls.exchange} connection tag") from None


class BinanceUSFeed(BinanceFeed):
    """Binance.US (ccxt ``binanceus``): Binance's spot protocol on its own hosts, its own
    books and trade ids, so its symbols are ``binanceus:...`` and its journal tags
    ``binanceus-spot-<i>`` (never taken for Binance's)."""

    venue = Venue.BINANCEUS
    ENDPOINTS = bn.ENDPOINTS_US
    CHANNELS = tuple(c for c in Channel if not c.futures_only)
    exchange = "binanceus"
    TAG_PREFIX = "binanceus-"
    EXAMPLE = "binanceus:BTC/USDT"

    @classmethod
    def claims(cls, msg) -> bool:
        return False  # its frames are Binance spot frames: only a URL (or --venue) says Binance.US


# -- Bybit -------------------------------------------------------------------------------------
class BybitFeed(VenueFeed):
    """Bybit v5 linear + spot. A book break makes the collector resubscribe the topic;
    Bybit answers with a snapshot (``exchanges.bybit.apply_to_book`` then resets the book,
    and the next delta writes the ``resync`` gap)."""

    venue = Venue.BYBIT
    markets = bb.Category
    book_quotes = True  # orderbook.1 is Bybit's BBO stream; deeper books quote their top too
    ENDPOINTS = {
        c: Endpoints(bb.endpoint(c), "https://api.bybit.com", "/v5/market/orderbook") for c in bb.Category
    }
    CHANNELS = (Channel.TRADES, Channel.QUOTES, Channel.DEPTH, Channel.MARK, Channel.LIQUIDATIONS)
    MAX_LEVELS = 200
    RESUBSCRIBE_AFTER_S = 5.0  # a resubscription unanswered this long may be sent again

    def __init__(self, config):
        super().__init__(config)
        # the book topic: the configured depth, or orderbook.1 (Bybit's best bid/offer stream,
        # snapshots only) when only quotes are asked for: quotes are the book's top, as in replay
        self.depth = self.book_depth(config)
        drop = set()
        if Channel.QUOTES not in config.channels:
            drop.add(Quote)  # tickers were subscribed for mark only
        if Channel.MARK not in config.channels:
            drop.update((Mark, OpenInterest))
        self.dropped_events = frozenset(drop)
        self._asked: dict[str, float] = {}  # symbol -> monotonic time of the last resubscribe

    @classmethod
    def market_of(cls, symbol: str) -> bb.Category:
        info = _info("bybit", symbol)
        if info.type is MarketType.SPOT:
            return bb.Category.SPOT
        if info.type is MarketType.SWAP and info.linear:
            return bb.Category.LINEAR
        raise ValueError(f"symbols: {symbol!r}: the bybit collector takes v5 linear perpetuals and spot")

    @classmethod
    def check(cls, config) -> None:
        super().check(config)
        if config.book_levels > cls.MAX_LEVELS and Channel.DEPTH in config.channels:
            raise ValueError(f"book_levels: bybit books go to {cls.MAX_LEVELS} levels (orderbook.200), got {config.book_levels}")
        for s in config.symbols:
            if not cls._topics(config, s, cls.market_of(s)):
                raise ValueError(f"channels: none of {[c.name.lower() for c in config.channels]} exists for bybit spot symbol {s!r}")

    @staticmethod
    def book_depth(config) -> int | None:
        """The ``orderbook.<depth>`` topic of a config: 50 or 200 for ``depth`` (as deep as
        ``book_levels`` needs), 1 for ``quotes`` alone, None for neither."""
        if Channel.DEPTH in config.channels:
            return 50 if config.book_levels <= 50 else 200
        return 1 if Channel.QUOTES in config.channels else None

    @classmethod
    def quote_books(cls, config) -> bool:
        """``quotes`` without ``depth``: books of orderbook.1, kept for their top only."""
        return cls.book_depth(config) == 1

    @classmethod
    def _topics(cls, cfg, symbol: str, cat: bb.Category) -> list[str]:
        native = MARKETS.from_tickstore(symbol).native
        linear = cat is bb.Category.LINEAR
        ch = set(cfg.channels)
        out = []
        if Channel.TRADES in ch:
            out.append(bb.topic(bb.Channel.TRADES, native))
        depth = cls.book_depth(cfg)
        if depth is not None:  # depth, or quotes (orderbook.1): quotes are the book's top
            out.append(bb.topic(bb.Channel.BOOK, native, depth=depth))
        if linear and Channel.MARK in ch:  # spot tickers carry no mark
            out.append(bb.topic(bb.Channel.TICKERS, native))
        if linear and Channel.LIQUIDATIONS in ch:
            out.append(bb.topic(bb.Channel.LIQUIDATIONS, native))
        return out

    def plan(self) -> list[Connection]:
        cfg = self.config
        by_cat: dict[bb.Category, list[tuple[str, list[str]]]] = defaultdict(list)
        for s in cfg.symbols:
            cat = self._market[s]
            by_cat[cat].append((s, self._topics(cfg, s, cat)))
        out = []
        for cat, items in by_cat.items():
            for i, g in enumerate(_chunks(items, cfg.streams_per_connection)):
                topics = [t for _, ts in g for t in ts]
                out.append(Connection(
                    f"bybit-{cat.value}-{i}", cat, tuple(s for s, _ in g), tuple(topics), cfg.endpoints_of(cat).ws,
                    tuple(bb.subscribe_messages(topics)), bb.ping_message(), bb.is_control_frame,
                ))
        return out

    def _new_parser(self, tag: str) -> bb.BybitParser:
        cat = self.group_of_tag(tag)
        booked = frozenset()
        if self.book_depth(self.config) is not None:  # a book topic per symbol: quotes come from it
            booked = frozenset(MARKETS.from_tickstore(s).native for s in self.symbols_of_group(cat))
        return self.new_parser(cat, max_frame_bytes=self.config.max_frame_bytes, book_natives=booked)

    @classmethod
    def new_parser(cls, market, *, max_frame_bytes: int = MAX_FRAME_BYTES, book_natives=frozenset(),
                   markets=None) -> bb.BybitParser:
        return bb.BybitParser(bb.Category(market), book_natives=frozenset(book_natives), markets=markets or MARKETS)

    @classmethod
    def book_native(cls, raw: bytes) -> str | None:
        return bb.book_native(raw)

    @staticmethod
    def apply_snapshot(book, ev: DepthSnapshot) -> list:
        return bb.apply_to_book(book, ev)

    @classmethod
    def claims(cls, msg) -> bool:
        return bb.claims(msg)

    @classmethod
    def infer_market(cls, raw: bytes) -> bb.Category | None:
        return bb.infer_category(raw)

    @classmethod
    def market_of_url(cls, url: str) -> bb.Category | None:
        return bb.category_of_url(url)

    @classmethod
    def group_of_tag(cls, tag: str) -> bb.Category:
        parts = tag.split("-")
        if len(parts) != 3 or parts[0] != "bybit":
            raise ValueError(f"{tag!r} is not a bybit connection tag")
        return bb.Category(parts[1])

    def on_book_snapshot(self, book, ev: DepthSnapshot) -> list:
        self._asked.pop(book.symbol, None)
        return self.apply_snapshot(book, ev)

    def on_connection_gap(self, book) -> None:
        self._asked.pop(book.symbol, None)  # the new connection's subscription brings a snapshot
        book.reset()

    def resync_messages(self, book) -> list[dict]:
        now = time.monotonic()
        if now - self._asked.get(book.symbol, -1e18) < self.RESUBSCRIBE_AFTER_S:
            return []
        self._asked[book.symbol] = now
        t = bb.topic(bb.Channel.BOOK, MARKETS.from_tickstore(book.symbol).native, depth=self.depth)
        return bb.subscribe_messages([t], op="unsubscribe") + bb.subscribe_messages([t])


# -- Hyperliquid -------------------------------------------------------------------------------
_HL_TYPES = {Channel.TRADES: hl.Channel.TRADES, Channel.QUOTES: hl.Channel.BBO, Channel.DEPTH: hl.Channel.BOOK,
             Channel.MARK: hl.Channel.ASSET_CTX}


class HyperliquidFeed(VenueFeed):
    """Hyperliquid perpetuals. Every ``l2Book`` frame is the whole book (no chain to check),
    so a reset book is whole again at the next frame; that moment writes the ``resync``
    gap (``[last book before the outage, first book after)``, ``BookBuilder.on_partial``),
    as the other venues' books do. No liquidations: there is no public stream (see the
    module docstring)."""

    venue = Venue.HYPERLIQUID
    markets = hl.Market
    ENDPOINTS = {hl.Market.PERP: Endpoints(hl.WS_URL, hl.INFO_URL.removesuffix("/info"), "/info")}
    CHANNELS = (Channel.TRADES, Channel.QUOTES, Channel.DEPTH, Channel.MARK, Channel.LIQUIDATIONS)
    MAX_LEVELS = 20

    @classmethod
    def market_of(cls, symbol: str) -> hl.Market:
        _info("hyperliquid", symbol)
        return hl.Market.PERP

    @classmethod
    def check(cls, config) -> None:
        super().check(config)
        if config.book_levels > cls.MAX_LEVELS and Channel.DEPTH in config.channels:
            raise ValueError(f"book_levels: hyperliquid l2Book frames have {cls.MAX_LEVELS} levels a side, got {config.book_levels}")
        if not set(config.channels) & set(_HL_TYPES):
            raise ValueError("channels: hyperliquid offers no public liquidation stream; add trades, quotes, depth or mark")

    def plan(self) -> list[Connection]:
        cfg = self.config
        types = [_HL_TYPES[c] for c in cfg.channels if c in _HL_TYPES]
        if Channel.LIQUIDATIONS in cfg.channels:
            log.info("hyperliquid has no public liquidation stream: channel 'liquidations' skipped")
        items = []
        for s in cfg.symbols:
            coin = MARKETS.from_tickstore(s).native
            items.append((s, [f"{t.value}:{coin}" for t in types]))
        out = []
        for i, g in enumerate(_chunks(items, cfg.streams_per_connection)):
            coins = [MARKETS.from_tickstore(s).native for s, _ in g]
            subs = []
            for coin in coins:
                subs += hl.subscribe_messages(types, [coin])
            out.append(Connection(
                f"hyperliquid-{i}", hl.Market.PERP, tuple(s for s, _ in g), tuple(st for _, sts in g for st in sts),
                cfg.endpoints_of(hl.Market.PERP).ws, tuple(subs), hl.ping_message(), hl.is_control_frame,
            ))
        return out

    def _new_parser(self, tag: str) -> hl.HyperliquidParser:
        return self.new_parser(self.group_of_tag(tag))

    @classmethod
    def new_parser(cls, market=hl.Market.PERP, *, max_frame_bytes: int = MAX_FRAME_BYTES,
                   book_natives=frozenset(), markets=None) -> hl.HyperliquidParser:
        hl.Market(market)
        return hl.HyperliquidParser(markets=markets or MARKETS)

    @classmethod
    def claims(cls, msg) -> bool:
        return hl.claims(msg)

    @classmethod
    def infer_market(cls, raw: bytes) -> hl.Market | None:
        return hl.infer_market(raw)

    @classmethod
    def market_of_url(cls, url: str) -> hl.Market | None:
        return hl.market_of_url(url)

    @classmethod
    def group_of_tag(cls, tag: str) -> hl.Market:
        if not tag.startswith("hyperliquid-"):
            raise ValueError(f"{tag!r} is not a hyperliquid connection tag")
        return hl.Market.PERP



def _info(exchange: str, symbol: str):
    try:
        return MARKETS.venue_info(exchange, symbol)
    except SymbolError as exc:
        raise ValueError(f"symbols: {exc}") from None

_FEEDS = {Venue.BINANCE: BinanceFeed, Venue.BINANCEUS: BinanceUSFeed, Venue.BYBIT: BybitFeed, Venue.HYPERLIQUID: HyperliquidFeed}


def feed_class(venue: Venue) -> type[VenueFeed]:
    return _FEEDS[Venue(venue)]


def feed_of_tag(tag: str) -> tuple[type[VenueFeed], enum.Enum]:
    """The venue and market of a journal tag (``usdm-0``, ``usdm:BTCUSDT``, ``bybit-linear-0``,
    ``hyperliquid-0``); ``ValueError`` for a tag no collector writes."""
    for feed in (HyperliquidFeed, BybitFeed, BinanceUSFeed, BinanceFeed):
        try:
            return feed, feed.group_of_tag(tag)
        except ValueError:
            continue
    raise ValueError(f"{tag!r} is not a connection tag of any venue's collector")
