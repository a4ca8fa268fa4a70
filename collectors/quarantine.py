"""The quarantine: what a collector could not store, each with its reason, in bounded files.

Two kinds of entries, one JSON object per line::

    {"v":1,"kind":"frame","at_ns":...,"reason":"InvalidValue: T=1e17 ms ...","tag":"usdm-0",
     "recv_ns":...,"position":[7,123456],"size":245,"body":"{\\"stream\\":...}"}
    {"v":1,"kind":"rows","at_ns":...,"reason":"FrameError: ...","table":"trades",
     "symbol":"binance:BTC/USDT:USDT","position":[7,130000],"rows":[{"ts":...,"trade_id":...},...]}

- ``frame``: a journaled frame the parser refused (malformed, a poison value, an unknown
  stream or symbol). ``body`` is the frame as text (``body_b64`` if it is not UTF-8), cut at
  ``max_body_bytes`` (``truncated`` then says so; ``size`` is the whole frame's).
- ``rows``: rows the store refused as invalid (``SchemaError``/``FrameError``, a key
  repeated with other values); times are int ns since the epoch, UTC.

``position`` is the journal position of the frame (or of the flush that carried the rows).
A restart replays the journal from its checkpoint, so it meets the same bad frames again:
entries at or before the newest position already written are skipped, so each is kept
once (rows refused again after a crash between two flushes may be written twice).

Files are ``<dir>/quarantine-<n>.jsonl``; a new one starts when the current one passes
``max_file_bytes``, and only the newest ``max_files`` are kept: the quarantine never holds
more than about ``max_files * max_file_bytes``. The collector writes its entries and
fsyncs them before its checkpoint moves past them (``Collector._flush``).
"""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

__all__ = ["QuarantineConfig", "Quarantine", "read_quarantine"]

_PREFIX, _SUFFIX = "quarantine-", ".jsonl"


@dataclass(frozen=True)
class QuarantineConfig:
    max_file_bytes: int = 16 << 20
    max_files: int = 8
    max_body_bytes: int = 1 << 20

    def __post_init__(self):
        for name in ("max_file_bytes", "max_files", "max_body_bytes"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"quarantine {name} must be a positive integer, got {v!r}")


def _files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{_PREFIX}*{_SUFFIX}"), key=lambda p: int(p.name[len(_PREFIX) : -len(_SUFFIX)]))


def read_quarantine(directory) -> list[dict]:
    """Every entry kept in a quarantine folder, oldest first (a torn last line is skipped)."""
    return [e for p in _files(Path(directory)) for e in _read_file(p)]


def _read_file(path: Path) -> list[dict]:
    out = []
    for line in path.read_bytes().splitlines():
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue  # a crash while the line was written: it was never fsynced, so never counted
    return out


class Quarantine:
    """Append-only, rotated JSON-lines files of refused frames and rows (see the module doc).

    Not thread-safe: the collector's processor thread is its only writer.
    """

    def __init__(self, directory, config: QuarantineConfig = QuarantineConfig()):
        self.directory = Path(directory)
        self.config = config
        self.directory.mkdir(parents=True, exist_ok=True)
        self.frames_written = 0  # by this object
        self.rows_written = 0
        self.skipped = 0  # entries already kept before (a replayed journal range)
        self._high = (-1, -1)  # newest journal position in the files
        files = _files(self.directory)
        self._n = int(files[-1].name[len(_PREFIX) : -len(_SUFFIX)]) if files else 0
        for p in reversed(files):
            entries = _read_file(p)
            if entries:
                self._high = max(tuple(e.get("position") or (-1, -1)) for e in entries)
                break
        self._fd: int | None = None
        self._dirty = False

    # -- writing ----------------------------------------------------------------------
    def frame(self, *, reason: str, tag: str, recv_ns: int, body: bytes, position) -> bool:
        """Keep a refused frame; False if this journal position was kept already."""
        if not self._fresh(position):
            return False
        entry = {"v": 1, "kind": "frame", "at_ns": time.time_ns(), "reason": reason, "tag": tag, "recv_ns": recv_ns,
                 "position": list(position), "size": len(body)}
        cut = bytes(body[: self.config.max_body_bytes])
        try:
            entry["body"] = cut.decode("utf-8")
        except UnicodeDecodeError:
            entry["body_b64"] = base64.b64encode(cut).decode()
        if len(cut) < len(body):
            entry["truncated"] = True
        self._write(entry)
        self.frames_written += 1
        return True

    def rows(self, *, reason: str, table: str, symbol: str, df: pd.DataFrame, position) -> bool:
        """Keep rows the store refused; False if this journal position was kept already."""
        if not self._fresh(position, inclusive=False):
            return False
        frame = df.reset_index()
        for col in frame.columns:
            if isinstance(frame[col].dtype, pd.DatetimeTZDtype) or np.issubdtype(frame[col].dtype, np.datetime64):
                frame[col] = frame[col].astype("int64")
        rows = frame.to_dict(orient="records")
        self._write({"v": 1, "kind": "rows", "at_ns": time.time_ns(), "reason": reason, "table": table,
                     "symbol": symbol, "position": list(position), "rows": rows})
        self.rows_written += len(rows)
        return True

    def sync(self) -> None:
        """fsync what was written (before the journal's checkpoint passes it)."""
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
            self._dirty = False

    def close(self) -> None:
        if self._fd is not None:
            try:
                self.sync()
            finally:
                os.close(self._fd)
                self._fd = None

    # -- internals --------------------------------------------------------------------
    def _fresh(self, position, *, inclusive: bool = True) -> bool:
        pos = tuple(position) if position is not None else (-1, -1)
        if pos < self._high or (inclusive and pos == self._high and pos != (-1, -1)):
            self.skipped += 1
            return False
        return True

    def _write(self, entry: dict) -> None:
        line = orjson.dumps(entry, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        if self._fd is None or os.fstat(self._fd).st_size + len(line) > self.config.max_file_bytes:
            self._rotate(first=self._fd is None)
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            n = os.write(self._fd, line)
            while n < len(line):
                n += os.write(self._fd, line[n:])
        except OSError:
            os.ftruncate(self._fd, start)  # no half line stays behind
            raise
        self._dirty = True
        self._high = max(self._high, tuple(entry["position"]))

    def _rotate(self, *, first: bool) -> None:
        files = _files(self.directory)
        if first and files and files[-1].stat().st_size < self.config.max_file_bytes:
            path = files[-1]  # continue the newest file
        else:
            if self._fd is not None:
                self.sync()
                os.close(self._fd)
                self._fd = None
            self._n += 1
            path = self.directory / f"{_PREFIX}{self._n:06d}{_SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for old in _files(self.directory)[: -self.config.max_files]:
            old.unlink(missing_ok=True)

