"""Realised volatility, hour-of-day profiles and the hour x volatility x volume bubble data.

Returns are log returns of bar closes. An empty bar (NaN close: nothing traded) carries
the last close forward, i.e. a zero return, and the next trade's return spans it.

**Coverage.** Nothing traded and nobody listening look the same in a bar; the bar's
``coverage`` (``research.bars``: the share of its span the feed covered) tells them apart.
Bars are put on their regular grid first: a bar missing from the frame (a missing day, a
hole in a table) is uncovered. A return is **valid** only if every bar it spans, from the
bar of the previous close to its own, has ``coverage >= min_coverage``::

    bars      j (close)   j+1 (empty)   j+2 (coverage 0.4)   i (close)
    return at i spans j .. i: one bar under min_coverage -> excluded (NaN), never counted
    as a big move (the price change over a gap) nor as zero variance (the empty hours)

Realised variance counts valid returns only: an hour is **covered** when at least
``min_coverage`` of its returns are valid (default: all of them), and its realised variance
is then scaled to the full hour (``sum r^2 * expected / valid``; the identity at 1.0).
Profiles average covered hours only.

Annualisation uses a 365-day year of 24 hours (``research.conventions``): crypto trades
around the clock every day, so there are 8760 hourly or 525,600 one-minute periods a year,
not 252 trading days. Realised variance over a window is the sum of squared returns in it;
annualised volatility is ``sqrt(mean squared return * periods per year)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.tseries.offsets import Tick

from ._frames import require_columns, utc_index_ns
from .bars import reduce_bins, resample_bars
from .conventions import HOURS_PER_YEAR, periods_per_year
from .errors import ResearchError

__all__ = ["log_returns", "on_grid", "valid_returns", "realised_volatility", "hourly_table", "hour_of_day_profile"]

_HOUR = pd.Timedelta(hours=1)


def log_returns(close: pd.Series) -> pd.Series:
    """Log returns of a close series, empty bars (NaN) carrying the last close forward.

    Coverage is not looked at here: use ``valid_returns`` for bars that may span gaps.

    Returns
    -------
    Series named ``log_return``; the first value (and any before the first close) is NaN.
    """
    c = close.astype(np.float64).ffill()
    if (c <= 0).any():
        bad = c.index[(c <= 0).to_numpy()][0]
        raise ResearchError(f"log returns need positive prices; close is {c[bad]} at {bad}")
    return np.log(c).diff().rename("log_return")


def _bar_length(index: pd.DatetimeIndex, bar_freq) -> pd.Timedelta:
    if bar_freq is not None:
        return pd.Timedelta(bar_freq)
    if isinstance(index.freq, Tick):
        return pd.Timedelta(index.freq.nanos)
    d = np.diff(index.asi8)
    d = d[d > 0]
    if not len(d):
        raise ResearchError("cannot infer the bar length from fewer than two bars; pass bar_freq=")
    return pd.Timedelta(int(d.min()))


def on_grid(bars: pd.DataFrame, *, bar_freq=None) -> pd.DataFrame:
    """The bars on their regular grid from the first to the last, with a ``coverage`` column.

    Bars absent from the frame are added with NaN values and coverage 0 (no data is not
    "nothing traded"); bars present keep their ``coverage``, or 1.0 when the frame has none.

    Raises
    ------
    ResearchError
        Bars off the grid of their length, or duplicated.
    """
    ts = utc_index_ns(bars, what="bars")
    step = _bar_length(bars.index, bar_freq).value
    out = bars.copy()
    if "coverage" not in out.columns:
        out["coverage"] = 1.0
    if not len(ts):
        return out
    off = (ts - ts[0]) % step
    if off.any() or (len(ts) > 1 and (np.diff(ts) == 0).any()):
        i = int(np.flatnonzero(off)[0]) if off.any() else int(np.flatnonzero(np.diff(ts) == 0)[0]) + 1
        raise ResearchError(f"bars must sit on a {pd.Timedelta(step)} grid, once each: {bars.index[i]} (row {i}) does not")
    n = (int(ts[-1]) - int(ts[0])) // step + 1
    if n == len(ts):
        return out
    full = pd.DatetimeIndex(np.int64(ts[0]) + np.int64(step) * np.arange(n, dtype=np.int64), tz="UTC", name=bars.index.name)
    out = out.reindex(full)
    out["coverage"] = out["coverage"].fillna(0.0)
    if "count" in out.columns:
        out["count"] = out["count"].fillna(0).astype(np.int64)
    return out


def valid_returns(bars: pd.DataFrame, *, min_coverage: float = 1.0) -> pd.Series:
    """Log returns of ``on_grid`` bars, NaN where the return spans an uncovered bar.

    Parameters
    ----------
    bars : DataFrame
        ``on_grid`` output (``close``, ``coverage``).
    min_coverage : float
        Least coverage every spanned bar needs (0..1).

    Returns
    -------
    Series named ``log_return`` on the bars' index.
    """
    _check_share(min_coverage)
    r = log_returns(bars["close"]).to_numpy()
    have = bars["close"].notna().to_numpy()
    bad = ~(bars["coverage"].to_numpy(np.float64) >= min_coverage)  # NaN coverage is bad
    n = len(r)
    idx = np.arange(n)
    # j(i): the last bar before i holding a close (-1: none)
    last = np.maximum.accumulate(np.where(have, idx, -1))
    j = np.concatenate([[-1], last[:-1]]) if n else last
    cbad = np.concatenate([[0], np.cumsum(bad)])
    spans_bad = cbad[idx + 1] - cbad[np.maximum(j, 0)] > 0  # any uncovered bar in j..i
    r = np.where((j >= 0) & ~spans_bad, r, np.nan)
    return pd.Series(r, index=bars.index, name="log_return")


def _check_share(x) -> None:
    if not (isinstance(x, (int, float, np.floating)) and 0 <= x <= 1):
        raise ResearchError(f"min_coverage must be a share in [0, 1], got {x!r}")


def realised_volatility(bars: pd.DataFrame, *, window, bar_freq=None, min_coverage: float = 1.0) -> pd.Series:
    """Rolling realised volatility of bar closes, annualised (365-day year).

    ``sqrt(mean(r ** 2 over the window's valid returns) * periods_per_year(bar length))``,
    with the window a time span ending at (and including) each bar. Returns spanning an
    uncovered bar are excluded (module doc); a window with fewer than ``min_coverage`` of
    its returns valid, or not yet full, is NaN.

    Parameters
    ----------
    bars : DataFrame
        Bars with ``close`` on a regular grid (``trade_bars`` output: empty bars present),
        and ``coverage`` if known; bars missing from the grid count as uncovered.
    window : str | Timedelta
        e.g. "24h", "7D"; a whole number of bars.
    bar_freq : str, optional
        Bar length; inferred from the index spacing when omitted.
    min_coverage : float
        Share of a window's returns that must be valid (default 1.0: all of them).

    Returns
    -------
    Series named ``realised_vol`` (0.55 = 55 %/year), on the bars' index.

    Raises
    ------
    ResearchError
        Missing ``close``, bad index, window not a multiple of the bar length.
    """
    require_columns(bars, ("close",), what="realised_volatility")
    utc_index_ns(bars, what="bars")
    step = _bar_length(bars.index, bar_freq)
    _check_share(min_coverage)
    w = pd.Timedelta(window)
    n = w / step
    if n < 1 or n != int(n):
        raise ResearchError(f"window {window!r} must be a whole number (>= 1) of {step} bars, it is {n:g}")
    n = int(n)
    grid = on_grid(bars, bar_freq=step)
    r2 = valid_returns(grid, min_coverage=1.0) ** 2
    rolling = r2.rolling(n, min_periods=1)
    valid = r2.notna().astype(np.float64).rolling(n, min_periods=n).sum()
    enough = valid >= max(1.0, np.ceil(min_coverage * n - 1e-9))
    vol = np.sqrt(rolling.mean() * periods_per_year(step)).where(enough)
    return vol.reindex(bars.index).rename("realised_vol")


def hourly_table(bars: pd.DataFrame, *, bar_freq=None, min_coverage: float = 1.0) -> pd.DataFrame:
    """Hourly bins of fine bars with realised variance, coverage, hour of day and month.

    Parameters
    ----------
    bars : DataFrame
        Fine bars (1 s .. 1 h, dividing an hour) with open/high/low/close, ideally volume
        and ``coverage`` (``select_trade_bars`` gives it); bars missing from the grid
        count as uncovered.
    bar_freq : str, optional
        Length of the input bars; inferred when omitted.
    min_coverage : float
        Share of an hour's returns that must be valid for the hour to be covered.

    Returns
    -------
    DataFrame
        Index ``ts`` = hour open (UTC); the hourly bars (``resample_bars``) with
        ``coverage`` (share of the hour the feed covered), plus ``n_returns`` (valid fine
        returns ending in the hour), ``covered`` (n_returns >= min_coverage x the bars in
        an hour), ``realised_var`` (sum of squared valid returns, scaled to the full hour;
        NaN when not covered), ``realised_vol`` (``sqrt(realised_var * 8760)``), ``hour``
        (0-23, UTC) and ``month`` ("YYYY-MM").
    """
    _check_share(min_coverage)
    step = _bar_length(bars.index, bar_freq)
    if _HOUR % step:
        raise ResearchError(f"bars of {step} do not divide an hour")
    per_hour = _HOUR // step
    grid = on_grid(bars, bar_freq=step)
    hourly = resample_bars(grid, "h", bar_freq=step)
    r2 = (valid_returns(grid, min_coverage=1.0) ** 2).to_frame("r2").dropna()
    rv = reduce_bins(r2, "h", how={"r2": "sum"}, start=hourly.index[0], end=hourly.index[-1] + _HOUR)
    out = hourly.copy()
    n_ret = rv["count"].to_numpy()
    covered = (n_ret > 0) & (n_ret >= min_coverage * per_hour - 1e-9)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(covered, rv["r2"].to_numpy() * per_hour / n_ret, np.nan)
    out["n_returns"] = n_ret
    out["covered"] = covered
    out["realised_var"] = var
    out["realised_vol"] = np.sqrt(var * HOURS_PER_YEAR)
    out["hour"] = out.index.hour.astype(np.int64)
    out["month"] = out.index.strftime("%Y-%m")
    return out


def hour_of_day_profile(hourly: pd.DataFrame, *, by_month: bool = False) -> pd.DataFrame:
    """Volatility and volume by hour of day over covered hours: the data of the bubble chart.

    Parameters
    ----------
    hourly : DataFrame
        ``hourly_table`` output.
    by_month : bool
        Group by (month, hour) instead of hour only.

    Returns
    -------
    DataFrame
        One row per hour of day (0-23, UTC) [per month] with a covered hour:
        ``volatility`` = ``sqrt(mean realised_var * 8760)`` (annualised vol of that hour),
        ``volume`` = mean volume per covered hour, ``n_hours`` (covered hours averaged),
        ``n_uncovered`` (hours of that hour of day left out). Bubble chart: x = hour,
        y = volatility, size = volume.
    """
    require_columns(hourly, ("realised_var", "hour", "month"), what="hour_of_day_profile")
    keys = ["month", "hour"] if by_month else ["hour"]
    covered = hourly["covered"].to_numpy(bool) if "covered" in hourly.columns else hourly["realised_var"].notna().to_numpy()
    agg = {"realised_var": ("realised_var", "mean"), "n_hours": ("realised_var", "size")}
    if "volume" in hourly.columns:
        agg["volume"] = ("volume", "mean")
    g = hourly.loc[covered].groupby(keys, sort=True).agg(**agg)
    g["n_uncovered"] = hourly.loc[~covered].groupby(keys, sort=True).size().reindex(g.index, fill_value=0).astype(np.int64)
    g["volatility"] = np.sqrt(g["realised_var"] * HOURS_PER_YEAR)
    cols = ["volatility"] + (["volume"] if "volume" in g.columns else []) + ["n_hours", "n_uncovered", "realised_var"]
    return g[cols]
