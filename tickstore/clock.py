"""Time: the injectable knowledge-time clock and the parsing of user-supplied times.

Two axes (SPEC section 1): *event time* (``start``/``end``/``date``: when the exchange says
it happened) and *knowledge time* (``as_of``: when the store committed it). Both are
handled as int64 nanoseconds since the epoch, UTC. A naive ``datetime`` is refused: it
could mean any zone. A string without an offset is read as UTC, because
``"2024-08-08"`` in a notebook always means the UTC day in this store.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
from typing import Protocol

import numpy as np
import pandas as pd

from .errors import FrameError

__all__ = ["Clock", "SystemClock", "FrozenClock", "to_ns", "to_day", "ns_to_timestamp", "NS_PER_DAY"]

NS_PER_DAY = 86_400_000_000_000
TIME_RANGE = "1677-09-21T00:12:43Z .. 2262-04-11T23:47:16Z: int64 nanoseconds UTC"
MAX_NS = np.iinfo(np.int64).max  # "+infinity": a version that is not superseded


class Clock(Protocol):
    """Source of knowledge time. ``now_ns`` returns UTC nanoseconds since the epoch."""

    def now_ns(self) -> int: ...


class SystemClock:
    """The wall clock (UTC)."""

    def now_ns(self) -> int:
        return time.time_ns()

    def __repr__(self) -> str:
        return "SystemClock()"


class FrozenClock:
    """A clock that only moves when told to; for tests and reproducible demos."""

    def __init__(self, start="2024-01-01T00:00:00Z"):
        self._ns = to_ns(start, what="start")
        self._lock = threading.Lock()

    def now_ns(self) -> int:
        with self._lock:
            return self._ns

    def now(self) -> pd.Timestamp:
        return ns_to_timestamp(self.now_ns())

    def advance(self, seconds: float = 1.0) -> pd.Timestamp:
        """Move forward by ``seconds`` (must be positive) and return the new time."""
        if seconds <= 0:
            raise ValueError(f"a clock only moves forward; got {seconds} s")
        with self._lock:
            self._ns += int(round(seconds * 1e9))
            return ns_to_timestamp(self._ns)

    def set(self, when) -> None:
        ns = to_ns(when, what="when")
        with self._lock:
            if ns < self._ns:
                raise ValueError(f"a clock only moves forward; {ns_to_timestamp(ns)} is before {ns_to_timestamp(self._ns)}")
            self._ns = ns

    def __repr__(self) -> str:
        return f"FrozenClock({ns_to_timestamp(self._ns).isoformat()})"


def ns_to_timestamp(ns: int) -> pd.Timestamp:
    return pd.Timestamp(int(ns), unit="ns", tz="UTC")


def to_ns(value, *, what: str = "time") -> int:
    """A time given by a user -> UTC nanoseconds.

    Accepts a tz-aware ``datetime``/``Timestamp``, a ``date`` (its UTC midnight), a string
    (ISO 8601; no offset means UTC), or ``numpy.datetime64`` (UTC by convention).

    Raises
    ------
    FrameError
        For naive datetimes, NaT, unparsable strings, times outside 1677..2262 or other
        types.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        raise FrameError(f"{what}={value!r}: give a timestamp or ISO string, not a bare integer")
    try:
        return _to_ns(value, what)
    except (OverflowError, pd.errors.OutOfBoundsDatetime):
        raise FrameError(f"{what}={value!r} is outside the times the store holds ({TIME_RANGE})") from None


def _to_ns(value, what: str) -> int:
    if isinstance(value, _dt.datetime) or isinstance(value, pd.Timestamp):
        if value.tzinfo is None:
            raise FrameError(f"{what}={value!r} is naive; give a tz-aware time (e.g. tz='UTC')")
        ts = pd.Timestamp(value).tz_convert("UTC")
    elif isinstance(value, _dt.date):
        ts = pd.Timestamp(value.year, value.month, value.day, tz="UTC")
    elif isinstance(value, str):
        try:
            ts = pd.Timestamp(value)
        except (ValueError, TypeError):
            raise FrameError(f"{what}={value!r} is not a time (use ISO 8601, e.g. 2024-08-08T12:00:00Z)") from None
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    elif isinstance(value, np.datetime64):
        ts = pd.Timestamp(value).tz_localize("UTC")
    else:
        raise FrameError(f"{what}={value!r} ({type(value).__name__}) is not a time")
    if ts is pd.NaT or pd.isna(ts):
        raise FrameError(f"{what} is NaT")
    return int(ts.as_unit("ns").value)  # OutOfBoundsDatetime past 2262: see to_ns


def to_day(value, *, what: str = "date") -> int:
    """A date given by a user -> days since the epoch (its UTC calendar day).

    A time that is not midnight is refused: ``insert``/``delete`` act on whole days.
    """
    ns = to_ns(value, what=what)
    if ns % NS_PER_DAY:
        raise FrameError(f"{what}={ns_to_timestamp(ns)} is not a UTC midnight; give a date like '2024-08-08'")
    return ns // NS_PER_DAY
