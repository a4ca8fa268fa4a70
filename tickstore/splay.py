"""One immutable HDF5 file per (table, symbol, partition, version), through PyTables.

File format 3 (written now) is columnar: each column is its own compressed array, so a
read decompresses only the columns it asks for, straight into the arrays the frame is
built from::

    /data              group   attributes: chunk_rows (K), chunk_first_ts (ts of rows
                               0, K, 2K, ...: range reads bisect these, then one chunk),
                               columns: JSON {name: [codec, scale]} for every array below
    /data/ts           int64   event time, ns UTC, sorted (ties allowed), never encoded
    /data/_kt          int64   (only in merged files whose rows were committed at different
                       times) the knowledge time at which each row became visible, ns
                       UTC, always 'delta' coded (runs of one commit cost ~nothing); a
                       file without it holds rows visible from its committed_at
    /data/<column>     the schema's columns in order (datetimes int64 ns UTC, strings
                       fixed-width UTF-8), stored per its codec:
                           'plain' | 'delta' | 'delta_scaled' | 'xor'
                           scale: for delta_scaled, value = int / 10**scale, exactly
                       'delta' stores row-to-row differences of int64 values,
                       'delta_scaled' of floats that are exact decimals (as integers),
                       'xor' the XOR of a float's bits with the previous row's; all
                       restart at every chunk, so a range read decodes from the chunk
                       it starts in
    / attributes tickstore_format  int     FORMAT_VERSION; unknown versions are refused
                 table, symbol      str
                 partition          str     'day' | 'month' | 'year'
                 partition_start    str     ISO date of the partition's first day
                 version            int     1, 2, ... per (table, symbol, partition)
                 committed_at       int     knowledge time of the commit, ns UTC (of a
                                            merged file: the earliest row's, the start
                                            of the window it took over)
                 op                 str     insert | append | delete | compact
                 replaces           str     JSON list of the versions this one supersedes
                                            (of a merge: the versions it took the place of)
                 reason, source     str     audit trail
                 rows, first_ts, last_ts    int
                 schema             str     JSON of the table schema

    user block   (the first 512 * 2**i bytes, which HDF5 readers skip) the layout:
                 b"TICKSTORE-LAYOUT-3\n", the JSON's length (10 digits), a space, the
                 xxh3-64 of the JSON (16 hex digits), a newline, then the JSON
                 {tickstore_format, rows, chunk_rows, chunk_first_ts, file_bytes,
                  meta: {the attributes above},
                  columns: {name: [codec, scale, dtype, [[file offset, bytes, chunk
                  offset in the frame (-1: none), chunk bytes, xxh3-64 of the bytes a
                  read decompresses], ...]]}}

Integrity: a read checks the xxh3-64 of every chunk before it decompresses it (a damaged
chunk raises ``CorruptionError`` naming the file, column and chunk, and never reaches the
decompressor), the layout carries its own checksum, and a file whose layout names
another table, symbol, partition or version than its path is refused (a file swapped in
for another). xxh3 runs at ~50 GB/s: checking costs ~1-2% of a 1M-row select
(benchmarks/bench_checksum.py). ``verify`` still checks the sha256 of whole files.

Arrays are chunked by K rows and compressed with blosc2 (codec, level and shuffle from
the schema). Chunks are compressed on all cores (``chunks``) and stored with HDF5's
direct chunk write; they are ordinary blosc2 frames, so any HDF5 reader with the blosc2
filter (PyTables, h5py + hdf5plugin) reads the arrays. This package reads them without
HDF5: the layout says where every chunk is, so a read is, per chunk and on all cores,
``pread`` + check + decompress straight into the result (opening a file through PyTables
costs ~3 ms, each column node ~0.5 ms, which dominated reads of many small files, and a
damaged HDF5 header can crash the HDF5 library). The row range of a time window is found by bisecting
``chunk_first_ts`` and reading one chunk of ``ts``: time and column pushdown, only the
chunks of the asked-for columns that hold the window are decompressed.

Older formats are still read: format 2 (the same layout without checksums or meta,
magic ``TICKSTORE-LAYOUT``) and format 1 (one compound-row PyTables Table at ``/data``,
through PyTables); neither can tell a damaged chunk from data, only ``verify``'s sha256
can. A file is built in memory (HDF5's core driver) and written by ``diskio.create_new``:
a temporary name, fsync, then a hard link to a name that must not exist yet, so a reader
sees a whole file or none and no commit ever replaces a committed file; the sha256 the
index keeps is computed from the same bytes while they are written.

Attributes are plain strings, integers and integer arrays (never pickled objects), so
the index can be rebuilt from the files alone (``integrity.reindex``).

Reads and writes never use blosc2's own thread pool, which a forked child would inherit
without its threads (``chunks``): fork-started readers and writers work.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import sys
import threading
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from xxhash import xxh3_64_intdigest

from . import chunks, diskio
from .columns import Columns
from .errors import CorruptionError, FormatVersionError, StorageError, TickstoreError
from .layout import data_path
from .schemas import Partition

if TYPE_CHECKING:
    import tables

__all__ = [
    "FORMAT_VERSION", "KT", "FileMeta", "write_file", "write_array", "set_attrs", "read_meta", "FileCache", "sha256_file", "hdf5",
    "hdf5_error",
]

FORMAT_VERSION = 3
READABLE_FORMATS = (1, 2, 3)
KT = "_kt"  # the hidden per-row knowledge-time column of merged files
CHUNK_ROWS = 1 << 17  # 1 MB of int64 per chunk: HDF5 per-chunk costs vanish, a point read stays cheap
_DATA = "/data"
_MAX_EXACT = float(2**53)
# Format 2 files start with an HDF5 user block (ignored by HDF5 readers) holding this
# magic, the JSON's length (10 digits, newline) and the JSON layout: per column codec,
# scale, dtype and the file offset and size of every chunk. A read needs no HDF5 library
# call at all: pread the chunks, decompress.
_LAYOUT_MAGIC = b"TICKSTORE-LAYOUT\n"  # format 2: no checksums
_LAYOUT_MAGIC_3 = b"TICKSTORE-LAYOUT-3\n"  # then b"%010d %016x\n" % (length, xxh3 of the JSON)
_HEAD_3 = len(_LAYOUT_MAGIC_3) + 28
_PLAIN_WRITE = itertools.count()  # unique names for in-memory HDF5 files


@functools.cache
def hdf5():
    """PyTables, imported on first use: writes and files of formats 1 and 2 (data and
    index) go through HDF5; a read of format-3 files makes no HDF5 call and does not
    import it (~35 ms)."""
    import tables

    warnings.filterwarnings("ignore", category=tables.NaturalNameWarning)
    return tables


def set_attrs(node, **values) -> None:
    """Write HDF5 attributes of a node of a file being built (strings, numpy int64
    scalars and arrays), the bytes ``node._v_attrs.<name> = value`` writes.

    Straight through PyTables' attribute writer (``AttributeSet._g_setattr``, where the
    public setter ends): the public setter's Python checks (a system-name test through
    ``numpy.prod`` per call, natural-name warnings, sorted name lists) cost ~40 us per
    attribute, ~0.8 ms of a small day's data file (18 attributes) and its index (5).
    A PyTables without that method gets the public setter.
    """
    attrs = node._v_attrs
    write = getattr(attrs, "_g_setattr", None)
    for name, value in values.items():
        if write is None:
            setattr(attrs, name, value)
        else:  # a str becomes a 0-d numpy string, as the public setter makes it
            write(node, name, np.array(value) if isinstance(value, str) else value)


class _NoHDF5Error(Exception):
    """Never raised: what ``hdf5_error`` names while PyTables is not imported."""


def hdf5_error() -> type[Exception]:
    """``tables.HDF5ExtError`` for an ``except`` clause, without importing PyTables: if
    it is not imported, no HDF5 call was made, so no such error can have been raised."""
    t = sys.modules.get("tables")
    return getattr(t, "HDF5ExtError", _NoHDF5Error)


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
    with open(path, "rb") as f:
        return _sha256_fd(f.fileno())


def _sha256_fd(fd: int) -> str:
    import hashlib  # here: checksums are for writes, pins and verify, not for reads

    h = hashlib.sha256()
    at = 0
    while True:
        chunk = os.pread(fd, 1 << 20, at)
        if not chunk:
            return h.hexdigest()
        h.update(chunk)
        at += len(chunk)


def _plan(name: str, values: np.ndarray, encoding: str) -> tuple[str, int]:
    """(codec, scale) a column is stored with. A float column is 'delta_scaled' when a
    sample of it is exact decimals; every chunk confirms it as it is encoded
    (``_encode_chunk``), else the column is stored 'xor'."""
    if name == KT:
        encoding = "delta"
    if encoding != "delta" or name == "ts" or len(values) < 2 or values.dtype.itemsize != 8:
        return "plain", 0
    if values.dtype.kind == "f":
        scale = _decimal_scale(values[:: max(1, len(values) // 4096)])
        return ("xor", 0) if scale is None else ("delta_scaled", scale)
    return ("delta", 0) if values.dtype.kind in "iu" else ("plain", 0)


def _encode_chunk(part: np.ndarray, codec: str, scale: int, out: np.ndarray) -> bool:
    """The stored form of one chunk ``part`` into ``out`` (int64): differences to the
    previous row ('delta', 'delta_scaled' of int(value * 10**scale)) or XORs of the float
    bits ('xor'), the first row as it is (a chunk decodes alone). False: a 'delta_scaled'
    chunk holds a value that is not int / 10**scale exactly (or NaN, inf, too large)."""
    if codec == "delta_scaled":
        f = 10.0**scale
        if not np.isfinite(part).all() or np.abs(part).max() * f >= _MAX_EXACT:
            return False
        q = _exact(part, f)
        if q is None:
            return False
    else:
        q = part.view(np.int64)
    out[0] = q[0]
    # wraps on overflow; the cumsum that decodes wraps back
    (np.bitwise_xor if codec == "xor" else np.subtract)(q[1:], q[:-1], out=out[1:])
    return True


def _decimal_scale(values: np.ndarray) -> int | None:
    """The smallest s <= 12 such that every value is exactly int / 10**s, else None."""
    if not np.isfinite(values).all():
        return None
    for s in range(13):
        f = 10.0**s
        if np.abs(values).max() * f >= _MAX_EXACT:
            return None
        if _exact(values, f) is not None:
            return s
    return None


def _exact(values: np.ndarray, f: float) -> np.ndarray | None:
    """int64(rint(v * f)) if dividing it by f gives back every value bit for bit (-0.0
    included), else None."""
    q = np.rint(values * f).astype(np.int64)
    return q if np.array_equal((q / f).view(np.int64), values.view(np.int64)) else None


def write_file(path: Path, rows: Columns, meta: FileMeta, *, complib: str, complevel: int, shuffle: str = "byte", encoding: str = "plain") -> tuple[str, int]:
    """Write ``rows`` and ``meta`` to ``path``, a name that must not exist yet; return
    (sha256, size in bytes).

    The caller has already validated ``rows`` (sorted by ts, schema dtypes).

    Raises
    ------
    CorruptionError
        ``path`` exists (a commit never replaces a data file).
    StorageError
        The disk refused (full, read-only, I/O error); nothing is left behind.
    """
    n = len(rows)
    k = max(1, min(n, CHUNK_ROWS))
    firsts = np.ascontiguousarray(rows["ts"][::k], dtype=np.int64) if n else np.zeros(0, np.int64)
    meta_json = asdict(meta)
    meta_json["replaces"] = list(meta.replaces)
    layout = {
        "tickstore_format": FORMAT_VERSION,
        "rows": n,
        "chunk_rows": k,
        "chunk_first_ts": firsts.tolist(),
        "meta": meta_json,
        "columns": {},
    }
    fixed = len(json.dumps(meta_json)) + 64
    packed = _pack_columns(rows, k, complib, complevel, shuffle, encoding)
    # Built in memory (HDF5's core driver, no backing file), then written by diskio: every
    # byte reaches the disk through one place that fsyncs, refuses to replace, and turns
    # a full disk into a StorageError.
    with hdf5().open_file(
        f"{path}.mem-{os.getpid()}-{next(_PLAIN_WRITE)}",
        "w",
        driver="H5FD_CORE",
        driver_core_backing_store=0,
        # room for the chunks and HDF5's metadata (~4 KB a column), grown if short: a 4 MB
        # floor cost a small day's file ~0.3 ms in faulting a fresh mapping
        driver_core_increment=sum(p.nbytes for _, _, _, p in packed) + (1 << 18) + len(packed) * (1 << 13),
        pytables_sys_attrs=False,
        user_block_size=_user_block_size(len(rows.names), n, k, fixed),
    ) as h:
        g = h.create_group("/", "data")
        set_attrs(g, chunk_rows=np.int64(k), chunk_first_ts=firsts)
        codecs = {}
        for name, codec, scale, p in packed:
            node, inners = p.write(h, g, name)
            codecs[name] = [codec, scale]
            where = [node.chunk_info((a,)) for a in range(0, n, k)]
            layout["columns"][name] = [
                codec, scale, p.dtype.str, [[c.offset, c.size, io, il, x] for c, (io, il, x) in zip(where, inners)]
            ]
        set_attrs(g, columns=json.dumps(codecs))
        set_attrs(
            h.root,
            tickstore_format=np.int64(FORMAT_VERSION),
            table=meta.table,
            symbol=meta.symbol,
            partition=meta.partition,
            partition_start=meta.partition_start,
            version=np.int64(meta.version),
            committed_at=np.int64(meta.committed_at),
            op=meta.op,
            replaces=json.dumps(list(meta.replaces)),
            reason=meta.reason,
            source=meta.source,
            rows=np.int64(meta.rows),
            first_ts=np.int64(meta.first_ts),
            last_ts=np.int64(meta.last_ts),
            schema=meta.schema,
        )
        block = h.get_userblock_size()
        image = h.get_file_image()  # the file after its user block
    layout["file_bytes"] = block + len(image)  # a truncated or extended file is refused
    head = layout_header(json.dumps(layout, separators=(",", ":")).encode())
    if len(head) > block:
        raise AssertionError(f"layout of {len(head)} bytes does not fit the {block}-byte user block")
    head = head.ljust(block, b" ")
    checksum = diskio.create_new(path, [head, image], digest="sha256")  # hashed while written
    return checksum, len(head) + len(image)


def layout_header(body: bytes, magic: bytes = _LAYOUT_MAGIC_3) -> bytes:
    """``magic``, then a checksummed JSON ``body``: the user block of format-3 data files
    and of index files."""
    return magic + b"%010d %016x\n" % (len(body), xxh3_64_intdigest(body)) + body


def header_body(path: str, magic: bytes, head: bytes, size: int) -> tuple[int, int]:
    """(length, xxh3) of the JSON after ``magic`` in ``head`` (a file of ``size`` bytes).

    Raises
    ------
    ValueError
        A malformed header line.
    """
    m = len(magic)
    length, want = int(head[m : m + 10]), int(head[m + 11 : m + 27], 16)
    if head[m + 10 : m + 11] != b" " or head[m + 27 : m + 28] != b"\n" or not 0 < length <= size - m - 28:
        raise ValueError("bad header line")
    return length, want


def _user_block_size(ncols: int, n: int, k: int, fixed: int) -> int:
    """A power of two (>= 512, as HDF5 requires) that holds the layout JSON: at most ~93
    bytes per chunk reference and ~21 per chunk start time, plus names, codecs and
    ``fixed`` bytes (the meta)."""
    nchunks = -(-n // k) if n else 0
    need = _HEAD_3 + 256 + fixed + ncols * (160 + 93 * nchunks) + 21 * nchunks
    size = 512
    while size < need:
        size *= 2
    return size


def write_array(h: tables.File, where, name: str, values: np.ndarray, *, chunk: int, complib: str, complevel: int, shuffle: str, typesize: int | None = None):
    """A 1-D array ``where/name`` holding ``values`` in chunks of ``chunk`` items.

    With a blosc2 ``complib`` the chunks are compressed by python-blosc2 on all cores
    (PyTables' own write path compresses on one thread, several times slower) and stored
    as they are with HDF5's direct chunk write; they are ordinary blosc2 frames that any
    reader with the HDF5 blosc2 filter decodes. ``shuffle`` is 'byte', 'bit' or 'none';
    ``typesize`` (default the item size) is the width the shuffle works on.

    Returns the array node and, per chunk, (offset, length) of the blosc2 chunk inside
    the stored frame ((-1, 0) when the frame stores it without data) and the xxh3-64 of
    the bytes a reader decompresses (that chunk, or the whole frame).
    """
    packed = _Packed(values, chunk, complib, complevel, shuffle, typesize)
    chunks.run(packed.jobs, values.nbytes)
    return packed.write(h, where, name)


class _Packed:
    """One column encoded (``codec``) and compressed chunk by chunk (``jobs``, run by
    ``chunks.run``), then written to an HDF5 file (``write``). ``failed``: a
    'delta_scaled' chunk was not exact decimals (the caller stores the column 'xor')."""

    def __init__(self, values: np.ndarray, chunk: int, complib: str, complevel: int, shuffle: str, typesize: int | None = None,
                 codec: str = "plain", scale: int = 0):
        values = np.ascontiguousarray(values)
        self.chunk, self.n, self.codec, self.failed = chunk, len(values), codec, False
        # XOR'd floats are zeros or 8 noisy bytes: unshuffled, the zeros stay long runs
        # (a book size column: 0.8 MB vs 1.4 byte- / 1.9 bit-shuffled)
        shuffle = "none" if codec == "xor" else shuffle
        self.dtype = values.dtype if codec == "plain" else np.dtype(np.int64)
        self.filters = hdf5().Filters(complevel=complevel, complib=complib, shuffle=shuffle == "byte", bitshuffle=shuffle == "bit")
        params = chunks.cparams(complib, complevel, shuffle, typesize or self.dtype.itemsize)
        self.frames: list = [None] * -(-self.n // chunk)
        stored = None if codec == "plain" else np.empty(self.n, np.int64)  # the encoded copy, filled by the jobs

        def job(i: int):
            def pack() -> None:
                part = values[i * chunk : (i + 1) * chunk]
                if stored is not None:
                    out = stored[i * chunk : (i + 1) * chunk]
                    if self.failed or not _encode_chunk(part, codec, scale, out):
                        self.failed = True
                        return
                    part = out
                if len(part) < chunk:  # HDF5 stores whole chunks; the dataset's extent hides the padding
                    part = np.concatenate([part, np.zeros(chunk - len(part), part.dtype)])
                self.frames[i] = chunks.compress(part, params)

            return pack

        self.jobs = [job(i) for i in range(len(self.frames))]

    @property
    def nbytes(self) -> int:
        """Compressed bytes (once the jobs ran)."""
        return sum(len(f) for f, _ in self.frames)

    def write(self, h: tables.File, where, name: str):
        atom = hdf5().Atom.from_dtype(self.dtype)
        if self.n == 0:
            return h.create_earray(where, name, atom=atom, shape=(0,), filters=self.filters, chunkshape=(1024,)), []
        node = h.create_carray(where, name, atom=atom, shape=(self.n,), filters=self.filters, chunkshape=(self.chunk,))
        for i, (frame, _) in enumerate(self.frames):
            node.write_chunk((i * self.chunk,), frame)
        return node, [inner for _, inner in self.frames]


_GROUP_BYTES = 64 << 20  # encoded copies alive at once while a file's columns are compressed


def _pack_columns(rows: Columns, k: int, complib: str, complevel: int, shuffle: str, encoding: str) -> list:
    """[(name, codec, scale, _Packed)] of every column, encoded and compressed chunk by
    chunk (the codecs restart at every chunk), the chunks of many columns at once on all
    cores, holding at most ~64 MB of encoded copies (a plain column is compressed from the
    caller's array, no copy)."""
    out, group, held = [], [], 0
    names = rows.names
    for i, (name, values) in enumerate(rows.items()):
        codec, scale = _plan(name, values, encoding)
        group.append((name, values, codec, scale))
        held += values.nbytes if codec != "plain" else 0
        if held >= _GROUP_BYTES or i == len(names) - 1:
            out += _pack_group(group, k, complib, complevel, shuffle)
            group, held = [], 0
    return out


def _pack_group(group: list, k: int, complib: str, complevel: int, shuffle: str) -> list:
    def pack(name, values, codec, scale):
        return name, codec, scale, _Packed(values, k, complib, complevel, shuffle, codec=codec, scale=scale)

    packed = [pack(*g) for g in group]
    chunks.run([job for *_, p in packed for job in p.jobs], sum(v.nbytes for _, v, _, _ in group))
    for j, (name, codec, scale, p) in enumerate(packed):
        if p.failed:  # not exact decimals after all (a value the sample missed): XOR'd bits
            packed[j] = pack(group[j][0], group[j][1], "xor", 0)
            chunks.run(packed[j][3].jobs, group[j][1].nbytes)
    for *_, p in packed:
        p.jobs = []  # they hold the encoded copy
    return packed


def _attr_str(a, name: str) -> str:
    v = a[name]
    return v.decode() if isinstance(v, bytes) else str(v)


def _check_format(path, fmt: int) -> None:
    if fmt not in READABLE_FORMATS:
        raise FormatVersionError(
            f"{path}: written with tickstore file format {fmt}; this version reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))} only (upgrade tickstore)"
        )


def read_meta(path: str | os.PathLike) -> FileMeta:
    """The metadata a file carries (format 3: from its checksummed layout, no HDF5 call;
    older formats: from its HDF5 attributes).

    Raises
    ------
    FormatVersionError
        The file was written by a format this code does not know.
    CorruptionError
        The file is not a readable tickstore file.
    StorageError
        The file cannot be opened or read (permissions, I/O error).
    """
    fd = _open_fd(path)
    try:
        found = _read_layout(str(path), fd)
    finally:
        os.close(fd)
    if found is not None and found[0] >= 3:
        return _meta_of(str(path), found[1])
    tables = hdf5()
    try:
        with tables.open_file(str(path), "r") as h:
            a = h.root._v_attrs
            if "tickstore_format" not in a._v_attrnames:
                raise CorruptionError(f"{path}: not a tickstore file (no tickstore_format attribute)")
            fmt = int(a.tickstore_format)
            _check_format(path, fmt)
            if fmt >= 3:
                raise CorruptionError(f"{path}: format {fmt} file without its layout block (damaged)")
            return FileMeta(
                table=_attr_str(a, "table"),
                symbol=_attr_str(a, "symbol"),
                partition=_attr_str(a, "partition"),
                partition_start=_attr_str(a, "partition_start"),
                version=int(a.version),
                committed_at=int(a.committed_at),
                op=_attr_str(a, "op"),
                replaces=tuple(int(v) for v in json.loads(_attr_str(a, "replaces"))),
                reason=_attr_str(a, "reason"),
                source=_attr_str(a, "source"),
                rows=int(a.rows),
                first_ts=int(a.first_ts),
                last_ts=int(a.last_ts),
                schema=_attr_str(a, "schema"),
            )
    except (FormatVersionError, CorruptionError):
        raise
    except (tables.HDF5ExtError, OSError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CorruptionError(f"{path}: unreadable tickstore file ({type(exc).__name__}: {exc})") from None


_META_INTS = ("version", "committed_at", "rows", "first_ts", "last_ts")
_META_STRS = ("table", "symbol", "partition", "partition_start", "op", "reason", "source", "schema")


def _meta_of(path: str, layout: dict) -> FileMeta:
    """The FileMeta in a (checksummed) format-3 layout."""
    try:
        m = layout["meta"]
        if any(type(m[f]) is not int for f in _META_INTS) or any(type(m[f]) is not str for f in _META_STRS):
            raise TypeError("fields of the wrong type")
        if not isinstance(m["replaces"], list) or any(type(v) is not int for v in m["replaces"]):
            raise TypeError("replaces is not a list of versions")
        return FileMeta(**{f: m[f] for f in _META_INTS + _META_STRS}, replaces=tuple(m["replaces"]))
    except (KeyError, TypeError) as exc:
        raise CorruptionError(f"{path}: malformed file metadata ({exc})") from None


def _open_fd(path) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise CorruptionError(f"{path}: the file is missing; run `tickstore verify`") from None
    except OSError as exc:
        raise StorageError.from_os(exc, path, "opening") from None


def _read_layout(path: str, fd: int) -> tuple[int, dict] | None:
    """(format, layout JSON) of a file that starts with a layout block (formats 2 and 3),
    None for one that does not (format 1, or not a tickstore file).

    Format 3's JSON is returned only if its checksum matches, so nothing parsed from a
    damaged header ever reaches a read.
    """
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, 4096, 0)
        if head.startswith(_LAYOUT_MAGIC_3):
            length, want = header_body(path, _LAYOUT_MAGIC_3, head, size)
            body = head[_HEAD_3 : _HEAD_3 + length]
            if len(body) < length:
                body = os.pread(fd, length, _HEAD_3)
            if xxh3_64_intdigest(body) != want:
                raise CorruptionError(f"{path}: layout checksum mismatch: the file is damaged; run `tickstore verify`")
            d = json.loads(body)
            if not isinstance(d, dict) or type(d.get("tickstore_format")) is not int or d["tickstore_format"] < 3:
                raise ValueError("not a format-3 layout")
            _check_format(path, d["tickstore_format"])
            return d["tickstore_format"], d
        if head.startswith(_LAYOUT_MAGIC):
            m = len(_LAYOUT_MAGIC)
            length = int(head[m : m + 10])
            if not 0 < length <= size:
                raise ValueError("bad header line")
            body = head[m + 11 : m + 11 + length]
            if len(body) < length:
                body = os.pread(fd, length, m + 11)
            d = json.loads(body)
            if not isinstance(d, dict) or d.get("tickstore_format") != 2:
                raise ValueError("not a format-2 layout")
            return 2, d
        return None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CorruptionError(f"{path}: malformed tickstore layout ({exc}); run `tickstore verify`") from None
    except OSError as exc:
        raise StorageError.from_os(exc, path, "reading") from None


def _check_identity(path: str, meta: FileMeta, rows: int) -> None:
    """Refuse a file whose own metadata names another place than its path (a file copied
    or swapped in for another), or disagrees with its layout."""
    try:
        day = int(np.datetime64(meta.partition_start, "D").astype(np.int64))
        expected = data_path(meta.table, Partition(meta.partition), day, meta.symbol, meta.version)
    except (ValueError, TypeError, TickstoreError) as exc:
        raise CorruptionError(f"{path}: malformed file metadata ({exc})") from None
    if not path.replace(os.sep, "/").endswith("/" + expected):
        raise CorruptionError(
            f"{path}: holds {meta.table} {meta.symbol} {meta.partition_start} version {meta.version} "
            f"(expected at .../{expected}): a file was swapped in for another; run `tickstore verify`"
        )
    if meta.rows != rows:
        raise CorruptionError(f"{path}: metadata says {meta.rows} rows, its layout {rows}")


class _Table1:
    """An open format-1 file: one compound-row PyTables Table at /data."""

    def __init__(self, h: tables.File, path: str):
        self.h = h
        self.t = h.get_node(_DATA)
        self.n = self.t.nrows
        st = os.stat(path)
        self.identity = (st.st_dev, st.st_ino)

    def sha256(self, path: str) -> str:
        """The sha256 of the file this handle reads (refused if the path now names another)."""
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if (st.st_dev, st.st_ino) != self.identity:
                raise CorruptionError(f"{path} was replaced while open; run `tickstore verify`")
            return _sha256_fd(f.fileno())

    def first_at_or_after(self, value: int) -> int:
        """First row whose ts >= value: rows are sorted by ts, bisect (one chunk per probe)."""
        lo, hi = 0, self.n
        while lo < hi:
            mid = (lo + hi) // 2
            if int(self.t.read(mid, mid + 1, field="ts")[0]) < value:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def has(self, name: str) -> bool:
        return name in self.t.colnames

    def read_into(self, start: int, stop: int, out: dict[str, np.ndarray]) -> None:
        rows = self.t.read(start, stop)
        for name, o in out.items():
            o[...] = rows[name]

    def close(self) -> None:
        self.h.close()


class _Layout:
    """An open format-3 (or 2) file, read through the layout in its user block.

    No HDF5 call is made: opening is one ``pread`` of the layout, a read is one ``pread``,
    one checksum and one blosc2 decompression (on all cores, straight into the caller's
    array) per chunk. PyTables' own open and node setup cost ~3 ms per file and ~0.5 ms
    per column, which would dominate a read of 48 month files of bars.
    """

    def __init__(self, path: str, fd: int, fmt: int, d: dict):
        self.path, self.fd = path, fd
        self.checked = fmt >= 3  # chunks carry checksums
        self.meta = None
        try:
            size = os.fstat(fd).st_size
            self.n, self.k = int(d["rows"]), int(d["chunk_rows"])
            if self.n < 0 or self.k <= 0:
                raise ValueError("bad row counts")
            self.firsts = np.asarray(d["chunk_first_ts"], dtype=np.int64)
            nchunks = -(-self.n // self.k) if self.n else 0
            self.columns = {}
            width = 5 if self.checked else 4
            for name, (codec, scale, dtype, chunks) in d["columns"].items():
                if codec not in ("plain", "delta", "delta_scaled", "xor"):
                    raise ValueError(f"column {name!r} has unknown codec {codec!r}")
                chunks = [tuple(int(v) for v in c) for c in chunks]
                if len(chunks) != nchunks or any(len(c) != width for c in chunks) or any(
                    o < 0 or z <= 0 or o + z > size or (io >= 0 and (il <= 0 or io + il > z)) for o, z, io, il, *_ in chunks
                ):
                    raise ValueError(f"column {name!r}: chunk references outside the file")
                self.columns[name] = (codec, int(scale), np.dtype(dtype), chunks)
            if "ts" not in self.columns or len(self.firsts) != nchunks:
                raise ValueError("no ts column or chunk start times")
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            raise CorruptionError(f"{path}: malformed tickstore layout ({exc}); run `tickstore verify`") from None
        if self.checked:
            if d.get("file_bytes") != size:
                raise CorruptionError(f"{path}: {size} bytes, its layout says {d.get('file_bytes')}: truncated or extended; run `tickstore verify`")
            self.meta = _meta_of(path, d)
            _check_identity(path, self.meta, self.n)

    def has(self, name: str) -> bool:
        return name in self.columns

    def sha256(self, path: str) -> str:
        """The sha256 of the very file this handle reads."""
        try:
            return _sha256_fd(self.fd)
        except OSError as exc:
            raise StorageError.from_os(exc, path, "reading") from None

    def check_chunks(self) -> None:
        """Check the xxh3 of every chunk of every column, decompressing nothing (format 3;
        older formats carry no checksums): what ``verify`` and ``reindex`` do to a file."""
        if not self.checked:
            return
        for name, (_, _, _, refs) in self.columns.items():
            for i, (offset, size, inner, inner_size, check) in enumerate(refs):
                n = inner_size if inner >= 0 else size
                try:
                    raw = os.pread(self.fd, n, offset + max(inner, 0))
                except OSError as exc:
                    raise StorageError.from_os(exc, self.path, f"reading column {name!r} chunk {i}") from None
                if len(raw) != n or xxh3_64_intdigest(raw) != check:
                    raise CorruptionError(
                        f"{self.path}: column {name!r} chunk {i} (rows {i * self.k}..{min(self.n, (i + 1) * self.k) - 1}) "
                        f"is damaged (checksum mismatch); run `tickstore verify`"
                    )

    def _column(self, name: str):
        c = self.columns.get(name)
        if c is None:
            raise CorruptionError(f"{self.path}: no column {name!r}")
        return c

    def read_chunk(self, name: str, i: int, dst: np.ndarray) -> None:
        """Check and decompress chunk ``i`` of column ``name`` into ``dst`` (exactly k items).

        The compressed bytes are read into this thread's scratch buffer (no fresh memory
        per chunk) and checked before the decompressor sees them.
        """
        offset, size, inner, inner_size, *check = self._column(name)[3][i]
        try:
            n = inner_size if inner >= 0 else size
            raw = chunks.scratch().raw(n)
            if os.preadv(self.fd, [raw], offset + max(inner, 0)) != n:
                raise ValueError("short read: the file is truncated")
            if check and xxh3_64_intdigest(raw) != check[0]:
                raise ValueError("checksum mismatch")
            chunks.decompress(raw, dst, whole_frame=inner < 0)
        except OSError as exc:
            raise StorageError.from_os(exc, self.path, f"reading column {name!r} chunk {i}") from None
        except (ValueError, RuntimeError) as exc:
            raise CorruptionError(
                f"{self.path}: column {name!r} chunk {i} (rows {i * self.k}..{min(self.n, (i + 1) * self.k) - 1}) "
                f"is damaged ({exc}); run `tickstore verify`"
            ) from None

    def first_at_or_after(self, value: int) -> int:
        """First row whose ts >= value: bisect the chunks' first times, then one chunk."""
        j = int(np.searchsorted(self.firsts, value, side="left"))
        if j == 0:
            return 0
        a = (j - 1) * self.k
        ts = chunks.scratch().chunk(self.k, np.dtype(np.int64))
        self.read_chunk("ts", j - 1, ts)
        return a + int(np.searchsorted(ts[: min(self.k, self.n - a)], value, side="left"))

    def jobs(self, start: int, stop: int, out: dict[str, np.ndarray]) -> list:
        """One job per chunk of each column of ``out`` that rows ``start:stop`` touch; each
        decompresses (and decodes) its rows into their place in ``out``."""
        k, jobs = self.k, []
        for name, o in out.items():
            codec, scale, _, _ = self._column(name)
            for a in range(start - start % k, stop, k):
                lo, hi = max(start, a), min(stop, a + k)
                jobs.append(functools.partial(self._read_rows, name, codec, scale, a // k, lo - a, hi - a, o[lo - start : hi - start]))
        return jobs

    def _read_rows(self, name: str, codec: str, scale: int, i: int, lo: int, hi: int, dst: np.ndarray) -> None:
        """Rows ``lo:hi`` of chunk ``i`` of a column into ``dst``: a whole chunk straight
        into it (decoded in place), a part (or the padded last chunk) through the scratch."""
        whole = lo == 0 and hi == self.k
        if codec == "plain":
            if whole:
                self.read_chunk(name, i, dst)
            else:
                buf = chunks.scratch().chunk(self.k, dst.dtype)
                self.read_chunk(name, i, buf)
                dst[...] = buf[lo:hi]
            return
        # encoded: int64 differences (or XORs) that restart at every chunk
        in_place = whole and dst.dtype.itemsize == 8
        q = dst.view(np.int64) if in_place else chunks.scratch().chunk(self.k, np.dtype(np.int64))
        self.read_chunk(name, i, q)
        (np.bitwise_xor.accumulate if codec == "xor" else np.cumsum)(q, out=q)
        if codec == "delta_scaled":
            np.divide(q[lo:hi], 10.0**scale, out=dst)
        elif not in_place:
            dst[...] = q[lo:hi].view(dst.dtype)

    def close(self) -> None:
        os.close(self.fd)


class FileCache:
    """Open read handles of immutable files, least recently used first out.

    Versions are immutable and never rewritten in place, so a handle opened once stays
    valid for as long as the file exists. Opening is what costs (PyTables builds the
    node tree); reading a 44k-row month of bars is cheaper than opening it.
    """

    def __init__(self, capacity: int = 256):
        self.capacity = capacity
        self._handles: OrderedDict[str, _Layout | _Table1] = OrderedDict()
        self._lock = threading.RLock()

    def _open(self, path: str):
        f = self._handles.get(path)
        if f is not None:
            self._handles.move_to_end(path)
            return f
        fd = _open_fd(path)
        try:
            found = _read_layout(path, fd)
            if found is not None:
                f = _Layout(path, fd, *found)
            else:
                os.close(fd)
                fd = None
                f = self._open_hdf5(path)
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        self._handles[path] = f
        if len(self._handles) > self.capacity:
            _, old = self._handles.popitem(last=False)
            old.close()
        return f

    @staticmethod
    def _open_hdf5(path: str) -> _Table1:
        tables = hdf5()
        try:
            h = tables.open_file(path, "r")
        except (tables.HDF5ExtError, OSError) as exc:
            raise CorruptionError(f"{path}: cannot open ({exc}); run `tickstore verify`") from None
        try:
            try:
                fmt = int(h.root._v_attrs.tickstore_format)
            except (AttributeError, KeyError, TypeError, ValueError):
                raise CorruptionError(f"{path}: not a tickstore file (no tickstore_format attribute)") from None
            _check_format(path, fmt)
            if fmt != 1:
                raise CorruptionError(f"{path}: format {fmt} file without its layout block (damaged); run `tickstore verify`")
            return _Table1(h, path)
        except BaseException:
            h.close()
            raise

    def read(self, path: str, dtypes: dict[str, np.dtype], lo: int | None = None, hi: int | None = None, *, fill: dict | None = None) -> Columns:
        """The columns named in ``dtypes`` (name -> in-memory dtype, e.g. a schema's
        ``disk_dtypes``) of the rows with ``lo <= ts < hi`` (None: unbounded); ``fill``
        as in ``read_into``."""
        with self._lock:
            start, stop = self.row_range(path, lo, hi)
            out = Columns.empty(dtypes, stop - start)
            self.read_into(path, start, stop, dict(out.items()), fill=fill)
            return out

    def row_range(self, path: str, lo: int | None, hi: int | None) -> tuple[int, int]:
        """The row slice holding ``lo <= ts < hi``: rows are sorted by ts, so the range is
        found by bisection and only that slice is ever decompressed."""
        with self._lock:
            f = self._open(path)
            try:
                start = 0 if lo is None else f.first_at_or_after(lo)
                stop = f.n if hi is None else f.first_at_or_after(hi)
            except (hdf5_error(), ValueError) as exc:  # format 1, read through HDF5
                raise CorruptionError(f"{path}: cannot read ts ({exc}); run `tickstore verify`") from None
            return start, max(start, stop)

    def read_into(self, path: str, start: int, stop: int, out: dict[str, np.ndarray], *, fill: dict | None = None) -> None:
        """Decompress rows ``start:stop`` of each column named in ``out`` straight into
        its array (a contiguous slice of the caller's result), so a many-file read copies
        each value once.

        ``fill`` maps column -> value for columns a file may lack (written before the
        column was added to its schema, see ``Column.default``): such a column is filled
        with the value. A missing column without a fill value is a ``CorruptionError``.
        """
        self.read_many([(path, start, stop, out)], fill=fill)

    def read_many(self, reads, *, fill: dict | None = None) -> None:
        """``read_into`` of many ``(path, start, stop, out)`` (or ``(path, start, stop,
        out, fill)``: that file's own ``fill``): the chunks of all the files are
        decompressed together on all cores (48 month files of bars are one batch of jobs,
        not 48); the handles a batch uses stay open until it ran."""
        default = fill
        with self._lock:
            batch, nbytes, held = [], 0, 0
            for path, start, stop, out, *own in reads:
                fill = own[0] if own else default
                if stop <= start:
                    continue
                f = self._open(path)
                if not 0 <= start <= stop <= f.n:
                    raise CorruptionError(f"{path}: rows {start}:{stop} asked for, the file holds {f.n}; run `tickstore verify`")
                if fill:
                    missing = [n for n in out if n in fill and not f.has(n)]
                    if missing:
                        for n in missing:
                            out[n][...] = fill[n]
                        out = {n: o for n, o in out.items() if n not in missing}
                if not isinstance(f, _Layout):  # format 1, read through HDF5
                    try:
                        f.read_into(start, stop, out)
                    except (hdf5_error(), ValueError) as exc:
                        raise CorruptionError(f"{path}: cannot read rows {start}:{stop} ({exc}); run `tickstore verify`") from None
                    continue
                batch += f.jobs(start, stop, out)
                nbytes += sum(o.nbytes for o in out.values())
                held += 1
                if held >= max(1, self.capacity // 2):  # opening more could close a handle a job reads
                    chunks.run(batch, nbytes)
                    batch, nbytes, held = [], 0, 0
            chunks.run(batch, nbytes)

    def has_column(self, path: str, name: str) -> bool:
        with self._lock:
            return self._open(path).has(name)

    def sha256(self, path: str) -> str:
        """sha256 of the file behind the handle that reads of ``path`` use: a check of
        exactly the bytes that are then read, even if the path was replaced since."""
        with self._lock:
            return self._open(path).sha256(path)

    def check_chunks(self, path: str) -> None:
        """Check every chunk's checksum (see ``_Layout.check_chunks``).

        Raises
        ------
        CorruptionError
            A damaged chunk, naming its column and rows.
        """
        with self._lock:
            f = self._open(path)
            if isinstance(f, _Layout):
                f.check_chunks()

    def check_shape(self, path: str, rows: int, first: int | None = None, last: int | None = None) -> None:
        """Refuse a file whose own (checksummed) layout disagrees with what the index or a
        pin says of it: its row count, and (format 3 and an index entry) its first and
        last ts, which decide whether a read takes the whole file or bisects it. Free: the
        handle holds them.

        Raises
        ------
        CorruptionError
            They differ (a hand-edited or damaged index or pin).
        """
        with self._lock:
            f = self._open(path)
            meta = getattr(f, "meta", None)
        bad = []
        if f.n != rows:
            bad.append(f"{rows} rows (the file holds {f.n})")
        if meta is not None and first is not None and meta.first_ts != first:
            bad.append(f"first ts {first} (the file's is {meta.first_ts})")
        if meta is not None and last is not None and meta.last_ts != last:
            bad.append(f"last ts {last} (the file's is {meta.last_ts})")
        if bad:
            raise CorruptionError(
                f"{path}: the index (or pin) says {', '.join(bad)}: the index was altered or is damaged; "
                f"nothing was read. Run `tickstore verify`, then `tickstore reindex`"
            )

    def discard(self, paths) -> None:
        """Close the handles of deleted files (an open handle keeps a deleted file's disk
        space allocated)."""
        with self._lock:
            for p in paths:
                f = self._handles.pop(p, None)
                if f is not None:
                    f.close()

    def close(self) -> None:
        with self._lock:
            for f in self._handles.values():
                f.close()
            self._handles.clear()

