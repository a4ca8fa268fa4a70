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
members are deleted once it is committed. A merge runs under the table lock, through the
intent protocol (``intent``): kill -9 before its index is in place rolls it back, after
it the next writer finishes the deletions.

Only a suffix starting at or after the partition's last file that superseded something
(a correction or delete) merges: the merged file then supersedes what its first member
did, at the same time, and the index can be rebuilt from the files alone.
"""

from __future__ import annotations

import math

import numpy as np

from .columns import Columns
from .index import ENTRY, REASON_BYTES, SOURCE_BYTES
from .intent import crash_point, write_intent
from .splay import KT, read_meta

__all__ = ["FANOUT", "SMALL_ROWS", "tier", "merge_start", "merge_rows", "compact_symbol", "auto_compact", "merge"]

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


def merge_rows(rows: Columns, since: int) -> Columns:
    """One file's rows from ``rows`` (the members' rows with their ``_kt``, one member
    after the other in version order): stably sorted by ts, so rows that tie in ts keep
    version order, which is knowledge-time order. ``_kt`` is dropped when every row has
    the knowledge time ``since`` (the merged file's ``committed_at`` then says it)."""
    if not (rows[KT] != since).any():
        rows = Columns({n: a for n, a in rows.items() if n != KT})
    return rows.sorted_by_ts()


# -- merging files of a table (lock held; ``table`` is a ``store.Table``) ---------------------
def _mergeable(idx, part: int) -> list:
    """The visible files of a partition that may merge: those from the last one that
    superseded something on (see the module doc)."""
    vis = idx.lookup(part, None)
    closed = set(idx.history(part)["superseded_at"].tolist())
    start = max((i for i, e in enumerate(vis) if int(e["committed_at"]) in closed), default=0)
    return vis[start:]


def _close(table, symbol: str, part: int) -> int:
    """Merge a partition's files into one (as far as ``_mergeable`` allows); 1 if it did.
    A partition with a damaged version (``index``) is left as it is."""
    idx = table._index(symbol)
    if any(p == part for p, _, _ in idx.damaged):
        return 0
    files = _mergeable(idx, part)
    if len(files) < 2:
        return 0
    merge(table, symbol, part, files)
    return 1


def compact_symbol(table, symbol: str) -> int:
    """Merge every partition of ``symbol`` into one file; return how many were merged."""
    vis = table._index(symbol).visible(None)
    parts, counts = np.unique(vis["partition"], return_counts=True)
    return sum(_close(table, symbol, int(p)) for p in parts[counts > 1])


def auto_compact(table, symbol: str, touched: list[int]) -> None:
    """After a write of the ``touched`` partitions: partitions before them are closed (one
    file each), and the touched ones merge their full size tiers."""
    vis = table._index(symbol).visible(None)
    parts, counts = np.unique(vis["partition"], return_counts=True)
    for p in parts[(counts > 1) & (parts < min(touched))]:
        _close(table, symbol, int(p))
    for p in touched:
        if any(d == p for d, _, _ in table._index(symbol).damaged):
            continue  # never written: a commit to it is refused
        while True:
            files = _mergeable(table._index(symbol), p)
            j = merge_start([int(e["rows"]) for e in files])
            if j is None:
                break
            merge(table, symbol, p, files[j:])


def merge(table, symbol: str, part: int, entries: list) -> None:
    """Merge a suffix (in version order) of a partition's visible files into one file that
    takes over their knowledge-time window; then delete them.

    The merged file ``replaces`` its members and, like its first member, the versions that
    one superseded (still in the index, committed before it), so that the index rebuilt
    from the files alone closes them when it did.
    """
    idx = table._index(symbol)
    members = [int(e["version"]) for e in entries]
    since = int(entries[0]["committed_at"])
    history = idx.history(part)
    earlier = set(history["version"][history["committed_at"] < since].tolist())
    superseded = [v for v in read_meta(table._abs(idx.path_of(entries[0]))).replaces if v in earlier]
    rows = merge_rows(table._read_entries(idx, entries, with_kt=True), since)  # one copy of the rows
    version = idx.next_version(part)
    target = table._tx.target(symbol, part, version)
    drop = [idx.path_of(e) for e in entries]
    intent = table._tx.intent_path(symbol)
    write_intent(intent, "merge", new=[target], drop=drop)
    crash_point("merge:intent")
    notes = "; ".join(
        f"v{int(e['version'])} {e['op'].decode()}: {e['reason'].decode('utf-8', 'replace')}"
        for e in entries
        if e["op"] not in (b"append", b"compact") and e["reason"]
    )
    reason = f"merged v{members[0]}..v{members[-1]} ({len(members)} files)" + (f"; {notes}" if notes else "")
    e = table._tx.write(
        symbol, target, part, version, rows,
        committed_at=since, op="compact", replaces=sorted(superseded) + members,
        reason=reason.encode()[:REASON_BYTES].decode("utf-8", "ignore"), source=_sources(entries),
    )
    crash_point("merge:file")
    table.store._indexes.put(idx.merge(part, members, np.array([e], ENTRY)))  # the commit point
    crash_point("merge:published")
    table._tx.drop_files(drop)
    intent.unlink()


def _sources(entries) -> str:
    """The source of a merged file: where its rows came from (its members' sources)."""
    seen = list(dict.fromkeys(e["source"].decode("utf-8", "replace") for e in entries if e["source"]))
    text = "+".join(seen) or "compaction"
    return text.encode()[:SOURCE_BYTES].decode("utf-8", "ignore")
