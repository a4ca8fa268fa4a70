"""Dask entry point: a store table as a dask DataFrame, one partition per stored file.

``select_dask`` lists the table's partitions (day files; month/year files for coarse
tables) of a symbol in [start, end) as known at ``as_of``, and makes one dask partition per
file: each task opens the store itself (so it runs in any worker process) and does an
ordinary ``Table.select`` of that partition's window at the same fixed knowledge time. The
concatenation equals ``Table.select(symbol, start, end, as_of=...)`` row for row.

``as_of=None`` is resolved to "now" once, when the graph is built, so tasks that run later
(or on another machine) still read one consistent state of the store.
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask import delayed

from ._frames import to_utc

__all__ = ["select_dask", "partition_windows"]


def _read(root: str, table: str, symbol: str, lo: pd.Timestamp, hi: pd.Timestamp, as_of: pd.Timestamp, columns):
    from tickstore import Tickstore  # imported in the worker

    with Tickstore(root) as store:
        return store[table].select(symbol, lo, hi, as_of=as_of, columns=columns)


def partition_windows(store, table: str, symbol: str, start=None, end=None, *, as_of=None) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Event-time windows [lo, hi) of the stored files of ``symbol`` that meet [start, end).

    Returns
    -------
    list of (lo, hi)
        One per partition with visible rows, clipped to [start, end), in time order.
    """
    t = store[table]
    part = t.schema.partition
    days = t.dates(symbol, as_of=as_of)
    s = to_utc(start, what="start") if start is not None else None
    e = to_utc(end, what="end") if end is not None else None
    out = []
    for d in days:
        first = int(d.value // 86_400_000_000_000)
        lo = d
        hi = pd.Timestamp(np.datetime64(part.end(first), "D")).tz_localize("UTC")
        lo, hi = max(lo, s) if s is not None else lo, min(hi, e) if e is not None else hi
        if lo < hi:
            out.append((lo, hi))
    return out


def select_dask(store, table: str, symbol: str, start=None, end=None, *, as_of=None, columns=None) -> dd.DataFrame:
    """``Table.select`` as a lazy dask DataFrame with one partition per stored file.

    Parameters
    ----------
    store : Tickstore
        Used here only to list partitions and fix ``as_of``; tasks reopen ``store.root``.
    table, symbol, start, end, columns :
        As ``Table.select`` (one symbol).
    as_of : None | time | snapshot name
        Knowledge time; ``None`` = now, resolved once here.

    Returns
    -------
    dask.dataframe.DataFrame
        Indexed by ``ts`` with known divisions (the partition boundaries); empty (one empty
        partition) when nothing is stored in the range.
    """
    ns = store.resolve_as_of(as_of)
    fixed = pd.Timestamp(ns if ns is not None else store.clock.now_ns(), unit="ns", tz="UTC")
    meta = store[table].schema.empty_frame(list(columns) if columns else None)
    windows = partition_windows(store, table, symbol, start, end, as_of=fixed)
    if not windows:
        return dd.from_pandas(meta, npartitions=1)
    parts = [delayed(_read)(str(store.root), table, symbol, lo, hi, fixed, list(columns) if columns else None) for lo, hi in windows]
    # a partition's rows lie in [lo, hi); the last division is the last window's end
    divisions = [lo for lo, _ in windows] + [windows[-1][1] - pd.Timedelta(1, "ns")]
    return dd.from_delayed(parts, meta=meta, divisions=divisions, verify_meta=False)
