"""Funding analytics: per-hour normalisation, APR, carry, cross-venue spreads, forecasts.

Input is a ``funding`` table frame: index ``ts`` = settlement time (UTC), ``rate`` = the
rate paid at that settlement for the interval that ends there, ``interval_h`` = that
interval in hours. A positive rate means longs pay shorts, so a short perp *earns* it.

Venue conventions are encoded once, in ``SCHEDULES`` (rows carry their own
``interval_h``; the schedule is what loaders use when a source does not say)::

    venue        interval   settlements (UTC)
    binance      8 h        00:00 08:00 16:00     (BTCUSDT; some symbols run 4 h)
    bybit        8 h        00:00 08:00 16:00     (linear; tickers give fundingIntervalHour)
    hyperliquid  8 h        until 2023-06-08 00:00
                 1 h        every hour from 2023-06-08 01:00

A rate settled at ``ts`` with interval ``k`` hours accrues over (ts - k h, ts]: spread
over hours, it is ``rate / k`` in each of those k hours. Annualisation uses a 365-day year
(``research.conventions``): crypto funding settles every day of the year.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._frames import require_columns, utc_index_ns
from .conventions import HOURS_PER_YEAR, Compounding, annualise
from .errors import ResearchError

__all__ = [
    "Venue",
    "FundingSchedule",
    "SCHEDULES",
    "venue_of",
    "hourly_rate",
    "apr",
    "carry",
    "hourly_grid",
    "PairChoice",
    "cross_venue_spread",
    "average_apr",
    "predicted_vs_settled",
    "FundingStats",
    "funding_stats",
]

_HOUR = pd.Timedelta(hours=1)


class Venue(enum.Enum):
    """Venues with a funding convention; values are the ccxt exchange ids of symbols."""

    BINANCE = "binance"
    BYBIT = "bybit"
    HYPERLIQUID = "hyperliquid"


@dataclass(frozen=True)
class FundingSchedule:
    """A venue's funding interval over time.

    ``regimes`` is ``((effective_from, interval_h), ...)`` sorted by time; the first
    regime's ``effective_from`` is ``None`` (since listing). A settlement at ``ts`` uses the
    last regime whose ``effective_from <= ts``.
    """

    venue: Venue
    regimes: tuple[tuple[pd.Timestamp | None, float], ...]

    def __post_init__(self):
        if not self.regimes or self.regimes[0][0] is not None:
            raise ResearchError(f"{self.venue}: the first regime must start at None (since listing), got {self.regimes!r}")
        starts = [s for s, _ in self.regimes[1:]]
        if starts != sorted(starts) or any(k <= 0 for _, k in self.regimes):
            raise ResearchError(f"{self.venue}: regimes must be time-sorted with positive intervals, got {self.regimes!r}")

    def interval_h(self, ts: pd.DatetimeIndex) -> np.ndarray:
        """Funding interval (hours) in force at each settlement time."""
        out = np.full(len(ts), float(self.regimes[0][1]))
        for start, hours in self.regimes[1:]:
            out[np.asarray(ts >= start)] = float(hours)
        return out


SCHEDULES: dict[Venue, FundingSchedule] = {
    Venue.BINANCE: FundingSchedule(Venue.BINANCE, ((None, 8.0),)),
    Venue.BYBIT: FundingSchedule(Venue.BYBIT, ((None, 8.0),)),
    # Hyperliquid paid every 8 h at launch and moved to hourly payments on 2023-06-08: its
    # fundingHistory shows the last 8-hourly settlement at 00:00 and hourly ones from 01:00.
    Venue.HYPERLIQUID: FundingSchedule(
        Venue.HYPERLIQUID, ((None, 8.0), (pd.Timestamp("2023-06-08 01:00", tz="UTC"), 1.0))
    ),
}


def venue_of(symbol: str) -> Venue:
    """The ``Venue`` of a tickstore symbol (``"<ccxt id>:<unified symbol>"``).

    Raises
    ------
    ResearchError
        If the exchange id has no funding convention here.
    """
    exchange = str(symbol).split(":", 1)[0]
    try:
        return Venue(exchange)
    except ValueError:
        raise ResearchError(
            f"no funding convention for exchange {exchange!r} (symbol {symbol!r}); known: {[v.value for v in Venue]}"
        ) from None


def _check(funding: pd.DataFrame, *, what: str) -> None:
    require_columns(funding, ("rate", "interval_h"), what=what)
    utc_index_ns(funding, what=f"{what} funding")
    bad = funding["interval_h"].to_numpy(np.float64)
    bad = np.flatnonzero(~(bad > 0))
    if len(bad):
        i = int(bad[0])
        raise ResearchError(f"{what}: interval_h must be > 0, got {funding['interval_h'].iloc[i]} at {funding.index[i]}")


def hourly_rate(funding: pd.DataFrame) -> pd.Series:
    """Funding per hour of each settlement: ``rate / interval_h``.

    Parameters
    ----------
    funding : DataFrame
        A ``funding`` frame (``rate``, ``interval_h``).

    Returns
    -------
    Series named ``hourly_rate``, same index.
    """
    _check(funding, what="hourly_rate")
    return (funding["rate"] / funding["interval_h"]).rename("hourly_rate")


def apr(funding: pd.DataFrame, *, compounding: Compounding = Compounding.SIMPLE) -> pd.Series:
    """Annualised funding of each settlement, as if that rate were paid all year.

    SIMPLE:     rate * (8760 / interval_h)
    COMPOUNDED: (1 + rate) ** (8760 / interval_h) - 1

    Returns
    -------
    Series named ``apr`` (a fraction: 0.1095 = 10.95 %/year), same index. Its mean weights
    settlements, not time: average across intervals with ``average_apr``.
    """
    _check(funding, what="apr")
    periods = HOURS_PER_YEAR / funding["interval_h"].to_numpy(np.float64)
    return pd.Series(annualise(funding["rate"].to_numpy(np.float64), periods, compounding=compounding), index=funding.index, name="apr")


def carry(funding: pd.DataFrame, *, compounding: Compounding = Compounding.SIMPLE) -> pd.Series:
    """Cumulative funding earned by a constant short perpetual of notional 1.

    SIMPLE:     running sum of the rates (funding not reinvested)
    COMPOUNDED: running product of (1 + rate), minus 1 (funding reinvested)

    Returns
    -------
    Series named ``carry`` at each settlement time (a long position earns minus this).
    """
    _check(funding, what="carry")
    r = funding["rate"].astype(np.float64)
    out = r.cumsum() if compounding is Compounding.SIMPLE else np.expm1(np.log1p(r).cumsum())
    return out.rename("carry")


def hourly_grid(funding: pd.DataFrame) -> pd.Series:
    """Spread each settlement over the hours it accrued in: k hourly rows of ``rate / k``.

    A settlement at 08:00 with an 8 h interval becomes rows at 01:00, 02:00, ..., 08:00,
    each labelled by the **end** of its hour (the settlement convention). Settlement times
    must be whole hours (the loaders round the venue's few-ms jitter away).

    Returns
    -------
    Series named ``hourly_rate`` on whole-hour timestamps; hours no settlement covers
    (a missing record) are absent, never invented.

    Raises
    ------
    ResearchError
        Non-hourly settlement times or non-integer intervals.
    """
    _check(funding, what="hourly_grid")
    ts = funding.index
    if (ts != ts.floor("h")).any():
        i = int(np.flatnonzero(ts != ts.floor("h"))[0])
        raise ResearchError(f"hourly_grid needs whole-hour settlement times; got {ts[i]} (row {i}); round them first")
    k = funding["interval_h"].to_numpy(np.float64)
    if np.any(k != np.round(k)):
        raise ResearchError(f"hourly_grid needs whole-hour intervals, got {sorted(set(k[k != np.round(k)]))[:5]}")
    k = k.astype(np.int64)
    rep = np.repeat(np.arange(len(ts)), k)
    # offset within each settlement's run: 0 for the hour ending at the settlement, 1 before...
    back = np.arange(len(rep)) - np.repeat(np.cumsum(k) - k, k)
    back = np.repeat(k, k) - 1 - back
    hours = ts.as_unit("ns").asi8[rep] - back * _HOUR.value
    out = pd.Series(funding["rate"].to_numpy(np.float64)[rep] / k[rep], index=pd.DatetimeIndex(hours, tz="UTC", name="ts"), name="hourly_rate")
    if out.index.has_duplicates:
        dup = out.index[out.index.duplicated()][0]
        raise ResearchError(f"hourly_grid: settlements overlap at hour {dup}; check interval_h of the rows around it")
    return out


class PairChoice(enum.Enum):
    """How ``cross_venue_spread`` picks the pair at each hour.

    CAUSAL:    from the last settled per-hour rates known when the hour starts (what a
               trader could act on); the spread is what that pair then paid in the hour.
    HINDSIGHT: from the hour's own rates, settled after it: the best pair with hindsight,
               an upper bound no strategy earns (its mean is several times the causal one
               on the shared BTC histories).
    """

    CAUSAL = "causal"
    HINDSIGHT = "hindsight"


def _known_before(funding: pd.DataFrame, hours_ns: np.ndarray) -> np.ndarray:
    """Per-hour rate of the last settlement at or before each time (NaN: none yet)."""
    ts = funding.index.as_unit("ns").asi8
    per_hour = (funding["rate"] / funding["interval_h"]).to_numpy(np.float64)
    k = np.searchsorted(ts, hours_ns, side="right") - 1
    return np.where(k >= 0, per_hour[np.maximum(k, 0)], np.nan)


def _pick_pairs(signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(short, long) column positions per row: highest and lowest signal, never the same
    venue (on a tie the long leg is the lowest of the *other* venues)."""
    hi = np.nanargmax(signal, axis=1)
    others = signal.copy()
    others[np.arange(len(signal)), hi] = np.nan
    lo = np.nanargmin(others, axis=1)
    return hi, lo


def cross_venue_spread(funding: dict[str, pd.DataFrame], *, choose: PairChoice = PairChoice.CAUSAL) -> pd.DataFrame:
    """Hour-by-hour funding of several venues and the carry pair chosen at each hour.

    Each venue's settlements are spread over their hours (``hourly_grid``), so an 8-hourly
    venue and an hourly one compare on the same per-hour footing. At each hour: short the
    perp on the venue expected to pay the most, long the one expected to pay the least
    (two distinct venues, also when rates tie). By default the expectation is the last
    settled rate per hour known when the hour starts (``PairChoice.CAUSAL``); the spread is
    what that pair then paid over the hour, and can be negative.

    Parameters
    ----------
    funding : dict
        ``{name: funding frame}``, e.g. ``{"binance": ..., "bybit": ..., "hyperliquid": ...}``.
    choose : PairChoice
        CAUSAL (default) or HINDSIGHT (the hour's own rates: an upper bound, named so).

    Returns
    -------
    DataFrame
        Index = hour end (UTC); one column of hourly rate per venue, then ``short``,
        ``long`` (venue names), ``expected`` (the per-hour spread the choice was made on:
        known at the hour's start for CAUSAL), ``spread`` (paid in the hour: short's rate
        minus long's) and ``spread_apr`` (``spread * 8760``). Hours where fewer than two
        venues have both a known and a paid rate are dropped.

    Raises
    ------
    ResearchError
        Fewer than two venues, no hour in common, or ``choose`` not a ``PairChoice``.
    """
    if len(funding) < 2:
        raise ResearchError(f"cross_venue_spread needs at least two venues, got {list(funding)}")
    if not isinstance(choose, PairChoice):
        raise ResearchError(f"choose must be a PairChoice (CAUSAL or HINDSIGHT), got {choose!r}")
    wide = pd.concat({name: hourly_grid(f) for name, f in funding.items()}, axis=1)
    paid = wide.to_numpy(np.float64)
    if choose is PairChoice.HINDSIGHT:
        signal = paid
    else:
        start_ns = wide.index.as_unit("ns").asi8 - _HOUR.value  # the hour (h - 1 h, h] starts at h - 1 h
        signal = np.column_stack([_known_before(f, start_ns) for f in funding.values()])
        signal = np.where(np.isnan(paid), np.nan, signal)  # only venues quoted in the hour
    keep = (~np.isnan(signal)).sum(axis=1) >= 2
    if not keep.any():
        raise ResearchError(f"venues {list(funding)} share no funding hour" + ("" if choose is PairChoice.HINDSIGHT else " with a rate known before it"))
    wide, paid, signal = wide[keep], paid[keep], signal[keep]
    names = np.array(list(funding), dtype=object)
    hi, lo = _pick_pairs(signal)
    rows = np.arange(len(wide))
    out = wide.copy()
    out["short"] = names[hi]
    out["long"] = names[lo]
    out["expected"] = signal[rows, hi] - signal[rows, lo]
    out["spread"] = paid[rows, hi] - paid[rows, lo]
    out["spread_apr"] = out["spread"] * HOURS_PER_YEAR
    return out


def average_apr(funding: pd.DataFrame, freq=None, *, compounding: Compounding = Compounding.SIMPLE):
    """Time-weighted funding APR: every hour funded counts once, whatever the interval.

    Averaging ``apr`` per settlement weights an hourly settlement like an 8-hourly one,
    so a venue that moved from 8-hourly to hourly payments (Hyperliquid, 2023-06-08)
    gets its hourly regime counted 8 times over. Here::

        SIMPLE:      sum(rate) / sum(interval_h) * 8760
        COMPOUNDED:  prod(1 + rate) ** (8760 / sum(interval_h)) - 1

    Parameters
    ----------
    funding : DataFrame
        A ``funding`` frame (one venue).
    freq : str, optional
        Calendar buckets ("D", "W-MON", "MS", ...): each settlement's rate is spread over
        the hours it accrued in (``hourly_grid``) and each bucket averages the hours in it.
        Default: one figure over the whole frame.
    compounding : Compounding

    Returns
    -------
    float, or Series named ``apr`` indexed by bucket start (buckets with no funded hour are
    NaN).
    """
    _check(funding, what="average_apr")
    if freq is None:
        if funding.empty:
            raise ResearchError("average_apr of an empty funding frame")
        r = funding["rate"].to_numpy(np.float64)
        hours = funding["interval_h"].to_numpy(np.float64).sum()
        if compounding is Compounding.SIMPLE:
            return float(r.sum() / hours * HOURS_PER_YEAR)
        return float(np.expm1(np.log1p(r).sum() * HOURS_PER_YEAR / hours))
    g = hourly_grid(funding)
    # an hour labelled by its end h accrued over (h - 1 h, h]: bucket it by its start
    g.index = g.index - _HOUR
    if compounding is Compounding.SIMPLE:
        out = g.resample(freq).mean() * HOURS_PER_YEAR
    else:
        out = np.expm1(np.log1p(g).resample(freq).mean() * HOURS_PER_YEAR)
    return out.rename("apr")


def predicted_vs_settled(mark: pd.DataFrame, funding: pd.DataFrame) -> pd.DataFrame:
    """The last predicted rate published before each settlement next to the settled rate.

    The prediction for a settlement is the ``funding_rate`` of the last ``mark`` row whose
    ``next_funding_ts`` is that settlement and whose ``ts`` is before it (what a trader
    could see just before funding was fixed).

    Parameters
    ----------
    mark : DataFrame
        A ``mark`` frame (``funding_rate``, ``next_funding_ts``).
    funding : DataFrame
        A ``funding`` frame of the same symbol.

    Returns
    -------
    DataFrame
        Index = settlement time (only settlements that have a prediction); columns
        ``predicted``, ``predicted_at``, ``settled``, ``error`` (settled - predicted).

    Raises
    ------
    ResearchError
        Missing columns, or no settlement has a prediction.
    """
    require_columns(mark, ("funding_rate", "next_funding_ts"), what="predicted_vs_settled mark")
    _check(funding, what="predicted_vs_settled")
    utc_index_ns(mark, what="mark")
    m = mark[mark.index < mark["next_funding_ts"]]
    last = m.groupby("next_funding_ts", sort=True).tail(1)
    pred = pd.DataFrame(
        {"predicted": last["funding_rate"].to_numpy(np.float64), "predicted_at": last.index},
        index=pd.DatetimeIndex(last["next_funding_ts"], name="ts"),
    )
    out = pred.join(funding["rate"].rename("settled"), how="inner")
    if out.empty:
        raise ResearchError(
            f"no settlement has a prediction: predictions target {list(pred.index[:5])}, "
            f"settlements run {funding.index.min()} .. {funding.index.max()}"
        )
    out["error"] = out["settled"] - out["predicted"]
    return out


@dataclass(frozen=True)
class FundingStats:
    """Distribution of settled funding (rates per settlement unless named ``_apr``)."""

    n: int
    mean: float
    std: float
    median: float
    q05: float
    q95: float
    realised_apr: float            # sum(rate) / sum(interval_h) * 8760: funding per hour held
    share_negative: float          # fraction of settlements with rate < 0
    longest_negative_streak: int   # most consecutive settlements with rate < 0
    longest_negative_hours: float  # hours covered by that streak
    longest_negative_start: pd.Timestamp | None  # settlement ending its first interval


def funding_stats(funding: pd.DataFrame) -> FundingStats:
    """Distribution statistics of a funding series.

    Returns
    -------
    FundingStats
        Streaks count consecutive settlements, so a missing record does not break one.

    Raises
    ------
    ResearchError
        Empty or malformed frame.
    """
    _check(funding, what="funding_stats")
    if funding.empty:
        raise ResearchError("funding_stats of an empty funding frame")
    r = funding["rate"].to_numpy(np.float64)
    k = funding["interval_h"].to_numpy(np.float64)
    neg = r < 0
    # run lengths of consecutive negatives: label runs by the count of non-negatives so far
    run_id = np.cumsum(~neg)
    best_len, best_start, best_hours = 0, None, 0.0
    if neg.any():
        ids = run_id[neg]
        lengths = np.bincount(ids)
        top = int(np.argmax(lengths))  # first (earliest) longest run
        best_len = int(lengths[top])
        members = np.flatnonzero(neg & (run_id == top))
        best_start = funding.index[members[0]]
        best_hours = float(k[members].sum())
    return FundingStats(
        n=len(r),
        mean=float(r.mean()),
        std=float(r.std(ddof=1)) if len(r) > 1 else float("nan"),
        median=float(np.median(r)),
        q05=float(np.quantile(r, 0.05)),
        q95=float(np.quantile(r, 0.95)),
        realised_apr=float(r.sum() / k.sum() * HOURS_PER_YEAR),
        share_negative=float(neg.mean()),
        longest_negative_streak=best_len,
        longest_negative_hours=best_hours,
        longest_negative_start=best_start,
    )
