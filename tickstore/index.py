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

Every row of a file carries the knowledge time at which it became visible (the file's
``committed_at``, or per row in a merged file: see ``splay``'s ``_kt``). The content of a
partition as of T is the rows with knowledge time <= T of its visible files, concatenated
in version order and stably sorted by event time. Appends add a file without superseding
anything; insert and delete supersede the files they replace (kept: the audit trail).

A merge (compaction, op ``compact``) of a suffix of the visible files is not a new
version in knowledge time: its entry takes over the merged entries' window (``committed_at`` =
the earliest of theirs, ``kt_max`` = the latest row knowledge time), the merged entries
leave the index and their files are deleted::

    before    v4 [t4 ...   v5 [t5 ...   v6 [t6 ...
    after     v7 [t4 ...   rows of v4 (kt t4), v5 (kt t5), v6 (kt t6), sorted by (ts, kt)

    as_of T in [t5, t6): v7's rows with kt <= T = rows of v4 and v5, in the order a read of
    v4 + v5 gave (ties in ts keep version order, which is kt order)

so every as-of answer is unchanged and the index holds entries per partition and
correction, not per append. Visible files of a partition always hold disjoint, ascending
knowledge-time ranges in version order; that is what makes the row filter exact. (Merges
made before rows kept their knowledge time were committed after their members and
superseded them like a correction; such index rows are still read as they are.)

The index file is rewritten whole and renamed into place for every commit: readers in
other processes see the old or the new index, never a mix. The whole-file rewrite is
cheap because it holds one symbol of one table (1,800 days x a few versions: ~1 ms).

Damaged versions. ``reindex`` rebuilds an index from the files alone; a file it cannot
read (a damaged layout or key column, metadata naming another place) cannot be indexed,
but leaving it out would silently change the partition's answer (an older version it
superseded would come back, a merged file's rows would vanish). So the index records it
(``damaged``: partition, version, why) and every read or write of that partition raises
``CorruptionError`` naming the file, until the file is restored (a good copy put back)
or deleted, and ``tickstore reindex`` is run again (see README, "Integrity").

Index format 5 (4 without ``last_commit``, ``damaged`` and ``block``, 3 without
``kt_max``) is an HDF5 file (``/entries``: the ENTRY rows' bytes, one blosc2 chunk;
attributes ``tickstore_index_format``, ``table``, ``symbol``, ``partition``,
``entry_dtype``) whose user block holds ``b"TICKSTORE-INDEX-3\n"``, a checksummed JSON
header line (as in data files, see splay) and the JSON {tickstore_index_format, table,
symbol, partition, entry_dtype, entries, chunk: [offset, bytes, offset in the frame,
chunk bytes, xxh3] | null, image: [bytes, xxh3], last_commit: ns, damaged: [[partition,
version, why], ...], block: bytes}; ``image`` is the xxh3-64 of every byte after the
user block, ``last_commit`` the latest knowledge time the index names (the store clock
recovers its floor from it after a power cut, reading only this header: see ``clock``),
and ``block`` the user block's size (1 KB, a larger power of two when a long list of
damaged versions needs it; formats 3 and 4: always 1 KB). Loading reads the file once,
checks both checksums and the
names, and decompresses the chunk: no HDF5 call, so a damaged index is a
``CorruptionError`` (never a crash of the HDF5 library), and an index copied from
another symbol is refused. Formats 1 and 2 (no checksum) are still read through
PyTables, and 1 to 3 get ``kt_max`` = ``committed_at`` (their files hold rows of one
commit each); the next commit rewrites them as format 5.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from xxhash import xxh3_64_intdigest

from . import chunks, diskio
from .clock import MAX_NS, NS_PER_DAY
from .errors import CorruptionError, FormatVersionError, StorageError, TickstoreError
from .layout import data_path, decode_symbol, encode_symbol
from .schemas import Partition
from .splay import hdf5, hdf5_error, header_body, layout_header, set_attrs, write_array

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ENTRY", "SymbolIndex", "IndexCache", "INDEX_FORMAT_VERSION", "index_partition", "index_last_commit"]

# 5: + last_commit, damaged; 4: + kt_max; 3: checksummed user-block header; 2: entries as
# raw bytes; 1: a PyTables Table
INDEX_FORMAT_VERSION = 5
READABLE_INDEX_FORMATS = (1, 2, 3, 4, 5)
_INDEX_MAGIC = b"TICKSTORE-INDEX-3\n"
_INDEX_BLOCK = 1024  # user block of formats 3 and 4, the least of format 5 (the header JSON is ~550 bytes)
_HEADER_ROOM = 800  # bytes of a format-5 header but its damaged list (~550 in practice)
_MEMORY_FILES = iter(range(1 << 62))
REASON_BYTES = 256
SOURCE_BYTES = 64

_FIELDS = [
        ("partition", "i8"),  # first day of the partition, days since epoch
        ("version", "i8"),
        ("committed_at", "i8"),  # start of the visibility window
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
ENTRY_V3 = np.dtype(_FIELDS)  # index formats 1 to 3
# kt_max: the latest knowledge time of a row in the file (committed_at unless merged)
ENTRY = np.dtype(_FIELDS + [("kt_max", "i8")])


def _upgrade(old: np.ndarray) -> np.ndarray:
    """Entries of formats 1 to 3 as ``ENTRY``: their files hold the rows of one commit."""
    e = np.zeros(len(old), ENTRY)
    for name in old.dtype.names:
        e[name] = old[name]
    e["kt_max"] = old["committed_at"]
    return e


@dataclass(frozen=True)
class SymbolIndex:
    """All versions of one symbol in one table. Immutable: commits make a new object."""

    table: str
    symbol: str
    partition: Partition
    entries: np.ndarray  # ENTRY, sorted by (partition, version)
    # versions reindex could not read: (partition, version, why); see the module doc
    damaged: tuple[tuple[int, int, str], ...] = ()

    @classmethod
    def empty(cls, table: str, symbol: str, partition: Partition) -> "SymbolIndex":
        return cls(table, symbol, partition, np.zeros(0, ENTRY))

    def check_damaged(self, first_part: int | None = None, last_part: int | None = None, *, what: str = "read") -> None:
        """Raise ``CorruptionError`` if a partition in ``[first_part, last_part]`` has a
        damaged version (see the module doc): it cannot be read or written until resolved."""
        if not self.damaged:
            return
        hit = [d for d in self.damaged if (first_part is None or d[0] >= first_part) and (last_part is None or d[0] <= last_part)]
        if not hit:
            return
        part, version, why = hit[0]
        rel = data_path(self.table, self.partition, part, self.symbol, version)
        more = f" (and {len(hit) - 1} more damaged version(s): `tickstore verify` lists them)" if len(hit) > 1 else ""
        raise CorruptionError(
            f"{self.table} {self.symbol} {np.datetime64(part, 'D')}: cannot {what}: version {version} ({rel}) is "
            f"damaged ({why}) and `tickstore reindex` left it out of the index; without it this partition would "
            f"answer differently, so it stays unreadable until the file is restored (put a good copy back at that "
            f"path) or deleted (accepting the loss of that version), then `tickstore reindex {self.table}` is run{more}"
        )

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
        top = max([int(h["version"].max())] if len(h) else [0])
        return max([top] + [v for p, v, _ in self.damaged if p == partition]) + 1

    @property
    def last_commit(self) -> int:
        e = self.entries
        if not len(e):
            return 0
        sup = e["superseded_at"]
        return int(max(e["kt_max"].max(), sup[sup != MAX_NS].max(initial=0)))

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
        return SymbolIndex(self.table, self.symbol, self.partition, e, self.damaged)

    def merge(self, part: int, versions: list[int], merged: np.ndarray) -> "SymbolIndex":
        """A new index where the visible ``versions`` of ``part`` are replaced by the one
        ``merged`` entry (which covers their windows: see the module doc)."""
        e = self.entries
        m = (e["partition"] == part) & np.isin(e["version"], versions) & (e["superseded_at"] == MAX_NS)
        if int(m.sum()) != len(set(versions)):
            raise CorruptionError(
                f"{self.table} {self.symbol} partition {np.datetime64(part, 'D')}: versions {versions} "
                f"are not all visible; index and writer disagree"
            )
        out = np.concatenate([e[~m], merged])
        return SymbolIndex(self.table, self.symbol, self.partition, out[np.lexsort((out["version"], out["partition"]))], self.damaged)

    def without(self, drop: np.ndarray) -> "SymbolIndex":
        """A new index without the entries where the boolean mask ``drop`` is set (prune)."""
        return SymbolIndex(self.table, self.symbol, self.partition, self.entries[~drop], self.damaged)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Replace the index file at ``path`` atomically (see the module doc for the format).

        Raises
        ------
        StorageError
            The disk refused; the old index is still in place.
        """
        raw = np.ascontiguousarray(self.entries).view(np.uint8)
        damaged = [[int(p), int(v), str(why)] for p, v, why in self.damaged]
        # the user block holds the header: 1 KB, more if many damaged versions are listed
        block = _INDEX_BLOCK
        while block < len(_INDEX_MAGIC) + 28 + _HEADER_ROOM + len(json.dumps(damaged, separators=(",", ":")).encode()):
            block *= 2
        # built in memory (HDF5's core driver), written by diskio (fsync, rename, fsync)
        with hdf5().open_file(
            f"{path}.mem-{os.getpid()}-{next(_MEMORY_FILES)}",
            "w",
            driver="H5FD_CORE",
            driver_core_backing_store=0,
            pytables_sys_attrs=False,
            user_block_size=block,
        ) as h:
            # The entries' bytes as a uint8 array, their layout in `entry_dtype`: loading it
            # skips the compound-type description a Table rebuilds on every open.
            node, inners = write_array(h, "/", "entries", raw, chunk=max(1, len(raw)), complib="blosc2:lz4", complevel=5, shuffle="byte", typesize=ENTRY.itemsize)
            chunk = None
            if len(raw):
                info = node.chunk_info((0,))
                chunk = [info.offset, info.size, *inners[0]]
            set_attrs(
                h.root,
                entry_dtype=json.dumps(ENTRY.descr),
                tickstore_index_format=np.int64(INDEX_FORMAT_VERSION),
                table=self.table,
                symbol=self.symbol,
                partition=self.partition.value,
            )
            image = h.get_file_image()
        header = {
            "tickstore_index_format": INDEX_FORMAT_VERSION,
            "table": self.table,
            "symbol": self.symbol,
            "partition": self.partition.value,
            "entry_dtype": ENTRY.descr,
            "entries": len(self.entries),
            "chunk": chunk,
            "image": [len(image), xxh3_64_intdigest(image)],
            "last_commit": self.last_commit,
            "damaged": damaged,
            "block": block,
        }
        head = layout_header(json.dumps(header, separators=(",", ":")).encode(), _INDEX_MAGIC)
        if len(head) > block:
            raise AssertionError(f"index header of {len(head)} bytes does not fit its {block}-byte user block")
        diskio.makedirs(path.parent)
        diskio.replace(path, [head.ljust(block, b" "), image])

    @classmethod
    def load(cls, path: Path, table: str, symbol: str, partition: Partition) -> "SymbolIndex":
        """The index in the file at ``path``, which must be the index of ``table`` ``symbol``.

        Raises
        ------
        CorruptionError
            The file is damaged (a checksum differs), truncated, garbage, or another
            symbol's index; the message names `tickstore reindex`.
        FormatVersionError
            Written by an index format this code does not know.
        StorageError
            The file cannot be read (permissions, I/O error).
        """
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise CorruptionError(f"{path}: the index file is missing; rebuild it with `tickstore reindex {table}`") from None
        except OSError as exc:
            raise StorageError.from_os(exc, path, "reading the index") from None
        damaged = ()
        if data.startswith(_INDEX_MAGIC):
            entries, damaged = _load_3(path, data, table, symbol, partition)
        elif data.startswith(b"\x89HDF"):
            entries = _load_legacy(path)
        else:
            raise CorruptionError(f"{path}: not a tickstore index (damaged or foreign); rebuild it with `tickstore reindex {table}`")
        return cls(table, symbol, partition, entries, damaged)

    # -- views ----------------------------------------------------------------------------
    def to_frame(self, root: Path | None = None) -> pd.DataFrame:
        """The index as a DataFrame with a (symbol, date) MultiIndex, one row per version."""
        import pandas as pd

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


def _header(path: Path, data: bytes, remedy: str) -> dict:
    """The checksummed JSON header of a format-3+ index (``data`` from its start)."""
    length, want = header_body(str(path), _INDEX_MAGIC, data, 1 << 40)
    body = data[len(_INDEX_MAGIC) + 28 : len(_INDEX_MAGIC) + 28 + length]
    if len(body) != length or xxh3_64_intdigest(body) != want:
        raise CorruptionError(f"{path}: index header checksum mismatch: the index is damaged; {remedy}")
    h = json.loads(body)
    if not isinstance(h, dict):
        raise ValueError("the header is not an object")
    fmt = h["tickstore_index_format"]
    if type(fmt) is not int or fmt not in READABLE_INDEX_FORMATS:
        raise FormatVersionError(
            f"{path}: index format {fmt!r}; this version reads {', '.join(map(str, READABLE_INDEX_FORMATS))} "
            f"only (upgrade tickstore, or {remedy})"
        )
    return h


def _block(h: dict) -> int:
    """The user block's size: 1 KB up to format 4, said by the header from format 5."""
    if h["tickstore_index_format"] < 5:
        return _INDEX_BLOCK
    b = h["block"]
    if type(b) is not int or b < _INDEX_BLOCK or b & (b - 1):
        raise ValueError(f"user block of {b!r} bytes")
    return b


def _read_header(path: Path) -> dict | None:
    """The header of a format-3+ index file (reading only its user block), None for an
    older (PyTables) index."""
    with open(path, "rb") as f:
        head = f.read(_INDEX_BLOCK)
        if not head.startswith(_INDEX_MAGIC):
            return None
        length, _ = header_body(str(path), _INDEX_MAGIC, head, 1 << 40)
        need = len(_INDEX_MAGIC) + 28 + length
        if need > len(head):  # a long list of damaged versions
            head += f.read(need - len(head))
    return _header(path, head, "")


def _damaged(h: dict) -> tuple[tuple[int, int, str], ...]:
    if h["tickstore_index_format"] < 5:
        return ()
    out = []
    for d in h["damaged"]:
        p, v, why = d
        if type(p) is not int or type(v) is not int or not isinstance(why, str):
            raise TypeError(f"damaged entry {d!r}")
        out.append((p, v, why))
    return tuple(out)


def _load_3(path: Path, data: bytes, table: str, symbol: str, partition: Partition) -> tuple[np.ndarray, tuple]:
    remedy = f"rebuild it with `tickstore reindex {table}`"
    try:
        h = _header(path, data, remedy)
        fmt = h["tickstore_index_format"]
        block = _block(h)
        if len(data) < block:
            raise ValueError("shorter than its header block")
        size, image_sum = h["image"]
        image = memoryview(data)[block:]
        if len(image) != size or xxh3_64_intdigest(image) != image_sum:
            what = "truncated or extended" if len(image) != size else "damaged (checksum mismatch)"
            raise CorruptionError(f"{path}: the index is {what}; {remedy}")
        if (h["table"], h["symbol"], h["partition"]) != (table, symbol, partition.value):
            raise CorruptionError(
                f"{path}: holds the index of {h['table']} {h['symbol']} ({h['partition']} partitions), "
                f"not {table} {symbol}: a file was copied or renamed; {remedy}"
            )
        layout = ENTRY if fmt >= 4 else ENTRY_V3
        damaged = _damaged(h)
        if [tuple(d) for d in h["entry_dtype"]] != [tuple(json.loads(json.dumps(d))) for d in layout.descr]:
            raise CorruptionError(f"{path}: index rows have an unexpected layout; {remedy}")
        n = h["entries"]
        if h["chunk"] is None:
            if n != 0:
                raise ValueError("entries without a chunk")
            return np.zeros(0, ENTRY), damaged
        offset, csize, inner, inner_size, _ = h["chunk"]
        raw = np.empty(n * layout.itemsize, np.uint8)
        at = offset - block  # chunk offsets count from the start of the file
        if inner >= 0:
            chunks.decompress(image[at + inner : at + inner + inner_size], raw)
        else:
            chunks.decompress(image[at : at + csize], raw, whole_frame=True)
        return (raw.view(ENTRY) if layout is ENTRY else _upgrade(raw.view(ENTRY_V3))), damaged
    except (CorruptionError, FormatVersionError):
        raise
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError, RecursionError) as exc:
        raise CorruptionError(f"{path}: malformed index ({type(exc).__name__}: {exc}); {remedy}") from None


def _load_legacy(path: Path) -> np.ndarray:
    """Index formats 1 and 2, through PyTables (they carry no checksum)."""
    remedy = "rebuild it with `tickstore reindex`"
    tables = hdf5()
    try:
        with tables.open_file(str(path), "r") as h:
            fmt = int(h.root._v_attrs.tickstore_index_format)
            if fmt not in (1, 2):
                raise FormatVersionError(
                    f"{path}: index format {fmt}; this version reads {', '.join(map(str, READABLE_INDEX_FORMATS))} "
                    f"only ({remedy} with a matching version)"
                )
            if fmt == 1:
                entries = h.root.entries.read()
            else:
                descr = json.loads(h.root._v_attrs.entry_dtype)
                if [tuple(d) for d in descr] != [tuple(json.loads(json.dumps(d))) for d in ENTRY_V3.descr]:
                    raise CorruptionError(f"{path}: index rows have an unexpected layout; {remedy}")
                entries = np.ascontiguousarray(h.root.entries.read()).view(ENTRY_V3)
    except (FormatVersionError, CorruptionError):
        raise
    except (tables.HDF5ExtError, OSError, AttributeError, KeyError, ValueError, TypeError) as exc:
        raise CorruptionError(f"{path}: unreadable index ({type(exc).__name__}); {remedy}") from None
    if entries.dtype != ENTRY_V3:
        raise CorruptionError(f"{path}: index rows have an unexpected layout; {remedy}")
    return _upgrade(entries)


def index_partition(path: Path) -> Partition | None:
    """The partition an index file says its table uses (None if it cannot tell)."""
    try:
        h = _read_header(path)
        if h is not None:
            return Partition(h["partition"])
        with hdf5().open_file(str(path), "r") as h:
            return Partition(str(h.root._v_attrs.partition))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, hdf5_error(), TickstoreError):
        return None  # damaged: another index of the table tells


def index_last_commit(path: Path) -> int:
    """The latest knowledge time the index file at ``path`` names (0 if none or unreadable):
    format 5 says it in its checksummed header (one small read); older formats are loaded."""
    try:
        h = _read_header(path)
        if h is not None and h["tickstore_index_format"] >= 5:
            t = h["last_commit"]
            return t if type(t) is int and 0 <= t < MAX_NS else 0
        table, symbol = path.parent.parent.name, decode_symbol(path.stem)
        idx = SymbolIndex.load(path, table, symbol, index_partition(path) or Partition.DAY)
        return idx.last_commit
    except (OSError, ValueError, KeyError, TypeError, TickstoreError):
        return 0


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
        except OSError as exc:
            raise StorageError.from_os(exc, path, "reading the index") from None
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
