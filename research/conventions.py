"""Calendar conventions shared by every annualised figure in ``research``.

Crypto markets trade 24 hours a day, 7 days a week, 365 days a year: there is no trading
calendar, so a year is 365 days of 24 hours (8760 hours), never 252 trading days. Funding
APRs, annualised basis and annualised volatility all scale with ``YEAR`` below, so they
agree with each other and with what the venues publish.
"""

from __future__ import annotations

import enum

import numpy as np
import pandas as pd

from .errors import ResearchError

__all__ = ["DAYS_PER_YEAR", "HOURS_PER_YEAR", "YEAR", "Compounding", "periods_per_year", "annualise"]

DAYS_PER_YEAR = 365
HOURS_PER_YEAR = 24 * DAYS_PER_YEAR  # 8760
YEAR = pd.Timedelta(days=DAYS_PER_YEAR)


class Compounding(enum.Enum):
    """How a per-period rate is scaled to a year.

    SIMPLE:     r * n                 (what venues quote as "APR")
    COMPOUNDED: (1 + r) ** n - 1      (what a position reinvesting every period earns)
    with n = periods per year.
    """

    SIMPLE = "simple"
    COMPOUNDED = "compounded"


def periods_per_year(period) -> float:
    """How many ``period`` fit in a 365-day year.

    Parameters
    ----------
    period : str | pandas.Timedelta | datetime.timedelta
        A fixed length, e.g. ``"8h"``, ``"1min"``, ``pd.Timedelta(hours=1)``.

    Returns
    -------
    float
        ``YEAR / period``; e.g. 1095.0 for 8 h, 8760.0 for 1 h.

    Raises
    ------
    ResearchError
        If ``period`` is not a positive fixed length.
    """
    try:
        td = pd.Timedelta(period)
    except (TypeError, ValueError) as exc:
        raise ResearchError(f"period {period!r} is not a fixed length ({exc})") from None
    if td is pd.NaT or td <= pd.Timedelta(0):
        raise ResearchError(f"period must be positive, got {period!r}")
    return YEAR / td


def annualise(rate, periods: float | np.ndarray, *, compounding: Compounding):
    """Scale a per-period rate to a year (see ``Compounding``).

    Parameters
    ----------
    rate : float | numpy.ndarray | pandas.Series
        Rate per period, as a fraction (0.0001 = 1 bp).
    periods : float | numpy.ndarray
        Periods per year (``periods_per_year``), broadcast against ``rate``.
    compounding : Compounding

    Returns
    -------
    Same shape as ``rate``.
    """
    if compounding is Compounding.SIMPLE:
        return rate * periods
    if compounding is Compounding.COMPOUNDED:
        return np.expm1(np.log1p(rate) * periods)  # (1+r)**n - 1, accurate for tiny r
    raise ResearchError(f"compounding must be a Compounding, got {compounding!r}")
