"""The write-ahead journal: frames are on disk before they count as received.

On-disk layout (one directory per collector)::

    <dir>/
      checkpoint.json            {"format": 1, "segment": 7, "offset": 123456, "updated_ns": ...,
                                  "meta": {...}}   everything before (segment, offset) is stored
      seg-0000000007.jnl          append-only segments; a new one per process start and
      seg-0000000008.jnl          every ``segment_bytes``

    segment  = MAGIC (8 bytes, b"TSJRNL01") record*
    record   = header payload
    header   = <IIqBH little endian: length, crc32, recv_ns, kind, tag_len  (19 bytes)
    payload  = tag (tag_len bytes, UTF-8) + body (length - tag_len bytes)
    crc32    = zlib.crc32 over recv_ns..body (everything after the crc field)
    kind     = 1 FRAME, 2 SNAPSHOT, 3 GAP; 255 = padding written by ``salvage`` over
               damaged bytes (never returned by readers)

A record is a received websocket frame (``FRAME``), a REST order-book snapshot the
collector fetched (``SNAPSHOT``: journaled too, so that a replay feeds the book builder the
very same snapshot at the very same place among the diffs) or a gap-ledger event the
session produced (``GAP``). ``tag`` routes the record (e.g. the market it came from).

Durability (the fsync policy):

- every record is written with one ``os.write`` before ``append`` returns, i.e. before
  the frame counts as received: it then survives ``kill -9`` of the collector (it is in
  the kernel's page cache); ``append_many`` writes a batch of records with one
  ``os.write`` per segment it touches before it returns, so none of them counts as
  received before all are written (the replayer journals its frames that way);
- ``FsyncPolicy.INTERVAL`` (default) fdatasyncs from a background thread every
  ``fsync_interval_s``: a power loss costs at most that much; ``EVERY`` syncs each record
  (slow, ~ms each), ``NEVER`` leaves it to the OS;
- the checkpoint is written to a temporary file, fsynced, renamed over the old one and the
  directory fsynced: a reader sees the old or the new checkpoint, never a torn one.

Failures (a full disk, an I/O error):

- a write that fails or comes up short is rolled back before ``append`` raises
  ``JournalWriteError``: the segment is truncated to the end of the last good record, so
  the refused frame never counted as received and no partial record stays behind for a
  later record to follow. If even the truncation fails, every later append first retries
  it and is refused until it succeeds;
- ``fdatasync`` of the ``INTERVAL`` policy runs on a duplicate of the file descriptor
  outside the journal lock, so a slow disk never stalls the sessions' appends.

A crash may leave a torn record at the very end of the last segment (partial header or
payload, CRC mismatch, zero-filled pages after a power loss) with no intact record after
it; opening the journal truncates it, since its frame never counted as received. Damage
anywhere else - in an older segment, or with intact records after it - is corruption:
``JournalCorruptionError`` names the file and the byte offset and where the next intact
record starts. ``salvage`` (``tickstore journal salvage DIR``) keeps every intact record:
each damaged byte range is copied to ``DIR/damaged/`` and overwritten in place by a padding
record that readers skip, so every offset (and the checkpoint) stays valid.

Segments wholly before the checkpoint are deleted unless ``keep_committed`` (then they
are a raw capture that replays through the parsers, see ``read_records``).
"""

from __future__ import annotations

import enum
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np
import orjson

from tickstore.errors import TickstoreError

__all__ = [
    "RecordKind",
    "FsyncPolicy",
    "Position",
    "Record",
    "JournalConfig",
    "Journal",
    "JournalError",
    "JournalCorruptionError",
    "JournalWriteError",
    "SalvageReport",
    "read_records",
    "salvage",
]

log = logging.getLogger(__name__)

MAGIC = b"TSJRNL01"
_HEADER = struct.Struct("<IIqBH")
_LEN_CRC = struct.Struct("<II")  # the two header fields before the CRC-covered part
_TAIL = struct.Struct("<qBH")  # recv_ns, kind, tag_len: the CRC-covered part of the header
_CRC_FROM = 8  # crc covers the header from recv_ns on, then the payload
CHECKPOINT = "checkpoint.json"
_SEGMENT_GLOB = "seg-*.jnl"
_PAD = 255  # the kind of a salvage padding record
DAMAGED = "damaged"  # salvage keeps the damaged bytes here

# Indirections the fault-injection tests replace (a full disk at any byte of a record).
_write = os.write
_fdatasync = os.fdatasync


class JournalError(TickstoreError):
    """The journal cannot be used as asked (bad config, closed, record too large)."""


class JournalCorruptionError(JournalError):
    """A record before the tail of the last segment fails its length or CRC check.

    ``path`` and ``offset`` say where; ``next_good`` is the offset of the next intact
    record in that segment (None if none follows).
    """

    def __init__(self, message: str, *, path: Path | None = None, offset: int | None = None, next_good: int | None = None):
        super().__init__(message)
        self.path, self.offset, self.next_good = path, offset, next_good


class JournalWriteError(JournalError):
    """A record could not be written (disk full, I/O error); nothing of it was kept."""


class RecordKind(enum.IntEnum):
    FRAME = 1
    SNAPSHOT = 2
    GAP = 3


_KINDS = frozenset([*(k.value for k in RecordKind), _PAD])


class FsyncPolicy(enum.Enum):
    EVERY = "every"
    INTERVAL = "interval"
    NEVER = "never"


# Named tuples rather than frozen dataclasses: one of each is made per journaled frame, and a
# frozen dataclass costs ~1 us to build (its __init__ sets every field through
# object.__setattr__). Immutable, ordered by (segment, offset) and compared by value alike.
class Position(NamedTuple):
    """A place in the journal: byte ``offset`` in segment number ``segment``."""

    segment: int
    offset: int


class Record(NamedTuple):
    kind: RecordKind
    recv_ns: int
    tag: str
    body: bytes
    end: Position  # the position just after this record: checkpointing it commits the record


@dataclass(frozen=True)
class JournalConfig:
    segment_bytes: int = 64 << 20
    fsync: FsyncPolicy = FsyncPolicy.INTERVAL
    fsync_interval_s: float = 1.0
    keep_committed: bool = False

    def __post_init__(self):
        if self.segment_bytes < 4096:
            raise JournalError(f"segment_bytes must be >= 4096, got {self.segment_bytes}")
        if not isinstance(self.fsync, FsyncPolicy):
            raise JournalError(f"fsync must be a FsyncPolicy, got {self.fsync!r}")
        if self.fsync_interval_s <= 0:
            raise JournalError(f"fsync_interval_s must be > 0, got {self.fsync_interval_s}")


def _encode(kind: RecordKind, body: bytes, recv_ns: int, tag: str, crc32=zlib.crc32) -> bytes:
    """One record as written: header (length, crc, recv_ns, kind, tag_len), tag, body."""
    tag_b = tag.encode()
    length = len(tag_b) + len(body)
    if length >= 1 << 32 or len(tag_b) >= 1 << 16:
        raise JournalError(f"record too large: {length} bytes (tag {len(tag_b)} bytes)")
    tail = _TAIL.pack(recv_ns, kind, len(tag_b))
    return b"".join((_LEN_CRC.pack(length, crc32(body, crc32(tag_b, crc32(tail)))), tail, tag_b, body))


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until everything is written (a regular file may take a short write)."""
    n = _write(fd, data)
    if n < len(data):
        view = memoryview(data)
        while n < len(data):
            n += _write(fd, view[n:])


def _segment_path(directory: Path, n: int) -> Path:
    return directory / f"seg-{n:010d}.jnl"


def _segments(directory: Path) -> list[int]:
    return sorted(int(p.stem[4:]) for p in directory.glob(_SEGMENT_GLOB))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_at(data, pos: int, size: int) -> str | None:
    """Why the record at ``pos`` is not intact (None if it is)."""
    if size - pos < _HEADER.size:
        return f"partial header ({size - pos} bytes)"
    length, crc, _, kind, tag_len = _HEADER.unpack_from(data, pos)
    end = pos + _HEADER.size + length
    if end > size:
        return f"record of {length} bytes runs past the end ({size - pos - _HEADER.size} left)"
    if kind not in _KINDS or tag_len > length:
        return f"bad header (kind={kind}, tag_len={tag_len}, length={length})"
    if zlib.crc32(memoryview(data)[pos + _CRC_FROM : end]) != crc:
        return "CRC mismatch"
    return None


def _next_intact(data, start: int, size: int) -> int | None:
    """Offset of the first intact record starting at or after ``start`` (None if none).

    Candidates are filtered with numpy on the kind byte (a known kind) before the CRC is
    checked, so zero-filled pages and random garbage are skipped at memory speed.
    """
    last = size - _HEADER.size  # the last offset where a header fits
    if start > last:
        return None
    kinds = np.frombuffer(data, np.uint8, count=last - start + 1, offset=start + 16)
    candidates = np.flatnonzero(np.isin(kinds, np.fromiter(_KINDS, np.uint8)))
    for c in candidates:
        pos = start + int(c)
        if _check_at(data, pos, size) is None:
            return pos
    return None


def _scan(path: Path, start: int, *, tolerate_torn_tail: bool) -> Iterator[tuple[int, Record | None]]:
    """Yield (offset after record, record) from ``start``; a torn tail yields (good end, None).

    A bad record is a torn tail only if ``tolerate_torn_tail`` and no intact record follows
    it; otherwise ``JournalCorruptionError`` names the offset and the next intact record.
    Salvage padding records are skipped.
    """
    n = int(path.stem[4:])
    with open(path, "rb") as f:
        data = f.read()
    if data[: len(MAGIC)] != MAGIC:
        if tolerate_torn_tail and len(data) < len(MAGIC) and MAGIC.startswith(data):
            yield 0, None
            return
        raise JournalCorruptionError(f"{path}: not a journal segment (magic {data[:8]!r}, expected {MAGIC!r})", path=path, offset=0)
    pos = max(start, len(MAGIC))
    size = len(data)
    unpack = _HEADER.unpack_from
    while pos < size:
        bad = _check_at(data, pos, size)
        if bad is not None:
            nxt = _next_intact(data, pos + 1, size)
            if tolerate_torn_tail and nxt is None:
                yield pos, None
                return
            raise _corruption(path, pos, bad, nxt)
        length, _, recv_ns, kind, tag_len = unpack(data, pos)
        body_at = pos + _HEADER.size
        end = body_at + length
        pos = end
        if kind == _PAD:
            continue
        tag = data[body_at : body_at + tag_len].decode()
        yield pos, Record(RecordKind(kind), recv_ns, tag, data[body_at + tag_len : end], Position(n, pos))


def _corruption(path: Path, pos: int, why: str, next_good: int | None) -> JournalCorruptionError:
    after = f"the next intact record starts at byte {next_good}" if next_good is not None else "no intact record follows it"
    return JournalCorruptionError(
        f"{path} at byte {pos}: {why}; {after}: the journal is damaged before its tail. "
        f"'tickstore journal salvage {path.parent}' keeps every intact record (the damaged bytes are "
        f"saved under {path.parent / DAMAGED})",
        path=path, offset=pos, next_good=next_good,
    )


def read_records(directory: str | os.PathLike, *, after: Position | None = None, until: Position | None = None) -> Iterator[Record]:
    """Every record in the journal at ``directory`` after ``after`` (default: all kept).

    A torn tail on the newest segment is skipped silently (it never counted as received).
    ``until`` stops at that position (a record ending there is the last one yielded): a
    reader of a journal that is being written reads up to a position it was given.
    """
    directory = Path(directory)
    segs = _segments(directory)
    for i, n in enumerate(segs):
        if after is not None and n < after.segment:
            continue
        if until is not None and n > until.segment:
            return
        start = after.offset if after is not None and n == after.segment else 0
        for _, rec in _scan(_segment_path(directory, n), start, tolerate_torn_tail=(i == len(segs) - 1 or (until is not None and n == until.segment))):
            if rec is not None:
                if until is not None and rec.end > until:
                    return
                yield rec


# -- salvage ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SalvageReport:
    """What ``salvage`` did: per damaged range (segment, offset, bytes, backup file)."""

    directory: str
    ranges: tuple[tuple[int, int, int, str], ...]
    records_kept: int
    truncated: tuple[tuple[int, int, str], ...]  # (segment, new size, backup file): damaged ends cut off

    def summary(self) -> str:
        lines = [f"journal {self.directory}: {self.records_kept} intact records kept"]
        for seg, off, n, backup in self.ranges:
            lines.append(f"  segment {seg} bytes {off}..{off + n}: damaged, padded over (saved to {backup})")
        for seg, size, backup in self.truncated:
            lines.append(f"  segment {seg}: damaged end cut at byte {size} (saved to {backup})")
        if not self.ranges and not self.truncated:
            lines.append("  no damage found")
        return "\n".join(lines)


def salvage(directory: str | os.PathLike) -> SalvageReport:
    """Make a damaged journal readable again, keeping every intact record.

    Each damaged byte range (from a record that fails its checks to the next intact
    record) is copied to ``<directory>/damaged/seg-<n>-at-<offset>.bin`` and overwritten
    in place by one padding record of the same size, which readers skip: every other
    record keeps its offset, so the checkpoint stays valid. A damaged range at the very
    end of a segment is cut off (after the same backup). Run it on a journal no collector
    has open; records inside a damaged range are lost (their frames were received but are
    unreadable), everything else is replayed by the next start.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise JournalError(f"no journal at {directory} (not a folder)")
    ranges, truncated, kept = [], [], 0
    for n in _segments(directory):
        path = _segment_path(directory, n)
        data = bytearray(path.read_bytes())
        if data[: len(MAGIC)] != MAGIC:
            raise JournalCorruptionError(f"{path}: not a journal segment (magic {bytes(data[:8])!r}); move it away by hand", path=path, offset=0)
        pos, size, changed, cut = len(MAGIC), len(data), False, None
        while pos < size:
            if _check_at(data, pos, size) is None:
                length = _HEADER.unpack_from(data, pos)[0]
                kept += data[pos + 16] != _PAD
                pos += _HEADER.size + length
                continue
            nxt = _next_intact(data, pos + 1, size)
            end = size if nxt is None else nxt
            backup = _save_damaged(directory, n, pos, bytes(data[pos:end]))
            if nxt is None:
                cut = pos
                truncated.append((n, cut, str(backup)))
                break
            if end - pos < _HEADER.size:
                raise JournalCorruptionError(
                    f"{path} at byte {pos}: {end - pos} damaged bytes before an intact record are too few to pad over; "
                    f"saved to {backup}", path=path, offset=pos, next_good=nxt,
                )
            body = bytes(data[pos + _HEADER.size : end])
            tail = _TAIL.pack(0, _PAD, 0)
            data[pos:end] = _LEN_CRC.pack(len(body), zlib.crc32(body, zlib.crc32(tail))) + tail + body
            ranges.append((n, pos, end - pos, str(backup)))
            changed = True
            pos = end
        if changed or cut is not None:
            tmp = path.with_name(path.name + ".salvage")
            with open(tmp, "wb") as f:
                f.write(data if cut is None else data[:cut])
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            _fsync_dir(directory)
    return SalvageReport(str(directory), tuple(ranges), kept, tuple(truncated))


def _save_damaged(directory: Path, segment: int, offset: int, data: bytes) -> Path:
    folder = directory / DAMAGED
    folder.mkdir(exist_ok=True)
    path = folder / f"seg-{segment:010d}-at-{offset}.bin"
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return path


class Journal:
    """An append-only, crash-safe journal of received frames.

    Parameters
    ----------
    directory:
        Created if absent. One collector process per directory.
    config:
        ``JournalConfig``.
    on_append:
        Called with each new ``Record`` while the journal lock is held, so consumers see
        records in exactly the journal's order even when several sessions append.

    Opening recovers: a torn tail left by a crash is truncated (damage with intact records
    after it raises ``JournalCorruptionError``), and appends go to a new segment.
    ``pending()`` then yields what the store has not committed yet; ``last_recv_ns`` is the
    receive time of the newest record kept (None if the journal holds none).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        config: JournalConfig = JournalConfig(),
        on_append: Callable[[Record], None] | None = None,
    ):
        self.directory = Path(directory)
        self.config = config
        self.on_append = on_append
        self._segment_bytes = config.segment_bytes
        self._sync_every = config.fsync is FsyncPolicy.EVERY
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._closed = False
        self._rollback_to: int | None = None  # a failed write's rollback that has not succeeded yet
        self.committed = self._read_checkpoint()
        self.last_recv_ns: int | None = None
        segs = _segments(self.directory)
        if segs:
            self._truncate_torn_tail(_segment_path(self.directory, segs[-1]))
            for n in reversed(segs[:-1]):
                if self.last_recv_ns is not None or n < self.committed.segment:
                    break
                for _, rec in _scan(_segment_path(self.directory, n), 0, tolerate_torn_tail=False):
                    self.last_recv_ns = rec.recv_ns
        # A fresh segment per open: old segments are never written again once closed.
        self._segment = max(segs[-1] + 1 if segs else 0, self.committed.segment + 1)
        self._fd = -1
        self._offset = 0
        self._open_segment(self._segment)
        self._dirty = False
        self.records_written = 0
        self._syncer: threading.Thread | None = None
        self._wake = threading.Event()
        if config.fsync is FsyncPolicy.INTERVAL:
            self._syncer = threading.Thread(target=self._sync_loop, name="journal-fsync", daemon=True)
            self._syncer.start()

    # -- writing ----------------------------------------------------------------------
    def append(self, kind: RecordKind, body: bytes, *, recv_ns: int, tag: str = "") -> Record:
        """Write one record (one ``os.write``) and return it; thread-safe.

        Raises ``JournalWriteError`` (nothing of the record kept) when the disk refuses it.
        """
        blob = _encode(kind, body, recv_ns, tag)
        with self._lock:
            self._writable()
            if self._offset + len(blob) > self._segment_bytes and self._offset > len(MAGIC):
                self._rotate()
            self._write_blob(blob, 1)
            rec = Record(kind, recv_ns, tag, body, Position(self._segment, self._offset))
            if self.on_append is not None:
                self.on_append(rec)
        return rec

    def append_many(self, records: Iterable[tuple[RecordKind, bytes, int, str]]) -> Position:
        """Write ``(kind, body, recv_ns, tag)`` records in order; return the end of the last.

        One ``os.write`` per segment the batch touches (a batch is split where a segment is
        full, exactly where single ``append`` calls would rotate), instead of one per record;
        none of the records counts as received before the call returns. ``on_append`` sees
        each record, in order, as with ``append``. Nothing is written if any record is too
        large. Thread-safe; an empty batch returns ``position``. A write the disk refuses
        raises ``JournalWriteError``; the records of the segments written before it are
        kept (and were seen by ``on_append``), none after.
        """
        if not isinstance(records, (list, tuple)):
            records = list(records)
        # Encoded as in _encode, inlined: this runs once per frame of a replay.
        parts: list[bytes] = []  # 4 per record: (length, crc), (recv_ns, kind, tag_len), tag, body
        sizes: list[int] = []
        tags: dict[str, bytes] = {}
        pack_len_crc, pack_tail, crc32, header = _LEN_CRC.pack, _TAIL.pack, zlib.crc32, _HEADER.size
        for kind, body, recv_ns, tag in records:
            tag_b = tags.get(tag)
            if tag_b is None:
                tag_b = tags[tag] = tag.encode()
            length = len(tag_b) + len(body)
            if length >= 1 << 32 or len(tag_b) >= 1 << 16:
                raise JournalError(f"record too large: {length} bytes (tag {len(tag_b)} bytes)")
            tail = pack_tail(recv_ns, kind, len(tag_b))
            parts += (pack_len_crc(length, crc32(body, crc32(tag_b, crc32(tail)))), tail, tag_b, body)
            sizes.append(header + length)
        on_append = self.on_append
        with self._lock:
            self._writable()
            start = 0
            limit = self._segment_bytes
            while start < len(sizes):
                # the records from ``start`` that fit this segment (at least one)
                before = offset = self._offset
                stop = start
                while stop < len(sizes) and (offset <= len(MAGIC) or offset + sizes[stop] <= limit):
                    offset += sizes[stop]
                    stop += 1
                if stop == start:
                    self._rotate()
                    continue
                self._write_blob(b"".join(parts[4 * start : 4 * stop]), stop - start)
                if on_append is not None:
                    segment, end = self._segment, before
                    for i in range(start, stop):
                        end += sizes[i]
                        kind, body, recv_ns, tag = records[i]
                        on_append(Record(kind, recv_ns, tag, body, Position(segment, end)))
                start = stop
            return Position(self._segment, self._offset)

    def follow(self, on_append: Callable[[Record], None] | None) -> Position:
        """Atomically set ``on_append`` and return the position it starts after: every record
        up to it is on disk (``read_records(until=...)``), every later one goes to it."""
        with self._lock:
            self.on_append = on_append
            return Position(self._segment, self._offset)

    def sync(self) -> None:
        """fdatasync the current segment now (outside the journal lock: appends go on)."""
        with self._lock:
            if self._closed or not self._dirty:
                return
            fd = os.dup(self._fd)
            self._dirty = False
        try:
            _fdatasync(fd)
        except OSError:
            with self._lock:
                self._dirty = True
            raise
        finally:
            os.close(fd)

    @property
    def position(self) -> Position:
        """The end of the last record written."""
        with self._lock:
            return Position(self._segment, self._offset)

    def bytes_after(self, position: Position) -> int:
        """Bytes of the records after ``position``: what a restart would replay."""
        total = 0
        for n in _segments(self.directory):
            if n < position.segment:
                continue
            try:
                size = _segment_path(self.directory, n).stat().st_size
            except FileNotFoundError:  # deleted by a commit meanwhile
                continue
            total += max(0, size - (position.offset if n == position.segment else len(MAGIC)))
        return total

    # -- reading and committing -------------------------------------------------------
    def pending(self, *, until: Position | None = None) -> Iterator[Record]:
        """Records after the checkpoint (up to ``until``): what a restart must replay into the store."""
        return read_records(self.directory, after=self.committed, until=until)

    def commit(self, position: Position, *, meta: dict | None = None) -> None:
        """Atomically record that everything up to ``position`` is in the store.

        ``meta`` (small, JSON-able) is kept in the checkpoint and read back as
        ``checkpoint_meta``. Segments that end before ``position`` are deleted (unless
        ``keep_committed``).
        """
        if position < self.committed:
            raise JournalError(f"checkpoint may not go back: {position} < committed {self.committed}")
        doc = {
            "format": 1,
            "segment": position.segment,
            "offset": position.offset,
            "updated_ns": time.time_ns(),
            "meta": meta or {},
        }
        tmp = self.directory / (CHECKPOINT + ".tmp")
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(doc))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.directory / CHECKPOINT)
        _fsync_dir(self.directory)
        self.committed = position
        self.checkpoint_meta = dict(meta or {})
        if not self.config.keep_committed:
            for n in _segments(self.directory):
                if n < position.segment:
                    _segment_path(self.directory, n).unlink(missing_ok=True)

    def close(self) -> None:
        """fsync and close (idempotent). Does not commit anything."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._rollback_to is not None:
                    os.ftruncate(self._fd, self._rollback_to)
                os.fsync(self._fd)
            except OSError as exc:  # the records are in the page cache; the next open re-checks them
                log.warning("journal %s: final fsync failed: %s", self.directory, exc)
            finally:
                os.close(self._fd)
        self._wake.set()
        if self._syncer is not None:
            self._syncer.join(5)

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------
    def _read_checkpoint(self) -> Position:
        path = self.directory / CHECKPOINT
        self.checkpoint_meta: dict = {}
        if not path.exists():
            return Position(-1, 0)
        try:
            doc = orjson.loads(path.read_bytes())
            if doc.get("format") != 1:
                raise JournalError(f"{path}: unknown checkpoint format {doc.get('format')!r}; expected 1")
            self.checkpoint_meta = dict(doc.get("meta") or {})
            return Position(int(doc["segment"]), int(doc["offset"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise JournalCorruptionError(f"{path}: unreadable checkpoint ({exc}); it is replaced atomically, so this is not a torn write") from None

    def _truncate_torn_tail(self, path: Path) -> None:
        good = None
        for end, rec in _scan(path, 0, tolerate_torn_tail=True):
            if rec is None:
                good = end
            else:
                self.last_recv_ns = rec.recv_ns
        if good is not None:
            if good < len(MAGIC):
                path.unlink()  # the crash hit while the segment header was written
            else:
                with open(path, "r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())

    def _writable(self) -> None:
        """Refuse appends on a closed journal or one whose failed write is not rolled back."""
        if self._closed:
            raise JournalError(f"journal {self.directory} is closed")
        if self._rollback_to is not None:
            try:
                os.ftruncate(self._fd, self._rollback_to)
            except OSError as exc:
                raise JournalWriteError(
                    f"journal {self.directory}: segment {self._segment} still holds a partial record after byte "
                    f"{self._rollback_to} that cannot be cut off ({exc}); refusing appends until it can"
                ) from exc
            self._rollback_to = None

    def _write_blob(self, blob: bytes, records: int) -> None:
        """Write whole records at the end of the segment, or roll back to before them and raise."""
        start = self._offset
        try:
            _write_all(self._fd, blob)
            if self._sync_every:
                _fdatasync(self._fd)
        except OSError as exc:
            what = f"journal {self.directory}: writing {len(blob)} bytes at byte {start} of segment {self._segment} failed ({exc})"
            try:
                os.ftruncate(self._fd, start)
            except OSError as exc2:
                self._rollback_to = start
                raise JournalWriteError(f"{what}; rolling back failed too ({exc2}): appends are refused until it succeeds") from exc
            raise JournalWriteError(f"{what}; rolled back, the record was not kept") from exc
        self._offset = start + len(blob)
        self.records_written += records
        if not self._sync_every:
            self._dirty = True

    def _open_segment(self, n: int) -> None:
        path = _segment_path(self.directory, n)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            _write_all(fd, MAGIC)
            os.fsync(fd)
            _fsync_dir(self.directory)
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise JournalWriteError(f"journal {self.directory}: cannot start segment {n} ({exc})") from exc
        self._fd = fd
        self._segment = n
        self._offset = len(MAGIC)

    def _rotate(self) -> None:
        old = self._fd
        try:
            os.fsync(old)
        except OSError as exc:
            raise JournalWriteError(f"journal {self.directory}: fsync of segment {self._segment} failed ({exc})") from exc
        self._open_segment(self._segment + 1)  # keeps the old segment open if this fails
        os.close(old)

    def _sync_loop(self) -> None:
        while not self._wake.wait(self.config.fsync_interval_s):
            try:
                self.sync()
            except OSError as exc:  # an I/O error now; the next round tries again
                log.warning("journal %s: fdatasync failed: %s", self.directory, exc)
