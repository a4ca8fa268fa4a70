"""Every byte the store writes goes to disk through here, durably, or not at all.

::

    create_new(path, parts)    an immutable data file: written to ``.<name>.tmp-<pid>`` in
                               the same folder (made if missing), fsynced, then hard-linked
                               to its name. The link fails if the name exists, so a commit
                               can never replace a committed file, whatever the index says.
                               Its folder, and the parents of folders it made, fsynced once
                               the file is linked: the file's own fsync has already carried
                               the new folders on journaling file systems (ext4, XFS), so
                               they cost no journal commit of their own. ``digest="sha256"``
                               also returns the hash of the bytes, computed by a second
                               thread while they are written and synced (not re-read).
    replace(path, parts)       a file that is replaced whole (an index, the snapshots, a
                               schema): temporary, fsync, rename over the old one, fsync
                               the folder; readers see the old or the new file, never half
    write_scratch(path, data)  a file that only guards against a dead process (a write
                               intent): written in place, not fsynced
    makedirs(path)             missing folders, each fsynced into its parent as it is made,
                               so a power cut cannot lose a folder that holds a committed
                               file (rename + fsync of the file's own folder is not enough
                               when the folder itself is new)

An ``OSError`` (disk full, read-only file system, permissions, I/O error) removes the
temporary file and becomes a ``StorageError`` naming the path. ``os`` is looked up at
call time, so a test can replace ``diskio.os`` with a wrapper that fails with ENOSPC at
the n-th write step: every step of every write is covered deterministically.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Iterable

from .errors import CorruptionError, StorageError

__all__ = ["create_new", "replace", "write_scratch", "makedirs", "fsync_dir", "tmp_name", "TMP_MARK"]

TMP_MARK = ".tmp-"  # ".<name>.tmp-<pid>": a file being written; never a committed name
# hard links unsupported by the file system (some FUSE/SMB mounts): fall back to a rename
# after checking the name is free (the caller holds the table lock: no one else writes it)
_NO_LINK = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def fsync_dir(path: str | os.PathLike) -> None:
    """Make the entries of folder ``path`` (a rename, a new file or folder) durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StorageError.from_os(exc, path, "syncing the folder") from None


def makedirs(path: str | os.PathLike) -> None:
    """Create ``path`` and its missing parents, each fsynced into its parent."""
    for d in _mkdirs(Path(path)):
        fsync_dir(d.parent)


def _mkdirs(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents (not synced); the folders made, outermost
    first: the caller fsyncs each into its parent."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    made = []
    for d in reversed(missing):
        try:
            os.mkdir(d)
        except FileExistsError:
            if not d.is_dir():
                raise StorageError(f"{d} exists and is not a folder", path=d, errno=errno.ENOTDIR) from None
            continue  # made meanwhile by another writer (of another table)
        except OSError as exc:
            raise StorageError.from_os(exc, d, "creating the folder") from None
        made.append(d)
    return made


class _Digest(threading.Thread):
    """The hash of ``parts``, computed beside the write (hashlib releases the GIL)."""

    def __init__(self, name: str, parts: list):
        import hashlib  # here: writes only (hashlib loads OpenSSL, ~3 ms at every start)

        super().__init__(name="tickstore-digest", daemon=True)
        self.h, self.parts = hashlib.new(name), parts
        self.start()

    def run(self) -> None:
        for part in self.parts:
            self.h.update(part)

    def hexdigest(self) -> str:
        self.join()
        return self.h.hexdigest()


def _write(path: Path, parts: Iterable[bytes], *, sync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for part in parts:
            view = memoryview(part).cast("B")
            while len(view):
                view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _discard(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        pass  # best effort: verify reports a leftover temporary, reindex removes it


def create_new(path: Path, parts: Iterable[bytes], *, digest: str | None = None) -> str | None:
    """Write an immutable file under a name that must not exist yet (its folder is made
    if missing); with ``digest`` (a hashlib name), return the hex digest of its bytes.

    Raises
    ------
    CorruptionError
        ``path`` exists: something (a lost index?) made the writer reuse a committed name.
    StorageError
        The disk refused (full, read-only, I/O error); nothing is left behind.
    """
    path = Path(path)
    made = _mkdirs(path.parent)
    tmp = tmp_name(path)
    parts = list(parts)
    hasher = _Digest(digest, parts) if digest else None
    try:
        _write(tmp, parts, sync=True)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise CorruptionError(
                f"{path} exists already; a commit never replaces a data file (the index does not name it: "
                f"run `tickstore verify`, then `tickstore reindex`)"
            ) from None
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
            if os.path.lexists(path):
                raise CorruptionError(f"{path} exists already; a commit never replaces a data file") from None
            os.replace(tmp, path)
        else:
            os.unlink(tmp)
        fsync_dir(path.parent)
        for d in made:
            fsync_dir(d.parent)
    except OSError as exc:
        _discard(tmp)
        raise StorageError.from_os(exc, path, "writing") from None
    except BaseException:
        _discard(tmp)
        raise
    finally:
        if hasher is not None:
            hasher.join()
    return hasher.hexdigest() if hasher is not None else None


def replace(path: Path, parts: Iterable[bytes]) -> None:
    """Replace ``path`` whole and atomically (readers see the old or the new file).

    The rename is the commit point of whatever the file records (an index: a write; the
    snapshots: a snapshot). Once it is done every reader sees the new file, so a failing
    fsync of the folder after it is logged, not raised: raising would report a visible
    commit as failed, and a caller retrying it would write it twice.
    """
    path = Path(path)
    tmp = tmp_name(path)
    try:
        _write(tmp, parts, sync=True)
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise StorageError.from_os(exc, path, "writing") from None
    except BaseException:
        _discard(tmp)
        raise
    try:
        fsync_dir(path.parent)
    except StorageError as exc:
        import logging  # here: only this failure logs (logging costs every start ~3 ms)

        logging.getLogger("tickstore").error(
            "%s is committed, but syncing its folder failed (%s): a power cut may undo it", path, exc
        )


def write_scratch(path: Path, data: bytes) -> None:
    """Write a small file in place, without fsync (it only has to survive a dead process)."""
    try:
        _write(Path(path), [data], sync=False)
    except OSError as exc:
        raise StorageError.from_os(exc, path, "writing") from None
