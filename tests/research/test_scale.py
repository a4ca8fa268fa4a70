"""research.scale on a real 2-worker LocalCluster: every dask read and scan equals the
in-process read, exactly, whatever the grouping of files into tasks, as of any time.

One cluster (``local_cluster(2)``: worker processes) serves the whole module.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pandas as pd
import pytest

from research.bars import select_trade_bars, trade_bars
from research.coverage import uncovered
from research.errors import ResearchError
from research.scale import (
    _scan_task,
    close_worker_stores,
    local_cluster,
    partition_pins,
    partition_windows,
    scan_dask,
    select_dask,
    trade_bars_dask,
    worker_stores,
)
from tickstore.errors import PinError

distributed = pytest.importorskip("distributed")

SYM = "binance:BTC/USDT:USDT"
COLS = ["price", "qty", "side"]
D = pd.Timestamp("2024-08-01", tz="UTC")
DAY = pd.Timedelta(days=1)


def synth_trades(start: pd.Timestamp, end: pd.Timestamp, n: int, seed: int, first_id: int = 0) -> pd.DataFrame:
    """``n`` prints in [start, end) on a millisecond grid, so many share a timestamp."""
    rng = np.random.default_rng(seed)
    span_ms = int((end - start) / pd.Timedelta(1, "ms"))
    ts = np.sort(rng.integers(0, span_ms, n)) * 1_000_000 + start.value
    idx = pd.DatetimeIndex(ts, tz="UTC", name="ts")
    return pd.DataFrame(
        {
            "recv_ts": idx + pd.Timedelta(5, "ms"),
            "trade_id": np.arange(first_id, first_id + n, dtype=np.int64),
            "price": np.round(60_000 + np.cumsum(rng.normal(0, 5, n)), 1),
            "qty": np.round(rng.exponential(0.05, n), 4) + 0.0001,
            "side": rng.choice(np.array([-1, 1], dtype=np.int8), n),
        },
        index=idx,
    )


@pytest.fixture(scope="module")
def client():
    with local_cluster(2) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture
def days_store(store):
    """Day files 08-01, 08-02, 08-03, 08-05, 08-06 (08-04 missing), 3,000 prints each."""
    for i, d in enumerate([D, D + DAY, D + 2 * DAY, D + 4 * DAY, D + 5 * DAY]):
        store["trades"].insert(SYM, d, synth_trades(d, d + DAY, 3_000, seed=i, first_id=i * 10_000), reason="test")
    return store


def minute_bars(frame, lo, hi):
    return trade_bars(frame, "1min", start=lo, end=hi)


@pytest.mark.parametrize("k", [1, 2, 4, 10])
def test_select_and_bars_equal_in_process_for_any_grouping(client, days_store, k):
    store = days_store
    start, end = D + pd.Timedelta(hours=13, minutes=37, milliseconds=123), D + 5 * DAY + pd.Timedelta(hours=7)  # clips both edge days
    ddf = select_dask(store, "trades", SYM, start, end, files_per_partition=k)
    assert ddf.npartitions == -(-5 // k)
    assert ddf.divisions[0] == start and ddf.divisions[-1] == end - pd.Timedelta(1, "ns")
    pd.testing.assert_frame_equal(ddf.compute(), store["trades"].select(SYM, start, end), check_exact=True)
    # bars over the whole range: the missing day and the clipped edges included
    expected = select_trade_bars(store["trades"], SYM, "1min", start=start, end=end)
    got = trade_bars_dask(store, SYM, "1min", start=start, end=end, files_per_partition=k).compute()
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert got.loc["2024-08-04", "count"].sum() == 0 and len(got.loc["2024-08-04"]) == 1440
    assert (got.loc["2024-08-04", "coverage"] == 0.0).all() and (got.loc["2024-08-05", "coverage"] == 1.0).all()
    got = scan_dask(store, "trades", SYM, minute_bars, start, end, columns=COLS, files_per_partition=k).compute()
    pd.testing.assert_frame_equal(got, expected.drop(columns="coverage"), check_exact=True)


@pytest.mark.parametrize("freq", ["1s", "1min", "h", "D"])
def test_long_ranges_equal_in_process_with_their_last_bin_and_coverage(client, days_store, freq):
    # 400 days before the data to 2 days after: the last bin (lost to float rounding of the
    # edges before) and a disconnect in the ledger are the same in both
    store = days_store
    store["gaps"].append(SYM, pd.DataFrame(
        {"recv_ts": [D + DAY + pd.Timedelta("10:00:05")], "end_ts": [D + DAY + pd.Timedelta("10:30:00")],
         "stream": ["*"], "cause": ["disconnect"], "detail": ["test: connection reset"]},
        index=pd.DatetimeIndex([D + DAY + pd.Timedelta("10:00:00")], name="ts"),
    ))
    start, end = D - 400 * DAY, D + 8 * DAY
    if freq == "1s":
        start = D - 2 * DAY  # 1 s bins of 400 days are 35M rows: the long range is covered by the others
    expected = select_trade_bars(store["trades"], SYM, freq, start=start, end=end)
    got = trade_bars_dask(store, SYM, freq, start=start, end=end, files_per_partition=3).compute()
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    assert len(got) == (end - start) // step and got.index[-1] == end - step
    assert got["count"].sum() == 15_000
    hour = got.loc[D + DAY + pd.Timedelta("10h") : D + DAY + pd.Timedelta("10:59:59"), "coverage"]
    if freq in ("1s", "1min"):
        assert hour.mean() == pytest.approx(0.5) and hour.min() == 0.0
    elif freq == "h":
        assert hour.tolist() == [0.5]
    assert (got.loc[: D - pd.Timedelta(1, "ns"), "coverage"] == 0).all()  # before the first day file


def test_select_dask_takes_the_date_strings_select_takes(client, days_store):
    store = days_store
    for lo, hi in (("2024-08-02", "2024-08-04"), ("2024-08-02T06:00", "2024-08-03T12:00:00Z"), ("2024-08-02 00:00:00+02:00", "2024-08-06")):
        pd.testing.assert_frame_equal(select_dask(store, "trades", SYM, lo, hi).compute(), store["trades"].select(SYM, lo, hi), check_exact=True)


def test_unbounded_range_and_empty_range(client, days_store):
    store = days_store
    pd.testing.assert_frame_equal(select_dask(store, "trades", SYM, files_per_partition=2).compute(), store["trades"].select(SYM), check_exact=True)
    # before anything was stored: one empty partition, the dtypes of select
    lo, hi = pd.Timestamp("2023-01-01", tz="UTC"), pd.Timestamp("2023-01-03", tz="UTC")
    empty = select_dask(store, "trades", SYM, lo, hi)
    assert empty.npartitions == 1
    pd.testing.assert_frame_equal(empty.compute(), store["trades"].select(SYM, lo, hi), check_exact=True)
    # bars of an empty range: every bin, all empty, as in-process
    got = trade_bars_dask(store, SYM, "1h", start=lo, end=hi).compute()
    pd.testing.assert_frame_equal(got, select_trade_bars(store["trades"], SYM, "1h", start=lo, end=hi), check_exact=True)
    assert len(got) == 48 and got["count"].sum() == 0


def test_as_of_corrections_deletes_and_a_graph_built_before_a_write(client, days_store, clock):
    store = days_store
    clock.advance(60)  # a frozen clock: commits in one instant get times a few ns past it
    t0 = clock.now()
    fixed = select_dask(store, "trades", SYM)  # as_of=None is resolved now, at build time
    clock.advance(60)
    fixed_bars = trade_bars_dask(store, SYM, "5min", start=D, end=D + 6 * DAY)
    clock.advance(60)
    corrected = store["trades"].select(SYM, D + DAY, D + 2 * DAY)
    corrected["price"] += 1.0
    store["trades"].insert(SYM, D + DAY, corrected, reason="test correction")
    store["trades"].delete(SYM, D + 2 * DAY, reason="test delete")
    store.snapshot("after-fix")
    clock.advance(60)
    store["trades"].insert(SYM, D + 3 * DAY, synth_trades(D + 3 * DAY, D + 4 * DAY, 500, seed=9, first_id=99_000), reason="late backfill")

    before = store["trades"].select(SYM, as_of=t0)
    pd.testing.assert_frame_equal(fixed.compute(), before, check_exact=True)
    # the graph's coverage was read when it was built, too: 08-04 was missing then
    spans_then = uncovered(store, "trades", SYM, D, D + 6 * DAY, as_of=t0)
    pd.testing.assert_frame_equal(fixed_bars.compute(), trade_bars(before, "5min", start=D, end=D + 6 * DAY, uncovered=spans_then), check_exact=True)
    assert (fixed_bars.compute().loc["2024-08-04", "coverage"] == 0).all()
    for as_of in (t0, "after-fix", None):
        want = store["trades"].select(SYM, as_of=as_of)
        got = select_dask(store, "trades", SYM, as_of=as_of, files_per_partition=3).compute()
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        got = trade_bars_dask(store, SYM, "1min", start=D, end=D + 6 * DAY, as_of=as_of, files_per_partition=2).compute()
        pd.testing.assert_frame_equal(got, select_trade_bars(store["trades"], SYM, "1min", start=D, end=D + 6 * DAY, as_of=as_of), check_exact=True)
    # latest: the deleted day is gone, the backfilled gap day is there
    assert [w[0] for w in partition_windows(store, "trades", SYM)] == [D, D + DAY, D + 3 * DAY, D + 4 * DAY, D + 5 * DAY]


def test_live_segments_of_a_day_read_in_version_order(client, store):
    # three appends of interleaved prints of one day: overlapping files, shared timestamps
    trades = synth_trades(D, D + DAY, 6_000, seed=3)
    for part in range(3):
        store["trades"].append(SYM, trades.iloc[part::3])
    (pin,) = partition_pins(store, "trades", SYM)
    assert len(pin.files) == 3 and pin.start is None and pin.end is None  # whole day: unbounded pin
    want = store["trades"].select(SYM)
    pd.testing.assert_frame_equal(select_dask(store, "trades", SYM).compute(), want, check_exact=True)
    pd.testing.assert_frame_equal(store.read_pin(pin), want, check_exact=True)
    lo, hi = D + pd.Timedelta(hours=6), D + pd.Timedelta(hours=18)
    (clipped,) = partition_pins(store, "trades", SYM, lo, hi)
    assert (clipped.start, clipped.end) == (lo.value, hi.value)
    pd.testing.assert_frame_equal(select_dask(store, "trades", SYM, lo, hi).compute(), store["trades"].select(SYM, lo, hi), check_exact=True)


def test_live_segments_of_several_days_in_one_task(client, store):
    # each append covers three days, so no day is compacted: 3 overlapping files per day
    trades = synth_trades(D, D + 3 * DAY, 9_000, seed=4)
    for part in range(3):
        store["trades"].append(SYM, trades.iloc[part::3])
    assert [len(p.files) for p in partition_pins(store, "trades", SYM)] == [3, 3, 3]
    want = store["trades"].select(SYM)
    for k in (1, 2, 3):
        pd.testing.assert_frame_equal(select_dask(store, "trades", SYM, files_per_partition=k).compute(), want, check_exact=True)
    lo, hi = D + pd.Timedelta(hours=20), D + 2 * DAY + pd.Timedelta(hours=1)  # clipped, whole, clipped
    pd.testing.assert_frame_equal(
        select_dask(store, "trades", SYM, lo, hi, files_per_partition=3).compute(), store["trades"].select(SYM, lo, hi), check_exact=True
    )
    got = trade_bars_dask(store, SYM, "1s", start=lo, end=hi, files_per_partition=3).compute()
    pd.testing.assert_frame_equal(got, select_trade_bars(store["trades"], SYM, "1s", start=lo, end=hi), check_exact=True)


def test_month_files_and_string_columns(client, store):
    bars = pd.DataFrame(
        {c: np.arange(3 * 24 * 60 * 31, dtype=float) for c in ("open", "high", "low", "close", "volume")},
        index=pd.date_range("2024-06-01", periods=3 * 24 * 60 * 31, freq="1min", tz="UTC", name="ts"),
    )
    store["ohlcv_1m"].append(SYM, bars)
    lo, hi = pd.Timestamp("2024-06-15", tz="UTC"), pd.Timestamp("2024-08-20 12:00", tz="UTC")
    ddf = select_dask(store, "ohlcv_1m", SYM, lo, hi)
    assert ddf.npartitions == 3  # one per month file
    pd.testing.assert_frame_equal(ddf.compute(), store["ohlcv_1m"].select(SYM, lo, hi), check_exact=True)
    gaps = pd.DataFrame(
        {
            "recv_ts": pd.DatetimeIndex(["2024-08-01 00:00:01", "2024-08-02 00:00:02"], tz="UTC"),
            "end_ts": pd.DatetimeIndex(["2024-08-01 00:00:09", "2024-08-02 00:00:05"], tz="UTC"),
            "stream": ["trades", "book"],
            "cause": ["disconnect", "sequence"],
            "detail": ["ws closed 1006", "gap 17 -> 19"],
        },
        index=pd.DatetimeIndex(["2024-08-01 00:00:00", "2024-08-02 00:00:00"], tz="UTC", name="ts"),
    )
    store["gaps"].append(SYM, gaps)
    got = select_dask(store, "gaps", SYM).compute()  # object strings, as select returns them
    pd.testing.assert_frame_equal(got, store["gaps"].select(SYM), check_exact=True)
    assert got["stream"].dtype == object


def test_pins_reproduce_the_partitions_and_verify_catches_an_altered_file(client, days_store):
    store = days_store
    pins = partition_pins(store, "trades", SYM, columns=COLS)
    assert len(pins) == 5 and all(len(p.files) == 1 for p in pins)
    parts = [store.read_pin(p) for p in pins]
    pd.testing.assert_frame_equal(pd.concat(parts), store["trades"].select(SYM, columns=COLS), check_exact=True)
    pd.testing.assert_frame_equal(
        select_dask(store, "trades", SYM, columns=COLS, verify=True).compute(), store["trades"].select(SYM, columns=COLS), check_exact=True
    )
    path = store.root / pins[1].files[0].path
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(PinError, match="altered"):
        select_dask(store, "trades", SYM, columns=COLS, verify=True).compute()


def test_workers_keep_one_open_store_per_root(client, days_store):
    store = days_store
    root = str(store.root)
    client.run(close_worker_stores)
    trade_bars_dask(store, SYM, "1min", start=D, end=D + 6 * DAY).compute()
    opened = client.run(worker_stores)
    assert any(root in roots for roots in opened.values())
    assert all(set(roots) <= {root} | set(roots) for roots in opened.values())
    closed = client.run(close_worker_stores)
    assert sum(closed.values()) >= 1 and all(v == [] for v in client.run(worker_stores).values())
    # reopened on demand
    pd.testing.assert_frame_equal(select_dask(store, "trades", SYM).compute(), store["trades"].select(SYM), check_exact=True)


def test_local_cluster_workers_processes_threads_and_environment(client, monkeypatch):
    info = client.scheduler_info()["workers"]
    assert len(info) == 2
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert sum(client.nthreads().values()) == 2 * max(1, cores // 2)
    pids = client.run(os.getpid)
    assert os.getpid() not in pids.values() and len(set(pids.values())) == 2  # processes, not threads
    assert set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {None}
    # even when this process's environment has the variable (an earlier default cluster's
    # nanny leaves it here), local_cluster's workers start without it, and it is put back
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    with local_cluster(1, threads_per_worker=1) as cluster, distributed.Client(cluster) as c:
        assert set(c.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {None}
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"


def test_bad_arguments_are_refused(days_store, tmp_path):
    store = days_store
    for k in (0, -1, True, 1.5, "2"):
        with pytest.raises(ResearchError, match="files_per_partition"):
            select_dask(store, "trades", SYM, files_per_partition=k)
    for freq in ("7min", "0s", "W-MON", "MS"):
        with pytest.raises(ResearchError):
            trade_bars_dask(store, SYM, freq, start=D, end=D + DAY)
    with pytest.raises(ResearchError, match="callable"):
        scan_dask(store, "trades", SYM, "not a function")
    with pytest.raises(ResearchError, match="not before"):
        select_dask(store, "trades", SYM, D + DAY, D)
    # a worker that does not see the store at the client's path says so
    missing = str(tmp_path / "nowhere")
    with pytest.raises(ResearchError, match="not a directory on this worker"):
        _scan_task((), D.value, (D + DAY).value, missing, False, None, "trades", None)
    assert not os.path.exists(missing)


def test_meta_is_inferred_from_fn_and_partial_functions_travel(client, days_store):
    store = days_store
    fn = functools.partial(trade_bars, freq="15min")

    def window_bars(frame, lo, hi):  # a closure: cloudpickle ships it by value
        return fn(frame, start=lo, end=hi)

    got = scan_dask(store, "trades", SYM, window_bars, D, D + 6 * DAY, columns=COLS, files_per_partition=2)
    assert list(got.columns) == list(trade_bars(store["trades"].select(SYM, columns=COLS), "15min").columns)
    pd.testing.assert_frame_equal(got.compute(), select_trade_bars(store["trades"], SYM, "15min", start=D, end=D + 6 * DAY, coverage=False), check_exact=True)
