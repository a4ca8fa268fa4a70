"""blosc2 chunks of the data files: compressed and decompressed on all cores.

A column is stored in chunks of ``k`` rows, each an ordinary blosc2 chunk inside the
blosc2 frame HDF5's blosc2 filter stores (see ``splay``). This module turns arrays into
such frames and frames back into arrays, the parts of a read or a write that cost:

``run(jobs, nbytes)``
    Runs independent jobs (one per chunk) on ``THREADS`` threads: the caller and a few
    workers take the next job from a shared queue. blosc2 releases the GIL while it
    (de)compresses (a ctypes call of its C library, ``set_releasegil`` for the package),
    ``os.preadv`` and xxh3 do too, so the chunks of a read or a write run in parallel.
    blosc2's own threads are not used (every call passes ``nthreads=1``, and
    ``blosc.package()`` sets the package's default to 1): since c-blosc2
    3 they live in a process-wide pool that a forked child inherits without its threads
    and may wait on forever (its teardown races with its workers), and one pool wake-up
    per 1 MB chunk was no faster than a chunk per thread. The workers are rebuilt after
    a fork.
``scratch()``
    Per-thread buffers a chunk is read into (its compressed bytes; a chunk of which a read
    keeps a part), faulted in once and reused: fresh memory per chunk costs page faults,
    1-10 us each on a loaded virtual machine.
``frame(part, cparams)``
    The frame around one compressed chunk. A one-chunk frame is a 97-byte header, the
    chunk and a 75-byte tail; for given parameters only four header fields depend on the
    chunk, so the frame is filled in from a template learnt from (and checked against) a
    frame blosc2 builds, instead of building a super-chunk per chunk (~0.7 ms per 1 MB,
    more than compressing it).
``decompress(raw, dst)``
    A chunk (or a one-chunk frame) straight into its place in the result, through the
    C library (``blosc``): a read never imports the blosc2 package (~0.4 s); compressing
    does.
"""

from __future__ import annotations

import collections
import os
import threading
from typing import TYPE_CHECKING

import numpy as np
from xxhash import xxh3_64_intdigest

from . import blosc
from .memory import mapped

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["THREADS", "CODECS", "run", "scratch", "cparams", "compress", "decompress"]

THREADS = max(1, min(4, os.cpu_count() or 1))
_GRAIN = 2 << 20  # scratch buffers grow by huge pages
PARALLEL_BYTES = 1 << 20  # a wake-up of the workers costs ~50 us, (de)compressing 1 MB ~300 us
CODECS = ("blosclz", "lz4", "lz4hc", "zstd", "zlib")  # blosc2.Codec.<NAME.upper()>


# -- threads ------------------------------------------------------------------------------
class _Workers:
    def __init__(self):
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def _executor(self) -> ThreadPoolExecutor:
        # imported here: concurrent.futures imports logging (~5 ms in all), and reads too
        # small to wake the workers (``select -n 10``) never need them
        from concurrent.futures import ThreadPoolExecutor

        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(THREADS - 1, thread_name_prefix="tickstore-chunks")
            return self._pool

    def forget(self) -> None:
        """In a forked child: the parent's workers do not exist here (nor may its lock be free)."""
        self._lock = threading.Lock()
        self._pool = None

    def run(self, jobs: list, nbytes: int) -> None:
        """Call every job (no arguments); the first exception is raised once all stopped.
        ``nbytes`` (the data the jobs produce) decides: below ``PARALLEL_BYTES`` waking
        the workers costs more than it saves, the caller runs them alone.

        The caller works through the queue too and then waits only for jobs a worker has
        taken: a worker that the scheduler has not run yet (a loaded machine) finds the
        queue empty when it starts, so the caller never waits for a thread to be scheduled.
        """
        if len(jobs) < 2 or THREADS < 2 or nbytes < PARALLEL_BYTES:
            for job in jobs:
                job()
            return
        todo = collections.deque(jobs)
        failed: list[BaseException] = []
        left = [len(jobs)]
        lock = threading.Lock()
        done = threading.Event()

        def drain() -> None:
            while True:
                try:
                    job = todo.popleft()
                except IndexError:
                    return
                try:
                    if not failed:
                        job()
                except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
                    failed.append(exc)
                finally:
                    with lock:
                        left[0] -= 1
                        if not left[0]:
                            done.set()

        pool = self._executor()
        for _ in range(min(THREADS, len(jobs)) - 1):
            pool.submit(drain)
        drain()
        done.wait()
        if failed:
            raise failed[0]


_WORKERS = _Workers()
run = _WORKERS.run


# -- scratch buffers ----------------------------------------------------------------------
class Scratch:
    """Buffers of one thread; they only grow (in 2 MiB huge pages: one page fault each),
    to the largest chunk read."""

    def __init__(self):
        self._raw = np.empty(0, np.uint8)
        self._chunk = np.empty(0, np.uint8)

    @staticmethod
    def _grow(nbytes: int) -> np.ndarray:
        size = -(-nbytes // _GRAIN) * _GRAIN
        buf = mapped(size)
        return buf if buf is not None else np.empty(size, np.uint8)

    def raw(self, nbytes: int) -> memoryview:
        """Room for ``nbytes`` compressed bytes."""
        if len(self._raw) < nbytes:
            self._raw = self._grow(nbytes)
        return memoryview(self._raw)[:nbytes]

    def chunk(self, k: int, dtype: np.dtype) -> np.ndarray:
        """Room for ``k`` items of ``dtype`` (a decompressed chunk)."""
        nbytes = k * dtype.itemsize
        if len(self._chunk) < nbytes:
            self._chunk = self._grow(nbytes)
        return self._chunk[:nbytes].view(dtype)


_local = threading.local()


def scratch() -> Scratch:
    s = getattr(_local, "scratch", None)
    if s is None:
        s = _local.scratch = Scratch()
    return s


# -- fork ---------------------------------------------------------------------------------
# blosc2's own pool is never used (``blosc.package()`` sets the package's default to one
# thread, the C binding's contexts have one thread each); our workers are rebuilt.
os.register_at_fork(after_in_child=_WORKERS.forget)


# -- compression --------------------------------------------------------------------------
def cparams(complib: str, complevel: int, shuffle: str, typesize: int) -> dict:
    """blosc2 compression parameters of a column (``complib`` 'blosc2:<codec>')."""
    lib, _, codec = complib.partition(":")
    if lib != "blosc2" or codec not in CODECS:
        raise ValueError(f"complib {complib!r}: one of {', '.join('blosc2:' + c for c in CODECS)}")
    blosc2 = blosc.package()
    return {
        "codec": blosc2.Codec[codec.upper()],
        "clevel": complevel,
        "typesize": typesize,
        "nthreads": 1,
        "filters": [{"bit": blosc2.Filter.BITSHUFFLE, "byte": blosc2.Filter.SHUFFLE}.get(shuffle, blosc2.Filter.NOFILTER)],
    }


def compress(part: np.ndarray, params: dict) -> tuple[bytes, tuple[int, int, int]]:
    """(the frame HDF5 stores for ``part``, (offset of the blosc2 chunk in the frame, its
    length, xxh3-64 of the bytes a reader decompresses)); offset -1 (length 0): the frame
    stores the chunk without data (a special chunk, e.g. all zeros), a reader decompresses
    the whole frame, whose xxh3 it is."""
    inner = blosc.package().compress2(part, **params)
    if len(inner) >= 32 and not inner[31] >> 4 & 7:  # blosc2 flags: not a special value
        built = _TEMPLATES.frame(inner, part.nbytes, params)
        if built is not None:
            return built[0], (built[1], len(inner), xxh3_64_intdigest(inner))
    else:  # a special chunk (all zeros: a column of defaults): the same bytes chunk after chunk
        key = (params["codec"], params["clevel"], params["typesize"], tuple(params["filters"]), part.nbytes, inner)
        done = _SPECIAL.get(key)
        if done is None:
            if len(_SPECIAL) >= _SPECIAL_MAX:
                _SPECIAL.clear()
            done = _SPECIAL[key] = _frame_of(inner, part.nbytes, params)
        return done
    return _frame_of(inner, part.nbytes, params)


def _frame_of(inner: bytes, nbytes: int, params: dict) -> tuple[bytes, tuple[int, int, int]]:
    frame = _reference_frame(inner, nbytes, params)
    at = frame.find(inner)
    return frame, (at, len(inner), xxh3_64_intdigest(inner)) if at >= 0 else (-1, 0, xxh3_64_intdigest(frame))


# Frames of special chunks (stored without data, e.g. all zeros), by parameters, size
# and chunk: a blosc2 super-chunk costs ~0.8 ms to build, the chunk ~10 us to make.
_SPECIAL: dict[tuple, tuple[bytes, tuple[int, int, int]]] = {}
_SPECIAL_MAX = 256


def _reference_frame(inner: bytes, nbytes: int, params: dict) -> bytes:
    """The frame blosc2 itself builds around the chunk ``inner``."""
    sc = blosc.package().SChunk(chunksize=nbytes, cparams=params, dparams={"nthreads": 1})
    sc.append_chunk(inner)
    return sc.to_cframe()


class _FrameTemplates:
    """One-chunk frames filled in from a template per set of compression parameters.

    The template is the header and tail of a frame blosc2 built; the header differs from
    chunk to chunk only in four big-endian msgpack fields: the frame's size (uint64 at 16),
    uncompressed and compressed size (int64 at 30 and 39) and chunk size (int32 at 58). A
    template is kept only if frames filled from it equal, byte for byte, those blosc2
    builds for the chunk it was learnt from and for a second chunk of another size; else
    those parameters keep blosc2's own path. tests/tickstore/test_file_format.py checks
    the equality over codecs, filters, levels, item sizes and chunk sizes.
    """

    _FIELDS = ((15, 0xCF, 16, 8), (29, 0xD3, 30, 8), (38, 0xD3, 39, 8), (57, 0xD2, 58, 4))  # tag at, tag, value at, width

    def __init__(self):
        self._lock = threading.Lock()
        self._templates: dict[tuple, tuple[bytes, bytes] | None] = {}

    def frame(self, inner: bytes, nbytes: int, params: dict) -> tuple[bytes, int] | None:
        """(the frame around the regular chunk ``inner`` of ``nbytes``, the chunk's offset
        in it), or None where no template holds for ``params``."""
        key = (params["codec"], params["clevel"], params["typesize"], tuple(params["filters"]))
        t = self._templates.get(key, False)
        if t is False:
            with self._lock:
                t = self._templates.get(key, False)
                if t is False:
                    t = self._templates[key] = self._learn(inner, nbytes, params)
        return None if t is None else (self._fill(*t, inner, nbytes), len(t[0]))

    def _fill(self, head: bytes, tail: bytes, inner: bytes, nbytes: int) -> bytes:
        h = bytearray(head)
        for (_, _, at, width), value in zip(self._FIELDS, (len(head) + len(inner) + len(tail), nbytes, len(inner), nbytes)):
            h[at : at + width] = value.to_bytes(width, "big")
        return b"".join((h, inner, tail))

    def _learn(self, inner: bytes, nbytes: int, params: dict) -> tuple[bytes, bytes] | None:
        ref = _reference_frame(inner, nbytes, params)
        at = ref.find(inner)
        if at < 62:
            return None
        head, tail = ref[:at], ref[at + len(inner) :]
        if any(head[tag_at] != tag for tag_at, tag, _, _ in self._FIELDS):
            return None
        probe = np.arange(3 * params["typesize"], dtype=np.uint8) + 1  # another size; never special
        other = blosc.package().compress2(probe, **params)
        if self._fill(head, tail, inner, nbytes) != ref:
            return None
        if self._fill(head, tail, other, probe.nbytes) != _reference_frame(other, probe.nbytes, params):
            return None
        return head, tail


_TEMPLATES = _FrameTemplates()


# -- decompression ------------------------------------------------------------------------
def decompress(raw, dst: np.ndarray, *, whole_frame: bool = False) -> None:
    """Decompress the blosc2 chunk ``raw`` (checked already) into ``dst``, which it must
    fill exactly; ``whole_frame``: ``raw`` is a one-chunk frame.

    Raises
    ------
    ValueError
        The chunk is damaged, or its header disagrees with its size or with ``dst`` (a
        damaged format-2 chunk has no checksum: this keeps the decompressor inside its
        buffers).
    """
    (blosc.decompress_frame if whole_frame else blosc.decompress)(raw, dst)
