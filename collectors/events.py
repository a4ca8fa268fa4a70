"""Normalised market events: what every venue parser emits, whatever the wire format.

Parsers in ``collectors/exchanges/<venue>.py`` turn one raw frame into a list of these;
``collectors/book.py`` turns ``DepthSnapshot``/``DepthDiff`` into ``BookTop`` rows;
``EventBatcher`` turns lists of events into one DataFrame per (table, symbol), ready for
``Table.append``. All times are int64 nanoseconds since the epoch, UTC:

- ``ts``: the clock the event's table declares (``tickstore.schemas``: exchange transaction
  time for trades, agg trades and liquidations, exchange event time for the rest,
  settlement time for funding, bar open for bars);
- ``recv_ns``: local clock when the frame arrived.

Symbols are tickstore symbols, ``<ccxt exchange id>:<ccxt unified symbol>``, e.g.
``binance:BTC/USDT:USDT``; venue-native ids never leave the venue module.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, fields
from operator import attrgetter

import numpy as np
import pandas as pd

__all__ = [
    "Trade",
    "AggTrade",
    "Bar",
    "Quote",
    "DepthDiff",
    "DepthSnapshot",
    "BookTop",
    "Mark",
    "Funding",
    "OpenInterest",
    "Liquidation",
    "Gap",
    "EventBatcher",
    "TABLE_OF",
    "table_of",
    "source_of",
]


@dataclass(slots=True)
class Trade:
    symbol: str
    ts: int
    recv_ns: int
    trade_id: int
    price: float
    qty: float
    side: int  # +1 buyer aggressor, -1 seller aggressor
    kind: int = 0  # tickstore.TradeKind: 0 market, 1 liquidation, 2 ADL, 3 block, 4 other


@dataclass(slots=True)
class AggTrade:
    """An aggregated trade (Binance ``aggTrade``): the fills of trade ids
    ``first_trade_id..last_trade_id`` at one price and taker side (table ``agg_trades``)."""

    symbol: str
    ts: int
    recv_ns: int
    agg_id: int
    first_trade_id: int
    last_trade_id: int
    price: float
    qty: float
    side: int


@dataclass(slots=True)
class Bar:
    """A closed OHLCV bar (e.g. a Binance kline with ``x`` true); ``ts`` is the bar open and
    ``freq`` the table suffix (``1m`` -> table ``ohlcv_1m``)."""

    symbol: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    freq: str


@dataclass(slots=True)
class Quote:
    symbol: str
    ts: int
    recv_ns: int
    update_id: int
    bid_px: float
    bid_qty: float
    ask_px: float
    ask_qty: float


@dataclass(slots=True)
class DepthDiff:
    """An incremental L2 update. ``prev_update_id`` is -1 where the venue gives none."""

    symbol: str
    ts: int
    recv_ns: int
    first_update_id: int
    update_id: int
    prev_update_id: int
    bids: list  # [(price, qty), ...]; qty 0 removes the level
    asks: list


@dataclass(slots=True)
class DepthSnapshot:
    """A full (or deep partial) book, from REST or a snapshot frame."""

    symbol: str
    ts: int
    recv_ns: int
    update_id: int
    bids: list  # [(price, qty), ...] best first
    asks: list


@dataclass(slots=True)
class BookTop:
    """One top-N snapshot row of the ``book``/``book_<N>`` table (levels best first)."""

    symbol: str
    ts: int
    recv_ns: int
    update_id: int
    bid_px: list
    bid_qty: list
    ask_px: list
    ask_qty: list


@dataclass(slots=True)
class Mark:
    symbol: str
    ts: int
    recv_ns: int
    mark_px: float
    index_px: float
    funding_rate: float  # predicted rate for the current interval
    next_funding_ts: int


@dataclass(slots=True)
class Funding:
    """A settled funding rate; ``ts`` is the settlement time."""

    symbol: str
    ts: int
    rate: float
    interval_h: float


@dataclass(slots=True)
class OpenInterest:
    symbol: str
    ts: int
    oi: float
    oi_value: float


@dataclass(slots=True)
class Liquidation:
    symbol: str
    ts: int
    recv_ns: int
    side: int
    price: float
    qty: float


@dataclass(slots=True)
class Gap:
    """A gap-ledger row: data for ``stream`` may be missing in ``[ts, end_ts)``."""

    symbol: str
    ts: int
    recv_ns: int
    end_ts: int
    stream: str
    cause: str  # disconnect | sequence_break | resync | stale | malformed | reconnect | unsynced
    detail: str = ""


TABLE_OF = {
    Trade: "trades",
    AggTrade: "agg_trades",
    Quote: "quotes",
    DepthDiff: "book_diffs",
    Mark: "mark",
    Funding: "funding",
    OpenInterest: "open_interest",
    Liquidation: "liquidations",
    Gap: "gaps",
}


# Where a table's live rows come from, when that is not what the table usually holds: the
# ``source`` of their appends says so (``Table.versions`` shows it).
_SOURCE_NOTES = {"funding": "settlement seen in the mark stream"}


def table_of(event, book_table: str = "book") -> str:
    """The table an event's row goes to."""
    cls = type(event)
    if cls is BookTop:
        return book_table
    if cls is Bar:
        return f"ohlcv_{event.freq}"
    return TABLE_OF[cls]


def source_of(table: str, source: str) -> str:
    """The ``source`` of an append of live rows of ``table``: ``source`` plus what the
    rows are where that needs saying (funding rows of a collector are settlements it saw in
    the mark stream, not the venue's settled-rate history)."""
    note = _SOURCE_NOTES.get(table)
    return f"{note}; {source}" if note else source


def _field_names(cls) -> list[str]:
    return [f.name for f in fields(cls)]


class EventBatcher:
    """Accumulates events and hands them out as one DataFrame per (table, symbol).

    ``book_table`` is the table name ``BookTop`` rows go to (``book`` for 5 levels,
    ``book_<N>`` otherwise); the depth is taken from the rows. ``DepthSnapshot`` is not
    stored (the book builder consumes it). Rows keep arrival order; ``drain`` sorts by
    ``ts`` (stable) as ``Table.append`` requires.
    """

    def __init__(self, book_table: str = "book"):
        self.book_table = book_table
        self._rows: dict[tuple[str, str], list] = defaultdict(list)
        self.count = 0

    def add(self, event) -> None:
        if type(event) is DepthSnapshot:
            return
        self._rows[(table_of(event, self.book_table), event.symbol)].append(event)
        self.count += 1

    def extend(self, events) -> None:
        for e in events:
            self.add(e)

    def __len__(self) -> int:
        return self.count

    def drain(self) -> dict[tuple[str, str], pd.DataFrame]:
        """Return and forget everything accumulated so far."""
        out = {}
        for (table, symbol), events in self._rows.items():
            if events:
                out[(table, symbol)] = events_to_frame(events)
        self._rows.clear()
        self.count = 0
        return out


def _utc(ns) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.asarray(ns, dtype="i8").view("M8[ns]"), tz="UTC")


def events_to_frame(events: list) -> pd.DataFrame:
    """Events of one type and symbol -> a frame indexed by ``ts`` in the table's schema."""
    cls = type(events[0])
    if cls is BookTop:
        n = len(events[0].bid_px)
        cols: dict[str, object] = {
            "recv_ts": _utc([e.recv_ns for e in events]),
            "update_id": np.array([e.update_id for e in events], dtype="i8"),
        }
        for side in ("bid", "ask"):
            for what in ("px", "qty"):
                mat = np.array(list(map(attrgetter(f"{side}_{what}"), events)), dtype="f8").reshape(len(events), n)
                for i in range(n):
                    cols[f"{side}_{what}_{i + 1}"] = mat[:, i]
        ts = [e.ts for e in events]
    elif cls is DepthDiff:
        # one row per level, bids then asks in the order the venue sent them; ordinal is the
        # row's position in its diff (a diff may name one price twice: both rows are kept)
        rows = []
        for e in events:
            n = 0
            for side, levels in ((1, e.bids), (-1, e.asks)):
                for px, qty in levels:
                    rows.append((e.ts, e.recv_ns, e.first_update_id, e.update_id, e.prev_update_id, side, px, qty, n))
                    n += 1
        dtype = "i8,i8,i8,i8,i8,i1,f8,f8,i4"
        arr = np.array(rows, dtype=dtype) if rows else np.zeros(0, dtype)
        names = ["ts", "recv_ts", "first_update_id", "update_id", "prev_update_id", "side", "price", "qty", "ordinal"]
        arr.dtype.names = names
        cols = {n: arr[n] for n in names[1:]}
        cols["recv_ts"] = _utc(arr["recv_ts"])
        ts = arr["ts"]
    else:
        names = _field_names(cls)
        cols = {}
        for name in names:
            if name in ("symbol", "ts", "freq"):
                continue
            values = list(map(attrgetter(name), events))  # 3x faster than a getattr per event
            if name == "recv_ns":
                cols["recv_ts"] = _utc(values)
            elif name in ("next_funding_ts", "end_ts"):
                cols[name] = _utc(values)
            elif name in ("side", "kind"):
                cols[name] = np.array(values, dtype="i1")
            elif name in ("trade_id", "update_id", "agg_id", "first_trade_id", "last_trade_id"):
                cols[name] = np.array(values, dtype="i8")
            elif name in ("stream", "cause", "detail"):
                cols[name] = np.array(values, dtype=object)
            else:
                cols[name] = np.array(values, dtype="f8")
        ts = list(map(attrgetter("ts"), events))
    idx = _utc(ts)
    idx.name = "ts"
    frame = pd.DataFrame({k: (v.values if isinstance(v, pd.DatetimeIndex) else v) for k, v in cols.items()}, index=idx)
    for k, v in cols.items():
        if isinstance(v, pd.DatetimeIndex):
            frame[k] = v
    if not frame.index.is_monotonic_increasing:
        frame = frame.sort_index(kind="stable")
    return frame
