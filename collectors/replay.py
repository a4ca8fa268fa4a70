"""Replay recorded Binance captures through the live parsers, book builder and batcher.

::

    capture files ──CaptureReader──> Frame(recv_ns, raw, kind, url)
        │   merged by receive time across files (each file keeps its own order), so a
        │   day's files and their REST companions (cryptofeed ``.http.0.0``) may be given
        │   in any order
        ├─ (journal=: Journal.append_many, 256 frames per write, before they are processed)
        ├─ WS    ──BinanceParser.parse──> Trade, Quote, Mark, Liquidation ───────────┐
        │             (book.route_events)└──> DepthDiff ──BookBuilder──> BookTop, Gap ┤
        └─ REST  ──parse_snapshot──> DepthSnapshot ──BookBuilder.on_snapshot          │
                                                                   EventBatcher <─────┘
                                                                        │ every flush_events
                                                  store[table].append(symbol, frame, source="replay")

The market of each file comes from ``market=`` or is inferred from its first decisive
frame or URL (``binance.infer_market``/``market_of_url``); all files are checked before
anything is written, so a file that cannot be placed raises ``ReplayError`` and changes
nothing. REST snapshots that do not name their symbol (hftbacktest spot/USD-M) belong to
the depth stream of their own file: the last depth symbol seen in it, or, when the
snapshot comes first, the next one.

Book rows for a quiet book (no diff for a while) are flushed from the exchange clock of
the other frames of its file, every second and 1 s behind it (a diff more than 1 s out of
order on one connection would make such a row stale).

Bad frames (malformed JSON, unknown streams, oversized) are counted per error class in the
report, never fatal. Books still unsynced at the end (no snapshot in the capture, or a
break with no later snapshot) are listed in the report; their diffs produced no rows.
"""

from __future__ import annotations

import gc
import heapq
import os
import time
from itertools import islice, repeat
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tickstore.errors import TickstoreError

from .book import BookBuilder, book_table, route_events
from .capture import CaptureReader, Frame, FrameKind
from .events import DepthDiff, EventBatcher
from .exchanges import BadFrame
from .journal import Journal, RecordKind
from .exchanges.binance import (
    MAX_FRAME_BYTES,
    BinanceParser,
    Market,
    from_tickstore,
    infer_market,
    market_of_url,
    native_symbol_of_url,
)

__all__ = ["replay", "ReplayReport", "ReplayError"]

SOURCE = "replay"
FLUSH_EVERY_NS = 1_000_000_000  # how often (exchange time) quiet books are flushed
FLUSH_LAG_NS = 1_000_000_000  # how far behind the newest exchange time they are flushed to
# Frames read, journaled (one write) and then processed at a time. Frames above
# max_frame_bytes are still read (and journaled: they were received), so a chunk holds at
# most 256 of whatever the capture's lines are; Binance frames are < 100 kB.
_CHUNK = 256


class ReplayError(TickstoreError, ValueError):
    """A replay that cannot start: no files, unknown market, contradicting ``market=``."""


@dataclass(frozen=True)
class ReplayReport:
    """What a replay read and wrote.

    ``rows`` counts the rows the store wrote per table; ``duplicates`` the rows it
    skipped because their key was already stored (a replay run twice writes nothing the
    second time); ``latency_ms`` are percentiles of receive time
    minus exchange time over every frame that carries an exchange time (negative when the
    recorder's clock lagged the exchange).
    """

    files: tuple[str, ...]
    markets: dict[str, str]  # file -> market
    frames: int  # websocket frames read (all kinds of payload, bad ones included)
    rest_frames: int  # REST bodies read
    snapshots: int  # REST depth snapshots handed to a book
    events: int  # events parsed
    rows: dict[str, int]  # table -> rows appended
    rows_by_symbol: dict[tuple[str, str], int]  # (table, symbol) -> rows appended
    duplicates: dict[tuple[str, str], int]  # (table, symbol) -> rows the store already held
    gaps: int  # Gap rows written (sequence breaks, resyncs, stale)
    sequence_breaks: int
    resyncs: int
    crossed: int  # crossed books detected (each also a sequence break)
    bad_frames: dict[str, int]  # error class -> count
    bad_lines: int  # capture lines that were no frame at all
    unsynced_books: tuple[str, ...]  # symbols whose book was not valid at the end
    latency_ms: dict[str, float]  # p50, p90, p99, min, max (empty if no timed frame)
    elapsed_s: float
    book_stats: dict[str, dict] = field(default_factory=dict)  # symbol -> BookStats fields

    @property
    def frames_per_s(self) -> float:
        return (self.frames + self.rest_frames) / self.elapsed_s if self.elapsed_s > 0 else float("inf")

    def summary(self) -> str:
        """A few human-readable lines (what the CLI prints)."""
        lines = [
            f"replayed {self.frames} frames + {self.rest_frames} REST bodies from {len(self.files)} file(s) "
            f"in {self.elapsed_s:.2f}s ({self.frames_per_s:,.0f} frames/s)",
        ]
        for (table, symbol), n in sorted(self.rows_by_symbol.items()):
            lines.append(f"  {table:<14} {symbol:<28} {n:>9} rows")
        lines.append(
            f"gaps {self.gaps} (sequence breaks {self.sequence_breaks}, resyncs {self.resyncs}, "
            f"crossed {self.crossed}); bad frames {dict(self.bad_frames) or 0}; bad lines {self.bad_lines}"
        )
        if self.unsynced_books:
            lines.append(f"books not synced at the end (no snapshot after the last break): {list(self.unsynced_books)}")
        if self.latency_ms:
            lat = self.latency_ms
            lines.append(
                "latency recv - exchange (ms): "
                + ", ".join(f"{k} {lat[k]:.1f}" for k in ("min", "p50", "p90", "p99", "max"))
            )
        return "\n".join(lines)


class _FileState:
    __slots__ = ("path", "market", "parser", "parse", "tag", "reader", "depth_symbol", "pending", "books", "flushed_ns", "book_of")

    def __init__(self, path: Path, market: Market, parser: BinanceParser):
        self.path = path
        self.market = market
        self.parser = parser
        self.parse = parser.parse
        self.tag = market.value  # journal tag of its frames
        self.book_of = None  # route_events' book_of for this file's frames
        self.reader = CaptureReader(path)
        self.depth_symbol: str | None = None  # last depth symbol seen in this file
        self.pending: list[Frame] = []  # symbol-less REST snapshots seen before any depth frame
        self.books: set[str] = set()  # symbols whose depth this file carries
        self.flushed_ns = 0  # exchange time up to which this file's books were flushed


def _file_market(path: Path, market: Market | None) -> Market:
    """Market of one file: its first decisive URL or frame; checked against ``market``."""
    for frame in CaptureReader(path):
        found = market_of_url(frame.url) if frame.url else None
        if found is None and frame.raw:
            found = infer_market(frame.raw)
        if found is not None:
            if market is not None and found is not market:
                raise ReplayError(
                    f"{str(path)!r} holds {found.value} frames but market={market.value!r} was given "
                    f"(first decisive frame: {frame.raw[:100]!r} {frame.url or ''})"
                )
            return found
    if market is not None:
        return market
    raise ReplayError(
        f"cannot tell the Binance market of {str(path)!r} from its frames; pass market='spot', 'usdm' or 'coinm'"
    )


def replay(
    paths,
    *,
    store,
    market: Market | str | None = None,
    book_levels: int = 5,
    book_interval_ms: int = 100,
    keep_diffs: bool = False,
    flush_events: int = 500_000,
    max_frame_bytes: int = MAX_FRAME_BYTES,
    journal: Journal | None = None,
) -> ReplayReport:
    """Replay capture files into ``store`` through the live parsing path.

    Parameters
    ----------
    paths:
        Capture files (a list; hftbacktest, cryptofeed v1/v3; gzip, zstd or plain).
    store:
        A ``Tickstore``; ``None`` runs everything but writes nothing (dry run, benchmarks).
    market:
        ``spot``/``usdm``/``coinm`` for every file; inferred per file when ``None``.
    book_levels, book_interval_ms:
        Depth and grid of the book rows (table ``book`` for 5 levels, ``book_<N>`` else).
    keep_diffs:
        Also write every depth diff to ``book_diffs`` (one row per price level).
    flush_events:
        Events accumulated before each append to the store.
    journal:
        A ``collectors.journal.Journal`` to write every frame to before it is processed,
        as the live collector does (WS frames as ``FRAME``, REST bodies as ``SNAPSHOT``,
        tagged with the file's market; cryptofeed connection markers carry no frame and
        are not journaled). Frames are read and journaled in chunks of 256, one write per
        chunk, then processed. After each append to the store the journal is committed up
        to the last frame processed before it (nothing is committed when ``store`` is
        ``None``); ``None`` (default) journals nothing.

    Raises
    ------
    ReplayError
        No paths, a path given as a bare string, an unknown/contradicting market.
    """
    # The hot loop allocates ~2 objects per frame and keeps up to flush_events of them
    # alive in the batcher; every gen-2 pass of the cyclic GC walks them all (~10% of the
    # time). Nothing in the loop makes reference cycles, so refcounting frees everything.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _replay(paths, store, market, book_levels, book_interval_ms, keep_diffs, flush_events, max_frame_bytes, journal)
    finally:
        if enabled:
            gc.enable()


def _replay(paths, store, market, book_levels, book_interval_ms, keep_diffs, flush_events, max_frame_bytes, journal):
    t0 = time.perf_counter()
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise ReplayError(f"paths must be a list of files, got a single {type(paths).__name__} {paths!r}; wrap it in [ ]")
    paths = [Path(p) for p in paths]
    if not paths:
        raise ReplayError("replay needs at least one capture file")
    if market is not None:
        try:
            market = Market(market)
        except ValueError:
            raise ReplayError(f"market must be one of {[m.value for m in Market]}, got {market!r}") from None
    table_of_book = book_table(book_levels)
    parsers = {m: BinanceParser(m, max_frame_bytes=max_frame_bytes) for m in Market}
    states = []
    for p in paths:
        m = _file_market(p, market)
        states.append(_FileState(p, m, parsers[m]))

    batcher = EventBatcher(table_of_book)
    books: dict[str, BookBuilder] = {}
    rows: Counter = Counter()
    skipped: Counter = Counter()  # rows the store already held (same key)
    bad: Counter = Counter()
    latency = array("q")
    n_ws = n_rest = n_events = n_snapshots = 0

    def book_for(symbol: str, m: Market) -> BookBuilder:
        b = books.get(symbol)
        if b is None:
            b = books[symbol] = BookBuilder(symbol, m, levels=book_levels, interval_ms=book_interval_ms)
        return b

    journaled = None  # journal position up to which every frame was processed

    def flush() -> None:
        for (table, symbol), frame in batcher.drain().items():
            if store is None:
                rows[(table, symbol)] += len(frame)
                continue
            commit = store[table].append(symbol, frame, source=SOURCE)
            rows[(table, symbol)] += commit.rows
            skipped[(table, symbol)] += commit.skipped
        if journal is not None and store is not None and journaled is not None:
            journal.commit(journaled)  # what was processed before this flush is now stored

    def snapshot(fs: _FileState, frame: Frame, native: str | None) -> None:
        nonlocal n_snapshots
        try:
            snap = fs.parser.parse_snapshot(frame.raw, frame.recv_ns, native_symbol=native)
        except BadFrame as exc:
            bad[type(exc).__name__] += 1
            return
        n_snapshots += 1
        out = book_for(snap.symbol, fs.market).on_snapshot(snap)
        if out:
            batcher.extend(out)

    def book_of_file(fs: _FileState):
        """``route_events``' ``book_of`` for the frames of one file."""
        market, file_books = fs.market, fs.books

        def book_of(ev):
            sym = ev.symbol
            if type(ev) is DepthDiff and sym != fs.depth_symbol:
                fs.depth_symbol = sym
                for snap_frame in fs.pending:  # symbol-less snapshots seen before
                    snapshot(fs, snap_frame, from_tickstore(sym)[0])
                fs.pending.clear()
            if sym not in file_books:
                file_books.add(sym)
            return books.get(sym) or book_for(sym, market)

        return book_of

    WS, REST, CONNECT = FrameKind.WS, FrameKind.REST, FrameKind.CONNECT
    FRAME, SNAPSHOT = RecordKind.FRAME, RecordKind.SNAPSHOT
    for fs in states:
        fs.book_of = book_of_file(fs)
    latency_append = latency.append
    frames = _merged(states)
    while True:
        # Frames go in chunks: each chunk is journaled with one write (when a journal is
        # given), then processed frame by frame exactly as before.
        chunk = list(islice(frames, _CHUNK))
        if not chunk:
            break
        if journal is not None:
            chunk_end = journal.append_many(
                [(FRAME if f[2] is WS else SNAPSHOT, f[1], f[0], fs.tag) for f, fs in chunk if f[2] is not CONNECT]
            )
        for (recv_ns, raw, kind, url, _), fs in chunk:
            if kind is WS:
                n_ws += 1
                try:
                    events = fs.parse(raw, recv_ns)
                except BadFrame as exc:
                    bad[type(exc).__name__] += 1
                    continue
                if not events:
                    continue
                n_events += len(events)
                ts = events[0].ts
                if ts != recv_ns:  # frames without exchange time carry ts = recv_ns
                    latency_append(recv_ns - ts)
                    if ts - fs.flushed_ns > FLUSH_EVERY_NS:
                        # The exchange clock of this file reached ts: quiet books get their
                        # grid rows up to ts - FLUSH_LAG_NS (a later diff older than that
                        # would be >1 s out of order on one connection).
                        fs.flushed_ns = ts
                        for sym in fs.books:
                            out = books[sym].flush(ts - FLUSH_LAG_NS)
                            if out:
                                batcher.extend(out)
                route_events(events, batcher, fs.book_of, keep_diffs=keep_diffs)
                if batcher.count >= flush_events:
                    flush()
            elif kind is REST:
                n_rest += 1
                if b"lastUpdateId" not in raw[:64]:
                    bad["NotADepthSnapshot"] += 1
                    continue
                native = native_symbol_of_url(url) if url else None
                if native is None and b'"symbol"' not in raw:
                    if fs.depth_symbol is None:
                        fs.pending.append(Frame(recv_ns, raw, kind, url))  # resolved by the first depth frame
                        continue
                    native = from_tickstore(fs.depth_symbol)[0]
                snapshot(fs, Frame(recv_ns, raw, kind, url), native)
        if journal is not None:
            journaled = chunk_end  # every frame up to here is processed
    orphans = sum(len(fs.pending) for fs in states)  # a file with a snapshot but no depth frame
    if orphans:
        bad["OrphanSnapshot"] += orphans
    flush()
    for fs in states:
        fs.book_of = None  # the closure refers back to fs: no cycle left for the GC

    stats = {sym: b.stats for sym, b in books.items()}
    table_rows: Counter = Counter()
    for (table, _), n in rows.items():
        table_rows[table] += n
    lat = np.frombuffer(latency, dtype="i8") / 1e6 if len(latency) else None
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
    return ReplayReport(
        files=tuple(str(p) for p in paths),
        markets={str(fs.path): fs.market.value for fs in states},
        frames=n_ws,
        rest_frames=n_rest,
        snapshots=n_snapshots,
        events=n_events,
        rows=dict(table_rows),
        rows_by_symbol=dict(rows),
        duplicates={k: v for k, v in skipped.items() if v},
        gaps=table_rows.get("gaps", 0),
        sequence_breaks=sum(s.breaks for s in stats.values()),
        resyncs=sum(s.resyncs for s in stats.values()),
        crossed=sum(s.crossed for s in stats.values()),
        bad_frames=dict(bad),
        bad_lines=sum(fs.reader.bad_lines for fs in states),
        unsynced_books=tuple(sorted(sym for sym, b in books.items() if not b.synced)),
        latency_ms=latency_ms,
        elapsed_s=time.perf_counter() - t0,
        book_stats={sym: vars(s).copy() for sym, s in stats.items()},
    )


def _merged(states: list[_FileState]):
    """(frame, file state) of every frame, merged by receive time across files."""
    if len(states) == 1:
        return zip(states[0].reader, repeat(states[0]))
    streams = [_tagged(fs) for fs in states]
    return heapq.merge(*streams, key=_recv_of)


def _tagged(fs: _FileState):
    for f in fs.reader:
        yield f, fs


def _recv_of(item) -> int:
    return item[0][0]
