"""Coverage: which spans of event time a table of a symbol really covers.

A study on self-collected data is only as good as the collection: a disconnect, a broken
order-book sequence or a day the collector did not run leaves a hole that looks exactly
like a quiet market (no prints, an unchanged book) unless it is read from the record the
collectors keep. Two sources say where data is missing::

    gap ledger     the ``gaps`` table the collectors write, one row per interruption:
                   ts = gap start, end_ts = gap end, stream, cause, detail
                     stream "*"      the connection was down (disconnect, stale feed,
                                     restart, malformed frame): every channel of the symbol
                     stream "depth"  the order book was out of sync (sequence break,
                                     resync): book rows are missing or wrong, trades are not
    missing        a partition (day file; month/year file of coarse tables) of the table in
    partitions     the range with no visible rows: nothing was collected or loaded there

``uncovered`` returns both as one frame of spans (``SPAN_COLUMNS``), clipped to the asked
range; ``bin_coverage`` turns spans into the covered share of each bin of a grid, which is
what ``research.bars`` attaches to every bar as its ``coverage``.

Which streams make a table incomplete (``streams_of``): book tables read ``*`` and
``depth``; trades, quotes, mark, liquidations and open interest read ``*``. ``funding`` is
settled history backfilled over REST, complete whatever the websocket did: its coverage
comes from the settlements themselves (``settlement_spans``: a settlement at ``ts`` with
interval ``k`` hours covers ``(ts - k h, ts]``).

Gap times are the collector's receive clock; data are exchange event time. The two differ
by the feed's latency and clock skew (milliseconds to ~1.5 s in the shared captures), so a
span's edges are that exact, no more.

Reading the ledger is bounded by the data, not by history: a gap covering ``start`` began
when the data stopped, so it is in or after the last partition with rows at or before
``start``. The ledger is read from that partition's start (less a day for clock skew), never
from the beginning of time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from tickstore import Partition

from ._frames import require_columns, to_utc, utc_index_ns
from .errors import ResearchError

__all__ = [
    "SPAN_COLUMNS",
    "GAPS_TABLE",
    "streams_of",
    "ledger_spans",
    "missing_partitions",
    "settlement_spans",
    "uncovered",
    "merge_spans",
    "span_coverage",
    "bin_coverage",
]

#: Columns of a spans frame (``start`` inclusive, ``end`` exclusive, UTC).
SPAN_COLUMNS = ("start", "end", "stream", "cause", "detail")
#: The gap ledger table the collectors write.
GAPS_TABLE = "gaps"
MISSING_PARTITION = "missing_partition"
MISSING_SETTLEMENT = "missing_settlement"

_NS_PER_DAY = 86_400 * 10**9
_SKEW = pd.Timedelta(days=1)  # receive clock vs event clock, with a wide margin


def streams_of(table: str) -> tuple[str, ...]:
    """The gap-ledger streams whose gaps leave ``table`` incomplete (see the module doc)."""
    if table == "book" or table.startswith(("book_", "book_diffs")):
        return ("*", "depth")
    if table == "funding":
        return ()
    return ("*",)


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "start": pd.Series([], dtype="datetime64[ns, UTC]"),
            "end": pd.Series([], dtype="datetime64[ns, UTC]"),
            "stream": pd.Series([], dtype=object),
            "cause": pd.Series([], dtype=object),
            "detail": pd.Series([], dtype=object),
        }
    )


def _spans(start_ns, end_ns, stream, cause, detail) -> pd.DataFrame:
    n = len(start_ns)
    return pd.DataFrame(
        {
            "start": pd.to_datetime(np.asarray(start_ns, dtype=np.int64), unit="ns", utc=True),
            "end": pd.to_datetime(np.asarray(end_ns, dtype=np.int64), unit="ns", utc=True),
            "stream": np.asarray(stream, dtype=object) if not isinstance(stream, str) else np.full(n, stream, dtype=object),
            "cause": np.asarray(cause, dtype=object) if not isinstance(cause, str) else np.full(n, cause, dtype=object),
            "detail": np.asarray(detail, dtype=object) if not isinstance(detail, str) else np.full(n, detail, dtype=object),
        }
    )


def _clip(spans: pd.DataFrame, lo: int, hi: int) -> pd.DataFrame:
    """Spans cut to [lo, hi); empty ones dropped; sorted by start (stable)."""
    if spans.empty:
        return _empty()
    s = np.maximum(spans["start"].array.asi8, lo)
    e = np.minimum(spans["end"].array.asi8, hi)
    keep = e > s
    out = spans.loc[keep].copy()
    out["start"] = pd.to_datetime(s[keep], unit="ns", utc=True)
    out["end"] = pd.to_datetime(e[keep], unit="ns", utc=True)
    return out.sort_values("start", kind="stable").reset_index(drop=True)


def ledger_spans(gaps: pd.DataFrame, *, streams: Sequence[str]) -> pd.DataFrame:
    """Spans of a ``gaps`` table frame whose stream is one of ``streams``.

    Parameters
    ----------
    gaps : DataFrame
        As ``store["gaps"].select(symbol, ...)`` returns it (``ts`` = gap start, ``end_ts``,
        ``stream``, ``cause``, ``detail``).
    streams : sequence of str
        e.g. ``("*", "depth")``; see ``streams_of``.

    Returns
    -------
    DataFrame
        ``SPAN_COLUMNS``, sorted by start.
    """
    require_columns(gaps, ("end_ts", "stream", "cause", "detail"), what="ledger_spans")
    if gaps.empty or not streams:
        return _empty()
    stream = gaps["stream"].astype(str).to_numpy()
    keep = np.isin(stream, list(streams))
    g = gaps.loc[keep]
    s = utc_index_ns(gaps, what="gaps", sorted_=False)[keep]
    e = g["end_ts"].array.asi8
    # the collectors write end_ts > ts; a malformed row (end <= start) still marks its instant
    e = np.maximum(e, s + 1)
    out = _spans(s, e, g["stream"].astype(str).to_numpy(), g["cause"].astype(str).to_numpy(), g["detail"].astype(str).to_numpy())
    return out.sort_values("start", kind="stable").reset_index(drop=True)


def missing_partitions(dates: pd.DatetimeIndex, partition: Partition, start, end, *, what: str = "") -> pd.DataFrame:
    """Spans of [start, end) whose partition holds no rows.

    Parameters
    ----------
    dates : DatetimeIndex
        First days of the partitions that hold rows (``Table.dates(symbol, as_of=...)``).
    partition : tickstore.Partition
        The table's partition granularity.
    start, end : timestamp-like
        The range.
    what : str
        Names the table and symbol in each span's detail.

    Returns
    -------
    DataFrame
        ``SPAN_COLUMNS``; cause ``missing_partition``, stream ``""``.
    """
    lo, hi = to_utc(start, what="start").value, to_utc(end, what="end").value
    if hi <= lo:
        return _empty()
    present = set((pd.DatetimeIndex(dates).as_unit("ns").asi8 // _NS_PER_DAY).tolist())
    first_day, last_day = lo // _NS_PER_DAY, (hi - 1) // _NS_PER_DAY
    if partition is Partition.DAY:
        starts = np.arange(first_day, last_day + 1, dtype=np.int64)
        ends = starts + 1
    else:
        starts, ends = [], []
        p = int(partition.floor(np.array([first_day]))[0])
        while p <= last_day:
            q = int(partition.end(p))
            starts.append(p)
            ends.append(q)
            p = q
        starts, ends = np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)
    missing = ~np.isin(starts, np.fromiter(present, dtype=np.int64, count=len(present)))
    s, e = starts[missing] * _NS_PER_DAY, ends[missing] * _NS_PER_DAY
    details = [f"no {what + ' ' if what else ''}rows in the {partition.value} of {pd.Timestamp(x, tz='UTC').date()}" for x in s]
    return _clip(_spans(s, e, "", MISSING_PARTITION, details if len(details) else ""), lo, hi)


def settlement_spans(funding: pd.DataFrame, start, end, *, what: str = "") -> pd.DataFrame:
    """Spans of [start, end) no funding settlement accrued over.

    A settlement at ``ts`` with ``interval_h`` = k covers ``(ts - k h, ts]`` (the interval it
    pays for); what no settlement covers is a missing record.

    Returns
    -------
    DataFrame
        ``SPAN_COLUMNS``; cause ``missing_settlement``.
    """
    require_columns(funding, ("interval_h",), what="settlement_spans")
    lo, hi = to_utc(start, what="start").value, to_utc(end, what="end").value
    ts = utc_index_ns(funding, what="funding")
    k = funding["interval_h"].to_numpy(np.float64)
    # covered (ts - k, ts]: in half-open terms [ts - k + 1 ns, ts + 1 ns)
    cov_s = ts - np.round(k * 3.6e12).astype(np.int64) + 1
    cov_e = ts + 1
    cs, ce = merge_spans(_spans(cov_s, cov_e, "", "", ""))
    # the complement of the covered spans within [lo, hi)
    bounds_s = np.concatenate([[lo], ce])
    bounds_e = np.concatenate([cs, [hi]])
    holes = _clip(_spans(bounds_s, bounds_e, "", MISSING_SETTLEMENT, ""), lo, hi)
    if not holes.empty:
        holes["detail"] = [
            f"no {what + ' ' if what else ''}funding settlement accrues over {a} .. {b}" for a, b in zip(holes["start"], holes["end"])
        ]
    return holes


def uncovered(
    store,
    table: str,
    symbol: str,
    start,
    end,
    *,
    as_of=None,
    streams: Sequence[str] | None = None,
    select: Callable[..., pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """The spans of [start, end) where ``table`` of ``symbol`` is incomplete, as known at ``as_of``.

    Parameters
    ----------
    store : Tickstore
    table : str
        The data table the spans are about ("trades", "book", ...): its missing partitions
        and, by default, the ledger streams that affect it (``streams_of``).
    symbol : str
    start, end : timestamp-like
        Event-time range [start, end).
    as_of : None | time | snapshot name
        Knowledge time of the ledger read and the partition list (as for ``Table.select``).
    streams : sequence of str, optional
        Ledger streams to read instead of ``streams_of(table)``.
    select : callable, optional
        ``select(table, symbol, start, end) -> frame`` used to read the ledger, e.g. a
        backtest ``Reader.select`` so the read is pinned; default ``store[...].select`` at
        ``as_of``.

    Returns
    -------
    DataFrame
        ``SPAN_COLUMNS``, clipped to [start, end), sorted by start; spans may overlap (a
        disconnect inside a missing day is listed twice): ``merge_spans`` unites them.

    Raises
    ------
    ResearchError
        Naive or reversed times.
    """
    lo, hi = to_utc(start, what="start"), to_utc(end, what="end")
    if hi <= lo:
        raise ResearchError(f"end {hi} is not after start {lo}")
    streams = streams_of(table) if streams is None else tuple(streams)
    data = store[table]
    dates = data.dates(symbol, as_of=as_of)
    parts = [missing_partitions(dates, data.schema.partition, lo, hi, what=f"{table} {symbol}")]
    if streams and GAPS_TABLE in store.tables():
        before = dates[dates <= lo]
        read_from = (before[-1] if len(before) else lo) - _SKEW
        read_from = min(read_from, lo - _SKEW)
        if select is None:
            gaps = store[GAPS_TABLE].select(symbol, read_from, hi, as_of=as_of)
        else:
            gaps = select(GAPS_TABLE, symbol, read_from, hi)
        parts.append(ledger_spans(gaps, streams=streams))
    parts = [p for p in parts if not p.empty]
    if not parts:
        return _empty()
    return _clip(pd.concat(parts, ignore_index=True), lo.value, hi.value)


def merge_spans(spans: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The union of spans as disjoint, sorted [start, end) pairs of int64 ns arrays."""
    if spans is None or spans.empty:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    s = spans["start"].array.asi8
    e = spans["end"].array.asi8
    order = np.argsort(s, kind="stable")
    s, e = s[order], e[order]
    reach = np.maximum.accumulate(e)
    # a span starting after everything before it has ended opens a new group
    new = np.concatenate([[True], s[1:] > reach[:-1]])
    first = np.flatnonzero(new)
    last = np.concatenate([first[1:] - 1, [len(s) - 1]])
    return s[first], reach[last]


def span_coverage(starts, ends, spans: pd.DataFrame) -> np.ndarray:
    """Share of each interval [starts[i], ends[i]) not inside any span (1.0 = fully covered).

    Computed in integer nanoseconds: ``U(t)``, the uncovered time before ``t``, is a prefix
    sum over the merged spans, and an interval's uncovered time is ``U(end) - U(start)``; so
    an interval touched by no span is exactly 1.0.

    Parameters
    ----------
    starts, ends : DatetimeIndex | int64 array
        Interval bounds, ``ends > starts``.
    spans : DataFrame
        ``SPAN_COLUMNS`` (``uncovered`` output).

    Returns
    -------
    numpy.ndarray of float64, in [0, 1].
    """
    a, b = (np.asarray(x.as_unit("ns").asi8 if isinstance(x, pd.DatetimeIndex) else x, dtype=np.int64) for x in (starts, ends))
    s, e = merge_spans(spans)
    if not len(s):
        return np.ones(len(a))
    cum = np.concatenate([[0], np.cumsum(e - s)])

    def before(t: np.ndarray) -> np.ndarray:
        k = np.searchsorted(s, t, side="left")  # spans starting before t
        tail = np.where(k > 0, np.maximum(e[np.maximum(k - 1, 0)] - t, 0), 0)  # the last may run past t
        return cum[k] - tail

    return 1.0 - (before(b) - before(a)) / (b - a)


def bin_coverage(edges, spans: pd.DataFrame) -> np.ndarray:
    """``span_coverage`` of the bins [edges[i], edges[i+1]) of a grid (``n + 1`` edges, ``n`` shares)."""
    edges = np.asarray(edges.as_unit("ns").asi8 if isinstance(edges, pd.DatetimeIndex) else edges, dtype=np.int64)
    return span_coverage(edges[:-1], edges[1:], spans)
