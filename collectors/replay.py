"""Replay recorded captures of any venue through the live parsers, book builder and batcher.

::

    capture files ──CaptureReader──> Frame(recv_ns, raw, kind, url, conn)
        │   merged by receive time across files (each file keeps its own order), so a
        │   day's files and their REST companions (cryptofeed ``.http.0.0``) may be given
        │   in any order; one file may hold several connections (cryptofeed v3 ``conn``,
        │   journal tags), each a source with its own venue, market and parser
        ├─ (journal=: Journal.append_many, 256 frames per write, before they are processed)
        ├─ WS    ──<venue parser>.parse──> Trade, Quote, Mark, OpenInterest, Liquidation ──┐
        │          (book.route_events) └──> DepthDiff, DepthSnapshot ──BookBuilder──> BookTop, Gap
        ├─ REST  ──parse_snapshot──> DepthSnapshot ──BookBuilder.on_snapshot  (Binance only)   │
        └─ GAP   (collector journals) ──> Gap; a connection gap resets the symbol's book     │
                                                                   EventBatcher <────────────┘
                                                                        │ every flush_events
                                                  store[table].append(symbol, frame, source="replay")

Venue and market: from ``venue=``/``market=`` or, per source, from its first decisive
URL (a cryptofeed ``connect`` record, a REST URL), journal tag or frame. The venues'
frame shapes are disjoint (Binance: ``stream``/``e``/``lastUpdateId``; Bybit v5:
``topic``/``op``; Hyperliquid: ``channel``; ``VenueFeed.claims``), so a frame is never
taken for another venue's; the market then comes from the venue's own rules
(``VenueFeed.infer_market``: Binance futures fields, Bybit UUID trade ids or mark fields
of linear tickers). Every file is checked before anything is written: a source whose
venue or market cannot be told, or that contradicts ``venue=``/``market=``, raises
``ReplayError`` naming the file and what to pass, and changes nothing. A file that yields
no rows at all raises ``ReplayError`` after the other files are stored.

Books: one ``BookBuilder`` per symbol, whatever file its frames come from. Their state is
kept in ``<store root>/_book_state.json`` (``collectors.bookstate``) when a replay ends, so
the next replay into the same store continues each book exactly (a day's file after the
previous day's, one run each, stores the same rows as one run over both); a book that is
not valid at the end gets an ``unsynced`` gap up to its last update, and the next run's
``resync`` gap continues it. Replaying an earlier span again builds its own book (the
saved state is newer than its frames). REST snapshots that do not name their symbol
(hftbacktest spot/USD-M) belong to the depth stream of their own source: the last depth
symbol seen in it, or, when the snapshot comes first, the next one.

Book rows: on the grid (``book_interval_ms``), except for a source whose book frames are
all Binance partial books (``depth5/10/20``, no diff in the whole capture): a row per frame
at its exchange time by default (``partial_book_rows``, the collector's option and default).

Book rows for a quiet book (no diff for a while) are flushed from the grid clock of its
venue's market, the newest depth time of all its books, by the collector's rule
(``book.flush_horizon``: 1 s behind it, in whole seconds), so a replay of a collector's
journal stores the book rows the collector stored, whenever the collector's flushes ran.

Idempotent: a second replay of the same capture writes nothing. Keyed tables
(``tickstore.schemas``: trades by trade id, quotes, books, mark by time, the gap ledger
by its whole row, book diffs by each level's place in its diff) skip stored keys in ``Table.append``; the keyless
``liquidations`` append only the rows not stored yet (``collectors.reconcile``). Bad frames (malformed JSON, unknown streams, oversized)
are counted per error class in the report, never fatal. Damaged input (a cut or corrupt
gzip/zstd stream, a line that is no capture line unless ``skip_bad_lines``) stops the
replay with a one-line ``CaptureError`` naming the file and line, after storing every row
read before it.
"""

from __future__ import annotations

import gc
import heapq
import os
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np
import orjson

from tickstore.errors import TickstoreError

from .book import BookBuilder, book_table, flush_horizon, route_events
from .bookstate import BookStates, book_key, parser_key
from .capture import CaptureError, CaptureReader, Frame, FrameKind
from .events import DepthDiff, DepthSnapshot, EventBatcher, Gap, source_of
from .exchanges import BadFrame
from .exchanges.binance import MAX_FRAME_BYTES, Market, from_tickstore, native_symbol_of_url
from .journal import Journal, RecordKind
from .reconcile import unstored
from .venues import BinanceFeed, BinanceUSFeed, BybitFeed, HyperliquidFeed, Venue, VenueFeed, feed_class, feed_of_tag

__all__ = ["replay", "replay_frames", "detect", "ReplayReport", "ReplayError", "SOURCE", "BOOK_STATE_FILE"]

SOURCE = "replay"
BOOK_STATE_FILE = "_book_state.json"  # in the store root (see collectors.bookstate)
# Frames read, journaled (one write) and then processed at a time. Frames above
# max_frame_bytes are still read (and journaled: they were received), so a chunk holds at
# most 256 of whatever the capture's lines are; Binance frames are < 100 kB.
_CHUNK = 256
# Binance.US before Binance: its URLs are the only thing that tells the two apart (frames
# without one are Binance's unless --venue binanceus says otherwise)
_FEEDS: tuple[type[VenueFeed], ...] = (BinanceUSFeed, BinanceFeed, BybitFeed, HyperliquidFeed)
_NAMES = {Venue.BINANCE: "Binance", Venue.BINANCEUS: "Binance.US", Venue.BYBIT: "Bybit", Venue.HYPERLIQUID: "Hyperliquid"}


class ReplayError(TickstoreError, ValueError):
    """A replay that cannot start (no files, unknown venue or market, contradicting
    ``venue=``/``market=``) or a file that yielded no rows (``report`` then holds what the
    other files stored)."""

    report: "ReplayReport | None" = None


@dataclass(frozen=True)
class ReplayReport:
    """What a replay read and wrote.

    ``markets``/``venues`` name each source: a file, or ``<file>#<connection>`` for files
    holding several connections. ``rows`` counts the rows the store wrote per table;
    ``duplicates`` the rows it skipped because their key was already stored (a replay run
    twice writes nothing the second time); ``latency_ms`` are percentiles of receive time
    minus exchange time over every frame that carries an exchange time (negative when the
    recorder's clock lagged the exchange); ``restored_books`` the symbols whose book
    continued from a state saved by an earlier run.
    """

    files: tuple[str, ...]
    markets: dict[str, str]  # source -> market
    frames: int  # websocket frames read (all kinds of payload, bad ones included)
    rest_frames: int  # REST bodies read
    snapshots: int  # REST depth snapshots handed to a book
    events: int  # events parsed
    rows: dict[str, int]  # table -> rows appended
    rows_by_symbol: dict[tuple[str, str], int]  # (table, symbol) -> rows appended
    duplicates: dict[tuple[str, str], int]  # (table, symbol) -> rows the store already held
    gaps: int  # Gap rows written (sequence breaks, resyncs, stale, unsynced)
    sequence_breaks: int
    resyncs: int
    crossed: int  # crossed books detected (each also a sequence break)
    bad_frames: dict[str, int]  # error class -> count
    bad_lines: int  # capture lines that were no frame at all (skip_bad_lines)
    unsynced_books: tuple[str, ...]  # symbols whose book was not valid at the end
    latency_ms: dict[str, float]  # p50, p90, p99, min, max (empty if no timed frame)
    elapsed_s: float
    book_stats: dict[str, dict] = field(default_factory=dict)  # symbol -> BookStats fields
    venues: dict[str, str] = field(default_factory=dict)  # source -> venue
    restored_books: tuple[str, ...] = ()

    @property
    def frames_per_s(self) -> float:
        return (self.frames + self.rest_frames) / self.elapsed_s if self.elapsed_s > 0 else float("inf")

    def summary(self) -> str:
        """A few human-readable lines (what the CLI prints)."""
        lines = [
            f"replayed {self.frames} frames + {self.rest_frames} REST bodies from {len(self.files)} file(s) "
            f"in {self.elapsed_s:.2f}s ({self.frames_per_s:,.0f} frames/s)",
        ]
        for src in self.markets:
            lines.append(f"  {src}: {self.venues.get(src, '?')} {self.markets[src]}")
        for (table, symbol), n in sorted(self.rows_by_symbol.items()):
            dup = self.duplicates.get((table, symbol), 0)
            lines.append(f"  {table:<14} {symbol:<28} {n:>9} rows" + (f" ({dup} already stored)" if dup else ""))
        lines.append(
            f"gaps {self.gaps} (sequence breaks {self.sequence_breaks}, resyncs {self.resyncs}, "
            f"crossed {self.crossed}); bad frames {dict(self.bad_frames) or 0}; bad lines {self.bad_lines}"
        )
        if self.restored_books:
            lines.append(f"books continued from the saved state of an earlier run: {list(self.restored_books)}")
        if self.unsynced_books:
            lines.append(f"books not synced at the end (no snapshot after the last break): {list(self.unsynced_books)}")
        if self.latency_ms:
            lat = self.latency_ms
            lines.append(
                "latency recv - exchange (ms): "
                + ", ".join(f"{k} {lat[k]:.1f}" for k in ("min", "p50", "p90", "p99", "max"))
            )
        return "\n".join(lines)


class _Source:
    """One connection of one capture: its venue, market and parser, and its book clock."""

    __slots__ = (
        "label", "file", "feed", "market", "parser", "parse", "tag", "rest_native", "on_snapshot", "depth_symbol",
        "pending", "books", "clock", "book_of", "book_rows",
    )

    def __init__(self, label: str, file, feed: type[VenueFeed], market, parser, tag: str, rest_native: str | None):
        self.label = label
        self.file = file
        self.feed = feed
        self.market = market
        self.parser = parser
        self.parse = parser.parse
        self.tag = tag  # journal tag of its frames (one the collector's feed reads back)
        self.rest_native = rest_native  # native symbol of its REST snapshots, when the tag names it
        self.on_snapshot = feed.apply_snapshot
        self.depth_symbol: str | None = None  # last depth symbol seen in this source
        self.pending: list[Frame] = []  # symbol-less REST snapshots seen before any depth frame
        self.books: set[str] = set()  # symbols whose depth this source carries
        self.clock: _BookClock | None = None  # shared by the sources of its venue and market
        self.book_of = None  # route_events' book_of for this source's frames
        self.book_rows = "grid"  # BookBuilder(rows=) of the books this source creates


class _BookClock:
    """The grid clock of one venue's market, as the collector keeps it per market: the
    newest depth time its frames carried, the horizon its books were flushed to
    (``book.flush_horizon``) and the symbols whose books it flushes."""

    __slots__ = ("newest", "horizon", "symbols", "advances")

    def __init__(self, feed: type[VenueFeed]):
        self.newest = -1
        self.horizon = -1
        self.symbols: set[str] = set()
        self.advances = feed.advances_clock  # whether a snapshot frame moves the clock


class _File:
    __slots__ = ("path", "reader", "sources", "events", "bad", "frames", "first_bad")

    def __init__(self, path: Path, reader):
        self.path = path
        self.reader = reader
        self.sources: dict[str | None, _Source] = {}
        self.events = 0  # events its frames yielded (rows produced, stored or not)
        self.bad: Counter = Counter()
        self.frames = 0
        self.first_bad: str | None = None  # the message of its first bad frame (why a file gave nothing)


def _journal_tag(feed: type[VenueFeed], market) -> str:
    """A tag the venue's collector reads back (``VenueFeed.group_of_tag``)."""
    if issubclass(feed, BinanceFeed):
        return f"{feed.TAG_PREFIX}{market.value}"
    if feed is BybitFeed:
        return f"bybit-{market.value}-replay"
    return "hyperliquid-replay"


def _venue_arg(venue) -> type[VenueFeed] | None:
    if venue is None:
        return None
    try:
        return feed_class(Venue(venue.value if isinstance(venue, Venue) else venue))
    except ValueError:
        raise ReplayError(f"venue must be one of {[v.value for v in Venue]}, got {venue!r}") from None


def _market_arg(feed: type[VenueFeed] | None, market):
    """``market`` checked against the venue (or against every venue when it is unknown)."""
    if market is None:
        return None
    value = getattr(market, "value", market)
    feeds = (feed,) if feed is not None else _FEEDS
    if not any(value in [m.value for m in f.markets] for f in feeds):
        known = sorted({m.value for f in feeds for m in f.markets})
        where = f" of {feed.venue.value}" if feed is not None else ""
        raise ReplayError(f"market must be one of {known}{where}, got {market!r}")
    return value


# -- which venue and market each source is --------------------------------------------------------
def _detect(path: Path, feed_arg, market_arg, skip_bad_lines: bool) -> dict:
    """{conn: (feed, market, book natives, partial only)} of every source of one capture
    (see the module docstring)."""
    reader = CaptureReader(path, skip_bad_lines=skip_bad_lines)
    # conn -> [feed, market, evidence, native ids with a book topic, depth frame kinds seen]
    found: dict = {}
    decided: set = set()
    WS = FrameKind.WS
    for frame in reader:
        conn = frame.conn
        if conn in decided:
            entry = found[conn]
            feed = entry[0]
            if feed.book_quotes:  # quotes from books: which symbols have one (the whole capture)
                native = feed.book_native(frame.raw)
                if native is not None:
                    entry[3].add(native)
            elif feed.partial_books and "diff" not in entry[4]:
                # partial books only (a row per frame, as the collector) unless a diff comes:
                # the whole capture is read until one does
                if frame.kind is WS and frame.raw:
                    kind = feed.depth_frame_kind(frame.raw)
                    if kind is not None:
                        entry[4].add(kind)
            elif reader.format.one_connection:
                break
            continue
        entry = found.setdefault(conn, [None, None, None, set(), set()])
        if frame.kind is FrameKind.GAP:
            continue
        feed = mkt = None
        if conn is not None and reader.format.value == "journal":
            try:
                feed, mkt = feed_of_tag(conn)
            except ValueError as exc:
                raise ReplayError(f"{str(path)!r}: {exc}") from None
            evidence = f"journal tag {conn!r}"
        elif frame.url:
            for f in _FEEDS:
                m = f.market_of_url(frame.url)
                if m is not None:
                    feed, mkt = f, m
                    break
            evidence = f"URL {frame.url}"
        if feed is None and frame.raw:
            try:
                msg = orjson.loads(frame.raw)
            except orjson.JSONDecodeError:
                continue
            claimed = [f for f in _FEEDS if f.claims(msg)]
            if not claimed:
                continue
            feed = claimed[0]
            mkt = feed.infer_market(frame.raw)
            evidence = f"frame {frame.raw[:100]!r}"
        if feed is None:
            continue
        if entry[0] is not None and entry[0] is not feed:
            raise ReplayError(
                f"{_label(path, conn, True)!r} mixes {_NAMES[entry[0].venue]} and {_NAMES[feed.venue]} frames "
                f"({entry[2]}; {evidence}); give each venue's frames in their own file"
            )
        entry[0] = feed
        if entry[2] is None:
            entry[2] = evidence
        if feed.partial_books and frame.kind is WS and frame.raw:
            kind = feed.depth_frame_kind(frame.raw)
            if kind is not None:
                entry[4].add(kind)
        if feed.book_quotes and frame.raw:
            native = feed.book_native(frame.raw)
            if native is not None:
                entry[3].add(native)
        if mkt is not None:
            entry[1], entry[2] = mkt, evidence
            decided.add(conn)
    out = {}
    for conn, (feed, mkt, evidence, booked, depth_kinds) in found.items():
        where = _label(path, conn, len(found) > 1)
        if feed is None and feed_arg is None:
            if evidence is None and conn is not None and not reader.format.one_connection:
                continue  # a connection that carried no frame at all
            raise ReplayError(
                f"cannot tell the venue of {where!r} from its frames (none has a Binance, Bybit or Hyperliquid "
                f"shape); pass venue= (--venue) {[v.value for v in Venue]}"
            )
        if (feed is BinanceFeed and feed_arg is not None and issubclass(feed_arg, BinanceFeed)
                and evidence is not None and evidence.startswith("frame ") and mkt in (None, Market.SPOT)):
            feed = feed_arg  # Binance.US speaks Binance's spot frames: only a URL tells them apart
        if feed is not None and feed_arg is not None and feed is not feed_arg:
            raise ReplayError(
                f"{where!r} holds {_NAMES[feed.venue]} frames, not {_NAMES[feed_arg.venue]} ones "
                f"(first decisive: {evidence}); leave venue= out or pass venue={feed.venue.value!r}"
            )
        feed = feed or feed_arg
        if mkt is not None and market_arg is not None and mkt.value != market_arg:
            raise ReplayError(
                f"{where!r} holds {mkt.value} frames but market={market_arg!r} was given (first decisive: {evidence})"
            )
        if mkt is None and market_arg is not None:
            try:
                mkt = feed.markets(market_arg)
            except ValueError:
                raise ReplayError(
                    f"{where!r} holds {_NAMES[feed.venue]} frames; market={market_arg!r} is not one of its markets "
                    f"{[m.value for m in feed.markets]}"
                ) from None
        if mkt is None and len(feed.markets) == 1:
            mkt = next(iter(feed.markets))
        if mkt is None:
            raise ReplayError(
                f"cannot tell the {_NAMES[feed.venue]} market of {where!r} from its frames; pass market= (--market) "
                f"{', '.join(m.value for m in feed.markets)}"
            )
        out[conn] = (feed, mkt, frozenset(booked), depth_kinds == {"partial"})
    return out


def detect(path, *, venue: Venue | str | None = None, market=None, skip_bad_lines: bool = False) -> dict:
    """``{connection: (Venue, market)}`` of a capture file (``None`` for the one connection
    of a single-connection format), as ``replay`` places it.

    Raises ``ReplayError`` as ``replay`` does (venue or market cannot be told, contradicts
    ``venue=``/``market=``), ``CaptureError`` for a file that cannot be read.
    """
    feed = _venue_arg(venue)
    found = _detect(Path(path), feed, _market_arg(feed, market), skip_bad_lines)
    return {conn: (f.venue, m) for conn, (f, m, _, _) in found.items()}


def _label(path: Path, conn, several: bool) -> str:
    return f"{path}#{conn}" if several and conn is not None else str(path)


# -- the replay ------------------------------------------------------------------------------------
class _Replay:
    """The pipeline shared by ``replay`` (capture files) and ``replay_frames`` (an iterable)."""

    def __init__(self, store, *, book_levels, book_interval_ms, keep_diffs, flush_events, journal, book_state, source,
                 sink=None, on_bad=None):
        self.store = store
        self.sink = sink  # (table, symbol, frame) -> None instead of store appends (importers)
        self.on_bad = on_bad
        self.levels, self.interval_ms = int(book_levels), int(book_interval_ms)
        self.batcher = EventBatcher(book_table(book_levels))
        self.keep_diffs = keep_diffs
        self.flush_events = flush_events
        self.journal = journal
        self.source = source
        self.books: dict[str, BookBuilder] = {}
        self.clocks: dict[tuple, _BookClock] = {}  # per (venue feed, market): the grid clock of its books
        self.rows: Counter = Counter()
        self.skipped: Counter = Counter()  # rows the store already held (same key)
        self.bad: Counter = Counter()
        self.latency = array("q")
        self.n_ws = self.n_rest = self.n_events = self.n_snapshots = 0
        self.journaled = None  # journal position up to which every frame was processed
        if book_state is True or book_state is False or book_state is None:
            self.states = BookStates(Path(store.root) / BOOK_STATE_FILE) if store is not None and book_state else None
        else:  # a BookStates-like object: load() -> (books, meta), save(books)
            self.states = book_state
        self.saved = self.states.load()[0] if self.states is not None else {}
        self.restored: list[str] = []

    # -- books ------------------------------------------------------------------------------
    def book(self, symbol: str, src: _Source) -> BookBuilder:
        b = self.books.get(symbol)
        if b is None:
            b = BookBuilder(symbol, src.feed.sequencing(src.market), levels=self.levels, interval_ms=self.interval_ms,
                            quotes=src.feed.book_quotes and src.parser.book_quotes(symbol), rows=src.book_rows)
            state = self.saved.get(book_key(symbol, self.levels, self.interval_ms))
            if state is not None:
                try:
                    b.restore_state(state, older="discard")
                    self.restored.append(symbol)
                except ValueError:  # saved for another market rule: start from a snapshot
                    pass
            self.books[symbol] = b
        return b

    def book_of_source(self, src: _Source):
        """``route_events``' ``book_of`` for the frames of one source."""
        file_books, books = src.books, self.books
        key = (src.feed, src.market)
        src.clock = self.clocks.get(key) or self.clocks.setdefault(key, _BookClock(src.feed))

        def book_of(ev):
            sym = ev.symbol
            if type(ev) is DepthDiff and sym != src.depth_symbol:
                src.depth_symbol = sym
                for snap_frame in src.pending:  # symbol-less snapshots seen before
                    self.rest_snapshot(src, snap_frame, from_tickstore(sym)[0])
                src.pending.clear()
            if sym not in file_books:
                file_books.add(sym)
                src.clock.symbols.add(sym)
            return books.get(sym) or self.book(sym, src)

        return book_of

    def rest_snapshot(self, src: _Source, frame: Frame, native: str | None) -> None:
        try:
            snap = src.parser.parse_snapshot(frame.raw, frame.recv_ns, native_symbol=native)
        except BadFrame as exc:
            self.bad_frame(exc, frame, src)
            return
        self.n_snapshots += 1
        src.file.events += 1
        out = self.book(snap.symbol, src).on_snapshot(snap)
        if out:
            self.batcher.extend(out)

    # -- the store ------------------------------------------------------------------------
    def flush(self) -> None:
        store, rows, skipped = self.store, self.rows, self.skipped
        if self.sink is not None:
            for (table, symbol), frame in self.batcher.drain().items():
                self.sink(table, symbol, frame)
                rows[(table, symbol)] += len(frame)
            return
        for (table, symbol), frame in self.batcher.drain().items():
            if store is None:
                rows[(table, symbol)] += len(frame)
                continue
            t = store[table]
            fresh = frame if t.schema.key is not None else unstored(t, symbol, frame)  # keyless: liquidations
            commit = t.append(symbol, fresh, source=source_of(table, self.source))
            rows[(table, symbol)] += commit.rows
            skipped[(table, symbol)] += commit.skipped + len(frame) - len(fresh)
        if self.journal is not None and store is not None and self.journaled is not None:
            self.journal.commit(self.journaled)  # what was processed before this flush is now stored

    # -- the hot loop ---------------------------------------------------------------------
    def run(self, items) -> None:
        """Process ``(Frame, _Source)`` items in order (journaled in chunks first)."""
        WS, REST, EVENTS = FrameKind.WS, FrameKind.REST, FrameKind.EVENTS
        FRAME, SNAPSHOT = RecordKind.FRAME, RecordKind.SNAPSHOT
        batcher, books, keep_diffs, flush_events = self.batcher, self.books, self.keep_diffs, self.flush_events
        latency_append = self.latency.append
        journal = self.journal
        damage = None
        while damage is None:
            # Frames go in chunks: each chunk is journaled with one write (when a journal is
            # given), then processed frame by frame. Damaged input ends the chunk early:
            # what was read before it is still processed and stored.
            chunk = []
            try:
                for item in items:
                    chunk.append(item)
                    if len(chunk) == _CHUNK:
                        break
            except CaptureError as exc:
                damage = exc
            if not chunk:
                break
            if journal is not None:
                chunk_end = journal.append_many(
                    [(FRAME if f[2] is WS else SNAPSHOT, f[1], f[0], src.tag) for f, src in chunk if f[2] is WS or f[2] is REST]
                )
            for frame, src in chunk:
                recv_ns, raw, kind, url, _ = frame
                if kind is WS:
                    self.n_ws += 1
                    try:
                        events = src.parse(raw, recv_ns)
                    except BadFrame as exc:
                        self.bad_frame(exc, frame, src)
                        continue
                elif kind is EVENTS:
                    events = raw
                else:
                    self.other(frame, src)
                    continue
                if not events:
                    continue
                self.n_events += len(events)
                src.file.events += len(events)
                ts = events[0].ts
                if ts != recv_ns:  # frames without exchange time carry ts = recv_ns
                    latency_append(recv_ns - ts)
                route_events(events, batcher, src.book_of, keep_diffs=keep_diffs, on_snapshot=src.on_snapshot)
                # The grid clock of the market (as the collector's): the newest depth time;
                # quiet books get their rows up to its flush horizon (book.flush_horizon)
                clock = src.clock
                for ev in events:
                    c = type(ev)
                    if (c is DepthDiff or (c is DepthSnapshot and clock.advances(ev))) and ev.ts > clock.newest:
                        clock.newest = ev.ts
                        horizon = flush_horizon(ev.ts)
                        if horizon > clock.horizon:
                            clock.horizon = horizon
                            for sym in clock.symbols:
                                out = books[sym].flush(horizon)
                                if out:
                                    batcher.extend(out)
                if batcher.count >= flush_events:
                    self.flush()
            if journal is not None:
                self.journaled = chunk_end  # every frame up to here is processed
        if damage is not None:
            raise damage

    def other(self, frame: Frame, src: _Source) -> None:
        """A REST body, a journal's gap record or a connection record."""
        recv_ns, raw, kind, url, _ = frame
        if kind is FrameKind.REST:
            self.n_rest += 1
            if not src.feed.rest_snapshots:
                return  # REST bodies of venues whose books come from the stream: unused
            if b"lastUpdateId" not in raw[:64]:
                self.bad["NotADepthSnapshot"] += 1
                return
            native = native_symbol_of_url(url) if url else src.rest_native
            if native is None and b'"symbol"' not in raw:
                if src.depth_symbol is None:
                    src.pending.append(frame)  # resolved by the first depth frame
                    return
                native = from_tickstore(src.depth_symbol)[0]
            self.rest_snapshot(src, frame, native)
        elif kind is FrameKind.GAP:
            self.gap_record(raw, recv_ns, src)
        elif kind is not FrameKind.CONNECT:
            self.bad["UnknownRecord"] += 1

    def bad_frame(self, exc: BadFrame, frame: Frame, src: _Source) -> None:
        """A frame the parser refused: counted, or handed to ``on_bad`` (which may raise)."""
        self.bad[type(exc).__name__] += 1
        src.file.bad[type(exc).__name__] += 1
        if src.file.first_bad is None:
            src.file.first_bad = f"{type(exc).__name__}: {str(exc)[:300]}"
        if self.on_bad is not None:
            self.on_bad(exc, frame)

    def gap_record(self, raw: bytes, recv_ns: int, src: _Source) -> None:
        """A collector journal's gap record: a ledger row; a connection gap resets the book."""
        try:
            d = orjson.loads(raw)
            gap = Gap(d["symbol"], int(d["ts"]), int(d["recv_ns"]), int(d["end_ts"]), d["stream"], d["cause"], d["detail"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.bad["MalformedGapRecord"] += 1
            return
        self.batcher.add(gap)
        src.file.events += 1
        book = self.books.get(gap.symbol)
        if gap.stream == "*" and book is not None:
            book.reset()

    def finish(self, files: list[_File], t0: float) -> ReplayReport:
        orphans = sum(len(src.pending) for f in files for src in f.sources.values())
        if orphans:  # a source with a snapshot but no depth frame
            self.bad["OrphanSnapshot"] += orphans
        done = set()
        for f in files:  # spot quotes / partial books still waiting for a depth frame: receive time
            for src in f.sources.values():
                drain = getattr(src.parser, "drain", None)
                if drain is not None and id(src.parser) not in done:
                    done.add(id(src.parser))
                    route_events(drain(), self.batcher, src.book_of, keep_diffs=self.keep_diffs, on_snapshot=src.on_snapshot)
        for b in self.books.values():
            out = b.close_outage()  # a book not valid at the end: its span goes to the ledger
            if out:
                self.batcher.extend(out)
        self.flush()
        parsers = {parser_key(src.feed, src.market): src.parser for f in files for src in f.sources.values()
                   if hasattr(src.parser, "save_state")}
        if self.states is not None and (self.books or parsers):
            states = {book_key(s, self.levels, self.interval_ms): b.save_state() for s, b in self.books.items()}
            states.update({k: p.save_state() for k, p in parsers.items()})  # settlements pending, depth ids
            self.states.save(states)
        for f in files:
            for src in f.sources.values():
                src.book_of = None  # the closure refers back to the source: no cycle for the GC
        return self.report(files, t0)

    def report(self, files: list[_File], t0: float) -> ReplayReport:
        stats = {sym: b.stats for sym, b in self.books.items()}
        table_rows: Counter = Counter()
        for (table, _), n in self.rows.items():
            table_rows[table] += n
        lat = np.frombuffer(self.latency, dtype="i8") / 1e6 if len(self.latency) else None
        latency_ms = (
            {
                "min": float(lat.min()),
                "p50": float(np.percentile(lat, 50)),
                "p90": float(np.percentile(lat, 90)),
                "p99": float(np.percentile(lat, 99)),
                "max": float(lat.max()),
            }
            if lat is not None
            else {}
        )
        sources = [s for f in files for s in f.sources.values()]
        return ReplayReport(
            files=tuple(str(f.path) for f in files),
            markets={s.label: s.market.value for s in sources},
            frames=self.n_ws,
            rest_frames=self.n_rest,
            snapshots=self.n_snapshots,
            events=self.n_events,
            rows=dict(table_rows),
            rows_by_symbol=dict(self.rows),
            duplicates={k: v for k, v in self.skipped.items() if v},
            gaps=table_rows.get("gaps", 0),
            sequence_breaks=sum(s.breaks for s in stats.values()),
            resyncs=sum(s.resyncs for s in stats.values()),
            crossed=sum(s.crossed for s in stats.values()),
            bad_frames=dict(self.bad),
            bad_lines=sum(f.reader.bad_lines for f in files if f.reader is not None),
            unsynced_books=tuple(sorted(sym for sym, b in self.books.items() if not b.synced)),
            latency_ms=latency_ms,
            elapsed_s=time.perf_counter() - t0,
            book_stats={sym: vars(s).copy() for sym, s in stats.items()},
            venues={s.label: s.feed.venue.value for s in sources},
            restored_books=tuple(sorted(self.restored)),
        )


def _new_source(rp: _Replay, f: _File, conn, feed, market, several: bool, max_frame_bytes: int, parsers: dict,
                booked=frozenset(), markets=None, book_rows: str = "grid") -> _Source:
    # One Binance parser per market (its float memo shared; spot quote times and settlements
    # need every frame of the market in order, and carry to the next replay); Bybit
    # and Hyperliquid parsers keep per-topic state, so each connection has its own.
    if issubclass(feed, BinanceFeed):
        key = (feed, market)
        parser = parsers.get(key)
        if parser is None:
            parser = parsers[key] = feed.new_parser(market, max_frame_bytes=max_frame_bytes)
            state = rp.saved.get(parser_key(feed, market))
            if state is not None:  # where the last replay into this store left settlements and depth ids
                try:
                    parser.restore_state(state)
                except (ValueError, KeyError, TypeError):
                    pass
    else:
        parser = feed.new_parser(market, max_frame_bytes=max_frame_bytes, book_natives=booked, markets=markets)
    rest_native = conn.partition(":")[2] or None if isinstance(conn, str) and issubclass(feed, BinanceFeed) else None
    src = _Source(_label(f.path, conn, several), f, feed, market, parser, _journal_tag(feed, market), rest_native)
    src.book_of = rp.book_of_source(src)
    src.book_rows = book_rows
    return src


def replay(
    paths,
    *,
    store,
    venue: Venue | str | None = None,
    market=None,
    book_levels: int = 5,
    book_interval_ms: int = 100,
    keep_diffs: bool = False,
    flush_events: int = 500_000,
    max_frame_bytes: int = MAX_FRAME_BYTES,
    journal: Journal | None = None,
    skip_bad_lines: bool = False,
    book_state: bool = True,
    source: str = SOURCE,
    partial_book_rows: str = "frames",
) -> ReplayReport:
    """Replay capture files into ``store`` through the live parsing path.

    Parameters
    ----------
    paths:
        Capture files (a list; hftbacktest, cryptofeed v1/v3, collector journal
        directories or segments; gzip, zstd or plain).
    store:
        A ``Tickstore``; ``None`` runs everything but writes nothing (dry run, benchmarks).
    venue, market:
        ``binance``/``bybit``/``hyperliquid`` and one of its markets (``spot``/``usdm``/
        ``coinm``, ``linear``/``spot``, ``perp``) for every source; each is detected per
        source when ``None`` and checked against the frames when given.
    book_levels, book_interval_ms:
        Depth and grid of the book rows (table ``book`` for 5 levels, ``book_<N>`` else).
    keep_diffs:
        Also write every depth diff to ``book_diffs`` (one row per price level).
    flush_events:
        Events accumulated before each append to the store.
    journal:
        A ``collectors.journal.Journal`` to write every frame to before it is processed,
        as the live collector does (WS frames as ``FRAME``, REST bodies as ``SNAPSHOT``,
        tagged so the venue's collector reads them back: ``usdm``, ``bybit-linear-replay``,
        ``hyperliquid-replay``). Frames are read and journaled in chunks of 256, one write
        per chunk, then processed. After each append to the store the journal is committed
        up to the last frame processed before it (nothing is committed when ``store`` is
        ``None``); ``None`` (default) journals nothing.
    skip_bad_lines:
        Count lines that are no capture line and go on, instead of stopping there.
    book_state:
        Continue books from, and leave them in, ``<store root>/_book_state.json``.
    source:
        The ``source`` of every version written.
    partial_book_rows:
        Book rows of a source whose book frames are all Binance partial books
        (``depth5/10/20``, no diff in the capture): ``"frames"`` (a row per frame at its
        exchange time, the default), ``"grid"`` or ``"both"``, as
        ``CollectorConfig.partial_book_rows`` (same default), so a replay of a collector's
        journal stores what the collector stored. Sources with diffs are on the grid.

    Raises
    ------
    ReplayError
        No paths, a path given as a bare string, an unknown/contradicting venue or market
        (nothing written), a file that yielded no rows (the others are stored).
    CaptureError
        A missing file or unknown format (nothing written), damaged input (the rows
        before it are stored).
    """
    # The hot loop allocates ~2 objects per frame and keeps up to flush_events of them
    # alive in the batcher; every gen-2 pass of the cyclic GC walks them all (~10% of the
    # time). Nothing in the loop makes reference cycles, so refcounting frees everything.
    t0 = time.perf_counter()
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise ReplayError(f"paths must be a list of files, got a single {type(paths).__name__} {paths!r}; wrap it in [ ]")
    paths = [Path(p) for p in paths]
    if not paths:
        raise ReplayError("replay needs at least one capture file")
    if partial_book_rows not in ("frames", "grid", "both"):
        raise ReplayError(f"partial_book_rows must be 'frames', 'grid' or 'both', got {partial_book_rows!r}")
    feed_arg = _venue_arg(venue)
    market_arg = _market_arg(feed_arg, market)
    placed = [(p, _detect(p, feed_arg, market_arg, skip_bad_lines)) for p in paths]  # all checked first
    rp = _Replay(store, book_levels=book_levels, book_interval_ms=book_interval_ms, keep_diffs=keep_diffs,
                 flush_events=flush_events, journal=journal, book_state=book_state, source=source)
    parsers: dict = {}
    files = []
    for p, conns in placed:
        f = _File(p, CaptureReader(p, skip_bad_lines=skip_bad_lines))
        for conn, (feed, mkt, booked, partial_only) in conns.items():
            f.sources[conn] = _new_source(rp, f, conn, feed, mkt, len(conns) > 1, max_frame_bytes, parsers, booked,
                                          book_rows=partial_book_rows if partial_only else "grid")
        files.append(f)
    enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            rp.run(_merged(files))
        except CaptureError as exc:
            rp.finish(files, t0)  # what was read before the damage is stored
            raise CaptureError(f"{exc}; every row before it is stored") from None
        report = rp.finish(files, t0)
    finally:
        if enabled:
            gc.enable()
    empty = [f for f in files if f.events == 0]
    if empty:
        detail = "; ".join(
            f"{f.path}: {f.reader.frames} frames, none with rows"
            + (f" (bad frames {dict(f.bad)}; the first: {f.first_bad})" if f.bad else " (acks, control or unused frames only)")
            for f in empty
        )
        err = ReplayError(f"{len(empty)} of {len(files)} file(s) yielded no rows: {detail}")
        err.report = report
        raise err
    return report


def replay_frames(
    frames,
    *,
    venue: Venue | str,
    market,
    store,
    book_levels: int = 5,
    book_interval_ms: int = 100,
    keep_diffs: bool = False,
    flush_events: int = 500_000,
    max_frame_bytes: int = MAX_FRAME_BYTES,
    book_state=True,
    source: str = SOURCE,
    name: str = "<frames>",
    sink=None,
    on_bad=None,
    markets=None,
    book_natives=(),
    book_rows: str = "grid",
    snapshot_rule=None,
) -> ReplayReport:
    """Replay frames of one connection of ``venue``/``market`` that are not in a capture
    file (an importer's archive, a test): the same parsers, books, book state and keys as
    ``replay``.

    ``frames`` yields ``(recv_ns, raw)`` websocket frames, or ``collectors.capture.Frame``
    items: REST depth snapshots, journal gap records (a ``"*"`` gap resets the symbol's
    book) and ``FrameKind.EVENTS`` items (``raw`` a list of events already parsed, for
    formats without venue frames) are taken too; ``conn`` of a ``Frame`` is not used
    (importers put the line number there). ``name`` labels the source in the report.
    Unlike ``replay`` an empty result is no error.

    ``sink(table, symbol, frame)``, when given, receives the rows instead of
    ``store[table].append`` (``store`` may then be ``None``, or a store whose book state
    is used). ``on_bad(exc, frame)`` is called for each frame the parser refuses (after
    counting it; it may raise to stop the replay). ``book_state``: ``True`` (the store's
    ``_book_state.json``), ``False``, or an object with ``load() -> (books, meta)`` and
    ``save(books)`` (an importer saves only after its rows are committed). ``markets``:
    a ``collectors.symbols.Markets`` for the parser (ids the built-in table lacks);
    ``book_natives``: native ids whose book the connection carries (Bybit quotes come
    from those books only); ``book_rows``: ``"grid"``, ``"frames"`` or ``"both"``
    (``BookBuilder(rows=)``: also a row per snapshot frame at its time);
    ``snapshot_rule(book, snapshot) -> rows`` replaces the venue's rule for snapshot
    events (``VenueFeed.apply_snapshot``), e.g. Tardis' "a snapshot replaces the book".
    """
    t0 = time.perf_counter()
    feed = _venue_arg(venue)
    if feed is None:
        raise ReplayError("replay_frames needs venue=")
    value = _market_arg(feed, market)
    if value is None:
        raise ReplayError(f"replay_frames needs market= (one of {[m.value for m in feed.markets]})")
    rp = _Replay(store, book_levels=book_levels, book_interval_ms=book_interval_ms, keep_diffs=keep_diffs,
                 flush_events=flush_events, journal=None, book_state=book_state, source=source, sink=sink,
                 on_bad=on_bad)
    f = _File(Path(name), None)
    src = f.sources[None] = _new_source(rp, f, None, feed, feed.markets(value), False, max_frame_bytes, {},
                                        frozenset(book_natives), markets, book_rows=book_rows)
    if snapshot_rule is not None:
        src.on_snapshot = snapshot_rule

    def items():
        new, WS = tuple.__new__, FrameKind.WS
        for item in frames:
            yield (item if type(item) is Frame else new(Frame, (item[0], item[1], WS, None, None))), src

    enabled = gc.isenabled()
    gc.disable()
    try:
        rp.run(items())
        return rp.finish([f], t0)
    finally:
        if enabled:
            gc.enable()


def _merged(files: list[_File]):
    """(frame, source) of every frame, merged by receive time across files."""
    if len(files) == 1 and len(files[0].sources) == 1:
        return zip(files[0].reader, repeat(next(iter(files[0].sources.values()))))
    streams = [_tagged(f) for f in files]
    return heapq.merge(*streams, key=_recv_of) if len(streams) > 1 else streams[0]


def _tagged(f: _File):
    sources = f.sources
    only = next(iter(sources.values())) if len(sources) == 1 else None
    for frame in f.reader:
        src = only or sources.get(frame.conn)
        if src is not None:  # frames of a connection that carried nothing usable are skipped
            yield frame, src


def _recv_of(item) -> int:
    return item[0][0]
