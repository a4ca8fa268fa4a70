"""Poison frames: fields that parse but cannot be right are refused where they are parsed."""

from __future__ import annotations

import time
import tracemalloc

import orjson
import pytest

from collectors import fields
from collectors.exchanges import InvalidValue, MalformedFrame
from collectors.exchanges.binance import BinanceParser, Market
from collectors.exchanges.bybit import BybitParser, Category
from collectors.exchanges.hyperliquid import HyperliquidParser

NOW_NS = time.time_ns()
NOW_MS = NOW_NS // 1_000_000


def test_times_are_checked_against_the_receive_time():
    assert fields.ms_to_ns(NOW_MS, NOW_NS, "T") == NOW_MS * 1_000_000
    assert fields.ms_to_ns(str(NOW_MS), NOW_NS, "T") == NOW_MS * 1_000_000  # Bybit sends some as strings
    day_ms = 24 * 3600 * 1000
    for bad in (10**17, NOW_MS + 2 * 3600 * 1000, NOW_MS - 2 * day_ms, -1, "abc", "1" * 2000, 1.5, True, None, [1]):
        with pytest.raises(InvalidValue, match="T="):
            fields.ms_to_ns(bad, NOW_NS, "T")
    # no receive clock (recv_ns outside 2000..2100, as tests pass 0 or 1): the absolute window only
    assert fields.ms_to_ns(1_571_889_248_277, 1, "E") == 1_571_889_248_277_000_000
    with pytest.raises(InvalidValue, match="between 2000 and 2100"):
        fields.ms_to_ns(1, 1, "E")
    assert fields.future_ms_to_ns(0, NOW_NS, "T") == 0  # no funding scheduled
    assert fields.future_ms_to_ns(NOW_MS + 8 * 3600 * 1000, NOW_NS, "T") > NOW_NS
    with pytest.raises(InvalidValue):
        fields.future_ms_to_ns(NOW_MS + 90 * day_ms, NOW_NS, "T")


def test_a_string_time_is_never_multiplied():
    # "T" * 1_000_000 on a 2 KB string would ask for 2 GB; the check refuses it at once
    tracemalloc.start()
    try:
        with pytest.raises(InvalidValue, match="expected an integer"):
            fields.ms_to_ns("9" * 2048, NOW_NS, "T")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # memory, not time: deterministic whatever the machine's load


def test_ids_fit_int64_and_numbers_are_finite():
    assert fields.int64(2**63 - 1, "t") == 2**63 - 1
    assert fields.int64("-1", "pu") == -1
    for bad in (2**63, -(2**63) - 1, 2**70, "abc", "1" * 25, 1.0, True, None):
        with pytest.raises(InvalidValue, match="t="):
            fields.int64(bad, "t")
    assert fields.finite("61800.30", "p") == 61800.3 and fields.finite(-0.0001, "r") == -0.0001
    for bad in ("NaN", "inf", "-Infinity", "abc", "", True, None, "1" * 100):
        with pytest.raises(InvalidValue, match="p="):
            fields.finite(bad, "p")
    with pytest.raises(InvalidValue, match="negative"):
        fields.nonneg("-1", "q")
    with pytest.raises(InvalidValue, match="> 0"):
        fields.positive("0", "p")


def _binance_trade(**change) -> bytes:
    d = {"e": "trade", "E": NOW_MS, "T": NOW_MS, "s": "BTCUSDT", "t": 5266583935, "p": "61800.30", "q": "0.006",
         "X": "MARKET", "m": False}
    d.update(change)
    return orjson.dumps({"stream": "btcusdt@trade", "data": d})


POISON = [("T", 10**17), ("T", "abc"), ("T", "9" * 2048), ("t", "abc"), ("p", "NaN"), ("q", "inf"), ("p", "-3"),
          ("E", NOW_MS)]  # the last one is fine: E is not the trade's time


@pytest.mark.parametrize("field,value", POISON)
def test_binance_poison_trades_are_refused_with_the_field(field, value):
    p = BinanceParser(Market.USDM)
    raw = _binance_trade(**{field: value})
    if field == "E":
        (t,) = p.parse(raw, NOW_NS)
        assert t.ts == NOW_MS * 1_000_000
        return
    with pytest.raises(InvalidValue, match=f"{field}=.* in "):
        p.parse(raw, NOW_NS)


def test_binance_trade_id_beyond_int64_is_refused():
    raw = _binance_trade().replace(b'"t":5266583935', b'"t":' + str(2**70).encode())  # orjson reads it as a float
    with pytest.raises(InvalidValue, match="t=1.18"):
        BinanceParser(Market.USDM).parse(raw, NOW_NS)


def test_bybit_and_hyperliquid_poison_is_refused():
    by = {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": NOW_MS,
          "data": [{"T": NOW_MS, "s": "BTCUSDT", "S": "Buy", "v": "0.004", "p": "65114.20", "i": "2280000001739247417"}]}
    assert BybitParser(Category.LINEAR).parse(orjson.dumps(by), NOW_NS)[0].trade_id == 2280000001739247417
    for key, value in (("T", 10**17), ("p", "nan"), ("i", "9" * 30)):
        bad = orjson.loads(orjson.dumps(by))
        bad["data"][0][key] = value
        with pytest.raises(MalformedFrame, match="bybit"):
            BybitParser(Category.LINEAR).parse(orjson.dumps(bad), NOW_NS)
    hl = {"channel": "trades", "data": [{"coin": "BTC", "px": "105056.0", "side": "B", "sz": "0.00219",
                                         "tid": 121451470284048, "time": NOW_MS, "hash": "0x0", "users": []}]}
    assert HyperliquidParser().parse(orjson.dumps(hl), NOW_NS)[0].trade_id == 121451470284048
    for key, value in (("time", "soon"), ("tid", 2**64), ("sz", "Infinity")):
        bad = orjson.loads(orjson.dumps(hl))
        bad["data"][0][key] = value
        raw = orjson.dumps(bad) if key != "tid" else orjson.dumps(hl).replace(b"121451470284048", str(value).encode())
        with pytest.raises(InvalidValue, match="hyperliquid"):
            HyperliquidParser().parse(raw, NOW_NS)
