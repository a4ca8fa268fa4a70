"""One immutable HDF5 file per (table, symbol, partition, version), through PyTables.

Each file holds::

    /data        PyTables Table, compound rows: ts:int64 (event time, ns UTC, sorted,
                 ties allowed) then the schema columns (datetimes int64 ns UTC, strings
                 fixed-width UTF-8); blosc2/blosclz + byte shuffle by default (see schemas)
    / attributes tickstore_format  int     FORMAT_VERSION; unknown versions are refused
                 table, symbol      str
                 partition          str     'day' | 'month' | 'year'
                 partition_start    str     ISO date of the partition's first day
                 version            int     1, 2, ... per (table, symbol, partition)
                 committed_at       int     knowledge time of the commit, ns UTC
                 op                 str     insert | append | delete | compact
                 replaces           str     JSON list of the versions this one supersedes
                 reason, source     str     audit trail
                 rows, first_ts, last_ts    int
                 schema             str     JSON of the table schema

Attributes are plain strings and integers (never pickled objects), so the index can be
rebuilt from the files alone (``integrity.reindex``). Files are written to a temporary
name, fsynced and renamed into place, so a reader either sees a whole file or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tables

from .errors import CorruptionError, FormatVersionError
from .layout import fsync_dir

__all__ = ["FORMAT_VERSION", "FileMeta", "write_file", "read_meta", "FileCache", "sha256_file"]

FORMAT_VERSION = 1
_DATA = "/data"
warnings.filterwarnings("ignore", category=tables.NaturalNameWarning)
# Decompression is most of a large read (1M trades: ~17 ms raw HDF5 read vs ~70 ms with
# blosc2/lz4 on one thread); let blosc use the cores. PyTables' default here is 1.
tables.parameters.MAX_BLOSC_THREADS = max(tables.parameters.MAX_BLOSC_THREADS, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class FileMeta:
    table: str
    symbol: str
    partition: str
    partition_start: str
    version: int
    committed_at: int
    op: str
    replaces: tuple[int, ...]
    reason: str
    source: str
    rows: int
    first_ts: int
    last_ts: int
    schema: str


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


_DESCRIPTIONS: dict = {}


def _description(dtype: np.dtype):
    """PyTables' column description of a row dtype, built once per dtype: building it
    walks the dtype through ``inspect`` and costs milliseconds per file written."""
    d = _DESCRIPTIONS.get(dtype)
    if d is None:
        d = _DESCRIPTIONS[dtype] = tables.description.descr_from_dtype(dtype)[0]
    return d


def write_file(path: Path, rows: np.ndarray, meta: FileMeta, *, complib: str, complevel: int, shuffle: str = "byte") -> tuple[str, int]:
    """Write ``rows`` and ``meta`` to ``path`` atomically; return (sha256, size in bytes).

    The caller has already validated ``rows`` (sorted by ts, schema dtype).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    filters = tables.Filters(
        complevel=complevel,
        complib=complib,
        shuffle=shuffle == "byte",
        bitshuffle=shuffle == "bit",
    )
    # pytables_sys_attrs=False: fewer HDF5 attributes to parse on every open, which is
    # most of what opening a small file costs (measured: 4.3 ms -> 2.6 ms per file).
    with tables.open_file(str(tmp), "w", pytables_sys_attrs=False) as h:
        # ~1 MB chunks: big enough that HDF5's per-chunk cost vanishes on large reads,
        # small enough that a range read decompresses little it does not need
        chunk = max(1, min(len(rows), (1 << 20) // rows.dtype.itemsize))
        t = h.create_table("/", "data", description=_description(rows.dtype), filters=filters, expectedrows=max(len(rows), 1), chunkshape=(chunk,))
        if len(rows):
            t.append(rows)
        a = h.root._v_attrs
        a.tickstore_format = np.int64(FORMAT_VERSION)
        a.table = meta.table
        a.symbol = meta.symbol
        a.partition = meta.partition
        a.partition_start = meta.partition_start
        a.version = np.int64(meta.version)
        a.committed_at = np.int64(meta.committed_at)
        a.op = meta.op
        a.replaces = json.dumps(list(meta.replaces))
        a.reason = meta.reason
        a.source = meta.source
        a.rows = np.int64(meta.rows)
        a.first_ts = np.int64(meta.first_ts)
        a.last_ts = np.int64(meta.last_ts)
        a.schema = meta.schema
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    checksum = sha256_file(tmp)
    size = os.path.getsize(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return checksum, size


def _attr_str(a, name: str) -> str:
    v = a[name]
    return v.decode() if isinstance(v, bytes) else str(v)


def read_meta(path: str | os.PathLike) -> FileMeta:
    """The metadata a file carries in its attributes.

    Raises
    ------
    FormatVersionError
        The file was written by a format this code does not know.
    CorruptionError
        The file is not a readable tickstore file.
    """
    try:
        with tables.open_file(str(path), "r") as h:
            a = h.root._v_attrs
            if "tickstore_format" not in a._v_attrnames:
                raise CorruptionError(f"{path}: not a tickstore file (no tickstore_format attribute)")
            fmt = int(a.tickstore_format)
            if fmt != FORMAT_VERSION:
                raise FormatVersionError(
                    f"{path}: written with tickstore file format {fmt}; this version reads format "
                    f"{FORMAT_VERSION} only (upgrade tickstore)"
                )
            return FileMeta(
                table=_attr_str(a, "table"),
                symbol=_attr_str(a, "symbol"),
                partition=_attr_str(a, "partition"),
                partition_start=_attr_str(a, "partition_start"),
                version=int(a.version),
                committed_at=int(a.committed_at),
                op=_attr_str(a, "op"),
                replaces=tuple(json.loads(_attr_str(a, "replaces"))),
                reason=_attr_str(a, "reason"),
                source=_attr_str(a, "source"),
                rows=int(a.rows),
                first_ts=int(a.first_ts),
                last_ts=int(a.last_ts),
                schema=_attr_str(a, "schema"),
            )
    except (FormatVersionError, CorruptionError):
        raise
    except (tables.HDF5ExtError, OSError, KeyError, ValueError) as exc:
        raise CorruptionError(f"{path}: unreadable tickstore file ({type(exc).__name__}: {exc})") from None


class FileCache:
    """Open read handles of immutable files, least recently used first out.

    Versions are immutable and never rewritten in place, so a handle opened once stays
    valid for as long as the file exists. Opening is what costs (PyTables builds the
    node tree); reading a 44k-row month of bars is cheaper than opening it.
    """

    def __init__(self, capacity: int = 256):
        self.capacity = capacity
        self._handles: OrderedDict[str, tables.File] = OrderedDict()
        self._lock = threading.RLock()

    def _table(self, path: str):
        h = self._handles.get(path)
        if h is not None:
            self._handles.move_to_end(path)
            return h.get_node(_DATA)
        try:
            h = tables.open_file(path, "r")
        except (tables.HDF5ExtError, OSError) as exc:
            raise CorruptionError(f"{path}: cannot open ({exc}); run `tickstore verify`") from None
        try:
            fmt = int(h.root._v_attrs.tickstore_format)
        except (AttributeError, KeyError, TypeError, ValueError):
            h.close()
            raise CorruptionError(f"{path}: not a tickstore file (no tickstore_format attribute)") from None
        if fmt != FORMAT_VERSION:
            h.close()
            raise FormatVersionError(
                f"{path}: written with tickstore file format {fmt}; this version reads format {FORMAT_VERSION} only"
            )
        self._handles[path] = h
        if len(self._handles) > self.capacity:
            _, old = self._handles.popitem(last=False)
            old.close()
        return h.get_node(_DATA)

    def read(self, path: str, lo: int | None = None, hi: int | None = None) -> np.ndarray:
        """Rows of ``path`` with ``lo <= ts < hi`` (None: unbounded)."""
        with self._lock:
            start, stop = self.row_range(path, lo, hi)
            out = np.empty(stop - start, self._table(path).dtype)
            self.read_into(path, start, stop, out)
            return out

    def row_range(self, path: str, lo: int | None, hi: int | None) -> tuple[int, int]:
        """The row slice holding ``lo <= ts < hi``.

        Rows are sorted by ts, so the range is found by bisection on the ts column (point
        reads touch one chunk each) and only that slice is ever decompressed.
        """
        with self._lock:
            t = self._table(path)
            n = t.nrows
            start = 0 if lo is None else self._bisect(t, n, lo)
            stop = n if hi is None else self._bisect(t, n, hi)
            return start, max(start, stop)

    def read_into(self, path: str, start: int, stop: int, out: np.ndarray) -> None:
        """Decompress rows ``start:stop`` straight into ``out`` (a contiguous slice of the
        caller's result), so a many-file read copies each row once."""
        if stop <= start:
            return
        with self._lock:
            try:
                self._table(path).read(start, stop, out=out)
            except tables.HDF5ExtError as exc:
                raise CorruptionError(f"{path}: cannot read rows {start}:{stop} ({exc}); run `tickstore verify`") from None

    @staticmethod
    def _bisect(t, n: int, value: int) -> int:
        """First row whose ts >= value."""
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) // 2
            if int(t.read(mid, mid + 1, field="ts")[0]) < value:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def close(self) -> None:
        with self._lock:
            for h in self._handles.values():
                h.close()
            self._handles.clear()
