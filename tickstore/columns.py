"""Rows in memory: one numpy array per column, ``ts`` first.

This is what passes between validation (``frames``), the files (``splay``) and the
store: a frame's columns are validated into it without packing rows, a read decompresses
each file column straight into it, and a frame is built from it without unpacking rows.
It indexes like a numpy structured array: ``rows["price"]`` is a column, ``rows[mask]``,
``rows[a:b]`` and ``rows[order]`` select rows.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Columns"]


class Columns:
    """Equal-length named columns; ``ts`` (int64 ns UTC) is always the first."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, np.ndarray]):
        self._data = data

    @classmethod
    def empty(cls, dtypes: dict[str, np.dtype], n: int = 0) -> "Columns":
        """Uninitialised columns of ``n`` rows (``dtypes`` maps name -> dtype, ts first)."""
        return cls({name: np.empty(n, dt) for name, dt in dtypes.items()})

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
