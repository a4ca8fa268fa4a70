"""Reading version files into one result: row slices, knowledge-time filter, tie order.

A read is a list of ``FileRef`` per symbol (its visible files in partition, version
order, from the index or from a pin). ``assemble`` decompresses each file's slice of the
event-time window straight into one preallocated array per column; rows of a merged
file whose knowledge time is after the read's (``_kt`` > as_of) are left out; files of
a partition that overlap in time (live segments) are then stably sorted by ts, so rows
that tie keep version order. ``digests`` names each (symbol, partition) part of the
result by content (see ``pin``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .columns import Columns
from .frames import rows_to_frame
from .pin import PinnedPart, part_digest
from .schemas import Schema
from .splay import KT, FileCache

__all__ = ["FileRef", "assemble", "to_frame", "digests", "part_key"]


@dataclass(frozen=True)
class FileRef:
    """One file a read assembles: where, which rows may hold the window, whether rows
    must be filtered by knowledge time (a merged file holding rows committed after the
    read's time)."""

    path: str
    rows: int
    first: int
    last: int
    part: int
    filter_kt: bool


def assemble(files: FileCache, schema: Schema, refs: list[FileRef], lo, hi, cols, at: int):
    """Columns ``ts`` + ``cols`` (default all) of one symbol from its files (sorted by
    partition, version) as of knowledge time ``at``, and the row span of each
    partition: [(partition, a, b), ...].

    Each file's row slice is found first, then every needed column is decompressed
    into one preallocated array per column (no concatenation copy; columns not asked
    for are never read). Rows of merged files committed after ``at`` are filtered out
    by their ``_kt``. Files of one partition that overlap in time (live segments)
    are then stably sorted by ts, version order breaking ties.
    """
    plan = []
    for r in refs:
        if not r.rows or (lo is not None and r.last < lo) or (hi is not None and r.first >= hi):
            continue
        if (lo is None or r.first >= lo) and (hi is None or r.last < hi):
            start, stop = 0, r.rows  # the whole file: no bisection needed
        else:
            start, stop = files.row_range(
                r.path, lo if lo is not None and r.first < lo else None, hi if hi is not None and r.last >= hi else None
            )
        if stop <= start:
            continue
        keep = None
        if r.filter_kt:
            kt = np.empty(stop - start, np.int64)
            files.read_into(r.path, start, stop, {KT: kt})
            keep = kt <= at
            if keep.all():
                keep = None
            elif not keep.any():
                continue
        plan.append((r.path, start, stop, r.part, r.first, r.last, keep))
    if not plan:
        return None, []
    dtypes = schema.disk_dtypes
    if cols is not None:
        dtypes = {n: dtypes[n] for n in ["ts", *cols]}
    out = Columns.empty(dtypes, sum(p[2] - p[1] if p[6] is None else int(p[6].sum()) for p in plan))
    arrays = dict(out.items())
    fill = schema.defaults  # files written before a column with a default existed
    pos, group_start, prev, overlap = 0, 0, None, False
    groups = []  # (partition, row offset, row end, files overlap in time)
    for path, start, stop, part, first, last, keep in plan:
        if prev is None or prev[0] != part:
            if prev is not None:
                groups.append((prev[0], group_start, pos, overlap))
            group_start, overlap = pos, False
        elif first < prev[1]:
            overlap = True
        if keep is None:
            n = stop - start
            files.read_into(path, start, stop, {name: a[pos : pos + n] for name, a in arrays.items()}, fill=fill)
        else:
            n = int(keep.sum())
            tmp = Columns.empty(dtypes, stop - start)
            files.read_into(path, start, stop, dict(tmp.items()), fill=fill)
            for name, a in arrays.items():
                a[pos : pos + n] = tmp[name][keep]
        pos += n
        prev = (part, max(last, prev[1]) if prev is not None and prev[0] == part else last)
    groups.append((prev[0], group_start, pos, overlap))
    for _, a, b, overlap in groups:
        if overlap:
            order = np.argsort(arrays["ts"][a:b], kind="stable")
            for col in arrays.values():
                col[a:b] = col[a:b][order]
    return out, [(p, a, b) for p, a, b, _ in groups]

def to_frame(schema: Schema, per_symbol, syms, multi, cols) -> pd.DataFrame:
    """The frame of a read: one symbol's rows, or several with a ``symbol`` column."""
    if not multi:
        rows = per_symbol[0]
        return schema.empty_frame(cols) if rows is None else rows_to_frame(schema, rows, cols)
    frames = []
    for sym, rows in zip(syms, per_symbol):
        if rows is None:
            continue
        f = rows_to_frame(schema, rows, cols)
        f["symbol"] = sym
        frames.append(f)
    if not frames:
        f = schema.empty_frame(cols)
        f["symbol"] = pd.Series([], dtype=object)
        return f
    out = pd.concat(frames)
    if not out.index.is_monotonic_increasing:
        out = out.iloc[np.argsort(out.index.asi8, kind="stable")]
    return out


def digests(symbol: str, rows: Columns | None, groups) -> list[PinnedPart]:
    """The content digest of each partition's rows in ``rows`` (spans from ``assemble``)."""
    if rows is None:
        return []
    arrays = dict(rows.items())
    return [PinnedPart(symbol, int(p), b - a, part_digest(arrays, a, b)) for p, a, b in groups if b > a]


def part_key(p: PinnedPart):
    return (p.symbol, p.partition)
