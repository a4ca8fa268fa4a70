"""Tardis CSVs of every venue the store collects, in the documented shapes.

Source: https://docs.tardis.dev/downloadable-csv-files (data types trades, quotes,
book_ticker, derivative_ticker, liquidations; columns exchange, symbol, timestamp,
local_timestamp, ...; microseconds since epoch, UTC; grouped files such as
``bybit_trades_<date>_PERPETUALS.csv.gz`` hold many symbols) and the normalisation code those
CSVs come from (github.com/tardis-dev/tardis-node ``src/mappers``: Bybit v5 ``publicTrade``
``i`` -> id; Bybit liquidation side turned to the liquidation order's side; Binance spot
book_ticker stamped with the receive time). Each test compares stored rows with a parse
of the same text written here.
"""

from __future__ import annotations

import csv
import io

import pytest

from collectors.exchanges.bybit import trade_id
from collectors.importers import DataImportError, MissingOption
from tests.importers.helpers import run, write


def _rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def _us(v) -> int:
    return int(v) * 1000


BYBIT_TRADES = """exchange,symbol,timestamp,local_timestamp,id,side,price,amount
bybit,BTCUSDT,1704067200012000,1704067200015123,a9188a0a-82bc-50de-be60-03eedbe3cdd7,buy,42300.1,0.5
bybit,ETHUSDT,1704067200013000,1704067200016123,d9cd8295-40dc-5dce-8deb-42882580a7ab,sell,2300.1,1.5
bybit,BTCUSDT,1704067200014000,1704067200017000,5e580a5e-b412-5c7b-bb94-edef31ee0d0c,sell,42300.0,0.25
"""


def test_grouped_bybit_trades_split_by_symbol_with_live_trade_ids(store, tmp_path):
    run(store, write(tmp_path / "bybit_trades_2024-01-01_PERPETUALS.csv.gz", BYBIT_TRADES, gz=True))
    for native, sym in (("BTCUSDT", "bybit:BTC/USDT:USDT"), ("ETHUSDT", "bybit:ETH/USDT:USDT")):
        rows = [r for r in _rows(BYBIT_TRADES) if r["symbol"] == native]
        got = store["trades"].select(sym)
        assert got["trade_id"].tolist() == [trade_id(r["id"]) for r in rows]
        assert [t.value for t in got.index] == [_us(r["timestamp"]) for r in rows]
        assert [t.value for t in got["recv_ts"]] == [_us(r["local_timestamp"]) for r in rows]
        assert got["side"].tolist() == [1 if r["side"] == "buy" else -1 for r in rows]
        assert got["qty"].tolist() == [float(r["amount"]) for r in rows]


def test_bybit_inverse_rows_named_as_ccxt(store, tmp_path):
    # Tardis' bybit holds linear and inverse contracts: each named by the project's mapping
    text = BYBIT_TRADES.replace("bybit,ETHUSDT", "bybit,BTCUSD")
    run(store, write(tmp_path / "bybit_trades_2024-01-01_PERPETUALS.csv", text))
    assert store["trades"].select("bybit:BTC/USD:BTC")["qty"].tolist() == [1.5]
    assert len(store["trades"].select("bybit:BTC/USDT:USDT")) == 2


HL_TRADES = """exchange,symbol,timestamp,local_timestamp,id,side,price,amount
hyperliquid,kPEPE,1704067200013000,1704067200016123,123456790,sell,0.0023,1000
hyperliquid,kPEPE,1704067200013000,1704067200016200,123456791,buy,0.0023,10
"""


def test_hyperliquid_coins_named_as_ccxt_and_spot_refused(store, tmp_path):
    run(store, write(tmp_path / "hyperliquid_trades_2024-01-01_kPEPE.csv", HL_TRADES))
    got = store["trades"].select("hyperliquid:KPEPE/USDC:USDC")
    assert got["trade_id"].tolist() == [123456790, 123456791] and got["side"].tolist() == [-1, 1]
    with pytest.raises(DataImportError, match="'@107' is a spot market"):
        run(store, write(tmp_path / "hyperliquid_trades_2024-01-01_@107.csv", HL_TRADES.replace("kPEPE", "@107")))


SPOT_BOOK_TICKER = """exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount
binance,BTCUSDT,1704067200015123,1704067200015123,2.5,42300.1,42300.0,1.25
binance,BTCUSDT,1704067200031000,1704067200031000,2.0,42300.2,42300.1,0.5
"""


def test_binance_spot_book_ticker_is_on_the_receive_clock(store, tmp_path):
    run(store, write(tmp_path / "binance_book_ticker_2024-01-01_BTCUSDT.csv", SPOT_BOOK_TICKER))
    got = store["quotes"].select("binance:BTC/USDT")
    rows = _rows(SPOT_BOOK_TICKER)
    assert [t.value for t in got.index] == [_us(r["timestamp"]) for r in rows]
    assert list(got["recv_ts"]) == list(got.index)  # no exchange time: ts == recv_ts, as the live rule
    assert got[["bid_px", "bid_qty", "ask_px", "ask_qty"]].values.tolist() == [
        [float(r["bid_price"]), float(r["bid_amount"]), float(r["ask_price"]), float(r["ask_amount"])] for r in rows]


TICKERS = """exchange,symbol,timestamp,local_timestamp,funding_timestamp,funding_rate,predicted_funding_rate,open_interest,last_price,index_price,mark_price
bybit,BTCUSDT,1704067200000000,1704067200100000,1704096000000000,0.0001,,50000,42300.5,42301.0,42302.0
binance-delivery,BTCUSD_PERP,1704067200500000,1704067200600000,1704096000000000,0.0002,,120000,42310.5,42311.0,42312.0
binance-delivery,ETHUSD_PERP,1704067200500000,1704067200600000,1704096000000000,0.0003,,800000,2300.5,2301.0,2302.0
"""


def test_derivative_ticker_open_interest_value_linear_and_inverse(store, tmp_path):
    run(store, write(tmp_path / "mixed_derivative_ticker_2024-01-01.csv", TICKERS))
    rows = {r["symbol"]: r for r in _rows(TICKERS)}
    lin = store["open_interest"].select("bybit:BTC/USDT:USDT")
    assert lin[["oi", "oi_value"]].values.tolist() == [[50000.0, 50000.0 * 42302.0]]  # contracts x mark
    # COIN-M contracts are worth 100 USD (BTC) or 10 USD (the others)
    assert store["open_interest"].select("binance:BTC/USD:BTC")["oi_value"].tolist() == [120000.0 * 100]
    assert store["open_interest"].select("binance:ETH/USD:ETH")["oi_value"].tolist() == [800000.0 * 10]
    mark = store["mark"].select("bybit:BTC/USDT:USDT")
    r = rows["BTCUSDT"]
    assert mark[["mark_px", "index_px", "funding_rate"]].values.tolist() == [
        [float(r["mark_price"]), float(r["index_price"]), float(r["funding_rate"])]]
    assert mark["next_funding_ts"].iat[0].value == _us(r["funding_timestamp"])


BYBIT_LIQ = """exchange,symbol,timestamp,local_timestamp,id,side,price,amount
bybit,BTCUSDT,1704067205000000,1704067205100000,,sell,42250.0,0.5
bybit,BTCUSDT,1704067206000000,1704067206100000,,buy,42350.0,0.1
"""


def test_bybit_liquidations_keep_tardis_sides(store, tmp_path):
    run(store, write(tmp_path / "bybit_liquidations_2024-01-01_BTCUSDT.csv", BYBIT_LIQ))
    got = store["liquidations"].select("bybit:BTC/USDT:USDT")
    rows = _rows(BYBIT_LIQ)
    # Tardis: sell = a long was liquidated (Bybit's "Buy"): -1, as the live Bybit parser stores it
    assert got["side"].tolist() == [-1 if r["side"] == "sell" else 1 for r in rows]
    assert got[["price", "qty"]].values.tolist() == [[float(r["price"]), float(r["amount"])] for r in rows]
    assert [t.value for t in got.index] == [_us(r["timestamp"]) for r in rows]


def test_one_symbol_option_cannot_rename_a_grouped_file(store, tmp_path):
    path = write(tmp_path / "bybit_trades_2024-01-01_PERPETUALS.csv", BYBIT_TRADES)
    with pytest.raises(MissingOption, match="holds 'BTCUSDT' and 'ETHUSDT'; import it without --symbol"):
        run(store, path, symbol="bybit:BTC/USDT:USDT")
    assert store.tables() == []


def test_bybit_inverse_open_interest_is_usd_contracts(store, tmp_path):
    # Bybit inverse contracts are worth 1 USD each (https://bybit-exchange.github.io/docs/v5/market/open-interest:
    # "BTCUSD(inverse) is USD"): oi_value = contracts, as the live Bybit parser stores it
    text = ("exchange,symbol,timestamp,local_timestamp,funding_timestamp,funding_rate,predicted_funding_rate,open_interest,"
            "last_price,index_price,mark_price\n"
            "bybit,BTCUSD,1704067200000000,1704067200100000,1704096000000000,0.0001,,512345678,42300.5,42301.0,42302.0\n")
    run(store, write(tmp_path / "bybit_derivative_ticker_2024-01-01_BTCUSD.csv", text))
    assert store["open_interest"].select("bybit:BTC/USD:BTC")[["oi", "oi_value"]].values.tolist() == [[512345678.0] * 2]
