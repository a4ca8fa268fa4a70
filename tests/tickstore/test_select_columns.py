"""``Table.select_columns``: ``select``'s rows as numpy columns, from the same read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from tickstore import Column, Schema, Tickstore
from tickstore.columns import Columns
from tests.tickstore.helpers import SYM, trades

ETH = "binance:ETH/USDT:USDT"
REPO = Path(__file__).resolve().parents[2]

# What a process that only reads format-3 files with select_columns must not import (the
# CLI's `select ... -n 10` starts in well under 0.3 s only without them), nor any submodule
# of them: the heavy packages (chunks are decompressed through blosc2's C library, not its
# package: tickstore/blosc.py), then the write machinery and what only it, a prune, a pin,
# verify, the demo or a parallel read needs (~25 ms of imports in all; each says where it
# is imported on use). Modules the interpreter had loaded before tickstore (site, .pth
# files) cost a read nothing and are not counted: see ``read_path_offenders``.
NOT_ON_THE_READ_PATH = (
    "pandas", "tables", "blosc2",
    "tickstore.transaction", "tickstore.compaction", "tickstore.pin", "tickstore.frames", "tickstore.integrity",
    "tickstore.export",
    "hashlib", "logging", "socket", "tempfile", "importlib.metadata", "concurrent.futures",
)


def read_path_offenders(before, after) -> list[str]:
    """Modules in ``after`` and not in ``before`` that are, or are under, one of NOT_ON_THE_READ_PATH."""
    new = set(after) - set(before)
    return sorted(m for m in new if any(m == x or m.startswith(x + ".") for x in NOT_ON_THE_READ_PATH))


def assert_same_rows(cols: Columns, frame: pd.DataFrame, schema: Schema) -> None:
    """``cols`` holds exactly ``frame``'s rows, in order, in the documented dtypes."""
    names = [c for c in frame.columns if c != "symbol"]
    assert cols.names == ["ts", *names, *(["symbol"] if "symbol" in frame.columns else [])]
    assert cols["ts"].dtype == np.int64
    np.testing.assert_array_equal(cols["ts"], frame.index.asi8)
    for name in names:
        col, got = schema.column(name), cols[name]
        assert got.dtype == col.disk_dtype, name
        if col.is_datetime:
            np.testing.assert_array_equal(got, frame[name].array.asi8)
        elif col.is_str:
            assert [b.decode("utf-8") for b in got] == list(frame[name])
        else:
            assert got.dtype == frame[name].dtype
            np.testing.assert_array_equal(got, frame[name].to_numpy())
    if "symbol" in frame.columns:
        assert cols["symbol"].dtype.kind == "U"
        assert list(cols["symbol"]) == list(frame["symbol"])


def tied_pair(t):
    """Two symbols whose times interleave, tie across the symbols and tie within each."""
    a = trades("2024-08-08", 60, step="1s")
    b = trades("2024-08-08 00:00:00.5", 60, step="1s", seed=3, first_id=500)
    # every 3rd row of b at exactly a's time; rows 10-14 of each at one shared instant
    b.index = pd.DatetimeIndex([a.index[i] if i % 3 == 0 else b.index[i] for i in range(60)], name="ts")
    same = a.index[10]
    a.index = pd.DatetimeIndex([same if 10 <= i < 15 else v for i, v in enumerate(a.index)], name="ts")
    b.index = pd.DatetimeIndex([same if 10 <= i < 15 else v for i, v in enumerate(b.index)], name="ts")
    b = b.sort_index(kind="stable")
    t.insert(SYM, "2024-08-08", a)
    t.insert(ETH, "2024-08-08", b)
    return a, b


def test_one_symbol_equals_select_with_all_columns_and_subsets(store):
    t = store["trades"]
    df = trades("2024-08-08 23:59:00", 120)  # two days
    t.insert(SYM, "2024-08-08", df.loc[:"2024-08-08"])
    t.insert(SYM, "2024-08-09", df.loc["2024-08-09":])
    for columns in (None, ["price"], ["qty", "recv_ts", "trade_id"], "side", []):
        for start, end in ((None, None), ("2024-08-08 23:59:30", "2024-08-09 00:00:10"), ("2024-08-09", None)):
            got = t.select_columns(SYM, start, end, columns=columns)
            frame = t.select(SYM, start, end, columns=columns)
            assert_same_rows(got, frame, t.schema)
    got = t.select_columns(SYM, columns=["qty", "price"])
    assert got.names == ["ts", "qty", "price"]  # the order asked for
    assert t.select_columns(SYM).names == ["ts", *t.schema.names]  # default: schema order
    np.testing.assert_array_equal(got["price"], df["price"].to_numpy())


def test_several_symbols_keep_selects_stable_order_of_ties(store):
    t = store["trades"]
    a, b = tied_pair(t)
    for syms in ([SYM, ETH], [ETH, SYM], (ETH,), [SYM, "binance:SOL/USDT:USDT", ETH]):
        frame = t.select(syms)
        # the order select has always had: the symbols' frames concatenated, then a stable sort
        parts = [d.assign(symbol=s) for s, d in ((SYM, a), (ETH, b)) if s in syms]
        parts.sort(key=lambda p: list(syms).index(p["symbol"].iloc[0]))
        expected = pd.concat(parts)
        expected = expected.iloc[np.argsort(expected.index.asi8, kind="stable")]
        pdt.assert_frame_equal(frame, expected, check_freq=False)
        got = t.select_columns(syms)
        assert_same_rows(got, frame, t.schema)
    got = t.select_columns([ETH, SYM], columns=["trade_id"])
    tie = got["ts"] == a.index[10].value
    assert list(got["symbol"][tie]) == [ETH] * 5 + [SYM] * 5  # ties: the symbols' order, then each one's
    np.testing.assert_array_equal(got["trade_id"][tie], np.r_[510:515, 11:16])
    assert np.all(np.diff(got["ts"]) >= 0)


def test_datetime_and_string_columns_are_int64_ns_and_utf8_bytes(store):
    schema = Schema("notes", (Column("at", "datetime"), Column("text", "str12"), Column("n", "int32"), Column("ok", "bool")))
    t = store.create_table("notes", schema)
    idx = pd.DatetimeIndex(["2024-08-08 01:00", "2024-08-08 01:00", "2024-08-08 02:30:00.000000001"], tz="UTC", name="ts")
    df = pd.DataFrame(
        {
            "at": pd.DatetimeIndex(["1970-01-01", "2262-04-11 23:47:16.854775807", "1677-09-21 00:12:43.145224193"], tz="UTC"),
            "text": ["", "naïve €", "日本語"],
            "n": np.int32([1, -2, 3]),
            "ok": [True, False, True],
        },
        index=idx,
    )
    t.insert(SYM, "2024-08-08", df)
    t.insert(ETH, "2024-08-08", df.iloc[1:])
    got = t.select_columns(SYM)
    assert_same_rows(got, t.select(SYM), schema)
    assert got["text"].dtype == np.dtype("S12") and got["text"][2] == "日本語".encode()
    np.testing.assert_array_equal(got["at"], df["at"].array.asi8)
    assert got["ok"].dtype == np.bool_ and got["n"].dtype == np.int32
    both = t.select_columns([SYM, ETH], columns=["text", "at"])
    assert_same_rows(both, t.select([SYM, ETH], columns=["text", "at"]), schema)
    assert list(both["symbol"]) == [SYM, SYM, ETH, SYM, ETH]


def test_empty_results_have_the_columns_and_dtypes(store, clock):
    t = store["trades"]
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 10))
    cases = [
        (SYM, dict(start="2024-08-09")),
        ("binance:SOL/USDT:USDT", {}),
        ([SYM, ETH], dict(end="2024-08-07")),
        ([], {}),
        ([ETH], dict(columns=["price", "recv_ts"])),
        (SYM, dict(as_of=clock.now() - pd.Timedelta("1s"))),
    ]
    for syms, kw in cases:
        got, frame = t.select_columns(syms, **kw), t.select(syms, **kw)
        assert len(got) == 0 and frame.empty
        assert_same_rows(got, frame, t.schema)
        cols = kw.get("columns")
        expected = t.schema.empty_frame(cols)  # select's empty frame is what it always was
        if isinstance(syms, list):
            expected["symbol"] = pd.Series([], dtype=object)
        pdt.assert_frame_equal(frame, expected)


def test_as_of_a_snapshot_or_a_time(store, clock):
    t = store["trades"]
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 10, price=100))
    t.insert(ETH, "2024-08-08", trades("2024-08-08", 10, price=10))
    first = clock.now()
    clock.advance(1)
    store.snapshot("paper")
    clock.advance(1)
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 5, price=200), reason="restated")
    for as_of in ("paper", first, first.isoformat(), None):
        for syms in (SYM, [ETH, SYM]):
            assert_same_rows(t.select_columns(syms, as_of=as_of), t.select(syms, as_of=as_of), t.schema)
    assert len(t.select_columns(SYM, as_of="paper")) == 10 and len(t.select_columns(SYM)) == 5


@pytest.mark.parametrize(
    "args, kw",
    [
        (("nocolon",), {}),
        (([SYM, SYM],), {}),
        ((SYM,), dict(columns=["price", "nope"])),
        ((SYM, "2024-08-09", "2024-08-08"), {}),
        ((SYM, "not a time"), {}),
        ((SYM,), dict(as_of="no-such-snapshot")),
        ((SYM,), dict(as_of="2030-01-01")),  # later than now
    ],
)
def test_errors_are_selects(store, args, kw):
    t = store["trades"]
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 10))
    with pytest.raises(Exception) as by_select:
        t.select(*args, **kw)
    with pytest.raises(type(by_select.value)) as by_columns:
        t.select_columns(*args, **kw)
    assert str(by_columns.value) == str(by_select.value)


_READER = """
import json, sys
before = set(sys.modules)
root, sym, eth, iso = sys.argv[1:]
from tickstore.store import Tickstore
t = Tickstore(root)["trades"]
rows = [
    len(t.select_columns(sym, "2024-08-08", "2024-08-09")),
    len(t.select_columns(sym, "2024-08-08", "2024-08-09", as_of="paper")),
    len(t.select_columns(sym, "2024-08-08T00:00:00Z", "2024-08-09 00:00", as_of=iso)),
    len(t.select_columns([sym, eth], None, "2024-08-10", columns=["price", "recv_ts"])),
]
print(json.dumps({"rows": rows, "before": sorted(before), "after": sorted(sys.modules)}))
"""


def test_a_process_reading_columns_imports_none_of_not_on_the_read_path(tmp_path, clock):
    """Reads of one and several symbols, as of now, a snapshot and an ISO time: none of
    them imports pandas, PyTables, blosc2 or the write machinery."""
    with Tickstore(tmp_path / "s", clock=clock) as store:
        t = store["trades"]
        t.insert(SYM, "2024-08-08", trades("2024-08-08", 300))
        t.insert(ETH, "2024-08-09", trades("2024-08-09", 20))
        clock.advance(1)
        store.snapshot("paper")
        iso = (clock.now() + pd.Timedelta("1ms")).strftime("%Y-%m-%dT%H:%M:%S.%f") + "+00:00"
        clock.advance(1)
        t.append(SYM, trades("2024-08-08 12:00", 10, first_id=10_000))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", _READER, str(tmp_path / "s"), SYM, ETH, iso],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["rows"] == [310, 300, 300, 330]
    assert "tickstore.reader" in got["after"] and "tickstore.store" not in got["before"]  # the lists are what they say
    assert read_path_offenders(got["before"], got["after"]) == []
