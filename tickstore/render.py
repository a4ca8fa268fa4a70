"""Rows as text: the CSV, JSON and table output of the command line.

One set of rules, whatever the rows come from: the numpy columns of
``Table.select_columns`` (``fields_of_columns``: nothing here imports pandas) or a frame a
command built (``fields_of_frame``: its index as the first columns; ``export`` writes its
CSV files through it too). Either becomes a list of ``Field`` (name, kind, values, missing)
and is printed by:

``csv_chunks``
    The text ``DataFrame.to_csv(index=False)`` writes, byte for byte: a header line, the
    stdlib ``csv`` writer's minimal quoting (fields holding ``,`` ``"`` or a line break
    are quoted, quotes doubled), ``os.linesep`` line ends, floats as numpy's shortest
    round-trip text (``0.1``, ``1e+16``, ``inf``), NaN and missing as an empty field,
    bools ``True``/``False``, times per ``iso_times``.
``json_chunks``
    One JSON array of records (``{"column": value, ...}`` per row, ``json.dumps``
    spacing), as ``[...]`` of ``DataFrame.to_dict("records")``: numbers as JSON numbers
    (float32 values as the float64 they are exactly), NaN and missing as ``null``, inf as
    ``Infinity``, times per ``iso_times``, non-ASCII escaped ``\\uXXXX``.
``table``
    An aligned table for reading: one header line, then one line per row, columns two
    spaces apart; ``ts`` (and other times) as ``2024-08-08 12:00:00.123+00:00`` with as
    many fraction digits (0, 3, 6 or 9) as the column needs to be exact; every float as
    its shortest round-trip text (nothing rounded: ``64123.15``, ``0.1``, ``1e-08``,
    ``NaN``, ``inf``), aligned on the decimal point; integers and bools right-aligned;
    strings left-aligned, control characters shown escaped (``\\n``, ``\\t``, ``\\x1b``);
    ``(no rows)`` when there are none.

Both streamed formats are yielded in chunks of ``CHUNK_ROWS`` rows, so printing a large
selection holds one chunk's text at a time.
"""

from __future__ import annotations

import csv
import io
import json
import os
import unicodedata
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .errors import CorruptionError

__all__ = ["Field", "fields_of_columns", "fields_of_frame", "csv_chunks", "json_chunks", "table", "iso_times"]

CHUNK_ROWS = 50_000
NO_ROWS = "(no rows)"
_UNIT_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


@dataclass(frozen=True)
class Field:
    """One output column.

    ``kind``: ``time`` (int64 ns UTC), ``float``, ``int`` (ints and bools), ``bytes``
    (fixed-width UTF-8, as stored), ``text`` (any Python objects, printed with ``str``).
    ``missing``: a bool mask of values to print as missing (times and text), or None.
    ``csv``: the CSV text of each value where pandas formats it (dtypes of frames that no
    rule here covers: naive datetimes, timedeltas, categoricals, extension types), or None.
    """

    name: object
    kind: str
    values: np.ndarray
    missing: np.ndarray | None = None
    csv: np.ndarray | None = None

    def __getitem__(self, rows: slice) -> "Field":
        return Field(self.name, self.kind, self.values[rows], *(None if a is None else a[rows] for a in (self.missing, self.csv)))


# -- sources --------------------------------------------------------------------------------
def fields_of_columns(rows, schema) -> list[Field]:
    """The fields of ``Columns`` read from a table of ``schema`` (``Table.select_columns``):
    ``ts`` and the schema's datetime columns are times, ``S`` columns UTF-8 strings."""
    out = []
    for name, values in rows.items():
        kind = _kind(values.dtype)
        if name == "ts" or (kind == "int" and name in schema.names and schema.column(name).is_datetime):
            kind = "time"
        out.append(Field(name, kind, values))
    return out


def fields_of_frame(frame) -> list[Field]:
    """The fields of a pandas frame: its index as the first column(s) (``reset_index``),
    tz-aware datetimes as times (NaT missing), numpy numbers and bools as themselves,
    object columns as text (``isna`` values missing); any other dtype as text whose CSV
    cells are pandas' own (``to_csv`` of that column)."""
    import pandas as pd

    flat = frame.reset_index()
    out = []
    for i, name in enumerate(flat.columns):
        s = flat.iloc[:, i]
        dt = s.dtype
        if isinstance(dt, pd.DatetimeTZDtype):
            missing = s.isna().to_numpy()
            ns = np.asarray(s.dt.tz_convert("UTC").dt.as_unit("ns").array.asi8)
            out.append(Field(name, "time", ns, missing if missing.any() else None))
        elif isinstance(dt, np.dtype) and dt.kind in "fiub":
            out.append(Field(name, _kind(dt), s.to_numpy()))
        else:
            missing = s.isna().to_numpy()
            cells = None if dt == object else _pandas_csv_cells(s)
            out.append(Field(name, "text", s.to_numpy(dtype=object), missing if missing.any() else None, cells))
    return out


def _pandas_csv_cells(series) -> np.ndarray:
    """pandas' CSV text of each value of ``series`` (read back from its ``to_csv``)."""
    text = series.to_frame().to_csv(index=False, header=False, lineterminator="\n")
    return np.array([row[0] if row else "" for row in csv.reader(io.StringIO(text))], dtype=object)


def _kind(dtype: np.dtype) -> str:
    if dtype.kind == "f":
        return "float"
    if dtype.kind in "iub":
        return "int"
    if dtype.kind == "S":
        return "bytes"
    return "text"


# -- values -----------------------------------------------------------------------------------
def iso_times(ns: np.ndarray, missing: np.ndarray | None = None, *, units=("ms", "us", "ns"), sep: str = "T",
              zone: str = "Z") -> np.ndarray:
    """int64 ns UTC -> ISO 8601 strings (object array; None where ``missing``), all at the
    coarsest of ``units`` that keeps every value exact: ``2024-08-08T12:00:00.123Z``.

    The table shows them as ``units=("s", "ms", "us", "ns"), sep=" ", zone="+00:00"``.
    """
    ns = np.asarray(ns, dtype=np.int64)
    known = ns if missing is None else ns[~missing]
    unit = next((u for u in units[:-1] if not (known % _UNIT_NS[u]).any()), units[-1])
    text = np.datetime_as_string(ns.view("M8[ns]"), unit=unit)
    if sep != "T" or zone:
        text = np.char.add(np.char.replace(text, "T", sep) if sep != "T" else text, zone)
    out = text.astype(object)
    if missing is not None:
        out[missing] = None
    return out


def _decoded(field: Field) -> np.ndarray:
    """A bytes field's UTF-8 values as str (object array)."""
    try:
        return np.array([b.decode("utf-8") for b in field.values.tolist()], dtype=object)
    except UnicodeDecodeError as exc:
        raise CorruptionError(f"column {field.name!r} holds bytes that are not UTF-8 ({exc}); the data is damaged") from None


def _csv_cells(field: Field) -> list:
    if field.kind == "time":
        out = iso_times(field.values, field.missing)
        if field.missing is not None:
            out[field.missing] = ""
        return out.tolist()
    if field.kind == "float":
        text = field.values.astype(str)
        text[np.isnan(field.values)] = ""
        return text.tolist()
    if field.kind == "int":
        return field.values.astype(str).tolist()
    if field.kind == "bytes":
        return _decoded(field).tolist()
    if field.csv is not None:
        return field.csv.tolist()
    cells = field.values.copy()
    if field.missing is not None:
        cells[field.missing] = ""
    return cells.tolist()


def _json_values(field: Field) -> list:
    if field.kind == "time":
        return iso_times(field.values, field.missing).tolist()
    if field.kind == "float":
        values = field.values.astype(object)  # Python floats (float32: the float64 it is exactly)
        values[np.isnan(field.values)] = None
        return values.tolist()
    if field.kind == "int":
        return field.values.tolist()
    if field.kind == "bytes":
        return _decoded(field).tolist()
    values = field.values.copy()
    if field.missing is not None:
        values[field.missing] = None
    return values.tolist()


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _rows(fields: list[Field]) -> int:
    return len(fields[0].values) if fields else 0


# -- formats ----------------------------------------------------------------------------------
def csv_chunks(fields: list[Field], chunk_rows: int = CHUNK_ROWS) -> Iterator[str]:
    """The CSV text of ``fields`` (header line first), ``chunk_rows`` rows at a time."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=os.linesep, quoting=csv.QUOTE_MINIMAL, quotechar='"', doublequote=True)
    writer.writerow([str(f.name) for f in fields])
    n = _rows(fields)
    for a in range(0, n, chunk_rows):
        writer.writerows(zip(*(_csv_cells(f[a : a + chunk_rows]) for f in fields)))
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    if n == 0:
        yield buf.getvalue()


def json_chunks(fields: list[Field], chunk_rows: int = CHUNK_ROWS) -> Iterator[str]:
    """One JSON array of records, ``chunk_rows`` records at a time (joined: the text of
    ``json.dumps(records)``), then a newline."""
    names = [f.name for f in fields]
    yield "["
    sep = ""
    for a in range(0, _rows(fields), chunk_rows):
        records = [dict(zip(names, row)) for row in zip(*(_json_values(f[a : a + chunk_rows]) for f in fields))]
        yield sep + json.dumps(records, default=_json_default)[1:-1]
        sep = ", "
    yield "]\n"


def table(fields: list[Field]) -> str:
    """The aligned table of ``fields`` (see the module docstring), ending in a newline."""
    if _rows(fields) == 0:
        return NO_ROWS + "\n"
    columns = [_table_column(f) for f in fields]
    lines = ["  ".join(c[0] for c in columns).rstrip()]
    lines += ["  ".join(cells).rstrip() for cells in zip(*(c[1:] for c in columns))]
    return "\n".join(lines) + "\n"


def _table_column(field: Field) -> list[str]:
    """The header and cells of one column, padded to one width."""
    header = str(field.name)
    left = field.kind in ("bytes", "text")
    if field.kind == "time":
        cells = iso_times(field.values, field.missing, units=("s", "ms", "us", "ns"), sep=" ", zone="+00:00")
        cells = ["NaT" if c is None else c for c in cells.tolist()]
        left = True
    elif field.kind == "float":
        cells = _aligned_floats(field.values)
    elif field.kind == "int":
        cells = field.values.astype(str).tolist()
    else:
        values = _decoded(field) if field.kind == "bytes" else field.values
        missing = field.missing if field.missing is not None else np.zeros(len(values), bool)
        cells = ["NaN" if m else _printable(str(v)) for v, m in zip(values.tolist(), missing.tolist())]
    widths = [_width(c) for c in cells]
    width = max([_width(header), *widths])
    if left:
        return [header.ljust(width)] + [c + " " * (width - w) for c, w in zip(cells, widths)]
    return [header.rjust(width)] + [" " * (width - w) + c for c, w in zip(cells, widths)]


def _aligned_floats(values: np.ndarray) -> list[str]:
    """Shortest round-trip text of each float, padded so that decimal points line up."""
    text = values.astype(str).tolist()
    text = ["NaN" if t == "nan" else t for t in text]
    heads, tails = [], []
    for t in text:
        cut = next((i for i, ch in enumerate(t) if ch in ".e"), len(t))
        heads.append(t[:cut])
        tails.append(t[cut:])
    hw = max(map(len, heads))
    tw = max(map(len, tails))
    return [h.rjust(hw) + t.ljust(tw) for h, t in zip(heads, tails)]


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _printable(s: str) -> str:
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else _ESCAPES.get(c) or repr(c)[1:-1] for c in s)


def _width(s: str) -> int:
    """Terminal columns of ``s``: East Asian wide characters take two, combining marks none."""
    if s.isascii():
        return len(s)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)
