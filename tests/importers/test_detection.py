"""Which format a file is: every documented shape is told apart, a guess is never made.

Shapes (first lines as each format's documentation gives them): Tardis
https://docs.tardis.dev/downloadable-csv-files; Binance's archive
https://github.com/binance/binance-public-data; Bybit https://public.bybit.com/trading/ and
/spot/; Hyperliquid https://hyperliquid.gitbook.io/hyperliquid-docs/historical-data
(``asset_ctxs/<date>.csv.lz4``); Binance REST https://developers.binance.com/docs;
Hyperliquid info https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/info-endpoint;
freqtrade https://www.freqtrade.io/en/stable/data-download/; ccxt https://docs.ccxt.com
(OHLCV arrays, funding rate history structures). A file that does not say enough gets a
``MissingOption`` naming the option; an empty one an ``EmptyInput``; both before anything
of the run is written.
"""

from __future__ import annotations

import gzip
import json

import lz4.frame
import pytest

from collectors.importers import DataImportError, EmptyInput, Format, ImportOptions, MissingOption
from collectors.importers.core import open_members
from collectors.importers.detect import detect
from tests.importers.helpers import run, write, write_zip

TARDIS_TRADES = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\nbinance-futures,BTCUSDT,1704067200012000,1704067200015123,4470583013,buy,42300.1,0.5\n"
UM_TRADES = "id,price,qty,quote_qty,time,is_buyer_maker\n5266583935,61800.30,0.006,370.8018,1723161256322,false\n"
SPOT_TRADES = "3735683259,61837.63000000,0.02000000,1236.75260000,1723161255342,True,True\n"
KLINES = "1704067200000,42283.58,42300.0,42261.02,42298.62,123.4,1704067259999,5219000.1,4500,61.2,2589000.2,0\n"
BYBIT_LINEAR = ("timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional,RPI\n"
                "1756771201.5983,ATOMUSDT,Buy,0.1,4.393,PlusTick,5e580a5e-b412-5c7b-bb94-edef31ee0d0c,4.393e+07,0.1,0.4393,0\n")
BYBIT_SPOT = "id,timestamp,price,volume,side,rpi\n1,1747612800074,106453.8,0.003718,sell,0\n"
HL_CTX = ("time,coin,funding,open_interest,prev_day_px,day_ntl_vlm,premium,oracle_px,mark_px,mid_px,impact_bid_px,impact_ask_px\n"
          "2025-01-01T00:00:00Z,BTC,0.0000125,688.11,93000.0,1.2e9,0.0003,93500.0,93510.0,93509.5,93505.0,93515.0\n")
FUNDING_CSV = "Symbol,Date,Funding Rate\nBTC-USDT,2020-01-01 03:00:00.000,-0.00012359\n"
REST_TRADES = json.dumps([{"id": 28457, "price": "4.00000100", "qty": "12.00000000", "quoteQty": "48.000012",
                           "time": 1499865549590, "isBuyerMaker": True, "isBestMatch": True}])
REST_KLINES = json.dumps([[1499040000000, "0.01634790", "0.80000000", "0.01575800", "0.01577100", "148976.11427815",
                           1499644799999, "2434.19055334", 308, "1756.87402397", "28.46694368", "0"]] * 2)
REST_AGG = json.dumps([{"a": 26129, "p": "0.01633102", "q": "4.70443515", "f": 27781, "l": 27781, "T": 1498793709153,
                        "m": True, "M": True}])
HL_FUNDING = json.dumps([{"coin": "BTC", "fundingRate": "-0.00017541", "premium": "-0.00042", "time": 1684829033040}])
CCXT_OHLCV = json.dumps([[1504541580000, 4235.4, 4240.6, 4230.0, 4230.7, 37.72941911]])


def _detect(path, fmt=None, **options):
    (member,) = open_members(path)
    return detect(member, fmt, ImportOptions(**options))


@pytest.mark.parametrize("name,text,fmt,kind", [
    ("binance-futures_trades_2024-01-01_BTCUSDT.csv.gz", TARDIS_TRADES, Format.TARDIS, "trades"),
    ("data/futures/um/daily/trades/BTCUSDT/BTCUSDT-trades-2024-08-08.csv", UM_TRADES, Format.BINANCE_VISION, "trades"),
    ("BTCUSDT-trades-2024-08-08.csv", SPOT_TRADES, Format.BINANCE_VISION, "trades"),
    ("data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.csv", KLINES, Format.BINANCE_VISION, "klines"),
    ("trading/ATOMUSDT/ATOMUSDT2025-09-02.csv.gz", BYBIT_LINEAR, Format.BYBIT_HISTORY, "trades"),
    ("spot/BTCUSDT/BTCUSDT_2025-05-19.csv.gz", BYBIT_SPOT, Format.BYBIT_HISTORY, "trades"),
    ("asset_ctxs/20250101.csv.lz4", HL_CTX, Format.HYPERLIQUID_ARCHIVE, "asset_ctxs"),
    ("BTC-USDT_binance_2020-01-01_2024-01-01_funding_history.csv", FUNDING_CSV, Format.FUNDING_CSV, "funding"),
    ("BTCUSDT_trades.json", REST_TRADES, Format.BINANCE_REST, "trades"),
    ("BTCUSDT_aggTrades.json", REST_AGG, Format.BINANCE_REST, "aggTrades"),
    ("funding_BTC.json", HL_FUNDING, Format.HYPERLIQUID_REST, "fundingHistory"),
])
def test_each_documented_shape_is_its_own_format(tmp_path, name, text, fmt, kind):
    data = text.encode()
    if name.endswith(".gz"):
        data = gzip.compress(data)
    elif name.endswith(".lz4"):
        data = lz4.frame.compress(data)
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    found = _detect(path)
    assert (found.format, found.kind) == (fmt, kind)


@pytest.mark.parametrize("name,text,option", [
    ("trades.csv", SPOT_TRADES, "--format"),           # a bare numeric CSV: no name, no header
    ("klines.csv", KLINES, "--format"),
    ("BTCUSDT-1m-2024-01-01.csv", KLINES, "--market"),  # spot or futures: the name does not say
    ("ohlcv.json", CCXT_OHLCV, "--venue"),               # ccxt arrays name no exchange
    ("trades.json", REST_TRADES, "--symbol"),            # a REST body names no symbol
    ("BTCUSDT-1m-klines.json", REST_KLINES, "--market"),  # /api/v3 and /fapi/v1 klines look alike
])
def test_what_the_file_does_not_say_is_asked_for(tmp_path, name, text, option):
    path = write(tmp_path / name, text)
    with pytest.raises(MissingOption, match=option):
        _detect(path)


@pytest.mark.parametrize("name,data", [
    ("empty.csv", b""),
    ("blank.csv", b"\n\n  \n"),
    ("empty.csv.gz", gzip.compress(b"")),
    ("BTCUSDT-trades-2024-08-09.csv", b"id,price,qty,quote_qty,time,is_buyer_maker\n"),
    ("binance-futures_trades_2024-01-01_BTCUSDT.csv.gz", gzip.compress(TARDIS_TRADES.splitlines()[0].encode() + b"\r\n")),
    ("body.json", b"[]"),
])
def test_empty_files_get_a_clear_message_and_stop_the_run_before_writing(store, tmp_path, name, data):
    good = write(tmp_path / "binance-futures_trades_2024-01-01_BTCUSDT.good.csv", TARDIS_TRADES)
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    with pytest.raises(EmptyInput, match=rf"{name}.*(is empty|only a header line|empty JSON array)"):
        run(store, good, path)
    assert store.tables() == []  # detection runs over every file before anything is written


def test_an_empty_member_of_a_zip_is_named(tmp_path):
    z = write_zip(tmp_path / "BTCUSDT-trades-2024-08-08.zip", "BTCUSDT-trades-2024-08-08.csv", "")
    with pytest.raises(EmptyInput, match=r"BTCUSDT-trades-2024-08-08.zip:BTCUSDT-trades-2024-08-08.csv is empty"):
        _detect(z)


def test_a_forced_format_that_does_not_fit_is_refused(tmp_path):
    path = write(tmp_path / "binance-futures_trades_2024-01-01_BTCUSDT.csv", TARDIS_TRADES)
    with pytest.raises(MissingOption, match="does not look like a bybit-history file"):
        _detect(path, Format.BYBIT_HISTORY)


def test_tardis_binance_us_is_its_own_venue(store, tmp_path):
    text = TARDIS_TRADES.replace("binance-futures", "binance-us")
    run(store, write(tmp_path / "binance-us_trades_2024-01-01_BTCUSDT.csv", text))
    assert store["trades"].select("binanceus:BTC/USDT")["trade_id"].tolist() == [4470583013]
    assert store["trades"].select("binance:BTC/USDT").empty


def test_a_byte_order_mark_neither_hides_a_header_nor_eats_a_row(store, tmp_path):
    # a spreadsheet saves CSVs with a UTF-8 BOM: a headerless first row must not be taken for
    # a header (and lost), a header must still be recognised
    bom = b"\xef\xbb\xbf"
    path = tmp_path / "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(bom + KLINES.encode() + KLINES.replace("1704067200000", "1704067260000").encode())
    run(store, path)
    assert len(store["ohlcv_1m"].select("binance:BTC/USDT")) == 2
    tardis = tmp_path / "binance-futures_trades_2024-01-01_BTCUSDT.csv"
    tardis.write_bytes(bom + TARDIS_TRADES.encode())
    run(store, tardis)
    assert store["trades"].select("binance:BTC/USDT:USDT")["trade_id"].tolist() == [4470583013]


def test_a_tardis_data_type_without_a_table_says_so(store, tmp_path):
    # https://docs.tardis.dev/downloadable-csv-files#options_chain (out of the store's scope)
    text = ("exchange,symbol,timestamp,local_timestamp,type,strike_price,expiration,open_interest,last_price,bid_price,"
            "bid_amount,bid_iv,ask_price,ask_amount,ask_iv,mark_price,mark_iv,underlying_index,underlying_price,delta,gamma,vega,theta,rho\n"
            "deribit,BTC-9JUN20-9875-P,1591574399413000,1591574400196008,put,9875,1591689600000000,0.1,0.0355,,,,0.0205,5,,,,,,,,,,\n")
    with pytest.raises(DataImportError, match="Tardis options_chain files are not imported"):
        run(store, write(tmp_path / "deribit_options_chain_2020-06-08_OPTIONS.csv.gz", text, gz=True))
