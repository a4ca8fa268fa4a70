"""Rows in memory: one numpy array per column, ``ts`` first.

This is what passes between validation (``frames``), the files (``splay``) and the
store: a frame's columns are validated into it without packing rows, a read decompresses
each file column straight into it, and a frame is built from it without unpacking rows.
It indexes like a numpy structured array: ``rows["price"]`` is a column, ``rows[mask]``,
``rows[a:b]`` and ``rows[order]`` select rows.

Memory for a read: ``Columns.empty`` of 1 MiB or more puts all the columns in one fresh
anonymous mapping advised for transparent huge pages (``madvise(MADV_HUGEPAGE)``, 2 MiB
aligned). Writing a freshly allocated array faults its pages in one by one: 4 KiB pages
cost ~10,000 faults per 40 MB, 1-10 us each on a loaded virtual machine, more than the
decompression that fills them; 2 MiB pages cost ~20. ``np.empty`` gets huge pages only
where glibc's allocation happens to cover an aligned 2 MiB span, and glibc decides between
reusing its heap and a fresh ``mmap`` by a threshold that moves with earlier frees, which
made the same select take 30 or 150 ms (benchmarks/README.md). At most one partly used
huge page per read is wasted. The columns share the mapping: it is unmapped when the last
array over it is gone.
"""

from __future__ import annotations

import mmap

import numpy as np

__all__ = ["Columns", "mapped"]

_HUGE = 2 << 20  # a transparent huge page (x86-64; arm64 with 4 KiB base pages)
MAPPED_MIN = 1 << 20  # smaller reads come from the heap: a huge page would be mostly unused
_ALIGN = 64  # every column starts on a cache line
_FLAGS = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", None)  # Linux only


def mapped(nbytes: int) -> np.ndarray | None:
    """``nbytes`` of fresh memory (uint8) starting on a 2 MiB boundary, advised for huge
    pages; None where the platform has no such advice."""
    if _MADV_HUGEPAGE is None or not _FLAGS:
        return None
    span = -(-nbytes // _HUGE) * _HUGE
    m = mmap.mmap(-1, span + _HUGE, flags=_FLAGS)  # + slack to align the start: never touched
    raw = np.frombuffer(m, np.uint8)
    off = -raw.ctypes.data % _HUGE
    try:
        m.madvise(_MADV_HUGEPAGE, off, span)
    except OSError:  # a kernel without transparent huge pages: 4 KiB pages, still correct
        pass
    return raw[off : off + nbytes]


class Columns:
    """Equal-length named columns; ``ts`` (int64 ns UTC) is always the first."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, np.ndarray]):
        self._data = data

    @classmethod
    def empty(cls, dtypes: dict[str, np.dtype], n: int = 0) -> "Columns":
        """Uninitialised columns of ``n`` rows (``dtypes`` maps name -> dtype, ts first);
        1 MiB or more in one huge-page mapping (see the module's docstring)."""
        dtypes = {name: np.dtype(dt) for name, dt in dtypes.items()}
        sizes = [-(-n * dt.itemsize // _ALIGN) * _ALIGN for dt in dtypes.values()]
        block = mapped(sum(sizes)) if sum(sizes) >= MAPPED_MIN else None
        if block is None:
            return cls({name: np.empty(n, dt) for name, dt in dtypes.items()})
        data, at = {}, 0
        for (name, dt), size in zip(dtypes.items(), sizes):
            data[name] = block[at : at + n * dt.itemsize].view(dt)
            at += size
        return cls(data)

    @classmethod
    def concat(cls, parts: list["Columns"]) -> "Columns":
        if len(parts) == 1:
            return parts[0]
        return cls({name: np.concatenate([p._data[name] for p in parts]) for name in parts[0].names})

    @property
    def names(self) -> list[str]:
        return list(self._data)

    def __len__(self) -> int:
        return len(self._data["ts"])

    def __getitem__(self, key):
        if isinstance(key, str):
            return self._data[key]
        return Columns({name: a[key] for name, a in self._data.items()})

    def items(self):
        return self._data.items()

    def sorted_by_ts(self) -> "Columns":
        """Stably sorted by ts (ties keep their order); self if already sorted."""
        ts = self._data["ts"]
        if len(ts) < 2 or not (ts[1:] < ts[:-1]).any():
            return self
        return self[np.argsort(ts, kind="stable")]

    def __repr__(self) -> str:
        return f"<Columns {len(self)} rows: {', '.join(self.names)}>"
