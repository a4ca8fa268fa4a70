"""Memory for what a read returns: huge-page mappings, reused through a bounded pool.

Writing freshly allocated memory faults its pages in one by one: 4 KiB pages cost ~10,000
faults per 40 MB, 1-10 us each on a loaded virtual machine, more than the decompression
that fills them. glibc serves a large ``np.empty`` from a fresh ``mmap`` or from its heap
by a threshold that moves with earlier frees (and trims the heap by another), which made
the same select take 30 or 150 ms. Here:

``mapped(nbytes)``
    ``nbytes`` starting on a 2 MiB boundary in an anonymous mapping advised for
    transparent huge pages (``madvise(MADV_HUGEPAGE)``): ~20 faults per 40 MB instead of
    ~10,000. The arrays over it keep it alive; when the last one is gone the mapping goes
    back to the pool. A new mapping above ``HUGE_MAX`` (256 MiB) keeps 4 KiB pages: so many
    free 2 MiB blocks are mostly memory the machine has not touched yet, which on the
    virtual machine of the benchmarks cost more than 4 KiB faults (a fresh process's
    410 MB read: 1.55 s with huge pages, 0.71 s without; 100 MB: even; 42 MB: huge pages
    1.5x faster); once pooled, the page size no longer matters.
The pool
    keeps mappings whose arrays are gone, up to ``POOL_BYTES`` (1/16 of the RAM, at most
    1 GiB) and for ``IDLE_SECONDS``, and gives them to the next read that fits (not more
    than 1.5x its size): a read that follows a dropped one writes memory that is already
    faulted in, so it costs no fault and no zeroing at all. Idle mappings past their time
    are unmapped (by the next allocation or free, or by a timer when the process reads
    no more); ``release()`` unmaps them now.

Linux only (``MADV_HUGEPAGE``); elsewhere ``mapped`` returns None and callers use
``np.empty``.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import threading
import time
import weakref

import numpy as np

__all__ = ["mapped", "release", "pooled", "POOL_BYTES", "IDLE_SECONDS"]

HUGE = 2 << 20  # a transparent huge page (x86-64; arm64 with 4 KiB base pages)
HUGE_MAX = 256 << 20  # larger new mappings keep 4 KiB pages (see above)
_FLAGS = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", None)


def _ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


POOL_BYTES = min(_ram() // 16, 1 << 30)
IDLE_SECONDS = 30.0
_FIT = 1.5  # a pooled mapping serves reads of at least 1/1.5 of its size


class _Mapping:
    """One anonymous mapping and its 2 MiB-aligned usable span."""

    __slots__ = ("mm", "view", "address", "span", "idle_since")

    def __init__(self, span: int):
        self.mm = mmap.mmap(-1, span + HUGE, flags=_FLAGS)  # + slack to align the start: never touched
        self.view = ctypes.c_char.from_buffer(self.mm)  # the address (and no close while it is used)
        base = ctypes.addressof(self.view)
        off = -base % HUGE
        self.address, self.span, self.idle_since = base + off, span, 0.0
        if span <= HUGE_MAX:
            try:
                self.mm.madvise(_MADV_HUGEPAGE, off, span)
            except OSError:  # a kernel without transparent huge pages: 4 KiB pages, still correct
                pass

    def unmap(self) -> None:
        self.view = None
        self.mm.close()


class _Owner:
    """What numpy arrays over a mapping hold on to: their ``base``."""

    __slots__ = ("__array_interface__", "__weakref__")

    def __init__(self, m: _Mapping, nbytes: int):
        self.__array_interface__ = {"data": (m.address, False), "shape": (nbytes,), "typestr": "|u1", "version": 3}


class _Pool:
    def __init__(self):
        self._lock = threading.RLock()  # a free can run inside an allocation (garbage collection)
        self._idle: list[_Mapping] = []
        self._timer: threading.Timer | None = None

    def take(self, span: int) -> _Mapping | None:
        with self._lock:
            self._trim()
            fits = [m for m in self._idle if span <= m.span <= span * _FIT]
            if not fits:
                return None
            m = min(fits, key=lambda m: m.span)
            self._idle.remove(m)
            return m

    def give(self, m: _Mapping) -> None:
        with self._lock:
            if m.span > POOL_BYTES:
                m.unmap()
                return
            m.idle_since = time.monotonic()
            self._idle.append(m)
            self._trim()
            self._expire_later()

    def _expire_later(self) -> None:
        """Unmap idle mappings once their time is up even if the process reads no more."""
        if self._idle and self._timer is None:
            self._timer = threading.Timer(IDLE_SECONDS + 1.0, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            self._timer = None
            self._trim()
            self._expire_later()

    def _trim(self, everything: bool = False) -> int:
        now, freed = time.monotonic(), 0
        self._idle.sort(key=lambda m: m.idle_since)  # oldest first
        while self._idle and (everything or now - self._idle[0].idle_since > IDLE_SECONDS
                              or sum(m.span for m in self._idle) > POOL_BYTES):
            m = self._idle.pop(0)
            freed += m.span
            m.unmap()
        return freed

    def release(self) -> int:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return self._trim(everything=True)

    def idle_bytes(self) -> int:
        with self._lock:
            return sum(m.span for m in self._idle)

    def forget(self) -> None:
        """In a forked child: the parent's lock may be held; its idle mappings are copies
        that writing would fault in again (copy-on-write): leave them be."""
        self._lock = threading.RLock()
        self._idle = []
        self._timer = None


_POOL = _Pool()
os.register_at_fork(after_in_child=_POOL.forget)


def mapped(nbytes: int) -> np.ndarray | None:
    """``nbytes`` (uint8, uninitialised) starting on a 2 MiB boundary in a huge-page
    mapping, pooled or new; None where the platform has no such advice."""
    if _MADV_HUGEPAGE is None or not _FLAGS:
        return None
    span = max(HUGE, -(-nbytes // HUGE) * HUGE)
    m = _POOL.take(span) or _Mapping(span)
    owner = _Owner(m, nbytes)
    weakref.finalize(owner, _POOL.give, m).atexit = False
    return np.asarray(owner)


def release() -> int:
    """Unmap every pooled mapping now; the bytes given back to the system."""
    return _POOL.release()


def pooled() -> int:
    """Bytes held by the pool (mappings no array uses)."""
    return _POOL.idle_bytes()
