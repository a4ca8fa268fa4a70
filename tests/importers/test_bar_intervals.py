"""The bar interval of a file that does not name it, read from its bar times.

ccxt ``fetch_ohlcv`` returns ``[[timestamp ms, open, high, low, close, volume], ...]``
(docs.ccxt.com, "OHLCV Structure"), and a venue leaves out bars without trades (ccxt's
manual: "some exchanges ... may not return candles for periods with no trades"); Binance's
``GET /api/v3/klines`` body is the same rows with 12 fields (developers.binance.com, "Kline/
Candlestick data"), and data.binance.vision kline CSVs carry their interval only in their name.
A bar missing near the start of such a file must not turn 1-minute bars into 2-minute ones
(before: the spacing of the first two bars was the interval), and monthly bars (28-31 days
apart) are months, not "31d".
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from collectors.importers.core import timeframe_of

from .helpers import run, write

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC, ms
MIN = 60_000


def _bars(opens_ms):
    return [[t, 42000.0 + i, 42010.0 + i, 41990.0 + i, 42005.0 + i, 1.5 + i] for i, t in enumerate(opens_ms)]


OPENS = [T0, T0 + 2 * MIN, T0 + 3 * MIN, T0 + 5 * MIN, T0 + 6 * MIN]  # the 00:01 and 00:04 bars had no trades


def test_ccxt_dump_with_a_missing_first_minute_is_1m(store, tmp_path):
    bars = _bars(OPENS)
    run(store, write(tmp_path / "btc.json", json.dumps(bars)), venue="bybit", symbol="BTC/USDT:USDT")
    assert "ohlcv_2m" not in store.tables()
    got = store["ohlcv_1m"].select("bybit:BTC/USDT:USDT")
    assert [t.value // 1_000_000 for t in got.index] == OPENS
    assert got[["open", "high", "low", "close", "volume"]].values.tolist() == [b[1:] for b in bars]


def test_binance_rest_klines_body_with_a_gap_is_1m(store, tmp_path):
    # 12 fields per row, values as strings (the documented response)
    body = [[t, "42000.1", "42010.0", "41990.0", "42005.0", "1.5", t + MIN - 1, "63007.5", 12, "0.7", "29403.5", "0"]
            for t in OPENS]
    run(store, write(tmp_path / "klines.json", json.dumps(body)), symbol="BTCUSDT", market="spot")
    assert store.tables() == ["ohlcv_1m"]
    assert [t.value // 1_000_000 for t in store["ohlcv_1m"].select("binance:BTC/USDT").index] == OPENS


def test_binance_archive_kline_csv_without_its_name_is_1m(store, tmp_path):
    header = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n"
    rows = "".join(f"{t},42000.1,42010.0,41990.0,42005.0,1.5,{t + MIN - 1},63007.5,12,0.7,29403.5,0\n" for t in OPENS)
    run(store, write(tmp_path / "data" / "futures" / "um" / "bars.csv", header + rows), symbol="BTCUSDT")
    assert store.tables() == ["ohlcv_1m"]
    assert len(store["ohlcv_1m"].select("binance:BTC/USDT:USDT")) == len(OPENS)


def test_monthly_ccxt_bars_are_calendar_months(store, tmp_path):
    opens = [int(pd.Timestamp(f"2024-{m:02d}-01", tz="UTC").value // 1_000_000) for m in (1, 2, 3, 4)]
    run(store, write(tmp_path / "btc.json", json.dumps(_bars(opens))), venue="binance", symbol="BTC/USDT")
    assert store.tables() == ["ohlcv_1mo"]
    assert [t.value // 1_000_000 for t in store["ohlcv_1mo"].select("binance:BTC/USDT").index] == opens


@pytest.mark.parametrize("opens_s,want", [
    ([0, 60, 120], "1m"), ([0, 120, 180, 300], "1m"), ([0, 7200, 10800], "1h"), ([0, 3 * 86400, 6 * 86400], "3d"),
    ([0, 7 * 86400, 21 * 86400], "7d"), ([0, 1, 3], "1s"), ([0, 900, 2700, 3600], "15m"),
])
def test_the_interval_every_spacing_is_a_multiple_of(opens_s, want):
    t0 = 1_704_067_200 * 10**9
    assert timeframe_of([t0 + s * 10**9 for s in opens_s], where="x") == want
