"""A faithful, minimal re-implementation of the Behemoth/Serenity ``LocalTickstore`` (the baseline).

The design being measured (Serenity's ``serenity.tickstore.tickstore``):

* one *fixed-format* HDF5 file per (symbol, day, version), written with
  ``df.to_hdf(path, 'ticks', mode='w', complevel=9, complib='blosc')``;
  path ``<root>/YYYY/MM/DD/<symbol>_<version:04d>.h5``;
* an index that is a pandas DataFrame with a (symbol, date, version) MultiIndex and the
  columns ``start_time``, ``end_time`` (knowledge-time window) and ``path``, persisted
  whole to ``<root>/index.h5`` with ``to_hdf(..., complevel=9, complib='blosc')`` on
  flush/close (and read back with ``pd.read_hdf`` when a store is opened);
* ``select`` = mask the index (``df.loc[symbol]`` then boolean masks on the date level
  and on start/end time), ``pd.read_hdf`` every selected day file, ``pd.concat``, mask the
  exact time range (inclusive end, as in Serenity) and ``sort_index``.

It is written from the published design, not copied, and keeps only what the benchmark
needs (no delete, no reindex, no logging). Symbols are encoded like ours so they are one
safe file-name component.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import pandas as pd

__all__ = ["BehemothTickstore", "START_AS_OF", "LATEST_AS_OF"]

# Serenity uses pd.Timestamp.min/max as "beginning/end of time" (naive datetimes).
START_AS_OF = pd.Timestamp.min
LATEST_AS_OF = pd.Timestamp.max


def _file_symbol(symbol: str) -> str:
    return symbol.replace(":", "@").replace("/", "+")


class BehemothIndex:
    """The pandas MultiIndex index of ``LocalTickstore`` (Serenity's ``DataFrameIndex``)."""

    def __init__(self, index_path: Path, table_name: str):
        self.index_path = index_path
        self.table_name = table_name
        self.dirty = False
        if index_path.exists():
            self.df = pd.read_hdf(str(index_path))
        else:
            self.df = self._empty()

    @staticmethod
    def _empty() -> pd.DataFrame:
        df = pd.DataFrame(
            {
                "symbol": pd.Series([], dtype=object),
                "date": pd.Series([], dtype="datetime64[ns]"),
                "version": pd.Series([], dtype="int64"),
                "start_time": pd.Series([], dtype="datetime64[ns]"),
                "end_time": pd.Series([], dtype="datetime64[ns]"),
                "path": pd.Series([], dtype=object),
            }
        )
        return df.set_index(["symbol", "date", "version"])

    @classmethod
    def from_rows(cls, index_path: Path, table_name: str, rows: pd.DataFrame) -> "BehemothIndex":
        """An index built in one go (for the 90k-entry lookup benchmark)."""
        self = cls.__new__(cls)
        self.index_path, self.table_name, self.dirty = index_path, table_name, True
        self.df = rows.set_index(["symbol", "date", "version"]).sort_index()
        return self

    def select(self, symbol: str, start: _dt.date, end: _dt.date, as_of_time) -> pd.DataFrame:
        # as in Serenity: short-circuit on a missing symbol, then mask the symbol's rows
        if symbol not in self.df.index.get_level_values("symbol"):
            return pd.DataFrame()
        symbol_data = self.df.loc[symbol]
        dates = symbol_data.index.get_level_values("date")
        mask = (
            (dates >= pd.to_datetime(start))
            & (dates <= pd.to_datetime(end))
            & (symbol_data["start_time"] <= as_of_time)
            & (symbol_data["end_time"] >= as_of_time)
        )
        return symbol_data[mask]

    def insert(self, symbol: str, as_at_date: _dt.date, make_path) -> Path:
        day = pd.Timestamp(as_at_date)
        self.df.sort_index(inplace=True)
        try:
            versions = self.df.loc[(symbol, day)]
        except KeyError:
            versions = None
        if versions is not None and len(versions):
            start_time = pd.Timestamp(_dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None))
            prev = int(versions.index.values[-1])
            version = prev + 1
            self.df.loc[(symbol, day, prev), "end_time"] = start_time
        else:
            start_time = START_AS_OF
            version = 0
        path = make_path(version)
        row = pd.DataFrame(
            {"start_time": [start_time], "end_time": [LATEST_AS_OF], "path": [str(path)]},
            index=pd.MultiIndex.from_tuples([(symbol, day, version)], names=["symbol", "date", "version"]),
        )
        self.df = pd.concat([self.df, row]) if len(self.df) else row
        self.dirty = True
        return path

    def flush(self) -> None:
        if self.dirty:
            self.df.to_hdf(str(self.index_path), key=self.table_name, mode="w", complevel=9, complib="blosc")
            self.dirty = False


class BehemothTickstore:
    """Serenity's ``LocalTickstore``: select/insert/flush/close on one table directory."""

    def __init__(self, base_path, timestamp_column: str = "ts"):
        self.base_path = Path(base_path).resolve()
        self.base_path.mkdir(parents=True, exist_ok=True)
        self.timestamp_column = timestamp_column
        self.index = BehemothIndex(self.base_path / "index.h5", self.base_path.name)

    def select(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp, as_of_time=LATEST_AS_OF) -> pd.DataFrame:
        """Ticks with ``start <= ts <= end`` (inclusive end, as in Serenity)."""
        selected = self.index.select(symbol, start.date(), end.date(), as_of_time)
        if selected.empty:
            return selected
        loaded = [pd.read_hdf(row["path"]) for _, row in selected.iterrows()]
        ticks = pd.concat(loaded)
        t = ticks.index.get_level_values(self.timestamp_column)
        out = ticks.loc[(t >= start) & (t <= end)]
        return out.sort_index()

    def insert(self, symbol: str, as_at_date: _dt.date, ticks: pd.DataFrame) -> Path:
        def make_path(version: int) -> Path:
            d = as_at_date
            return self.base_path / f"{d.year}/{d.month:02d}/{d.day:02d}/{_file_symbol(symbol)}_{version:04d}.h5"

        path = self.index.insert(symbol, as_at_date, make_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        ticks.to_hdf(str(path), key="ticks", mode="w", complevel=9, complib="blosc")
        return path

    def flush(self) -> None:
        self.index.flush()

    def close(self) -> None:
        self.flush()

    def data_bytes(self) -> int:
        """Bytes of the day files (the index excluded)."""
        return sum(p.stat().st_size for p in self.base_path.rglob("*_[0-9][0-9][0-9][0-9].h5"))
