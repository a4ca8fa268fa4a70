"""Table.ingest: add only what the store lacks, as audited versions; as-of reads unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tickstore import DuplicateKeyError

SYM = "binance:BTC/USDT:USDT"


def _trades(ids, day="2024-01-01", price=100.0):
    ts = pd.DatetimeIndex([pd.Timestamp(day, tz="UTC") + pd.Timedelta(seconds=int(i)) for i in ids], name="ts")
    return pd.DataFrame({"recv_ts": ts, "trade_id": np.asarray(ids, dtype="i8"), "price": price + np.asarray(ids, "f8"),
                         "qty": np.ones(len(ids)), "side": np.ones(len(ids), dtype="i1")}, index=ts)


def test_keyed_rows_already_stored_are_skipped_and_nothing_new_writes_nothing(store, clock):
    t = store["trades"]
    t.append(SYM, _trades([1, 2, 3]))
    clock.advance(1)
    before = t.select(SYM)
    commit = t.ingest(SYM, _trades([2, 3, 4, 5]), reason="import x.csv", source="import:tardis")
    assert (commit.skipped, len(commit.versions)) == (2, 1)
    assert t.select(SYM)["trade_id"].tolist() == [1, 2, 3, 4, 5]
    v = t.versions(SYM, "2024-01-01")
    assert v["reason"].iat[-1] == "import x.csv" and v["source"].iat[-1] == "import:tardis"
    assert v["operation"].iat[-1] == "insert"
    pd.testing.assert_frame_equal(t.select(SYM, as_of=commit.committed_at - pd.Timedelta(1, "ns")), before)
    n = len(t.versions(SYM, "2024-01-01"))
    clock.advance(1)
    again = t.ingest(SYM, _trades([1, 2, 3, 4, 5]), reason="import x.csv", source="import:tardis")
    assert again.versions == () and again.skipped == 5 and len(t.versions(SYM, "2024-01-01")) == n


def test_keyless_rows_count_as_a_multiset(store):
    t = store["liquidations"]
    ts = pd.DatetimeIndex([pd.Timestamp("2024-01-01 00:00:01", tz="UTC")] * 3, name="ts")
    df = pd.DataFrame({"recv_ts": ts, "side": np.array([1, 1, -1], "i1"), "price": [10.0, 10.0, 11.0],
                       "qty": [1.0, 1.0, 2.0]}, index=ts)
    t.ingest(SYM, df.iloc[:1], reason="a", source="s")  # one of the two identical rows
    commit = t.ingest(SYM, df, reason="b", source="s")
    assert commit.skipped == 1
    assert t.select(SYM)[["side", "price"]].values.tolist() == [[1, 10.0], [1, 10.0], [-1, 11.0]]
    assert t.ingest(SYM, df, reason="c", source="s").versions == ()


def test_many_partitions_one_commit_and_month_files_keep_other_days(store):
    t = store["ohlcv_1m"]
    idx = pd.date_range("2024-01-30 23:58", periods=4, freq="min", tz="UTC", name="ts")
    bars = pd.DataFrame({c: np.arange(4, dtype="f8") for c in ("open", "high", "low", "close", "volume")}, index=idx)
    t.append(SYM, bars.iloc[:1])
    commit = t.ingest(SYM, bars, reason="r", source="s")
    assert len({c for c, _ in commit.versions}) == 1  # one month file, one version
    assert t.select(SYM)["open"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_conflicting_keys_are_refused_before_writing(store):
    df = pd.concat([_trades([1]), _trades([1], price=200.0)])
    with pytest.raises(DuplicateKeyError):
        store["trades"].ingest(SYM, df, reason="r", source="s")
    assert store["trades"].symbols() == []
