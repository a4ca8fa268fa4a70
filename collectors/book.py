"""Full L2 order book from a REST snapshot plus buffered diffs, sampled onto a time grid.

API used by the live session and the replayer::

    book = BookBuilder("binance:BTC/USDT:USDT", Market.USDM, levels=5, interval_ms=100)
    events = book.on_diff(diff)          # DepthDiff -> [BookTop..., Gap...]; buffers while unsynced
    if book.needs_snapshot:              # the caller fetches GET /depth and hands it over
        events += book.on_snapshot(snap) # DepthSnapshot -> [BookTop..., Gap...]
    events += book.on_partial(snap)      # depth5/10/20 frames, l2Book: each is the whole top-N book
    events += book.load_snapshot(snap)   # a snapshot frame that resets the book (Bybit)
    state = book.save_state()            # levels, ids, grid: a JSON-able dict ...
    book.restore_state(state)            # ... that the next run continues from exactly

State machine (Binance's documented procedure; ids are ``U`` = first, ``u`` = last,
``pu`` = previous ``u`` of the stream)::

      AWAITING_SNAPSHOT --on_snapshot--> BRIDGING --first diff spanning it--> SYNCED
            ^   (diffs buffered)            |  (diffs older than the snapshot dropped)   |
            |                               | snapshot older than every buffered diff    |
            +-------------------------------+   (needs a fresh one)                       |
            +---- sequence break / crossed book: Gap(cause="sequence_break") -------------+

    spot     drop u <= lastUpdateId; first applied U <= lastUpdateId+1 <= u; then every event
             with U <= book u + 1 <= u (ignore u <= book u; U > book u + 1 is a break)
    futures  drop u <  lastUpdateId; first applied U <= lastUpdateId <= u;   then pu == prev u

Spot: https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams ("How to
manage a local order book correctly": "If the event u is <= the update ID of your local
order book, ignore the event. If the event U is > the update ID of your local order book
+ 1, something went wrong"); an event overlapping ids already applied carries absolute
quantities and is applied. USD-M / COIN-M: https://developers.binance.com/docs/derivatives/
usds-margined-futures/websocket-market-streams/How-to-manage-a-local-order-book-correctly
("Drop any event where u is < lastUpdateId", "The first processed event should have U <=
lastUpdateId AND u >= lastUpdateId", "each new event's pu should be equal to the previous
event's u"). Bybit (``exchanges.bybit``) uses the spot rule with ``U == u``.

A diff whose ``u`` is not newer than the book (a duplicate) is ignored and counted. A book
whose best bid reaches its best ask is never output: it is treated as a sequence break.
When the book is synced again after a break (or ``reset``) a ``Gap(cause="resync")``
covers the span without book rows: ``[last good diff time, first diff after resync)``.

A book loaded from a snapshot *frame* (``on_partial``, ``load_snapshot``) resumes the grid
at the first grid point at or after the snapshot's time, and writes the ``resync`` gap of
an outage there. A book that is not valid when the data ends (no snapshot ever, or a break
with no snapshot after it) is closed by ``close_outage``: a ``Gap(cause="unsynced")`` over
``[start of the outage, last update seen]``; the span after it is covered by the next run's
``resync`` gap, so the ledger covers every span without a book exactly once.

Persistence (``save_state``/``restore_state``): the whole book, the last update id, the
last exchange/receive time, the next grid point and an open outage, so a later run (the
next day's file, a collector restart) continues the book exactly, with the same rows as one
run over everything. A restored book first checks that the data continues it: an event
older than the state (an update id and time not after it) is either skipped as already
applied (``older="skip"``: a collector replaying its journal from a checkpoint the state
is newer than) or makes the book forget the state (``older="discard"``: an earlier span
replayed again, which then builds its own book).

Sampling: a ``BookTop`` row of the top ``levels`` per grid point ``k * interval_ms`` of
exchange time. The row at grid time ``g`` is the book after every diff with ``ts <= g``;
it is emitted when the first diff with ``ts > g`` arrives (or at ``flush(until_ns)``), so a
row never looks ahead. Missing levels are NaN. Prices are floats parsed from the venue's
decimal strings: equal strings give equal floats, so they are exact dict keys.
"""

from __future__ import annotations

import enum
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass

from collectors.events import BookTop, DepthDiff, DepthSnapshot, Gap, Quote
from collectors.exchanges.binance import Market

__all__ = ["BookBuilder", "BookState", "BookStats", "book_table", "route_events", "flush_horizon", "GAP_STREAM",
           "STATE_FORMAT", "FLUSH_LAG_NS", "FLUSH_EVERY_NS"]

GAP_STREAM = "depth"  # the ``stream`` of every Gap a book emits
STATE_FORMAT = 1  # version of the ``save_state`` dict
FLUSH_LAG_NS = 1_000_000_000  # quiet books get their grid rows this far behind the newest depth time
FLUSH_EVERY_NS = 1_000_000_000  # ... in steps of this much exchange time


def flush_horizon(depth_ts: int) -> int:
    """The exchange time before which every book of a connection group whose newest depth
    frame is at ``depth_ts`` gets its grid rows (``BookBuilder.flush``), quiet or not.

    One rule for the collector (at each flush, whenever it comes), ``tickstore replay`` and
    the importers (as the data goes by), so that what is stored depends on the data alone,
    never on when a flush ran: ``FLUSH_LAG_NS`` behind the newest depth frame of the group
    (frames of different symbols on one connection are not strictly in time order: a
    book's row is not taken before its own late frame can arrive), rounded down to
    ``FLUSH_EVERY_NS``. A book's own frames still sample its grid up to their time at once.
    """
    return (depth_ts - FLUSH_LAG_NS) // FLUSH_EVERY_NS * FLUSH_EVERY_NS
_NAN = float("nan")


def book_table(levels: int) -> str:
    """Table that top-``levels`` rows go to: ``book`` for 5 levels, ``book_<N>`` otherwise."""
    if not 1 <= levels <= 500:
        raise ValueError(f"book levels must be 1..500, got {levels}")
    return "book" if levels == 5 else f"book_{levels}"


def route_events(events: list, batcher, book_of, *, keep_diffs: bool = False, on_snapshot=None):
    """Send one frame's parsed events where they belong; the live collector and the replayer
    can share this routing.

    - ``DepthDiff`` -> ``book_of(diff).on_diff(diff)``; with ``keep_diffs`` the diff itself
      also goes to the batcher (table ``book_diffs``), book or not;
    - ``DepthSnapshot`` (a snapshot frame: Binance partial book, Bybit snapshot, Hyperliquid
      l2Book) -> ``on_snapshot(book, snap)`` if given, else ``book.on_partial(snap)``;
    - anything else -> ``batcher.add``.

    What the book returns (``BookTop`` rows, ``Gap``) goes to ``batcher``. ``book_of(event)``
    returns the ``BookBuilder`` of the event's symbol, or ``None`` to drop the event (no
    book is kept for that symbol); it is called before the book sees the event, so it may
    first hand the book something else (the replayer loads a REST snapshot there) or note
    the event's time. Returns the last book a diff or snapshot went to, or ``None`` (the
    caller may check its ``needs_snapshot``).
    """
    touched = None
    for ev in events:
        cls = type(ev)
        if cls is DepthDiff:
            book = book_of(ev)
            if book is not None:
                out = book.on_diff(ev)
                if out:
                    batcher.extend(out)
                touched = book
            if keep_diffs:
                batcher.add(ev)
        elif cls is DepthSnapshot:
            book = book_of(ev)
            if book is not None:
                out = book.on_partial(ev) if on_snapshot is None else on_snapshot(book, ev)
                if out:
                    batcher.extend(out)
                touched = book
        else:
            batcher.add(ev)
    return touched


class BookState(enum.Enum):
    AWAITING_SNAPSHOT = "awaiting_snapshot"  # no valid book; diffs buffered; needs a snapshot
    BRIDGING = "bridging"  # snapshot loaded; waiting for the diff that spans it
    SYNCED = "synced"  # book valid; every diff is checked against the previous one


@dataclass
class BookStats:
    """Counters of one book (mutable; read them, do not set them)."""

    diffs: int = 0  # diffs received
    applied: int = 0  # diffs applied to a valid book
    dropped: int = 0  # buffered diffs older than the snapshot, discarded as documented
    duplicates: int = 0  # diffs not newer than the book, ignored
    overflow: int = 0  # buffered diffs discarded because the buffer was full
    snapshots: int = 0  # snapshots loaded
    snapshots_ignored: int = 0  # snapshots handed over while synced, or crossed
    stale_snapshots: int = 0  # snapshots older than every buffered diff (need a new one)
    breaks: int = 0  # sequence breaks (crossed books included)
    crossed: int = 0  # of which: best bid >= best ask after a diff
    resyncs: int = 0  # times the book became valid again after a break / reset
    rows: int = 0  # BookTop rows emitted


class BookBuilder:
    """One symbol's L2 book: snapshot + diffs -> ``BookTop`` rows on a grid, ``Gap`` rows.

    Parameters
    ----------
    symbol, market:
        Tickstore symbol and its Binance market (the sequencing rule differs per market).
    levels:
        Depth of the emitted rows (``book`` table for 5, ``book_<N>`` otherwise).
    interval_ms:
        Grid step in exchange time.
    max_buffer:
        Diffs kept while waiting for a snapshot; the oldest go first (a snapshot fetched
        now only needs the recent ones).
    max_fill_ms:
        Longest silence filled with grid rows; beyond it a ``Gap(cause="stale")`` is
        written instead (guards against a corrupt timestamp emitting millions of rows).
    quotes:
        Also emit a ``Quote`` (table ``quotes``) whenever an update changes the best bid or
        ask (price or size), stamped with that update's time and id: the quotes of a venue
        whose best bid/offer stream *is* its book (Bybit's ``orderbook.1``).
    rows:
        ``"grid"`` (rows on the grid), ``"frames"`` (a row per snapshot frame - a partial
        book, an l2Book - at the frame's time, and no grid) or ``"both"``. A frame row is
        the book after every frame of its time: it is emitted when a frame of a later time
        arrives, at ``flush`` past it, or at ``close_outage``; ``save_state`` keeps it. A
        grid row at a frame's time is that same row (the store keeps one of identical rows).
        ``"none"``: no book rows at all, a book kept for its quotes (``quotes=True``) and gaps.
    """

    def __init__(
        self,
        symbol: str,
        market: Market,
        *,
        levels: int = 5,
        interval_ms: int = 100,
        max_buffer: int = 10_000,
        max_fill_ms: int = 3_600_000,
        quotes: bool = False,
        rows: str = "grid",
    ):
        book_table(levels)  # validates
        if rows not in ("grid", "frames", "both", "none"):
            raise ValueError(f"rows must be 'grid', 'frames', 'both' or 'none', got {rows!r}")
        if interval_ms <= 0:
            raise ValueError(f"interval_ms must be positive, got {interval_ms}")
        if max_buffer <= 0:
            raise ValueError(f"max_buffer must be positive, got {max_buffer}")
        self.symbol = symbol
        self.market = Market(market)
        self.levels = int(levels)
        self.interval_ns = int(interval_ms) * 1_000_000
        self.max_fill_ns = int(max_fill_ms) * 1_000_000
        self.stats = BookStats()
        self.state = BookState.AWAITING_SNAPSHOT
        self.update_id = -1  # last applied u (or the snapshot's lastUpdateId while bridging)
        self._futures = self.market.is_futures
        self._buffer: deque[DepthDiff] = deque(maxlen=max_buffer)
        self._bids: dict[float, float] = {}
        self._asks: dict[float, float] = {}
        # Sorted price lists with the best price LAST on both sides, so that the busy end
        # of the book is the cheap end of a list (insert/delete near the best price moves
        # few pointers): bids ascending, asks NEGATED ascending (best ask = -_ask_neg[-1]).
        self._bid_px: list[float] = []
        self._ask_neg: list[float] = []
        self._last_ts = -1  # exchange time of the last applied diff
        self._last_recv = -1
        self._next_grid = -1
        self._outage_start: int | None = None  # set by a break/reset, cleared by the resync Gap
        # while not synced: exchange time / update id / receive time of the newest update
        # seen, and the time of the first one if the book was never valid (close_outage)
        self._seen_ts = -1
        self._seen_id = -1
        self._seen_recv = -1
        self._first_unsynced: int | None = None
        self._snap_ts = -1  # exchange time of the snapshot a bridging book waits with
        self._restored: str | None = None  # "skip"/"discard" until an event newer than the state
        self._quotes = bool(quotes)
        self._top: tuple | None = None  # best (bid px, bid qty, ask px, ask qty) last quoted
        self.rows = rows
        self._grid = rows in ("grid", "both")
        self._frames = rows in ("frames", "both")
        self._pending_row: BookTop | None = None  # frame rows: the newest, until its time is over

    # -- public --------------------------------------------------------------------------------
    @property
    def needs_snapshot(self) -> bool:
        """True when only a (new) REST snapshot can make the book valid."""
        return self.state is BookState.AWAITING_SNAPSHOT

    @property
    def synced(self) -> bool:
        return self.state is BookState.SYNCED

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def top(self, n: int | None = None) -> tuple[list, list, list, list]:
        """(bid_px, bid_qty, ask_px, ask_qty) of the best ``n`` levels, best first, no padding."""
        n = self.levels if n is None else n
        bids = self._bid_px[: -n - 1 : -1]
        asks = [-p for p in self._ask_neg[: -n - 1 : -1]]
        return bids, [self._bids[p] for p in bids], asks, [self._asks[p] for p in asks]

    def depth(self) -> tuple[int, int]:
        """Number of (bid, ask) levels in the book."""
        return len(self._bid_px), len(self._ask_neg)

    def on_diff(self, diff: DepthDiff) -> list:
        """Apply (or buffer) one diff; returns ``BookTop`` rows due before it and any ``Gap``."""
        self.stats.diffs += 1
        if self._restored is not None and self._older_than_state(diff.ts, diff.update_id):
            return []
        if self.state is BookState.SYNCED:
            if self._futures:
                ok = diff.prev_update_id == self.update_id
            else:  # spot: any event with U <= book id + 1 < u + 1 (it may overlap what was applied)
                ok = diff.first_update_id <= self.update_id + 1 <= diff.update_id
            if ok:
                out = self._sample_until(diff.ts) if self._grid and diff.ts > self._next_grid else []
                return out + self._apply(diff)
            if diff.update_id <= self.update_id:
                self.stats.duplicates += 1
                return []
            expected = f"pu={self.update_id}" if self._futures else f"U={self.update_id + 1}"
            got = f"pu={diff.prev_update_id}" if self._futures else f"U={diff.first_update_id}"
            return self._break(diff, f"expected {expected}, got {got} (u={diff.update_id})", keep=True)
        if len(self._buffer) == self._buffer.maxlen:
            self.stats.overflow += 1
        self._buffer.append(diff)
        self._saw(diff.ts, diff.update_id, diff.recv_ns)
        if self.state is BookState.BRIDGING:
            return self._bridge()
        return []

    def break_chain(self, diff: DepthDiff, detail: str) -> list:
        """The venue says the update chain restarted with ``diff`` (Bybit's ``u=1``): a synced
        book becomes invalid (``sequence_break`` gap) until the next snapshot; a book that
        is not synced takes it as any diff (buffered until a snapshot supersedes it)."""
        if self.state is not BookState.SYNCED:
            return self.on_diff(diff)
        self.stats.diffs += 1
        return self._break(diff, detail, keep=False)

    def on_snapshot(self, snap: DepthSnapshot) -> list:
        """Load a REST snapshot (``update_id`` = ``lastUpdateId``) and replay buffered diffs.

        Ignored (and counted) while the book is synced: the diff stream is authoritative.
        """
        if self._restored is not None and self._older_than_state(snap.ts, snap.update_id):
            return []
        if self.state is BookState.SYNCED:
            self.stats.snapshots_ignored += 1
            return []
        bids = {p: q for p, q in snap.bids if q != 0.0}
        asks = {p: q for p, q in snap.asks if q != 0.0}
        if bids and asks and max(bids) >= min(asks):
            self.stats.snapshots_ignored += 1
            return []
        self.stats.snapshots += 1
        self._bids, self._asks = bids, asks
        self._bid_px, self._ask_neg = sorted(bids), sorted([-p for p in asks])
        self.update_id = snap.update_id
        self._snap_ts = snap.ts
        self.state = BookState.BRIDGING
        return self._bridge()

    def on_partial(self, snap: DepthSnapshot) -> list:
        """A partial-book frame (depth5/10/20, Hyperliquid l2Book): replaces the whole book,
        no sequencing; a frame not newer than the book (``update_id``) is a duplicate."""
        if self._restored is not None and self._older_than_state(snap.ts, snap.update_id):
            return []
        if self.state is BookState.SYNCED and snap.update_id <= self.update_id:
            self.stats.duplicates += 1
            return []
        return self._load(snap)

    def load_snapshot(self, snap: DepthSnapshot, *, broken: bool = False) -> list:
        """A snapshot frame that *is* the book (Bybit): replaces it whatever its id.

        Diffs buffered before it are older and dropped; later diffs chain from its
        ``update_id``. ``broken``: the updates between the book and this snapshot are not
        all known (the venue restarted its chain, or skipped ids), so the span since the
        last update is a ``resync`` gap without rows instead of rows of the old book.
        """
        if self._restored is not None and self._older_than_state(snap.ts, snap.update_id):
            return []
        self.stats.snapshots += 1
        if broken and self.state is BookState.SYNCED:
            self._outage_start = self._last_ts
            self._invalidate()
        return self._load(snap)

    def _load(self, snap: DepthSnapshot) -> list:
        out = []
        if self.state is BookState.SYNCED:
            if self._grid and snap.ts > self._next_grid:
                out = self._sample_until(snap.ts)
        else:
            # the grid resumes at the snapshot: the point at its time (if it is on the grid) first
            self._next_grid = -(-snap.ts // self.interval_ns) * self.interval_ns
            self.state = BookState.SYNCED
        self._buffer.clear()  # a whole book supersedes every diff buffered before it
        self._bids = {p: q for p, q in snap.bids if q != 0.0}
        self._asks = {p: q for p, q in snap.asks if q != 0.0}
        self._bid_px, self._ask_neg = sorted(self._bids), sorted([-p for p in self._asks])
        self.update_id, self._last_ts, self._last_recv = snap.update_id, snap.ts, snap.recv_ns
        self._first_unsynced = None
        if self._outage_start is not None:
            start, self._outage_start = self._outage_start, None
            self.stats.resyncs += 1
            out.append(
                Gap(self.symbol, start, snap.recv_ns, max(snap.ts, start + 1), GAP_STREAM, "resync",
                    f"book whole again from a snapshot frame, update id {snap.update_id}")
            )
        if self._frames:
            row = self._row(snap.ts)
            pending, self._pending_row = self._pending_row, row
            if pending is not None and pending.ts != row.ts:  # else the newer frame of that time replaces it
                out.append(pending)
                self.stats.rows += 1
        if self._quotes:
            out += self._quote()
        return out

    def flush(self, until_ns: int) -> list:
        """Rows for grid points before ``until_ns`` (exchange time known to be reached).

        Call it with ``flush_horizon`` of the newest depth time of the book's connection
        group, so a quiet book still gets its rows (the collector at each flush, the
        replayer as the data goes by). The grid points of a quiet book's last 1-2 s are
        therefore sampled only when later data comes (the next run, from the saved state).
        """
        out = []
        if self._grid and self.state is BookState.SYNCED and until_ns > self._next_grid:
            out = self._sample_until(until_ns)
        if self._pending_row is not None and until_ns > self._pending_row.ts:
            out.append(self._pending_row)
            self._pending_row = None
            self.stats.rows += 1
        return out

    def reset(self) -> None:
        """Forget the book (e.g. after a reconnect); the next snapshot resyncs it."""
        if self.state is BookState.SYNCED:
            self._outage_start = self._last_ts
        self._invalidate()
        self._buffer.clear()

    def close_outage(self) -> list:
        """At the end of the data (a replay's end, a collector's stop): the ``Gap`` of the
        span this book had no valid state, ``[start of the outage, newest update seen]``.

        ``[]`` when the book is synced or saw nothing. Afterwards the open outage starts at
        the end of that gap, so a later ``resync`` gap (next run) continues it without
        overlap. A frame row still waiting (``rows="frames"``) comes out too: the data ends.
        """
        out = []
        if self._pending_row is not None:
            out.append(self._pending_row)
            self._pending_row = None
            self.stats.rows += 1
        if self.state is BookState.SYNCED:
            return out
        if self._outage_start is not None:
            start, why = self._outage_start, f"chain broken after update id {self.update_id}, no snapshot since"
        elif self._first_unsynced is not None:
            start, why = self._first_unsynced, "no snapshot to start the book from"
        else:
            return []
        end = max(self._seen_ts, start)
        self._outage_start, self._first_unsynced = end, None
        return out + [Gap(self.symbol, start, max(self._seen_recv, 0), max(end, start + 1), GAP_STREAM, "unsynced",
                    f"no valid book until the end of the data: {why}; last update id seen {self._seen_id}")]

    # -- persistence ---------------------------------------------------------------------------
    def save_state(self) -> dict:
        """Everything a later run needs to continue this book exactly (JSON-able).

        A synced book keeps every level; a book that is not valid keeps only its open
        outage (buffered diffs are not kept: the next snapshot brings newer ones), except a
        book loaded from a snapshot and waiting for the diff that spans it (``BRIDGING``):
        it keeps the snapshot, so the next run's diffs bridge it (a snapshot file imported
        before its update file).
        """
        synced = self.state is BookState.SYNCED
        bridging = self.state is BookState.BRIDGING
        d = {
            "format": STATE_FORMAT, "symbol": self.symbol, "market": self.market.value, "levels": self.levels,
            "interval_ns": self.interval_ns, "synced": synced,
            "update_id": self.update_id if synced else self._seen_id,
            "last_ts": self._last_ts if synced else max(self._seen_ts, self._snap_ts if bridging else -1),
            "last_recv": self._last_recv if synced else self._seen_recv,
            "next_grid": self._next_grid,
            "outage_start": self._outage_start if self._outage_start is not None else self._first_unsynced,
        }
        if bridging:
            d["bridging"] = {"update_id": self.update_id, "ts": self._snap_ts}
        if synced or bridging:
            d["bids"] = [[p, self._bids[p]] for p in self._bid_px]
            d["asks"] = [[-n, self._asks[-n]] for n in self._ask_neg]
        r = self._pending_row
        if r is not None:  # a frame row not emitted yet (rows="frames"/"both")
            d["pending_row"] = [r.ts, r.recv_ns, r.update_id, r.bid_px, r.bid_qty, r.ask_px, r.ask_qty]
        return d

    def restore_state(self, d: dict, *, older: str = "discard") -> None:
        """Continue from ``save_state``'s dict (of this symbol, market and grid).

        ``older``: what an event that does not come after the state means, ``"discard"``
        (the data is an earlier span again: forget the state) or ``"skip"`` (already
        applied: ignore it). Raises ``ValueError`` for a dict of another book or format.
        """
        if older not in ("discard", "skip"):
            raise ValueError(f"older must be 'discard' or 'skip', got {older!r}")
        want = (STATE_FORMAT, self.symbol, self.market.value, self.levels, self.interval_ns)
        got = tuple(d.get(k) for k in ("format", "symbol", "market", "levels", "interval_ns"))
        if got != want:
            raise ValueError(f"book state of (format, symbol, market, levels, interval_ns)={got} does not fit {want}")
        self._invalidate()
        self._buffer.clear()
        self._outage_start, self._first_unsynced = None, None
        self._next_grid = int(d["next_grid"])
        if d["synced"]:
            self._bids = {float(p): float(q) for p, q in d["bids"]}
            self._asks = {float(p): float(q) for p, q in d["asks"]}
            self._bid_px, self._ask_neg = sorted(self._bids), sorted([-p for p in self._asks])
            self.state = BookState.SYNCED
            self.update_id, self._last_ts, self._last_recv = int(d["update_id"]), int(d["last_ts"]), int(d["last_recv"])
            self._top = self._best() if self._quotes else None  # what the last quote said
        else:
            self.update_id = -1
            self._seen_id, self._seen_ts, self._seen_recv = int(d["update_id"]), int(d["last_ts"]), int(d["last_recv"])
            if d["outage_start"] is not None:
                self._outage_start = int(d["outage_start"])
            bridge = d.get("bridging")
            if bridge is not None:  # a snapshot still waiting for the diff that spans it
                self._bids = {float(p): float(q) for p, q in d["bids"]}
                self._asks = {float(p): float(q) for p, q in d["asks"]}
                self._bid_px, self._ask_neg = sorted(self._bids), sorted([-p for p in self._asks])
                self.update_id, self._snap_ts = int(bridge["update_id"]), int(bridge["ts"])
                self.state = BookState.BRIDGING
        r = d.get("pending_row")
        self._pending_row = None if r is None or not self._frames else BookTop(
            self.symbol, int(r[0]), int(r[1]), int(r[2]), *([_NAN if x is None else float(x) for x in side] for side in r[3:7])
        )  # a missing level is NaN, which orjson writes as null
        self._restored = older

    def _older_than_state(self, ts: int, update_id: int) -> bool:
        """Whether a restored book must not take this event (see ``restore_state``)."""
        synced = self.state is BookState.SYNCED
        mark_ts, mark_id = (self._last_ts, self.update_id) if synced else (self._seen_ts, self._seen_id)
        if ts > mark_ts or update_id > mark_id:
            self._restored = None  # the data continues the state
            return False
        if self._restored == "skip":
            self.stats.duplicates += 1
            return True
        # an earlier span again: it builds its own book from its own snapshot
        self._restored = None
        self._invalidate()
        self._buffer.clear()
        self.update_id, self._outage_start, self._first_unsynced = -1, None, None
        self._seen_ts = self._seen_id = self._seen_recv = -1
        return False

    def _saw(self, ts: int, update_id: int, recv_ns: int) -> None:
        if ts > self._seen_ts:
            self._seen_ts, self._seen_recv = ts, recv_ns
        if update_id > self._seen_id:
            self._seen_id = update_id
        if self._first_unsynced is None and self._outage_start is None:
            self._first_unsynced = ts

    # -- internals -------------------------------------------------------------------------------
    def _invalidate(self) -> None:
        self.state = BookState.AWAITING_SNAPSHOT
        self._top = None  # the first quote after a resync is written whatever it says
        self._bids, self._asks, self._bid_px, self._ask_neg = {}, {}, [], []

    def _break(self, diff: DepthDiff, detail: str, *, keep: bool) -> list:
        self.stats.breaks += 1
        start = self._last_ts
        self._outage_start = start
        gap = Gap(
            self.symbol, start, diff.recv_ns, max(diff.ts, start), GAP_STREAM, "sequence_break",
            f"{detail}; last good u={self.update_id}",
        )
        self._invalidate()
        self._buffer.clear()
        self._saw(diff.ts, diff.update_id, diff.recv_ns)
        if keep:  # the breaking diff is newer than anything applied: a new snapshot may need it
            self._buffer.append(diff)
        return [gap]

    def _bridge(self) -> list:
        """Drop buffered diffs older than the snapshot; apply the spanning one and the rest."""
        buf = self._buffer
        snap_id = self.update_id
        while buf:
            d = buf[0]
            if self._futures:
                old, spans = d.update_id < snap_id, d.first_update_id <= snap_id
            else:
                old, spans = d.update_id <= snap_id, d.first_update_id <= snap_id + 1
            if old:
                buf.popleft()
                self.stats.dropped += 1
                continue
            if not spans:  # updates between the snapshot and this diff are lost for good
                self.stats.stale_snapshots += 1
                self._invalidate()
                return []
            buf.popleft()
            pending = list(buf)
            buf.clear()
            self.state = BookState.SYNCED
            self._first_unsynced = None
            self._next_grid = -(-d.ts // self.interval_ns) * self.interval_ns
            out = self._apply(d)
            if self._outage_start is not None and self.state is BookState.SYNCED:
                self.stats.resyncs += 1
                out.append(
                    Gap(
                        self.symbol, self._outage_start, d.recv_ns, max(d.ts, self._outage_start), GAP_STREAM,
                        "resync", f"book resynced from snapshot lastUpdateId={snap_id} at u={d.update_id}",
                    )
                )
                self._outage_start = None
            for p in pending:
                out += self.on_diff(p)
                self.stats.diffs -= 1  # already counted when buffered
            return out
        return []

    def _apply(self, d: DepthDiff) -> list:
        # Hot path (~70 levels per futures diff, 3/4 of them changing an existing level):
        # everything bound to locals.
        find, insert = bisect_left, insort
        bids, bid_px = self._bids, self._bid_px
        for px, qty in d.bids:
            if qty == 0.0:
                if bids.pop(px, None) is not None:
                    del bid_px[find(bid_px, px)]
            else:
                if px not in bids:
                    insert(bid_px, px)
                bids[px] = qty
        asks, ask_neg = self._asks, self._ask_neg
        for px, qty in d.asks:
            if qty == 0.0:
                if asks.pop(px, None) is not None:
                    del ask_neg[find(ask_neg, -px)]
            else:
                if px not in asks:
                    insert(ask_neg, -px)
                asks[px] = qty
        self.stats.applied += 1
        self.update_id, self._last_ts, self._last_recv = d.update_id, d.ts, d.recv_ns
        if bid_px and ask_neg and bid_px[-1] >= -ask_neg[-1]:
            self.stats.crossed += 1
            detail = f"crossed book after u={d.update_id}: best bid {bid_px[-1]} >= best ask {-ask_neg[-1]}"
            return self._break(d, detail, keep=False)
        if self._quotes:
            return self._quote()
        return []

    def _best(self) -> tuple:
        nan = _NAN
        b = self._bid_px[-1] if self._bid_px else None
        a = -self._ask_neg[-1] if self._ask_neg else None
        return (
            nan if b is None else b, nan if b is None else self._bids[b],
            nan if a is None else a, nan if a is None else self._asks[a],
        )

    def _quote(self) -> list:
        """A ``Quote`` of the best levels if they changed since the last one (``quotes=True``)."""
        top = self._best()
        if top == self._top:  # an empty side is the one _NAN object: equal by identity
            return []
        self._top = top
        return [Quote(self.symbol, self._last_ts, self._last_recv, self.update_id, *top)]

    def _sample_until(self, t: int) -> list:
        """``BookTop`` rows for grid points ``g`` with ``next_grid <= g < t``."""
        g, step = self._next_grid, self.interval_ns
        if t - g > self.max_fill_ns:
            skip_to = -(-t // step) * step
            self._next_grid = skip_to
            return [
                Gap(self.symbol, g, self._last_recv, t, GAP_STREAM, "stale",
                    f"no depth update for {(t - g) / 1e9:.1f}s after u={self.update_id}; grid not filled")
            ]
        first = self._row(g)
        out = [first]
        g += step
        sym, recv, uid, bids, bq, asks, aq = first.symbol, first.recv_ns, first.update_id, first.bid_px, first.bid_qty, first.ask_px, first.ask_qty
        while g < t:  # rows share the level lists: nothing downstream mutates them
            out.append(BookTop(sym, g, recv, uid, bids, bq, asks, aq))
            g += step
        self._next_grid = g
        self.stats.rows += len(out)
        return out

    def _row(self, ts: int) -> BookTop:
        """The top ``levels`` of the book as a row at ``ts`` (missing levels NaN)."""
        n = self.levels
        bids = self._bid_px[: -n - 1 : -1]
        asks = [-p for p in self._ask_neg[: -n - 1 : -1]]
        bq = [self._bids[p] for p in bids]
        aq = [self._asks[p] for p in asks]
        if len(bids) < n:
            pad = [_NAN] * (n - len(bids))
            bids, bq = bids + pad, bq + pad
        if len(asks) < n:
            pad = [_NAN] * (n - len(asks))
            asks, aq = asks + pad, aq + pad
        return BookTop(self.symbol, ts, self._last_recv, self.update_id, bids, bq, asks, aq)
