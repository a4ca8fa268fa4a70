"""Compaction: which live files of a partition to merge, and the rows of a merge.

Live appends add one small file each. They are merged by **size tiers**, a suffix of the
partition's visible files (in version order) at a time, so that the merged file sorts
where its members did::

    tier(rows) = 0 below SMALL_ROWS, else 1 + floor(log_FANOUT(rows / SMALL_ROWS))

    visible (oldest -> newest):  [t3] [t2] [t2] [t1] [t0] [t0] [t0] [t0] [t0] [t0] [t0] [t0]
    the newest run of tier <= 0 holds 8 files of tier 0: merge that run       '------ 8 ------'
    -> [t3] [t2] [t2] [t1] [t1]        and so on one tier up, when it fills in turn

A run of tier <= L is merged once it holds at least FANOUT files, at least half of them
of tier L (so one big file is not rewritten with a few small ones after it). Each row is
rewritten a bounded number of times below SMALL_ROWS and once per tier above: O(log n)
per day, never the whole day every few appends; a partition holds at most a few files
per tier while it is live. When a partition closes (a later partition is written, or
``Table.compact``) its files become one. A merged file's op is ``compact``.

A merge keeps every row's knowledge time (the hidden ``_kt`` column, see ``splay``), so
the merged file answers every as-of read its members answered (see ``index``), and the
members are deleted once it is committed.
"""

from __future__ import annotations

import math

from .columns import Columns
from .splay import KT

__all__ = ["FANOUT", "SMALL_ROWS", "tier", "merge_start", "merge_rows"]

FANOUT = 8
SMALL_ROWS = 1024


def tier(rows: int) -> int:
    if rows < SMALL_ROWS:
        return 0
    return 1 + int(math.floor(math.log(rows / SMALL_ROWS, FANOUT) + 1e-9))


def merge_start(rows: list[int]) -> int | None:
    """Where the suffix of files to merge starts (files given by their row counts, oldest
    first), or None if no run is full yet."""
    tiers = [tier(r) for r in rows]
    n = len(tiers)
    for level in sorted(set(tiers)):
        j = n
        while j > 0 and tiers[j - 1] <= level:
            j -= 1
        if n - j >= FANOUT and sum(1 for t in tiers[j:] if t == level) >= FANOUT // 2:
            return j
    return None


def merge_rows(parts: list[Columns], since: int) -> Columns:
    """One file's rows from ``parts`` (the members' rows with their ``_kt``, in version
    order): stably sorted by ts, so rows that tie in ts keep version order, which is
    knowledge-time order. ``_kt`` is dropped when every row has the knowledge time
    ``since`` (the merged file's ``committed_at`` then says it)."""
    rows = Columns.concat(parts) if len(parts) > 1 else parts[0]
    if not (rows[KT] != since).any():
        rows = Columns({n: a for n, a in rows.items() if n != KT})
    return rows.sorted_by_ts()
