"""Pins: a small manifest of what a read returned and where it came from, so it can be reproduced.

A pin names the read (table, symbols, event-time range, resolved knowledge time,
columns), every version file behind it with its sha256, and - the content address - the
sha256 of the rows it returned from each (symbol, partition) (``PinnedPart``).
``Tickstore.read_pin`` re-reads the pinned files while they exist; once compaction has
merged them into another file (or after a ``prune``), it reads the same partitions as of
the pin's time through the index; either way it returns the rows only if their digests
match the pin's, so a result reproduces bit for bit or fails loudly. Pins serialise to
JSON; pins of format 1 (files only) are still read, from their files.

Digest of a part: sha256 over, per column (``ts`` first, then the read's columns in
order), ``name:dtype:rows`` and the column's on-disk bytes (datetimes int64 ns UTC,
strings fixed-width UTF-8) of the part's rows in the returned order.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from .clock import ns_to_timestamp
from .errors import PinError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PinnedFile", "PinnedPart", "Pin", "Selection", "part_digest"]

PIN_FORMAT = 2  # 2: + parts (row digests); 1: files only (still read)


@dataclass(frozen=True)
class PinnedFile:
    symbol: str
    partition: int  # first day of the partition, days since epoch
    path: str  # relative to the store root
    version: int
    checksum: str
    rows: int
    kt_max: int | None = None  # latest row knowledge time in the file (None: unknown)


@dataclass(frozen=True)
class PinnedPart:
    """The rows one (symbol, partition) contributed to a pinned read, by content."""

    symbol: str
    partition: int  # first day of the partition, days since epoch
    rows: int
    sha256: str


def part_digest(arrays: dict[str, np.ndarray], a: int, b: int) -> str:
    """The digest of rows ``a:b`` of ``arrays`` (name -> on-disk column, ts first)."""
    import hashlib  # here: hashlib loads OpenSSL (~3 ms), which plain reads never need

    h = hashlib.sha256()
    for name, col in arrays.items():
        part = np.ascontiguousarray(col[a:b])
        h.update(f"{name}:{part.dtype.str}:{b - a};".encode())
        h.update(memoryview(part).cast("B"))
    return h.hexdigest()


@dataclass(frozen=True)
class Pin:
    table: str
    symbols: tuple[str, ...]
    start: int | None  # event time, ns UTC, inclusive
    end: int | None  # exclusive
    as_of: int  # knowledge time the read resolved to, ns UTC
    columns: tuple[str, ...] | None
    multi: bool  # whether the read was given a list of symbols (adds a symbol column)
    files: tuple[PinnedFile, ...]
    # None: no digests (a pin of format 1, or one built from the index); () a read of no rows
    parts: tuple[PinnedPart, ...] | None = None

    def to_json(self) -> str:
        d = asdict(self)
        d["format"] = PIN_FORMAT
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Pin":
        try:
            d = json.loads(text)
            fmt = d.pop("format", None)
            if fmt not in (1, PIN_FORMAT):
                raise PinError(f"pin format {fmt!r}: this version reads formats 1 and {PIN_FORMAT}")
            d["symbols"] = tuple(d["symbols"])
            d["columns"] = tuple(d["columns"]) if d["columns"] is not None else None
            d["files"] = tuple(PinnedFile(**f) for f in d["files"])
            parts = d.get("parts")
            d["parts"] = None if parts is None else tuple(PinnedPart(**p) for p in parts)
            return cls(**d)
        except (ValueError, KeyError, TypeError) as exc:
            raise PinError(f"not a tickstore pin: {exc}") from None

    @property
    def as_of_time(self) -> pd.Timestamp:
        return ns_to_timestamp(self.as_of)


@dataclass(frozen=True)
class Selection:
    """What ``Table.select_pinned`` returns: the frame and the pin that reproduces it."""

    data: pd.DataFrame
    pin: Pin
