"""The store facade: ``Tickstore`` (a root of tables) and ``Table`` (insert/append/delete/select).

Composes the layout (paths), splay (one file), index (visibility), lock (one writer) and
frames (validation). A write is one transaction on one (table, symbol)::

    lock table -> roll back a dead writer's intent -> validate everything
      -> write intent (paths about to appear) -> write files (tmp, fsync, rename)
      -> replace the symbol's index (tmp, fsync, rename)   <- the commit point
      -> remove intent -> unlock

A ``kill -9`` before the commit point leaves files no index names; the next writer
deletes them (they are listed in the intent). After it, the commit is complete. Any
other failure before the commit point (a full disk, a read-only file system: a
``StorageError``) rolls the write back at once, so the store is left as it was. A write
refuses to start when the symbol's index is missing while its data files exist (it would
reuse their version numbers): ``tickstore reindex`` first. The automatic compaction that
follows a committed write never turns it into an error: a failed merge is logged, rolled
back and retried by the next write (or ``compact()``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import diskio
from .columns import Columns
from .clock import MAX_NS, NS_PER_DAY, Clock, SystemClock, ns_to_timestamp, to_day, to_ns
from .errors import (
    CorruptionError,
    FrameError,
    NotFoundError,
    PinError,
    SchemaError,
    SnapshotError,
    StorageError,
    TickstoreError,
    UnknownTableError,
)
from .frames import check_unique_key, frame_to_rows, key_values, rows_to_frame
from .index import ENTRY, REASON_BYTES, SOURCE_BYTES, IndexCache, SymbolIndex, index_path

if TYPE_CHECKING:
    from .integrity import ReindexReport, VerifyReport
from .layout import decode_symbol, encode_symbol, parse_data_path, validate_symbol
from .lock import TableLock
from .pin import Pin, PinnedFile, Selection
from .schemas import Partition, Schema, builtin_schema
from .splay import FileCache, FileMeta, sha256_file, write_file

__all__ = ["Tickstore", "Table", "Commit"]

# Size-tiered compaction of a partition's live segments: once FANOUT files are visible,
# the newest ones are merged (only a suffix in version order, so the merged file sorts
# where its members did and ties keep their order). Rewrites stay O(n log n).
FANOUT = 8
_SNAPSHOT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")  # matched whole (fullmatch)
_TABLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
log = logging.getLogger("tickstore")


@dataclass(frozen=True)
class Commit:
    """What a write did: one knowledge time, the versions it created, rows written/skipped."""

    table: str
    symbol: str
    committed_at: pd.Timestamp | None
    versions: tuple[tuple[pd.Timestamp, int], ...]  # (partition date, version)
    rows: int
    skipped: int = 0


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

    def __repr__(self) -> str:
        return f"<Table {self.name} at {self.dir}>"

    # -- helpers ------------------------------------------------------------------------
    def _index(self, symbol: str) -> SymbolIndex:
        return self.store._indexes.get(self.name, symbol, self.schema.partition)

    def _abs(self, rel: str) -> str:
        return str(self.store.root / rel)

    def _read_entry(self, idx: SymbolIndex, e, lo=None, hi=None, names=None) -> Columns:
        dtypes = self.schema.disk_dtypes
        if names is not None:
            dtypes = {n: dtypes[n] for n in names}
        if int(e["rows"]) == 0:
            return Columns.empty(dtypes)
        first, last = int(e["first_ts"]), int(e["last_ts"])
        lo = lo if lo is not None and first < lo else None
        hi = hi if hi is not None and last >= hi else None
        return self.store._files.read(self._abs(idx.path_of(e)), dtypes, lo, hi, fill=self.schema.defaults)

    def _has_rows(self, idx: SymbolIndex, e, lo: int, hi: int) -> bool:
        if self.schema.partition is Partition.DAY:
            return True  # a non-empty day file holds rows of its day only
        start, stop = self.store._files.row_range(self._abs(idx.path_of(e)), lo, hi)
        return stop > start

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
        rows = frame_to_rows(self.schema, df, lo=lo, hi=hi, where=f"the day {np.datetime64(day, 'D')}")
        rows = check_unique_key(self.schema, rows)
        reason_b = _text(reason, what="reason", limit=REASON_BYTES)
        source_b = _text(source, what="source", limit=SOURCE_BYTES)
        with self._writing(symbol):
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
        with self._writing(symbol):
            return self._replace_day(symbol, day, None, "delete", reason_b, source_b)

    def _replace_day(self, symbol, day, rows, op, reason_b, source_b) -> Commit:
        idx = self._index(symbol)
        part = int(self.schema.partition.floor(np.array([day]))[0])
        lo, hi = self._day_window(day)
        visible = idx.lookup(part, None)
        # Files holding rows of this day (or empty ones) are replaced; rows of other days
        # in them (month/year partitions) are carried into the new version unchanged.
        replaced = [e for e in visible if int(e["rows"]) == 0 or (int(e["first_ts"]) < hi and int(e["last_ts"]) >= lo)]
        if op == "delete" and not any(int(e["rows"]) and self._has_rows(idx, e, lo, hi) for e in replaced):
            raise NotFoundError(
                f"{self.name} {symbol} {np.datetime64(day, 'D')}: nothing stored to delete "
                f"(see versions({symbol!r}, '{np.datetime64(day, 'D')}'))"
            )
        carried = []
        # a day file holds only its day: nothing to carry, nothing to read
        for e in replaced if self.schema.partition is not Partition.DAY else ():
            r = self._read_entry(idx, e)
            keep = (r["ts"] < lo) | (r["ts"] >= hi)
            if keep.any():
                carried.append(r[keep])
        new_rows = rows if rows is not None else Columns.empty(self.schema.disk_dtypes)
        if carried:
            merged = _merge(carried)
            before, after = merged[merged["ts"] < lo], merged[merged["ts"] >= hi]
            new_rows = Columns.concat([before, new_rows, after])
        commit = self._commit(
            symbol, idx, [(part, new_rows, [int(e["version"]) for e in replaced])], op, reason_b, source_b
        )
        self._compact_after_commit(symbol, [part])
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
        rows = frame_to_rows(self.schema, df)
        rows = check_unique_key(self.schema, rows)
        source_b = _text(source, what="source", limit=SOURCE_BYTES)
        with self._writing(symbol):
            idx = self._index(symbol)
            if not len(rows):
                return Commit(self.name, symbol, None, (), 0, 0)
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
                return Commit(self.name, symbol, None, (), 0, skipped)
            commit = self._commit(symbol, idx, plan, "append", b"", source_b, skipped=skipped)
            self._compact_after_commit(symbol, [p for p, _, _ in plan])
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
        rows = frame_to_rows(self.schema, df)
        rows = check_unique_key(self.schema, rows)
        reason_b = _text(reason, what="reason", limit=REASON_BYTES)
        source_b = _text(source, what="source", limit=SOURCE_BYTES)
        with self._writing(symbol):
            idx = self._index(symbol)
            if not len(rows):
                return Commit(self.name, symbol, None, (), 0, 0)
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
                return Commit(self.name, symbol, None, (), 0, skipped)
            return self._commit(symbol, idx, plan, "insert", reason_b, source_b, skipped=skipped)

    def _held(self, rows: Columns, stored: Columns) -> np.ndarray:
        """Mask of ``rows`` already in ``stored``: by key, or as a multiset of whole rows."""
        if self.schema.key is not None:
            new_keys, old_keys = key_values(self.schema, rows), key_values(self.schema, stored)
            return new_keys.isin(old_keys) if isinstance(new_keys, pd.MultiIndex) else np.isin(new_keys, old_keys)
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
        stored = Columns.concat([self._read_entry(idx, e, names=["ts", *self.schema.key]) for e in overlapping])
        new_keys, old_keys = key_values(self.schema, rows), key_values(self.schema, stored)
        if isinstance(new_keys, pd.MultiIndex):
            seen = new_keys.isin(old_keys)
        else:
            seen = np.isin(new_keys, old_keys)
        return rows[~seen]

    def _commit(self, symbol, idx, plan, op, reason_b, source_b, *, skipped: int = 0) -> Commit:
        """Write one file per planned partition and publish them in one index update.

        ``plan`` is ``[(partition, rows, versions it supersedes), ...]``.
        """
        now = max(self.store.clock.now_ns(), idx.last_commit + 1)
        new = np.zeros(len(plan), ENTRY)
        targets = []
        for i, (part, rows, replaces) in enumerate(plan):
            version = idx.next_version(part)
            new[i]["partition"] = part
            new[i]["version"] = version
            targets.append(idx.path_of(new[i]))
        for rel in targets:  # before the intent: a rollback deletes what the intent names
            if os.path.lexists(self._abs(rel)):
                raise CorruptionError(
                    f"{rel} exists but the index of {self.name} {symbol} does not name it; a write never "
                    f"replaces a data file: run `tickstore verify`, then `tickstore reindex {self.name}`"
                )
        intent = self._intent_path(symbol)
        diskio.makedirs(intent.parent)
        # not fsynced: the intent guards against a dead process, whose page cache survives;
        # after a power loss a file it named may remain as a stray that verify reports
        diskio.write_scratch(intent, json.dumps(targets).encode())
        supersede: dict[int, list[int]] = {}
        k0 = self.schema.key[0] if self.schema.key else "ts"
        for i, (part, rows, replaces) in enumerate(plan):
            n = len(rows)
            meta = FileMeta(
                table=self.name,
                symbol=symbol,
                partition=self.schema.partition.value,
                partition_start=str(np.datetime64(part, "D")),
                version=int(new[i]["version"]),
                committed_at=now,
                op=op,
                replaces=tuple(replaces),
                reason=reason_b.decode(),
                source=source_b.decode(),
                rows=n,
                first_ts=int(rows["ts"][0]) if n else 0,
                last_ts=int(rows["ts"][-1]) if n else 0,
                schema=json.dumps(self.schema.to_json()),
            )
            checksum, size = write_file(
                Path(self._abs(targets[i])),
                rows,
                meta,
                complib=self.schema.complib,
                complevel=self.schema.complevel,
                shuffle=self.schema.shuffle,
                encoding=self.schema.encoding,
            )
            e = new[i]
            e["committed_at"] = now
            e["superseded_at"] = MAX_NS
            e["op"] = op.encode()
            e["rows"] = n
            e["first_ts"] = meta.first_ts
            e["last_ts"] = meta.last_ts
            e["kmin"] = int(rows[k0].min()) if n else 0
            e["kmax"] = int(rows[k0].max()) if n else 0
            e["size"] = size
            e["checksum"] = checksum.encode()
            e["reason"] = reason_b
            e["source"] = source_b
            supersede.setdefault(part, []).extend(replaces)
        self.store._indexes.put(idx.commit(new, supersede, now))  # the commit point
        intent.unlink()
        return Commit(
            self.name,
            symbol,
            ns_to_timestamp(now),
            tuple((ns_to_timestamp(int(p) * NS_PER_DAY), int(v)) for p, v in zip(new["partition"], new["version"])),
            int(new["rows"].sum()),
            skipped,
        )

    @contextmanager
    def _writing(self, symbol: str):
        """One write of ``symbol``: the table lock, a dead writer's files rolled back, and
        no write without an index. A failure before the commit point deletes this write's
        files before it reaches the caller (nothing changed); an ``OSError`` that no layer
        turned into a ``StorageError`` is turned here."""
        with self._lock.hold():
            self._recover(symbol)
            self._check_writable(symbol)
            try:
                yield
            except BaseException as exc:
                try:
                    self._recover(symbol)
                except Exception:  # noqa: BLE001 - the next writer retries the rollback
                    log.warning("%s %s: rolling back a failed write failed; the next write retries", self.name, symbol, exc_info=True)
                if isinstance(exc, OSError):
                    raise StorageError.from_os(exc, getattr(exc, "filename", None) or self.dir, "writing") from None
                raise

    def _check_writable(self, symbol: str) -> None:
        """Refuse to write a symbol whose index is missing while its data files exist: the
        writer would number versions from 1 again and ignore what is committed."""
        if os.path.lexists(index_path(self.store.root, self.name, symbol)):
            return
        depth = {Partition.DAY: 3, Partition.MONTH: 2, Partition.YEAR: 1}[self.schema.partition]
        for path in self.dir.glob("/".join(["[0-9]*"] * depth + [f"{encode_symbol(symbol)}_*.h5"])):
            try:
                if parse_data_path(str(path.relative_to(self.store.root)), self.schema.partition)[1] != symbol:
                    continue  # another symbol whose name extends this one with '_...'
            except TickstoreError:
                continue
            raise CorruptionError(
                f"{self.name} {symbol}: the index is missing but data files exist "
                f"(e.g. {path.relative_to(self.store.root)}); run `tickstore reindex {self.name}` to rebuild "
                f"it from the files before writing"
            )

    def _compact_after_commit(self, symbol: str, touched: list[int]) -> None:
        """The automatic compaction after a committed write. Its failure (a full disk...)
        must not make the committed write look failed: a caller would retry it, and a table
        without a key would store the rows twice. Logged and rolled back; the next write of
        the symbol (or ``compact()``) merges again."""
        try:
            self._auto_compact(symbol, touched)
        except (TickstoreError, OSError):
            log.warning("%s %s: compaction after a committed write failed; retried by the next write", self.name, symbol, exc_info=True)
            try:
                self._recover(symbol)
            except Exception:  # noqa: BLE001 - the next writer retries the rollback
                log.warning("%s %s: rolling back the failed compaction failed", self.name, symbol, exc_info=True)

    def _intent_path(self, symbol: str) -> Path:
        return index_path(self.store.root, self.name, symbol).with_suffix(".intent")

    def _recover(self, symbol: str) -> None:
        """Delete the files of a write that died before its commit point (lock held)."""
        intent = self._intent_path(symbol)
        if not intent.exists():
            return
        idx = self._index(symbol)
        committed = {idx.path_of(e) for e in idx.entries}
        try:
            targets = json.loads(intent.read_text())
        except ValueError:
            targets = []  # the intent itself was half-written: its files were never started
        for rel in targets:
            if rel in committed:
                continue
            p = Path(self._abs(rel))
            for leftover in [p, *p.parent.glob(f".{p.name}.tmp-*")]:
                leftover.unlink(missing_ok=True)
        for leftover in intent.parent.glob(f".{encode_symbol(symbol)}.h5.tmp-*"):
            leftover.unlink(missing_ok=True)
        intent.unlink()
        diskio.fsync_dir(intent.parent)

    # -- compaction ---------------------------------------------------------------------
    def compact(self, symbol: str | None = None) -> int:
        """Merge every partition's visible files into one; returns how many partitions were merged.

        As-of answers do not change: the merged file holds exactly the rows it replaces,
        in the order a read returned them.
        """
        symbols = [validate_symbol(symbol)] if symbol is not None else self.symbols()
        done = 0
        with self._lock.hold():
            for sym in symbols:
                with self._writing(sym):
                    idx = self._index(sym)
                    vis = idx.visible(None)
                    parts, counts = np.unique(vis["partition"], return_counts=True)
                    for p in parts[counts > 1]:
                        self._merge_files(sym, int(p), idx.lookup(int(p), None))
                        done += 1
        return done

    def _auto_compact(self, symbol: str, touched: list[int]) -> None:
        idx = self._index(symbol)
        # 1. partitions before the one being written are closed: one file each.
        vis = idx.visible(None)
        parts, counts = np.unique(vis["partition"], return_counts=True)
        for p in parts[(counts > 1) & (parts < min(touched))]:
            self._merge_files(symbol, int(p), self._index(symbol).lookup(int(p), None))
        # 2. size-tiered merge of the newest files of the partitions just written.
        for p in touched:
            vis = self._index(symbol).lookup(p, None)
            if len(vis) < FANOUT:
                continue
            rows = [int(e["rows"]) for e in vis]
            j = len(vis) - FANOUT
            total = sum(rows[j:])
            while j > 0 and rows[j - 1] <= total:
                j -= 1
                total += rows[j]
            self._merge_files(symbol, p, vis[j:])

    def _merge_files(self, symbol: str, part: int, entries: list) -> None:
        idx = self._index(symbol)
        rows = _merge([self._read_entry(idx, e) for e in entries])
        if rows is None:
            return
        self._commit(
            symbol,
            idx,
            [(part, rows, [int(e["version"]) for e in entries])],
            "compact",
            f"merged versions {[int(e['version']) for e in entries]}"[:REASON_BYTES].encode(),
            b"compaction",
        )

    # -- reads --------------------------------------------------------------------------
    def select(self, symbols, start=None, end=None, *, as_of=None, columns=None) -> pd.DataFrame:
        """Rows of ``symbols`` with ``start <= ts < end`` as known at ``as_of``.

        Parameters
        ----------
        symbols
            A symbol, or a list of symbols (the frame then has a ``symbol`` column).
        start, end
            Event time, half-open; ``None`` is unbounded.
        as_of
            Knowledge time: ``None`` (latest), a time, or a snapshot name.
        columns
            A subset of the table's columns (default all).

        Returns
        -------
        DataFrame indexed by ``ts`` (UTC, sorted), ready to be passed back to ``insert``.
        """
        return self._select(symbols, start, end, as_of, columns, pin=False)[0]

    def select_pinned(self, symbols, start=None, end=None, *, as_of=None, columns=None) -> Selection:
        """Like ``select``, plus the ``Pin`` of exactly which files were read."""
        frame, pin = self._select(symbols, start, end, as_of, columns, pin=True)
        return Selection(frame, pin)

    def _select(self, symbols, start, end, as_of, columns, *, pin: bool):
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
        as_of_ns = self.store.resolve_as_of(as_of)
        floor = self.schema.partition.floor
        first_part = None if lo is None else int(floor(np.array([lo // NS_PER_DAY]))[0])
        last_part = None if hi is None else int(floor(np.array([(hi - 1) // NS_PER_DAY]))[0])
        files: list[PinnedFile] = []
        per_symbol = []
        for sym in syms:
            idx = self._index(sym)
            entries = idx.visible(as_of_ns, first_part, last_part)
            if pin:
                files.extend(
                    PinnedFile(sym, int(e["partition"]), idx.path_of(e), int(e["version"]), e["checksum"].decode(), int(e["rows"]))
                    for e in entries
                )
            per_symbol.append(self._assemble(idx, entries, lo, hi, cols))
        frame = self._to_frame(per_symbol, syms, multi, cols)
        if not pin:
            return frame, None
        resolved = as_of_ns if as_of_ns is not None else max(self.store.clock.now_ns(), 0)
        return frame, Pin(self.name, tuple(syms), lo, hi, resolved, tuple(cols) if cols else None, multi, tuple(files))

    def _assemble(self, idx, entries, lo, hi, cols=None) -> Columns | None:
        """Columns ``ts`` + ``cols`` (default all) of one symbol from its visible entries
        (sorted by partition, version).

        Each file's row slice is found first, then every needed column is decompressed
        into one preallocated array per column (no concatenation copy; columns not asked
        for are never read). Files of one partition that overlap in time (live segments)
        are then stably sorted by ts, version order breaking ties.
        """
        files = self.store._files
        plan = []
        for e in entries:
            first, last = int(e["first_ts"]), int(e["last_ts"])
            if not int(e["rows"]) or (lo is not None and last < lo) or (hi is not None and first >= hi):
                continue
            path = self._abs(idx.path_of(e))
            if (lo is None or first >= lo) and (hi is None or last < hi):
                start, stop = 0, int(e["rows"])  # the whole file: no bisection needed
            else:
                start, stop = files.row_range(
                    path, lo if lo is not None and first < lo else None, hi if hi is not None and last >= hi else None
                )
            if stop > start:
                plan.append((path, start, stop, int(e["partition"]), first, last))
        if not plan:
            return None
        dtypes = self.schema.disk_dtypes
        if cols is not None:
            dtypes = {n: dtypes[n] for n in ["ts", *cols]}
        out = Columns.empty(dtypes, sum(p[2] - p[1] for p in plan))
        arrays = dict(out.items())
        fill = self.schema.defaults  # files written before a column with a default existed
        pos, group_start, prev, overlap = 0, 0, None, False
        groups = []  # (row offset, row end, files overlap in time) per partition
        for path, start, stop, part, first, last in plan:
            if prev is None or prev[0] != part:
                if prev is not None:
                    groups.append((group_start, pos, overlap))
                group_start, overlap = pos, False
            elif first < prev[1]:
                overlap = True
            n = stop - start
            files.read_into(path, start, stop, {name: a[pos : pos + n] for name, a in arrays.items()}, fill=fill)
            pos += n
            prev = (part, max(last, prev[1]) if prev is not None and prev[0] == part else last)
        groups.append((group_start, pos, overlap))
        for a, b, overlap in groups:
            if overlap:
                order = np.argsort(arrays["ts"][a:b], kind="stable")
                for col in arrays.values():
                    col[a:b] = col[a:b][order]
        return out

    def _to_frame(self, per_symbol, syms, multi, cols) -> pd.DataFrame:
        if not multi:
            rows = per_symbol[0]
            return self.schema.empty_frame(cols) if rows is None else rows_to_frame(self.schema, rows, cols)
        frames = []
        for sym, rows in zip(syms, per_symbol):
            if rows is None:
                continue
            f = rows_to_frame(self.schema, rows, cols)
            f["symbol"] = sym
            frames.append(f)
        if not frames:
            f = self.schema.empty_frame(cols)
            f["symbol"] = pd.Series([], dtype=object)
            return f
        out = pd.concat(frames)
        if not out.index.is_monotonic_increasing:
            out = out.iloc[np.argsort(out.index.asi8, kind="stable")]
        return out

    def read_pin(self, pin: Pin, *, check: bool = True) -> pd.DataFrame:
        """Re-read exactly the files of ``pin`` (checksums verified first).

        Raises
        ------
        PinError
            A pinned file is missing or its checksum differs.
        """
        if pin.table != self.name:
            raise PinError(f"pin is for table {pin.table!r}, not {self.name!r}")
        by_symbol = {s: [] for s in pin.symbols}
        for f in pin.files:
            path = self._abs(f.path)
            if check:
                if not os.path.exists(path):
                    raise PinError(f"pinned file {f.path} (version {f.version}) is missing")
                got = sha256_file(path)
                if got != f.checksum:
                    raise PinError(f"pinned file {f.path} was altered: sha256 {got} != pinned {f.checksum}")
            by_symbol[f.symbol].append(f)
        per_symbol = []
        cols = list(pin.columns) if pin.columns else None
        for sym in pin.symbols:
            fs = by_symbol[sym]
            entries = np.zeros(len(fs), ENTRY)
            for e, f in zip(entries, fs):
                e["partition"], e["version"], e["rows"] = f.partition, f.version, f.rows
                e["first_ts"], e["last_ts"] = np.iinfo(np.int64).min, np.iinfo(np.int64).max
            idx = SymbolIndex.empty(self.name, sym, self.schema.partition)
            per_symbol.append(self._assemble(idx, entries, pin.start, pin.end, cols))
        return self._to_frame(per_symbol, list(pin.symbols), pin.multi, cols)

    # -- metadata -----------------------------------------------------------------------
    def versions(self, symbol: str, date) -> pd.DataFrame:
        """Every version of the partition holding ``date`` (tombstones included), oldest first."""
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
        return pd.concat(frames)

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
        e = self._index(symbol).visible(self.store.resolve_as_of(as_of))
        parts = np.unique(e["partition"][e["rows"] > 0])
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
    """

    def __init__(self, root, *, clock: Clock | None = None, lock_timeout: float = 5.0, open_files: int = 256):
        self.root = Path(root).expanduser().resolve()
        if self.root.exists() and not self.root.is_dir():
            raise TickstoreError(f"store root {self.root} exists and is not a directory")
        diskio.makedirs(self.root)
        self.clock = clock if clock is not None else SystemClock()
        self.lock_timeout = lock_timeout
        self._indexes = IndexCache(self.root)
        self._files = FileCache(open_files)
        # closes cached handles when the store is collected or the interpreter exits;
        # a finalizer, not __del__, so no I/O runs at an arbitrary point of collection
        self._finalizer = weakref.finalize(self, self._files.close)
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
        self._files.close()

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
        t = self._tables[name] = Table(self, schema)
        return t

    def create_table(self, name: str, schema: Schema) -> Table:
        """Declare a table that is not built in (e.g. a derived series); idempotent for the same schema.

        Raises
        ------
        SchemaError
            The name is built in, or the table exists with another schema.
        """
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
            now = self.clock.now_ns()
            snaps[name] = {"as_of": now, "note": note}
            diskio.replace(self._snapshot_file(), [json.dumps(snaps, indent=1, sort_keys=True).encode()])
        return ns_to_timestamp(now)

    def snapshots(self) -> pd.DataFrame:
        snaps = self._load_snapshots()
        frame = pd.DataFrame(
            {
                "as_of": pd.DatetimeIndex([ns_to_timestamp(v["as_of"]) for v in snaps.values()]),
                "note": [v.get("note", "") for v in snaps.values()],
            },
            index=pd.Index(list(snaps), name="name", dtype=object),
        )
        return frame.sort_values("as_of")

    def resolve_as_of(self, as_of) -> int | None:
        """``None`` | time | snapshot name -> knowledge time in ns (None for latest)."""
        if as_of is None:
            return None
        if isinstance(as_of, str) and _SNAPSHOT_NAME.fullmatch(as_of):
            snaps = self._load_snapshots()
            if as_of in snaps:
                return int(snaps[as_of]["as_of"])
            raise SnapshotError(f"no snapshot named {as_of!r}; snapshots are {sorted(snaps) or 'none'}")
        return to_ns(as_of, what="as_of")

    # -- integrity ------------------------------------------------------------------------
    def verify(self, *, checksums: bool = True) -> "VerifyReport":
        """Check every index field against the files (and their checksums); see ``integrity.verify``."""
        from .integrity import verify

        return verify(self, checksums=checksums)

    def reindex(self, tables: list[str] | None = None) -> "ReindexReport":
        """Rebuild the index from the files alone, whatever state it is in; see ``integrity.reindex``.

        Returns
        -------
        ReindexReport
            ``indexed`` {table: files}, ``skipped`` (unreadable or foreign files, left in
            place), ``removed`` (leftover temporaries, files of writes that died).
        """
        from .integrity import reindex

        return reindex(self, tables)

    def read_pin(self, pin: Pin, *, check: bool = True) -> pd.DataFrame:
        """Reproduce a pinned read exactly; see ``Table.read_pin``."""
        return self[pin.table].read_pin(pin, check=check)
