"""blosc2 for the store: chunks decompressed through the C library, the package for the rest.

Importing the ``blosc2`` Python package costs 370-480 ms in a new process (4.x imports
httpx, rich and more for its remote arrays), more than a whole ``tickstore select``
should take. Reading needs three calls of the C library only, so reads go through a
small ctypes binding of the library the pinned wheel ships
(``<site-packages>/blosc2/lib/libblosc2.so``, found with ``importlib.util.find_spec``,
which does not run the package); compressing (writes, merges) imports the package.

``decompress(raw, dst)``
    One blosc2 chunk into ``dst``, which it must fill exactly.
``decompress_frame(raw, dst)``
    The one chunk of a blosc2 frame (a contiguous super-chunk) into ``dst``.
``package()``
    The ``blosc2`` package, imported on first use with the process's settings (the only
    place that imports it): ``set_releasegil(True)`` (our jobs run beside each other) and
    ``set_nthreads(1)`` (calls that do not pass ``nthreads`` use no blosc2 thread pool,
    which a forked child would inherit without its threads; see ``chunks``).

The binding, checked against the headers of blosc2 4.14.1 (C-Blosc2 3.3.5,
``blosc2/include/blosc2.h``):

* ``blosc2_decompress`` runs on a global context behind a global mutex: concurrent reads
  would take turns. Each thread gets its own context instead
  (``blosc2_create_dctx(blosc2_dparams)`` with ``nthreads`` 1, freed with its thread) and
  calls ``blosc2_decompress_ctx``, which the header documents for simultaneous use from
  many threads. A ctypes call of a ``CDLL`` releases the GIL, so the chunk jobs of a read
  (``chunks.run``) decompress in parallel, as the package did with ``set_releasegil``.
  ``blosc2_dparams`` is passed by value: {int16 nthreads; void *schunk; postfilter
  function pointer; void *postparams; int32 typesize}; loading checks the layout by
  reading the library's own defaults back (``blosc2_get_blosc2_dparams_defaults``:
  nthreads 1, typesize 8).
* The destination is the caller's array: the library writes straight into it (no copy).
  It never writes more than the size it is given (documented), and the chunk's header
  sizes (``blosc2_cbuffer_sizes``, which reads the first 16 bytes) are checked against
  the buffer and the destination first, as before: a format-2 chunk carries no checksum.
* A frame: ``blosc2_schunk_from_buffer(buf, len, copy=false)`` (the frame refers to our
  buffer and never frees it: ``blosc2_schunk_avoid_cframe_free``), then
  ``blosc2_schunk_decompress_chunk(sc, 0, dst, size)`` and ``blosc2_schunk_free``. Such
  a super-chunk has its own decompression context (default parameters: one thread).
* Every negative return code, a NULL super-chunk and a size other than the destination's
  raise ``ValueError`` naming ``blosc2_error_string``: the exception the package's
  ``decompress2`` raised, which the readers turn into ``CorruptionError``. A damaged
  chunk never reads as data. Readers check a chunk's xxh3 before it gets here.

If the library cannot be found or loaded (another platform, another wheel layout, a
library whose layout check fails), decompression falls back to the package (``binding()``
is None then, ``why_not()`` says why).
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys
import threading
from pathlib import Path

import numpy as np

__all__ = ["decompress", "decompress_frame", "package", "binding", "why_not"]

_HEADER = 16  # BLOSC_MIN_HEADER_LENGTH: what blosc2_cbuffer_sizes reads


# -- the package (compression) --------------------------------------------------------------
_package_lock = threading.Lock()
_package = None


def package():
    """The ``blosc2`` package with the process's settings (see the module docstring)."""
    global _package
    if _package is None:
        with _package_lock:
            if _package is None:
                import blosc2

                blosc2.set_releasegil(True)
                blosc2.set_nthreads(1)
                _package = blosc2
    return _package


# -- the C library ------------------------------------------------------------------------
class _DParams(ctypes.Structure):
    """``blosc2_dparams`` of blosc2.h (C-Blosc2 3.3.5)."""

    _fields_ = [
        ("nthreads", ctypes.c_int16),
        ("schunk", ctypes.c_void_p),
        ("postfilter", ctypes.c_void_p),
        ("postparams", ctypes.c_void_p),
        ("typesize", ctypes.c_int32),
    ]


def library_paths() -> list[Path]:
    """Where the blosc2 wheel keeps its C library, found without importing the package."""
    try:
        spec = importlib.util.find_spec("blosc2")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    found = []
    for base in spec.submodule_search_locations:
        lib = Path(base) / "lib"
        names = {"linux": ["libblosc2.so", "libblosc2.so.*"], "darwin": ["libblosc2.dylib", "libblosc2.*.dylib"], "win32": ["blosc2.dll", "libblosc2.dll"]}
        for pattern in names.get(sys.platform, ["libblosc2.so", "libblosc2.so.*"]):
            found += sorted(lib.glob(pattern))
    return found


class Binding:
    """The decompression calls of one loaded libblosc2."""

    def __init__(self, path: Path):
        lib = ctypes.CDLL(str(path))
        vp, i32, i64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64
        for name, res, args in (
            ("blosc2_init", None, []),
            ("blosc2_get_version_string", ctypes.c_char_p, []),
            ("blosc2_error_string", ctypes.c_char_p, [ctypes.c_int]),
            ("blosc2_get_blosc2_dparams_defaults", _DParams, []),
            ("blosc2_create_dctx", vp, [_DParams]),
            ("blosc2_free_ctx", None, [vp]),
            ("blosc2_cbuffer_sizes", ctypes.c_int, [vp, ctypes.POINTER(i32), ctypes.POINTER(i32), ctypes.POINTER(i32)]),
            ("blosc2_decompress_ctx", ctypes.c_int, [vp, vp, i32, vp, i32]),
            ("blosc2_schunk_from_buffer", vp, [vp, i64, ctypes.c_bool]),
            ("blosc2_schunk_avoid_cframe_free", None, [vp, ctypes.c_bool]),
            ("blosc2_schunk_decompress_chunk", ctypes.c_int, [vp, i64, vp, i32]),
            ("blosc2_schunk_free", ctypes.c_int, [vp]),
        ):
            f = getattr(lib, name)  # AttributeError: not the library we know
            f.restype, f.argtypes = res, args
        defaults = lib.blosc2_get_blosc2_dparams_defaults()
        if (defaults.nthreads, defaults.schunk, defaults.postfilter, defaults.postparams, defaults.typesize) != (1, None, None, None, 8):
            raise OSError(f"{path}: blosc2_dparams defaults read back as {defaults.nthreads}, {defaults.typesize}: another struct layout")
        lib.blosc2_init()
        self.path = path
        self.version = lib.blosc2_get_version_string().decode()
        self._lib = lib
        self._dparams = _DParams(1, None, None, None, 8)  # one thread: no pool (see chunks)
        self._local = threading.local()

    def _context(self):
        c = getattr(self._local, "context", None)
        if c is None:
            c = self._local.context = _Context(self._lib, self._lib.blosc2_create_dctx(self._dparams))
        return c

    def error(self, rc: int) -> str:
        return f"{self._lib.blosc2_error_string(rc).decode(errors='replace')} (blosc2 error {rc})"

    def decompress(self, src: int, srcsize: int, dst: int, dstsize: int) -> None:
        """Chunk at address ``src`` into the ``dstsize`` bytes at ``dst``, which it must fill."""
        if srcsize < _HEADER:
            raise ValueError(f"a blosc2 chunk of {srcsize} bytes is shorter than its header")
        c = self._context()
        rc = self._lib.blosc2_cbuffer_sizes(src, c.nbytes, c.cbytes, c.blocksize)
        if rc < 0:
            raise ValueError(f"not a blosc2 chunk: {self.error(rc)}")
        nbytes, cbytes = c.nbytes.value, c.cbytes.value
        if cbytes != srcsize or nbytes != dstsize:
            raise ValueError(f"blosc2 header says {cbytes} bytes holding {nbytes}, expected {srcsize} holding {dstsize}")
        rc = self._lib.blosc2_decompress_ctx(c.ctx, src, srcsize, dst, dstsize)
        if rc < 0:
            raise ValueError(f"blosc2 cannot decompress the chunk: {self.error(rc)}")
        if rc != dstsize:
            raise ValueError(f"the blosc2 chunk held {rc} bytes, expected {dstsize}")

    def decompress_frame(self, src: int, srcsize: int, dst: int, dstsize: int) -> None:
        """The first chunk of the frame at ``src`` into the ``dstsize`` bytes at ``dst``."""
        lib = self._lib
        sc = lib.blosc2_schunk_from_buffer(src, srcsize, False)
        if not sc:
            raise ValueError("not a blosc2 frame")
        try:
            lib.blosc2_schunk_avoid_cframe_free(sc, True)  # the buffer is ours
            rc = lib.blosc2_schunk_decompress_chunk(sc, 0, dst, dstsize)
        finally:
            lib.blosc2_schunk_free(sc)
        if rc < 0:
            raise ValueError(f"blosc2 cannot decompress the frame's chunk: {self.error(rc)}")
        if rc != dstsize:
            raise ValueError(f"the blosc2 frame's chunk held {rc} bytes, expected {dstsize}")


class _Context:
    """One thread's decompression context and size out-parameters; freed with the thread."""

    def __init__(self, lib, ctx):
        if not ctx:
            raise MemoryError("blosc2_create_dctx failed")
        self._free, self.ctx = lib.blosc2_free_ctx, ctx
        self.nbytes, self.cbytes, self.blocksize = ctypes.c_int32(), ctypes.c_int32(), ctypes.c_int32()

    def __del__(self):
        self._free(self.ctx)


_load_lock = threading.Lock()
_loaded = False
_binding: Binding | None = None
_why_not = ""


def _load() -> None:
    global _loaded, _binding, _why_not
    with _load_lock:
        if _loaded:
            return
        problems = []
        for path in library_paths():
            try:
                _binding = Binding(path)
                break
            except (OSError, AttributeError) as exc:
                problems.append(f"{path}: {exc}")
        else:
            _why_not = "; ".join(problems) or "the blosc2 wheel's C library (blosc2/lib/libblosc2.*) was not found"
        _loaded = True


def binding() -> Binding | None:
    """The C library's binding, or None (decompression then uses the package)."""
    if not _loaded:
        _load()
    return _binding


def why_not() -> str:
    """Why there is no binding ('' if there is one)."""
    binding()
    return _why_not


def reset() -> None:
    """Forget the loaded binding: the next decompression loads it again (tests)."""
    global _loaded, _binding, _why_not
    with _load_lock:
        _loaded, _binding, _why_not = False, None, ""


# -- decompression ------------------------------------------------------------------------
_addressof, _char_at = ctypes.addressof, ctypes.c_char.from_buffer


def _address(buf) -> tuple[int, int]:
    """(address, size) of a bytes-like object's memory (single bytes; read-only too)."""
    try:
        return _addressof(_char_at(buf)), len(buf)  # a writable buffer: ~0.3 us
    except (TypeError, ValueError):  # read-only or empty
        a = np.frombuffer(buf, np.uint8)
        return a.__array_interface__["data"][0], a.nbytes


def _destination(dst: np.ndarray) -> int:
    if not (dst.flags.c_contiguous and dst.flags.writeable):
        raise TypeError("decompression needs a writable contiguous destination")
    return _addressof(_char_at(dst)) if dst.nbytes else 0


def decompress(raw, dst: np.ndarray) -> None:
    """Decompress the blosc2 chunk ``raw`` (any bytes-like object) into ``dst``, which it
    must fill exactly.

    Raises
    ------
    ValueError
        The chunk is damaged, or its header disagrees with its size or with ``dst``.
    """
    if len(raw) < _HEADER:
        raise ValueError(f"a blosc2 chunk of {len(raw)} bytes is shorter than its header")
    b = binding()
    if b is None:
        blosc2 = package()
        nbytes, cbytes, _ = blosc2.get_cbuffer_sizes(raw)
        if cbytes != len(raw) or nbytes != dst.nbytes:
            raise ValueError(f"blosc2 header says {cbytes} bytes holding {nbytes}, expected {len(raw)} holding {dst.nbytes}")
        if dst.nbytes:
            blosc2.decompress2(raw, dst=dst, nthreads=1)
        return
    src, size = _address(raw)
    b.decompress(src, size, _destination(dst), dst.nbytes)


def decompress_frame(raw, dst: np.ndarray) -> None:
    """Decompress the one chunk of the blosc2 frame ``raw`` into ``dst``, which it must
    fill exactly. Raises ValueError as ``decompress``."""
    if not dst.nbytes:  # the library takes no empty destination, nor keeps empty chunks in frames
        raise ValueError("a blosc2 frame holds no empty chunk")
    b = binding()
    if b is None:
        blosc2 = package()
        try:
            sc = blosc2.schunk_from_cframe(bytes(raw), copy=True)
        except RuntimeError as exc:
            raise ValueError(f"not a blosc2 frame ({exc})") from None
        sc.dparams = blosc2.DParams(nthreads=1)
        if sc.nbytes != dst.nbytes:
            raise ValueError(f"the blosc2 frame holds {sc.nbytes} bytes, expected {dst.nbytes}")
        try:
            sc.decompress_chunk(0, dst=dst)
        except RuntimeError as exc:
            raise ValueError(f"blosc2 cannot decompress the frame's chunk ({exc})") from None
        return
    src, size = _address(raw)
    b.decompress_frame(src, size, _destination(dst), dst.nbytes)
