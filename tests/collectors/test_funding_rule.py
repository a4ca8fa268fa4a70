"""One settlement, one ``funding`` row, whichever way it arrives.

Binance's funding history stamps a settlement when its job ran (``fundingTime``
1698796800003 for 2023-11-01 00:00, a few ms, rarely ~1 s, after the hour); the live
``markPrice`` stream names the scheduled time itself (``T``). Every writer of ``funding``
(``tickstore backfill``, ``tickstore import``, the live settlement) stores the settlement
time on its whole hour (``collectors.funding.settlement_times``), so the three meet on one
key. Bodies as Binance documents them: https://developers.binance.com/docs (USD-M
``GET /fapi/v1/fundingRate``, ``<symbol>@markPrice@1s``).
"""

from __future__ import annotations

import json

import orjson
import pandas as pd
import pytest

from collectors.backfill import Kind, RetryPolicy, backfill, make_exchange
from collectors.events import EventBatcher, Funding
from collectors.exchanges import binance as bn
from collectors.restsim import RestSim, SimData
from tests.importers.helpers import run as run_import
from tests.importers.helpers import write

SYM = "binance:BTC/USDT:USDT"
H = 3_600_000
DAY0 = int(pd.Timestamp("2023-10-31", tz="UTC").value // 1_000_000)
# (settlement hour, the venue's stamp, rate): late by 3 ms and by 999 ms, and one stamped
# 3 ms *before* midnight, on the day before the one it settles
SETTLEMENTS = [
    (DAY0 + 8 * H, DAY0 + 8 * H + 3, 0.0001),
    (DAY0 + 16 * H, DAY0 + 16 * H + 999, 0.000075),
    (DAY0 + 24 * H, DAY0 + 24 * H - 3, -0.00002),
    (DAY0 + 32 * H, DAY0 + 32 * H + 1, 0.00005),
]
HOURS = [pd.Timestamp(h, unit="ms", tz="UTC") for h, _, _ in SETTLEMENTS]


@pytest.fixture
def sim():
    data = SimData()
    data.put_funding("binance", "BTCUSDT", [(stamp, rate) for _, stamp, rate in SETTLEMENTS])
    with RestSim(data) as s:
        yield s


def _backfill(store, sim):
    ex = make_exchange("binance", base_url=sim.base_url, rate_limit_ms=1)
    return backfill(store, Kind.FUNDING, "BTC/USDT:USDT", exchange="binance", start="2023-10-31", end="2023-11-03",
                    exchange_obj=ex, progress=False, retry=RetryPolicy(attempts=2, base_s=0.01, max_s=0.01),
                    sleep=lambda s: None)


def _import(store, tmp_path):
    body = [{"symbol": "BTCUSDT", "fundingTime": stamp, "fundingRate": f"{rate:.8f}", "markPrice": "34287.5"}
            for _, stamp, rate in SETTLEMENTS]
    return run_import(store, write(tmp_path / "BTCUSDT_fundingRate.json", json.dumps(body)))


def _live(store):
    """markPrice frames crossing each funding time, through the live parser, appended as the
    collector appends; the last settlement is only seen when a later frame passes it."""
    parser = bn.BinanceParser(bn.Market.USDM)
    batcher = EventBatcher("book")
    times = [h for h, _, _ in SETTLEMENTS] + [SETTLEMENTS[-1][0] + 8 * H]
    rates = [r for _, _, r in SETTLEMENTS] + [0.0]
    for i in range(len(SETTLEMENTS)):  # 1 s before each funding time, and 1 s after it
        for e, nxt, r in ((times[i] - 1000, times[i], rates[i]), (times[i] + 1000, times[i + 1], rates[i + 1])):
            data = {"e": "markPriceUpdate", "E": e, "s": "BTCUSDT", "p": "34287.5", "i": "34280.1", "P": "34290.0",
                    "r": f"{r:.8f}", "T": nxt}
            events = parser.parse(orjson.dumps({"stream": "btcusdt@markPrice@1s", "data": data}), e * 1_000_000 + 5_000_000)
            batcher.extend([ev for ev in events if isinstance(ev, Funding)])
    frames = batcher.drain()
    commit = store["funding"].append(SYM, frames[("funding", SYM)], source="live")
    return frames[("funding", SYM)], commit


def test_backfill_import_and_live_settlements_are_one_row_each(store, sim, tmp_path):
    report = _backfill(store, sim)
    got = store["funding"].select(SYM)
    assert list(got.index) == HOURS  # each stamp on its hour, the 23:59:59.997 one on the next day
    assert got["rate"].tolist() == [r for _, _, r in SETTLEMENTS] and (got["interval_h"] == 8.0).all()
    assert report.rows == 4
    imported = _import(store, tmp_path)
    assert imported.files[0].status == "unchanged" and imported.files[0].held == {"funding": 4}
    live, commit = _live(store)
    assert list(live.index) == HOURS  # the live path names the hour itself
    assert commit.skipped == 4 and commit.rows == 0
    assert list(store["funding"].select(SYM).index) == HOURS  # one row per settlement


def test_import_first_then_backfill_writes_nothing_new(store, sim, tmp_path):
    assert _import(store, tmp_path).rows == {"funding": 4}
    report = _backfill(store, sim)
    assert report.rows == 0 and report.written == 0
    got = store["funding"].select(SYM)
    assert list(got.index) == HOURS and got["rate"].tolist() == [r for _, _, r in SETTLEMENTS]


def test_funding_table_documents_the_rule(store):
    assert "whole hour" in store["funding"].schema.description
