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
  Keyed tables (trades: trade_id; quotes: ts+update_id; book, mark: ts; gaps: the whole
  row; book_diffs: the level's place in its diff) drop them in ``Table.append``; keyless
  tables (liquidations) are reconciled: the
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
Poison (fields that parse but cannot be right, see ``collectors.fields``) is refused by the
parser the same way. Every refused frame (but a venue's error answer) is kept in the
quarantine (``collectors.quarantine``, ``<journal>/quarantine/``) with its reason before
the checkpoint passes it; a journal replay meets it again and treats it the same way.

Store failures. ``collectors.writer.StoreWriter`` holds processed rows until the store
takes them; any exception of an append (corruption, a full disk, a lock timeout, a bug)
keeps them, and the checkpoint never passes a row the store has not committed (only rows
the store refuses as invalid are quarantined)::

    flush fails ──> backlog kept, retried with backoff (flush_interval_s doubling up to
        │           store_retry_max_s, 30 s);
        │           status file: health degraded, the error, backlog rows, journal bytes
        ├── store works again ──> backlog stored (reconciled, so once), checkpoint moves
        └── backlog > max_backlog_rows ──> "spill": memory dropped, the queue stops, the
                journal alone keeps the records; retried with a probe of the kept rows,
                then a catch-up replays the journal from the checkpoint through a fresh
                pipeline (as a restart does) and hands over to the live queue

Start-up is the same catch-up: if the store fails during it, the collector goes live all
the same (sessions journal) and retries. A damaged journal stops ``start()`` with
``JournalCorruptionError`` (``tickstore journal salvage DIR`` repairs it).
"""

from __future__ import annotations

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

import orjson

from tickstore import Tickstore
from tickstore.errors import TickstoreError

from .book import GAP_STREAM, BookBuilder, book_table, flush_horizon
from .bookstate import BookStateError, BookStates, book_key, parser_key
from .events import DepthDiff, DepthSnapshot, EventBatcher, Gap
from .exchanges import BadFrame, InvalidValue, OversizedFrame, UnknownStream, VenueErrorFrame
from .exchanges.binance import Channel, Market, depth_snapshot_url, from_tickstore
from .journal import Journal, Position, Record, RecordKind, read_records
from .quarantine import Quarantine
from .config import STATUS_PREFIX, CollectorConfig, CollectorError, load_config  # noqa: F401 - re-exported
from .session import MAX_DETAIL, Backoff, BackoffPolicy, Session, SessionConfig
from .venues import Venue, feed_class
from .writer import StoreWriter

__all__ = ["Venue", "CollectorConfig", "CollectorStats", "Collector", "CollectorError", "load_config", "run_until_stopped"]

log = logging.getLogger(__name__)

_DIFF_CHANNELS = (Channel.DEPTH, Channel.DEPTH_RT)
_BOOK_CHANNELS = _DIFF_CHANNELS + tuple(c for c in Channel if c.partial_levels is not None)


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
    invalid_values: int = 0  # poison: fields that parse but cannot be right (collectors.fields)
    quarantined_frames: int = 0
    snapshots_requested: int = 0
    snapshots_fetched: int = 0
    resubscribes: int = 0  # books resynced by resubscribing their topic (Bybit)
    snapshot_errors: int = 0
    gaps: int = 0
    flushes: int = 0
    store_errors: int = 0
    rows_rejected: int = 0  # rows repeating a key of an earlier row of their batch
    rows_reconciled: int = 0
    rows_quarantined: int = 0  # rows the store refused as invalid
    spills: int = 0  # times the backlog outgrew max_backlog_rows and was left to the journal
    catch_ups_abandoned: int = 0  # journal replays the store failed during (retried)
    partitions_closed: int = 0  # partitions merged into one file at the stop
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

    Whatever the store does, the journal keeps every row it has not committed (see
    "Store failures" in the module doc): ``start()`` and the feeds never wait for the store.
    """

    def __init__(self, config: CollectorConfig, *, store: Tickstore | None = None):
        self.config = config
        self.stats = CollectorStats()
        self._own_store = store is None
        self.store = store if store is not None else Tickstore(config.store)
        self.book_table = book_table(config.book_levels)
        self.sessions: list[Session] = []
        self._session_of: dict[str, Session] = {}  # symbol -> its session (resubscriptions)
        self._connections = feed_class(config.venue)(config).plan()
        # (tag, market, symbols) and the stream names per connection, for the curious and the tests
        self._session_specs = [(c.tag, c.group, c.symbols) for c in self._connections]
        self._streams = {c.tag: list(c.streams) for c in self._connections}
        self.session_symbols: dict[str, tuple[str, ...]] = {c.tag: c.symbols for c in self._connections}
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.journal: Journal | None = None
        self.quarantine: Quarantine | None = None
        self.writer: StoreWriter | None = None
        self.fetcher = _SnapshotFetcher(self)
        self._live = False  # True: records come from the queue; False: catching up from the journal
        self._last_pos: Position | None = None
        self._last_recv: int | None = None
        self._stop = threading.Event()
        self._processor: threading.Thread | None = None
        self._started = False
        self._started_ns = time.time_ns()
        self._store_backoff = Backoff(BackoffPolicy(initial_s=config.flush_interval_s, max_s=config.store_retry_max_s, jitter=0.0))
        self._next_flush = 0.0
        self._failing_since: int | None = None  # first failed store attempt of the current outage
        self._health_error: str | None = None  # why the last store attempt failed
        self._probe: tuple | None = None  # rows kept when the backlog was dropped (see _store_works)
        self._open_position: Position | None = None  # the journal's end when it was opened
        # per (symbol, event kind): [events, last exchange ts, last recv_ns]; per connection: [frames, last recv_ns]
        self._stream_status: dict[tuple[str, str], list] = {}
        self._conn_status: dict[str, list] = {}
        self._book_states = BookStates(config.journal_dir / "books.json")  # books as of the checkpoint
        self._new_pipeline()

    def _new_pipeline(self) -> None:
        """Fresh parsers, books and batcher: the state processing starts from at the checkpoint."""
        cfg = self.config
        self.feed = feed_class(cfg.venue)(cfg)
        self.batcher = EventBatcher(self.book_table)
        self.books: dict[str, BookBuilder] = {}
        self.book_market: dict[object, list[BookBuilder]] = defaultdict(list)  # per market (Connection.group)
        # partial-book channels (Binance depth5/10/20) and no diffs: a row per frame (and/or the grid)
        partial_only = not any(c in _DIFF_CHANNELS for c in cfg.channels)
        rows = cfg.partial_book_rows if partial_only else "grid"
        if self.feed.quote_books(cfg):
            rows = "none"  # books kept for their quotes only (Bybit orderbook.1): no book rows
        if any(c in _BOOK_CHANNELS for c in cfg.channels) or rows == "none":
            for conn in self._connections:
                for s in conn.symbols:
                    if s not in self.books:
                        b = BookBuilder(s, self.feed.book_rule(s), levels=cfg.book_levels, interval_ms=cfg.book_interval_ms,
                                        quotes=self.feed.book_quotes and Channel.QUOTES in cfg.channels, rows=rows)
                        self.books[s] = b
                        self.book_market[conn.group].append(b)
        self._tags: dict[str, tuple] = {}  # tag -> (parser, market), filled on first use
        self._pending_snapshots: set[str] = set()
        self._last_frame_ns: dict[str, int] = {}
        self._max_depth_ts: dict[object, int] = {}  # per market: latest book exchange time
        self._horizon: dict[object, int] = {}  # per market: the grid time its books were flushed to
        self._bad_frames: list[tuple] = []  # (reason, record) to quarantine at the next flush

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Collector":
        """Replay the journal beyond its checkpoint into the store, then go live.

        If the store fails during the replay, the collector goes live anyway: the sessions
        journal as usual and the processor retries the replay (with backoff) until the
        store takes it. A damaged journal raises ``JournalCorruptionError`` (see
        ``collectors.journal.salvage``).
        """
        cfg = self.config
        self._open()
        try:
            last = self.journal.last_recv_ns
            if last is None:
                last = self.journal.checkpoint_meta.get("last_recv_ns")
            now = time.time_ns()
            if last is not None:
                # The collector was down (crash or stop) since the last journaled record.
                for tag, market, syms in self._session_specs:
                    gaps = [Gap(s, last, now, max(now, last + 1), "*", "disconnect", "collector was not running (restart)") for s in syms]
                    self._journal_gaps(tag, gaps)
            if not self._catch_up():
                log.error("the store failed while the journal was replayed (%s); collecting on, the replay is retried", self._health_error)
        except BaseException:
            self._close()
            raise
        self._next_flush = time.monotonic() + cfg.flush_interval_s if self._live else self._next_flush
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
                is_control=conn.is_control,
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
                on_oversized=self._on_oversized,
            )
            self._session_of.update((s, sess) for s in conn.symbols)
            self.sessions.append(sess.start())
        self._started = True
        log.info("collector started: %d sessions, journal %s, store %s", len(self.sessions), cfg.journal_dir, self.store.root)
        return self

    def _open(self) -> None:
        """Open the journal (recovering a torn tail), the quarantine and the store writer."""
        cfg = self.config
        self.journal = Journal(cfg.journal_dir, config=cfg.journal_options)
        try:
            self.quarantine = Quarantine(cfg.quarantine_dir)
        except BaseException:
            self.journal.close()
            raise
        self.writer = StoreWriter(self.store, self.quarantine, self.stats)
        self._open_position = self.journal.position

    def _close(self) -> None:
        self.journal.close()
        self.quarantine.close()

    def request_stop(self) -> None:
        """Ask ``run()`` to stop (signal-handler safe)."""
        self._stop.set()

    def stop(self) -> None:
        """Disconnect, process and flush everything journaled, commit, merge every partition
        written into one file (``_close_partitions``), close (idempotent).

        If the store still fails, what it did not take stays in the journal (not
        checkpointed) and the next start replays it.
        """
        if not self._started:
            return
        self._started = False
        self._stop.set()
        for s in self.sessions:
            s.stop()
        self.fetcher.stop.set()
        self.fetcher.thread.join(5)
        if self._processor is not None:
            self._processor.join(120)
        self._close()
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
        journal, frame = self.journal, RecordKind.FRAME

        def sink(payload: bytes, recv_ns: int) -> None:
            journal.append(frame, payload, recv_ns=recv_ns, tag=tag)

        return sink

    def _journal_gaps(self, tag: str, gaps: list[Gap]) -> None:
        self.journal.append_many([
            (RecordKind.GAP, orjson.dumps({"symbol": g.symbol, "ts": g.ts, "recv_ns": g.recv_ns, "end_ts": g.end_ts,
                                           "stream": g.stream, "cause": g.cause, "detail": g.detail}), g.recv_ns, tag)
            for g in gaps
        ])

    def _on_oversized(self, size: int) -> None:
        self.stats.oversized += 1
        self.stats.bad_frames += 1

    # -- catching up from the journal ------------------------------------------------------
    def _catch_up(self) -> bool:
        """Process the journal from the checkpoint to its end through a fresh pipeline, then
        follow it live (records reach the queue from then on).

        Rows are stored in chunks of at most ``max_backlog_rows // 4``, reconciled (rows
        stored before a crash or a failed attempt are not stored twice). Returns False if
        the store failed: everything processed is then dropped from memory (the journal
        keeps it) and the caller retries later.
        """
        journal = self.journal
        journal.follow(None)
        self._live = False
        self._drain_queue()
        self._new_pipeline()
        restored = self._restore_books()
        self.writer.discard()
        self._last_pos = journal.committed if journal.committed.segment >= 0 else None
        self._last_recv = journal.checkpoint_meta.get("last_recv_ns")
        chunk = max(1, self.config.max_backlog_rows // 4)
        replayed, last = 0, None
        after, final = journal.committed, None
        while True:
            until = final if final is not None else journal.position
            n = 0
            for rec in read_records(journal.directory, after=after, until=until):
                self._process_safely(rec)
                n += 1
                if self._open_position is not None and rec.end <= self._open_position:
                    replayed += 1
                last = rec
                if len(self.batcher) + len(self.writer) >= chunk:
                    if not self._flush(reconcile=True):
                        return self._abandon(replayed)
                    if self._stop.is_set():  # stopping: what was stored is checkpointed, the rest waits
                        self.stats.replayed += replayed
                        self.writer.discard()
                        self._new_pipeline()
                        return False
            after = until
            if final is not None:
                break
            if n < 1000:  # close to the end: hand over to the queue atomically, read the rest
                final = journal.follow(self.queue.put)
        self.stats.replayed += replayed
        if replayed:
            log.warning("replayed %d journaled records not yet in the store", replayed)
        committed_recv = journal.checkpoint_meta.get("last_recv_ns")
        if last is not None and committed_recv is not None:
            for sym, b in self.books.items():
                if not b.synced and sym not in restored:
                    # The book's state at the checkpoint is gone (restart or a store outage):
                    # the replayed diffs could not be applied until a snapshot. Say so.
                    self.batcher.add(
                        Gap(sym, committed_recv, last.recv_ns, max(last.recv_ns, committed_recv + 1), GAP_STREAM, "resync",
                            "book state lost at restart; replayed diffs without a snapshot")
                    )
        self._live = True
        ok = self._flush(reconcile=True)
        if not ok:
            self._store_failed()
        return True

    def _abandon(self, replayed: int) -> bool:
        """The store failed while catching up: forget it all, the journal has it."""
        self.stats.replayed += replayed
        self.stats.catch_ups_abandoned += 1
        self._keep_probe()
        self.writer.discard()
        self._new_pipeline()
        self._store_failed()
        return False

    def _spill(self) -> None:
        """The backlog outgrew ``max_backlog_rows`` while the store fails: drop it from memory
        and stop queueing records; they are read back from the journal once the store works."""
        log.error("store backlog of %d rows exceeds max_backlog_rows=%d: keeping it in the journal only until the store recovers",
                  len(self.writer), self.config.max_backlog_rows)
        self.stats.spills += 1
        self.journal.follow(None)
        self._live = False
        self._drain_queue()
        self._keep_probe()
        self.writer.discard()
        self._new_pipeline()

    def _keep_probe(self) -> None:
        if self._probe is None:
            self._probe = self.writer.sample()

    def _drain_queue(self) -> None:
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                return

    def _store_works(self) -> bool:
        """Offer the kept probe rows to the store: cheap proof it works before a replay."""
        if self._probe is None:
            return True
        key, df = self._probe
        try:
            self.writer.append(key, df, source="live probe", position=None, reconcile=True)
        except Exception as exc:  # noqa: BLE001 - any failure: the store is still down
            self._health_error = f"{key[0]} {key[1]}: {type(exc).__name__}: {exc}"
            self.stats.store_errors += 1
            self._store_failed()
            return False
        self._probe = None
        return True

    def _restore_books(self) -> set[str]:
        """Continue the books from ``<journal>/books.json`` when it is not older than the
        checkpoint (it is written just before each commit); returns the symbols restored."""
        try:
            books, meta = self._book_states.load()
        except BookStateError as exc:  # a restart must work: the books start from snapshots
            log.error("%s; the books start from snapshots", exc)
            return set()
        pos = meta.get("position")
        if pos is None or Position(*pos) < self.journal.committed:
            return set()
        for market in self.feed.markets:  # parser state (spot quotes waiting, settlements): same file
            key = parser_key(type(self.feed), market)
            if key in books and hasattr(self.feed, "rest_parser"):
                try:
                    self.feed.rest_parser(market).restore_state(books[key])
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("parser state %s does not fit (%s); starting without it", key, exc)
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
        states = {book_key(s, cfg.book_levels, cfg.book_interval_ms): b.save_state() for s, b in self.books.items()}
        states.update({key: p.save_state() for key, p in self.feed.parsers().items()})  # quotes waiting, settlements
        self._book_states.save(
            states,
            meta={"position": list(pos)},
            merge=False,  # this collector is the file's only writer, and saves every book
        )

    # -- processing (processor thread, or the caller of start()) ----------------------------
    def _process_loop(self) -> None:
        sessions_done = False
        while True:
            if self._stop.is_set() and not sessions_done:
                # sessions and fetcher stop first; whatever they journaled is then processed
                sessions_done = all(not (s._thread and s._thread.is_alive()) for s in self.sessions) and not self.fetcher.thread.is_alive()
            if not self._live:
                if time.monotonic() >= self._next_flush or sessions_done:
                    if not (self._store_works() and self._catch_up()):
                        self._write_status_safely(running=not sessions_done)
                        if sessions_done:
                            break  # the journal keeps it all for the next start
                    continue
                self._stop.wait(0.05)
                continue
            try:
                rec = self.queue.get(timeout=0.05)
            except queue.Empty:
                rec = None
                if sessions_done:
                    break
            if rec is not None:
                self._process_safely(rec)
            if time.monotonic() >= self._next_flush:
                self._flush_safely()
        if self._live:
            for p in self.feed.parsers().values():  # spot quotes / partial books still waiting: receive time
                for ev in p.drain():
                    book = self.books.get(ev.symbol) if type(ev) is DepthSnapshot else None
                    if book is not None:
                        self.batcher.extend(self.feed.on_book_snapshot(book, ev))
                    elif type(ev) is not DepthSnapshot:
                        self.batcher.add(ev)
            # books not valid at the stop: their span so far goes to the gap ledger (and a
            # frame row still waiting comes out)
            for b in self.books.values():
                self.batcher.extend(b.close_outage())
            self._final_flush()
            if not len(self.writer) and not len(self.batcher):
                self._close_partitions()
        left = len(self.writer) + len(self.batcher)
        if left or not self._live:
            log.error("stopping with the store failing (%s): %s not stored stay in the journal; the next start replays them",
                      self._health_error, f"{left} processed rows" if self._live else "the records after the checkpoint")
        self._write_status_safely(running=False)

    def _final_flush(self) -> None:
        """The last flush at stop, retried for a few seconds if the store fails."""
        deadline = time.monotonic() + self.config.stop_retry_s
        while not self._flush(reconcile=False) and time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def _close_partitions(self) -> None:
        """At the stop, after everything is stored: every partition this run appended to
        becomes one file (``Table.compact``: the close rule of ``tickstore.compaction``),
        so a stopped collector leaves no pile of live segments (the first append of a later
        partition closes it too, but a collector stopped for good never makes one). A
        failure only leaves the segments (the next write's compaction closes earlier
        partitions); rows are committed either way."""
        for table, symbol in sorted(self.writer.written):
            try:
                self.stats.partitions_closed += self.store[table].compact(symbol)
            except Exception as exc:  # noqa: BLE001 - the data is committed; merging is housekeeping
                self.stats.store_errors += 1
                log.warning("closing the partitions of %s %s at the stop failed (its live files stay as they are): %s: %s",
                            table, symbol, type(exc).__name__, exc)
                return

    def _process_safely(self, rec: Record) -> None:
        """``_process``; a record it fails on is quarantined instead of stopping the pipeline."""
        try:
            self._process(rec)
        except Exception as exc:  # noqa: BLE001 - one record must not end the collection (or a restart)
            log.exception("processing journal record %s failed; quarantined", rec.end)
            self.stats.bad_frames += 1
            self._bad_frames.append((f"processing failed: {type(exc).__name__}: {exc}", rec))
            self._last_pos = rec.end
            self._last_recv = rec.recv_ns

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
            self._bad_frames.append((f"journal record tagged {tag!r}: not a {self.config.venue.value} connection", rec))
            log.warning("journal record tagged %r: not a %s connection; quarantined", tag, self.config.venue.value)
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
        keep_diffs = self.config.keep_diffs
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
                if keep_diffs:  # as route_events does for replay and import
                    self.batcher.add(ev)
                out = book.on_diff(ev)
                if out:
                    self.batcher.extend(out)
                if ev.ts > self._max_depth_ts.get(market, -1):
                    self._advance_clock(market, ev.ts)
                touched = book
            elif cls is DepthSnapshot:  # partial books, Bybit snapshots, Hyperliquid l2Book
                book = self.books.get(ev.symbol)
                if book is None:
                    continue
                self.batcher.extend(self.feed.on_book_snapshot(book, ev))
                if self.feed.advances_clock(ev) and ev.ts > self._max_depth_ts.get(market, -1):
                    self._advance_clock(market, ev.ts)
                touched = book
            else:
                self.batcher.add(ev)
        if touched is not None and touched.needs_snapshot:
            self._want_snapshot(touched)

    def _bad_frame(self, tag: str, market, prev_ns: int, rec: Record, exc: BadFrame) -> None:
        """Count a frame the parser refused; keep it in the quarantine (not venue errors)."""
        self.stats.bad_frames += 1
        if isinstance(exc, VenueErrorFrame):
            self.stats.venue_errors += 1
            log.warning("%s: venue error frame: %s", tag, exc)
            return
        self._bad_frames.append((f"{type(exc).__name__}: {exc}", rec))
        if isinstance(exc, UnknownStream):
            self.stats.unknown_streams += 1
            log.warning("%s: unknown stream: %s", tag, exc)
            return
        if isinstance(exc, OversizedFrame):
            self.stats.oversized += 1
        else:
            self.stats.malformed += 1
            if isinstance(exc, InvalidValue):
                self.stats.invalid_values += 1
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

    def _advance_clock(self, market, ts: int) -> None:
        """The market's newest depth time is now ``ts``: its quiet books get their grid rows
        up to the flush horizon (``book.flush_horizon``). Done as the data is processed, not
        at flushes, so the rows stored are a function of the journal alone: a replay of it
        stores the same ones (a flush, a connection gap's book reset or a stop may come at
        any point between two frames)."""
        self._max_depth_ts[market] = ts
        horizon = flush_horizon(ts)
        if horizon > self._horizon.get(market, -1):
            self._horizon[market] = horizon
            for b in self.book_market.get(market, ()):
                out = b.flush(horizon)
                if out:
                    self.batcher.extend(out)

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
    def _flush(self, *, reconcile: bool) -> bool:
        """Store everything processed and quarantine the bad frames, then move the checkpoint
        there. True if it all went; else what did not stays (the checkpoint does not move)."""
        self.writer.add(self.batcher.drain())
        pos = self._last_pos
        source = f"live journal {pos.segment}:{pos.offset}" if pos is not None else "live"
        ok = self.writer.write(source=source, position=pos, reconcile=reconcile)
        error = self.writer.error
        try:
            while self._bad_frames:
                reason, rec = self._bad_frames[0]
                if self.quarantine.frame(reason=reason, tag=rec.tag, recv_ns=rec.recv_ns, body=rec.body, position=rec.end):
                    self.stats.quarantined_frames += 1
                self._bad_frames.pop(0)
            self.quarantine.sync()
        except OSError as exc:
            ok, error = False, error or f"quarantine {self.quarantine.directory}: {exc}"
        if ok and pos is not None and self.journal.committed < pos:
            try:
                if self.books or self.feed.parsers():
                    self._save_books(pos)
                self.journal.commit(pos, meta={"last_recv_ns": self._last_recv})
            except (OSError, TickstoreError) as exc:
                ok, error = False, f"journal checkpoint: {type(exc).__name__}: {exc}"
        self.stats.flushes += 1
        if ok:
            self._store_ok()
        else:
            self._health_error = error
            self._store_failed()
        return ok

    def _flush_safely(self) -> None:
        """A live flush: never raises; spills the backlog to the journal when it grows too big."""
        try:
            ok = self._flush(reconcile=False)
        except Exception as exc:  # noqa: BLE001 - a bug in a flush must not end the collection
            log.exception("flush failed")
            self._health_error = f"flush: {type(exc).__name__}: {exc}"
            self._store_failed()
            ok = False
        if not ok and len(self.writer) + len(self._bad_frames) > self.config.max_backlog_rows:
            self._spill()
        self._write_status_safely(running=True)

    def _store_ok(self) -> None:
        if self._failing_since is not None:
            log.warning("the store works again after %.1f s", (time.time_ns() - self._failing_since) / 1e9)
        self._failing_since = None
        self._health_error = None
        self._store_backoff.attempt = 0
        self._next_flush = time.monotonic() + self.config.flush_interval_s

    def _store_failed(self) -> None:
        if self._failing_since is None:
            self._failing_since = time.time_ns()
        delay = self._store_backoff.next_delay()
        self._next_flush = time.monotonic() + delay
        log.warning("store attempt failed (%s); %d rows kept, next attempt in %.1f s", self._health_error, len(self.writer), delay)

    # -- health ------------------------------------------------------------------------------
    def health(self) -> dict:
        """``state`` ok or degraded, why (``error``), since when, and what waits to be stored."""
        errors = []
        if self._failing_since is not None:
            errors.append(f"store: {self._health_error}")
        for s in self.sessions:
            if s.last_error is not None and not s.connected.is_set() and not s.stopped:
                errors.append(f"connection {s.config.name}: {s.last_error}")
        j = self.journal
        return {
            "state": "degraded" if errors else "ok",
            "error": "; ".join(errors) or None,
            "store_failing_since_ns": self._failing_since,
            "catching_up": not self._live,
            "backlog_rows": len(self.writer) + len(self.batcher) if self.writer is not None else 0,
            "journal_backlog_bytes": j.bytes_after(j.committed) if j is not None else 0,
            "quarantined_frames": self.stats.quarantined_frames,
            "quarantined_rows": self.stats.rows_quarantined,
        }

    def status(self, *, running: bool = True) -> dict:
        """The health record written to ``config.status_path`` (see ``collectors.status``)."""
        now = time.time_ns()
        streams = [
            {"symbol": sym, "kind": kind, "events": n, "last_ts_ns": ts, "last_recv_ns": recv,
             "lag_ms": (recv - ts) / 1e6}
            for (sym, kind), (n, ts, recv) in sorted(self._stream_status.items())
        ]
        sess = {s.config.name: s for s in self.sessions}
        conns = []
        for tag, (n, recv) in sorted(self._conn_status.items()):
            s = sess.get(tag)
            conns.append({"connection": tag, "frames": n, "last_recv_ns": recv,
                          "connected": bool(s and s.connected.is_set()), "error": s.last_error if s else None})
        return {
            "version": 1, "name": self.config.name, "pid": os.getpid(), "running": running,
            "started_ns": self._started_ns, "updated_ns": now, "symbols": list(self.config.symbols),
            "journal": str(self.config.journal_dir), "streams": streams, "connections": conns,
            "health": self.health(), "stats": self.stats.as_dict(),
        }

    def write_status(self, *, running: bool = True) -> Path:
        """Atomically replace the status file (temp file in the same folder, then rename)."""
        path = self.config.status_path
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        try:
            tmp.write_bytes(orjson.dumps(self.status(running=running), option=orjson.OPT_INDENT_2))
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    def _write_status_safely(self, *, running: bool) -> None:
        try:
            self.write_status(running=running)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.config.status_path, exc)


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
