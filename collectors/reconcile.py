"""Rows of a keyless table that are already stored: the multiset difference.

Tables without a key (``liquidations``: a forced order has no exchange id, and two of
the same side, price, size and time in one frame are two orders) keep every row appended,
so a path that may produce rows again - a collector replaying its journal after a crash, a
capture replayed twice - must not append what is already there. A row is "already stored"
when the store holds an identical row (every column and ``ts``) in the span of the batch,
counted as a multiset: k identical rows in the batch and j stored leave k - j to append.
Rows produced again are bit-identical (their receive time comes from the capture or the
journal), and identical rows only ever come from one frame, which one batch holds whole.
"""

from __future__ import annotations

import pandas as pd

from tickstore.errors import TickstoreError

__all__ = ["unstored"]


def unstored(table, symbol: str, df: pd.DataFrame, *, strict: bool = False) -> pd.DataFrame:
    """The rows of ``df`` that ``table`` does not hold yet for ``symbol`` (see the module).

    A read that fails returns ``df`` whole, or raises with ``strict`` (the live collector
    then retries later rather than risk storing a row twice).
    """
    if df.empty:
        return df
    start, end = df.index.min(), df.index.max() + pd.Timedelta(1, "ns")
    try:
        stored = table.select(symbol, start, end)
    except TickstoreError:
        if strict:
            raise
        return df
    if stored.empty:
        return df
    cols = ["ts"] + list(df.columns)
    new = df.reset_index()[cols]
    old = stored.reset_index()[cols]
    new["_n"] = new.groupby(cols, sort=False, dropna=False).cumcount()
    old["_n"] = old.groupby(cols, sort=False, dropna=False).cumcount()
    merged = new.merge(old, on=cols + ["_n"], how="left", indicator=True)
    keep = (merged["_merge"] == "left_only").to_numpy()
    return df[keep]
