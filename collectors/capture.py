"""Readers for recorded websocket captures: every line -> ``Frame(recv_ns, raw, kind, url, conn)``.

Formats (detected from the first non-empty line; gzip, zstd or plain detected from the
magic bytes, never from the file name)::

    hftbacktest     <recv_ts> <raw frame JSON>
                    1723161255030314667 {"stream":"btcusdt@depth@0ms","data":{...}}
                    1723161255319702566 {"lastUpdateId":5123107852948,"E":...,"bids":[...]}   <- REST
                    recv_ts is ns in the 2024/2025 files and us in the 2023 *.dat.gz files:
                    the unit is read from the digit count of each timestamp (19 ns, 16 us,
                    13 ms, 10 s), which is unambiguous for any date after 2001. A line
                    holding a REST order-book body (``lastUpdateId``) is the snapshot the
                    collector fetched; it names no URL.
    cryptofeed v1   <ts>: <json>                       frame received (ts = epoch s, float)
                    <url> <-> <ts>                     connection opened
                    <url> <- <ts>: <json>              frame sent (skipped)
                    <url> -> <ts>: <json>              HTTP response body (REST)
                    configuration: {...}               recorder config (skipped)
                    ``X.ws.1.0`` holds the websocket side, ``X.http.0.0`` the REST side.
    cryptofeed v3   {"t":"recv"|"connect"|"http"|"send"|"header","conn":...,"ts":<s>,"data":"<raw>"}
                    one file may hold several connections (BYBIT.jsonl.zst: linear and spot);
                    ``Frame.conn`` names each, a ``connect`` record gives its URL.
    journal         the collector's own write-ahead journal (``collectors.journal``): a
                    directory of ``seg-*.jnl`` segments, or one segment file; ``conn`` is
                    the record's tag (``usdm-0``, ``bybit-linear-0``, ``hyperliquid-0``,
                    ``usdm:BTCUSDT`` for a REST snapshot), GAP records become ``FrameKind.GAP``.

Float-second timestamps are converted digit by digit (no float rounding), so
``1633998512.0633569`` becomes exactly ``1633998512063356900`` ns.

Damage is an error naming the file and the line (``CaptureError``): a compressed stream
that is cut short or corrupt, and - unless ``skip_bad_lines`` - a line that fits no
pattern (then counted in ``CaptureReader.bad_lines`` and skipped). Frames already yielded
stay valid, so a replay keeps what it read before the damage. The frames themselves are
not parsed here (that is the venue parser's job).
"""

from __future__ import annotations

import enum
import io
import os
import re
import zlib
from itertools import chain
from pathlib import Path
from typing import Iterator, NamedTuple

import orjson
import zstandard

from tickstore.errors import TickstoreError

__all__ = ["FrameKind", "Frame", "CaptureFormat", "CaptureError", "CaptureReader", "read_capture", "open_capture"]

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_READ_BUFFER = 1 << 20


class CaptureError(TickstoreError, ValueError):
    """A capture file that cannot be read at all (missing, unknown format)."""


class FrameKind(enum.Enum):
    WS = "ws"  # a websocket frame received
    REST = "rest"  # an HTTP response body (e.g. a depth snapshot); ``url`` where recorded
    CONNECT = "connect"  # a connection opened; ``raw`` is empty, ``url`` the websocket URL
    GAP = "gap"  # a gap-ledger record of a collector journal; ``raw`` is its JSON body
    EVENTS = "events"  # already parsed (``collectors.replay.replay_frames`` from importers of
    #                    formats without venue frames, e.g. Tardis CSVs): ``raw`` is a list of events


class Frame(NamedTuple):
    recv_ns: int
    raw: bytes
    kind: FrameKind = FrameKind.WS
    url: str | None = None
    conn: str | None = None  # connection id where the format records one (cryptofeed v3)


class CaptureFormat(enum.Enum):
    HFTBACKTEST = "hftbacktest"
    CRYPTOFEED = "cryptofeed"
    CRYPTOFEED_V3 = "cryptofeed_v3"
    JOURNAL = "journal"

    @property
    def one_connection(self) -> bool:
        """Every frame of a file of this format comes from one connection (no ``conn``)."""
        return self in (CaptureFormat.HFTBACKTEST, CaptureFormat.CRYPTOFEED)


def open_capture(path: str | os.PathLike) -> io.BufferedReader:
    """A binary line-iterable reader of ``path``, decompressing gzip/zstd by magic bytes."""
    path = Path(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise CaptureError(f"cannot open capture {str(path)!r}: {exc.strerror}") from None
    magic = fh.read(4)
    fh.seek(0)
    if magic.startswith(_GZIP_MAGIC):
        import gzip

        return io.BufferedReader(gzip.GzipFile(fileobj=fh), _READ_BUFFER)
    if magic == _ZSTD_MAGIC:
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(fh, closefd=True), _READ_BUFFER)
    return io.BufferedReader(fh, _READ_BUFFER)


_HFT_LINE = re.compile(rb"^\d{10,19} [\[{]")
_CF_LINE = re.compile(rb"^(\d+(\.\d*)?: |configuration: |\S+ (<->|<-|->) \d)")
# The unit of an integer epoch timestamp from its digit count (valid 2001..2286).
_SCALE = {19: 1, 16: 1_000, 13: 1_000_000, 10: 1_000_000_000}


def detect_format(line: bytes) -> CaptureFormat | None:
    line = line.lstrip()
    if line.startswith(b'{"t":'):
        return CaptureFormat.CRYPTOFEED_V3
    if _HFT_LINE.match(line):
        return CaptureFormat.HFTBACKTEST
    if _CF_LINE.match(line):
        return CaptureFormat.CRYPTOFEED
    return None


def seconds_to_ns(text: bytes | str) -> int:
    """``b"1633998512.0633569"`` -> ``1633998512063356900`` (exact, no float)."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    whole, _, frac = text.strip().partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(f"not an epoch-seconds timestamp: {text!r}")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


class CaptureReader:
    """Iterate one capture file (or collector journal) as ``Frame``s; counters fill while iterating.

    ``format`` is known after the first line; ``lines`` counts non-empty lines read,
    ``line_no`` every line (blank ones too), ``frames`` the frames yielded, ``skipped``
    lines that are no frame (sent messages, recorder config, headers), ``bad_lines`` lines
    that fit no pattern (only with ``skip_bad_lines``; otherwise the first one raises).

    Raises ``CaptureError`` (file and line in the message) for a missing or unknown file,
    a damaged compressed stream or journal, and a bad line unless ``skip_bad_lines``.
    """

    def __init__(self, path: str | os.PathLike, *, skip_bad_lines: bool = False):
        self.path = Path(path)
        if not (self.path.is_file() or _is_journal_dir(self.path)):
            raise CaptureError(f"capture {str(self.path)!r} does not exist or is not a file (nor a collector journal)")
        self.skip_bad_lines = skip_bad_lines
        self.format: CaptureFormat | None = None
        self.lines = 0
        self.line_no = 0
        self.frames = 0
        self.skipped = 0
        self.bad_lines = 0

    def __iter__(self) -> Iterator[Frame]:
        if _is_journal_dir(self.path) or _is_journal_segment(self.path):
            self.format = CaptureFormat.JOURNAL
            yield from self._journal()
            return
        try:
            with open_capture(self.path) as fh:
                first = b""
                for first in fh:
                    self.line_no += 1
                    if first.strip():
                        break
                if not first.strip():
                    return
                self.line_no -= 1  # the sub-reader counts the first line again
                self.format = detect_format(first)
                if self.format is None:
                    raise CaptureError(
                        f"{str(self.path)!r} is no known capture format (hftbacktest '<ts> <json>', "
                        f"cryptofeed '<ts>: <json>', cryptofeed v3 JSON lines or a collector journal); "
                        f"first line: {first[:80]!r}"
                    )
                lines = chain((first,), fh)
                if self.format is CaptureFormat.HFTBACKTEST:
                    yield from self._hftbacktest(lines)
                elif self.format is CaptureFormat.CRYPTOFEED:
                    yield from self._cryptofeed(lines)
                else:
                    yield from self._cryptofeed_v3(lines)
        except (EOFError, OSError, zlib.error, zstandard.ZstdError) as exc:
            # gzip: EOFError (cut short), BadGzipFile/zlib.error (corrupt); zstd: ZstdError
            raise CaptureError(
                f"{self.path}: line {self.line_no + 1}: damaged input ({type(exc).__name__}: {exc}); "
                f"the {self.line_no} lines before it were read"
            ) from None

    def _bad(self, line: bytes) -> None:
        """A line that fits no pattern: counted, or the error (see ``skip_bad_lines``)."""
        self.bad_lines += 1
        if not self.skip_bad_lines:
            fmt = self.format.value if self.format else "capture"
            raise CaptureError(
                f"{self.path}: line {self.line_no}: not a {fmt} line: {line[:80]!r} "
                f"(pass skip_bad_lines / --skip-bad-lines to count such lines and go on)"
            )

    def _hftbacktest(self, lines) -> Iterator[Frame]:
        WS, REST, scale = FrameKind.WS, FrameKind.REST, _SCALE
        new = tuple.__new__  # Frame(...) goes through a Python-level __new__: 2x slower
        n = other = 0  # counted in locals: attribute updates per line cost ~10% of the read
        try:
            for line in lines:
                ts, _, raw = line.partition(b" ")
                try:
                    recv = int(ts) * scale.get(len(ts))  # None (odd digit count) -> TypeError
                except (TypeError, ValueError):
                    other += 1
                    if line.strip():  # rare: bring the counters up to date for the message
                        self.lines += n + 1
                        self.frames += n
                        self.line_no += n + other
                        n = other = 0
                        self._bad(line)
                    continue
                n += 1
                # The collector's one REST body per session: {"lastUpdateId":...} (the 2023
                # files write it with a space: {"lastUpdateId": ...}).
                kind = REST if raw.startswith(b'{"lastUpdateId"') else WS
                yield new(Frame, (recv, raw.rstrip(b"\r\n"), kind, None, None))
        finally:
            self.lines += n
            self.line_no += n + other
            self.frames += n

    def _cryptofeed(self, lines) -> Iterator[Frame]:
        for line in lines:
            self.line_no += 1
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            self.lines += 1
            if line[:1].isdigit():
                ts, sep, raw = line.partition(b": ")
                try:
                    recv = seconds_to_ns(ts)
                except ValueError:
                    recv = None
                if not sep or recv is None:
                    self._bad(line)
                    continue
                self.frames += 1
                yield Frame(recv, raw, FrameKind.WS)
                continue
            if line.startswith(b"configuration: "):
                self.skipped += 1
                continue
            url, sep, rest = line.partition(b" ")
            arrow, _, rest = rest.partition(b" ")
            frame = None
            try:
                if arrow == b"<->":
                    frame = Frame(seconds_to_ns(rest), b"", FrameKind.CONNECT, url.decode())
                elif arrow == b"->":
                    ts, sep, raw = rest.partition(b": ")
                    frame = Frame(seconds_to_ns(ts), raw, FrameKind.REST, url.decode())
                elif arrow == b"<-":
                    self.skipped += 1
                    continue
            except (ValueError, UnicodeDecodeError):
                pass
            if frame is None:
                self._bad(line)
                continue
            self.frames += 1
            yield frame

    def _cryptofeed_v3(self, lines) -> Iterator[Frame]:
        for line in lines:
            self.line_no += 1
            if not line.strip():
                continue
            self.lines += 1
            try:
                rec = orjson.loads(line)
                t = rec["t"]
                if t in ("header", "send"):
                    self.skipped += 1
                    continue
                recv = seconds_to_ns(repr(rec["ts"]) if isinstance(rec["ts"], float) else str(rec["ts"]))
                conn = rec.get("conn")
                if t == "recv":
                    frame = Frame(recv, rec["data"].encode(), FrameKind.WS, None, conn)
                elif t == "http":
                    frame = Frame(recv, rec["data"].encode(), FrameKind.REST, rec.get("url"), conn)
                elif t == "connect":
                    frame = Frame(recv, b"", FrameKind.CONNECT, rec.get("addr"), conn)
                else:
                    self.skipped += 1
                    continue
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                self._bad(line)
                continue
            self.frames += 1
            yield frame

    def _journal(self) -> Iterator[Frame]:
        from .journal import MAGIC, JournalError, Position, RecordKind, read_records

        kinds = {RecordKind.FRAME: FrameKind.WS, RecordKind.SNAPSHOT: FrameKind.REST, RecordKind.GAP: FrameKind.GAP}
        if self.path.is_dir():
            records, segment = read_records(self.path), None
        else:
            if self.path.read_bytes()[: len(MAGIC)] != MAGIC:
                raise CaptureError(f"{self.path}: not a journal segment")
            segment = int(self.path.stem[4:])
            records = read_records(self.path.parent, after=Position(segment, 0))
        try:
            for rec in records:
                if segment is not None and rec.end.segment != segment:
                    return
                self.line_no += 1
                self.lines += 1
                self.frames += 1
                yield Frame(rec.recv_ns, rec.body, kinds[rec.kind], None, rec.tag)
        except JournalError as exc:
            raise CaptureError(f"{self.path}: record {self.line_no + 1}: damaged journal: {exc}") from None


def _is_journal_dir(path: Path) -> bool:
    return path.is_dir() and (any(path.glob("seg-*.jnl")) or (path / "checkpoint.json").exists())


def _is_journal_segment(path: Path) -> bool:
    return path.is_file() and path.name.startswith("seg-") and path.suffix == ".jnl" and path.stem[4:].isdigit()


def read_capture(path: str | os.PathLike) -> Iterator[Frame]:
    """The frames of one capture file (see ``CaptureReader`` for the counters)."""
    return iter(CaptureReader(path))
