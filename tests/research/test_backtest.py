"""Funding-carry backtest: hand-computed PnL, real funding histories, bit-for-bit reruns from as_of."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from research import datasets
from research.backtest import CarryConfig, Reader, run_funding_carry
from research.datasets import BINANCE_FUNDING, BYBIT_FUNDING, HL_FUNDING
from research.errors import ResearchError
from research.funding import Venue
from tickstore import Pin

BIN, HL, BYB = "binance:BTC/USDT:USDT", "hyperliquid:BTC/USDC:USDC", "bybit:BTC/USDT:USDT"
UTC = "UTC"


def _funding(times_rates, interval_h) -> pd.DataFrame:
    idx = pd.DatetimeIndex([pd.Timestamp(t, tz=UTC) for t, _ in times_rates], name="ts")
    return pd.DataFrame({"rate": [r for _, r in times_rates], "interval_h": float(interval_h)}, index=idx)


def test_carry_by_hand(store):
    store["funding"].append(BIN, _funding([("2024-01-01 00:00", 0.0008), ("2024-01-01 08:00", 0.0004), ("2024-01-01 16:00", 0.0008)], 8))
    hl = [("2024-01-01 00:00", 0.00005)] + [(f"2024-01-01 {h:02d}:00", 0.0002) for h in range(1, 9)]
    hl += [(f"2024-01-01 {h:02d}:00", 0.00001) for h in range(9, 17)]
    store["funding"].append(HL, _funding(hl, 1))
    cfg = CarryConfig(perps=(BIN, HL), start="2024-01-01 00:00Z", end="2024-01-01 16:00Z", perp_fee=0.0005, spot_fee=0.0005)
    r = run_funding_carry(store, cfg)
    # 00:00 settle (nothing held), then decide: binance 0.0008/8 = 0.0001/h > HL 0.00005/h -> enter
    #   binance, fee 0.0005 + 0.0005 = 0.001
    # 08:00 binance settles 0.0004 to us (held at the instant), then decide: binance
    #   0.0004/8 = 0.00005/h < HL 0.0002/h -> switch, fee 2 * 0.0005 = 0.001
    # 09:00..15:00 HL pays 7 * 0.00001 = 0.00007 (16:00 is the exclusive end); exit fee 0.001
    assert r.ledger["event"].tolist() == ["enter", "funding", "switch"] + ["funding"] * 7 + ["exit"]
    assert r.funding == pytest.approx(0.0004 + 0.00007, abs=1e-15)  # 0.00047
    assert r.fees == pytest.approx(0.003, abs=1e-15)
    assert r.pnl == pytest.approx(0.00047 - 0.003, abs=1e-15)  # -0.00253
    assert r.turnover == 6.0 and r.switches == 1  # (2 legs) entry + switch + exit
    # equity: 0 -> -0.001 -> -0.0006 -> -0.0016 -> ... -> -0.00153 -> -0.00253: deepest at the end
    assert r.max_drawdown == pytest.approx(0.00253, abs=1e-15)
    assert r.ledger.loc[r.ledger["event"] == "switch", "venue"].tolist() == [HL]
    # a 30% APR edge requirement blocks the switch: (0.0002 - 0.00005) * 8760 = 1.314 > 0.3, so
    # it still switches; with 2.0 it stays on binance and gets the 16:00-exclusive nothing
    stay = run_funding_carry(store, CarryConfig(perps=(BIN, HL), start="2024-01-01 00:00Z", end="2024-01-01 16:00Z", min_edge_apr=2.0))
    assert stay.switches == 0 and stay.funding == pytest.approx(0.0004, abs=1e-15)


def test_bad_config_is_refused(store):
    with pytest.raises(ResearchError, match="end 2024-01-01 00:00:00\\+00:00 is not after start"):
        CarryConfig(perps=(BIN,), start="2024-01-01T00:00Z", end="2024-01-01T00:00Z")
    with pytest.raises(ResearchError, match="perps must be distinct"):
        CarryConfig(perps=(BIN, BIN), start="2024-01-01T00:00Z", end="2024-01-02T00:00Z")
    with pytest.raises(ResearchError, match="no funding rows"):
        run_funding_carry(store, CarryConfig(perps=(BIN,), start="2024-01-01T00:00Z", end="2024-01-02T00:00Z"))


@pytest.fixture
def real_funding_store(store, real_file):
    window = slice("2023-05-11", "2023-07-17")
    store["funding"].append(BIN, datasets.load_funding_history_csv(real_file(BINANCE_FUNDING), venue=Venue.BINANCE).loc[window])
    store["funding"].append(BYB, datasets.load_funding_history_csv(real_file(BYBIT_FUNDING), venue=Venue.BYBIT).loc[window])
    store["funding"].append(HL, datasets.load_hyperliquid_funding(real_file(HL_FUNDING)))
    return store


def test_real_carry_matches_an_independent_tally_and_reruns_bit_for_bit(real_funding_store, clock):
    store = real_funding_store
    cfg = CarryConfig(perps=(BIN, BYB, HL), start="2023-05-13T00:00Z", end="2023-07-17T00:00Z")
    clock.advance(3600)
    r = run_funding_carry(store, cfg)
    assert r.switches > 0 and r.as_of == clock.now()
    # independent tally: a settlement at s is ours if the last decision strictly before s
    # chose its venue
    decisions = r.ledger[r.ledger["event"].isin(["enter", "switch"])]
    dec_t, dec_v = decisions.index.asi8, decisions["venue"].to_numpy()
    expected = 0.0
    for sym in cfg.perps:
        f = store["funding"].select(sym, cfg.start, cfg.end)
        k = np.searchsorted(dec_t, f.index.asi8, side="left") - 1
        ours = (k >= 0) & (dec_v[np.maximum(k, 0)] == sym)
        expected += f["rate"].to_numpy()[ours].sum()
    assert r.funding == pytest.approx(expected, rel=1e-12)
    entries_exits = 2 * (0.001 + 0.0005)
    assert r.fees == pytest.approx(entries_exits + r.switches * 2 * 0.0005, rel=1e-12)
    assert r.turnover == 2 * (2 + r.switches)

    # every input read is pinned and re-readable
    assert [p.symbols for p in r.pins] == [(BIN,), (BYB,), (HL,)]
    for pin in r.pins:
        again = Pin.from_json(pin.to_json())
        pd.testing.assert_frame_equal(store.read_pin(again), store["funding"].select(pin.symbols[0], cfg.start - pd.Timedelta(days=1), cfg.end, as_of=r.as_of))

    # a correction lands later: Hyperliquid rates of 2023-06-20 doubled
    clock.advance(3600)
    day = store["funding"].select(HL, "2023-06-20T00:00Z", "2023-06-21T00:00Z")
    day["rate"] *= 2
    store["funding"].insert(HL, "2023-06-20", day, reason="test correction")
    clock.advance(3600)
    rerun = run_funding_carry(store, cfg, as_of=r.as_of)
    pd.testing.assert_frame_equal(rerun.ledger, r.ledger)
    assert rerun.summary() == r.summary() and rerun.pins == r.pins
    latest = run_funding_carry(store, cfg)
    assert latest.summary() != r.summary()


def test_reader_fixes_one_knowledge_time(store, clock):
    reader = Reader(store)
    t = reader.as_of
    clock.advance(10)
    store["funding"].append(BIN, _funding([("2024-01-01 00:00", 0.0001)], 8))
    # written after the reader's knowledge time: invisible to it
    assert reader.select("funding", BIN, None, None).empty and reader.as_of == t
    assert len(reader.pins) == 1
