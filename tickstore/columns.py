"""Rows in memory: one numpy array per column, ``ts`` first.

This is what passes between validation (``frames``), the files (``splay``) and the
store: a frame's columns are validated into it without packing rows, a read decompresses
each file column straight into it, and a frame is built from it without unpacking rows.
It indexes like a numpy structured array: ``rows["price"]`` is a column, ``rows[mask]``,
``rows[a:b]`` and ``rows[order]`` select rows.

Memory for a read: ``Columns.empty`` of 1 MiB or more puts all the columns in one
huge-page mapping (``memory.mapped``: 2 MiB aligned, reused through a bounded pool), so
decompressing into them faults ~20 pages per 40 MB instead of ~10,000, or none when a
dropped read's mapping is reused. At most one partly used huge page per read is wasted.
The columns share the mapping: it returns to the pool when the last array over it is gone.
"""

from __future__ import annotations

import numpy as np

from .memory import mapped

__all__ = ["Columns"]

MAPPED_MIN = 1 << 20  # smaller reads come from the heap: a huge page would be mostly unused
_ALIGN = 64  # every column starts on a cache line


class Columns:
    """Equal-length named columns; ``ts`` (int64 ns UTC) is always the first."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, np.ndarray]):
        self._data = data

    @classmethod
    def empty(cls, dtypes: dict[str, np.dtype], n: int = 0) -> "Columns":
        """Uninitialised columns of ``n`` rows (``dtypes`` maps name -> dtype, ts first);
        1 MiB or more in one pooled huge-page mapping (see the module's docstring)."""
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

    def ts_order(self) -> np.ndarray | None:
        """The stable order of the rows by ts (ties keep their order); None if sorted."""
        ts = self._data["ts"]
        if len(ts) < 2 or not (ts[1:] < ts[:-1]).any():
            return None
        return np.argsort(ts, kind="stable")

    def sorted_by_ts(self) -> "Columns":
        """Stably sorted by ts (ties keep their order); self if already sorted."""
        order = self.ts_order()
        return self if order is None else self[order]

    def __repr__(self) -> str:
        return f"<Columns {len(self)} rows: {', '.join(self.names)}>"
