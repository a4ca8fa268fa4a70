"""The store facade: ``Tickstore`` (a root of tables) and ``Table`` (insert/append/delete/select).

Composes the layout (paths), splay (one file), index (visibility), lock (one writer),
transaction (a write: intent, files, index, rollback), compaction (which files to merge),
retention (prune), reader (assembling a read) and frames (validation). Every write is one
transaction on one (table, symbol) (``transaction``): all or nothing, ``kill -9`` safe.

Reads never lock. A read is made as of one knowledge time T (``as_of``, or "now" from the
store clock): it waits for a commit at or before T still being written (``intent``),
then reads the entries visible at T and, in merged files, the rows with knowledge time
<= T. So ``select(...)`` made at time T equals ``select(..., as_of=T)`` made later, while
any number of processes write.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import diskio
from .columns import Columns
from .clock import MAX_NS, NS_PER_DAY, Clock, StoreClock, SystemClock, ns_to_timestamp, to_day, to_ns
from .errors import (
    FrameError,
    NotFoundError,
    SchemaError,
    SnapshotError,
    StorageError,
    TickstoreError,
    UnknownTableError,
)
from .index import REASON_BYTES, SOURCE_BYTES, IndexCache, SymbolIndex, index_last_commit, index_partition, index_path
from .intent import await_commit
from .layout import data_path, decode_symbol, validate_symbol
from .lock import TableLock
from .reader import gather, read_as_of, read_pin, to_columns, to_frame
from .retention import Retention, prune
from .schemas import Partition, Schema, builtin_schema
from .splay import KT, FileCache

if TYPE_CHECKING:
    import pandas as pd

    from .integrity import ReindexReport, VerifyReport
    from .pin import Pin, Selection
    from .transaction import Commit, Writer

__all__ = ["Tickstore", "Table"]

_SNAPSHOT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")  # matched whole (fullmatch)
_TABLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


def _text(value, *, what: str, limit: int) -> bytes:
    if not isinstance(value, str):
        raise FrameError(f"{what} must be a str, got {type(value).__name__} {value!r}")
    try:
        b = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FrameError(f"{what} {value[:40]!r} is not valid Unicode ({exc.reason})") from None
    if b"\x00" in b:
        raise FrameError(f"{what} {value[:40]!r} contains a NUL character")
    if len(b) > limit:
        raise FrameError(f"{what} is {len(b)} bytes; at most {limit}")
    return b


def _merge(parts: list[Columns]) -> Columns | None:
    """Rows of one partition's visible files, in version order, stably sorted by ts."""
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]  # each file is sorted when written
    return Columns.concat(parts).sorted_by_ts()


class Table:
    """One table of a store. Get it with ``store["trades"]``."""

    def __init__(self, store: "Tickstore", schema: Schema):
        self.store = store
        self.schema = schema
        self.name = schema.name
        self.dir = store.root / schema.name
        self._lock = TableLock(self.dir / ".lock", timeout=store.lock_timeout)
        self._intents: dict[str, Path] = {}

    def __repr__(self) -> str:
        return f"<Table {self.name} ({self.schema.partition.value} partitions) at {self.dir}>"

    @property
    def partition(self) -> Partition:
        """How many days one file covers (``day``, ``month`` or ``year``)."""
        return self.schema.partition

    # -- helpers ------------------------------------------------------------------------
    def _index(self, symbol: str) -> SymbolIndex:
        return self.store._indexes.get(self.name, symbol, self.schema.partition)

    @functools.cached_property
    def _tx(self) -> Writer:
        """The table's write transaction, made by its first write: a process that only
        reads never imports the write machinery (transaction, compaction, logging)."""
        from .transaction import Writer

        return Writer(self)

    def _intent_path(self, symbol: str) -> Path:
        """``_index/<sym>.intent``, where a write in progress is announced (``intent``)."""
        p = self._intents.get(symbol)  # every read stats it: built once per symbol
        if p is None:
            p = self._intents[symbol] = index_path(self.store.root, self.name, symbol).with_suffix(".intent")
        return p

    def _abs(self, rel: str) -> str:
        return str(self.store.root / rel)

    def _read_entry(self, idx: SymbolIndex, e, names=None, *, with_kt: bool = False) -> Columns:
        """Every row of an entry's file (columns ``names``, default all; with ``_kt``, the
        knowledge time of each row, if asked)."""
        return self._read_entries(idx, [e], names, with_kt=with_kt)

    def _read_entries(self, idx: SymbolIndex, entries, names=None, *, with_kt: bool = False) -> Columns:
        """Every row of several entries' files, one file after the other, decompressed
        straight into one allocation: a merge holds one copy of its rows, not its members'
        and then their concatenation (a day of one pair's depth5@100ms book: 160 MB less)."""
        dtypes = self.schema.disk_dtypes
        if names is not None:
            dtypes = {n: dtypes[n] for n in names}
        if with_kt:
            dtypes = {**dtypes, KT: np.dtype("i8")}
        sizes = [int(e["rows"]) for e in entries]
        out = Columns.empty(dtypes, sum(sizes))
        reads, at = [], 0
        for e, n in zip(entries, sizes):
            if n:
                path = self._abs(idx.path_of(e))
                self.store._files.check_shape(path, n, int(e["first_ts"]), int(e["last_ts"]))
                # a file without _kt holds the rows of one commit: its committed_at
                fill = {**self.schema.defaults, KT: int(e["committed_at"])}
                reads.append((path, 0, n, {name: a[at : at + n] for name, a in out.items()}, fill))
            at += n
        self.store._files.read_many(reads)  # the chunks of all the files at once, on all cores
        return out

    def _has_rows(self, idx: SymbolIndex, e, lo: int, hi: int) -> bool:
        if not int(e["rows"]) or int(e["first_ts"]) >= hi or int(e["last_ts"]) < lo:
            return False
        if self.schema.partition is Partition.DAY:
            return True  # a non-empty day file holds rows of its day only
        start, stop = self.store._files.row_range(self._abs(idx.path_of(e)), lo, hi)
        return stop > start

    def _rows(self, df, **window) -> Columns:
        """``df`` validated (``frames.frame_to_rows``, ``window``: its lo/hi/where) into
        on-disk rows, exact repeats dropped. Frames (pandas) are imported by writes only."""
        from .frames import check_unique_key, frame_to_rows

        return check_unique_key(self.schema, frame_to_rows(self.schema, df, **window))

    def _day_window(self, day: int) -> tuple[int, int]:
        return day * NS_PER_DAY, (day + 1) * NS_PER_DAY

    # -- writes -------------------------------------------------------------------------
    def insert(self, symbol: str, date, df: pd.DataFrame, *, reason: str = "", source: str = "") -> Commit:
        """Replace one UTC day of ``symbol`` with ``df``: a new version; the old stays readable as of earlier times.

        Parameters
        ----------
        date
            The UTC day (``'2024-08-08'``, a ``date``, or a UTC midnight); every ``ts`` in
            ``df`` must fall in it.
        reason, source
            Audit trail (e.g. ``reason="exchange correction"``, ``source="rest"``).

        Raises
        ------
        SymbolError, SchemaError, FrameError, DuplicateKeyError, LockedError
        """
        validate_symbol(symbol)
        day = to_day(date)
        lo, hi = self._day_window(day)
        rows = self._rows(df, lo=lo, hi=hi, where=f"the day {np.datetime64(day, 'D')}")
        reason_b = _text(reason, what="reason", limit=REASON_BYTES)
        source_b = _text(source, what="source", limit=SOURCE_BYTES)
        with self._tx.writing(symbol):
            return self._replace_day(symbol, day, rows, "insert", reason_b, source_b)

    def delete(self, symbol: str, date, *, reason: str, source: str = "") -> Commit:
        """Delete one UTC day of ``symbol``: a tombstone version with ``reason``; nothing is removed from disk.

        Raises
        ------
        NotFoundError
            Nothing is stored for that day.
        """
        validate_symbol(symbol)
        day = to_day(date)
        reason_b = _text(reason, what="reason", limit=REASON_BYTES)
        if not reason_b:
            raise FrameError("delete needs a reason (the audit trail says why data disappeared)")
        source_b = _text(source, what="source", limit=SOURCE_BYTES)
        with self._tx.writing(symbol):
            return self._replace_day(symbol, day, None, "delete", reason_b, source_b)

    def _replace_day(self, symbol, day, rows, op, reason_b, source_b) -> Commit:
        idx = self._index(symbol)
        part = int(self.schema.partition.floor(np.array([day]))[0])
        lo, hi = self._day_window(day)
        visible = idx.lookup(part, None)
        holding = [e for e in visible if self._has_rows(idx, e, lo, hi)]
        if op == "delete" and not holding:
            raise NotFoundError(
                f"{self.name} {symbol} {np.datetime64(day, 'D')}: nothing stored to delete "
                f"(see versions({symbol!r}, '{np.datetime64(day, 'D')}'))"
            )
        if self.schema.partition is Partition.DAY:
            replaced = visible  # a day file holds only its day: nothing to carry, nothing to read
        elif not holding:
            # a new day in a month/year partition is not a correction: it is added like an
            # append (no superseded copy of the partition); compaction merges it in
            commit = self._tx.commit(symbol, idx, [(part, rows, [])], op, reason_b, source_b)
            self._tx.compact_after_commit(symbol, [part])
            return commit
        else:
            # files holding rows of this day (and empty ones) are replaced; rows of other
            # days in them are carried into the new version unchanged (visible in it from
            # its commit on, like every row of it)
            replaced = holding + [e for e in visible if int(e["rows"]) == 0]
        carried = []
        for e in replaced if self.schema.partition is not Partition.DAY else ():
            if int(e["rows"]):
                r = self._read_entry(idx, e)
                carried.append(r[(r["ts"] < lo) | (r["ts"] >= hi)])
        new_rows = rows if rows is not None else Columns.empty(self.schema.disk_dtypes)
        carried = [c for c in carried if len(c)]
        if carried:
            merged = _merge(carried)
            before, after = merged[merged["ts"] < lo], merged[merged["ts"] >= hi]
            new_rows = Columns.concat([before, new_rows, after])
        replaced = sorted(replaced, key=lambda e: int(e["version"]))
        commit = self._tx.commit(
            symbol, idx, [(part, new_rows, [int(e["version"]) for e in replaced])], op, reason_b, source_b
        )
        self._tx.compact_after_commit(symbol, [part])
        return commit

    def append(self, symbol: str, df: pd.DataFrame, *, source: str = "") -> Commit:
        """Add live rows; they are readable as soon as this returns.

        Rows are split by partition automatically. Rows whose key (schema ``key``, e.g.
        ``trade_id``) is already stored are skipped, so re-appending the same trades
        does not duplicate them; tables without a key keep every row. Each call is one
        commit with its own knowledge time. Many small appends to a partition are
        compacted into one file as they accumulate and when a later partition starts,
        without changing any as-of answer.

        Raises
        ------
        SymbolError, SchemaError, FrameError, DuplicateKeyError, LockedError
        """
        validate_symbol(symbol)
        rows = self._rows(df)
        source_b = _text(source, what="source", limit=SOURCE_BYTES)
        with self._tx.writing(symbol):
            idx = self._index(symbol)
            if not len(rows):
                return self._tx.nothing(symbol)
            parts = self.schema.partition.floor(rows["ts"] // NS_PER_DAY)
            bounds = np.flatnonzero(np.diff(parts)) + 1
            plan, skipped = [], 0
            for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(rows)]):
                chunk_rows, p = rows[int(a) : int(b)], parts[a]
                fresh = self._unseen(idx, int(p), chunk_rows)
                skipped += len(chunk_rows) - len(fresh)
                if len(fresh):
                    plan.append((int(p), fresh, []))
            if not plan:
                return self._tx.nothing(symbol, skipped)
            commit = self._tx.commit(symbol, idx, plan, "append", b"", source_b, skipped=skipped)
            self._tx.compact_after_commit(symbol, [p for p, _, _ in plan])
            return commit

    def ingest(self, symbol: str, df: pd.DataFrame, *, reason: str, source: str) -> Commit:
        """Add the rows of ``df`` the table does not hold yet, as new versions with an audit trail.

        The bulk path of importers: a row is *held* when ``append`` would skip it (its key
        is stored), or, in a table without a key, when an equal row (every column) is
        stored, counted as a multiset (``n`` equal rows in ``df``, ``m`` stored: ``n - m``
        are added). Each partition that gains rows gets one new version holding its
        visible rows plus the new ones (stably sorted by ``ts``, stored rows first among
        ties), all in one commit; a partition that gains nothing is not touched, so
        ingesting the same rows twice writes nothing the second time. ``versions`` shows
        the ``reason`` and ``source``; reads as of earlier times are unchanged.

        Raises
        ------
        SymbolError, SchemaError, FrameError, DuplicateKeyError, LockedError
        """
        validate_symbol(symbol)
        rows = self._rows(df)
        reason_b = _text(reason, what="reason", limit=REASON_BYTES)
        source_b = _text(source, what="source", limit=SOURCE_BYTES)
        with self._tx.writing(symbol):
            idx = self._index(symbol)
            if not len(rows):
                return self._tx.nothing(symbol)
            parts = self.schema.partition.floor(rows["ts"] // NS_PER_DAY)
            bounds = np.flatnonzero(np.diff(parts)) + 1
            plan, skipped = [], 0
            for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(rows)]):
                chunk, p = rows[int(a) : int(b)], int(parts[a])
                visible = idx.lookup(p, None)
                stored = _merge([self._read_entry(idx, e) for e in visible if int(e["rows"])])
                fresh = chunk if stored is None else chunk[~self._held(chunk, stored)]
                skipped += len(chunk) - len(fresh)
                if len(fresh):
                    merged = fresh if stored is None else Columns.concat([stored, fresh]).sorted_by_ts()
                    plan.append((p, merged, [int(e["version"]) for e in visible]))
            if not plan:
                return self._tx.nothing(symbol, skipped)
            return self._tx.commit(symbol, idx, plan, "insert", reason_b, source_b, skipped=skipped)

    def _held(self, rows: Columns, stored: Columns) -> np.ndarray:
        """Mask of ``rows`` already in ``stored``: by key, or as a multiset of whole rows."""
        if self.schema.key is not None:
            from .frames import keys_held

            return keys_held(self.schema, rows, stored)
        # each row as one opaque byte string (equal values, equal bytes: NaN included)
        whole = [Columns.concat([stored, rows])[n] for n in rows.names]
        packed = np.empty(len(whole[0]), dtype=[(n, a.dtype) for n, a in zip(rows.names, whole)])
        for n, a in zip(rows.names, whole):
            packed[n] = a
        ids = np.unique(packed.view(f"V{packed.dtype.itemsize}"), return_inverse=True)[1].ravel()
        old_ids, new_ids = ids[: len(stored)], ids[len(stored) :]
        have = np.bincount(old_ids, minlength=int(ids.max()) + 1)
        # occurrence number of each new row among the new rows equal to it
        order = np.argsort(new_ids, kind="stable")
        sorted_ids = new_ids[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_ids)) + 1]
        occurrence = np.empty(len(new_ids), dtype=np.int64)
        occurrence[order] = np.arange(len(new_ids)) - np.repeat(starts, np.diff(np.r_[starts, len(new_ids)]))
        return occurrence < have[new_ids]

    def _unseen(self, idx: SymbolIndex, part: int, rows: np.ndarray) -> np.ndarray:
        """Rows whose key is not stored yet in the partition (as of now).

        Only files whose key range overlaps the new keys are read; in the live case keys
        move forward (trade ids, times) and no file is read at all.
        """
        if self.schema.key is None:
            return rows
        k0 = self.schema.key[0]
        new0 = rows[k0]
        lo, hi = int(new0.min()), int(new0.max())
        overlapping = [e for e in idx.lookup(part, None) if int(e["rows"]) and int(e["kmin"]) <= hi and int(e["kmax"]) >= lo]
        if not overlapping:
            return rows
        stored = self._read_entries(idx, overlapping, names=["ts", *self.schema.key])
        from .frames import keys_held

        return rows[~keys_held(self.schema, rows, stored)]

    # -- compaction ---------------------------------------------------------------------
    def compact(self, symbol: str | None = None) -> int:
        """Merge every partition's visible files into one; returns how many partitions were merged.

        As-of answers do not change: every row keeps its knowledge time, and the merged
        files are deleted once the merge is committed.
        """
        from .compaction import compact_symbol

        symbols = [validate_symbol(symbol)] if symbol is not None else self.symbols()
        done = 0
        with self._lock.hold():
            for sym in symbols:
                with self._tx.writing(sym):
                    done += compact_symbol(self, sym)
        return done

    # -- reads --------------------------------------------------------------------------
    def select(self, symbols, start=None, end=None, *, as_of=None, columns=None, limit=None) -> pd.DataFrame:
        """Rows of ``symbols`` with ``start <= ts < end`` as known at ``as_of``.

        Parameters
        ----------
        symbols
            A symbol, or a list of symbols (the frame then has a ``symbol`` column).
        start, end
            Event time, half-open; ``None`` is unbounded.
        as_of
            Knowledge time: ``None`` (now), a time (not later than now), or a snapshot name.
        columns
            A subset of the table's columns (default all).
        limit
            At most this many rows: the first ones in ts order, exactly the first ``limit``
            rows the same call without limit returns (same order, ties included); only the
            partitions, files and chunks they need are read. An int >= 0; ``None`` (the
            default) is no limit. ``select_pinned`` and ``read_pin`` take none (a pin
            names whole partitions).

        Returns
        -------
        DataFrame indexed by ``ts`` (UTC, sorted), ready to be passed back to ``insert``.

        Raises
        ------
        PrunedError
            ``as_of`` lies before the horizon of a ``prune``.
        FrameError
            ``limit`` is not an int >= 0 (a bool is refused).
        """
        rows, which, syms, cols, _ = self._read(symbols, start, end, as_of, columns, pin=False, limit=limit)
        return to_frame(self.schema, rows, which, syms, cols)

    def select_columns(self, symbols, start=None, end=None, *, as_of=None, columns=None, limit=None) -> Columns:
        """``select``'s rows as numpy columns, without pandas.

        Same arguments (``columns`` in the order wanted, default all in schema order),
        checks, errors (``Raises`` of ``select``) and rows in the same order as
        ``select``; the store's read path imports neither pandas nor PyTables (format-3
        files).

        Returns
        -------
        Columns
            ``ts`` first (int64 ns UTC, sorted; for several symbols ties keep the order of
            ``symbols``), then the columns in their stored dtypes: datetime columns int64
            ns UTC, ``str<N>`` columns numpy bytes ``S<N>`` holding UTF-8, numbers and
            bools as stored; for a list of symbols, last, ``symbol`` (numpy unicode).
        """
        rows, which, syms, _, _ = self._read(symbols, start, end, as_of, columns, pin=False, limit=limit)
        return to_columns(rows, which, syms)

    def select_pinned(self, symbols, start=None, end=None, *, as_of=None, columns=None) -> Selection:
        """Like ``select``, plus the ``Pin`` that reproduces it (``Tickstore.read_pin``)."""
        from .pin import Selection  # pins only: a plain read never imports pin (~3 ms)

        rows, which, syms, cols, pin = self._read(symbols, start, end, as_of, columns, pin=True)
        return Selection(to_frame(self.schema, rows, which, syms, cols), pin)

    def _read(self, symbols, start, end, as_of, columns, *, pin: bool, limit=None):
        """The checked read behind ``select``, ``select_columns`` and ``select_pinned``:
        (rows, each row's symbol position, the symbols if a list was asked for, the
        columns asked for, the ``Pin`` if ``pin``); the first ``limit`` rows only, if
        given (not with ``pin``)."""
        if limit is not None:
            if isinstance(limit, (bool, np.bool_)) or not isinstance(limit, (int, np.integer)) or limit < 0:
                raise FrameError(f"limit must be an int >= 0 (or None: no limit), not {limit!r}")
            limit = int(limit)
        multi = isinstance(symbols, (list, tuple))
        syms = list(symbols) if multi else [symbols]
        for s in syms:
            validate_symbol(s)
        if multi and len(set(syms)) != len(syms):
            raise FrameError(f"symbols repeat: {syms}")
        cols = None if columns is None else list(columns) if not isinstance(columns, str) else [columns]
        if cols is not None:
            for c in cols:
                self.schema.column(c)
        lo = None if start is None else to_ns(start, what="start")
        hi = None if end is None else to_ns(end, what="end")
        if lo is not None and hi is not None and lo >= hi:
            raise FrameError(f"start {ns_to_timestamp(lo)} is not before end {ns_to_timestamp(hi)}")
        as_of_ns, protected = self.store._resolve(as_of)
        at = as_of_ns if as_of_ns is not None else self.store._clock.now()
        per_symbol, files, parts = read_as_of(self, syms, lo, hi, at, cols, pin=pin, protected=protected, limit=limit)
        rows, which = gather(self.schema, per_symbol, cols, limit)
        made = None
        if pin:
            from .pin import Pin

            made = Pin(self.name, tuple(syms), lo, hi, at, tuple(cols) if cols else None, multi, tuple(files), tuple(parts))
        return rows, which, syms if multi else None, cols, made

    def read_pin(self, pin: Pin, *, check: bool = True) -> pd.DataFrame:
        """Reproduce a pinned read exactly.

        The pinned files are read while they all exist (with ``check``, each one's sha256
        is verified through the very handle that reads it); once compaction merged them
        away (or a prune removed them), the same partitions are read as of the pin's time
        through the index. With ``check``, the rows of every (symbol, partition) must then
        match the pin's digests.

        Raises
        ------
        PinError
            A pinned file was altered, or the rows differ from the pin's digests, or a
            file is gone and the pin has no digests to check a re-read with.
        PrunedError
            The pinned files are gone and the pin's time lies before a prune horizon.
        """
        return read_pin(self, pin, check=check)

    # -- metadata -----------------------------------------------------------------------
    def versions(self, symbol: str, date) -> pd.DataFrame:
        """Every version of the partition holding ``date`` (tombstones included), oldest first.

        Corrections and deletes keep their old versions; live files that compaction
        merged are represented by the merged version (op ``compact``), which covers their
        knowledge-time window.
        """
        validate_symbol(symbol)
        day = to_day(date)
        idx = self._index(symbol)
        part = int(self.schema.partition.floor(np.array([day]))[0])
        sub = SymbolIndex(self.name, symbol, self.schema.partition, idx.history(part))
        return sub.to_frame()

    def index(self, symbols=None) -> pd.DataFrame:
        """The bitemporal index as a DataFrame: (symbol, date) MultiIndex, one row per version."""
        syms = self.symbols() if symbols is None else ([symbols] if isinstance(symbols, str) else list(symbols))
        frames = [self._index(s).to_frame() for s in syms]
        if not frames:
            return SymbolIndex.empty(self.name, "x:x", self.schema.partition).to_frame()
        import pandas as pd

        return pd.concat(frames)

    def damaged(self, symbols=None) -> pd.DataFrame:
        """Versions ``reindex`` could not read and recorded as damaged, one row each (symbol,
        date, version, path, why, on_disk): their partitions raise ``CorruptionError`` until
        the file is restored or deleted and ``reindex`` runs again."""
        syms = self.symbols() if symbols is None else ([symbols] if isinstance(symbols, str) else list(symbols))
        rows = []
        for s in syms:
            idx = self._index(s)
            for part, version, why in idx.damaged:
                rel = data_path(self.name, self.schema.partition, part, s, version)
                rows.append((s, ns_to_timestamp(part * NS_PER_DAY), version, rel, why, (self.store.root / rel).exists()))
        import pandas as pd

        return pd.DataFrame(rows, columns=["symbol", "date", "version", "path", "why", "on_disk"])

    def symbols(self) -> list[str]:
        d = self.dir / "_index"
        if not d.is_dir():
            return []
        out = []
        for p in d.glob("*.h5"):
            try:
                out.append(decode_symbol(p.stem))
            except TickstoreError:
                continue
        return sorted(out)

    def dates(self, symbol: str, *, as_of=None) -> pd.DatetimeIndex:
        """Partitions of ``symbol`` with visible rows (their first days)."""
        validate_symbol(symbol)
        as_of_ns, protected = self.store._resolve(as_of)
        at = as_of_ns if as_of_ns is not None else self.store._clock.now()
        await_commit(self._intent_path(symbol), at, timeout=self.store.read_wait, what=f"{self.name} {symbol}")
        idx = self._index(symbol)
        idx.check_damaged()
        e = idx.visible(at)
        if not protected:
            self.store._retention.check(at, self.store._snapshot_times)
        parts = np.unique(e["partition"][e["rows"] > 0])
        import pandas as pd

        return pd.DatetimeIndex((parts * NS_PER_DAY).view("M8[ns]"), tz="UTC", name="date")


def _read_schema(path: Path) -> Schema:
    """The schema a ``create_table`` persisted."""
    try:
        return Schema.from_json(json.loads(path.read_bytes()))
    except OSError as exc:
        raise StorageError.from_os(exc, path, "reading the schema") from None
    except (SchemaError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SchemaError(f"{path}: malformed table schema ({exc}); restore the file") from None


class Tickstore:
    """A store root holding tables. ``Tickstore("~/ticks")`` creates the root if absent.

    Parameters
    ----------
    clock
        Source of knowledge time (default the system clock); tests pass a ``FrozenClock``.
    lock_timeout
        Seconds a writer waits for another writer of the same table before ``LockedError``.
    read_wait
        Seconds a read as of a time waits for a commit at or before that time that is still
        being written (normally milliseconds) before ``LockedError``.
    """

    def __init__(self, root, *, clock: Clock | None = None, lock_timeout: float = 5.0, open_files: int = 256,
                 read_wait: float = 60.0):
        self.root = Path(root).expanduser().resolve()
        if self.root.exists() and not self.root.is_dir():
            raise TickstoreError(f"store root {self.root} exists and is not a directory")
        diskio.makedirs(self.root)
        self.clock = clock if clock is not None else SystemClock()
        self.lock_timeout = lock_timeout
        self.read_wait = read_wait
        self._indexes = IndexCache(self.root)
        self._files = FileCache(open_files)
        self._clock = StoreClock(self.root, self.clock, recover=functools.partial(durable_floor, self.root))
        self._retention = Retention(self.root)
        # closes cached handles when the store is collected or the interpreter exits;
        # a finalizer, not __del__, so no I/O runs at an arbitrary point of collection
        self._finalizer = weakref.finalize(self, _close, self._files, self._clock)
        self._tables: dict[str, Table] = {}
        self._snap_lock = TableLock(self.root / ".snapshots.lock", timeout=lock_timeout)

    def __repr__(self) -> str:
        return f"Tickstore({str(self.root)!r})"

    def __enter__(self) -> "Tickstore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close cached file handles. The store stays usable (handles reopen on demand)."""
        _close(self._files, self._clock)

    # -- tables -------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Table:
        t = self._tables.get(name)
        if t is not None:
            return t
        if not isinstance(name, str) or not _TABLE_NAME.fullmatch(name):
            raise UnknownTableError(f"unknown table {name!r}: table names are lower-case identifiers")
        custom = self.root / name / "_schema.json"
        if custom.exists():
            schema = _read_schema(custom)
        else:
            schema = builtin_schema(name)
            on_disk = _partition_on_disk(self.root / name)
            if on_disk is not None and on_disk is not schema.partition:
                schema = dataclasses.replace(schema, partition=on_disk)
        t = self._tables[name] = Table(self, schema)
        return t

    def create_table(self, name: str, schema: Schema, *, partition: Partition | str | None = None) -> Table:
        """Declare a table that is not built in (e.g. a derived series); idempotent for the same schema.

        Parameters
        ----------
        partition
            How many days one file covers: ``"day"``, ``"month"`` or ``"year"`` (default the
            schema's). Fit it to the rate: a file per day of a few rows costs more to open
            than to read; a year of 1-minute bars is 525,600 rows.

        Raises
        ------
        SchemaError
            The name is built in, or the table exists with another schema or partition.
        """
        if partition is not None:
            try:
                schema = dataclasses.replace(schema, partition=Partition(partition))
            except ValueError:
                raise SchemaError(f"partition {partition!r}: one of {[p.value for p in Partition]}") from None
        if schema.name != name:
            raise SchemaError(f"schema is named {schema.name!r}, not {name!r}")
        try:
            builtin_schema(name)
        except UnknownTableError:
            pass
        else:
            raise SchemaError(f"{name!r} is a built-in table; choose another name")
        path = self.root / name / "_schema.json"
        if path.exists():
            existing = _read_schema(path)
            if existing != schema:
                raise SchemaError(f"table {name!r} exists with schema {existing.to_json()}; not {schema.to_json()}")
        else:
            diskio.makedirs(path.parent)
            diskio.replace(path, [json.dumps(schema.to_json(), indent=1).encode()])
        self._tables.pop(name, None)
        return self[name]

    def tables(self) -> list[str]:
        """Tables that hold data or were created in this store."""
        out = []
        for p in self.root.iterdir():
            if not p.is_dir() or p.name.startswith((".", "_")):
                continue
            if (p / "_schema.json").exists():
                out.append(p.name)
                continue
            try:
                builtin_schema(p.name)
            except UnknownTableError:
                continue
            out.append(p.name)
        return sorted(out)

    # -- as-of ----------------------------------------------------------------------------
    def _snapshot_file(self) -> Path:
        return self.root / "_snapshots.json"

    def _load_snapshots(self) -> dict:
        """{name: {"as_of": ns, "note": str}} from ``_snapshots.json``.

        Raises
        ------
        SnapshotError
            The file is not what ``snapshot`` writes (hand-edited, damaged).
        """
        p = self._snapshot_file()
        try:
            text = p.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StorageError.from_os(exc, p, "reading the snapshots") from None
        try:
            snaps = json.loads(text)
        except ValueError as exc:
            raise SnapshotError(f"{p} is not valid JSON ({exc}); restore it from a backup") from None
        if not isinstance(snaps, dict):
            raise SnapshotError(f"{p}: expected {{name: {{'as_of': ns, 'note': str}}}}, got {type(snaps).__name__}")
        for name, v in snaps.items():
            if not _SNAPSHOT_NAME.fullmatch(name):
                raise SnapshotError(f"{p}: {name!r} is not a snapshot name")
            ok = isinstance(v, dict) and type(v.get("as_of")) is int and 0 <= v["as_of"] < MAX_NS
            if not ok or not isinstance(v.get("note", ""), str) or set(v) - {"as_of", "note"}:
                raise SnapshotError(f"{p}: snapshot {name!r} is malformed ({v!r}); expected {{'as_of': ns, 'note': str}}")
        return snaps

    def snapshot(self, name: str, *, note: str = "") -> pd.Timestamp:
        """Name the current knowledge time so that ``as_of=name`` reads what is visible now.

        Raises
        ------
        SnapshotError
            Bad or existing name.
        """
        if not isinstance(name, str) or not _SNAPSHOT_NAME.fullmatch(name):
            raise SnapshotError(f"snapshot name {name!r}: start with a letter; letters, digits, . _ - (max 64)")
        with self._snap_lock.hold():
            snaps = self._load_snapshots()
            if name in snaps:
                raise SnapshotError(f"snapshot {name!r} exists (as of {ns_to_timestamp(snaps[name]['as_of'])}); names are permanent")
            # a knowledge time after every commit so far, recorded (durably) as the store's
            # high-water mark: no commit can land at or before it, even if the clock steps back
            latest = max((int(v["as_of"]) for v in snaps.values()), default=0)
            now = self._clock.next(latest + 1, durable=True)
            snaps[name] = {"as_of": now, "note": note}
            diskio.replace(self._snapshot_file(), [json.dumps(snaps, indent=1, sort_keys=True).encode()])
        return ns_to_timestamp(now)

    def snapshots(self) -> pd.DataFrame:
        import pandas as pd

        snaps = self._load_snapshots()
        frame = pd.DataFrame(
            {
                "as_of": pd.DatetimeIndex([ns_to_timestamp(v["as_of"]) for v in snaps.values()]),
                "note": [v.get("note", "") for v in snaps.values()],
            },
            index=pd.Index(list(snaps), name="name", dtype=object),
        )
        return frame.sort_values("as_of")

    def _snapshot_times(self) -> list[int]:
        return [int(v["as_of"]) for v in self._load_snapshots().values()]

    def now(self) -> pd.Timestamp:
        """The store's current knowledge time (never earlier than any commit or snapshot)."""
        return ns_to_timestamp(self._clock.now())

    def resolve_as_of(self, as_of) -> int | None:
        """``None`` | time | snapshot name -> knowledge time in ns (None for latest).

        Raises
        ------
        SnapshotError
            Unknown snapshot name, or a time later than now (its answer would change as
            commits land).
        PrunedError
            A time before the horizon of ``prune``.
        """
        ns, protected = self._resolve(as_of)
        if ns is not None and not protected:
            self._retention.check(ns, self._snapshot_times)
        return ns

    def _resolve(self, as_of) -> tuple[int | None, bool]:
        """(knowledge time or None for now, whether it names a snapshot)."""
        if as_of is None:
            return None, False
        if isinstance(as_of, str) and _SNAPSHOT_NAME.fullmatch(as_of):
            snaps = self._load_snapshots()
            if as_of in snaps:
                return int(snaps[as_of]["as_of"]), True
            raise SnapshotError(f"no snapshot named {as_of!r}; snapshots are {sorted(snaps) or 'none'}")
        ns = to_ns(as_of, what="as_of")
        now = self._clock.now()
        if ns > now:
            raise SnapshotError(
                f"as_of {ns_to_timestamp(ns)} is later than now ({ns_to_timestamp(now)}): what will be known "
                f"then is not known yet; read as of a past time, or without as_of"
            )
        return ns, False

    # -- retention ------------------------------------------------------------------------
    @property
    def pruned_before(self) -> pd.Timestamp | None:
        """The prune horizon: reads as of an earlier time (not a snapshot's) raise ``PrunedError``."""
        h = self._retention.horizon
        return ns_to_timestamp(h) if h else None

    def prunes(self) -> pd.DataFrame:
        """The prune log: when, before what, why, by whom, what was removed, whether done."""
        import pandas as pd

        log = self._retention.load()["log"]
        frame = pd.DataFrame(
            {
                "at": pd.DatetimeIndex([ns_to_timestamp(r["at"]) for r in log]),
                "before": pd.DatetimeIndex([ns_to_timestamp(r["before"]) for r in log]),
                "reason": [r["reason"] for r in log],
                "by": [r["by"] for r in log],
                "versions": [int(r["versions"]) for r in log],
                "bytes": [int(r["bytes"]) for r in log],
                "done": [bool(r["done"]) for r in log],
            }
        )
        return frame

    def prune(self, before, *, reason: str = "") -> dict:
        """Forget history: versions visible at no knowledge time >= ``before`` and at no
        snapshot are removed from the index and from disk (snapshots protect what they name).

        Reads as of a time before ``before`` (other than a snapshot's) then raise
        ``PrunedError``; reads as of ``before`` or later, and of every snapshot, are
        unchanged. The prune is recorded in ``<root>/_retention.json`` (when, before, why,
        what it removed) and is kill -9 safe: run it again to finish an interrupted one.

        Returns
        -------
        The record: {"at", "before", "reason", "by", "done", "versions", "files", "bytes"}.

        Raises
        ------
        SnapshotError
            ``before`` is later than now.
        LockedError
            A writer holds a table for longer than ``lock_timeout``.
        """
        _text(reason, what="reason", limit=REASON_BYTES)
        return prune(self, before, reason)


    # -- integrity ------------------------------------------------------------------------
    def verify(self, *, checksums: bool = True) -> "VerifyReport":
        """Check every index field against the files (and their checksums); see ``integrity.verify``."""
        from .integrity import verify

        return verify(self, checksums=checksums)

    def reindex(self, tables: list[str] | None = None, *, symbols: list[str] | None = None) -> "ReindexReport":
        """Rebuild the index from the files alone, whatever state it is in; see ``integrity.reindex``.

        Parameters
        ----------
        tables, symbols
            What to rebuild (default everything): e.g. one symbol after restoring or
            deleting one of its damaged files.

        Returns
        -------
        ReindexReport
            ``indexed`` {table: files}, ``skipped`` (unreadable or foreign files, left in
            place), ``damaged`` (unreadable data files, recorded in their index: their
            partitions raise ``CorruptionError`` until restored or deleted),
            ``removed`` (leftover temporaries, files of writes that died).
        """
        from .integrity import reindex

        for s in symbols or ():
            validate_symbol(s)
        return reindex(self, tables, symbols)

    def read_pin(self, pin: Pin, *, check: bool = True) -> pd.DataFrame:
        """Reproduce a pinned read exactly; see ``Table.read_pin``."""
        return self[pin.table].read_pin(pin, check=check)


def _close(files: FileCache, clock: StoreClock) -> None:
    files.close()
    clock.close()


def durable_floor(root: Path) -> int:
    """The latest knowledge time the store's durable files name: every committed version
    (each index's ``last_commit``), every snapshot and the prune log. What the store clock
    must stay above after a power cut lost its last records (see ``clock``); unreadable
    files count as naming nothing (a damaged index refuses reads and writes anyway, and
    ``reindex`` raises the clock to what it rebuilds)."""
    floor = 0
    for p in root.glob("*/_index/*.h5"):
        if not p.name.startswith("."):
            floor = max(floor, index_last_commit(p))
    try:
        snaps = json.loads((root / "_snapshots.json").read_bytes())
        floor = max([floor] + [v["as_of"] for v in snaps.values() if type(v.get("as_of")) is int and v["as_of"] < MAX_NS])
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    try:
        doc = Retention(root).load()
        floor = max([floor, doc["horizon"]] + [r["at"] for r in doc["log"] if type(r.get("at")) is int])
    except (TickstoreError, AttributeError, TypeError):
        pass
    return min(floor, MAX_NS - 1)


def _partition_on_disk(table_dir: Path) -> Partition | None:
    """The partition a built-in table's files use, from its index files (None for a new
    table): a store keeps reading its files after a built-in table's default changed."""
    try:
        with os.scandir(table_dir / "_index") as it:
            for entry in it:
                if entry.name.endswith(".h5") and not entry.name.startswith("."):
                    part = index_partition(Path(entry.path))
                    if part is not None:
                        return part
    except FileNotFoundError:
        pass
    return None
