"""Behaviour of the store facade: versions, as-of reads, appends, compaction, pins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from tickstore import NotFoundError, PinError, SnapshotError, Tickstore
from tests.tickstore.helpers import SYM, bars, trades


def test_insert_then_select_round_trips_exactly(store):
    df = trades("2024-08-08 00:00", 500)
    store["trades"].insert(SYM, "2024-08-08", df, reason="backfill", source="rest")
    out = store["trades"].select(SYM)
    pdt.assert_frame_equal(out, df, check_freq=False)
    assert out.index.name == "ts" and str(out.index.tz) == "UTC"


def test_select_output_can_be_inserted_back_unchanged(store, clock):
    t = store["trades"]
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 50))
    clock.advance(1)
    back = t.select(SYM)
    back.loc[back.index[3], "price"] = 1.5  # a correction is: select, edit, insert
    t.insert(SYM, "2024-08-08", back, reason="correction")
    assert t.select(SYM)["price"].iloc[3] == 1.5


def test_as_of_sees_each_version_in_its_window(store, clock):
    t = store["trades"]
    t0 = clock.now()
    clock.advance(10)
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 10, price=100))
    t1 = clock.now()
    clock.advance(10)
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 10, price=200), reason="restated")
    t2 = clock.now()
    clock.advance(10)
    assert t.select(SYM, as_of=t0).empty  # a backfill never leaks into earlier reads
    assert t.select(SYM, as_of=t1)["price"].iloc[0] < 150
    assert t.select(SYM, as_of=t2)["price"].iloc[0] > 150
    assert t.select(SYM, as_of=t2 - pd.Timedelta("1ns"))["price"].iloc[0] < 150  # half-open window
    v = t.versions(SYM, "2024-08-08")
    assert list(v["version"]) == [1, 2]
    assert v["superseded_at"].iloc[0] == v["committed_at"].iloc[1]
    assert pd.isna(v["superseded_at"].iloc[1])
    assert list(v["reason"]) == ["", "restated"]


def test_delete_is_a_tombstone_with_an_audit_trail(store, clock):
    t = store["trades"]
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 10))
    before = clock.now()
    clock.advance(5)
    t.delete(SYM, "2024-08-08", reason="bad feed")
    clock.advance(5)
    assert t.select(SYM).empty
    assert len(t.select(SYM, as_of=before)) == 10
    v = t.versions(SYM, "2024-08-08")
    assert list(v["operation"]) == ["insert", "delete"] and v["reason"].iloc[1] == "bad feed"
    with pytest.raises(NotFoundError, match="nothing stored"):
        t.delete(SYM, "2024-08-08", reason="again")
    with pytest.raises(NotFoundError):
        t.delete(SYM, "2024-08-09", reason="never there")


def test_snapshot_names_an_as_of_point(store, clock):
    t = store["trades"]
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 10))
    clock.advance(1)
    store.snapshot("paper-2024-q3", note="submitted")
    clock.advance(1)
    t.delete(SYM, "2024-08-08", reason="retracted")
    assert len(t.select(SYM, as_of="paper-2024-q3")) == 10
    assert "paper-2024-q3" in store.snapshots().index
    with pytest.raises(SnapshotError, match="exists"):
        store.snapshot("paper-2024-q3")
    with pytest.raises(SnapshotError, match="no snapshot named 'nope'"):
        t.select(SYM, as_of="nope")


def test_append_splits_days_dedups_keys_and_keeps_identical_distinct_ticks(store, clock):
    t = store["trades"]
    df = trades("2024-08-08 23:59:50", 20)  # crosses midnight
    t.append(SYM, df.iloc[:15])
    clock.advance(1)
    c = t.append(SYM, df)  # re-sent with 5 new rows
    assert c.rows == 5 and c.skipped == 15
    assert list(t.dates(SYM).strftime("%Y-%m-%d")) == ["2024-08-08", "2024-08-09"]
    pdt.assert_frame_equal(t.select(SYM), df, check_freq=False)
    # liquidations have no identity: two identical prints are two prints
    liq = pd.DataFrame(
        {"recv_ts": pd.to_datetime(["2024-08-08 01:00:00.1"] * 2, utc=True), "side": np.int8([1, 1]),
         "price": [60000.0, 60000.0], "qty": [0.5, 0.5]},
        index=pd.DatetimeIndex(["2024-08-08 01:00"] * 2, tz="UTC", name="ts"),
    )
    store["liquidations"].append(SYM, liq)
    store["liquidations"].append(SYM, liq)
    assert len(store["liquidations"].select(SYM)) == 4


def test_many_appends_compact_without_changing_any_as_of_answer(store, clock):
    t = store["trades"]
    seen = []
    rng = np.random.default_rng(1)
    first = 1
    for i in range(40):
        clock.advance(1)
        n = int(rng.integers(1, 30))
        # same-millisecond ties across batches: order must survive compaction
        df = trades("2024-08-08 10:00", n, first_id=first, step="1ms", seed=i)
        if i % 3 == 0:
            df.index = pd.DatetimeIndex([df.index[0]] * n, name="ts")
        df.index = df.index + pd.Timedelta(seconds=i // 2)
        first += n
        t.append(SYM, df)
        seen.append((clock.now(), t.select(SYM)))
    files = t.index(SYM)
    assert (files["operation"] == "compact").any()
    visible = files[files["superseded_at"].isna()]
    assert len(visible) < 8
    for at, frame in seen:
        pdt.assert_frame_equal(t.select(SYM, as_of=at), frame)
    clock.advance(1)
    t.append(SYM, trades("2024-08-09 00:00", 3, first_id=first))  # next day closes the previous one
    day1 = t.index(SYM).xs(pd.Timestamp("2024-08-08", tz="UTC"), level="date")
    assert day1["superseded_at"].isna().sum() == 1
    for at, frame in seen:
        pdt.assert_frame_equal(t.select(SYM, as_of=at), frame)


def test_month_partition_insert_day_by_day_and_correct_one_day(store, clock):
    t = store["ohlcv_1m"]
    days = pd.date_range("2024-01-30", "2024-02-03", freq="D", tz="UTC")
    full = []
    for d in days:
        clock.advance(1)
        df = bars(str(d.date()), 1440, seed=d.day)
        t.insert(SYM, d, df, source="rest")
        full.append(df)
    full = pd.concat(full)
    pdt.assert_frame_equal(t.select(SYM), full, check_freq=False)
    paths = t.index(SYM)["path"]
    assert all(p.count("/") == 3 for p in paths)  # ohlcv_1m/YYYY/MM/<sym>_<v>.h5
    before = clock.now()
    clock.advance(1)
    fix = full.loc["2024-01-31"].copy()
    fix["close"] = 0.0
    t.insert(SYM, "2024-01-31", fix, reason="restated")
    out = t.select(SYM)
    assert (out.loc["2024-01-31", "close"] == 0).all() and (out.loc["2024-01-30", "close"] != 0).all()
    pdt.assert_frame_equal(t.select(SYM, as_of=before), full, check_freq=False)
    part = t.select(SYM, "2024-01-30 23:00", "2024-02-01 01:00", columns=["close"])
    assert list(part.columns) == ["close"] and len(part) == 60 + 1440 + 60
    clock.advance(1)
    t.delete(SYM, "2024-01-30", reason="bad day")
    assert t.select(SYM, "2024-01-30", "2024-01-31").empty and len(t.select(SYM, "2024-01-31", "2024-02-01")) == 1440


def test_range_columns_and_multi_symbol_select(store):
    t = store["trades"]
    a, b = trades("2024-08-08", 100, step="1min"), trades("2024-08-08 00:00:30", 100, step="1min", seed=3)
    t.insert(SYM, "2024-08-08", a)
    t.insert("binance:ETH/USDT:USDT", "2024-08-08", b)
    out = t.select([SYM, "binance:ETH/USDT:USDT"], "2024-08-08 00:10", "2024-08-08 00:20", columns=["price"])
    assert list(out.columns) == ["price", "symbol"] and len(out) == 20
    assert out.index.is_monotonic_increasing
    assert set(out["symbol"]) == {SYM, "binance:ETH/USDT:USDT"}
    one = t.select(SYM, "2024-08-08 00:10", "2024-08-08 00:20")
    pdt.assert_frame_equal(one, a.iloc[10:20], check_freq=False)
    assert t.select("binance:SOL/USDT:USDT").empty


def test_pin_reproduces_a_read_after_later_writes_and_detects_tampering(store, clock):
    t = store["trades"]
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 100))
    t.append(SYM, trades("2024-08-08 05:00", 10, first_id=1000))
    sel = t.select_pinned(SYM, "2024-08-08 00:00:30", None)
    clock.advance(1)
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 5, price=1))
    from tickstore import Pin

    pin = Pin.from_json(sel.pin.to_json())
    pdt.assert_frame_equal(store.read_pin(pin), sel.data)
    path = store.root / pin.files[0].path
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(PinError, match="altered"):
        store.read_pin(pin)


def test_index_is_rebuilt_from_files_alone(store, clock):
    t = store["trades"]
    for i in range(3):
        clock.advance(1)
        t.insert(SYM, "2024-08-08", trades("2024-08-08", 10, seed=i))
    clock.advance(1)
    t.append(SYM, trades("2024-08-09", 5))
    clock.advance(1)
    t.delete(SYM, "2024-08-09", reason="x")
    before = t.index()
    import shutil

    shutil.rmtree(t.dir / "_index")
    store._indexes.forget()
    assert store.reindex().indexed == {"trades": 5}
    after = t.index()
    pdt.assert_frame_equal(after, before)
    assert store.verify().ok


def test_reopened_store_and_other_process_see_the_same_data(tmp_path):
    import subprocess
    import sys

    s = Tickstore(tmp_path)
    s["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", 42))
    s.close()
    code = f"from tickstore import Tickstore; print(len(Tickstore({str(tmp_path)!r})['trades'].select({SYM!r})))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "42"
