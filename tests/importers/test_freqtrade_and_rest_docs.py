"""freqtrade data folders and Binance REST bodies in their documented shapes.

Sources: freqtrade https://www.freqtrade.io/en/stable/data-download/ (``--data-format-ohlcv``
json, jsongz, feather, parquet; candle types spot, futures, mark, index, premiumIndex,
funding_rate) and its data handler (``freqtrade/data/history/datahandlers/idatahandler.py``:
``<pair>-<timeframe>[-<candle type>].<ext>`` under ``futures/`` for non-spot types; the
timeframe ``1M`` written ``1Mo``; ``<pair>-trades.<ext>`` for trades; the pair made a file
name by ``misc.pair_to_filename``, ``/`` and ``:`` -> ``_``). Binance REST
https://developers.binance.com/docs: COIN-M ``GET /dapi/v1/trades`` (``baseQty``) and
``GET /fapi/v1/markPriceKlines`` (volumes "0", the count the number of basic data).
"""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collectors.importers import DataImportError, MalformedInput, MissingOption
from tests.importers.helpers import run, write

DATES = pd.date_range("2024-01-01", periods=3, freq="1h", tz="UTC")
OHLCV = pd.DataFrame({"date": DATES, "open": [1.0, 2, 3], "high": [2.0, 3, 4], "low": [0.5, 1, 2],
                      "close": [1.5, 2.5, 3.5], "volume": [10.0, 20, 30]})


def _parquet(path, df):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    return path


def test_freqtrade_parquet_hyperliquid_futures(store, tmp_path):
    path = _parquet(tmp_path / "user_data/data/hyperliquid/futures/BTC_USDC_USDC-1h-futures.parquet", OHLCV)
    run(store, path)
    got = store["ohlcv_1h"].select("hyperliquid:BTC/USDC:USDC")
    assert list(got.index) == list(DATES)
    assert got.values.tolist() == OHLCV.iloc[:, 1:].values.tolist()


def test_freqtrade_monthly_candles_are_written_1Mo(store, tmp_path):
    months = pd.DataFrame({"date": pd.DatetimeIndex(["2024-01-01", "2024-02-01"], tz="UTC"), "open": [1.0, 2.0],
                           "high": [2.0, 3.0], "low": [0.5, 1.5], "close": [1.5, 2.5], "volume": [100.0, 200.0]})
    rows = [[int(t.value // 1_000_000), *r] for t, r in zip(months["date"], months.iloc[:, 1:].values.tolist())]
    run(store, write(tmp_path / "data/binance/BTC_USDT-1Mo.json", json.dumps(rows)))
    got = store["ohlcv_1mo"].select("binance:BTC/USDT")
    assert list(got.index) == list(months["date"]) and got["volume"].tolist() == [100.0, 200.0]


def test_freqtrade_trades_and_unknown_candle_types_are_refused_with_a_reason(store, tmp_path):
    trades = [[1704067200000, "1", None, "buy", 42000.0, 0.1, 4200.0]]
    with pytest.raises(DataImportError, match="freqtrade trade files are not imported"):
        run(store, write(tmp_path / "data/binance/BTC_USDT-trades.json", json.dumps(trades)))
    with pytest.raises(DataImportError, match="candle type 'open_interest' is not imported"):
        run(store, write(tmp_path / "data/binance/futures/BTC_USDT_USDT-1h-open_interest.json", json.dumps([[1704067200000, 1, 1, 1, 1, 1]])))
    assert store.tables() == []


COINM_BODY = [{"id": 28457, "price": "9635.0", "qty": "1", "baseQty": "0.01037883", "time": 1591250192508, "isBuyerMaker": True},
              {"id": 28458, "price": "9635.1", "qty": "3", "baseQty": "0.03113610", "time": 1591250192611, "isBuyerMaker": False}]


def test_rest_coinm_trades_take_their_symbol_from_the_name(store, tmp_path):
    run(store, write(tmp_path / "BTCUSD_PERP-trades.json", json.dumps(COINM_BODY)))
    got = store["trades"].select("binance:BTC/USD:BTC")
    assert got["trade_id"].tolist() == [r["id"] for r in COINM_BODY]
    assert got["qty"].tolist() == [float(r["qty"]) for r in COINM_BODY]  # contracts
    assert got["side"].tolist() == [-1, 1]
    assert [t.value for t in got.index] == [r["time"] * 1_000_000 for r in COINM_BODY]


MARK_BODY = [[1591256400000, "9653.69440000", "9653.69640000", "9651.38600000", "9651.55200000", "0", 1591256459999, "0", 60, "0", "0", "0"],
             [1591256460000, "9651.55200000", "9652.00000000", "9650.10000000", "9650.70000000", "0", 1591256519999, "0", 60, "0", "0", "0"]]


def test_rest_mark_price_klines_are_never_bars_of_trades(store, tmp_path):
    loose = write(tmp_path / "BTCUSDT-1m.json", json.dumps(MARK_BODY))
    with pytest.raises(MissingOption, match="--kind markPriceKlines"):
        run(store, loose, market="usdm")
    run(store, write(tmp_path / "BTCUSDT-markPriceKlines-1m.json", json.dumps(MARK_BODY)))
    got = store["mark_ohlcv_1m"].select("binance:BTC/USDT:USDT")
    assert got["close"].tolist() == [float(r[4]) for r in MARK_BODY]
    assert [t.value for t in got.index] == [r[0] * 1_000_000 for r in MARK_BODY]
    assert "ohlcv_1m" not in store.tables()


SPOT_TRADES_BODY = [{"id": 28457, "price": "4.00000100", "qty": "12.00000000", "quoteQty": "48.000012", "time": 1499865549590,
                     "isBuyerMaker": True, "isBestMatch": True},
                    {"id": 28458, "price": "4.00000200", "qty": "1.00000000", "quoteQty": "4.000002", "time": 1499865549591,
                     "isBuyerMaker": False, "isBestMatch": True}]


def test_a_bad_record_is_named_by_its_place_and_nothing_is_written(store, tmp_path):
    bad = [dict(SPOT_TRADES_BODY[0]), dict(SPOT_TRADES_BODY[1], price="n/a")]
    with pytest.raises(MalformedInput, match=r"BTCUSDT_trades.json: record 2 of the array: price 'n/a' is not a float64"):
        run(store, write(tmp_path / "BTCUSDT_trades.json", json.dumps(bad)))
    # one body per line (a poller's log): the line is named, also for a line that is not JSON
    lines = json.dumps(SPOT_TRADES_BODY[:1]) + "\n" + json.dumps([dict(SPOT_TRADES_BODY[1], isBuyerMaker="yes")]) + "\n"
    with pytest.raises(MalformedInput, match=r"BTCUSDT_trades.jsonl, line 2: isBuyerMaker 'yes' is not true or false"):
        run(store, write(tmp_path / "BTCUSDT_trades.jsonl", lines))
    with pytest.raises(MalformedInput, match=r"BTCUSDT_more.jsonl, line 3: not JSON"):
        run(store, write(tmp_path / "BTCUSDT_more.jsonl", lines.replace('"yes"', "true") + "{oops\n"))
    assert store.tables() == []
    run(store, write(tmp_path / "BTCUSDT_ok.jsonl", lines.replace('"yes"', "false")))
    got = store["trades"].select("binance:BTC/USDT")
    assert got["trade_id"].tolist() == [28457, 28458] and got["side"].tolist() == [-1, 1]


def test_ccxt_nulls_are_refused_not_stored_as_nan(store, tmp_path):
    ohlcv = [[1504541580000, 4235.4, 4240.6, 4230.0, 4230.7, 37.7], [1504541640000, 4230.7, 4233.0, 4229.0, None, 12.5]]
    with pytest.raises(MalformedInput, match=r"record 2 of the array: close is None"):
        run(store, write(tmp_path / "btc_1m.json", json.dumps(ohlcv)), venue="binance", symbol="BTC/USDT")
    funding = [{"info": {"fundingTime": "1704067200000"}, "symbol": "BTC/USDT:USDT", "fundingRate": None,
                "timestamp": 1704067200000, "datetime": "2024-01-01T00:00:00.000Z"}]
    with pytest.raises(MalformedInput, match="fundingRate is None"):
        run(store, write(tmp_path / "funding.json", json.dumps(funding)))
    assert store.tables() == []


def test_rest_open_interest_history_usdm_and_coinm(store, tmp_path):
    # https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Open-Interest-Statistics
    # and .../coin-margined-futures/market-data/rest-api/Open-Interest-Statistics (pair, contractType)
    um = [{"symbol": "BTCUSDT", "sumOpenInterest": "20403.63700000", "sumOpenInterestValue": "150570784.07809979", "timestamp": 1583127900000},
          {"symbol": "BTCUSDT", "sumOpenInterest": "20401.36700000", "sumOpenInterestValue": "149940752.14464448", "timestamp": 1583128200000}]
    cm = [{"pair": "BTCUSD", "contractType": "PERPETUAL", "sumOpenInterest": "20403", "sumOpenInterestValue": "176196512.2",
           "timestamp": 1583127900000}]
    run(store, write(tmp_path / "oi_um.json", json.dumps(um)), write(tmp_path / "oi_cm.json", json.dumps(cm)))
    got = store["open_interest"].select("binance:BTC/USDT:USDT")
    assert got.values.tolist() == [[float(r["sumOpenInterest"]), float(r["sumOpenInterestValue"])] for r in um]
    assert [t.value for t in got.index] == [r["timestamp"] * 1_000_000 for r in um]
    assert store["open_interest"].select("binance:BTC/USD:BTC")["oi"].tolist() == [20403.0]


def test_rest_funding_of_several_symbols_cannot_take_one_symbol_option(store, tmp_path):
    # https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Get-Funding-Rate-History
    body = [{"symbol": "BTCUSDT", "fundingTime": 1698768000000, "fundingRate": "0.00010000", "markPrice": "34287.54619963"},
            {"symbol": "ETHUSDT", "fundingTime": 1698768000001, "fundingRate": "0.00012000", "markPrice": "1800.1"}]
    path = write(tmp_path / "funding.json", json.dumps(body))
    with pytest.raises(MissingOption, match="holds 'BTCUSDT' and 'ETHUSDT'"):
        run(store, path, symbol="binance:BTC/USDT:USDT")
    run(store, path)
    assert store["funding"].select("binance:ETH/USDT:USDT")["rate"].tolist() == [0.00012]


def test_freqtrade_jsongz_mark_candles(store, tmp_path):
    # --data-format-ohlcv jsongz: the json rows, gzip-compressed, named .json.gz
    import gzip

    rows = [[1704067200000, 42000.0, 42100.0, 41900.0, 42050.0, 0.0], [1704096000000, 42050.0, 42300.0, 42000.0, 42200.0, 0.0]]
    path = tmp_path / "data/bybit/futures/BTC_USDT_USDT-8h-mark.json.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(json.dumps(rows).encode()))
    run(store, path)
    got = store["mark_ohlcv_8h"].select("bybit:BTC/USDT:USDT")
    assert got.values.tolist() == [r[1:] for r in rows]
    assert [t.value for t in got.index] == [r[0] * 1_000_000 for r in rows]
