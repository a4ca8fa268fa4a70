"""Export what ``select`` returns to Parquet, Arrow or CSV files, with the pin of the read.

::

    export(store["trades"], "binance:BTC/USDT:USDT", "2024-08-01", "2024-09-01",
           path="btc.parquet", format="parquet", as_of="paper-2024-q3")   # -> Export

    layout "file"  one file at ``path``
    layout "days"  a hive-partitioned folder, one file per UTC day of event time:
                   path/date=2024-08-01/part-0.parquet, path/date=2024-08-02/part-0.parquet, ...
    layout "auto"  (default) "file" when the rows lie in one UTC day, else "days"

Every file holds exactly the rows ``select`` returned (index ``ts`` as a column, UTC; the
``symbol`` column for a list of symbols; CSV as ``tickstore select --format csv`` prints it,
see ``render``) and carries the pin of its rows: Parquet and
Arrow in the schema metadata (``tickstore.pin``, a JSON ``Pin``, plus ``tickstore.table``
and ``tickstore.as_of``), CSV in a ``<file>.pin.json`` beside it (times in ISO 8601 with
``Z``). A day file's pin names that day's window and the files behind it, so
``Tickstore.read_pin`` reproduces that file alone. Files are written to a temporary name
and renamed; an existing ``path`` is refused unless ``overwrite``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .clock import NS_PER_DAY
from .errors import TickstoreError
from .pin import Pin
from .render import csv_chunks, fields_of_frame, iso_times

__all__ = ["FORMATS", "LAYOUTS", "Export", "ExportError", "export", "iso_utc", "read_export_pin"]

FORMATS = ("parquet", "arrow", "csv")
LAYOUTS = ("auto", "file", "days")
PIN_KEY = b"tickstore.pin"
_SUFFIX = {"parquet": ".parquet", "arrow": ".arrow", "csv": ".csv"}


class ExportError(TickstoreError, ValueError):
    """An export that cannot be written (unknown format, existing path); nothing is written."""


@dataclass(frozen=True)
class Export:
    """What ``export`` wrote: the files (one, or one per day), rows, and the pin of the read."""

    path: Path
    files: tuple[Path, ...]
    rows: int
    pin: Pin
    format: str

    def summary(self) -> str:
        where = str(self.path) if len(self.files) == 1 and self.files[0] == self.path else f"{self.path} ({len(self.files)} day files)"
        return f"exported {self.rows} rows of {self.pin.table} as {self.format} to {where} (as of {iso_utc([self.pin.as_of_time])[0]})"


def iso_utc(values) -> np.ndarray:
    """UTC datetimes -> ISO 8601 strings ending in Z, at the coarsest exact unit (ms/us/ns);
    None for NaT (``render.iso_times``)."""
    idx = pd.DatetimeIndex(values)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    return iso_times(idx.as_unit("ns").asi8, np.asarray(idx.isna()))


def export(table, symbols, start=None, end=None, *, path, format: str = "parquet", as_of=None, columns=None,
           layout: str = "auto", overwrite: bool = False) -> Export:
    """Write ``table.select(symbols, start, end, as_of=..., columns=...)`` to ``path``.

    Parameters
    ----------
    format
        ``parquet``, ``arrow`` (Arrow IPC file) or ``csv``.
    layout
        ``file``, ``days`` (hive-partitioned folder by UTC day) or ``auto`` (see the module
        docstring).
    overwrite
        Replace an existing ``path``.

    Raises
    ------
    ExportError, TickstoreError
    """
    if format not in FORMATS:
        raise ExportError(f"export format must be one of {FORMATS}, got {format!r}")
    if layout not in LAYOUTS:
        raise ExportError(f"export layout must be one of {LAYOUTS}, got {layout!r}")
    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise ExportError(f"{path} exists; choose another path or pass overwrite=True (--overwrite)")
    sel = table.select_pinned(symbols, start, end, as_of=as_of, columns=columns)
    frame, pin = sel.data, sel.pin
    days = np.unique(frame.index.asi8 // NS_PER_DAY) if len(frame) else np.array([], dtype=np.int64)
    by_day = layout == "days" or (layout == "auto" and len(days) > 1)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        if not by_day:
            _write(frame, pin, tmp, format)
            files = [path]
        else:
            tmp.mkdir(parents=True)
            files = []
            for day in days:
                lo, hi = int(day) * NS_PER_DAY, (int(day) + 1) * NS_PER_DAY
                part = frame[(frame.index.asi8 >= lo) & (frame.index.asi8 < hi)]
                rel = Path(f"date={np.datetime64(int(day), 'D')}") / f"part-0{_SUFFIX[format]}"
                (tmp / rel.parent).mkdir()
                _write(part, _day_pin(pin, lo, hi, table.schema.partition), tmp / rel, format)
                files.append(path / rel)
            (tmp / "_pin.json").write_text(pin.to_json())
        if path.exists():
            _remove(path)
        os.replace(tmp, path)
        if format == "csv" and not by_day:
            os.replace(_sidecar(tmp), _sidecar(path))
    finally:
        _remove(tmp)
        if format == "csv":
            _remove(_sidecar(tmp))
    return Export(path, tuple(files), len(frame), pin, format)


def _day_pin(pin: Pin, lo: int, hi: int, partition) -> Pin:
    """The pin of one day of a read: its window, the files of the partition holding it."""
    part = int(partition.floor(np.array([lo // NS_PER_DAY]))[0])
    start = lo if pin.start is None else max(pin.start, lo)
    end = hi if pin.end is None else min(pin.end, hi)
    # the read's row digest of a partition is the day's only where the day is the partition
    day_is_partition = partition.end(part) == part + 1
    parts = tuple(p for p in pin.parts if p.partition == part) if pin.parts is not None and day_is_partition else None
    return replace(pin, start=start, end=end, files=tuple(f for f in pin.files if f.partition == part), parts=parts)


def _write(frame: pd.DataFrame, pin: Pin, target: Path, fmt: str) -> None:
    meta = {PIN_KEY: pin.to_json().encode(), b"tickstore.table": pin.table.encode(),
            b"tickstore.as_of": iso_utc([pin.as_of_time])[0].encode()}
    if fmt == "csv":
        with open(target, "w", encoding="utf-8", newline="") as f:
            for chunk in csv_chunks(fields_of_frame(frame)):
                f.write(chunk)
        _sidecar(target).write_text(pin.to_json())
        return
    import pyarrow as pa

    t = pa.Table.from_pandas(frame, preserve_index=True)
    t = t.replace_schema_metadata({**(t.schema.metadata or {}), **meta})
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(t, target)
    else:
        import pyarrow.feather as feather

        feather.write_feather(t, target)


def _sidecar(p: Path) -> Path:
    return p.with_name(p.name + ".pin.json")


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def read_export_pin(path) -> Pin:
    """The pin an exported file (Parquet, Arrow, or CSV with its ``.pin.json``) carries."""
    path = Path(path)
    if path.suffix == ".csv":
        return Pin.from_json(_sidecar(path).read_text())
    import pyarrow as pa

    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        meta = pq.read_schema(path).metadata
    else:
        with pa.memory_map(str(path)) as src:
            meta = pa.ipc.open_file(src).schema.metadata
    if not meta or PIN_KEY not in meta:
        raise ExportError(f"{path} carries no tickstore pin")
    return Pin.from_json(meta[PIN_KEY].decode())

