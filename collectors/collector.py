"""The live collector: websocket sessions -> journal -> parsers/books -> the store.

One pipeline for every venue (Binance, Bybit v5, Hyperliquid); what differs per venue
(connections and subscriptions, parsers, the book's sequencing rule, how a broken book is
resynced) comes from its ``collectors.venues.VenueFeed``. Drawn for Binance::

    Session (1 per <= streams_per_connection streams) --frame, recv_ns--+
    Session ... --Gap (disconnect/stale/reconnect)------------------------+--> Journal.append
    SnapshotFetcher (GET /depth when a book needs one) --REST body--------+     (one os.write,
                                                                               then it counts)
                                          Journal.on_append --> queue (journal order)
                                                                   |
    processor thread:  FRAME    -> BinanceParser.parse -> Trade/Quote/Mark/Liquidation -> EventBatcher
                                                       -> DepthDiff -> BookBuilder -> BookTop, Gap
                       SNAPSHOT -> parse_snapshot -> BookBuilder.on_snapshot
                       GAP      -> the gap ledger; a connection gap also resets that session's books
                       every flush_interval_s: store[table].append(...) then Journal.commit(position)

Bybit and Hyperliquid have no REST snapshot step: their books come from snapshot frames on
the stream. A Bybit book whose ``u`` chain breaks is resynced by resubscribing its topic
on the same connection (Bybit answers with a snapshot, which is journaled like any frame);
a Hyperliquid ``l2Book`` frame is the whole book every time. Hyperliquid has no public
liquidation stream, so its collectors write no liquidations (see ``collectors.venues``).

Everything that changes the book (frames, REST snapshots, connection gaps) goes through the
journal, so processing is a pure function of the journal: a restart replays the records
after the checkpoint through the very same code (no network) before going live.

Exactly-once into the store (``kill -9`` at any instant):

- before the append: the records are in the journal, after the checkpoint: replayed;
- between the append and the checkpoint: replayed too, so their rows are produced again.
  Keyed tables (trades: trade_id; quotes: ts+update_id; book, mark: ts) drop them in
  ``Table.append``; keyless tables (gaps, liquidations, book_diffs) are reconciled: the
  first flush after a restart removes rows already stored (multiset difference on every
  column over the batch's time span; ``recv_ts`` comes from the journal, so a replayed
  row is bit-identical to the stored one);
- after the checkpoint: nothing is replayed.

Books survive a restart: just before each commit the books as of that journal position
are written to ``<journal>/books.json`` (``collectors.bookstate``; atomically, before the
checkpoint moves, so the file is never older than the checkpoint). A restart restores them
and skips the replayed records they already hold, so a book continues exactly where the
last run left it (the next diff must still chain: a book that missed updates while the
collector was down breaks and resyncs, with its gap). Without a usable file (first run, a
different book depth or grid) the replayed diffs cannot be applied until a snapshot: a
``resync`` gap covers that span. The downtime itself is a ``disconnect`` gap
(``stream="*"``). At a stop, a book that is not valid gets an ``unsynced`` gap up to its
last update. Gap times of connection gaps are local
receive times (no exchange time exists for data that never came).

Bad frames are counted (``CollectorStats``) and logged, never fatal. A malformed or
oversized frame writes a ``malformed`` gap for every symbol of its connection (the frame
cannot say whose it was); the book is not reset for it: if it was a depth diff, the next
diff's sequence check breaks and resyncs the book, and if it was not, the book is fine.
"""

from __future__ import annotations

import re
import logging
import os
import queue
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from tickstore import Tickstore
from tickstore.errors import DuplicateKeyError, LockedError, TickstoreError

from .book import GAP_STREAM, BookBuilder, book_table
from .bookstate import BookStates, book_key
from .events import DepthDiff, DepthSnapshot, EventBatcher, Gap
from .exchanges import BadFrame, OversizedFrame, UnknownStream, VenueErrorFrame
from .exchanges.binance import MAX_FRAME_BYTES, Channel, Endpoints, Market, depth_snapshot_url, from_tickstore
from .journal import Journal, JournalConfig, Position, Record, RecordKind
from .reconcile import unstored
from .session import MAX_DETAIL, BackoffPolicy, Session, SessionConfig
from .venues import Venue, feed_class

__all__ = ["Venue", "CollectorConfig", "CollectorStats", "Collector", "CollectorError", "load_config", "run_demo", "DemoReport"]

log = logging.getLogger(__name__)

_BOOK_CHANNELS = (Channel.DEPTH, Channel.DEPTH_RT)


class CollectorError(TickstoreError, ValueError):
    """A collector configuration that cannot run; the message names the field."""


@dataclass(frozen=True)
class CollectorConfig:
    """What to collect, from where, into which store.

    ``venue`` picks the exchange; ``symbols`` are its tickstore symbols (the market
    follows from the unified symbol: ``binance:BTC/USDT:USDT``, ``bybit:BTC/USDT``,
    ``hyperliquid:BTC/USDC:USDC``). ``channels`` apply to every symbol; ones a market lacks
    are skipped for it (spot has no mark or liquidations, Hyperliquid no liquidation
    stream; see ``collectors.venues`` for what each channel is on each venue), ones a venue
    never offers are refused. ``endpoints`` overrides the venue's hosts per market
    (``binance.Market``, ``bybit.Category`` or ``hyperliquid.Market`` keys: the simulator's
    127.0.0.1 ports); ``journal`` defaults to ``<store>-journal`` beside the store root
    (never inside it: the store owns its root), ``<store>-journal/<name>`` for a named feed
    of the daemon (``collectors.daemon``).
    """

    store: str
    symbols: tuple[str, ...]
    venue: Venue = Venue.BINANCE
    channels: tuple[Channel, ...] = (Channel.TRADES, Channel.QUOTES, Channel.DEPTH, Channel.MARK, Channel.LIQUIDATIONS)
    journal: str | None = None
    book_levels: int = 5
    book_interval_ms: int = 100
    snapshot_limit: int = 1000
    flush_interval_s: float = 2.0
    streams_per_connection: int = 200
    endpoints: dict = field(default_factory=dict)  # Market -> Endpoints
    stale_after_s: float = 15.0
    ping_interval_s: float = 20.0
    max_connection_age_s: float = 23.5 * 3600
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    rest_timeout_s: float = 10.0
    snapshot_min_interval_s: float = 1.0
    max_frame_bytes: int = MAX_FRAME_BYTES
    journal_options: JournalConfig = field(default_factory=JournalConfig)
    name: str = ""  # feed name of a multi-feed daemon; "" = the only feed

    def __post_init__(self):
        def bad(name, why):
            raise CollectorError(f"collector config: {name} {why}, got {getattr(self, name)!r}")

        if not isinstance(self.name, str) or (self.name and not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name)):
            bad("name", "must be letters, digits, '_', '-' or '.'")

        if not isinstance(self.venue, Venue):
            bad("venue", f"must be one of {[v.value for v in Venue]}")
        if isinstance(self.symbols, str) or not self.symbols:
            bad("symbols", "must be a non-empty list of tickstore symbols like 'binance:BTC/USDT:USDT'")
        if len(set(self.symbols)) != len(self.symbols):
            bad("symbols", "must not repeat a symbol")
        feed = feed_class(self.venue)
        for s in self.symbols:
            try:
                feed.market_of(s)
            except (BadFrame, ValueError) as exc:
                why = str(exc)
                raise CollectorError(f"collector config: {why if why.startswith('symbols: ') else 'symbols: ' + why}") from None
        if not self.channels or not all(isinstance(c, Channel) for c in self.channels):
            bad("channels", f"must be a non-empty list of {[c.name.lower() for c in Channel]}")
        if not 1 <= self.book_levels <= 500:
            bad("book_levels", "must be in 1..500")
        for name in ("book_interval_ms", "snapshot_limit", "streams_per_connection", "max_frame_bytes"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                bad(name, "must be a positive integer")
        if self.streams_per_connection > 1024:
            bad("streams_per_connection", "must be <= 1024 (Binance's limit per connection)")
        for name in ("flush_interval_s", "stale_after_s", "ping_interval_s", "max_connection_age_s", "rest_timeout_s"):
            if getattr(self, name) <= 0:
                bad(name, "must be > 0")
        if self.snapshot_min_interval_s < 0:
            bad("snapshot_min_interval_s", "must be >= 0")
        try:
            feed.check(self)  # channels offered, endpoint keys, depth limits of the venue
        except ValueError as exc:
            raise CollectorError(f"collector config: {exc}") from None

    @property
    def journal_dir(self) -> Path:
        if self.journal is not None:
            return Path(self.journal).expanduser()
        root = Path(self.store).expanduser().resolve()
        default = root.with_name(root.name + "-journal")
        return default / self.name if self.name else default

    def endpoints_of(self, market) -> Endpoints:
        """Where a market of the venue is (``endpoints`` or the venue's default)."""
        ep = self.endpoints.get(market)
        return ep if ep is not None else feed_class(self.venue).ENDPOINTS[market]

    @property
    def status_path(self) -> Path:
        """The JSON health file rewritten at every flush (read by ``tickstore status``)."""
        root = Path(self.store).expanduser()
        return root / (f"{STATUS_PREFIX}.{self.name}.json" if self.name else f"{STATUS_PREFIX}.json")


STATUS_PREFIX = "_collector_status"


@dataclass
class CollectorStats:
    """Counters since start (also logged at stop)."""

    records: int = 0
    replayed: int = 0
    frames: int = 0
    events: int = 0
    malformed: int = 0
    oversized: int = 0
    unknown_streams: int = 0
    venue_errors: int = 0
    bad_frames: int = 0
    snapshots_requested: int = 0
    snapshots_fetched: int = 0
    resubscribes: int = 0  # books resynced by resubscribing their topic (Bybit)
    snapshot_errors: int = 0
    gaps: int = 0
    flushes: int = 0
    store_errors: int = 0
    rows_rejected: int = 0
    rows_reconciled: int = 0
    rows: Counter = field(default_factory=Counter)  # per table

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "rows"}
        d["rows"] = dict(self.rows)
        return d


class _SnapshotFetcher:
    """Fetches REST depth snapshots in its own thread and journals the bodies."""

    def __init__(self, collector: "Collector"):
        self.c = collector
        self.q: queue.Queue = queue.Queue()
        self.last: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="snapshot-fetcher", daemon=True)

    def request(self, symbol: str) -> None:
        self.q.put(symbol)

    def _run(self) -> None:
        cfg = self.c.config
        while not self.stop.is_set():
            try:
                symbol = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            native, market = from_tickstore(symbol)
            wait = self.last.get(symbol, 0.0) + cfg.snapshot_min_interval_s - time.monotonic()
            if wait > 0 and self.stop.wait(wait):
                return
            url = depth_snapshot_url(symbol, limit=cfg.snapshot_limit, endpoints=cfg.endpoints_of(market))
            delay = 0.5
            while not self.stop.is_set():
                self.last[symbol] = time.monotonic()
                try:
                    with urllib.request.urlopen(url, timeout=cfg.rest_timeout_s) as resp:
                        body = resp.read()
                    recv_ns = time.time_ns()
                except urllib.error.HTTPError as exc:
                    # 429/418: Binance rate limit / ban; Retry-After says how long to stay away
                    retry = exc.headers.get("Retry-After") if exc.headers else None
                    delay = max(delay, float(retry)) if retry and retry.isdigit() else delay
                    self._failed(symbol, url, f"HTTP {exc.code}", delay)
                except (urllib.error.URLError, OSError, TimeoutError) as exc:
                    self._failed(symbol, url, f"{type(exc).__name__}: {exc}", delay)
                else:
                    self.c.stats.snapshots_fetched += 1
                    self.c.journal.append(RecordKind.SNAPSHOT, body, recv_ns=recv_ns, tag=f"{market.value}:{native}")
                    break
                if self.stop.wait(delay):
                    return
                delay = min(delay * 2, 30.0)

    def _failed(self, symbol: str, url: str, why: str, delay: float) -> None:
        self.c.stats.snapshot_errors += 1
        log.warning("snapshot of %s from %s failed (%s); retrying in %.1f s", symbol, url, why, delay)


class Collector:
    """Runs the sessions, the journal, the books and the flusher of one ``CollectorConfig``.

    ``start()`` replays what the journal holds beyond its checkpoint, then connects;
    ``stop()`` disconnects, processes every journaled record, flushes and commits.
    ``run()`` does both around a wait for SIGINT/SIGTERM (or ``request_stop()``).
    """

    def __init__(self, config: CollectorConfig, *, store: Tickstore | None = None):
        self.config = config
        self.stats = CollectorStats()
        self._own_store = store is None
        self.store = store if store is not None else Tickstore(config.store)
        self.book_table = book_table(config.book_levels)
        self.batcher = EventBatcher(self.book_table)
        self.feed = feed_class(config.venue)(config)
        self.books: dict[str, BookBuilder] = {}
        self.book_market: dict[object, list[BookBuilder]] = defaultdict(list)  # per market (Connection.group)
        depth = any(c in _BOOK_CHANNELS for c in config.channels)
        self.sessions: list[Session] = []
        self._session_of: dict[str, Session] = {}  # symbol -> its session (resubscriptions)
        self._connections = self.feed.plan()
        # (tag, market, symbols) and the stream names per connection, for the curious and the tests
        self._session_specs = [(c.tag, c.group, c.symbols) for c in self._connections]
        self._streams = {c.tag: list(c.streams) for c in self._connections}
        self.session_symbols: dict[str, tuple[str, ...]] = {c.tag: c.symbols for c in self._connections}
        for conn in self._connections:
            for s in conn.symbols:
                if depth and s not in self.books:
                    b = BookBuilder(s, self.feed.book_rule(s), levels=config.book_levels, interval_ms=config.book_interval_ms,
                                    quotes=self.feed.book_quotes and Channel.QUOTES in config.channels)
                    self.books[s] = b
                    self.book_market[conn.group].append(b)
        self._tags: dict[str, tuple] = {}  # tag -> (parser, market), filled on first use
        self._book_states = BookStates(config.journal_dir / "books.json")  # books as of the checkpoint
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.journal: Journal | None = None
        self.fetcher = _SnapshotFetcher(self)
        self._pending_snapshots: set[str] = set()
        self._live = False
        self._last_pos: Position | None = None
        self._last_recv: int | None = None
        self._committed_recv: int | None = None
        self._last_frame_ns: dict[str, int] = {}
        self._max_depth_ts: dict[object, int] = {}  # per market: latest book exchange time
        self._retry: dict = {}
        self._reconcile = False
        self._stop = threading.Event()
        self._processor: threading.Thread | None = None
        self._started = False
        self._started_ns = time.time_ns()
        # per (symbol, event kind): [events, last exchange ts, last recv_ns]; per connection: [frames, last recv_ns]
        self._stream_status: dict[tuple[str, str], list] = {}
        self._conn_status: dict[str, list] = {}

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Collector":
        """Replay the journal beyond its checkpoint into the store, then go live."""
        cfg = self.config
        self.journal = Journal(cfg.journal_dir, config=cfg.journal_options)
        self._replay()
        self.journal.on_append = self.queue.put
        now = time.time_ns()
        if self._last_recv is not None:
            # The collector was down (crash or stop) since the last journaled record.
            for tag, market, syms in self._session_specs:
                gaps = [
                    Gap(s, self._last_recv, now, max(now, self._last_recv + 1), "*", "disconnect", "collector was not running (restart)")
                    for s in syms
                ]
                self._journal_gaps(tag, gaps)
        self._live = True
        self._processor = threading.Thread(target=self._process_loop, name="collector-processor", daemon=True)
        self._processor.start()
        self.fetcher.thread.start()
        for conn in self._connections:
            tag = conn.tag
            scfg = SessionConfig(
                name=tag,
                url=conn.url,
                symbols=conn.symbols,
                subscribe=conn.subscribe,
                ping_payload=conn.ping_payload,
                ping_interval_s=cfg.ping_interval_s,
                stale_after_s=cfg.stale_after_s,
                max_age_s=cfg.max_connection_age_s,
                max_message_bytes=cfg.max_frame_bytes,
                backoff=cfg.backoff,
            )
            sess = Session(
                scfg,
                on_frame=self._frame_sink(tag),
                on_gap=lambda gaps, tag=tag: self._journal_gaps(tag, gaps),
            )
            self._session_of.update((s, sess) for s in conn.symbols)
            self.sessions.append(sess.start())
        self._started = True
        log.info("collector started: %d sessions, journal %s, store %s", len(self.sessions), cfg.journal_dir, self.store.root)
        return self

    def request_stop(self) -> None:
        """Ask ``run()`` to stop (signal-handler safe)."""
        self._stop.set()

    def stop(self) -> None:
        """Disconnect, process and flush everything journaled, commit, close (idempotent)."""
        if not self._started:
            return
        self._started = False
        self._stop.set()
        for s in self.sessions:
            s.stop()
        self.fetcher.stop.set()
        self.fetcher.thread.join(5)
        if self._processor is not None:
            self._processor.join(60)
        self.journal.close()
        if self._own_store:
            self.store.close()
        log.info("collector stopped: %s", self.stats.as_dict())

    def run(self, *, seconds: float | None = None, install_signals: bool = True) -> CollectorStats:
        """Start, wait for SIGINT/SIGTERM (or ``seconds``), stop. Returns the counters."""
        run_until_stopped(self, seconds=seconds, install_signals=install_signals)
        return self.stats

    def __enter__(self) -> "Collector":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- journaling (session and fetcher threads) ------------------------------------------
    def _frame_sink(self, tag: str):
        append, frame = self.journal.append, RecordKind.FRAME

        def sink(payload: bytes, recv_ns: int) -> None:
            append(frame, payload, recv_ns=recv_ns, tag=tag)

        return sink

    def _journal_gaps(self, tag: str, gaps: list[Gap]) -> None:
        for g in gaps:
            body = orjson.dumps(
                {"symbol": g.symbol, "ts": g.ts, "recv_ns": g.recv_ns, "end_ts": g.end_ts, "stream": g.stream, "cause": g.cause, "detail": g.detail}
            )
            self.journal.append(RecordKind.GAP, body, recv_ns=g.recv_ns, tag=tag)

    # -- processing (processor thread, or the caller during replay) -----------------------
    def _restore_books(self) -> set[str]:
        """Continue the books from ``<journal>/books.json`` when it is not older than the
        checkpoint (it is written just before each commit); returns the symbols restored."""
        books, meta = self._book_states.load()
        pos = meta.get("position")
        if pos is None or Position(*pos) < self.journal.committed:
            return set()
        done = set()
        for sym, b in self.books.items():
            state = books.get(book_key(sym, b.levels, b.interval_ns // 1_000_000))
            if state is not None:
                try:
                    b.restore_state(state, older="skip")  # records the state already holds are skipped
                    done.add(sym)
                except ValueError:
                    log.warning("book state of %s does not fit this collector's book; it starts from a snapshot", sym)
        return done

    def _save_books(self, pos: Position) -> None:
        """The books as of ``pos`` (all processed records stored), written before the commit."""
        cfg = self.config
        self._book_states.save(
            {book_key(s, cfg.book_levels, cfg.book_interval_ms): b.save_state() for s, b in self.books.items()},
            meta={"position": list(pos)},
        )

    def _replay(self) -> None:
        """Feed the records after the checkpoint through the pipeline, then flush them."""
        restored = self._restore_books()
        last = None
        for rec in self.journal.pending():
            self._process(rec)
            self.stats.replayed += 1
            last = rec
        if last is None:
            meta = self.journal.committed
            if meta.segment >= 0:
                self._last_recv = self.journal.checkpoint_meta.get("last_recv_ns")
            return
        log.warning("replayed %d journaled records not yet in the store", self.stats.replayed)
        committed_recv = self.journal.checkpoint_meta.get("last_recv_ns")
        for sym, b in self.books.items():
            if not b.synced and committed_recv is not None and sym not in restored:
                # The book's state at the checkpoint died with the process: the replayed
                # diffs could not be applied until a snapshot. Say so in the ledger.
                self.batcher.add(
                    Gap(sym, committed_recv, last.recv_ns, max(last.recv_ns, committed_recv + 1), GAP_STREAM, "resync",
                        "book state lost at restart; replayed diffs without a snapshot")
                )
        self._reconcile = True
        self._flush()
        self._reconcile = False

    def _process_loop(self) -> None:
        cfg = self.config
        next_flush = time.monotonic() + cfg.flush_interval_s
        sessions_done = False
        while True:
            try:
                rec = self.queue.get(timeout=0.05)
            except queue.Empty:
                rec = None
                if self._stop.is_set() and sessions_done:
                    break
            if rec is not None:
                try:
                    self._process(rec)
                except Exception:  # noqa: BLE001 - one record must not end the collection
                    log.exception("processing journal record %s failed", rec.end)
            if self._stop.is_set() and not sessions_done:
                # sessions and fetcher stop first; whatever they journaled is then drained
                sessions_done = all(not (s._thread and s._thread.is_alive()) for s in self.sessions) and not self.fetcher.thread.is_alive()
            if time.monotonic() >= next_flush:
                next_flush = time.monotonic() + cfg.flush_interval_s
                self._flush_safely()
        self._flush_safely(final=True)

    def _process(self, rec: Record) -> None:
        self.stats.records += 1
        kind = rec.kind
        if kind is RecordKind.FRAME:
            self._on_frame(rec)
        elif kind is RecordKind.SNAPSHOT:
            self._on_snapshot(rec)
        elif kind is RecordKind.GAP:
            self._on_gap(rec)
        self._last_pos = rec.end
        self._last_recv = rec.recv_ns

    def _tag(self, tag: str) -> tuple | None:
        """(parser, market) of a connection tag; None for a tag this venue never writes."""
        hit = self._tags.get(tag)
        if hit is None:
            try:
                hit = self._tags[tag] = (self.feed.parser(tag), self.feed.group_of_tag(tag))
            except ValueError:
                return None
        return hit

    def _on_frame(self, rec: Record) -> None:
        self.stats.frames += 1
        tag = rec.tag
        hit = self._tag(tag)
        if hit is None:
            self.stats.bad_frames += 1
            self.stats.unknown_streams += 1
            log.warning("journal record tagged %r: not a %s connection; skipped", tag, self.config.venue.value)
            return
        parser, market = hit
        prev = self._last_frame_ns.get(tag, rec.recv_ns)
        self._last_frame_ns[tag] = rec.recv_ns
        conn = self._conn_status.get(tag)
        if conn is None:
            conn = self._conn_status[tag] = [0, 0]
        conn[0] += 1
        conn[1] = rec.recv_ns
        try:
            events = parser.parse(rec.body, rec.recv_ns)
        except BadFrame as exc:
            self._bad_frame(tag, market, prev, rec, exc)
            return
        self.stats.events += len(events)
        touched = None
        status = self._stream_status
        drop = self.feed.dropped_events
        for ev in events:
            cls = type(ev)
            if drop and cls in drop:
                continue
            st = status.get((ev.symbol, cls.__name__))
            if st is None:
                st = status[(ev.symbol, cls.__name__)] = [0, 0, 0]
            st[0] += 1
            st[1] = ev.ts
            st[2] = rec.recv_ns
            if cls is DepthDiff:
                book = self.books.get(ev.symbol)
                if book is None:
                    continue
                out = book.on_diff(ev)
                if out:
                    self.batcher.extend(out)
                if ev.ts > self._max_depth_ts.get(market, -1):
                    self._max_depth_ts[market] = ev.ts
                touched = book
            elif cls is DepthSnapshot:  # partial books, Bybit snapshots, Hyperliquid l2Book
                book = self.books.get(ev.symbol)
                if book is None:
                    continue
                self.batcher.extend(self.feed.on_book_snapshot(book, ev))
                if self.feed.snapshots_advance_clock and ev.ts > self._max_depth_ts.get(market, -1):
                    self._max_depth_ts[market] = ev.ts
                touched = book
            else:
                self.batcher.add(ev)
        if touched is not None and touched.needs_snapshot:
            self._want_snapshot(touched)

    def _bad_frame(self, tag: str, market, prev_ns: int, rec: Record, exc: BadFrame) -> None:
        self.stats.bad_frames += 1
        if isinstance(exc, UnknownStream):
            self.stats.unknown_streams += 1
            log.warning("%s: unknown stream: %s", tag, exc)
            return
        if isinstance(exc, VenueErrorFrame):
            self.stats.venue_errors += 1
            log.warning("%s: venue error frame: %s", tag, exc)
            return
        if isinstance(exc, OversizedFrame):
            self.stats.oversized += 1
        else:
            self.stats.malformed += 1
        log.warning("%s: %s: %s", tag, type(exc).__name__, exc)
        syms = self.session_symbols.get(tag) or self.feed.symbols_of_group(market)
        detail = f"{tag}: {type(exc).__name__}: {exc}"[:MAX_DETAIL]
        for s in syms:
            self.batcher.add(Gap(s, prev_ns, rec.recv_ns, max(rec.recv_ns, prev_ns + 1), "*", "malformed", detail))
            self.stats.gaps += 1

    def _on_snapshot(self, rec: Record) -> None:
        """A journaled REST depth snapshot (Binance's resync; tag ``<market>:<native id>``)."""
        if not self.feed.rest_snapshots:
            log.warning("journal holds a REST snapshot %r, which %s collectors never fetch; skipped", rec.tag, self.config.venue.value)
            return
        market_s, _, native = rec.tag.partition(":")
        market = Market(market_s)
        try:
            snap = self.feed.rest_parser(market).parse_snapshot(rec.body, rec.recv_ns, native_symbol=native)
        except BadFrame as exc:
            self.stats.snapshot_errors += 1
            log.warning("snapshot %s: %s", rec.tag, exc)
            sym = None
            for s, b in self.books.items():
                if b.market is market and from_tickstore(s)[0] == native:
                    sym = s
            if sym is not None:
                self._pending_snapshots.discard(sym)
                self._want_snapshot(self.books[sym])
            return
        self._pending_snapshots.discard(snap.symbol)
        book = self.books.get(snap.symbol)
        if book is None:
            return
        out = book.on_snapshot(snap)
        if out:
            self.batcher.extend(out)
        if book.needs_snapshot:  # older than every buffered diff: needs a fresher one
            self._want_snapshot(book)

    def _on_gap(self, rec: Record) -> None:
        d = orjson.loads(rec.body)
        gap = Gap(d["symbol"], d["ts"], d["recv_ns"], d["end_ts"], d["stream"], d["cause"], d["detail"])
        self.batcher.add(gap)
        self.stats.gaps += 1
        if gap.stream == "*":
            # The connection was down: diffs were missed, the book must be rebuilt from a
            # fresh snapshot taken after the new subscription (requested on the next diff).
            book = self.books.get(gap.symbol)
            if book is not None:
                self.feed.on_connection_gap(book)

    def _want_snapshot(self, book: BookBuilder) -> None:
        """Ask for a fresh book: a REST snapshot (Binance) or a resubscription (Bybit)."""
        if not self._live:
            return  # replaying the journal: the live connections will bring the books
        if not self.feed.rest_snapshots:
            messages = self.feed.resync_messages(book)
            session = self._session_of.get(book.symbol)
            if messages and session is not None:
                self.stats.resubscribes += 1
                log.info("%s: resubscribing the book of %s for a fresh snapshot", session.config.name, book.symbol)
                for m in messages:
                    session.send(m)
            return
        # Only once the stream is buffering: a snapshot taken before the first diff of the
        # subscription could predate it (Binance: subscribe, buffer, then fetch).
        if book.symbol in self._pending_snapshots or book.buffered == 0:
            return
        self._pending_snapshots.add(book.symbol)
        self.stats.snapshots_requested += 1
        self.fetcher.request(book.symbol)

    # -- flushing ----------------------------------------------------------------------------
    def _flush_safely(self, *, final: bool = False) -> None:
        if final:  # books not valid at the stop: their span so far goes to the gap ledger
            for b in self.books.values():
                self.batcher.extend(b.close_outage())
        try:
            self._flush()
        except Exception:  # noqa: BLE001 - keep collecting; the journal still has everything
            self.stats.store_errors += 1
            log.exception("flush failed; the journal keeps the records for the next attempt")
        try:
            self.write_status(running=not final)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.config.status_path, exc)

    def status(self, *, running: bool = True) -> dict:
        """The health record written to ``config.status_path`` (see ``collectors.status``)."""
        now = time.time_ns()
        streams = [
            {"symbol": sym, "kind": kind, "events": n, "last_ts_ns": ts, "last_recv_ns": recv,
             "lag_ms": (recv - ts) / 1e6}
            for (sym, kind), (n, ts, recv) in sorted(self._stream_status.items())
        ]
        conns = [{"connection": tag, "frames": n, "last_recv_ns": recv} for tag, (n, recv) in sorted(self._conn_status.items())]
        return {
            "version": 1, "name": self.config.name, "pid": os.getpid(), "running": running,
            "started_ns": self._started_ns, "updated_ns": now, "symbols": list(self.config.symbols),
            "journal": str(self.config.journal_dir), "streams": streams, "connections": conns,
            "stats": self.stats.as_dict(),
        }

    def write_status(self, *, running: bool = True) -> Path:
        """Atomically replace the status file (temp file in the same folder, then rename)."""
        path = self.config.status_path
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        tmp.write_bytes(orjson.dumps(self.status(running=running), option=orjson.OPT_INDENT_2))
        os.replace(tmp, path)
        return path

    def _flush(self) -> None:
        """Append everything processed to the store, then checkpoint the journal."""
        for market, books in self.book_market.items():
            until = self._max_depth_ts.get(market)
            if until is not None:
                for b in books:
                    out = b.flush(until)
                    if out:
                        self.batcher.extend(out)
        frames = self._retry
        self._retry = {}
        for key, df in self.batcher.drain().items():
            frames[key] = pd.concat([frames[key], df]).sort_index(kind="stable") if key in frames else df
        pos = self._last_pos
        source = f"live journal {pos.segment}:{pos.offset}" if pos is not None else "live"
        for (table, symbol), df in frames.items():
            try:
                self._append(table, symbol, df, source)
            except (LockedError, OSError) as exc:
                # transient: keep the rows, do not move the checkpoint past them
                self.stats.store_errors += 1
                self._retry[(table, symbol)] = df
                log.warning("append %s %s deferred: %s", table, symbol, exc)
            except (TickstoreError, ValueError) as exc:
                # the store refused the data itself: retrying cannot help; count and move on
                self.stats.rows_rejected += len(df)
                log.error("store refused %d rows of %s %s: %s", len(df), table, symbol, exc)
        self.stats.flushes += 1
        if not self._retry and pos is not None and (self.journal.committed < pos):
            if self.books:
                self._save_books(pos)
            self.journal.commit(pos, meta={"last_recv_ns": self._last_recv})

    def _append(self, table: str, symbol: str, df: pd.DataFrame, source: str) -> None:
        t = self.store[table]
        if self._reconcile and t.schema.key is None:
            df = self._unstored(t, symbol, df)
            if df.empty:
                return
        try:
            t.append(symbol, df, source=source)
        except DuplicateKeyError:
            # Two rows with one key and different values inside a batch (e.g. a venue
            # re-sent a trade with another receive time): the first one received wins.
            keys = [k for k in t.schema.key if k != "ts"]
            frame = df.reset_index()
            dup = frame.duplicated(subset=["ts"] * ("ts" in t.schema.key) + keys, keep="first").to_numpy()
            self.stats.rows_rejected += int(dup.sum())
            log.warning("%s %s: dropped %d rows repeating a key", table, symbol, int(dup.sum()))
            df = df[~dup]
            t.append(symbol, df, source=source)
        self.stats.rows[table] += len(df)

    def _unstored(self, t, symbol: str, df: pd.DataFrame) -> pd.DataFrame:
        """Rows of ``df`` not already stored: multiset difference on every column."""
        fresh = unstored(t, symbol, df)
        self.stats.rows_reconciled += len(df) - len(fresh)
        return fresh


# -- config files ------------------------------------------------------------------------------
# section -> key -> (CollectorConfig field or None for a nested option, accepted types)
_TOML_KEYS = {
    "collector": {
        "name": ("name", str), "venue": ("venue", str), "exchange": ("exchange", str),
        "store": ("store", str), "journal": ("journal", str),
        "symbols": ("symbols", list), "channels": ("channels", list),
        "flush_interval_s": ("flush_interval_s", (int, float)),
        "streams_per_connection": ("streams_per_connection", int),
        "max_frame_bytes": ("max_frame_bytes", int),
    },
    "book": {
        "levels": ("book_levels", int), "interval_ms": ("book_interval_ms", int),
        "snapshot_limit": ("snapshot_limit", int), "snapshot_min_interval_s": ("snapshot_min_interval_s", (int, float)),
    },
    "session": {
        "stale_after_s": ("stale_after_s", (int, float)), "ping_interval_s": ("ping_interval_s", (int, float)),
        "max_connection_age_s": ("max_connection_age_s", (int, float)), "rest_timeout_s": ("rest_timeout_s", (int, float)),
    },
    "backoff": {k: (k, (int, float)) for k in ("initial_s", "max_s", "factor", "jitter", "reset_after_s")},
    "journal": {
        "segment_bytes": ("segment_bytes", int), "fsync": ("fsync", str),
        "fsync_interval_s": ("fsync_interval_s", (int, float)), "keep_committed": ("keep_committed", bool),
    },
}
_CHANNEL_NAMES = {c.name.lower(): c for c in Channel}


def load_config(path, *, overrides: dict | None = None) -> CollectorConfig:
    """Read a TOML collector config; every error names the file and the field.

    Sections: ``[collector]`` (venue, store, journal, symbols, channels, flush_interval_s,
    streams_per_connection, max_frame_bytes), ``[book]`` (levels, interval_ms,
    snapshot_limit), ``[session]`` (stale_after_s, ping_interval_s, max_connection_age_s,
    rest_timeout_s), ``[backoff]``, ``[journal]`` (segment_bytes, fsync, fsync_interval_s,
    keep_committed) and ``[endpoints.<market>]`` (ws, rest; markets: binance spot, usdm,
    coinm; bybit linear, spot; hyperliquid perp). ``overrides`` replace ``[collector]`` keys
    (the CLI's ``--store``).

    ``venue`` (``exchange`` is accepted as its synonym, the ccxt word the symbols use) is
    binance, bybit or hyperliquid; without either it is the exchange every symbol names.
    """
    path, doc = read_toml(path)
    doc.setdefault("collector", {}).update(overrides or {})
    return _config_from_doc(doc, path)


def read_toml(path) -> tuple[Path, dict]:
    """Parse a collector config file; unreadable or invalid TOML raises ``CollectorError``."""
    import tomllib

    path = Path(path).expanduser()
    try:
        return path, tomllib.loads(path.read_text())
    except OSError as exc:
        raise CollectorError(f"cannot read collector config {str(path)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CollectorError(f"{path}: not valid TOML: {exc}") from None


def _config_from_doc(doc: dict, path, prefix: str = "") -> CollectorConfig:
    """One ``CollectorConfig`` from a parsed TOML document (sections as in ``load_config``).

    ``prefix`` names where the document sits in the file (``feeds[1].``): its
    ``[collector]`` keys are then reported as ``feeds[1].<key>``, other sections as
    ``feeds[1].<section>.<key>``.
    """
    from .journal import FsyncPolicy

    def fail(where: str, why: str):
        if prefix:
            where = where.strip("[]")
            where = prefix + (where[len("collector."):] if where.startswith("collector.") else where)
        raise CollectorError(f"{path}: {where}: {why}")

    kwargs: dict = {}
    nested: dict[str, dict] = {"backoff": {}, "journal": {}}
    for section, body in doc.items():
        if section == "endpoints":
            continue
        known = _TOML_KEYS.get(section)
        if known is None:
            fail(f"[{section}]", f"unknown section; known: {sorted(list(_TOML_KEYS) + ['endpoints'])}")
        if not isinstance(body, dict):
            fail(section, "must be a table")
        for key, value in body.items():
            if key not in known:
                fail(f"{section}.{key}", f"unknown key; known keys of [{section}]: {sorted(known)}")
            name, types = known[key]
            if not isinstance(value, types) or (isinstance(value, bool) and types is not bool):
                fail(f"{section}.{key}", f"expected {getattr(types, '__name__', 'a number')}, got {value!r}")
            if section in nested:
                nested[section][name] = value
            else:
                kwargs[name] = value
    if "store" not in kwargs:
        fail("collector.store", "missing (the store root, e.g. store = \"~/ticks\")")
    if "symbols" not in kwargs:
        fail("collector.symbols", "missing (e.g. symbols = [\"binance:BTC/USDT:USDT\"])")
    kwargs["store"] = str(Path(kwargs["store"]).expanduser())
    if "journal" in kwargs:
        kwargs["journal"] = str(Path(kwargs["journal"]).expanduser())
    if not all(isinstance(s, str) for s in kwargs["symbols"]):
        fail("collector.symbols", f"must be a list of strings, got {kwargs['symbols']!r}")
    kwargs["symbols"] = tuple(kwargs["symbols"])
    exchange = kwargs.pop("exchange", None)
    if exchange is not None and "venue" in kwargs and exchange != kwargs["venue"]:
        fail("collector.exchange", f"{exchange!r} contradicts venue {kwargs['venue']!r} (give one of them)")
    field_name = "collector.venue" if "venue" in kwargs else "collector.exchange"
    venue = kwargs.get("venue", exchange)
    if venue is None:  # the exchange the symbols name (binance when they disagree: its error names them)
        named = {s.partition(":")[0] for s in kwargs["symbols"]}
        venue = named.pop() if len(named) == 1 and next(iter(named)) in [v.value for v in Venue] else "binance"
    try:
        kwargs["venue"] = Venue(venue)
    except ValueError:
        fail(field_name, f"must be one of {[v.value for v in Venue]}, got {venue!r}")
    feed = feed_class(kwargs["venue"])
    if "channels" in kwargs:
        bad = [c for c in kwargs["channels"] if c not in _CHANNEL_NAMES]
        if bad:
            fail("collector.channels", f"unknown {bad}; known: {sorted(_CHANNEL_NAMES)}")
        kwargs["channels"] = tuple(_CHANNEL_NAMES[c] for c in kwargs["channels"])
    endpoints = {}
    for m, ep in (doc.get("endpoints") or {}).items():
        try:
            market = feed.markets(m)
        except ValueError:
            fail(f"[endpoints.{m}]", f"unknown market of {feed.venue.value}; known: {[x.value for x in feed.markets]}")
        if not isinstance(ep, dict) or set(ep) - {"ws", "rest"}:
            fail(f"endpoints.{m}", f"must have only the keys ws and rest, got {ep!r}")
        default = feed.ENDPOINTS[market]
        endpoints[market] = Endpoints(ep.get("ws", default.ws), ep.get("rest", default.rest), default.depth_path)
    kwargs["endpoints"] = endpoints
    try:
        if nested["backoff"]:
            kwargs["backoff"] = BackoffPolicy(**nested["backoff"])
        if nested["journal"]:
            j = dict(nested["journal"])
            if "fsync" in j:
                try:
                    j["fsync"] = FsyncPolicy(j["fsync"])
                except ValueError:
                    fail("journal.fsync", f"must be one of {[p.value for p in FsyncPolicy]}, got {j['fsync']!r}")
            kwargs["journal_options"] = JournalConfig(**j)
        return CollectorConfig(**kwargs)
    except CollectorError as exc:
        msg = str(exc)
        if msg.startswith(f"{path}: "):
            raise
        if prefix and msg.startswith("collector config: "):
            msg = msg[len("collector config: "):]  # -> "feeds[1].name must be ..."
        raise CollectorError(f"{path}: {prefix}{msg}") from None
    except (TickstoreError, ValueError) as exc:
        raise CollectorError(f"{path}: {prefix}{exc}") from None


# -- the offline demo --------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoReport:
    """What ``run_demo`` collected: rows per table, the gap ledger, latency, counters."""

    root: str
    seconds: float
    rows: dict
    gaps: pd.DataFrame
    latency_ms: dict
    stats: dict
    venue: str = "binance"
    notes: tuple = ()

    def summary(self) -> str:
        lines = [f"store: {self.root}  ({self.seconds:g} s against the simulated {self.venue} on 127.0.0.1)", "rows:"]
        for table, n in sorted(self.rows.items()):
            lines.append(f"  {table:<14}{n:>9,}")
        lines.append(f"gaps: {len(self.gaps)}")
        if len(self.gaps):
            for (cause, stream), n in self.gaps.groupby(["cause", "stream"]).size().items():
                lines.append(f"  {cause:<15} stream={stream:<6}{n:>4}")
        lat = self.latency_ms
        if lat:
            lines.append(
                "latency exchange time -> receive (ms, trades): "
                + "  ".join(f"{k}={v:.2f}" for k, v in lat.items())
            )
        s = self.stats
        lines.append(
            f"frames={s['frames']:,} malformed={s['malformed']} unknown_streams={s['unknown_streams']} "
            f"oversized={s['oversized']} snapshots={s['snapshots_fetched']} resubscribes={s['resubscribes']} "
            f"flushes={s['flushes']}"
        )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


DEMO_SYMBOLS = ("binance:BTC/USDT", "binance:ETH/USDT", "binance:BTC/USDT:USDT", "binance:ETH/USDT:USDT")
_DEMOS = {
    # venue -> symbols, then the faults: (market to drop, symbol to skip a book update of, market of a cut frame)
    Venue.BINANCE: (DEMO_SYMBOLS, "spot", "binance:ETH/USDT:USDT", "usdm"),
    Venue.BYBIT: (("bybit:BTC/USDT", "bybit:ETH/USDT", "bybit:BTC/USDT:USDT", "bybit:ETH/USDT:USDT"),
                  "spot", "bybit:ETH/USDT:USDT", "linear"),
    Venue.HYPERLIQUID: (("hyperliquid:BTC/USDC:USDC", "hyperliquid:ETH/USDC:USDC"), "perp", "hyperliquid:ETH/USDC:USDC", "perp"),
}
_DEMO_NOTES = {  # venue -> (always, with faults)
    Venue.BYBIT: ((), ("the skipped orderbook delta breaks the u chain: the book resubscribes its topic for a fresh snapshot",)),
    Venue.HYPERLIQUID: (
        ("hyperliquid has no public liquidation stream: no liquidations are collected",),
        ("the withheld l2Book leaves no trace: every l2Book frame is the whole book, without a sequence number",),
    ),
}


def run_demo(root, *, seconds: float = 10.0, seed: int = 0, faults: bool = True, venue: Venue | str = Venue.BINANCE) -> DemoReport:
    """Start the simulated ``venue`` on 127.0.0.1, collect from it for ``seconds``, report.

    With ``faults`` the exchange misbehaves once each, spread over the run: a dropped
    connection, a skipped book update and a malformed frame, so the gap ledger shows how
    each is recorded.
    """
    from .simulator import Simulator, SimulatorConfig

    if seconds <= 0:
        raise CollectorError(f"demo seconds must be > 0, got {seconds}")
    try:
        venue = Venue(venue)
    except ValueError:
        raise CollectorError(f"demo venue must be one of {[v.value for v in Venue]}, got {venue!r}") from None
    symbols, drop, skip, cut = _DEMOS[venue]
    feed = feed_class(venue)
    root = Path(root).expanduser()
    sim = Simulator(SimulatorConfig(symbols=symbols, seed=seed, liquidation_prob=0.05)).start()
    try:
        endpoints = {m: sim.endpoints(m) for m in sim.markets}
        config = CollectorConfig(store=str(root), venue=venue, symbols=symbols, endpoints=endpoints, flush_interval_s=1.0)
        collector = Collector(config).start()
        try:
            plan = [(0.3, lambda: sim.drop(feed.markets(drop))), (0.5, lambda: sim.skip_sequence(skip)),
                    (0.7, lambda: sim.malformed(1, feed.markets(cut)))] if faults else []
            t0 = time.monotonic()
            for at, action in plan:
                time.sleep(max(0.0, t0 + at * seconds - time.monotonic()))
                action()
            time.sleep(max(0.0, t0 + seconds - time.monotonic()))
        finally:
            collector.stop()
    finally:
        sim.stop()
    tables = ["trades", "quotes", collector.book_table, "mark", "open_interest", "liquidations", "gaps"]
    if venue is Venue.BINANCE:
        tables.remove("open_interest")  # no open-interest stream on Binance (REST backfill has it)
    if venue is Venue.HYPERLIQUID:
        tables.remove("liquidations")
    with Tickstore(root) as store:
        rows = {table: len(store[table].select(list(symbols))) for table in tables}
        gaps = store["gaps"].select(list(symbols))
        trades = store["trades"].select(list(symbols), columns=["recv_ts"])
    lat = {}
    if len(trades):
        ms = (trades["recv_ts"] - trades.index.to_series()).dt.total_seconds().to_numpy() * 1e3
        lat = {f"p{q}": float(np.percentile(ms, q)) for q in (50, 90, 99)}
        lat["max"] = float(ms.max())
    always, with_faults = _DEMO_NOTES.get(venue, ((), ()))
    notes = always + (with_faults if faults else ())
    return DemoReport(str(root), seconds, rows, gaps, lat, collector.stats.as_dict(), venue.value, notes)


def run_until_stopped(runner, *, seconds: float | None, install_signals: bool) -> None:
    """``runner.start()``, wait for SIGINT/SIGTERM (which call ``runner.request_stop()``) or
    ``seconds``, then ``runner.stop()`` (which flushes), restoring the old signal handlers."""
    old = {}
    if install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, lambda *_: runner.request_stop())
    try:
        runner.start()
        # Wait in short slices: CPython runs a signal's Python handler only when the main
        # thread executes bytecode, and a signal the kernel delivered to another thread (a
        # session's, or a compression library's worker) does not interrupt a lock wait, so
        # an untimed wait() could sleep through SIGTERM for good.
        deadline = None if seconds is None else time.monotonic() + seconds
        while not runner._stop.wait(0.25 if deadline is None else max(0.0, min(0.25, deadline - time.monotonic()))):
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        runner.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)
