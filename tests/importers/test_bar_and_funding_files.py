"""freqtrade data folders, ccxt json.dump files and funding-history CSVs -> the store.

Formats: https://www.freqtrade.io/en/stable/data-download/ (user_data/data/<exchange>/
[futures/]<PAIR>-<timeframe>[-<candle type>].feather; columns date, open, high, low, close,
volume; json: [[ms, o, h, l, c, v], ...]); https://docs.ccxt.com (fetch_ohlcv arrays,
fetch_funding_rate_history structures). Real samples: the historical-funding-rates-fetcher
CSVs (Binance 2020-2023, Bybit 2021-2023; Date in the author's UTC+3 local time).
"""

from __future__ import annotations

import csv
import json


import pandas as pd
import pyarrow.feather as feather
import pytest

from collectors.funding import settlement_times
from collectors.importers import MalformedInput, MissingOption
from tests.importers.helpers import run, write


def _feather(path, df):
    path.parent.mkdir(parents=True, exist_ok=True)
    feather.write_feather(df, path)
    return path


def test_freqtrade_spot_futures_mark_and_funding(store, tmp_path):
    base = tmp_path / "user_data" / "data" / "binance"
    dates = pd.date_range("2024-01-01", periods=3, freq="1h", tz="UTC")
    ohlcv = pd.DataFrame({"date": dates, "open": [1.0, 2, 3], "high": [2.0, 3, 4], "low": [0.5, 1, 2],
                          "close": [1.5, 2.5, 3.5], "volume": [10.0, 20, 30]})
    _feather(base / "BTC_USDT-1h.feather", ohlcv)
    _feather(base / "futures" / "BTC_USDT_USDT-1h-futures.feather", ohlcv)
    _feather(base / "futures" / "BTC_USDT_USDT-8h-mark.feather", ohlcv)
    funding = pd.DataFrame({"date": pd.DatetimeIndex(["2024-01-01 00:00:00.004", "2024-01-01 08:00:00", "2024-01-01 16:00:01"], tz="UTC"),
                            "open": [0.0001, -0.0002, 0.00015], "high": 0.0, "low": 0.0, "close": 0.0, "volume": 0.0})
    _feather(base / "futures" / "BTC_USDT_USDT-8h-funding_rate.feather", funding)
    run(store, tmp_path / "user_data")
    spot = store["ohlcv_1h"].select("binance:BTC/USDT")
    perp = store["ohlcv_1h"].select("binance:BTC/USDT:USDT")
    for got in (spot, perp):
        assert list(got.index) == list(dates)
        assert got[["open", "high", "low", "close", "volume"]].values.tolist() == ohlcv.iloc[:, 1:].values.tolist()
    assert store["mark_ohlcv_8h"].select("binance:BTC/USDT:USDT")["close"].tolist() == [1.5, 2.5, 3.5]
    f = store["funding"].select("binance:BTC/USDT:USDT")
    assert list(f.index) == list(settlement_times(funding["date"]))  # the public helper: snapped to the hour
    assert list(f.index) == list(pd.date_range("2024-01-01", periods=3, freq="8h", tz="UTC"))
    assert f["rate"].tolist() == [0.0001, -0.0002, 0.00015] and f["interval_h"].tolist() == [8.0] * 3


def test_freqtrade_json_and_unknown_exchange_folder(store, tmp_path):
    rows = [[1704067200000, 1.0, 2.0, 0.5, 1.5, 10.0], [1704067500000, 1.5, 2.5, 1.0, 2.0, 5.0]]
    path = write(tmp_path / "data" / "okx" / "ETH_USDT-5m.json", json.dumps(rows))
    with pytest.raises(MissingOption, match="pass --venue"):
        run(store, path)
    run(store, path, venue="bybit")
    got = store["ohlcv_5m"].select("bybit:ETH/USDT")
    assert got.values.tolist() == [r[1:] for r in rows]


def test_settlement_helper_refuses_what_is_not_a_settlement():
    from collectors.funding import SettlementError

    with pytest.raises(SettlementError, match="off the hour"):
        settlement_times(pd.DatetimeIndex(["2024-01-01 00:30"], tz="UTC"))
    with pytest.raises(SettlementError, match="two settlements snap to"):
        settlement_times(pd.DatetimeIndex(["2024-01-01 00:00:01", "2024-01-01 00:00:02"], tz="UTC"))
    assert list(settlement_times(pd.DatetimeIndex(["2023-05-23 08:23:53.040"], tz="UTC"))) == [
        pd.Timestamp("2023-05-23 08:00", tz="UTC")]  # Hyperliquid's late stamp


def test_ccxt_ohlcv_and_funding_dumps(store, tmp_path):
    ohlcv = [[1504541580000, 4235.4, 4240.6, 4230.0, 4230.7, 37.72941911], [1504541640000, 4230.7, 4233.0, 4229.0, 4231.0, 12.5]]
    path = write(tmp_path / "btc.json", json.dumps(ohlcv))
    with pytest.raises(MissingOption, match="--venue"):
        run(store, path)
    with pytest.raises(MissingOption, match="--symbol"):
        run(store, path, venue="binance")
    run(store, path, venue="binance", symbol="BTC/USDT")
    got = store["ohlcv_1m"].select("binance:BTC/USDT")
    assert got.values.tolist() == [r[1:] for r in ohlcv]
    funding = [{"info": {"symbol": "BTCUSDT", "fundingTime": "1704067200000", "fundingRate": "0.0001"}, "symbol": "BTC/USDT:USDT",
                "fundingRate": 0.0001, "timestamp": 1704067200000, "datetime": "2024-01-01T00:00:00.000Z"},
               {"info": {"symbol": "BTCUSDT", "fundingTime": "1704096000002", "fundingRate": "0.0002"}, "symbol": "BTC/USDT:USDT",
                "fundingRate": 0.0002, "timestamp": 1704096000002, "datetime": "2024-01-01T08:00:00.002Z"}]
    run(store, write(tmp_path / "funding.json", json.dumps(funding)))  # venue from the info fields
    f = store["funding"].select("binance:BTC/USDT:USDT")
    assert f["rate"].tolist() == [0.0001, 0.0002] and f.index[1] == pd.Timestamp("2024-01-01 08:00", tz="UTC")
    assert f["interval_h"].tolist() == [8.0, 8.0]


@pytest.mark.parametrize("venue,rel,n", [
    ("binance", "BTC-USDT_binance_2020-01-01_2024-01-01_funding_history.csv", 4383),
    ("bybit", "BTC-USDT_bybit_2021-01-01_2024-01-01_funding_history.csv", 3285),
])
def test_real_funding_history_csv_with_its_utc_offset(store, data_dir, venue, rel, n):
    path = data_dir / "historical-funding-rates-fetcher" / rel
    with pytest.raises(MissingOption, match="--utc-offset"):
        run(store, path)
    with pytest.raises(MalformedInput, match=r"not on the 8 h grid.*is --utc-offset 0h right\?"):
        run(store, path, utc_offset="0h")
    run(store, path, utc_offset="3h")
    got = store["funding"].select(f"{venue}:BTC/USDT:USDT")
    rows = list(csv.DictReader(open(path)))
    assert len(got) == len(rows) == n
    want = [(pd.Timestamp(r["Date"]) - pd.Timedelta("3h")).tz_localize("UTC").round("h") for r in rows]
    assert list(got.index) == want and got["rate"].tolist() == [float(r["Funding Rate"]) for r in rows]
    assert set(got.index.hour) == {0, 8, 16} and (got["interval_h"] == 8.0).all()



