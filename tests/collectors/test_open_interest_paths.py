"""Open interest of inverse (coin-margined) contracts is one number on every path.

``open_interest.oi`` counts contracts and ``oi_value`` is in the quote currency (SPEC 3a):
for an inverse contract, contracts x the contract's USD value (Binance COIN-M: 100 USD for
BTC, 10 for other coins; Bybit inverse: 1 USD). The same open interest reaches the store
through ``tickstore backfill oi`` (ccxt against the local REST server), the Binance archive's
``metrics`` files, saved ``/futures/data/openInterestHist`` bodies, Tardis'
``derivative_ticker`` and the live Bybit tickers parser; each stores the same row.

Bodies are Binance's documented examples (developers.binance.com, coin-margined futures,
"Open Interest Statistics": ``sumOpenInterest`` "unit: cont", ``sumOpenInterestValue`` "unit:
base asset"), Bybit's (bybit-exchange.github.io/docs/v5/market/open-interest: "BTCUSD(inverse)
is USD"); file layouts as in the importer tests.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from collectors.backfill import Kind, backfill, make_exchange
from collectors.events import OpenInterest
from collectors.exchanges import bybit as bb
from collectors.restsim import RestSim, SimData
from collectors.symbols import MARKETS, Markets, contract_value
from tests.importers.helpers import run, write

T0 = 1709251200000  # 2024-03-01 00:00 UTC, ms
HOURS = [T0 + h * 3_600_000 for h in range(3)]
CONTRACTS = [20403.0, 20401.0, 20510.0]
COIN_VALUE = [176196512.234, 176178704.987, 177000000.5]  # Binance's COIN-M value: in BTC (sic)
MS = 1_000_000


def _expected(symbol, usd):
    idx = pd.DatetimeIndex([pd.Timestamp(t, unit="ms", tz="UTC") for t in HOURS], name="ts")
    return pd.DataFrame({"oi": CONTRACTS, "oi_value": [c * usd for c in CONTRACTS]}, index=idx)


def _oi(store, symbol):
    return store["open_interest"].select(symbol)


@pytest.fixture
def rest():
    data = SimData()
    for venue, native in (("binance", "BTCUSD_PERP"), ("bybit", "BTCUSD")):
        data.put_oi(venue, native, "1h", [(t, c, v) for t, c, v in zip(HOURS, CONTRACTS, COIN_VALUE)])
    with RestSim(data) as sim:
        yield sim


def test_the_rule_and_ccxt_markets():
    assert [contract_value(s) for s in ("binance:BTC/USD:BTC", "binance:ETH/USD:ETH", "binance:BTC/USD:BTC-240927",
                                        "bybit:BTC/USD:BTC", "binance:BTC/USDT:USDT", "hyperliquid:BTC/USDC:USDC")] == [
        100.0, 10.0, 100.0, 1.0, None, None]
    assert MARKETS.info("binance", "ETH/USD:ETH").ccxt_market()["contractSize"] == 10.0
    m = Markets([])
    m.set_markets("binance", [{"id": "BTCUSD_PERP", "symbol": "BTC/USD:BTC", "type": "swap", "base": "BTC",
                               "quote": "USD", "settle": "BTC", "contractSize": 100}])
    assert contract_value("binance:BTC/USD:BTC", m) == 100.0  # ccxt's contractSize, when merged


def test_binance_coinm_backfill_archive_rest_body_and_tardis_store_the_same_usd(store, tmp_path, rest):
    sym = "binance:BTC/USD:BTC"
    want = _expected(sym, 100.0)
    ex = make_exchange("binance", base_url=rest.base_url, rate_limit_ms=1)
    backfill(store, Kind.OI, "BTC/USD:BTC", exchange="binance", start="2024-03-01", end="2024-03-02",
             timeframe="1h", exchange_obj=ex, progress=False, sleep=lambda s: None)
    asked = [r.params for r in rest.requests if r.path == "/futures/data/openInterestHist"]
    assert asked and all(p.get("pair") == "BTCUSD" and p.get("contractType") == "PERPETUAL" for p in asked)
    pd.testing.assert_frame_equal(_oi(store, sym), want, check_freq=False)

    # the same samples from three files, each into its own store
    metrics = "create_time,symbol,sum_open_interest,sum_open_interest_value,count_toptrader_long_short_ratio\n" + "".join(
        f"{pd.Timestamp(t, unit='ms'):%Y-%m-%d %H:%M:%S},BTCUSD_PERP,{c},{v},1.1\n" for t, c, v in zip(HOURS, CONTRACTS, COIN_VALUE))
    body = json.dumps([{"pair": "BTCUSD", "contractType": "PERPETUAL", "sumOpenInterest": str(c),
                        "sumOpenInterestValue": str(v), "timestamp": t} for t, c, v in zip(HOURS, CONTRACTS, COIN_VALUE)])
    ticker = "exchange,symbol,timestamp,local_timestamp,funding_timestamp,funding_rate,predicted_funding_rate,open_interest," \
             "last_price,index_price,mark_price\n" + "".join(
                 f"binance-delivery,BTCUSD_PERP,{t * 1000},{t * 1000 + 7},{T0 * 1000 + 28_800_000_000},0.0001,,{c},"
                 f"61000.5,61001.0,61002.{i}\n" for i, (t, c) in enumerate(zip(HOURS, CONTRACTS)))
    files = [
        write(tmp_path / "data/futures/cm/daily/metrics/BTCUSD_PERP/BTCUSD_PERP-metrics-2024-03-01.csv", metrics),
        write(tmp_path / "BTCUSD_PERP-openInterestHist.json", body),
        write(tmp_path / "binance-delivery_derivative_ticker_2024-03-01_BTCUSD_PERP.csv", ticker),
    ]
    from tickstore import Tickstore

    for i, path in enumerate(files):
        with Tickstore(tmp_path / f"store{i}") as other:
            run(other, path)
            pd.testing.assert_frame_equal(_oi(other, sym), want, check_freq=False, obj=path.name)


def test_bybit_inverse_live_backfill_and_tardis_store_the_same_usd(store, tmp_path, rest):
    sym = "bybit:BTC/USD:BTC"
    want = _expected(sym, 1.0)
    ex = make_exchange("bybit", base_url=rest.base_url, rate_limit_ms=1)
    backfill(store, Kind.OI, "BTC/USD:BTC", exchange="bybit", start="2024-03-01", end="2024-03-02",
             timeframe="1h", exchange_obj=ex, progress=False, sleep=lambda s: None)
    pd.testing.assert_frame_equal(_oi(store, sym), want, check_freq=False)  # was oi NaN (ccxt files it as a value)

    parser = bb.BybitParser(bb.Category.INVERSE)
    live = []
    for t, c in zip(HOURS, CONTRACTS):
        frame = {"topic": "tickers.BTCUSD", "type": "snapshot", "cs": 1, "ts": t,
                 "data": {"symbol": "BTCUSD", "markPrice": "61002.0", "indexPrice": "61001.0", "openInterest": str(c),
                          "openInterestValue": "7081.55", "nextFundingTime": str(T0 + 28_800_000), "fundingRate": "0.0001"}}
        live += [e for e in parser.parse(json.dumps(frame).encode(), t * MS) if type(e) is OpenInterest]
    assert [(e.ts, e.oi, e.oi_value) for e in live] == [(t.value, r.oi, r.oi_value) for t, r in zip(want.index, want.itertuples())]

    ticker = "exchange,symbol,timestamp,local_timestamp,funding_timestamp,funding_rate,predicted_funding_rate,open_interest," \
             "last_price,index_price,mark_price\n" + "".join(
                 f"bybit,BTCUSD,{t * 1000},{t * 1000 + 7},{T0 * 1000 + 28_800_000_000},0.0001,,{c},61000.5,61001.0,61002.{i}\n"
                 for i, (t, c) in enumerate(zip(HOURS, CONTRACTS)))
    from tickstore import Tickstore

    with Tickstore(tmp_path / "tardis") as other:
        run(other, write(tmp_path / "bybit_derivative_ticker_2024-03-01_BTCUSD.csv", ticker))
        pd.testing.assert_frame_equal(_oi(other, sym), want, check_freq=False)
