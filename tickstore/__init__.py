"""A bitemporal HDF5 tickstore for crypto market research.

>>> from tickstore import Tickstore
>>> store = Tickstore("~/ticks")
>>> store["trades"].select("binance:BTC/USDT:USDT", "2024-08-08", "2024-08-09", as_of="paper-2024-q3")
"""

from .clock import Clock, FrozenClock, SystemClock
from .errors import (
    CorruptionError,
    DuplicateKeyError,
    FormatVersionError,
    FrameError,
    LockedError,
    NotFoundError,
    PinError,
    PrunedError,
    StorageError,
    SchemaError,
    SnapshotError,
    SymbolError,
    TickstoreError,
    UnknownTableError,
)
from .integrity import ReindexReport, VerifyReport
from .pin import Pin, PinnedFile, PinnedPart, Selection
from .schemas import Column, Partition, Schema, TradeKind, TsClock
from .store import Commit, Table, Tickstore

__version__ = "0.1.0"

__all__ = [
    "Tickstore",
    "Table",
    "Commit",
    "Selection",
    "Pin",
    "PinnedFile",
    "PinnedPart",
    "VerifyReport",
    "ReindexReport",
    "Schema",
    "Column",
    "Partition",
    "TradeKind",
    "TsClock",
    "Clock",
    "SystemClock",
    "FrozenClock",
    "TickstoreError",
    "UnknownTableError",
    "SymbolError",
    "SchemaError",
    "FrameError",
    "DuplicateKeyError",
    "NotFoundError",
    "SnapshotError",
    "LockedError",
    "FormatVersionError",
    "CorruptionError",
    "PinError",
    "PrunedError",
    "StorageError",
]
