"""Reading a table as of a knowledge time: the files, row slices, knowledge-time filter,
tie order, and the re-read of a pin.

A read is a list of ``FileRef`` per symbol (its visible files in partition, version
order, from the index or from a pin). ``assemble`` decompresses each file's slice of the
event-time window straight into one preallocated array per column; rows of a merged
file whose knowledge time is after the read's (``_kt`` > as_of) are left out; files of
a partition that overlap in time (live segments) are then stably sorted by ts, so rows
that tie keep version order. ``digests`` names each (symbol, partition) part of the
result by content (see ``pin``).
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
from .pin import Pin, PinnedFile, PinnedPart, part_digest
from .schemas import Schema
from .splay import KT, FileCache

if TYPE_CHECKING:
    import pandas as pd

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


def assemble(files: FileCache, schema: Schema, refs: list[FileRef], lo, hi, cols, at: int):
    """Columns ``ts`` + ``cols`` (default all) of one symbol from its files (sorted by
    partition, version) as of knowledge time ``at``, and the row span of each
    partition: [(partition, a, b), ...].

    Each file's row slice is found first, then every needed column is decompressed
    into one preallocated array per column (no concatenation copy; columns not asked
    for are never read), the chunks of all the files together on all cores. Rows of merged files committed after ``at`` are filtered out
    by their ``_kt``. Files of one partition that overlap in time (live segments)
    are then stably sorted by ts, version order breaking ties.
    """
    plan = []
    for r in refs:
        if not r.rows or (lo is not None and r.last < lo) or (hi is not None and r.first >= hi):
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
        plan.append((r.path, start, stop, r.part, r.first, r.last, keep))
    if not plan:
        return None, []
    dtypes = read_dtypes(schema, cols)
    out = Columns.empty(dtypes, sum(p[2] - p[1] if p[6] is None else int(p[6].sum()) for p in plan))
    arrays = dict(out.items())
    fill = schema.defaults  # files written before a column with a default existed
    pos, group_start, prev, overlap = 0, 0, None, False
    groups = []  # (partition, row offset, row end, files overlap in time)
    whole = []  # files whose rows all land in the result: read together, on all cores
    for path, start, stop, part, first, last, keep in plan:
        if prev is None or prev[0] != part:
            if prev is not None:
                groups.append((prev[0], group_start, pos, overlap))
            group_start, overlap = pos, False
        elif first < prev[1]:
            overlap = True
        if keep is None:
            n = stop - start
            whole.append((path, start, stop, {name: a[pos : pos + n] for name, a in arrays.items()}))
        else:
            n = int(keep.sum())
            tmp = Columns.empty(dtypes, stop - start)
            files.read_into(path, start, stop, dict(tmp.items()), fill=fill)
            for name, a in arrays.items():
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
    return out, [(p, a, b) for p, a, b, _ in groups]


def read_dtypes(schema: Schema, cols) -> dict[str, np.dtype]:
    """The on-disk dtype of ``ts`` and of each column a read returns (default all)."""
    dtypes = schema.disk_dtypes
    return dtypes if cols is None else {n: dtypes[n] for n in ["ts", *cols]}


def gather(schema: Schema, per_symbol: list[Columns | None], cols) -> tuple[Columns, np.ndarray | None]:
    """The rows of a read (``per_symbol``, each ordered by ts) in one ``Columns``, and
    the position of each row's symbol in the read's symbols (None when the read has one
    symbol: a select of one symbol, the common case, makes no per-row array it would
    not use).

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
    return (rows, which) if order is None else (rows[order], which[order])


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
    if rows is None:
        return []
    arrays = dict(rows.items())
    return [PinnedPart(symbol, int(p), b - a, part_digest(arrays, a, b)) for p, a, b in groups if b > a]


def part_key(p: PinnedPart):
    return (p.symbol, p.partition)


def read_as_of(table, syms, lo, hi, at: int, cols, *, pin: bool, protected: bool = False):
    """Rows of each symbol of ``table`` as of knowledge time ``at``, with the files and
    part digests of a pin if ``pin``.

    A commit at or before ``at`` still being written is waited for (``intent``); a file
    that a merge or prune deleted after the index was loaded makes the read load the new
    index and read again (the same answer as of ``at``); a prune horizon after ``at`` (not
    a snapshot's time: ``protected``) is a ``PrunedError``, checked after reading, since
    the horizon is recorded before any index changes.
    """
    floor = table.schema.partition.floor
    first_part = None if lo is None else int(floor(np.array([lo // NS_PER_DAY]))[0])
    last_part = None if hi is None else int(floor(np.array([(hi - 1) // NS_PER_DAY]))[0])
    for attempt in range(_READ_RETRIES):
        for sym in syms:
            await_commit(table._tx.intent_path(sym), at, timeout=table.store.read_wait, what=f"{table.name} {sym}")
        idxs = [table._index(sym) for sym in syms]
        for idx in idxs:
            idx.check_damaged(first_part, last_part)  # a version reindex could not read
        files: list[PinnedFile] = []
        parts: list[PinnedPart] = []
        per_symbol = []
        try:
            for sym, idx in zip(syms, idxs):
                entries = idx.visible(at, first_part, last_part)
                refs = [
                    FileRef(table._abs(idx.path_of(e)), int(e["rows"]), int(e["first_ts"]), int(e["last_ts"]),
                         int(e["partition"]), int(e["kt_max"]) > at)
                    for e in entries
                ]
                rows, groups = assemble(table.store._files, table.schema, refs, lo, hi, cols, at)
                per_symbol.append(rows)
                if pin:
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
