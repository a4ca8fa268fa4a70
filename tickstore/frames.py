"""Frames in and out: validation of user frames and conversion to/from on-disk rows.

A frame is indexed by event time (``DatetimeIndex`` named ``ts``, UTC, sorted, ties
allowed) and has exactly the schema's columns. Everything is checked before anything is
written; a refused frame changes nothing on disk.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .clock import TIME_RANGE, ns_to_timestamp
from .columns import Columns
from .errors import DuplicateKeyError, FrameError, SchemaError
from .schemas import Column, Schema

__all__ = ["frame_to_rows", "rows_to_frame", "check_unique_key", "key_values", "keys_held"]


def _utc_ns(values, *, what: str) -> np.ndarray:
    """tz-aware datetimes (index or series) -> int64 ns UTC; refuses naive and NaT."""
    dtype = getattr(values, "dtype", None)
    if not isinstance(dtype, pd.DatetimeTZDtype):
        if dtype is not None and np.issubdtype(dtype, np.datetime64):
            raise SchemaError(f"{what} is naive datetime64; localise it first (e.g. .tz_localize('UTC'))")
        raise SchemaError(f"{what} must be tz-aware datetimes, got dtype {dtype}")
    if str(dtype.tz) != "UTC":
        values = values.tz_convert("UTC") if isinstance(values, pd.DatetimeIndex) else values.dt.tz_convert("UTC")
    if dtype.unit != "ns":
        try:
            values = values.as_unit("ns") if isinstance(values, pd.DatetimeIndex) else values.dt.as_unit("ns")
        except (OverflowError, pd.errors.OutOfBoundsDatetime):
            raise FrameError(f"{what} holds times outside {TIME_RANGE}") from None
    ns = np.asarray(values.asi8 if isinstance(values, pd.DatetimeIndex) else values.array.asi8)
    if len(ns) and (ns == np.iinfo(np.int64).min).any():
        pos = int(np.argmax(ns == np.iinfo(np.int64).min))
        raise FrameError(f"{what} has NaT at position {pos}; every row needs a time")
    return ns


def _utf8(value: str, what: str) -> bytes:
    """A str column value as the UTF-8 bytes stored, if they read back as the same str.

    Fixed-width bytes drop trailing NULs, and a lone surrogate has no UTF-8 form: both
    would come back different, so both are refused.
    """
    try:
        b = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SchemaError(f"{what}: {value[:40]!r} is not valid Unicode ({exc.reason} at {exc.start}); it cannot be stored") from None
    if b.endswith(b"\x00"):
        raise SchemaError(f"{what}: {value[:40]!r} ends with a NUL character, which fixed-width strings cannot keep; strip it")
    return b


def _column_values(col: Column, series: pd.Series, table: str) -> np.ndarray:
    what = f"{table}.{col.name}"
    if col.is_datetime:
        return _utc_ns(series, what=what)
    src = series.dtype
    if col.is_str:
        if not (src == object or isinstance(src, pd.StringDtype)):
            raise SchemaError(f"{what} must hold str, got dtype {src}")
        vals = series.to_numpy(dtype=object)
        bad = [v for v in vals[:1000] if not isinstance(v, str)] if len(vals) else []
        if bad or any(not isinstance(v, str) for v in vals):
            v = bad[0] if bad else next(v for v in vals if not isinstance(v, str))
            raise SchemaError(f"{what} must hold str, found {type(v).__name__} {v!r}")
        enc = np.array([_utf8(v, what) for v in vals], dtype=object)
        too_long = [v for v in enc if len(v) > col.str_len]
        if too_long:
            raise SchemaError(f"{what}: {too_long[0][:40]!r}... is {len(too_long[0])} bytes; at most {col.str_len}")
        return enc.astype(col.disk_dtype) if len(enc) else np.zeros(0, col.disk_dtype)
    dst = col.disk_dtype
    if not isinstance(src, np.dtype) or src.kind not in "biuf":
        raise SchemaError(f"{what} must be {dst}, got dtype {src}")
    arr = series.to_numpy()
    if np.can_cast(src, dst, casting="safe") and not (src.kind == "b" and dst.kind != "b"):
        return arr.astype(dst, copy=False)
    if src.kind in "iu" and dst.kind in "iu":
        # an int64 column of +1/-1 for an int8 'side' is fine if every value fits
        info = np.iinfo(dst)
        if len(arr) == 0 or (arr.min() >= info.min and arr.max() <= info.max):
            return arr.astype(dst)
        raise SchemaError(f"{what}: values {arr.min()}..{arr.max()} do not fit {dst}")
    if src.kind == "f" and dst.kind == "f":  # float64 -> float32 columns, on purpose
        return arr.astype(dst)
    raise SchemaError(f"{what} must be {dst}, got dtype {src} (would lose information)")


def frame_to_rows(schema: Schema, df, *, lo: int | None = None, hi: int | None = None, where: str = "") -> Columns:
    """Validate ``df`` against ``schema`` and return its on-disk columns.

    Parameters
    ----------
    lo, hi
        If given, every ``ts`` must lie in ``[lo, hi)`` (ns UTC); ``where`` names that
        window in the error.

    Columns with a ``default`` (see ``Column.default``) may be left out of ``df``: every
    row then gets the default.

    Raises
    ------
    SchemaError
        Missing/extra columns, wrong dtypes, naive times.
    FrameError
        Not a DataFrame, bad index, NaT, unsorted or out-of-window timestamps.
    """
    if not isinstance(df, pd.DataFrame):
        raise FrameError(f"expected a pandas DataFrame indexed by ts, got {type(df).__name__}")
    if not isinstance(df.index, pd.DatetimeIndex):
        raise FrameError(
            f"{schema.name}: the index must be a DatetimeIndex named 'ts' (event time, UTC), "
            f"got {type(df.index).__name__}; use df.set_index('ts')"
        )
    if df.index.name not in (None, "ts"):
        raise FrameError(f"{schema.name}: the index is named {df.index.name!r}; it must be 'ts' (event time)")
    ts = _utc_ns(df.index, what=f"{schema.name} index ts")
    names = list(df.columns)
    defaults = schema.defaults
    missing = [c for c in schema.names if c not in names and c not in defaults]
    extra = [c for c in names if c not in schema.names]
    if missing or extra or len(set(names)) != len(names):
        raise SchemaError(
            f"{schema.name}: columns do not match the schema; missing {missing}, unexpected {extra}; "
            f"expected exactly {schema.names}"
            + (f" (columns {sorted(defaults)} may be left out: they default to {defaults})" if defaults else "")
        )
    if len(ts) > 1:
        d = np.diff(ts)
        if (d < 0).any():
            pos = int(np.argmax(d < 0)) + 1
            raise FrameError(
                f"{schema.name}: ts is not sorted: row {pos} ({ns_to_timestamp(ts[pos])}) comes after "
                f"{ns_to_timestamp(ts[pos - 1])}; sort with df.sort_index(kind='stable')"
            )
    if len(ts) and lo is not None and ts[0] < lo:
        raise FrameError(f"{schema.name}: ts {ns_to_timestamp(ts[0])} is outside {where} (starts {ns_to_timestamp(lo)})")
    if len(ts) and hi is not None and ts[-1] >= hi:
        raise FrameError(f"{schema.name}: ts {ns_to_timestamp(ts[-1])} is outside {where} (ends {ns_to_timestamp(hi)})")
    data = {"ts": ts}
    for col in schema.columns:
        if col.name in names:
            data[col.name] = _column_values(col, df[col.name], schema.name)
        else:  # a column with a default the frame leaves out (a frame of an older schema)
            data[col.name] = np.full(len(ts), col.default, dtype=col.disk_dtype)
    return Columns(data)


def key_values(schema: Schema, rows: Columns):
    """The identity of each row per the schema key: an int64 array for one-column keys,
    a pandas MultiIndex for composite keys; None for tables without a key."""
    if schema.key is None:
        return None
    if len(schema.key) == 1:
        return rows[schema.key[0]]
    return pd.MultiIndex.from_arrays([rows[k] for k in schema.key])


def keys_held(schema: Schema, rows: Columns, stored: Columns) -> np.ndarray:
    """Mask of ``rows`` whose key (the schema's, not None) is also a key of ``stored``."""
    new_keys, old_keys = key_values(schema, rows), key_values(schema, stored)
    return new_keys.isin(old_keys) if isinstance(new_keys, pd.MultiIndex) else np.isin(new_keys, old_keys)


def check_unique_key(schema: Schema, rows: Columns) -> Columns:
    """Drop rows that repeat an earlier row exactly; refuse rows that repeat a key with
    other values (two different trades cannot share a trade id)."""
    keys = key_values(schema, rows)
    if keys is None or len(rows) < 2:
        return rows
    if not isinstance(keys, pd.MultiIndex) and (keys[1:] > keys[:-1]).all():
        return rows  # the common case: ids increase with time, so they are unique
    dup = pd.Index(keys).duplicated(keep="first") if not isinstance(keys, pd.MultiIndex) else keys.duplicated(keep="first")
    if not dup.any():
        return rows
    whole = pd.MultiIndex.from_arrays([rows[n] for n in rows.names]).duplicated(keep="first")
    conflict = dup & ~whole
    if conflict.any():
        pos = int(np.argmax(conflict))
        raise DuplicateKeyError(
            f"{schema.name}: row {pos} repeats key {schema.key}={tuple(rows[k][pos] for k in schema.key)} "
            f"with different values; a key identifies one row"
        )
    return rows[~dup]


_UTC = pd.DatetimeTZDtype("ns", "UTC")


def _utc_index(ns: np.ndarray, name) -> pd.DatetimeIndex:
    """int64 ns since the epoch -> a UTC DatetimeIndex, without a copy.

    ``DatetimeIndex(values, tz="UTC")`` converts value by value (7 ms per 1M rows) and
    ``tz_localize("UTC")`` still validates (2 ms); the values already are UTC
    nanoseconds, so on the pinned pandas they are wrapped as they are (0.1 ms).
    """
    m8 = ns.view("M8[ns]")
    try:
        return pd.DatetimeIndex(pd.arrays.DatetimeArray._simple_new(m8, dtype=_UTC), name=name, copy=False)
    except (AttributeError, TypeError):  # another pandas: the public path
        return pd.DatetimeIndex(m8, name=name).tz_localize("UTC")


def rows_to_frame(schema: Schema, rows: Columns, columns: list[str] | None = None) -> pd.DataFrame:
    """On-disk columns -> a frame indexed by ts with ``columns`` (default: all).

    Numeric columns become the frame's blocks without a copy; ``rows`` must not be
    reused by the caller.
    """
    cols = schema.columns if columns is None else [schema.column(c) for c in columns]
    index = _utc_index(rows["ts"], "ts")
    data = {}
    for c in cols:
        v = rows[c.name]
        if c.is_datetime:
            data[c.name] = _utc_index(v, None)
        elif c.is_str:
            data[c.name] = np.char.decode(v, "utf-8").astype(object) if len(v) else np.zeros(0, object)
        else:
            data[c.name] = v
    frame = pd.DataFrame(data, index=index, copy=False)
    frame.columns.name = None
    return frame
