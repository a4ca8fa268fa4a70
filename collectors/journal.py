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

A crash may leave a torn record at the tail of the last segment (partial header or
payload, CRC mismatch); opening the journal truncates it, since its frame never counted as
received. A bad record anywhere else is corruption and raises ``JournalCorruptionError``.
Segments wholly before the checkpoint are deleted unless ``keep_committed`` (then they
are a raw capture that replays through the parsers, see ``read_records``).
"""

from __future__ import annotations

import enum
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

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
    "read_records",
]

MAGIC = b"TSJRNL01"
_HEADER = struct.Struct("<IIqBH")
_LEN_CRC = struct.Struct("<II")  # the two header fields before the CRC-covered part
_TAIL = struct.Struct("<qBH")  # recv_ns, kind, tag_len: the CRC-covered part of the header
_CRC_FROM = 8  # crc covers the header from recv_ns on, then the payload
CHECKPOINT = "checkpoint.json"
_SEGMENT_GLOB = "seg-*.jnl"


class JournalError(TickstoreError):
    """The journal cannot be used as asked (bad config, closed, record too large)."""


class JournalCorruptionError(JournalError):
    """A record before the tail of the last segment fails its length or CRC check."""


class RecordKind(enum.IntEnum):
    FRAME = 1
    SNAPSHOT = 2
    GAP = 3


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
    n = os.write(fd, data)
    if n < len(data):
        view = memoryview(data)
        while n < len(data):
            n += os.write(fd, view[n:])


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


def _scan(path: Path, start: int, *, tolerate_torn_tail: bool) -> Iterator[tuple[int, Record | None]]:
    """Yield (offset after record, record) from ``start``; a torn tail yields (good end, None)."""
    n = int(path.stem[4:])
    with open(path, "rb") as f:
        data = f.read()
    if data[: len(MAGIC)] != MAGIC:
        if tolerate_torn_tail and len(data) < len(MAGIC):
            yield 0, None
            return
        raise JournalCorruptionError(f"{path}: not a journal segment (magic {data[:8]!r}, expected {MAGIC!r})")
    pos = max(start, len(MAGIC))
    size = len(data)
    while pos < size:
        bad = None
        if size - pos < _HEADER.size:
            bad = f"partial header ({size - pos} bytes)"
        else:
            length, crc, recv_ns, kind, tag_len = _HEADER.unpack_from(data, pos)
            end = pos + _HEADER.size + length
            if end > size:
                bad = f"record of {length} bytes runs past the end ({size - pos - _HEADER.size} left)"
            elif zlib.crc32(memoryview(data)[pos + _CRC_FROM : end]) != crc:
                bad = "CRC mismatch"
            elif tag_len > length or kind not in RecordKind._value2member_map_:
                bad = f"bad header (kind={kind}, tag_len={tag_len}, length={length})"
        if bad is not None:
            if tolerate_torn_tail:
                yield pos, None
                return
            raise JournalCorruptionError(f"{path} at byte {pos}: {bad}; the journal is damaged before its tail")
        body_at = pos + _HEADER.size
        tag = data[body_at : body_at + tag_len].decode()
        body = data[body_at + tag_len : end]
        pos = end
        yield pos, Record(RecordKind(kind), recv_ns, tag, body, Position(n, pos))


def read_records(directory: str | os.PathLike, *, after: Position | None = None) -> Iterator[Record]:
    """Every record in the journal at ``directory`` after ``after`` (default: all kept).

    A torn tail on the newest segment is skipped silently (it never counted as received).
    """
    directory = Path(directory)
    segs = _segments(directory)
    for i, n in enumerate(segs):
        if after is not None and n < after.segment:
            continue
        start = after.offset if after is not None and n == after.segment else 0
        for _, rec in _scan(_segment_path(directory, n), start, tolerate_torn_tail=(i == len(segs) - 1)):
            if rec is not None:
                yield rec


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

    Opening recovers: a torn tail left by a crash is truncated, and appends go to a new
    segment. ``pending()`` then yields what the store has not committed yet.
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
        self.committed = self._read_checkpoint()
        segs = _segments(self.directory)
        if segs:
            self._truncate_torn_tail(_segment_path(self.directory, segs[-1]))
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
        """Write one record (one ``os.write``) and return it; thread-safe."""
        blob = _encode(kind, body, recv_ns, tag)
        with self._lock:
            if self._closed:
                raise JournalError(f"journal {self.directory} is closed")
            if self._offset + len(blob) > self._segment_bytes and self._offset > len(MAGIC):
                self._rotate()
            _write_all(self._fd, blob)
            self._offset += len(blob)
            self.records_written += 1
            if self._sync_every:
                os.fdatasync(self._fd)
            else:
                self._dirty = True
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
        large. Thread-safe; an empty batch returns ``position``.
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
            if self._closed:
                raise JournalError(f"journal {self.directory} is closed")
            offset, start = self._offset, 0
            ends = [] if on_append is not None else None  # Position after each record
            if offset + sum(sizes) > self._segment_bytes:  # some record starts a new segment
                limit = self._segment_bytes
                for i, size in enumerate(sizes):
                    if offset + size > limit and offset > len(MAGIC):
                        if i > start:
                            self._write_records(parts, start, i, offset)
                        self._rotate()
                        offset, start = self._offset, i
                    offset += size
                    if ends is not None:
                        ends.append(Position(self._segment, offset))
            elif ends is not None:
                segment = self._segment
                for size in sizes:
                    offset += size
                    ends.append(Position(segment, offset))
            else:
                offset += sum(sizes)
            if len(sizes) > start:
                self._write_records(parts, start, len(sizes), offset)
            if ends:
                for (kind, body, recv_ns, tag), end in zip(records, ends):
                    on_append(Record(kind, recv_ns, tag, body, end))
            return Position(self._segment, self._offset)

    def sync(self) -> None:
        """fdatasync the current segment now."""
        with self._lock:
            if not self._closed and self._dirty:
                os.fdatasync(self._fd)
                self._dirty = False

    @property
    def position(self) -> Position:
        """The end of the last record written."""
        with self._lock:
            return Position(self._segment, self._offset)

    # -- reading and committing -------------------------------------------------------
    def pending(self) -> Iterator[Record]:
        """Records after the checkpoint: what a restart must replay into the store."""
        return read_records(self.directory, after=self.committed)

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
            os.fsync(self._fd)
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
        if good is not None:
            if good < len(MAGIC):
                path.unlink()  # the crash hit while the segment header was written
            else:
                with open(path, "r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())

    def _open_segment(self, n: int) -> None:
        path = _segment_path(self.directory, n)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        os.write(self._fd, MAGIC)
        os.fsync(self._fd)
        _fsync_dir(self.directory)
        self._segment = n
        self._offset = len(MAGIC)

    def _write_records(self, parts: list[bytes], start: int, stop: int, end_offset: int) -> None:
        """One write of records ``start:stop`` of ``append_many`` (4 parts each)."""
        _write_all(self._fd, b"".join(parts[4 * start : 4 * stop]))
        self._offset = end_offset
        self.records_written += stop - start
        if self._sync_every:
            os.fdatasync(self._fd)
        else:
            self._dirty = True

    def _rotate(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        self._open_segment(self._segment + 1)

    def _sync_loop(self) -> None:
        while not self._wake.wait(self.config.fsync_interval_s):
            try:
                self.sync()
            except OSError:  # the fd was closed under us by close(); nothing left to sync
                return
