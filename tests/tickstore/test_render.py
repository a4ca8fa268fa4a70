"""``tickstore.render``: the CLI's CSV and JSON are byte-identical to what pandas printed
before, for every dtype of every table schema, and its table shows exact values.

The oracle (``pandas_csv``, ``pandas_json``) is the pandas code ``emit`` ran before the
select path stopped importing pandas (``flat_frame(frame).to_csv(index=False)`` and the
JSON records), kept here verbatim; it is fed the frame ``Table.select`` returns (or
``rows_to_frame`` of the same columns), the renderer the numpy columns of
``Table.select_columns``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tickstore import Schema, Column, Tickstore
from tickstore.cli import emit, main
from tickstore.columns import Columns
from tickstore.frames import frame_to_rows, rows_to_frame
from tickstore.render import csv_chunks, fields_of_columns, fields_of_frame, iso_times, json_chunks, table
from tickstore.schemas import builtin_schema

from .helpers import SYM

ETH = "binance:ETH/USDT:USDT"
SOL = "bybit:SOL/USDT:USDT"
DAY = "2025-03-04"
DAY_NS = int(pd.Timestamp(DAY, tz="UTC").value)

# every table schema of tickstore/schemas.py (book and ohlcv stand for their families),
# and a user table with every other dtype a schema may declare
SCHEMAS = [builtin_schema(n) for n in ("trades", "agg_trades", "quotes", "book", "book_2", "book_diffs", "funding",
                                       "mark", "open_interest", "liquidations", "gaps", "ohlcv_1m", "ohlcv_4h")]
EVERY_DTYPE = Schema(
    "every_dtype",
    (Column("f64", "float64"), Column("f32", "float32"), Column("i64", "int64"), Column("i32", "int32"),
     Column("i16", "int16"), Column("i8", "int8"), Column("u8", "uint8"), Column("flag", "bool"),
     Column("when", "datetime"), Column("note", "str40"), Column("tag", "str4")),
)
SCHEMAS.append(EVERY_DTYPE)

FLOAT_SPECIALS = [np.nan, np.inf, -np.inf, -0.0, 0.0, 0.1, 0.1 + 0.2, 1e16, 1.5e16, 1e-5, 1.2345e-7, 5e-324,
                  1.7976931348623157e308, 123456789.12345679, 64123.15, -3.0, 2.5, 1 / 3]
STRINGS = ["", "plain", "a,b", 'say "hi"', "line1\nline2", "cr\rlf", "crlf\r\n", " lead", "trail ", "Zürich", "東京",
           "🙂", "tab\there", "'single'", ",", '"', "\\back", "x" * 40, "é" * 20]


# -- the oracle: emit before this change ------------------------------------------------------
def _old_iso_utc(values) -> np.ndarray:
    idx = pd.DatetimeIndex(values)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    ns = idx.as_unit("ns").asi8
    ok = ~idx.isna()
    unit = "ms" if not (ns[ok] % 1_000_000).any() else "us" if not (ns[ok] % 1_000).any() else "ns"
    out = np.datetime_as_string(idx.tz_convert(None).as_unit("ns").to_numpy(), unit=unit, timezone="UTC")
    out = out.astype(object)
    out[~ok] = None
    return out


def _old_flat_frame(frame: pd.DataFrame) -> pd.DataFrame:
    flat = frame.reset_index()
    for c in flat.columns:
        if isinstance(flat[c].dtype, pd.DatetimeTZDtype):
            flat[c] = _old_iso_utc(flat[c])
    return flat


def _old_json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def pandas_csv(frame: pd.DataFrame) -> str:
    return _old_flat_frame(frame).to_csv(index=False)


def pandas_json(frame: pd.DataFrame) -> str:
    flat = _old_flat_frame(frame)
    records = flat.astype(object).where(flat.notna(), None).to_dict(orient="records")
    return json.dumps(records, default=_old_json_default) + "\n"


# -- generated data: every awkward value of each dtype ---------------------------------------
def _values(col: Column, n: int, rng, row: np.ndarray) -> np.ndarray:
    if col.is_datetime:
        # ns precision in some columns, whole ms in others (the ISO unit is per column)
        step = 1 if col.name in ("recv_ts", "when") else 1_000_000
        return pd.DatetimeIndex(DAY_NS + rng.integers(0, 86_400_000_000_000 // step, n) * step, tz="UTC")
    if col.is_str:
        fits = [s for s in STRINGS if len(s.encode()) <= col.str_len]
        return np.array([fits[(i * 7 + int(r)) % len(fits)] for i, r in enumerate(rng.integers(0, 1000, n))], dtype=object)
    dt = np.dtype(col.dtype)
    if dt.kind == "f":
        v = np.round(rng.normal(60000, 500, n), int(rng.integers(0, 9))).astype(dt)
        with np.errstate(over="ignore"):  # float32: the largest float64 is inf
            specials = np.array(FLOAT_SPECIALS).astype(dt)
        v[::3] = specials[np.arange(len(v[::3])) % len(specials)]
        return v
    if dt.kind == "b":
        return rng.integers(0, 2, n).astype(bool)
    info = np.iinfo(dt)
    if col.name.endswith("_id") or col.name in ("ordinal", "update_id"):
        return (row + info.max // 2 - n).astype(dt)  # unique, for the tables keyed by ids
    v = rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
    v[:2] = [info.min, info.max]
    return v


def generated(schema: Schema, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` rows of ``schema`` in one UTC day: ts with ns precision and ties (unique where
    ts is in the key), every column's awkward values."""
    rng = np.random.default_rng(seed)
    unique_ts = schema.key is not None and "ts" in schema.key
    ts = np.sort(rng.choice(86_400_000_000_000, n, replace=False) if unique_ts else rng.integers(0, 86_400_000_000_000, n))
    if not unique_ts and n > 4:
        ts[3] = ts[2]  # a tie
    row = np.arange(n)
    data = {c.name: _values(c, n, rng, row) for c in schema.columns}
    return pd.DataFrame(data, index=pd.DatetimeIndex(DAY_NS + ts, tz="UTC", name="ts"))


def by_hand(schema: Schema, frames: dict[str, pd.DataFrame]) -> Columns:
    """What select_columns returns for a list of symbols, built from the stored columns."""
    parts = []
    for sym, frame in frames.items():
        rows = frame_to_rows(schema, frame)
        parts.append(Columns({**dict(rows.items()), "symbol": np.full(len(rows), sym)}))
    return Columns.concat(parts).sorted_by_ts()


def rendered(chunks) -> str:
    return "".join(chunks)


# -- the renderer on hand-built Columns --------------------------------------------------------
@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.name)
def test_csv_and_json_of_columns_equal_pandas_for_every_schema(schema):
    frame = generated(schema, 60)
    rows = frame_to_rows(schema, frame)
    want = rows_to_frame(schema, frame_to_rows(schema, frame))
    fields = fields_of_columns(rows, schema)
    assert rendered(csv_chunks(fields)) == pandas_csv(want)
    assert rendered(json_chunks(fields)) == pandas_json(want)
    # chunked output joins to the same text
    assert rendered(csv_chunks(fields, chunk_rows=7)) == pandas_csv(want)
    assert rendered(json_chunks(fields, chunk_rows=7)) == pandas_json(want)
    # a selection of columns, in the order asked
    cols = [c.name for c in schema.columns][::-1][:3]
    sub = Columns({"ts": rows["ts"], **{c: rows[c] for c in cols}})
    assert rendered(csv_chunks(fields_of_columns(sub, schema))) == pandas_csv(want[cols])
    assert rendered(json_chunks(fields_of_columns(sub, schema))) == pandas_json(want[cols])


@pytest.mark.parametrize("schema", [builtin_schema("trades"), builtin_schema("gaps"), EVERY_DTYPE], ids=lambda s: s.name)
def test_several_symbols_and_empty_results_equal_pandas(schema):
    frames = {SYM: generated(schema, 40, seed=1), ETH: generated(schema, 25, seed=2)}
    rows = by_hand(schema, frames)
    parts = []
    for sym, f in frames.items():
        part = rows_to_frame(schema, frame_to_rows(schema, f))
        part["symbol"] = sym
        parts.append(part)
    want = pd.concat(parts)
    want = want.iloc[np.argsort(want.index.asi8, kind="stable")]
    assert rendered(csv_chunks(fields_of_columns(rows, schema))) == pandas_csv(want)
    assert rendered(json_chunks(fields_of_columns(rows, schema))) == pandas_json(want)
    empty = rows[:0]
    want_empty = schema.empty_frame()
    want_empty["symbol"] = pd.Series([], dtype=object)
    assert rendered(csv_chunks(fields_of_columns(empty, schema))) == pandas_csv(want_empty)
    assert rendered(json_chunks(fields_of_columns(empty, schema))) == pandas_json(want_empty) == "[]\n"
    one = Columns({n: a for n, a in empty.items() if n != "symbol"})
    assert rendered(csv_chunks(fields_of_columns(one, schema))) == pandas_csv(schema.empty_frame())
    assert table(fields_of_columns(empty, schema)) == "(no rows)\n"


def test_frames_of_other_commands_print_as_pandas_did():
    """emit's frame path (versions, snapshots, prunes, plugins) goes through the same rules:
    NaT, None and NaN missing, object columns of mixed values, a RangeIndex, naive times."""
    frame = pd.DataFrame(
        {
            "committed_at": pd.to_datetime(["2025-01-01T00:00:01.5Z", None, "2025-01-02T00:00:00Z"], format="ISO8601"),
            "note": ["a,b", None, 'q"'],
            "mixed": [1, 2.5, np.nan],
            "rows": np.array([1, 2, 3], dtype="i8"),
            "ok": [True, False, True],
            "ratio": np.array([0.1, np.nan, np.inf], dtype="f4"),
            "naive": pd.to_datetime(["2025-01-01", None, "2025-01-03 12:00"], format="ISO8601"),
            "cat": pd.Categorical(["x", "y", None]),
            "np_scalars": np.array([np.int64(5), np.float64(0.25), "s"], dtype=object),
        }
    )
    frame["dates"] = pd.to_datetime(["2025-01-01", None, "2025-01-03"])  # pandas prints dates only
    frame["span"] = pd.to_timedelta(["1s", None, "2 days 00:00:00.5"])
    frame["count"] = pd.array([1, None, 3], dtype="Int64")
    for f in (frame, frame.set_index("rows"), frame.iloc[:0]):
        assert rendered(csv_chunks(fields_of_frame(f))) == pandas_csv(f)
        as_json = f.drop(columns=["naive", "dates", "span"])  # Timestamps/Timedeltas are no JSON (nor were they)
        assert rendered(json_chunks(fields_of_frame(as_json))) == pandas_json(as_json)
    with pytest.raises(TypeError):
        rendered(json_chunks(fields_of_frame(frame)))


def test_emit_of_the_audit_frames_equals_pandas(store, clock, capsys):
    from .helpers import trades

    t = store["trades"]
    t.insert(SYM, "2025-01-01", trades("2025-01-01 00:00", 5), reason="backfill, first", source="rest")
    clock.advance(1.25)
    t.insert(SYM, "2025-01-01", trades("2025-01-01 00:00", 6), reason='the "fix"\nsecond line')
    store.snapshot("s1", note="für den Referee")
    for frame in (t.versions(SYM, "2025-01-01"), store.snapshots(), store.prunes()):
        for fmt, oracle in (("csv", pandas_csv), ("json", pandas_json)):
            emit(frame, fmt)
            assert capsys.readouterr().out == oracle(frame)


def test_iso_times_pick_the_coarsest_exact_unit():
    base = DAY_NS
    assert iso_times(np.array([base])).tolist() == ["2025-03-04T00:00:00.000Z"]
    assert iso_times(np.array([base, base + 1_000])).tolist()[1] == "2025-03-04T00:00:00.000001Z"
    assert iso_times(np.array([base, base + 1])).tolist()[1] == "2025-03-04T00:00:00.000000001Z"
    assert iso_times(np.array([-1])).tolist() == ["1969-12-31T23:59:59.999999999Z"]
    missing = np.array([False, True])
    assert iso_times(np.array([base, 7]), missing).tolist() == ["2025-03-04T00:00:00.000Z", None]
    table_units = dict(units=("s", "ms", "us", "ns"), sep=" ", zone="+00:00")
    assert iso_times(np.array([base]), **table_units).tolist() == ["2025-03-04 00:00:00+00:00"]
    assert iso_times(np.array([base + 3_000_000]), **table_units).tolist() == ["2025-03-04 00:00:00.003+00:00"]


# -- the table ------------------------------------------------------------------------------------
def _table_of(data: dict, schema: Schema | None = None) -> list[str]:
    schema = schema or EVERY_DTYPE
    return table(fields_of_columns(Columns(data), schema)).splitlines()


def test_table_shows_every_float_exactly_and_aligns_decimal_points():
    values = np.array([64123.15, 0.1 + 0.2, 1e-8, np.nan, -np.inf, 123456789.12345679, 5.0, 1e16])
    ts = DAY_NS + np.arange(len(values)) * 1_000_000_000
    lines = _table_of({"ts": ts, "f64": values})
    assert lines[0].split() == ["ts", "f64"]
    cells = [line.split(None, 2)[2].strip() for line in lines[1:]]
    assert cells == ["64123.15", "0.30000000000000004", "1e-08", "NaN", "-inf", "123456789.12345679", "5.0", "1e+16"]
    for cell, value in zip(cells, values):
        assert float(cell.replace("NaN", "nan")) == value or np.isnan(value)
    # decimal points line up (the integer parts are right-aligned before them)
    assert len({line.index(".") for line in lines[1:] if "." in line}) == 1, lines
    assert lines[1].index(".") == lines[5].index("-inf") + 4 == lines[4].index("NaN") + 3 == lines[3].index("e-08")
    f32 = _table_of({"ts": ts[:2], "f32": np.array([0.1, 1 / 3], dtype="f4")})
    assert [line.split()[-1] for line in f32[1:]] == ["0.1", "0.33333334"]  # float32's own shortest text


def test_table_times_keep_their_precision_and_ts_comes_first():
    ts = np.array([DAY_NS, DAY_NS + 1], dtype=np.int64)
    lines = _table_of({"ts": ts, "when": np.array([DAY_NS + 3_000_000, DAY_NS]), "i64": np.array([7, -12])})
    assert lines[0].split() == ["ts", "when", "i64"]
    assert lines[0].startswith("ts ")
    assert lines[1].startswith("2025-03-04 00:00:00.000000000+00:00  2025-03-04 00:00:00.003+00:00")
    assert lines[2].startswith("2025-03-04 00:00:00.000000001+00:00  2025-03-04 00:00:00.000+00:00")
    assert [line[-3:] for line in lines] == ["i64", "  7", "-12"]  # right-aligned
    whole = _table_of({"ts": np.array([DAY_NS, DAY_NS + 2_000_000_000])})
    assert whole == ["ts", "2025-03-04 00:00:00+00:00", "2025-03-04 00:00:02+00:00"]


def test_table_strings_are_escaped_and_aligned_by_display_width():
    notes = np.array([s.encode() for s in ["a\nb", "東京", "plain", "", "bell\x07"]], dtype="S40")
    ts = DAY_NS + np.arange(5, dtype=np.int64)
    lines = _table_of({"ts": ts, "note": notes, "u8": np.array([1, 2, 3, 4, 255], dtype="u1"),
                       "symbol": np.array([SYM, ETH, SOL, SYM, ETH])})
    assert len(lines) == 6
    body = [line.split("+00:00  ", 1)[1] for line in lines[1:]]
    assert body[0].startswith("a\\nb ") and body[4].startswith("bell\\x07")
    assert body[1].startswith("東京  ")
    # the u8 column ends at one display column on every line (東京 is two columns per character)
    ends = [len(b[: b.index(" binance") if " binance" in b else b.index(" bybit")].rstrip()) + b.count("東") + b.count("京")
            for b in body]
    assert len(set(ends)) == 1, body
    assert lines[1].rstrip().endswith(SYM) and lines[3].rstrip().endswith(SOL)


# -- the command: tickstore select on a store of every schema -------------------------------------
@pytest.fixture
def every_table(store):
    """Every schema's table with two symbols (ETH's times partly equal to BTC's: ties across
    symbols keep the order of the symbols asked for)."""
    for schema in SCHEMAS:
        t = store.create_table(schema.name, schema) if schema is EVERY_DTYPE else store[schema.name]
        btc = generated(schema, 90, seed=1)
        eth = generated(schema, 60, seed=2)
        eth.index = pd.DatetimeIndex(np.sort(np.r_[btc.index.asi8[:30], eth.index.asi8[30:]]), tz="UTC", name="ts")
        t.insert(SYM, DAY, btc, reason="test")
        t.insert(ETH, DAY, eth, reason="test")
    store.close()
    return store.root


def _cli(root, *args) -> str:
    result = CliRunner().invoke(main, ["--root", str(root), "select", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout_bytes.decode("utf-8")  # .stdout turns \r\n into \n


CASES = {
    "one symbol": ([SYM], {}, None),
    "first 7": ([SYM], {}, 7),
    "two symbols": ([SYM, ETH], {}, None),
    "two symbols, first 40": ([ETH, SYM], {}, 40),
    "columns": ([SYM], {"columns": "last"}, 5),
    "empty": ([SYM], {"start": "2025-03-05"}, None),
    "empty, two symbols": ([SYM, ETH], {"end": "2025-03-04"}, 3),
    "unknown symbol": ([SOL], {}, None),
    "as of before the data": ([SYM, ETH], {"as_of": "2024-12-31"}, None),
}


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.name)
def test_select_csv_and_json_are_byte_identical_to_pandas(every_table, schema):
    t = Tickstore(every_table)[schema.name]
    for symbols, kw, n in CASES.values():
        cols = [c.name for c in schema.columns][::-1][:3] if kw.get("columns") else None
        target = symbols[0] if len(symbols) == 1 else symbols
        frame = t.select(target, kw.get("start"), kw.get("end"), as_of=kw.get("as_of"), columns=cols)
        frame = frame if n is None else frame.head(n)
        args = [schema.name, *symbols]
        for opt in ("start", "end", "as_of"):
            if opt in kw:
                args += [f"--{opt.replace('_', '-')}", kw[opt]]
        if cols:
            args += ["--columns", ",".join(cols)]
        if n is not None:
            args += ["-n", str(n)]
        assert _cli(every_table, *args, "-f", "csv") == pandas_csv(frame), (symbols, kw, n)
        assert _cli(every_table, *args, "-f", "json") == pandas_json(frame), (symbols, kw, n)
        if frame.empty:
            assert _cli(every_table, *args) == "(no rows)\n"


def test_select_table_shows_the_stored_values_exactly(every_table):
    frame = Tickstore(every_table)["every_dtype"].select(SYM).head(12)
    lines = _cli(every_table, "every_dtype", SYM, "-n", "12").splitlines()
    assert len(lines) == 13 and lines[0].split()[:3] == ["ts", "f64", "f32"]
    cells = [line.split() for line in lines[1:]]
    assert [c[0] + " " + c[1] for c in cells] == [str(ts) for ts in frame.index]  # full ns precision
    assert [c[2] for c in cells] == [repr(v) if not np.isnan(v) else "NaN" for v in frame["f64"]]
    f32 = frame["f32"].to_numpy()
    assert [c[3] for c in cells] == [str(v) if not np.isnan(v) else "NaN" for v in f32]  # float32's own shortest text
    assert all(np.float32(c[3]) == v for c, v in zip(cells, f32) if not np.isnan(v))  # and it reads back as stored
    for c, (_, row) in zip(cells, frame.iterrows()):
        assert [int(x) for x in c[4:9]] == [row["i64"], row["i32"], row["i16"], row["i8"], row["u8"]]
        assert float(c[2].replace("NaN", "nan")) == row["f64"] or np.isnan(row["f64"])


def test_export_csv_is_the_text_select_prints(every_table, tmp_path):
    from tickstore.export import export

    t = Tickstore(every_table)["gaps"]
    frame = t.select([SYM, ETH])
    export(t, [SYM, ETH], path=tmp_path / "gaps.csv", format="csv")
    assert (tmp_path / "gaps.csv").read_bytes() == pandas_csv(frame).encode()  # \r\n inside quoted strings kept
    assert _cli(every_table, "gaps", SYM, ETH, "-f", "csv").encode() == pandas_csv(frame).encode()


def test_n_slices_the_columns_before_they_are_rendered(every_table, monkeypatch):
    import tickstore.render as render

    seen = []
    real = render.fields_of_columns

    def spy(rows, schema):
        seen.append(len(rows))
        return real(rows, schema)

    monkeypatch.setattr(render, "fields_of_columns", spy)
    for n, fmt in ((3, "table"), (0, "csv"), (5, "json")):
        _cli(every_table, "gaps", SYM, ETH, "-n", str(n), "-f", fmt)
    _cli(every_table, "gaps", SYM, "-f", "csv")
    assert seen == [3, 0, 5, 90]
    assert _cli(every_table, "gaps", SYM, "-n", "0") == "(no rows)\n"
