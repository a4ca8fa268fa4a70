"""Reading a table as of a knowledge time: the files, row slices, knowledge-time filter,
tie order, and the re-read of a pin.

A read is a list of ``FileRef`` per symbol (its visible files in partition, version
order, from the index or from a pin). ``assemble`` decompresses each file's slice of the
event-time window straight into one preallocated array per column; rows of a merged
file whose knowledge time is after the read's (``_kt`` > as_of) are left out; files of
a partition that overlap in time (live segments) are then stably sorted by ts, so rows
that tie keep version order. ``digests`` names each (symbol, partition) part of the
result by content (see ``pin``). A read with a limit (``select(..., limit=N)``) reads
only the partitions, files, and row ranges of files, that its first N rows need.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .clock import NS_PER_DAY
from .columns import Columns
from .errors import CorruptionError, PinError
from .intent import await_commit
from .schemas import Schema
from .splay import KT, FileCache

if TYPE_CHECKING:
    import pandas as pd

    from .pin import Pin, PinnedFile, PinnedPart

__all__ = [
    "FileRef", "assemble", "read_dtypes", "gather", "to_columns", "to_frame", "digests", "part_key", "read_as_of",
    "read_pin",
]

_READ_RETRIES = 5  # a read that found a file merged away re-reads the new index
_UNKNOWN = np.iinfo(np.int64).min  # FileRef.first of a pinned file: the pin does not say


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


def assemble(files: FileCache, schema: Schema, refs: list[FileRef], lo, hi, cols, at: int, limit: int | None = None):
    """Columns ``ts`` + ``cols`` (default all) of one symbol from its files (sorted by
    partition, version) as of knowledge time ``at``, and the row span of each
    partition: [(partition, a, b), ...].

    Each file's row slice is found first, then every needed column is decompressed
    into one preallocated array per column (no concatenation copy; columns not asked
    for are never read), the chunks of all the files together on all cores. Rows of merged files committed after ``at`` are filtered out
    by their ``_kt``. Files of one partition that overlap in time (live segments)
    are then stably sorted by ts, version order breaking ties.

    With ``limit``, only the first ``limit`` of those rows (see ``_plan_first``): the
    files and chunks they need are read, no others; ``hi`` then also bounds rows known
    not to be needed (``read_as_of``: rows of an earlier symbol came first).
    """
    plan = _plan(files, refs, lo, hi, at) if limit is None else _plan_first(files, refs, lo, hi, at, limit)
    if not plan:
        return None, []
    dtypes = read_dtypes(schema, cols)
    out = Columns.empty(dtypes, sum(p[7] for p in plan))
    arrays = dict(out.items())
    fill = schema.defaults  # files written before a column with a default existed
    pos, group_start, prev, overlap = 0, 0, None, False
    groups = []  # (partition, row offset, row end, files overlap in time)
    whole = []  # files whose rows all land in the result: read together, on all cores
    for path, start, stop, part, first, last, keep, n, ts in plan:
        if prev is None or prev[0] != part:
            if prev is not None:
                groups.append((prev[0], group_start, pos, overlap))
            group_start, overlap = pos, False
        elif first < prev[1]:
            overlap = True
        todo = arrays
        if ts is not None:  # its visible ts are read already (the plan of a limited read)
            arrays["ts"][pos : pos + n] = ts
            todo = {name: a for name, a in arrays.items() if name != "ts"}
        if keep is None:
            whole.append((path, start, stop, {name: a[pos : pos + n] for name, a in todo.items()}))
        elif todo:
            tmp = Columns.empty({name: dtypes[name] for name in todo}, stop - start)
            files.read_into(path, start, stop, dict(tmp.items()), fill=fill)
            for name, a in todo.items():
                a[pos : pos + n] = tmp[name][keep]
        pos += n
        prev = (part, max(last, prev[1]) if prev is not None and prev[0] == part else last)
    groups.append((prev[0], group_start, pos, overlap))
    files.read_many(whole, fill=fill)
    for _, a, b, overlap in groups:
        if overlap:
            order = np.argsort(arrays["ts"][a:b], kind="stable")
            for col in arrays.values():
                col[a:b] = col[a:b][order]
    if limit is not None and pos > limit:  # the last partition's files overlap: each gave up to its share
        out = out[:limit]
        groups = [(p, a, min(b, limit), o) for p, a, b, o in groups if a < limit]
    return out, [(p, a, b) for p, a, b, _ in groups]


def _in_window(r: FileRef, lo, hi) -> bool:
    return bool(r.rows) and (lo is None or r.last >= lo) and (hi is None or r.first < hi)


def _plan(files: FileCache, refs: list[FileRef], lo, hi, at: int) -> list:
    """What ``assemble`` reads of each file: ``(path, start, stop, partition, first,
    last, keep, rows, ts)``: rows ``start:stop``, of which those of the mask ``keep``
    (None: all), ``rows`` in all; ``ts`` None (read with the other columns)."""
    plan = []
    for r in refs:
        if not _in_window(r, lo, hi):
            continue
        # the index's row count and time span decide which rows are read: they must be the
        # file's own (a pin knows the count only)
        files.check_shape(r.path, r.rows, *((r.first, r.last) if r.first != _UNKNOWN else ()))
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
        plan.append((r.path, start, stop, r.part, r.first, r.last, keep, stop - start if keep is None else int(keep.sum()), None))
    return plan


def _plan_first(files: FileCache, refs: list[FileRef], lo, hi, at: int, limit: int) -> list:
    """``_plan`` of the first ``limit`` rows only (in ts order, ties as ``assemble``
    orders them), reading no file, and no chunk, that cannot hold one of them.

    Partitions are disjoint in time and walked in order until ``limit`` rows are found.
    In a partition the rows are the stable ts order of its files' rows in version order,
    so each file gives a prefix of its rows: at most the rows still needed, and (once
    the files before it give ``need`` rows, the need-th of them at ts T) only rows
    before T: a row at T of a later version sorts after those ``need``. A file starting
    at or after T is not opened. Each prefix is read (its ts, and its ``_kt`` if rows
    committed after ``at`` must be left out) in a row range that doubles until it
    holds the rows still needed; the other columns are then read for that range only.
    The partition's last file, if all its rows from ``lo`` on are needed (no ``_kt``
    filter, none at or after T), is read as ``_plan`` reads it: a limit above the rows
    read costs nothing.
    """
    plan, need, i = [], limit, 0
    while i < len(refs) and need > 0:
        j = i
        while j < len(refs) and refs[j].part == refs[i].part:
            j += 1
        bound, seen, got = hi, [], 0  # the visible ts of each file taken from this partition
        for r in refs[i:j]:
            if not _in_window(r, lo, bound):
                continue
            files.check_shape(r.path, r.rows, *((r.first, r.last) if r.first != _UNKNOWN else ()))
            start = files.row_range(r.path, lo, None)[0] if lo is not None and r.first < lo else 0
            if r is refs[j - 1] and not r.filter_kt and (bound is None or r.last < bound) and r.rows - start <= need:
                plan.append((r.path, start, r.rows, r.part, r.first, r.last, None, r.rows - start, None))
                got += r.rows - start
                break
            stop, keep, ts = _prefix(files, r, start, bound, at, need)
            if not len(ts):
                continue
            plan.append((r.path, start, stop, r.part, r.first, r.last, keep, len(ts), ts))
            seen.append(ts)
            got += len(ts)
            if got >= need:
                t = int(np.partition(np.concatenate(seen), need - 1)[need - 1])
                bound = t if bound is None else min(bound, t)
        need -= min(need, got)
        i = j
    return plan


def _prefix(files: FileCache, r: FileRef, start: int, bound, at: int, need: int):
    """The shortest row range ``start:stop`` of file ``r`` holding its first ``need``
    rows visible as of ``at`` with ts before ``bound`` (None: unbounded), or all such
    rows: ``(stop, keep, ts)``, ``keep`` the visibility mask of rows ``start:stop``
    (None: all visible), ``ts`` the visible rows' ts. Read in ranges that double."""
    pos, step, got, ts_parts, keep_parts = start, need, 0, [], []
    while pos < r.rows and got < need:
        m = min(r.rows - pos, step)
        out = {"ts": np.empty(m, np.int64)}
        if r.filter_kt:
            out[KT] = np.empty(m, np.int64)
        files.read_into(r.path, pos, pos + m, out)
        ts = out["ts"]
        cut = m if bound is None else int(np.searchsorted(ts, bound, "left"))
        keep = out[KT][:cut] <= at if r.filter_kt else None
        n = cut if keep is None else int(np.count_nonzero(keep))
        if got + n > need:  # cut after the need-th visible row
            cut = need - got if keep is None else int(np.flatnonzero(keep)[need - got - 1]) + 1
            keep = None if keep is None else keep[:cut]
            n = need - got
        ts_parts.append(ts[:cut])
        keep_parts.append(keep)
        got += n
        pos += cut
        if cut < m:
            break  # the bound, or the rows needed, lie in this range
        step *= 2
    if not ts_parts:
        return pos, None, np.zeros(0, np.int64)
    ts = np.concatenate(ts_parts) if len(ts_parts) > 1 else ts_parts[0]
    if not r.filter_kt:
        return pos, None, ts
    keep = np.concatenate(keep_parts) if keep_parts else np.zeros(0, bool)
    return pos, (None if keep.all() else keep), ts[keep]


def read_dtypes(schema: Schema, cols) -> dict[str, np.dtype]:
    """The on-disk dtype of ``ts`` and of each column a read returns (default all)."""
    dtypes = schema.disk_dtypes
    return dtypes if cols is None else {n: dtypes[n] for n in ["ts", *cols]}


def gather(schema: Schema, per_symbol: list[Columns | None], cols, limit: int | None = None) -> tuple[Columns, np.ndarray | None]:
    """The rows of a read (``per_symbol``, each ordered by ts) in one ``Columns``, and
    the position of each row's symbol in the read's symbols (None when the read has one
    symbol: a select of one symbol, the common case, makes no per-row array it would
    not use); the first ``limit`` rows only, if given (each symbol's first ``limit``
    rows hold them).

    Several symbols are stably sorted by ts: rows that tie keep the symbols' order.
    """
    parts = [(i, rows) for i, rows in enumerate(per_symbol) if rows is not None]
    if not parts:
        return Columns.empty(read_dtypes(schema, cols)), None
    rows = Columns.concat([r for _, r in parts])
    if len(per_symbol) == 1:
        return rows, None
    which = np.repeat(np.array([i for i, _ in parts], np.min_scalar_type(len(per_symbol) - 1)), [len(r) for _, r in parts])
    order = rows.ts_order() if len(parts) > 1 else None
    if order is not None:
        rows, which = rows[order], which[order]
    if limit is not None and len(which) > limit:
        rows, which = rows[:limit], which[:limit]
    return rows, which


def symbol_values(syms: list[str], which: np.ndarray | None, n: int, dtype) -> np.ndarray:
    """The ``symbol`` column of ``n`` gathered rows: ``syms[which]`` as ``dtype``."""
    values = np.array(syms, dtype=dtype)
    if which is not None:
        return values[which]
    return np.full(n, values[0], dtype=values.dtype) if n else values[:0]


def to_columns(rows: Columns, which: np.ndarray | None, syms: list[str] | None) -> Columns:
    """``Table.select_columns``' result: ``rows``, plus a last column ``symbol`` (numpy
    unicode) when the read named a list of symbols ``syms``."""
    if syms is None:
        return rows
    return Columns({**dict(rows.items()), "symbol": symbol_values(syms, which, len(rows), str)})


def to_frame(schema: Schema, rows: Columns, which: np.ndarray | None, syms: list[str] | None, cols) -> pd.DataFrame:
    """``Table.select``'s result: the frame of ``to_columns`` (its ``symbol`` column of
    Python str shares one object per symbol)."""
    from .frames import rows_to_frame  # pandas: imported by the reads that return frames

    frame = rows_to_frame(schema, rows, cols)
    if syms is not None:
        frame["symbol"] = symbol_values(syms, which, len(rows), object)
    return frame


def digests(symbol: str, rows: Columns | None, groups) -> list[PinnedPart]:
    """The content digest of each partition's rows in ``rows`` (spans from ``assemble``)."""
    from .pin import PinnedPart, part_digest  # pins only: a plain read never imports pin (~3 ms)

    if rows is None:
        return []
    arrays = dict(rows.items())
    return [PinnedPart(symbol, int(p), b - a, part_digest(arrays, a, b)) for p, a, b in groups if b > a]


def part_key(p: PinnedPart):
    return (p.symbol, p.partition)


def read_as_of(table, syms, lo, hi, at: int, cols, *, pin: bool, protected: bool = False, limit: int | None = None):
    """Rows of each symbol of ``table`` as of knowledge time ``at``, with the files and
    part digests of a pin if ``pin``.

    With ``limit`` (no pin: a pin names whole partitions), each symbol's first ``limit``
    rows at most, and fewer where they cannot be among the first ``limit`` rows of the
    read (``gather``'s order): once the symbols before it hold ``limit`` rows, the
    limit-th of them at ts T, a symbol's rows at or after T sort after those, so its
    files from T on are not read. Every check of the whole read is still made (the
    damaged versions of its partitions, the prune horizon), so a limited read fails
    exactly when the read without limit does, but for damage in files it does not read.

    A commit at or before ``at`` still being written is waited for (``intent``); a file
    that a merge or prune deleted after the index was loaded makes the read load the new
    index and read again (the same answer as of ``at``); a prune horizon after ``at`` (not
    a snapshot's time: ``protected``) is a ``PrunedError``, checked after reading, since
    the horizon is recorded before any index changes.
    """
    if pin and limit is not None:
        raise ValueError("a pinned read has no limit")
    floor = table.schema.partition.floor
    first_part = None if lo is None else int(floor(np.array([lo // NS_PER_DAY]))[0])
    last_part = None if hi is None else int(floor(np.array([(hi - 1) // NS_PER_DAY]))[0])
    for attempt in range(_READ_RETRIES):
        for sym in syms:
            await_commit(table._intent_path(sym), at, timeout=table.store.read_wait, what=f"{table.name} {sym}")
        idxs = [table._index(sym) for sym in syms]
        for idx in idxs:
            idx.check_damaged(first_part, last_part)  # a version reindex could not read
        files: list[PinnedFile] = []
        parts: list[PinnedPart] = []
        per_symbol = []
        until, until_part = hi, last_part  # with a limit: rows at or after ``until`` are not needed
        try:
            for sym, idx in zip(syms, idxs):
                entries = idx.visible(at, first_part, until_part)
                refs = [
                    FileRef(table._abs(idx.path_of(e)), int(e["rows"]), int(e["first_ts"]), int(e["last_ts"]),
                         int(e["partition"]), int(e["kt_max"]) > at)
                    for e in entries
                ]
                rows, groups = assemble(table.store._files, table.schema, refs, lo, until, cols, at, limit)
                per_symbol.append(rows)
                if limit and len(syms) > 1:
                    ts = np.concatenate([r["ts"] for r in per_symbol if r is not None] or [np.zeros(0, np.int64)])
                    if len(ts) >= limit:
                        t = int(np.partition(ts, limit - 1)[limit - 1])
                        if until is None or t < until:
                            until, until_part = t, int(floor(np.array([(t - 1) // NS_PER_DAY]))[0])
                if pin:
                    from .pin import PinnedFile

                    files.extend(
                        PinnedFile(sym, int(e["partition"]), idx.path_of(e), int(e["version"]), e["checksum"].decode(),
                                   int(e["rows"]), int(e["kt_max"]))
                        for e in entries
                    )
                    parts.extend(digests(sym, rows, groups))
        except CorruptionError:
            # a merge or prune may have deleted a file after this read loaded the index:
            # the new index answers the same as of ``at`` (or the prune check below fails)
            if attempt + 1 < _READ_RETRIES and any(table._index(s) is not i for s, i in zip(syms, idxs)):
                continue
            raise
        break
    if not protected:
        table.store._retention.check(at, table.store._snapshot_times)
    return per_symbol, files, parts


def read_pin(table, pin: Pin, *, check: bool = True) -> pd.DataFrame:
    """``Table.read_pin`` (see there)."""
    if pin.table != table.name:
        raise PinError(f"pin is for table {pin.table!r}, not {table.name!r}")
    cols = list(pin.columns) if pin.columns else None
    for c in cols or ():
        table.schema.column(c)
    files = table.store._files
    present = all(os.path.exists(table._abs(f.path)) for f in pin.files)
    if present:
        try:
            if check:
                for f in pin.files:
                    got = files.sha256(table._abs(f.path))
                    if got != f.checksum:
                        raise PinError(f"pinned file {f.path} was altered: sha256 {got} != pinned {f.checksum}")
            per_symbol, parts = [], []
            for sym in pin.symbols:
                refs = [
                    FileRef(table._abs(f.path), f.rows, _UNKNOWN, np.iinfo(np.int64).max, f.partition,
                         (f.kt_max is None or f.kt_max > pin.as_of) and files.has_column(table._abs(f.path), KT))
                    for f in pin.files if f.symbol == sym
                ]
                rows, groups = assemble(files, table.schema, refs, pin.start, pin.end, cols, pin.as_of)
                per_symbol.append(rows)
                parts.extend(digests(sym, rows, groups) if check and pin.parts is not None else ())
        except CorruptionError:
            if all(os.path.exists(table._abs(f.path)) for f in pin.files):
                raise
            present = False  # merged away while being opened: read through the index
    if not present:
        if check and pin.parts is None:
            missing = next(f for f in pin.files if not os.path.exists(table._abs(f.path)))
            raise PinError(
                f"pinned file {missing.path} (version {missing.version}) is gone (merged or pruned), and this "
                f"pin names no row digests to check a re-read against (made by an older version, or built "
                f"from the index); read_pin(pin, check=False) re-reads it as of its time unchecked"
            )
        per_symbol, _, parts = read_as_of(table, list(pin.symbols), pin.start, pin.end, pin.as_of, cols, pin=check)
    if check and pin.parts is not None and sorted(parts, key=part_key) != sorted(pin.parts, key=part_key):
        raise PinError(
            f"the rows read for pin as of {pin.as_of_time} differ from its digests "
            f"({len(parts)} parts read, {len(pin.parts)} pinned); the store does not reproduce it"
        )
    rows, which = gather(table.schema, per_symbol, cols)
    return to_frame(table.schema, rows, which, list(pin.symbols) if pin.multi else None, cols)
