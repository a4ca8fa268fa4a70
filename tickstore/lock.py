"""The one-writer-per-table lock.

An exclusive ``flock`` on ``<root>/<table>/.lock``, held for the duration of one write
(insert, append, delete, compaction, reindex). The kernel releases it when the process
dies, so a ``kill -9`` never leaves a stale lock behind. The holder's pid is written into
the file so that the error can say who holds it. Readers never lock: they read immutable
files through an index that is replaced atomically.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from . import diskio
from .errors import LockedError, StorageError

__all__ = ["TableLock"]


class TableLock:
    def __init__(self, path: Path, *, timeout: float):
        self.path = path
        self.timeout = timeout
        self._thread_lock = threading.RLock()  # flock does not exclude threads of one process
        self._depth = 0
        self._fd: int | None = None

    @contextmanager
    def hold(self):
        """Hold the lock (re-entrant within a thread); wait up to ``timeout`` seconds.

        Raises
        ------
        LockedError
            Another process still holds it after ``timeout`` seconds.
        """
        if not self._thread_lock.acquire(blocking=self.timeout > 0, timeout=self.timeout if self.timeout > 0 else -1):
            raise LockedError(f"{self.path.parent.name}: another thread of this process is writing")
        try:
            if self._depth == 0:
                self._acquire()
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._release()
        finally:
            self._thread_lock.release()

    def _acquire(self) -> None:
        diskio.makedirs(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # a read-only store: reads work, writes cannot lock
            raise StorageError.from_os(exc, self.path, "opening the writer lock") from None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise LockedError(
                        f"table {self.path.parent.name!r} is being written by another writer{holder}; "
                        f"waited {self.timeout:g} s (one writer per table; retry later or raise lock_timeout)"
                    ) from None
                time.sleep(0.01)
        try:
            pid = f"{os.getpid()}\n".encode()
            # the same writer again (every write of a process): no write, so no journal
            # entry for the file's times that could wait behind another commit's fsync
            if os.pread(fd, 64, 0) != pid:
                os.ftruncate(fd, 0)
                os.pwrite(fd, pid, 0)
        except OSError:
            pass  # the pid only makes a LockedError message more helpful
        self._fd = fd

    def _release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid else ""
