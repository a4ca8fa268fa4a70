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
    ├── PinError                 a pin cannot be reproduced (file missing or altered)
    ├── PrunedError              as_of before the horizon of ``prune`` (that history is gone)
    └── StorageError             the disk refused: full, read-only, I/O error (carries .path)

Every message carries the offending values and, where there is one, the remedy.
Every error is raised before anything is written: a refused call changes nothing on disk.
A ``StorageError`` can only happen while writing; the write is then rolled back (its
files deleted) before the error reaches the caller, so it too leaves the store as it was.
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
    "PrunedError",
    "StorageError",
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


class PrunedError(TickstoreError, LookupError):
    pass


class StorageError(TickstoreError):
    """The operating system refused a read or write: disk full (ENOSPC), read-only file
    system or permissions (EROFS, EACCES), an I/O error (EIO).

    Attributes
    ----------
    path
        The file or folder the failed call was about.
    errno
        The OS error number (``errno.ENOSPC``, ...), or None.
    """

    def __init__(self, message: str, *, path=None, errno: int | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.errno = errno

    @classmethod
    def from_os(cls, exc: OSError, path, doing: str) -> "StorageError":
        """A ``StorageError`` for ``exc`` raised while ``doing`` something to ``path``."""
        import errno as _errno
        import os

        code = exc.errno
        why = os.strerror(code) if code else str(exc)
        hint = {
            _errno.ENOSPC: "free disk space and retry",
            _errno.EDQUOT: "raise the disk quota or free space and retry",
            _errno.EROFS: "the store is on a read-only file system; reads work, writes need it writable",
            _errno.EACCES: "no permission; reads work, writes need write access to the store root",
            _errno.EPERM: "no permission; reads work, writes need write access to the store root",
        }.get(code, "check the disk (dmesg) and retry")
        return cls(f"{path}: {doing} failed: {why} ({hint})", path=path, errno=code)
