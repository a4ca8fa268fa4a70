"""The live path holds up: size-tiered merges keep files, disk and the index bounded,
every row keeps its knowledge time (as-of answers and pins survive merges), and merged
segments are deleted."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from tickstore import Pin, Tickstore
from tickstore.compaction import FANOUT, merge_start
from tests.tickstore.helpers import SYM, bars, trades


def _files_on_disk(table_dir) -> set[str]:
    root = table_dir.parent
    return {
        os.path.relpath(os.path.join(d, f), root)
        for d, _, fs in os.walk(table_dir)
        if "_index" not in d
        for f in fs
        if f.endswith(".h5")
    }


def _disk(table_dir) -> int:
    return sum(os.path.getsize(table_dir.parent / p) for p in _files_on_disk(table_dir))


def _simulate(sizes):
    """(max visible files, rows written / rows stored) of the merge policy over appends."""
    vis, written, most = [], 0, 0
    for s in sizes:
        vis.append(s)
        written += s
        while (j := merge_start(vis)) is not None:
            assert len(vis) - j >= FANOUT
            written += sum(vis[j:])
            vis = vis[:j] + [sum(vis[j:])]
        most = max(most, len(vis))
    return most, written / sum(vis)


def test_merge_policy_is_bounded_for_live_days():
    # a 6-hour live day at 2 s: 10,800 appends of 28 trades; each row is rewritten a few
    # times (O(log n)), never the whole day every few appends (which would be ~1,000x here)
    most, amplification = _simulate([28] * 10_800)
    assert most <= 20 and amplification <= 9
    # bursts of every size
    most, amplification = _simulate(np.random.default_rng(0).choice([1, 5, 28, 300, 3000], 10_800).tolist())
    assert most <= 40 and amplification <= 12
    # a year of funding appended one settlement at a time: few files (small files merge
    # until they reach SMALL_ROWS; rewriting them costs little)
    most, _ = _simulate([1] * 1_095)
    assert most <= 8


def test_live_appends_stay_bounded_and_reclaim_merged_segments(store, clock):
    t = store["trades"]
    day = pd.Timestamp("2024-08-08", tz="UTC")
    seen, pins = [], []
    first = 1
    for i in range(150):
        clock.advance(2)
        df = trades(str(day + pd.Timedelta(seconds=2 * i)), 28, first_id=first, step="50ms", seed=i)
        if i % 5 == 0:  # same-millisecond ties across batches: their order must survive merges
            df.index = pd.DatetimeIndex([df.index[0]] * 28, name="ts") - pd.Timedelta("1ms")
        first += 28
        t.append(SYM, df)
        if i % 10 == 0:
            sel = t.select_pinned(SYM)
            seen.append((clock.now(), sel.data))
            pins.append(Pin.from_json(sel.pin.to_json()))
        idx = t.index(SYM)
        # every file on disk is indexed (merged segments are deleted), and the index holds
        # entries per live file, not per append
        assert _files_on_disk(t.dir) == set(idx["path"])
        assert len(idx) <= 2 * FANOUT
    assert (t.index(SYM)["operation"] == "compact").any()
    for at, frame in seen:
        pdt.assert_frame_equal(t.select(SYM, as_of=at), frame)
    gone = [not all((store.root / f.path).exists() for f in pin.files) for pin in pins]
    assert sum(gone) >= len(pins) // 2  # their files were merged away since
    for pin, (_, frame) in zip(pins, seen):
        pdt.assert_frame_equal(store.read_pin(pin), frame)  # reproduced by content
    # the next day closes this one: one file, within 1.5x of the same rows inserted at once
    t.append(SYM, trades("2024-08-09", 5, first_id=first))
    day_files = t.versions(SYM, "2024-08-08")
    assert len(day_files) == 1 and day_files["superseded_at"].isna().all()
    live_bytes = int(day_files["bytes"].iloc[0])
    for at, frame in seen:
        pdt.assert_frame_equal(t.select(SYM, as_of=at), frame)
    for pin, (_, frame) in zip(pins, seen):
        pdt.assert_frame_equal(store.read_pin(pin), frame)
    with Tickstore(store.root.parent / "once") as once:
        once["trades"].insert(SYM, "2024-08-08", store["trades"].select(SYM, "2024-08-08", "2024-08-09"))
        assert live_bytes <= 1.5 * _disk(once["trades"].dir)
    assert store.verify().ok


def test_merged_file_answers_earlier_as_of_reads_by_itself(store, clock):
    """Row knowledge times: a merged file filters its rows, in the order a read of the
    original segments gave (ties in ts keep commit order)."""
    t = store["trades"]
    stamps, commits = [], []
    for i in range(5):
        clock.advance(1)
        df = trades("2024-08-08 12:00", 3, first_id=1 + 3 * i, seed=i)
        df.index = pd.DatetimeIndex([df.index[0]] * 3, name="ts")  # every row ties
        commits.append(t.append(SYM, df).committed_at)
        stamps.append((clock.now(), t.select(SYM)))
    assert t.compact(SYM) == 1
    (entry,) = t.index(SYM).itertuples()
    # the merged entry takes over its members' window: from the first append on
    assert entry.operation == "compact" and entry.committed_at == commits[0]
    for at, frame in stamps:
        got = t.select(SYM, as_of=at)
        pdt.assert_frame_equal(got, frame)
        assert got["trade_id"].tolist() == sorted(got["trade_id"])  # commit order within the tie
    assert t.select(SYM, as_of=stamps[0][0] - pd.Timedelta("1ns")).empty
    assert len(_files_on_disk(t.dir)) == 1


def test_a_new_day_in_a_month_partition_is_not_a_correction(store, clock):
    t = store["ohlcv_1m"]
    days = pd.date_range("2024-01-01", "2024-03-01", freq="D", tz="UTC")
    for d in days:
        clock.advance(1)
        t.insert(SYM, d, bars(str(d.date()), 1440, seed=d.dayofyear), source="rest")
    idx = t.index(SYM)
    assert idx["superseded_at"].isna().all()  # no superseded month copies
    assert (idx["operation"].isin(["insert", "compact"])).all()
    jan, feb = t.versions(SYM, "2024-01-15"), t.versions(SYM, "2024-02-15")
    assert len(jan) == 1 and len(feb) == 1  # closed months are one file each
    visible = int(idx["bytes"].sum())
    assert _disk(t.dir) <= 1.3 * visible
    assert len(t.select(SYM)) == len(days) * 1440
    # a real correction keeps the old version: the audit trail
    before = clock.now()
    clock.advance(1)
    fix = t.select(SYM, "2024-01-10", "2024-01-11")
    fix["close"] = 0.0
    t.insert(SYM, "2024-01-10", fix, reason="restated")
    jan = t.versions(SYM, "2024-01-15")
    assert len(jan) == 2 and jan["superseded_at"].notna().sum() == 1
    assert (t.select(SYM, "2024-01-10", "2024-01-11")["close"] == 0).all()
    assert (t.select(SYM, "2024-01-10", "2024-01-11", as_of=before)["close"] != 0).all()


def test_funding_is_year_partitioned_and_old_day_splayed_stores_still_read(tmp_path, clock):
    n = 4 * 365 * 3
    idx = pd.date_range("2021-01-01", periods=n, freq="8h", tz="UTC", name="ts")
    df = pd.DataFrame({"rate": np.full(n, 0.0001), "interval_h": 8.0}, index=idx)
    with Tickstore(tmp_path / "s", clock=clock) as store:
        assert store["funding"].partition.value == "year"
        store["funding"].append(SYM, df)
        assert len(_files_on_disk(store["funding"].dir)) <= 10
        pdt.assert_frame_equal(store["funding"].select(SYM), df, check_freq=False)
    # a store written when funding was day-splayed keeps its layout (its index says which)
    import dataclasses

    from tickstore.schemas import Partition

    old = tmp_path / "old"
    with Tickstore(old, clock=clock) as store:
        t = store["funding"]
        t.schema = dataclasses.replace(t.schema, partition=Partition.DAY)  # the default then
        t.append(SYM, df.iloc[:9])
    with Tickstore(old, clock=clock) as store:
        assert store["funding"].partition.value == "day"
        pdt.assert_frame_equal(store["funding"].select(SYM), df.iloc[:9], check_freq=False)
        assert len(_files_on_disk(store["funding"].dir)) == 3


def test_create_table_takes_a_partition_and_ls_shows_it(tmp_path, clock):
    from click.testing import CliRunner

    from tickstore import Column, Schema, SchemaError
    from tickstore.cli import main

    schema = Schema("signals", (Column("value", "float64"),), key=("ts",))
    with Tickstore(tmp_path, clock=clock) as store:
        t = store.create_table("signals", schema, partition="month")
        assert t.partition.value == "month"
        idx = pd.date_range("2024-01-30", periods=4, freq="D", tz="UTC", name="ts")
        t.append(SYM, pd.DataFrame({"value": [1.0, 2.0, 3.0, 4.0]}, index=idx))
        assert sorted(p.count("/") for p in t.index(SYM)["path"]) == [3, 3]  # signals/YYYY/MM/<file>: two months
        assert store.create_table("signals", schema, partition="month") is not None  # idempotent
        with pytest.raises(SchemaError):
            store.create_table("signals", schema, partition="year")  # exists with another partition
        with pytest.raises(SchemaError, match="partition 'week'"):
            store.create_table("other", schema.__class__("other", schema.columns), partition="week")
    out = CliRunner().invoke(main, ["--root", str(tmp_path), "ls", "-l"])
    assert out.exit_code == 0
    lines = {line.split()[0]: line for line in out.output.splitlines()[2:]}
    assert "month" in lines["signals"]
