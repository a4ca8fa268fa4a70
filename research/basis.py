"""Basis: a future or perpetual against spot (or an index) on aligned timestamps.

::

    basis      = future - spot
    basis_rel  = future / spot - 1
    basis_ann  = annualise(basis_rel, YEAR / horizon)        (365-day year)

    horizon:  dated future -> time left to expiry at each row (the basis converges to 0
                              at expiry, so that is the carry it promises)
              perpetual    -> its funding interval (funding pulls the premium back to the
                              index every interval; the annualised figure is comparable to
                              a funding APR)

Alignment: every ``spot`` observation is paired with the last ``future`` observation at or
before it (never after: no look-ahead), if that one is at most ``tolerance`` old. Rows
without such a partner are dropped, and the number dropped is in ``attrs["unmatched"]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._frames import require_columns, to_utc, utc_index_ns
from .conventions import HOURS_PER_YEAR, YEAR, Compounding, annualise
from .errors import ResearchError

__all__ = ["align", "basis", "premium"]


def align(left: pd.Series, right: pd.Series, *, tolerance, names: tuple[str, str] | None = None) -> pd.DataFrame:
    """Pair each ``left`` row with the last ``right`` row at or before it, within ``tolerance``.

    Parameters
    ----------
    left, right : Series
        UTC sorted time-indexed values (e.g. spot mid, perp mid).
    tolerance : str | Timedelta
        Largest allowed age of the ``right`` value, e.g. "1s"; "0s" = same timestamp only.
    names : (str, str), optional
        Column names; default the series' names.

    Returns
    -------
    DataFrame
        On ``left``'s timestamps, the two columns; unmatched rows dropped (count in
        ``attrs["unmatched"]``).

    Raises
    ------
    ResearchError
        Bad index, negative tolerance, duplicate names, or no row matched.
    """
    utc_index_ns(left, what="left")
    utc_index_ns(right, what="right")
    tol = pd.Timedelta(tolerance)
    if tol < pd.Timedelta(0):
        raise ResearchError(f"tolerance must be >= 0, got {tolerance!r}")
    a, b = names or (left.name or "left", right.name or "right")
    if a == b:
        raise ResearchError(f"the two series need different names, both are {a!r}; pass names=")
    lf = pd.DataFrame({a: left.to_numpy()}, index=left.index.as_unit("ns").rename("ts"))
    rf = pd.DataFrame({b: right.to_numpy()}, index=right.index.as_unit("ns").rename("ts"))
    m = pd.merge_asof(lf, rf, left_index=True, right_index=True, direction="backward", tolerance=tol)
    matched = m[b].notna().to_numpy()
    out = m[matched]
    if out.empty:
        raise ResearchError(
            f"no {a!r} row ({left.index.min()} .. {left.index.max()}) has a {b!r} row within {tol} before it "
            f"({right.index.min()} .. {right.index.max()})"
        )
    out.attrs["unmatched"] = int((~matched).sum())
    return out


def basis(
    spot: pd.Series,
    future: pd.Series,
    *,
    tolerance,
    expiry=None,
    funding_interval_h: float | None = None,
    compounding: Compounding = Compounding.SIMPLE,
) -> pd.DataFrame:
    """Absolute, relative and annualised basis of ``future`` over ``spot``.

    Parameters
    ----------
    spot, future : Series
        Prices (e.g. mids from ``bars.book_features``), UTC sorted index.
    tolerance : str | Timedelta
        Alignment tolerance (see module doc).
    expiry : timestamp-like, optional
        Expiry of a dated future; annualises over the time left. Rows at or after expiry
        are refused.
    funding_interval_h : float, optional
        For a perpetual: annualise over its funding interval. Give at most one of
        ``expiry`` / ``funding_interval_h``; with neither, ``basis_ann`` is not computed.
    compounding : Compounding
        SIMPLE (default) or COMPOUNDED annualisation.

    Returns
    -------
    DataFrame
        ``spot``, ``future``, ``basis``, ``basis_rel`` [, ``basis_ann``] on spot's times.

    Raises
    ------
    ResearchError
        Both horizons given, non-positive prices, rows past expiry, nothing aligned.
    """
    if expiry is not None and funding_interval_h is not None:
        raise ResearchError(f"give expiry (dated future) or funding_interval_h (perpetual), not both: {expiry!r}, {funding_interval_h!r}")
    out = align(spot, future, tolerance=tolerance, names=("spot", "future"))
    if (out[["spot", "future"]] <= 0).any().any():
        raise ResearchError("prices must be positive to compute a relative basis")
    out["basis"] = out["future"] - out["spot"]
    out["basis_rel"] = out["future"] / out["spot"] - 1
    if expiry is not None:
        exp = to_utc(expiry, what="expiry")
        left = exp - out.index
        if (left <= pd.Timedelta(0)).any():
            raise ResearchError(f"rows at or after expiry {exp}: last row {out.index[-1]}")
        periods = (YEAR / left).to_numpy(np.float64)
        out["basis_ann"] = annualise(out["basis_rel"].to_numpy(), periods, compounding=compounding)
    elif funding_interval_h is not None:
        if not funding_interval_h > 0:
            raise ResearchError(f"funding_interval_h must be > 0, got {funding_interval_h!r}")
        out["basis_ann"] = annualise(out["basis_rel"].to_numpy(), HOURS_PER_YEAR / funding_interval_h, compounding=compounding)
    return out


def premium(mark: pd.DataFrame, *, funding_interval_h: float | None = None) -> pd.DataFrame:
    """Premium of the mark price over the index price, row by row of a ``mark`` frame.

    Returns
    -------
    DataFrame
        ``index_px``, ``mark_px``, ``premium`` (mark - index), ``premium_rel``
        (mark / index - 1) and, with ``funding_interval_h``, ``premium_ann``.
    """
    require_columns(mark, ("mark_px", "index_px"), what="premium")
    utc_index_ns(mark, what="mark")
    out = mark[["index_px", "mark_px"]].astype(np.float64).copy()
    out["premium"] = out["mark_px"] - out["index_px"]
    out["premium_rel"] = out["mark_px"] / out["index_px"] - 1
    if funding_interval_h is not None:
        out["premium_ann"] = annualise(out["premium_rel"].to_numpy(), HOURS_PER_YEAR / funding_interval_h, compounding=Compounding.SIMPLE)
    return out
