"""The one exception tree of the tickstore.

::

    TickstoreError
    ├── UnknownTableError        table name not declared / not created
    ├── SymbolError              malformed or unsafe symbol
    ├── SchemaError              wrong/missing/extra columns, wrong dtypes
    ├── FrameError               bad index: not UTC, NaT, unsorted, outside the partition
    ├── DuplicateKeyError        a frame repeats a unique key (e.g. trade_id)
    ├── NotFoundError            nothing stored where something was required
    ├── SnapshotError            unknown or duplicate snapshot name, bad as_of
    ├── LockedError              another writer holds the table lock
    ├── FormatVersionError       file written by an unknown format version
    ├── CorruptionError          checksum mismatch, unreadable file, index/file disagreement
    └── PinError                 a pin cannot be reproduced (file missing or altered)

Every message carries the offending values and, where there is one, the remedy.
Every error is raised before anything is written: a refused call changes nothing on disk.
"""

from __future__ import annotations

__all__ = [
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
]


class TickstoreError(Exception):
    """Root of every error the tickstore raises on purpose."""


class UnknownTableError(TickstoreError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SymbolError(TickstoreError, ValueError):
    pass


class SchemaError(TickstoreError, ValueError):
    pass


class FrameError(TickstoreError, ValueError):
    pass


class DuplicateKeyError(FrameError):
    pass


class NotFoundError(TickstoreError, LookupError):
    pass


class SnapshotError(TickstoreError, ValueError):
    pass


class LockedError(TickstoreError):
    pass


class FormatVersionError(TickstoreError):
    pass


class CorruptionError(TickstoreError):
    pass


class PinError(TickstoreError):
    pass
