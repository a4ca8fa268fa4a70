"""Input checks shared by the research functions (one place, one wording)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from tickstore.clock import to_ns
from tickstore.errors import FrameError

from .errors import ResearchError


def require_columns(frame: pd.DataFrame, columns: Iterable[str], *, what: str) -> None:
    """Raise ``ResearchError`` naming the missing columns and the ones present."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ResearchError(f"{what} needs columns {missing}; the frame has {list(frame.columns)}")


def utc_index_ns(frame: pd.DataFrame | pd.Series, *, what: str, sorted_: bool = True) -> np.ndarray:
    """The event-time index as int64 ns since the epoch, after checking it is UTC and sorted.

    Store frames are UTC and sorted by construction; a hand-made frame that is not would
    silently put prints in the wrong bins, so it is refused rather than fixed.
    """
    idx = frame.index
    if not isinstance(idx, pd.DatetimeIndex):
        raise ResearchError(f"{what} must be indexed by a DatetimeIndex (event time), got {type(idx).__name__}")
    if idx.tz is None or str(idx.tz) not in ("UTC", "utc"):
        raise ResearchError(f"{what} index must be tz-aware UTC, got tz={idx.tz!r}; use .tz_localize('UTC')")
    if idx.hasnans:
        raise ResearchError(f"{what} index holds NaT at position {int(np.flatnonzero(idx.isna())[0])}")
    ns = idx.as_unit("ns").asi8
    if sorted_ and len(ns) > 1:
        bad = np.flatnonzero(ns[1:] < ns[:-1])
        if len(bad):
            i = int(bad[0])
            raise ResearchError(f"{what} index is not sorted: {idx[i]} is followed by {idx[i + 1]} (position {i})")
    return ns


def to_utc(value, *, what: str) -> pd.Timestamp:
    """A tz-aware UTC ``Timestamp`` by the store's rule (``Table.select`` takes the same).

    Accepted: tz-aware datetimes/Timestamps, ``date`` (its UTC midnight), ISO strings (no
    offset means UTC, as everywhere in the store: "2024-08-08", "2024-08-08T12:00Z"),
    ``numpy.datetime64`` (UTC). Naive datetimes are refused: no silent local time.
    """
    try:
        return pd.Timestamp(to_ns(value, what=what), tz="UTC")
    except FrameError as exc:
        raise ResearchError(str(exc)) from None
