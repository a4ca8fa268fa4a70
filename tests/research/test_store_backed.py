"""Research reads straight from a store: bars by table/symbol/range/as_of, and the Dask entry point."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.research import real
from research.bars import book_bars, select_book_bars, select_trade_bars, trade_bars
from research.datasets import SPOT_2024, USDM_2024
from research.scale import partition_windows, select_dask

SPOT = "binance:BTC/USDT"
PERP = "binance:BTC/USDT:USDT"
SPOT_0809 = "hftbacktest/spot/btcusdt_20240809.gz"


@pytest.fixture
def spot_store(store, real_file):
    # the two spot captures: 2024-08-08 23:54 .. 2024-08-09 00:05 -> two day files
    trades = pd.concat([real.load_binance_trades(real_file(SPOT_2024)), real.load_binance_trades(real_file(SPOT_0809))])
    store["trades"].append(SPOT, trades)
    return store, trades


def test_select_trade_bars_equals_bars_of_the_frame_and_respects_as_of(spot_store, clock):
    store, trades = spot_store
    start, end = pd.Timestamp("2024-08-08 23:50", tz="UTC"), pd.Timestamp("2024-08-09 00:10", tz="UTC")
    bars = select_trade_bars(store["trades"], SPOT, "1min", start=start, end=end)
    assert len(bars) == 20 and bars.index[0] == start  # every minute of the range, 23:50..00:09
    assert (bars.pop("coverage") == 1.0).all()  # both day files present, no gap in the ledger
    pd.testing.assert_frame_equal(bars, trade_bars(trades, "1min", start=start, end=end))
    assert bars["count"].sum() == len(trades)
    t0 = clock.now()
    clock.advance(60)
    late = trades.loc["2024-08-09"].copy()
    late["price"] += 1.0  # a correction of the second day
    store["trades"].insert(SPOT, "2024-08-09", late, reason="test correction")
    before = select_trade_bars(store["trades"], SPOT, "1min", start=start, end=end, as_of=t0, coverage=False)
    pd.testing.assert_frame_equal(before, bars)
    after = select_trade_bars(store["trades"], SPOT, "1min", start=start, end=end, coverage=False)
    pd.testing.assert_series_equal(after.loc["2024-08-09", "close"], bars.loc["2024-08-09", "close"] + 1)  # NaN stays NaN
    assert after.loc["2024-08-09", "close"].notna().sum() == 6  # prints until 00:05:04: minutes 00:00..00:05


def test_select_book_bars_from_a_quotes_table(store, real_file):
    quotes = real.load_binance_quotes(real_file(USDM_2024))
    store["quotes"].append(PERP, quotes)
    start, end = pd.Timestamp("2024-08-08 23:55", tz="UTC"), pd.Timestamp("2024-08-09 00:00", tz="UTC")
    got = select_book_bars(store["quotes"], PERP, "500ms", start=start, end=end)
    assert len(got) == 600  # 5 minutes of 500 ms bins
    assert (got.pop("coverage") == 1.0).all()
    pd.testing.assert_frame_equal(got, book_bars(quotes.loc[start : end - pd.Timedelta(1, "ns")], "500ms", start=start, end=end))


def test_dask_select_on_a_local_cluster_equals_the_in_process_select(spot_store):
    distributed = pytest.importorskip("distributed")
    store, trades = spot_store
    assert [w[0].date().isoformat() for w in partition_windows(store, "trades", SPOT)] == ["2024-08-08", "2024-08-09"]
    ddf = select_dask(store, "trades", SPOT)
    assert ddf.npartitions == 2  # one per day file
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster):
            got = ddf.compute()
            bars = select_dask(store, "trades", SPOT, columns=["price", "qty", "side"]).map_partitions(
                trade_bars, "1min", meta=trade_bars(trades.iloc[:1], "1min").iloc[:0]
            ).compute()
    expected = store["trades"].select(SPOT)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert len(got) == len(trades)
    # bars per day file, concatenated, equal bars of everything (minute bins never straddle a day)
    pd.testing.assert_frame_equal(bars, trade_bars(expected, "1min"), check_exact=True)
