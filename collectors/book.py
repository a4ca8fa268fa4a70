"""Full L2 order book from a REST snapshot plus buffered diffs, sampled onto a time grid.

API used by the live session and the replayer::

    book = BookBuilder("binance:BTC/USDT:USDT", Market.USDM, levels=5, interval_ms=100)
    events = book.on_diff(diff)          # DepthDiff -> [BookTop..., Gap...]; buffers while unsynced
    if book.needs_snapshot:              # the caller fetches GET /depth and hands it over
        events += book.on_snapshot(snap) # DepthSnapshot -> [BookTop..., Gap...]
    events += book.on_partial(snap)      # depth5/10/20 frames: each is the whole top-N book

State machine (Binance's documented procedure; ids are ``U`` = first, ``u`` = last,
``pu`` = previous ``u`` of the stream)::

      AWAITING_SNAPSHOT --on_snapshot--> BRIDGING --first diff spanning it--> SYNCED
            ^   (diffs buffered)            |  (diffs older than the snapshot dropped)   |
            |                               | snapshot older than every buffered diff    |
            +-------------------------------+   (needs a fresh one)                       |
            +---- sequence break / crossed book: Gap(cause="sequence_break") -------------+

    spot     drop u <= lastUpdateId; first applied U <= lastUpdateId+1 <= u; then U == prev u + 1
    futures  drop u <  lastUpdateId; first applied U <= lastUpdateId <= u;   then pu == prev u

A diff whose ``u`` is not newer than the book (a duplicate) is ignored and counted. A book
whose best bid reaches its best ask is never output: it is treated as a sequence break.
When the book is synced again after a break (or ``reset``) a ``Gap(cause="resync")``
covers the span without book rows: ``[last good diff time, first diff after resync)``.

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

from collectors.events import BookTop, DepthDiff, DepthSnapshot, Gap
from collectors.exchanges.binance import Market

__all__ = ["BookBuilder", "BookState", "BookStats", "book_table", "route_events", "GAP_STREAM"]

GAP_STREAM = "depth"  # the ``stream`` of every Gap a book emits
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
    ):
        book_table(levels)  # validates
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
        if self.state is BookState.SYNCED:
            if self._futures:
                ok = diff.prev_update_id == self.update_id
            else:
                ok = diff.first_update_id == self.update_id + 1
            if ok:
                out = self._sample_until(diff.ts) if diff.ts > self._next_grid else []
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
        if self.state is BookState.BRIDGING:
            return self._bridge()
        return []

    def on_snapshot(self, snap: DepthSnapshot) -> list:
        """Load a REST snapshot (``update_id`` = ``lastUpdateId``) and replay buffered diffs.

        Ignored (and counted) while the book is synced: the diff stream is authoritative.
        """
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
        self.state = BookState.BRIDGING
        return self._bridge()

    def on_partial(self, snap: DepthSnapshot) -> list:
        """A partial-book frame (depth5/10/20): replaces the whole book, no sequencing."""
        if self.state is BookState.SYNCED and snap.update_id <= self.update_id:
            self.stats.duplicates += 1
            return []
        out = []
        if self.state is BookState.SYNCED:
            if snap.ts > self._next_grid:
                out = self._sample_until(snap.ts)
        else:
            self._next_grid = -(-snap.ts // self.interval_ns) * self.interval_ns
            self.state = BookState.SYNCED
        self._bids = {p: q for p, q in snap.bids if q != 0.0}
        self._asks = {p: q for p, q in snap.asks if q != 0.0}
        self._bid_px, self._ask_neg = sorted(self._bids), sorted([-p for p in self._asks])
        self.update_id, self._last_ts, self._last_recv = snap.update_id, snap.ts, snap.recv_ns
        return out

    def flush(self, until_ns: int) -> list:
        """Rows for grid points before ``until_ns`` (exchange time known to be reached).

        Call it with the exchange time of later frames on the same connection (minus a
        margin for out-of-order streams) so a quiet book still gets its rows; the replayer
        does so every second, 1 s behind. A capture's last second is therefore not sampled.
        """
        if self.state is BookState.SYNCED and until_ns > self._next_grid:
            return self._sample_until(until_ns)
        return []

    def reset(self) -> None:
        """Forget the book (e.g. after a reconnect); the next snapshot resyncs it."""
        if self.state is BookState.SYNCED:
            self._outage_start = self._last_ts
        self._invalidate()
        self._buffer.clear()

    # -- internals -------------------------------------------------------------------------------
    def _invalidate(self) -> None:
        self.state = BookState.AWAITING_SNAPSHOT
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
        return []

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
        out = []
        sym, recv, uid = self.symbol, self._last_recv, self.update_id
        while g < t:  # rows share the level lists: nothing downstream mutates them
            out.append(BookTop(sym, g, recv, uid, bids, bq, asks, aq))
            g += step
        self._next_grid = g
        self.stats.rows += len(out)
        return out
