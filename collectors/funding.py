"""Settled funding rows: settlement times on the hour and the interval each rate covers.

Shared by the REST backfill and the importers, so the ``funding`` table's key (``ts``, the
settlement time) is the same whichever way a settlement arrives.

Venues stamp a settlement when their funding job ran: a few ms to ~1 s after the hour
(Binance's history, Hyperliquid's ``fundingHistory``, freqtrade's ``funding_rate`` files
that copy them), and Hyperliquid's 2023-05-23 08:00 settlement was stamped 08:23:53.
``settlement_times`` snaps every stamp within ``max_drift`` (30 minutes) to the nearest
hour and refuses the rest (not a funding time) and two stamps of one hour.

``funding_intervals``: the hours a settlement covers, from the spacing of the
settlements around it::

    gap to the previous settlement == a neighbouring gap (before it, or after)  -> that gap
        (a regime change is seen at once: Hyperliquid's 8 h -> 1 h on 2023-06-08 gives
         00:00 -> 8, 01:00 -> 1)
    otherwise (a settlement missing around it)                                  -> the
        shorter of the gaps to the previous and the next settlement
    no neighbour at all                                                         -> nominal
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tickstore.errors import TickstoreError

__all__ = ["SettlementError", "settlement_times", "funding_intervals", "MAX_STAMP_DRIFT"]

MAX_STAMP_DRIFT = pd.Timedelta(minutes=30)
_HOUR_NS = 3_600_000_000_000


class SettlementError(TickstoreError, ValueError):
    """Times that are not funding settlements (too far off the hour, or two in one hour)."""


def settlement_times(ts, *, max_drift: pd.Timedelta = MAX_STAMP_DRIFT, source: str = "") -> pd.DatetimeIndex:
    """Venue-stamped settlement times (UTC) snapped to the nearest whole hour.

    Parameters
    ----------
    ts
        Times (tz-aware, or int64 ns since the epoch, UTC).
    max_drift
        The largest distance to the hour that is still a settlement stamp.
    source
        Named in error messages (a file, a symbol).

    Raises
    ------
    SettlementError
        A time ``max_drift`` or more off the hour, or two times snapping to one hour.
    """
    idx = pd.DatetimeIndex(ts) if not isinstance(ts, np.ndarray) or ts.dtype.kind != "i" else pd.DatetimeIndex(
        ts.view("M8[ns]"), tz="UTC")
    if idx.tz is None:
        raise SettlementError(f"{source}: settlement times must be UTC (tz-aware), got naive times")
    idx = idx.tz_convert("UTC").as_unit("ns")
    rounded = idx.round("h")
    drift = np.abs(idx.asi8 - rounded.asi8)
    if len(drift) and drift.max() >= max_drift.value:
        i = int(np.argmax(drift))
        raise SettlementError(f"{source}: settlement {idx[i]} is {pd.Timedelta(int(drift[i]))} off the hour; "
                              f"not a funding time?")
    if rounded.has_duplicates:
        raise SettlementError(f"{source}: two settlements snap to {rounded[rounded.duplicated()][0]}")
    return pd.DatetimeIndex(rounded, name="ts")


def funding_intervals(ts_ns, around_ns=None, nominal: float | None = None) -> np.ndarray:
    """Hours each settlement of ``ts_ns`` covers (see the module docstring).

    ``around_ns``: every settlement known around them (sorted; default ``ts_ns`` itself),
    so a day's rows see their neighbours in the days before and after.
    """
    ts = np.asarray(ts_ns, dtype=np.int64)
    around = np.unique(np.asarray(ts if around_ns is None else around_ns, dtype=np.int64))
    out = np.empty(len(ts), dtype=np.float64)
    for i, t in enumerate(ts):
        j = int(np.searchsorted(around, t))
        prev = t - around[j - 1] if j > 0 else None
        before = around[j - 1] - around[j - 2] if j > 1 else None
        nxt = around[j + 1] - t if j + 1 < len(around) else None
        if prev is not None and (prev == before or prev == nxt):
            gap = prev
        else:
            gaps = [g for g in (prev, nxt) if g is not None and g > 0]
            gap = min(gaps) if gaps else None
        out[i] = max(1.0, round(gap / _HOUR_NS)) if gap else (nominal if nominal is not None else np.nan)
    return out
