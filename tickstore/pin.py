"""Pins: a small manifest of exactly which files a read used, so it can be reproduced.

A pin names the read (table, symbols, event-time range, resolved knowledge time,
columns) and every version file behind it with its sha256. ``Tickstore.read_pin``
re-reads those files after checking the checksums, and returns a frame equal to the
original result whatever was written since. Pins serialise to JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import pandas as pd

from .errors import PinError

__all__ = ["PinnedFile", "Pin", "Selection"]

PIN_FORMAT = 1


@dataclass(frozen=True)
class PinnedFile:
    symbol: str
    partition: int  # first day of the partition, days since epoch
    path: str  # relative to the store root
    version: int
    checksum: str
    rows: int


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

    def to_json(self) -> str:
        d = asdict(self)
        d["format"] = PIN_FORMAT
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Pin":
        try:
            d = json.loads(text)
            if d.pop("format", None) != PIN_FORMAT:
                raise PinError(f"pin format {d.get('format')!r} is not {PIN_FORMAT}")
            d["symbols"] = tuple(d["symbols"])
            d["columns"] = tuple(d["columns"]) if d["columns"] is not None else None
            d["files"] = tuple(PinnedFile(**f) for f in d["files"])
            return cls(**d)
        except (ValueError, KeyError, TypeError) as exc:
            raise PinError(f"not a tickstore pin: {exc}") from None

    @property
    def as_of_time(self) -> pd.Timestamp:
        return pd.Timestamp(self.as_of, unit="ns", tz="UTC")


@dataclass(frozen=True)
class Selection:
    """What ``Table.select_pinned`` returns: the frame and the pin that reproduces it."""

    data: pd.DataFrame
    pin: Pin
