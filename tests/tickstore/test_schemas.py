"""Schemas: trade kinds, the agg_trades table, column defaults (old frames, old files) and
the clock each table's ``ts`` is (in the schema and in ``tickstore ls -l``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
from click.testing import CliRunner

import tickstore.schemas as schemas_mod
from tickstore import Column, Schema, SchemaError, Tickstore, TradeKind, TsClock
from tickstore.cli import main
from tickstore.schemas import builtin_schema

from .helpers import SYM, trades


def test_trade_kind_is_a_documented_int8_enum():
    assert [(k.name, int(k)) for k in TradeKind] == [("MARKET", 0), ("LIQUIDATION", 1), ("ADL", 2), ("BLOCK", 3), ("OTHER", 4)]
    col = builtin_schema("trades").column("kind")
    assert col.dtype == "int8" and col.default == TradeKind.MARKET == 0
    for k in TradeKind:  # every value is explained in the docstring
        assert k.name in TradeKind.__doc__


@pytest.mark.parametrize(
    "table, clock",
    [
        ("trades", TsClock.TRANSACTION),
        ("agg_trades", TsClock.TRANSACTION),
        ("liquidations", TsClock.TRANSACTION),
        ("quotes", TsClock.EVENT),
        ("book", TsClock.EVENT),
        ("book_20", TsClock.EVENT),
        ("book_diffs", TsClock.EVENT),
        ("mark", TsClock.EVENT),
        ("funding", TsClock.EVENT),
        ("open_interest", TsClock.EVENT),
        ("ohlcv_1m", TsClock.EVENT),
        ("gaps", TsClock.EVENT),
    ],
)
def test_every_builtin_table_declares_its_clock(table, clock):
    assert builtin_schema(table).clock is clock


def test_schema_json_round_trips_defaults_and_clock():
    sc = Schema("fills", (Column("px", "float64"), Column("flag", "int8", 3)), clock=TsClock.RECEIVE)
    d = json.loads(json.dumps(sc.to_json()))
    assert d["columns"] == [["px", "float64"], ["flag", "int8", 3]] and d["clock"] == "receive"
    assert Schema.from_json(d) == sc
    old = {"name": "fills", "columns": [["px", "float64"]]}  # written before defaults and clocks
    assert Schema.from_json(old).clock is None and Schema.from_json(old).defaults == {}
    with pytest.raises(SchemaError, match="malformed schema"):
        Schema.from_json({**d, "clock": "wall clock"})


@pytest.mark.parametrize(
    "column, match",
    [
        (Column("t", "datetime", 0), "cannot have default"),
        (Column("s", "str8", 1), "cannot have default"),
        (Column("f", "int8", 300), "does not fit"),
        (Column("f", "int8", 1.5), "does not fit"),
        (Column("f", "int8", True), "cannot have default"),
    ],
)
def test_bad_defaults_are_refused(column, match):
    with pytest.raises(SchemaError, match=match):
        Schema("x", (column,))


def test_kind_is_stored_and_always_returned(store):
    df = trades("2024-08-08", 500)
    assert set(df["kind"]) == {0, 1, 2}
    store["trades"].insert(SYM, "2024-08-08", df)
    out = store["trades"].select(SYM)
    pdt.assert_frame_equal(out, df, check_freq=False)
    assert out["kind"].dtype == np.int8
    market = store["trades"].select(SYM, columns=["price", "kind"]).query("kind == 0")
    assert len(market) == int((df["kind"] == TradeKind.MARKET).sum())


def test_frames_without_kind_default_to_market_and_bad_kinds_are_refused(store):
    df = trades("2024-08-08", 100).drop(columns="kind")
    store["trades"].append(SYM, df.iloc[:60])
    store["trades"].insert(SYM, "2024-08-09", trades("2024-08-09", 10, first_id=9000).drop(columns="kind"))
    store["trades"].append(SYM, df.iloc[50:])  # overlap: deduplicated by trade id as before
    out = store["trades"].select(SYM, "2024-08-08", "2024-08-09")
    pdt.assert_frame_equal(out, df.assign(kind=np.int8(TradeKind.MARKET)), check_freq=False)
    before = store["trades"].select(SYM)
    bad = trades("2024-08-10", 3, first_id=20_000).assign(kind=np.array([0, 1, 200], dtype="i8"))
    with pytest.raises(SchemaError, match=r"trades.kind: values 0..200 do not fit int8"):
        store["trades"].append(SYM, bad)
    with pytest.raises(SchemaError, match=r"may be left out: they default to \{'kind': 0\}"):
        store["trades"].append(SYM, bad.drop(columns="qty"))
    pdt.assert_frame_equal(store["trades"].select(SYM), before)


def test_files_written_before_kind_existed_read_as_market(tmp_path, monkeypatch):
    """A format-2 day written by the schema of before (no ``kind``), then read, appended to,
    corrected and compacted by the current one."""
    current = builtin_schema("trades")
    old = Schema("trades", tuple(c for c in current.columns if c.name != "kind"), key=current.key, description="old")
    df = trades("2024-08-08", 2000)
    with monkeypatch.context() as m:
        m.setitem(schemas_mod._FIXED, "trades", old)
        with Tickstore(tmp_path) as store:
            store["trades"].insert(SYM, "2024-08-08", df.drop(columns="kind"))
            assert list(store["trades"].select(SYM).columns) == ["recv_ts", "trade_id", "price", "qty", "side"]
    with Tickstore(tmp_path) as store:
        assert store.verify().ok
        t = store["trades"]
        pdt.assert_frame_equal(t.select(SYM), df.assign(kind=np.int8(0)), check_freq=False)
        pdt.assert_frame_equal(
            t.select(SYM, df.index[10], df.index[20], columns=["kind", "price"]),
            df.iloc[10:20][["kind", "price"]].assign(kind=np.int8(0)),
            check_freq=False,
        )
        t.append(SYM, trades("2024-08-08 23:00", 5, first_id=50_000).assign(kind=np.int8(TradeKind.ADL)))
        t.compact(SYM)
        got = t.select(SYM)
        assert (got["kind"].iloc[:2000] == 0).all() and (got["kind"].iloc[2000:] == TradeKind.ADL).all()
        # a correction of the old rows (select, edit, insert) keeps working
        day = t.select(SYM, "2024-08-08", "2024-08-09")
        day.iloc[0, day.columns.get_loc("kind")] = TradeKind.LIQUIDATION
        t.insert(SYM, "2024-08-08", day, reason="liquidation print")
        assert t.select(SYM)["kind"].iloc[0] == TradeKind.LIQUIDATION


def _diffs(ts: str, update_id: int, levels: list, *, ordinal: bool = True) -> pd.DataFrame:
    """One order-book diff: ``levels`` [(side, price, qty)] in the order the venue sent them."""
    t = pd.DatetimeIndex([pd.Timestamp(ts, tz="UTC")] * len(levels), name="ts")
    df = pd.DataFrame({
        "recv_ts": t, "first_update_id": np.full(len(levels), update_id - 3, "i8"), "update_id": np.full(len(levels), update_id, "i8"),
        "prev_update_id": np.full(len(levels), update_id - 4, "i8"), "side": np.array([s for s, _, _ in levels], "i1"),
        "price": [float(p) for _, p, _ in levels], "qty": [float(q) for _, _, q in levels],
    }, index=t)
    return df.assign(ordinal=np.arange(len(levels), dtype="i4")) if ordinal else df


def test_book_diffs_keep_a_level_named_twice_in_one_diff_and_old_files_read_ordinal_minus_one(tmp_path, monkeypatch):
    """Rows are keyed by their position in the diff (``ordinal``): a diff naming one price
    twice keeps both rows, appending the same diff again adds nothing. Files written before
    the column existed (keyed by the whole row) read as ordinal -1 and stay correctable."""
    current = builtin_schema("book_diffs")
    assert current.column("ordinal").default == -1 and "ordinal" in current.key and "recv_ts" not in current.key
    old = Schema("book_diffs", tuple(c for c in current.columns if c.name != "ordinal"),
                 key=("ts", "recv_ts", "first_update_id", "update_id", "prev_update_id", "side", "price", "qty"))
    first = _diffs("2024-08-08 10:00", 100, [(1, 10.0, 1.0), (-1, 11.0, 2.0)], ordinal=False)
    with monkeypatch.context() as m:
        m.setitem(schemas_mod._FIXED, "book_diffs", old)
        with Tickstore(tmp_path) as store:
            store["book_diffs"].append(SYM, first)
    repeated = _diffs("2024-08-08 10:01", 200, [(1, 10.0, 1.0), (1, 10.0, 1.0), (-1, 11.0, 0.0), (-1, 11.0, 0.0)])
    with Tickstore(tmp_path) as store:
        t = store["book_diffs"]
        assert t.append(SYM, repeated).rows == 4  # the same level twice in one diff: both kept
        assert t.append(SYM, repeated).rows == 0  # the same diff again: nothing
        # received again at another time (another capture of it): still the same rows
        assert t.append(SYM, repeated.assign(recv_ts=repeated["recv_ts"] + pd.Timedelta(5, "s"))).rows == 0
        got = t.select(SYM)
        assert got["ordinal"].tolist() == [-1, -1, 0, 1, 2, 3]
        pdt.assert_frame_equal(got.iloc[2:], repeated, check_freq=False)
        day = t.select(SYM, "2024-08-08", "2024-08-09")  # a correction of old and new rows
        day.iloc[0, day.columns.get_loc("qty")] = 1.5
        t.insert(SYM, "2024-08-08", day, reason="fix")
        assert t.select(SYM)["qty"].tolist() == [1.5, 2.0, 1.0, 1.0, 0.0, 0.0]
        assert store.verify().ok


def _agg(start: str, n: int, first_agg: int = 100, first_trade: int = 5000) -> pd.DataFrame:
    idx = pd.date_range(start, periods=n, freq="250ms", tz="UTC", name="ts")
    counts = np.arange(n) % 4 + 1
    first = first_trade + np.concatenate([[0], np.cumsum(counts)[:-1]])
    return pd.DataFrame(
        {
            "recv_ts": idx + pd.Timedelta("2ms"),
            "agg_id": np.arange(first_agg, first_agg + n, dtype="i8"),
            "first_trade_id": first.astype("i8"),
            "last_trade_id": (first + counts - 1).astype("i8"),
            "price": 100.0 + np.arange(n) * 0.1,
            "qty": np.full(n, 0.5),
            "side": np.where(np.arange(n) % 2, 1, -1).astype("i1"),
        },
        index=idx,
    )


def test_agg_trades_keep_first_and_last_trade_ids_and_dedup_by_agg_id(store):
    df = _agg("2024-08-08 10:00", 40)
    t = store["agg_trades"]
    t.append(SYM, df.iloc[:30])
    t.append(SYM, df.iloc[20:])  # re-sent overlap
    out = t.select(SYM)
    pdt.assert_frame_equal(out, df, check_freq=False)
    assert int((out["last_trade_id"] - out["first_trade_id"] + 1).sum()) == int((np.arange(40) % 4 + 1).sum())
    assert t.schema.key == ("agg_id",) and t.schema.clock is TsClock.TRANSACTION


def test_ls_long_shows_each_tables_clock(store):
    store["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", 10))
    store["quotes"].append(
        SYM,
        pd.DataFrame(
            {"recv_ts": pd.to_datetime(["2024-08-08 00:00:01"], utc=True), "update_id": [1], "bid_px": [1.0],
             "bid_qty": [1.0], "ask_px": [2.0], "ask_qty": [1.0]},
            index=pd.DatetimeIndex(pd.to_datetime(["2024-08-08"], utc=True), name="ts"),
        ),
    )
    root = str(store.root)
    store.close()
    out = CliRunner().invoke(main, ["--root", root, "ls", "-l"])
    assert out.exit_code == 0, out.output
    lines = {line.split()[0]: line for line in out.stdout.splitlines()[2:]}
    assert set(lines) == {"quotes", "trades"}
    assert "exchange transaction time" in lines["trades"] and "day" in lines["trades"] and "trade_id" in lines["trades"]
    assert "exchange event time" in lines["quotes"]
    out = CliRunner().invoke(main, ["--root", root, "ls", "-l", "funding"])  # a table with no data yet
    assert out.exit_code == 0, out.output
    rows = out.stdout.splitlines()
    assert rows[2].split()[0] == "ts" and rows[2].endswith("exchange event time")
    out = CliRunner().invoke(main, ["--root", root, "ls", "--long", "trades"])
    kind = next(line for line in out.stdout.splitlines() if line.startswith("kind"))
    assert kind.split()[:3] == ["kind", "int8", "0"]
    assert CliRunner().invoke(main, ["--root", root, "ls"]).stdout.splitlines() == ["quotes", "trades"]  # scripts
