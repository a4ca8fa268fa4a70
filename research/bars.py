"""Bars: trades -> OHLCV/VWAP bars, fine bars -> coarse bars, book snapshots -> a time grid.

The binning convention, used by every function here and by ``volatility``::

    edges     e0          e1          e2          e3
              |-----------|-----------|-----------|
    bins      [ label e0  )[ label e1 )[ label e2 )
                           ^ a print at exactly e1 is in the bin labelled e1

- Bins are closed left, open right; a bin is labelled by its open (left edge).
- Fixed frequencies (pandas ``Tick`` offsets: ms, s, min, h, D and multiples) count edges
  from the Unix epoch, so 5-minute bins always open at :00, :05, ... UTC, every call
  agrees with every other, and bins of a step dividing a day never straddle midnight
  (so they never straddle a day file of the store either).
- Calendar frequencies (``W-MON``, ``MS``, ...) put edges on the offset's anchors at
  midnight UTC, from the anchor on or before the first time (pandas' rule for them).
- Every bin from the first to the last is present. An empty bin has NaN prices and VWAP,
  0 volume and 0 count: "nothing traded" is a fact, so it is not forward-filled.
- ``start``/``end`` (optional) fix the range to [start, end) - start floored to the grid,
  end ceiled - so leading and trailing empty bins appear too; rows outside are ignored.

Everything is vectorised over contiguous runs of the sorted event-time index: bin edges
are found with one ``searchsorted`` and each bin is reduced with ``ufunc.reduceat``, so the
cost is a few passes over the prints whatever the number of bins.
"""

from __future__ import annotations

import enum
import re

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import BaseOffset, Tick

from tickstore import TradeKind

from ._frames import require_columns, to_utc, utc_index_ns
from .coverage import bin_coverage, span_coverage, streams_of, uncovered as uncovered_spans
from .errors import ResearchError

__all__ = [
    "BAR_COLUMNS",
    "OHLCV_COLUMNS",
    "BOOK_FEATURES",
    "MARKET_ONLY",
    "bin_edges",
    "reduce_bins",
    "trade_bars",
    "resample_bars",
    "book_depth",
    "book_features",
    "book_bars",
    "select_trade_bars",
    "select_book_bars",
    "select_bars",
    "table_coverage",
]

#: Columns of ``trade_bars``; the first five are the ``ohlcv_<freq>`` table schema.
BAR_COLUMNS = ("open", "high", "low", "close", "volume", "vwap", "count", "buy_volume", "sell_volume", "notional")
OHLCV_COLUMNS = BAR_COLUMNS[:5]
#: The prints bars are made of unless asked otherwise: order-book trades. Liquidation
#: (insurance fund), ADL, block and other prints are real, but not prices two parties chose
#: on the book; pass ``kinds=None`` for every print, or a tuple of ``TradeKind``.
MARKET_ONLY = (TradeKind.MARKET,)
#: Columns read from a ``trades`` table for bars.
TRADE_COLUMNS = ["price", "qty", "side", "kind"]
#: Columns of ``book_features``/``book_bars``.
BOOK_FEATURES = ("mid", "spread", "spread_bps", "microprice", "imbalance")

_DAY_NS = 86_400 * 10**9


class _Agg(enum.Enum):
    FIRST = "first"
    LAST = "last"
    MAX = "max"
    MIN = "min"
    SUM = "sum"


# How each bar column combines when fine bars are merged into coarse ones; ``vwap`` is
# recomputed from ``notional / volume`` (a VWAP of VWAPs would weight bars, not prints).
_BAR_AGG = {
    "open": _Agg.FIRST,
    "high": _Agg.MAX,
    "low": _Agg.MIN,
    "close": _Agg.LAST,
    "volume": _Agg.SUM,
    "count": _Agg.SUM,
    "buy_volume": _Agg.SUM,
    "sell_volume": _Agg.SUM,
    "notional": _Agg.SUM,
}


# -- the grid ------------------------------------------------------------------------------
def _offset(freq) -> BaseOffset:
    try:
        off = to_offset(freq)
    except (TypeError, ValueError) as exc:
        raise ResearchError(f"frequency {freq!r} is not a pandas frequency ({exc}); e.g. '1min', '250ms', 'h'") from None
    if off.n <= 0:
        raise ResearchError(f"frequency must be positive, got {freq!r}")
    return off


def _tick_grid(start_ns: int, end_ns: int, step: int) -> tuple[int, int]:
    """(first edge, number of bins) of the ``step`` grid covering [start_ns, end_ns).

    Python integers throughout: nothing passes through float64, whose 256 ns spacing near
    today's epoch nanoseconds once sized ``np.arange(lo, hi + 1, step)`` one edge short for
    ranges of ~180 days or more.
    """
    lo = start_ns - start_ns % step  # Python %: floor towards -inf, also before 1970
    hi = max(end_ns + (-end_ns) % step, lo + step)
    return lo, (hi - lo) // step  # exact: both ends are multiples of step


def _edges_ns(start_ns: int, end_ns: int, off: BaseOffset) -> np.ndarray:
    """Edges (int64 ns) of the bins covering [start_ns, end_ns); at least one bin."""
    if isinstance(off, Tick):
        step = int(off.nanos)
        lo, n = _tick_grid(int(start_ns), int(end_ns), step)
        return np.int64(lo) + np.int64(step) * np.arange(n + 1, dtype=np.int64)
    start = pd.Timestamp(start_ns, tz="UTC")
    end = pd.Timestamp(end_ns, tz="UTC")
    first = off.rollback(start.normalize())
    edges = pd.date_range(first, max(end, first + off), freq=off)
    if edges[-1] < end:
        edges = edges.append(pd.DatetimeIndex([edges[-1] + off]))
    return edges.as_unit("ns").asi8


def bin_edges(start, end, freq) -> pd.DatetimeIndex:
    """The bin edges covering the event-time range [start, end) at ``freq``.

    Parameters
    ----------
    start, end : timestamp-like, tz-aware
        The range; ``start`` is floored to the grid and ``end`` ceiled.
    freq : str | pandas offset
        Any pandas frequency ("100ms", "1min", "h", "D", "W-MON", "MS", ...).

    Returns
    -------
    pandas.DatetimeIndex
        ``n + 1`` edges (UTC) of ``n >= 1`` bins; bin ``i`` is [edges[i], edges[i+1]).

    Raises
    ------
    ResearchError
        Unknown frequency, naive or reversed times.
    """
    s, e = to_utc(start, what="start"), to_utc(end, what="end")
    if e < s:
        raise ResearchError(f"end {e} is before start {s}")
    ns = _edges_ns(s.value, e.value, _offset(freq))
    return pd.DatetimeIndex(ns, tz="UTC", name="ts")


def _range_edges(ts: np.ndarray, off: BaseOffset, start, end, *, last_end: int | None = None) -> np.ndarray:
    """Edges for the data's own range unless ``start``/``end`` pin it."""
    if start is None and not len(ts):
        raise ResearchError("no rows and no start/end: the bin range is unknown; pass start= and end=")
    s = to_utc(start, what="start").value if start is not None else int(ts[0])
    if end is not None:
        e = to_utc(end, what="end").value
    else:
        e = (last_end if last_end is not None else int(ts[-1]) + 1) if len(ts) else s + 1
    if e <= s:
        raise ResearchError(f"end {pd.Timestamp(e, tz='UTC')} is not after start {pd.Timestamp(s, tz='UTC')}")
    return _edges_ns(s, e, off)


def _bounds(ts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Row positions where each bin starts; bin i is rows bounds[i]:bounds[i+1]."""
    return np.searchsorted(ts, edges, side="left")


def _reduce(values: np.ndarray, bounds: np.ndarray, how: _Agg) -> np.ndarray:
    """Reduce each contiguous run ``values[bounds[i]:bounds[i+1]]``; empty runs give NaN (0 for SUM)."""
    counts = np.diff(bounds)
    full = counts > 0
    lo = int(bounds[0])
    # reduceat runs each segment up to the next index given, so passing only the starts of
    # non-empty bins makes every segment exactly one bin: empty bins hold no rows between.
    seg = bounds[:-1][full] - lo
    v = values[lo : int(bounds[-1])]
    if how is _Agg.SUM:
        out = np.zeros(len(counts), dtype=values.dtype if values.dtype.kind in "iu" else np.float64)
    else:
        out = np.full(len(counts), np.nan)
    if not full.any():
        return out
    if how is _Agg.SUM:
        out[full] = np.add.reduceat(v, seg)
    elif how is _Agg.FIRST:
        out[full] = v[seg]
    elif how is _Agg.LAST:
        out[full] = v[bounds[1:][full] - lo - 1]
    elif how is _Agg.MAX:
        out[full] = np.maximum.reduceat(v, seg)
    else:
        out[full] = np.minimum.reduceat(v, seg)
    return out


def _float_column(frame: pd.DataFrame, name: str, *, what: str) -> np.ndarray:
    v = frame[name].to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(v))
    if len(bad):
        i = int(bad[0])
        raise ResearchError(f"{what}: column {name!r} holds {v[i]} at {frame.index[i]} (row {i}); prices/quantities must be finite")
    return v


def reduce_bins(frame: pd.DataFrame, freq, *, how: dict[str, str], start=None, end=None) -> pd.DataFrame:
    """Reduce columns of a time-indexed frame into bins of the grid (the generic form).

    Parameters
    ----------
    frame : DataFrame
        UTC sorted ``ts`` index.
    freq : str | pandas offset
    how : dict
        ``{column: "first" | "last" | "max" | "min" | "sum"}``; first/last are positional
        (a NaN that is last in its bin is the bin's last value).
    start, end : timestamp-like, optional
        Bin range [start, end); default the frame's first to last row.

    Returns
    -------
    DataFrame
        Index ``ts`` = bin open; the columns of ``how`` (empty bins NaN, 0 for "sum") and
        ``count`` (rows per bin).

    Raises
    ------
    ResearchError
        Unknown reduction or column, bad index or frequency.
    """
    require_columns(frame, how, what="reduce_bins")
    try:
        aggs = {c: _Agg(h) for c, h in how.items()}
    except ValueError:
        raise ResearchError(f"reductions must be one of {[a.value for a in _Agg]}, got {how!r}") from None
    ts = utc_index_ns(frame, what="frame")
    edges = _range_edges(ts, _offset(freq), start, end)
    b = _bounds(ts, edges)
    cols = {}
    for c, agg in aggs.items():
        v = frame[c].to_numpy()
        cols[c] = _reduce(v if v.dtype.kind in "iuf" else v.astype(np.float64), b, agg)
    cols["count"] = np.diff(b).astype(np.int64)
    return pd.DataFrame(cols, index=pd.DatetimeIndex(edges[:-1], tz="UTC", name="ts"))


# -- trades -> bars ------------------------------------------------------------------------
def _of_kinds(trades: pd.DataFrame, kinds) -> pd.DataFrame:
    """The prints whose ``kind`` is in ``kinds`` (all with ``kinds=None``; a frame without a
    ``kind`` column holds market prints, the store's default)."""
    if kinds is None or "kind" not in trades.columns:
        return trades
    try:
        wanted = [int(TradeKind(k)) for k in kinds]
    except (TypeError, ValueError):
        raise ResearchError(f"kinds must be TradeKind values (e.g. (TradeKind.MARKET,)) or None, got {kinds!r}") from None
    keep = np.isin(trades["kind"].to_numpy(), wanted)
    return trades if keep.all() else trades.loc[keep]


def trade_bars(
    trades: pd.DataFrame, freq, *, start=None, end=None, uncovered: pd.DataFrame | None = None, kinds=MARKET_ONLY
) -> pd.DataFrame:
    """OHLCV + VWAP + trade count + buy/sell volume from every print, at any frequency.

    Parameters
    ----------
    trades : DataFrame
        A ``trades`` frame: UTC sorted ``ts`` index, columns ``price``, ``qty``, ``side``
        (+1 buyer aggressor, -1 seller; 0 counts in neither buy nor sell volume).
    freq : str | pandas offset
        Bar length, e.g. "1s", "1min", "5min", "h", "D".
    start, end : timestamp-like, optional
        Bin range [start, end); default: the first to the last print.
    uncovered : DataFrame, optional
        Spans the feed did not cover (``research.coverage.uncovered``); adds ``coverage``.
    kinds : tuple of TradeKind, or None
        Prints to use, by the ``kind`` column (``tickstore.TradeKind``): market prints by
        default (``MARKET_ONLY``); ``None`` for every print. A frame without ``kind``
        holds market prints.

    Returns
    -------
    DataFrame
        Index ``ts`` = bin open (UTC); columns ``BAR_COLUMNS``: open, high, low, close,
        volume (sum qty), vwap (notional / volume), count (int64), buy_volume,
        sell_volume, notional (sum price * qty). Empty bins: NaN prices/vwap, zeros.
        With ``uncovered``, also ``coverage``: the share of the bin's span the feed
        covered (1.0 = all of it; an empty bin with coverage 1 means nothing traded,
        with coverage 0 that nobody was listening).

    Raises
    ------
    ResearchError
        Missing columns, unsorted/naive index, non-finite price or qty, bad frequency.
    """
    require_columns(trades, ("price", "qty", "side"), what="trade_bars")
    utc_index_ns(trades, what="trades")
    trades = _of_kinds(trades, kinds)
    ts = utc_index_ns(trades, what="trades")
    off = _offset(freq)
    price = _float_column(trades, "price", what="trade_bars")
    qty = _float_column(trades, "qty", what="trade_bars")
    side = trades["side"].to_numpy()
    edges = _range_edges(ts, off, start, end)
    b = _bounds(ts, edges)
    volume = _reduce(qty, b, _Agg.SUM)
    notional = _reduce(price * qty, b, _Agg.SUM)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.where(volume > 0, notional / volume, np.nan)
    out = pd.DataFrame(
        {
            "open": _reduce(price, b, _Agg.FIRST),
            "high": _reduce(price, b, _Agg.MAX),
            "low": _reduce(price, b, _Agg.MIN),
            "close": _reduce(price, b, _Agg.LAST),
            "volume": volume,
            "vwap": vwap,
            "count": np.diff(b).astype(np.int64),
            "buy_volume": _reduce(np.where(side > 0, qty, 0.0), b, _Agg.SUM),
            "sell_volume": _reduce(np.where(side < 0, qty, 0.0), b, _Agg.SUM),
            "notional": notional,
        },
        index=pd.DatetimeIndex(edges[:-1], tz="UTC", name="ts"),
    )
    if uncovered is not None:
        out["coverage"] = bin_coverage(edges, uncovered)
    return out


# -- bars -> coarser bars ------------------------------------------------------------------
def _bar_step_ns(bars: pd.DataFrame, ts: np.ndarray, bar_freq) -> int:
    if bar_freq is not None:
        off = _offset(bar_freq)
        if not isinstance(off, Tick):
            raise ResearchError(f"bar_freq must be a fixed length to be re-binned, got {bar_freq!r}")
        return int(off.nanos)
    if isinstance(bars.index.freq, Tick):
        return int(bars.index.freq.nanos)
    d = np.diff(ts)
    d = d[d > 0]
    if not len(d):
        raise ResearchError("cannot infer the bar length from fewer than two bars; pass bar_freq=")
    return int(d.min())


def resample_bars(bars: pd.DataFrame, freq, *, bar_freq=None, start=None, end=None) -> pd.DataFrame:
    """Merge fine bars (e.g. 1-minute) into coarse bars, equal to binning the prints directly.

    open/close/high/low/count come out exactly as ``trade_bars(trades, freq)`` gives them;
    the sums (volume, notional, buy/sell volume) and vwap agree up to float summation
    order (relative 1e-12). Empty fine bars (NaN open) are skipped.

    Parameters
    ----------
    bars : DataFrame
        Bars labelled by their open (``trade_bars`` output or an ``ohlcv_<freq>`` table);
        needs open/high/low/close, uses volume/count/buy_volume/sell_volume/notional/vwap
        when present. Other columns are dropped.
    freq : str | pandas offset
        The coarse frequency; its edges must fall on the fine grid (5min from 1min: yes;
        90s from 1min: no).
    bar_freq : str, optional
        Length of the input bars; inferred from the index spacing when omitted.
    start, end : timestamp-like, optional
        Bin range, as in ``trade_bars``; default: from the first bar to the end of the last.

    Returns
    -------
    DataFrame
        Index ``ts`` = coarse bin open; the input's known columns (``vwap`` recomputed
        from ``notional``/``volume``, or volume-weighted when only ``vwap`` is there), and
        ``coverage`` when the input has it (the covered share of the coarse span; fine
        bars missing from the input count as uncovered).

    Raises
    ------
    ResearchError
        Missing OHLC columns, coarse bins that would split a fine bar, bad index.
    """
    require_columns(bars, ("open", "high", "low", "close"), what="resample_bars")
    ts = utc_index_ns(bars, what="bars")
    off = _offset(freq)
    step = _bar_step_ns(bars, ts, bar_freq)
    coarse = int(off.nanos) if isinstance(off, Tick) else _DAY_NS  # calendar edges sit on midnights
    if coarse % step or (len(ts) and np.any(ts % step)):
        raise ResearchError(
            f"cannot merge {pd.Timedelta(step)} bars into {freq!r} bars: coarse bins must start on the "
            f"fine grid (coarse length a multiple of {pd.Timedelta(step)}, bars labelled on multiples of it)"
        )
    edges = _range_edges(ts, off, start, end, last_end=int(ts[-1]) + step if len(ts) else None)
    full = bars["open"].notna().to_numpy()
    if "count" in bars.columns:
        full &= bars["count"].to_numpy() > 0
    kept = bars.loc[full]
    b = _bounds(ts[full], edges)
    cols = {}
    for name, how in _BAR_AGG.items():
        if name in kept.columns:
            values = kept[name].to_numpy()
            values = values.astype(np.float64) if values.dtype.kind != "i" else values
            cols[name] = _reduce(values, b, how)
    if "vwap" in bars.columns and "volume" in kept.columns:
        notional = cols["notional"] if "notional" in cols else _reduce(
            kept["vwap"].to_numpy(np.float64) * kept["volume"].to_numpy(np.float64), b, _Agg.SUM
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            cols["vwap"] = np.where(cols["volume"] > 0, notional / cols["volume"], np.nan)
    order = [c for c in BAR_COLUMNS if c in cols]
    out = pd.DataFrame({c: cols[c] for c in order}, index=pd.DatetimeIndex(edges[:-1], tz="UTC", name="ts"))
    if "coverage" in bars.columns:
        # time-weighted: the coarse bar's covered time over its length; a fine bar absent
        # from the input covers nothing
        fine = bars["coverage"].to_numpy(np.float64)
        out["coverage"] = _reduce(np.nan_to_num(fine), _bounds(ts, edges), _Agg.SUM) / (np.diff(edges) / step)
    return out


# -- book snapshots -> features on a grid --------------------------------------------------
_LEVEL = re.compile(r"^(bid|ask)_(px|qty)_(\d+)$")
_QUOTE_COLUMNS = {"bid_px": "bid_px_1", "bid_qty": "bid_qty_1", "ask_px": "ask_px_1", "ask_qty": "ask_qty_1"}


def _as_book(book: pd.DataFrame) -> pd.DataFrame:
    """A ``quotes`` frame (bid_px, ...) is a one-level book; rename rather than special-case."""
    if "bid_px_1" not in book.columns and set(_QUOTE_COLUMNS) <= set(book.columns):
        return book.rename(columns=_QUOTE_COLUMNS)
    return book


def book_depth(book: pd.DataFrame) -> int:
    """Number of levels N of a ``book``/``book_<N>`` frame (or 1 for a ``quotes`` frame).

    Raises
    ------
    ResearchError
        If no level columns are present or a level misses one of its four columns.
    """
    book = _as_book(book)
    levels: dict[int, set] = {}
    for c in book.columns:
        m = _LEVEL.match(str(c))
        if m:
            levels.setdefault(int(m.group(3)), set()).add(f"{m.group(1)}_{m.group(2)}")
    if not levels:
        raise ResearchError(
            f"no book level columns (bid_px_1.., bid_qty_1.., ask_px_1.., ask_qty_1..) in {list(book.columns)}"
        )
    n = max(levels)
    for i in range(1, n + 1):
        missing = {"bid_px", "bid_qty", "ask_px", "ask_qty"} - levels.get(i, set())
        if missing:
            raise ResearchError(f"book level {i} of {n} misses columns {sorted(f'{m}_{i}' for m in missing)}")
    return n


def book_features(book: pd.DataFrame, *, depth: int | None = None) -> pd.DataFrame:
    """Mid, spread, microprice and top-N imbalance of every snapshot.

    ::

        mid        = (bid_1 + ask_1) / 2
        spread     = ask_1 - bid_1                spread_bps = spread / mid * 1e4
        microprice = (bid_1 * ask_qty_1 + ask_1 * bid_qty_1) / (bid_qty_1 + ask_qty_1)
        imbalance  = (B - A) / (B + A),  B = sum bid_qty_1..N,  A = sum ask_qty_1..N
                     (in [-1, 1]; +1 = all resting size on the bid; NaN levels count 0)

    Parameters
    ----------
    book : DataFrame
        ``book``/``book_<N>`` frame (bid_px_1.., bid_qty_1.., ask_px_1.., ask_qty_1..) or a
        ``quotes`` frame (bid_px, bid_qty, ask_px, ask_qty) taken as one level.
    depth : int, optional
        N for the imbalance; default every level in the frame.

    Returns
    -------
    DataFrame
        Same index, columns ``BOOK_FEATURES``. A snapshot with an empty side gives NaN.

    Raises
    ------
    ResearchError
        Missing level columns or ``depth`` outside 1..N.
    """
    book = _as_book(book)
    n = book_depth(book)
    depth = n if depth is None else depth
    if not isinstance(depth, (int, np.integer)) or not 1 <= depth <= n:
        raise ResearchError(f"depth must be an int in 1..{n} (levels in the frame), got {depth!r}")
    bid = book["bid_px_1"].to_numpy(np.float64)
    ask = book["ask_px_1"].to_numpy(np.float64)
    bq = book["bid_qty_1"].to_numpy(np.float64)
    aq = book["ask_qty_1"].to_numpy(np.float64)
    bsum = np.nansum(book[[f"bid_qty_{i}" for i in range(1, depth + 1)]].to_numpy(np.float64), axis=1)
    asum = np.nansum(book[[f"ask_qty_{i}" for i in range(1, depth + 1)]].to_numpy(np.float64), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mid = (bid + ask) / 2
        spread = ask - bid
        out = pd.DataFrame(
            {
                "mid": mid,
                "spread": spread,
                "spread_bps": spread / mid * 1e4,
                "microprice": (bid * aq + ask * bq) / (bq + aq),
                "imbalance": (bsum - asum) / (bsum + asum),
            },
            index=book.index,
        )
    return out


def book_bars(book: pd.DataFrame, freq, *, depth: int | None = None, start=None, end=None, uncovered: pd.DataFrame | None = None) -> pd.DataFrame:
    """Book features sampled on a grid: the **last snapshot in each bin** [t, t + freq).

    The value labelled t is the book as it stood at the bin's close (its last snapshot,
    taken before t + freq), so joining it with something observed at t looks ahead by up
    to one bin; shift by one bin for a strictly causal series. Empty bins are NaN with
    ``count`` 0 (``.ffill()`` them to carry the last book forward, where ``coverage`` says
    the book was in sync). Grids need not nest: 100 ms snapshots go to 250 ms bins as well
    as to 500 ms or 1 s.

    Parameters
    ----------
    book : DataFrame
        As for ``book_features``.
    freq : str | pandas offset
        Grid, e.g. "250ms", "500ms", "1s".
    depth : int, optional
        Levels in the imbalance (default all).
    start, end : timestamp-like, optional
        Bin range [start, end), as in ``trade_bars``.
    uncovered : DataFrame, optional
        Spans where the feed was down or the book out of sync
        (``research.coverage.uncovered``); adds ``coverage``.

    Returns
    -------
    DataFrame
        Index ``ts`` = bin open; columns ``BOOK_FEATURES`` + ``count`` (snapshots in the
        bin) [+ ``coverage``, the share of the bin the book was connected and in sync].

    Raises
    ------
    ResearchError
        As ``book_features``; unsorted/naive index; bad frequency.
    """
    ts = utc_index_ns(book, what="book")
    feats = book_features(book, depth=depth)
    edges = _range_edges(ts, _offset(freq), start, end)
    b = _bounds(ts, edges)
    cols = {c: _reduce(feats[c].to_numpy(), b, _Agg.LAST) for c in BOOK_FEATURES}
    cols["count"] = np.diff(b).astype(np.int64)
    if uncovered is not None:
        cols["coverage"] = bin_coverage(edges, uncovered)
    return pd.DataFrame(cols, index=pd.DatetimeIndex(edges[:-1], tz="UTC", name="ts"))


# -- straight from the store ---------------------------------------------------------------
def table_coverage(table, symbol: str, start, end, *, as_of=None) -> pd.DataFrame:
    """``research.coverage.uncovered`` for a store table (its store, its ledger streams)."""
    return uncovered_spans(table.store, table.name, symbol, start, end, as_of=as_of, streams=streams_of(table.name))


def select_trade_bars(table, symbol: str, freq, *, start, end, as_of=None, coverage: bool = True, kinds=MARKET_ONLY) -> pd.DataFrame:
    """``trade_bars`` of one symbol's trades read from a store table, bins over [start, end).

    Parameters
    ----------
    table : tickstore Table
        ``store["trades"]`` (or any table with price/qty/side).
    symbol : str
        e.g. ``"binance:BTC/USDT:USDT"``.
    freq : str | pandas offset
    start, end : timestamp-like, tz-aware
        Event-time range; only these prints are read (pushed down into the files).
    as_of : None | timestamp | snapshot name
        Knowledge time of the read (see ``Table.select``).
    coverage : bool
        Read the gap ledger and the table's partitions as of ``as_of`` and give each bar
        its ``coverage`` (default True).
    kinds : tuple of TradeKind, or None
        As for ``trade_bars``: market prints by default.

    Returns
    -------
    DataFrame
        As ``trade_bars``, with every bin of [start, end) present [and ``coverage``].
    """
    columns = TRADE_COLUMNS if "kind" in table.schema.names else TRADE_COLUMNS[:3]
    trades = table.select(symbol, start, end, as_of=as_of, columns=columns)
    spans = table_coverage(table, symbol, start, end, as_of=as_of) if coverage else None
    return trade_bars(trades, freq, start=start, end=end, uncovered=spans, kinds=kinds)


def select_book_bars(
    table, symbol: str, freq, *, start, end, as_of=None, depth: int | None = None, coverage: bool = True
) -> pd.DataFrame:
    """``book_bars`` of one symbol's snapshots read from a store table, bins over [start, end).

    Parameters
    ----------
    table : tickstore Table
        ``store["book"]``, ``store["book_<N>"]`` or ``store["quotes"]``.
    symbol, freq, start, end, as_of, coverage :
        As for ``select_trade_bars`` (book tables also count order-book resyncs as gaps).
    depth : int, optional
        Levels in the imbalance (default all).

    Returns
    -------
    DataFrame
        As ``book_bars``, with every bin of [start, end) present [and ``coverage``].
    """
    book = table.select(symbol, start, end, as_of=as_of)
    spans = table_coverage(table, symbol, start, end, as_of=as_of) if coverage else None
    return book_bars(book, freq, depth=depth, start=start, end=end, uncovered=spans)


_TABLE_BAR = re.compile(r"^ohlcv_(\d+)(s|m|h|d)$")


def select_bars(table, symbol: str, *, start, end, as_of=None, bar_freq=None, coverage: bool = True) -> pd.DataFrame:
    """Stored bars (an ``ohlcv_<freq>`` table, or a derived one) of [start, end), with coverage.

    Parameters
    ----------
    table : tickstore Table
        e.g. ``store["ohlcv_1m"]``.
    symbol, start, end, as_of :
        As for ``select_trade_bars``.
    bar_freq : str, optional
        Bar length; default from the table name (``ohlcv_1m`` -> 1 minute), else the
        index spacing.
    coverage : bool
        Add ``coverage``: the share of each bar's span [ts, ts + bar) the gap ledger and the
        table's partitions say was covered. Bars absent from the table are absent here too
        (``volatility.on_grid`` counts them as uncovered).

    Returns
    -------
    DataFrame
        The stored rows of [start, end) [+ ``coverage``].
    """
    bars = table.select(symbol, start, end, as_of=as_of)
    if not coverage:
        return bars
    if bar_freq is None:
        m = _TABLE_BAR.match(table.name)
        if m:
            bar_freq = pd.Timedelta(int(m.group(1)), {"s": "s", "m": "min", "h": "h", "d": "D"}[m.group(2)])
    step = _bar_step_ns(bars, utc_index_ns(bars, what="bars"), bar_freq) if len(bars) else 1
    spans = table_coverage(table, symbol, start, end, as_of=as_of)
    ts = bars.index.as_unit("ns").asi8
    bars["coverage"] = span_coverage(ts, ts + step, spans)
    return bars
