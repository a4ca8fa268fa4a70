"""Funding-carry backtest: hand-computed PnL, real funding histories, bit-for-bit reruns from as_of."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.research import real
from research.backtest import CarryConfig, Reader, run_funding_carry
from research.datasets import BINANCE_FUNDING, BYBIT_FUNDING, HL_FUNDING
from research.errors import GapError, ResearchError
from research.funding import Venue
from tickstore import Partition, Pin, Schema

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
    #   0.0004/8 = 0.00005/h < HL 0.0002/h: the edge 0.00015/h over the 8 h horizon (the
    #   rebalance interval) is 0.0012 > the round trip 2 * 0.0005 -> switch, fee 0.001
    # 09:00..16:00 HL pays 8 * 0.00001 = 0.00008: the 16:00 settlement is paid at the end
    #   instant, while the position is still held; then exit, fee 0.001
    assert r.ledger["event"].tolist() == ["enter", "funding", "switch"] + ["funding"] * 8 + ["exit"]
    assert r.ledger.index[-2] == r.ledger.index[-1] == cfg.end  # paid at end, then closed
    assert r.funding == pytest.approx(0.0004 + 0.00008, abs=1e-15)  # 0.00048
    assert r.fees == pytest.approx(0.003, abs=1e-15)
    assert r.pnl == pytest.approx(0.00048 - 0.003, abs=1e-15)  # -0.00252
    assert r.turnover == 6.0 and r.switches == 1  # (2 legs) entry + switch + exit
    # equity: 0 -> -0.001 -> -0.0006 -> -0.0016 -> ... -> -0.00152 -> -0.00252: deepest at the end
    assert r.max_drawdown == pytest.approx(0.00252, abs=1e-15)
    assert r.ledger.loc[r.ledger["event"] == "switch", "venue"].tolist() == [HL]
    # units: the ledger is in fractions of notional like the summary, whatever the notional
    big = run_funding_carry(store, CarryConfig(perps=(BIN, HL), start=cfg.start, end=cfg.end, perp_fee=0.0005, spot_fee=0.0005, notional=250_000))
    pd.testing.assert_frame_equal(big.ledger, r.ledger)
    assert big.summary() == r.summary() and big.notional == 250_000
    assert r.ledger["funding"].sum() == pytest.approx(r.funding, abs=1e-18) and r.ledger["equity"].iloc[-1] == pytest.approx(r.pnl, abs=1e-18)
    assert r.years == pytest.approx(16 / 8760) and r.pnl_apr == pytest.approx(r.pnl / (16 / 8760))
    # a 2.0 APR margin on top of the fees blocks the switch: 0.00015 * 8760 = 1.314 < 2.0
    stay = run_funding_carry(store, CarryConfig(perps=(BIN, HL), start=cfg.start, end=cfg.end, min_edge_apr=2.0))
    assert stay.switches == 0 and stay.funding == pytest.approx(0.0004 + 0.0008, abs=1e-15)  # 08:00 and the 16:00 at end
    # a horizon of 4 h: the edge 0.00015 * 4 = 0.0006 does not pay 2 * 0.0005 -> no switch
    assert run_funding_carry(store, CarryConfig(perps=(BIN, HL), start=cfg.start, end=cfg.end, horizon="4h")).switches == 0
    assert r.gaps.empty and r.summary()["gaps"] == 0


def test_bad_config_is_refused(store):
    with pytest.raises(ResearchError, match="end 2024-01-01 00:00:00\\+00:00 is not after start"):
        CarryConfig(perps=(BIN,), start="2024-01-01T00:00Z", end="2024-01-01T00:00Z")
    with pytest.raises(ResearchError, match="perps must be distinct"):
        CarryConfig(perps=(BIN, BIN), start="2024-01-01T00:00Z", end="2024-01-02T00:00Z")
    with pytest.raises(ResearchError, match="no funding rows"):
        run_funding_carry(store, CarryConfig(perps=(BIN,), start="2024-01-01T00:00Z", end="2024-01-02T00:00Z"))
    with pytest.raises(ResearchError, match="horizon must be a positive length"):
        CarryConfig(perps=(BIN,), start="2024-01-01", end="2024-01-02", horizon="-1h")
    with pytest.raises(ResearchError, match="on_gap must be 'report' or 'raise'"):
        run_funding_carry(store, CarryConfig(perps=(BIN,), start="2024-01-01", end="2024-01-02"), on_gap="ignore")


@pytest.fixture
def real_funding_store(store, real_file):
    window = slice("2023-05-11", "2023-07-17")
    store["funding"].append(BIN, real.load_funding_history_csv(real_file(BINANCE_FUNDING), venue=Venue.BINANCE).loc[window])
    store["funding"].append(BYB, real.load_funding_history_csv(real_file(BYBIT_FUNDING), venue=Venue.BYBIT).loc[window])
    store["funding"].append(HL, real.load_hyperliquid_funding(real_file(HL_FUNDING)))
    return store


def test_real_carry_matches_an_independent_tally_and_reruns_bit_for_bit(real_funding_store, clock):
    store = real_funding_store
    # a 7-day horizon switches (21 times): the tally below checks every settlement's owner
    cfg = CarryConfig(perps=(BIN, BYB, HL), start="2023-05-13T00:00Z", end="2023-07-17T00:00Z", horizon="7D")
    clock.advance(3600)
    r = run_funding_carry(store, cfg)
    assert r.switches > 0 and r.as_of == clock.now()
    # independent tally: a settlement at s is ours if the last decision strictly before s
    # chose its venue
    decisions = r.ledger[r.ledger["event"].isin(["enter", "switch"])]
    dec_t, dec_v = decisions.index.asi8, decisions["venue"].to_numpy()
    expected = 0.0
    for sym in cfg.perps:
        f = store["funding"].select(sym, cfg.start, cfg.end + pd.Timedelta(1, "ns"))  # the settlement at end is paid
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
        pd.testing.assert_frame_equal(
            store.read_pin(again), store["funding"].select(pin.symbols[0], cfg.start - pd.Timedelta(days=1), cfg.end + pd.Timedelta(1, "ns"), as_of=r.as_of)
        )

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


def test_real_ledger_by_hand_causal_and_paid_at_end(real_funding_store):
    # 2023-06-20, three venues, decisions at 00:00, 08:00, 16:00 from the last settlement
    # known then (rates from the CSVs and the Hyperliquid cassette):
    #   00:00  binance 0.00004350/8 = 5.44e-6/h, bybit 0.00003540/8 = 4.43e-6/h,
    #          HL -0.00001759/h -> enter binance (fee 0.0005 + 0.001)
    #   08:00  binance pays -0.00000448; signals -5.6e-7, -3.13e-6, -1.324e-5 -> stay
    #   16:00  binance pays -0.00002597; HL 0.00002035/h is best, but its edge
    #          (0.00002035 + 0.00002597/8) * 8 h = 0.000189 < 2 * 0.0005 -> stay
    #   end 2023-06-21 00:00: binance pays 0.00006295 to the position still held; exit
    cfg = CarryConfig(perps=(BIN, BYB, HL), start="2023-06-20", end="2023-06-21")
    r = run_funding_carry(real_funding_store, cfg)
    assert r.ledger["event"].tolist() == ["enter", "funding", "funding", "funding", "exit"]
    assert (r.ledger["venue"] == BIN).all()
    assert r.ledger["funding"].tolist() == pytest.approx([0, -0.00000448, -0.00002597, 0.00006295, 0], abs=1e-15)
    assert r.funding == pytest.approx(-0.00000448 - 0.00002597 + 0.00006295, abs=1e-15)
    assert r.fees == pytest.approx(0.003, abs=1e-15) and r.switches == 0
    # switching on any positive edge (a margin of -2 * 0.0005 * 8760 / 8 APR cancels the
    # fee term): at 16:00 it moves to HL (fee 0.001) and earns HL's 17:00 .. 00:00 hours
    eager = run_funding_carry(real_funding_store, CarryConfig(perps=cfg.perps, start=cfg.start, end=cfg.end, min_edge_apr=-1.095))
    assert eager.ledger.loc[eager.ledger["event"] == "switch", "venue"].tolist() == [HL]
    hl_hours = [0.00003537, 0.00007878, 0.00007183, 0.00005661, 0.00006207, 0.00005862, 0.00004448, 0.00003746]
    assert eager.funding == pytest.approx(-0.00000448 - 0.00002597 + sum(hl_hours), abs=1e-15)
    assert eager.fees == pytest.approx(0.004, abs=1e-15)


def test_fee_aware_default_on_three_years_of_real_funding(store, real_file):
    # years of settlements in year files (day files: 2,500 of them, a minute to write)
    yearly = store.create_table("funding_yearly", Schema("funding_yearly", store["funding"].schema.columns, key=("ts",), partition=Partition.YEAR))
    yearly.append(BIN, real.load_funding_history_csv(real_file(BINANCE_FUNDING), venue=Venue.BINANCE))
    yearly.append(BYB, real.load_funding_history_csv(real_file(BYBIT_FUNDING), venue=Venue.BYBIT))
    span = dict(perps=(BIN, BYB), start="2021-01-01", end="2024-01-01", table="funding_yearly")
    # switching on any positive edge churns: fees eat more than the funding earned
    churn = run_funding_carry(store, CarryConfig(**span, min_edge_apr=-1.095))
    assert churn.switches > 800 and churn.fees_apr > churn.funding_apr > 0.15 and churn.pnl < 0
    # the default (the edge must pay the round trip within one rebalance period) does not
    default = run_funding_carry(store, CarryConfig(**span))
    assert default.switches < 30 and default.fees_apr < 0.01 and default.pnl_apr > 0.15
    assert default.funding_apr > 0.9 * churn.funding_apr  # and keeps most of the funding
    week = run_funding_carry(store, CarryConfig(**span, horizon="7D"))
    assert default.switches < week.switches < churn.switches and week.pnl < default.pnl
    # the figures in research.backtest's docstring
    assert (churn.switches, round(churn.funding_apr, 3), round(churn.fees_apr, 3)) == (858, 0.180, 0.287)
    assert (default.switches, round(default.funding_apr, 3), round(default.pnl_apr, 3)) == (14, 0.166, 0.160)


def test_gaps_crossed_are_reported_and_can_be_refused(real_funding_store, clock):
    store = real_funding_store
    cfg = CarryConfig(perps=(BIN, BYB, HL), start="2023-07-01", end="2023-07-04", horizon="7D")
    r = run_funding_carry(store, cfg)
    # the cassette lacks Hyperliquid's 2023-07-02 20:00 settlement: the hour it paid for is
    # not covered, and the position was on Hyperliquid then
    assert r.gaps[["symbol", "cause"]].values.tolist() == [[HL, "missing_settlement"]]
    gap = r.gaps.iloc[0]
    assert gap["start"] == pd.Timestamp("2023-07-02 19:00", tz="UTC") + pd.Timedelta(1, "ns")
    assert gap["end"] == pd.Timestamp("2023-07-02 20:00", tz="UTC") + pd.Timedelta(1, "ns")
    held = r.ledger[r.ledger["event"].isin(["enter", "switch"])]
    on_hl = held["venue"].asof(pd.Timestamp("2023-07-02 19:30", tz="UTC")) == HL
    assert bool(gap["held"]) == on_hl and r.summary()["gaps"] == 1
    with pytest.raises(GapError, match=r"crosses 1 span.*hyperliquid:BTC/USDC:USDC 2023-07-02 19:00:00.000000001\+00:00"):
        run_funding_carry(store, cfg, on_gap="raise")
    # a deleted day of Bybit settlements (00:00, 08:00, 16:00 of 07-03): the 24 hours they
    # paid for, from 07-02 16:00, reported in time order
    clock.advance(60)
    store["funding"].delete(BYB, "2023-07-03", reason="test: lost day")
    clock.advance(60)
    r2 = run_funding_carry(store, cfg)
    assert r2.gaps["symbol"].tolist() == [BYB, HL]
    assert r2.gaps[["start", "end"]].iloc[0].tolist() == [pd.Timestamp(t, tz="UTC") + pd.Timedelta(1, "ns") for t in ("2023-07-02 16:00", "2023-07-03 16:00")]
    # none in a window without holes: the same run is clean as of before the delete
    clean = run_funding_carry(store, CarryConfig(perps=(BIN, BYB), start="2023-07-01", end="2023-07-04"), as_of=r.as_of, on_gap="raise")
    assert clean.gaps.empty


def test_reader_fixes_one_knowledge_time(store, clock):
    reader = Reader(store)
    t = reader.as_of
    clock.advance(10)
    store["funding"].append(BIN, _funding([("2024-01-01 00:00", 0.0001)], 8))
    # written after the reader's knowledge time: invisible to it
    assert reader.select("funding", BIN, None, None).empty and reader.as_of == t
    assert len(reader.pins) == 1
