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

Float-second timestamps are converted digit by digit (no float rounding), so
``1633998512.0633569`` becomes exactly ``1633998512063356900`` ns.

Lines that fit no pattern are counted in ``CaptureReader.bad_lines`` and skipped; the
frames themselves are not parsed here (that is the venue parser's job).
"""

from __future__ import annotations

import enum
import io
import os
import re
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
    """Iterate one capture file as ``Frame``s; counters are filled while iterating.

    ``format`` is known after the first line; ``lines`` counts non-empty lines read,
    ``frames`` the frames yielded, ``skipped`` lines that are no frame (sent messages,
    recorder config, headers), ``bad_lines`` lines that fit no pattern.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise CaptureError(f"capture {str(self.path)!r} does not exist or is not a file")
        self.format: CaptureFormat | None = None
        self.lines = 0
        self.frames = 0
        self.skipped = 0
        self.bad_lines = 0

    def __iter__(self) -> Iterator[Frame]:
        with open_capture(self.path) as fh:
            first = b""
            for first in fh:
                if first.strip():
                    break
            if not first.strip():
                return
            self.format = detect_format(first)
            if self.format is None:
                raise CaptureError(
                    f"{str(self.path)!r} is no known capture format (hftbacktest '<ts> <json>', "
                    f"cryptofeed '<ts>: <json>' or cryptofeed v3 JSON lines); first line: {first[:80]!r}"
                )
            lines = chain((first,), fh)
            if self.format is CaptureFormat.HFTBACKTEST:
                yield from self._hftbacktest(lines)
            elif self.format is CaptureFormat.CRYPTOFEED:
                yield from self._cryptofeed(lines)
            else:
                yield from self._cryptofeed_v3(lines)

    def _hftbacktest(self, lines) -> Iterator[Frame]:
        WS, REST, scale = FrameKind.WS, FrameKind.REST, _SCALE
        new = tuple.__new__  # Frame(...) goes through a Python-level __new__: 2x slower
        n = bad = 0  # counted in locals: attribute updates per line cost ~10% of the read
        try:
            for line in lines:
                ts, _, raw = line.partition(b" ")
                try:
                    recv = int(ts) * scale.get(len(ts))  # None (odd digit count) -> TypeError
                except (TypeError, ValueError):
                    if line.strip():
                        bad += 1
                    continue
                n += 1
                # The collector's one REST body per session: {"lastUpdateId":...} (the 2023
                # files write it with a space: {"lastUpdateId": ...}).
                kind = REST if raw.startswith(b'{"lastUpdateId"') else WS
                yield new(Frame, (recv, raw.rstrip(b"\r\n"), kind, None, None))
        finally:
            self.lines += n + bad
            self.frames += n
            self.bad_lines += bad

    def _cryptofeed(self, lines) -> Iterator[Frame]:
        for line in lines:
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
                    self.bad_lines += 1
                    continue
                self.frames += 1
                yield Frame(recv, raw, FrameKind.WS)
                continue
            if line.startswith(b"configuration: "):
                self.skipped += 1
                continue
            url, sep, rest = line.partition(b" ")
            arrow, _, rest = rest.partition(b" ")
            try:
                if arrow == b"<->":
                    self.frames += 1
                    yield Frame(seconds_to_ns(rest), b"", FrameKind.CONNECT, url.decode())
                elif arrow == b"->":
                    ts, sep, raw = rest.partition(b": ")
                    recv = seconds_to_ns(ts)
                    self.frames += 1
                    yield Frame(recv, raw, FrameKind.REST, url.decode())
                elif arrow == b"<-":
                    self.skipped += 1
                else:
                    self.bad_lines += 1
            except (ValueError, UnicodeDecodeError):
                self.bad_lines += 1

    def _cryptofeed_v3(self, lines) -> Iterator[Frame]:
        for line in lines:
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
                self.bad_lines += 1
                continue
            self.frames += 1
            yield frame


def read_capture(path: str | os.PathLike) -> Iterator[Frame]:
    """The frames of one capture file (see ``CaptureReader`` for the counters)."""
    return iter(CaptureReader(path))
