"""Recorded websocket frames -> the live venue parser -> books -> the sink, as the collector does.

::

    FrameFeed(venue, market, sink, options)
    feed.frame(raw, recv_ns, line)   # one frame: parser.parse, then collectors.book.route_events
    feed.close()                     # the books' last grid rows (up to the last book time)

Books follow the venue's rule of the live collector (``collectors.venues``): Binance diffs
with the market's U/u/pu rule, REST snapshots loaded, partial books replace the book;
Bybit snapshots reset the book (``exchanges.bybit.apply_to_book``), deltas chain on ``u``;
every Hyperliquid ``l2Book`` frame is the whole book. Rows are sampled on the grid of
``options`` (the collector's default, 5 levels every 100 ms).

A frame the parser refuses (malformed, unknown stream or symbol) is an error of the file
(``MalformedInput`` with its line): an archive is not a live feed that must go on.
"""

from __future__ import annotations

from collectors.book import BookBuilder, book_table, route_events
from collectors.exchanges import BadFrame
from collectors.exchanges import binance as bn
from collectors.exchanges import bybit as bb
from collectors.exchanges import hyperliquid as hl
from collectors.symbols import Markets, MarketType, SymbolNotFound

from .core import DataImportError, ImportOptions, MalformedInput, Sink

__all__ = ["FrameFeed", "markets_for"]


def markets_for(venue: str, natives, market: str | None) -> Markets:
    """A market registry knowing ``natives`` (venue ids the built-in table may lack).

    The live parsers map ids through a ``collectors.symbols.Markets``; an archive of a coin
    the built-in table does not list gets it added, named as ccxt names it
    (Hyperliquid ``WIF`` -> ``WIF/USDC:USDC``; Bybit ``PEPEUSDT`` -> ``PEPE/USDT:USDT``).
    """
    reg = Markets()
    mtype = MarketType.SPOT if market == "spot" else MarketType.SWAP
    for native in natives:
        try:
            reg.info(venue, native, market_type=mtype)
            continue
        except SymbolNotFound:
            pass
        if venue == "hyperliquid":
            base = native.upper()
            reg.set_markets(venue, [{"id": native, "baseName": native, "symbol": f"{base}/USDC:USDC", "base": base,
                                     "quote": "USDC", "settle": "USDC", "type": "swap"}])
        elif venue == "bybit":
            unified = bn.to_unified(native, bn.Market.SPOT if mtype is MarketType.SPOT else bn.Market.USDM)
            pair = unified.split(":")[0]
            base, quote = pair.split("/")
            reg.set_markets(venue, [{"id": native, "symbol": unified, "base": base, "quote": quote,
                                     "settle": None if mtype is MarketType.SPOT else quote, "type": mtype.value}])
    return reg


class _Batch:
    """What ``route_events`` writes to: the sink."""

    def __init__(self, sink: Sink):
        self.sink = sink

    def add(self, ev) -> None:
        self.sink.events([ev])

    def extend(self, events) -> None:
        self.sink.events(events)


class FrameFeed:
    """One file's frames through one venue's live parser and books (see the module docstring)."""

    def __init__(self, venue: str, market: str | None, sink: Sink, options: ImportOptions, *, where: str,
                 markets: Markets | None = None):
        self.venue, self.where, self.options = venue, where, options
        self.levels = options.book_levels or 5
        book_table(self.levels)
        self.books: dict[str, BookBuilder] = {}
        self.last_ts: dict[str, int] = {}
        self.batch = _Batch(sink)
        self.on_snapshot = None
        if venue == "binance":
            self.market = bn.Market(market or "spot")
            self.parser = bn.BinanceParser(self.market)
            self.rule = self.market
        elif venue == "bybit":
            category = bb.Category.SPOT if market == "spot" else bb.Category.LINEAR
            self.parser = bb.BybitParser(category, markets=markets) if markets is not None else bb.BybitParser(category)
            self.rule = bn.Market.SPOT  # u == previous u + 1 (see exchanges.bybit)
            self.on_snapshot = bb.apply_to_book
        elif venue == "hyperliquid":
            self.parser = hl.HyperliquidParser(markets=markets) if markets is not None else hl.HyperliquidParser()
            self.rule = bn.Market.SPOT  # never used: every l2Book frame is the whole book
        else:
            raise DataImportError(f"{where}: no live parser for venue {venue!r}")

    def book_of(self, ev):
        b = self.books.get(ev.symbol)
        if b is None:
            b = self.books[ev.symbol] = BookBuilder(ev.symbol, self.rule, levels=self.levels,
                                                    interval_ms=self.options.book_interval_ms)
        if ev.ts > self.last_ts.get(ev.symbol, -1):
            self.last_ts[ev.symbol] = ev.ts
        return b

    def frame(self, raw: bytes, recv_ns: int, line: int | None) -> None:
        try:
            events = self.parser.parse(raw, recv_ns)
        except BadFrame as exc:
            raise MalformedInput(self.where, line, f"{type(exc).__name__}: {exc}") from None
        if events:
            route_events(events, self.batch, self.book_of, keep_diffs=self.options.keep_diffs,
                         on_snapshot=self.on_snapshot)

    def snapshot(self, raw: bytes, recv_ns: int, line: int | None, *, native_symbol: str | None = None) -> None:
        """A Binance REST depth body: loaded into the book of its symbol (the live resync)."""
        try:
            snap = self.parser.parse_snapshot(raw, recv_ns, native_symbol=native_symbol)
        except BadFrame as exc:
            raise MalformedInput(self.where, line, f"{type(exc).__name__}: {exc}") from None
        self.batch.extend(self.book_of(snap).on_snapshot(snap))

    def close(self) -> list:
        """Grid rows of every book up to its last book time (inclusive)."""
        drain = getattr(self.parser, "drain", None)
        if drain is not None:  # Binance spot quotes / partial books still waiting for a depth frame
            route_events(drain(), self.batch, self.book_of, keep_diffs=self.options.keep_diffs, on_snapshot=self.on_snapshot)
        out = []
        for sym, book in self.books.items():
            out += book.flush(self.last_ts[sym] + 1)
        return out

    def unsynced(self) -> list[str]:
        return sorted(s for s, b in self.books.items() if not b.synced)
