"""Realised volatility, hour-of-day profiles and the hour x volatility x volume bubble data.

Returns are log returns of bar closes. An empty bar (NaN close: nothing traded) carries
the last close forward, i.e. a zero return, and the next trade's return spans the gap.

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

__all__ = ["log_returns", "realised_volatility", "hourly_table", "hour_of_day_profile"]


def log_returns(close: pd.Series) -> pd.Series:
    """Log returns of a close series, empty bars (NaN) carrying the last close forward.

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


def realised_volatility(bars: pd.DataFrame, *, window, bar_freq=None) -> pd.Series:
    """Rolling realised volatility of bar closes, annualised (365-day year).

    ``sqrt(mean(r ** 2 over the window) * periods_per_year(bar length))``, with the
    window a time span ending at (and including) each bar; windows not yet full are NaN.

    Parameters
    ----------
    bars : DataFrame
        Bars with ``close`` on a regular grid (``trade_bars`` output: empty bars present).
    window : str | Timedelta
        e.g. "24h", "7D"; a whole number of bars.
    bar_freq : str, optional
        Bar length; inferred from the index spacing when omitted.

    Returns
    -------
    Series named ``realised_vol`` (0.55 = 55 %/year), same index.

    Raises
    ------
    ResearchError
        Missing ``close``, bad index, window not a multiple of the bar length.
    """
    require_columns(bars, ("close",), what="realised_volatility")
    utc_index_ns(bars, what="bars")
    step = _bar_length(bars.index, bar_freq)
    w = pd.Timedelta(window)
    n = w / step
    if n < 1 or n != int(n):
        raise ResearchError(f"window {window!r} must be a whole number (>= 1) of {step} bars, it is {n:g}")
    r2 = log_returns(bars["close"]) ** 2
    mean_r2 = r2.rolling(w, min_periods=int(n)).mean()
    # a time window counts rows present; with a gap in the grid it holds fewer than n rows
    # and min_periods leaves it NaN instead of pretending it covers the whole span
    return np.sqrt(mean_r2 * periods_per_year(step)).rename("realised_vol")


def hourly_table(bars: pd.DataFrame, *, bar_freq=None) -> pd.DataFrame:
    """Hourly bins of fine bars with realised variance, hour of day and month.

    Parameters
    ----------
    bars : DataFrame
        Fine bars (1 s .. 1 h, dividing an hour) with open/high/low/close, ideally volume.
    bar_freq : str, optional
        Length of the input bars; inferred when omitted.

    Returns
    -------
    DataFrame
        Index ``ts`` = hour open (UTC); the hourly bars (``resample_bars``), plus
        ``realised_var`` (sum of squared fine log returns ending in the hour),
        ``realised_vol`` (``sqrt(realised_var * 8760)``, annualised), ``n_returns``,
        ``hour`` (0-23, UTC) and ``month`` ("YYYY-MM").
    """
    hourly = resample_bars(bars, "h", bar_freq=bar_freq)
    r2 = (log_returns(bars["close"]) ** 2).to_frame("r2").dropna()
    rv = reduce_bins(r2, "h", how={"r2": "sum"}, start=hourly.index[0], end=hourly.index[-1] + pd.Timedelta(hours=1))
    out = hourly.copy()
    out["realised_var"] = rv["r2"].to_numpy()
    out["n_returns"] = rv["count"].to_numpy()
    out["realised_vol"] = np.sqrt(out["realised_var"] * HOURS_PER_YEAR)
    out["hour"] = out.index.hour.astype(np.int64)
    out["month"] = out.index.strftime("%Y-%m")
    return out


def hour_of_day_profile(hourly: pd.DataFrame, *, by_month: bool = False) -> pd.DataFrame:
    """Volatility and volume by hour of day: the data of the bubble chart.

    Parameters
    ----------
    hourly : DataFrame
        ``hourly_table`` output.
    by_month : bool
        Group by (month, hour) instead of hour only.

    Returns
    -------
    DataFrame
        One row per hour of day (0-23, UTC) [per month]: ``volatility`` =
        ``sqrt(mean realised_var * 8760)`` (annualised vol of that hour), ``volume`` = mean
        volume per hour, ``n_hours``. Bubble chart: x = hour, y = volatility, size = volume.
    """
    require_columns(hourly, ("realised_var", "hour", "month"), what="hour_of_day_profile")
    keys = ["month", "hour"] if by_month else ["hour"]
    agg = {"realised_var": ("realised_var", "mean"), "n_hours": ("realised_var", "size")}
    if "volume" in hourly.columns:
        agg["volume"] = ("volume", "mean")
    g = hourly.groupby(keys, sort=True).agg(**agg)
    g["volatility"] = np.sqrt(g["realised_var"] * HOURS_PER_YEAR)
    cols = ["volatility"] + (["volume"] if "volume" in g.columns else []) + ["n_hours", "realised_var"]
    return g[cols]
