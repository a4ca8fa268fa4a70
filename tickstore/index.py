"""The bitemporal index: which version files make up each (symbol, partition), when.

Never opens a tick file. One index file per (table, symbol) keeps one row per version
file (``ENTRY``), sorted by (partition, version). A version is visible for ``as_of`` in the
half-open knowledge-time window ``[committed_at, superseded_at)``::

    knowledge time ->        t1            t2            t3
    v1 insert               [=============)                      superseded by v2 at t2
    v2 append                             [=============...      (open: MAX)
    v3 append                                           [=====...
    as_of < t1 : nothing (a backfill done at t1 does not leak into earlier reads)
    t1 <= as_of < t2 : {v1}      t2 <= as_of < t3 : {v2}      as_of >= t3 : {v2, v3}

The content of a partition as of T is the rows of its visible files concatenated in
version order and stably sorted by event time. Appends add a file without superseding
anything; insert, delete and compaction supersede the files they replace, and compaction
writes exactly the rows it replaces, so as-of answers never change.

The index file is rewritten whole and renamed into place for every commit: readers in
other processes see the old or the new index, never a mix. The whole-file rewrite is
cheap because it holds one symbol of one table (1,800 days x a few versions: ~1 ms).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tables

from .clock import MAX_NS, NS_PER_DAY
from .errors import CorruptionError, FormatVersionError
from .layout import data_path, encode_symbol, fsync_dir
from .schemas import Partition
from .splay import write_array

__all__ = ["ENTRY", "SymbolIndex", "IndexCache", "INDEX_FORMAT_VERSION"]

INDEX_FORMAT_VERSION = 2  # 2: entries as raw ENTRY bytes (1: a PyTables Table, still read)
REASON_BYTES = 256
SOURCE_BYTES = 64

ENTRY = np.dtype(
    [
        ("partition", "i8"),  # first day of the partition, days since epoch
        ("version", "i8"),
        ("committed_at", "i8"),
        ("superseded_at", "i8"),  # MAX_NS while visible
        ("op", "S8"),
        ("rows", "i8"),
        ("first_ts", "i8"),
        ("last_ts", "i8"),
        ("kmin", "i8"),  # min/max of the first key column (dedup fast path)
        ("kmax", "i8"),
        ("size", "i8"),
        ("checksum", "S64"),
        ("reason", f"S{REASON_BYTES}"),
        ("source", f"S{SOURCE_BYTES}"),
    ]
)


@dataclass(frozen=True)
class SymbolIndex:
    """All versions of one symbol in one table. Immutable: commits make a new object."""

    table: str
    symbol: str
    partition: Partition
    entries: np.ndarray  # ENTRY, sorted by (partition, version)

    @classmethod
    def empty(cls, table: str, symbol: str, partition: Partition) -> "SymbolIndex":
        return cls(table, symbol, partition, np.zeros(0, ENTRY))

    # -- queries --------------------------------------------------------------------------
    def visible_mask(self, as_of: int | None) -> np.ndarray:
        e = self.entries
        if as_of is None:
            return e["superseded_at"] == MAX_NS
        return (e["committed_at"] <= as_of) & (as_of < e["superseded_at"])

    def visible(self, as_of: int | None, first_part: int | None = None, last_part: int | None = None) -> np.ndarray:
        """Visible entries of partitions in ``[first_part, last_part]`` (days), in order."""
        e = self.entries
        lo = 0 if first_part is None else int(np.searchsorted(e["partition"], first_part, "left"))
        hi = len(e) if last_part is None else int(np.searchsorted(e["partition"], last_part, "right"))
        e = e[lo:hi]
        if as_of is None:
            return e[e["superseded_at"] == MAX_NS]
        return e[(e["committed_at"] <= as_of) & (as_of < e["superseded_at"])]

    def lookup(self, partition: int, as_of: int | None) -> list:
        """Visible entries of one partition; the hot path of a point lookup."""
        e = self.entries
        p = e["partition"]
        lo = int(p.searchsorted(partition, "left"))
        hi = int(p.searchsorted(partition, "right"))
        out = []
        for i in range(lo, hi):
            r = e[i]
            if as_of is None:
                if r["superseded_at"] == MAX_NS:
                    out.append(r)
            elif r["committed_at"] <= as_of < r["superseded_at"]:
                out.append(r)
        return out

    def history(self, partition: int) -> np.ndarray:
        p = self.entries["partition"]
        return self.entries[int(p.searchsorted(partition, "left")) : int(p.searchsorted(partition, "right"))]

    def next_version(self, partition: int) -> int:
        h = self.history(partition)
        return int(h["version"].max()) + 1 if len(h) else 1

    @property
    def last_commit(self) -> int:
        e = self.entries
        if not len(e):
            return 0
        sup = e["superseded_at"]
        return int(max(e["committed_at"].max(), sup[sup != MAX_NS].max(initial=0)))

    def path_of(self, entry) -> str:
        return data_path(self.table, self.partition, int(entry["partition"]), self.symbol, int(entry["version"]))

    # -- commits --------------------------------------------------------------------------
    def commit(self, new: np.ndarray, supersede: dict[int, list[int]], now: int) -> "SymbolIndex":
        """A new index with ``new`` entries added and ``supersede`` {partition: [versions]}
        closed at ``now``."""
        e = self.entries.copy()
        for part, versions in supersede.items():
            if not versions:
                continue
            m = (e["partition"] == part) & np.isin(e["version"], versions) & (e["superseded_at"] == MAX_NS)
            if int(m.sum()) != len(set(versions)):
                raise CorruptionError(
                    f"{self.table} {self.symbol} partition {np.datetime64(part, 'D')}: versions {versions} "
                    f"are not all visible; index and writer disagree"
                )
            e["superseded_at"][m] = now
        e = np.concatenate([e, new])
        e = e[np.lexsort((e["version"], e["partition"]))]
        return SymbolIndex(self.table, self.symbol, self.partition, e)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with tables.open_file(str(tmp), "w", pytables_sys_attrs=False) as h:
            # The entries' bytes as a uint8 array, their layout in `entry_dtype`: loading it
            # skips the compound-type description a Table rebuilds on every open (3-7 ms
            # per symbol on a cold store, vs ~1 ms).
            raw = np.ascontiguousarray(self.entries).view(np.uint8)
            write_array(h, "/", "entries", raw, chunk=max(1, len(raw)), complib="blosc2:lz4", complevel=5, shuffle="byte", typesize=ENTRY.itemsize)
            a = h.root._v_attrs
            a.entry_dtype = json.dumps(ENTRY.descr)
            a.tickstore_index_format = np.int64(INDEX_FORMAT_VERSION)
            a.table = self.table
            a.symbol = self.symbol
            a.partition = self.partition.value
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)

    @classmethod
    def load(cls, path: Path, table: str, symbol: str, partition: Partition) -> "SymbolIndex":
        try:
            with tables.open_file(str(path), "r") as h:
                fmt = int(h.root._v_attrs.tickstore_index_format)
                if fmt not in (1, INDEX_FORMAT_VERSION):
                    raise FormatVersionError(
                        f"{path}: index format {fmt}; this version reads 1 and {INDEX_FORMAT_VERSION} only "
                        f"(run `tickstore reindex` with a matching version)"
                    )
                if fmt == 1:
                    entries = h.root.entries.read()
                else:
                    descr = json.loads(h.root._v_attrs.entry_dtype)
                    if [tuple(d) for d in descr] != [tuple(json.loads(json.dumps(d))) for d in ENTRY.descr]:
                        raise CorruptionError(f"{path}: index rows have an unexpected layout; rebuild with `tickstore reindex`")
                    entries = np.ascontiguousarray(h.root.entries.read()).view(ENTRY)
        except (FormatVersionError, CorruptionError):
            raise
        except (tables.HDF5ExtError, OSError, AttributeError, KeyError) as exc:
            raise CorruptionError(f"{path}: unreadable index ({exc}); rebuild it with `tickstore reindex`") from None
        if entries.dtype != ENTRY:
            raise CorruptionError(f"{path}: index rows have an unexpected layout; rebuild with `tickstore reindex`")
        return cls(table, symbol, partition, entries)

    # -- views ----------------------------------------------------------------------------
    def to_frame(self, root: Path | None = None) -> pd.DataFrame:
        """The index as a DataFrame with a (symbol, date) MultiIndex, one row per version."""
        e = self.entries

        def times(col):
            v = e[col].copy()
            out = pd.DatetimeIndex(v.view("M8[ns]"), tz="UTC")
            return out.where(v != MAX_NS, pd.NaT) if col == "superseded_at" else out

        paths = [self.path_of(r) for r in e]
        frame = pd.DataFrame(
            {
                "version": e["version"],
                "committed_at": times("committed_at"),
                "superseded_at": times("superseded_at"),
                "operation": [x.decode() for x in e["op"]],
                "rows": e["rows"],
                "first_ts": pd.DatetimeIndex(e["first_ts"].view("M8[ns]"), tz="UTC").where(e["rows"] > 0, pd.NaT),
                "last_ts": pd.DatetimeIndex(e["last_ts"].view("M8[ns]"), tz="UTC").where(e["rows"] > 0, pd.NaT),
                "bytes": e["size"],
                "checksum": [x.decode() for x in e["checksum"]],
                "reason": [x.decode("utf-8", "replace") for x in e["reason"]],
                "source": [x.decode("utf-8", "replace") for x in e["source"]],
                "path": paths,
            }
        )
        dates = pd.DatetimeIndex((e["partition"] * NS_PER_DAY).view("M8[ns]"), tz="UTC")
        frame.index = pd.MultiIndex.from_arrays([[self.symbol] * len(e), dates], names=["symbol", "date"])
        return frame


def index_path(root: Path, table: str, symbol: str) -> Path:
    return root / table / "_index" / f"{encode_symbol(symbol)}.h5"


class IndexCache:
    """Loads index files on demand and reloads one when another process replaced it.

    A ``stat`` per call decides: index files are only ever replaced by rename, so a new
    inode or mtime means a new index.
    """

    def __init__(self, root: Path):
        self.root = root
        self._cache: dict[tuple[str, str], tuple[tuple, SymbolIndex]] = {}
        self._paths: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def _path(self, table: str, symbol: str) -> str:
        key = (table, symbol)
        p = self._paths.get(key)
        if p is None:
            p = self._paths[key] = str(index_path(self.root, table, symbol))
        return p

    def get(self, table: str, symbol: str, partition: Partition) -> SymbolIndex:
        path = self._path(table, symbol)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return SymbolIndex.empty(table, symbol, partition)
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        key = (table, symbol)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == sig:
            return hit[1]
        idx = SymbolIndex.load(Path(path), table, symbol, partition)
        with self._lock:
            self._cache[key] = (sig, idx)
        return idx

    def put(self, idx: SymbolIndex) -> None:
        """Persist a committed index and remember it."""
        path = index_path(self.root, idx.table, idx.symbol)
        idx.save(path)
        st = os.stat(path)
        with self._lock:
            self._cache[(idx.table, idx.symbol)] = ((st.st_ino, st.st_mtime_ns, st.st_size), idx)

    def forget(self, table: str | None = None) -> None:
        with self._lock:
            for k in [k for k in self._cache if table is None or k[0] == table]:
                del self._cache[k]
