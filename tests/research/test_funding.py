"""Funding conventions and analytics against hand-computed values and the real histories."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from collectors.importers import MalformedInput
from tests.research import real
from research.conventions import Compounding, periods_per_year
from research.datasets import BINANCE_FUNDING, BYBIT_FUNDING, HL_FUNDING, USDM_2023
from research.errors import ResearchError
from research.funding import (
    SCHEDULES,
    FundingSchedule,
    PairChoice,
    Venue,
    apr,
    average_apr,
    carry,
    cross_venue_spread,
    funding_stats,
    hourly_grid,
    hourly_rate,
    predicted_vs_settled,
    venue_of,
)

UTC = "UTC"


def _funding(rows) -> pd.DataFrame:
    """rows: (iso settlement time, rate, interval_h)."""
    return pd.DataFrame(
        {"rate": [float(r[1]) for r in rows], "interval_h": [float(r[2]) for r in rows]},
        index=pd.DatetimeIndex([pd.Timestamp(r[0], tz=UTC) for r in rows], name="ts"),
    )


# -- conventions --------------------------------------------------------------------------
def test_venue_conventions_are_encoded_once():
    assert venue_of("binance:BTC/USDT:USDT") is Venue.BINANCE
    assert venue_of("hyperliquid:BTC/USDC:USDC") is Venue.HYPERLIQUID
    with pytest.raises(ResearchError, match="no funding convention for exchange 'okx'"):
        venue_of("okx:BTC/USDT:USDT")
    at = pd.DatetimeIndex(["2023-06-08 00:00", "2023-06-08 01:00", "2024-01-01 00:00"], tz=UTC)
    assert SCHEDULES[Venue.HYPERLIQUID].interval_h(at).tolist() == [8.0, 1.0, 1.0]
    assert SCHEDULES[Venue.BINANCE].interval_h(at).tolist() == [8.0, 8.0, 8.0]
    assert SCHEDULES[Venue.BYBIT].interval_h(at).tolist() == [8.0, 8.0, 8.0]
    with pytest.raises(ResearchError, match="first regime must start at None"):
        FundingSchedule(Venue.BYBIT, ((pd.Timestamp("2020-01-01", tz=UTC), 8.0),))
    assert periods_per_year("8h") == 1095.0  # 365 * 24 / 8
    assert periods_per_year("1h") == 8760.0


def test_per_hour_normalisation_and_apr_by_hand():
    f = _funding([("2024-01-01 08:00", 0.0001, 8), ("2024-01-01 09:00", 0.0000125, 1)])
    # 1 bp per 8 h and 0.125 bp per hour are the same funding per hour: 0.0001 / 8 = 0.0000125
    assert hourly_rate(f).tolist() == pytest.approx([0.0000125, 0.0000125], rel=1e-15)
    # simple APR: 0.0001 * (8760 / 8) = 0.0001 * 1095 = 0.1095 ; 0.0000125 * 8760 = 0.1095
    assert apr(f).tolist() == pytest.approx([0.1095, 0.1095], rel=1e-12)
    # compounded: (1 + 0.0001) ** 1095 - 1 = 0.115711...; hourly (1 + 0.0000125) ** 8760 - 1 = 0.115718...
    got = apr(f, compounding=Compounding.COMPOUNDED).tolist()
    assert got[0] == pytest.approx(1.0001**1095 - 1, rel=1e-12)
    assert got[1] == pytest.approx(1.0000125**8760 - 1, rel=1e-12)
    assert 0.11571 < got[0] < got[1] < 0.11572  # more frequent payment compounds more


def test_cumulative_carry_by_hand():
    f = _funding([("2024-01-01 00:00", 0.0001, 8), ("2024-01-01 08:00", -0.0002, 8), ("2024-01-01 16:00", 0.0003, 8)])
    # simple: 0.0001, 0.0001 - 0.0002 = -0.0001, -0.0001 + 0.0003 = 0.0002
    assert carry(f).tolist() == pytest.approx([0.0001, -0.0001, 0.0002], abs=1e-18)
    # compounded: 1.0001 * 0.9998 = 0.99989998; * 1.0003 = 1.000199949994
    assert carry(f, compounding=Compounding.COMPOUNDED).tolist() == pytest.approx([0.0001, -0.00010002, 0.000199949994], abs=1e-15)


def test_hourly_grid_spreads_each_settlement_over_its_hours():
    f = _funding([("2024-01-01 08:00", 0.0008, 8), ("2024-01-01 09:00", 0.00002, 1)])
    g = hourly_grid(f)
    assert g.index.tolist() == [pd.Timestamp(f"2024-01-01 {h:02d}:00", tz=UTC) for h in range(1, 10)]
    assert g.tolist() == pytest.approx([0.0001] * 8 + [0.00002], rel=1e-15)  # 0.0008 / 8 = 0.0001
    with pytest.raises(ResearchError, match="whole-hour settlement times; got 2024-01-01 08:00:00.001"):
        hourly_grid(_funding([("2024-01-01 08:00:00.001", 0.0001, 8)]))
    with pytest.raises(ResearchError, match="settlements overlap at hour"):
        hourly_grid(_funding([("2024-01-01 08:00", 0.0001, 8), ("2024-01-01 09:00", 0.0001, 8)]))


def test_cross_venue_spread_picks_the_best_pair_per_hour():
    funding = {
        "binance": _funding([("2024-01-01 08:00", 0.0008, 8)]),  # 0.0001 per hour, 01:00..08:00
        "bybit": _funding([("2024-01-01 08:00", 0.0004, 8)]),  # 0.00005 per hour
        "hyperliquid": _funding([("2024-01-01 01:00", 0.0002, 1), ("2024-01-01 02:00", 0.00001, 1)]),
    }
    s = cross_venue_spread(funding, choose=PairChoice.HINDSIGHT)  # each hour's own rates
    assert len(s) == 8  # hours 01..08 all have at least binance and bybit
    h1, h2, h3 = s.iloc[0], s.iloc[1], s.iloc[2]
    # 01:00: HL 0.0002 > binance 0.0001 > bybit 0.00005 -> short HL, long bybit, 0.00015
    assert (h1["short"], h1["long"], h1["spread"]) == ("hyperliquid", "bybit", pytest.approx(0.00015, rel=1e-12))
    assert h1["spread_apr"] == pytest.approx(0.00015 * 8760, rel=1e-12)  # 1.314
    # 02:00: binance 0.0001 > bybit 0.00005 > HL 0.00001 -> short binance, long HL, 0.00009
    assert (h2["short"], h2["long"], h2["spread"]) == ("binance", "hyperliquid", pytest.approx(0.00009, rel=1e-12))
    # 03:00: HL has no rate; binance vs bybit: 0.0001 - 0.00005 = 0.00005
    assert np.isnan(h3["hyperliquid"]) and (h3["short"], h3["long"]) == ("binance", "bybit")
    assert h3["spread"] == pytest.approx(0.00005, rel=1e-12)
    assert (s["expected"] == s["spread"]).all()
    with pytest.raises(ResearchError, match="at least two venues"):
        cross_venue_spread({"binance": funding["binance"]})
    # causal (the default): nothing had settled before 01:00, so no hour has a known rate
    with pytest.raises(ResearchError, match="share no funding hour with a rate known before it"):
        cross_venue_spread(funding)
    with pytest.raises(ResearchError, match="choose must be a PairChoice"):
        cross_venue_spread(funding, choose="causal")


def test_causal_spread_chooses_from_settlements_known_before_the_hour():
    funding = {
        "a": _funding([("2024-01-01 00:00", 0.0008, 8), ("2024-01-01 08:00", 0.0000, 8)]),
        "b": _funding([("2024-01-01 00:00", 0.0004, 8), ("2024-01-01 08:00", 0.0016, 8)]),
    }
    s = cross_venue_spread(funding)
    # hours 01..08: a's 00:00 settlement (0.0001/h) beat b's (0.00005/h), so short a, long b;
    # over those hours a then paid 0 and b 0.0002/h (their 08:00 settlements): -0.0002/h
    assert len(s) == 8 and (s["short"] == "a").all() and (s["long"] == "b").all()
    assert s["expected"].tolist() == pytest.approx([0.00005] * 8, rel=1e-12)
    assert s["spread"].tolist() == pytest.approx([-0.0002] * 8, rel=1e-12)
    # with hindsight the pair flips and the spread is +0.0002/h: the bound no one earns
    h = cross_venue_spread(funding, choose=PairChoice.HINDSIGHT).loc["2024-01-01 01:00":]
    assert (h["short"] == "b").all() and h["spread"].tolist() == pytest.approx([0.0002] * 8, rel=1e-12)


def test_ties_never_pair_a_venue_with_itself():
    tie = {k: _funding([("2024-01-01 00:00", 0.0001, 8), ("2024-01-01 08:00", 0.0001, 8)]) for k in ("a", "b", "c")}
    for choose in PairChoice:
        s = cross_venue_spread(tie, choose=choose)
        assert (s["short"] != s["long"]).all() and (s["short"] == "a").all() and (s["long"] == "b").all()
        assert (s["spread"] == 0).all()


def test_average_apr_weights_time_not_settlements():
    # 8 h at 0.0008 (0.0001/h) then 8 hourly settlements of 0.00001 (0.00001/h)
    f = _funding([("2024-01-01 08:00", 0.0008, 8)] + [(f"2024-01-01 {h:02d}:00", 0.00001, 1) for h in range(9, 17)])
    # per settlement: (0.8760 + 8 * 0.0876) / 9 = 0.1752; per hour: (0.0008 + 0.00008) / 16 h * 8760 = 0.4818
    assert apr(f).mean() == pytest.approx(0.1752, rel=1e-12)
    assert average_apr(f) == pytest.approx(0.4818, rel=1e-12)
    assert average_apr(f, compounding=Compounding.COMPOUNDED) == pytest.approx((1.0008 * 1.00001**8) ** (8760 / 16) - 1, rel=1e-9)
    # daily buckets of hours: the day's hours 00..16 (the 8-hourly one spread over 00..08)
    daily = average_apr(f, "D")
    assert daily.index.tolist() == [pd.Timestamp("2024-01-01", tz=UTC)] and daily.iloc[0] == pytest.approx(0.4818, rel=1e-12)


def test_funding_stats_by_hand():
    f = _funding(
        [
            ("2024-01-01 00:00", 0.0003, 8),
            ("2024-01-01 08:00", -0.0001, 8),
            ("2024-01-01 16:00", -0.0002, 8),
            ("2024-01-02 00:00", 0.0004, 8),
            ("2024-01-02 08:00", -0.0001, 8),
        ]
    )
    s = funding_stats(f)
    assert s.n == 5
    assert s.share_negative == pytest.approx(3 / 5)
    assert s.longest_negative_streak == 2 and s.longest_negative_hours == 16.0
    assert s.longest_negative_start == pd.Timestamp("2024-01-01 08:00", tz=UTC)
    # sum = 0.0003 - 0.0001 - 0.0002 + 0.0004 - 0.0001 = 0.0003 over 40 h -> 7.5e-6 / h * 8760 = 0.0657
    assert s.realised_apr == pytest.approx(0.0657, rel=1e-12)
    assert s.mean == pytest.approx(0.00006) and s.median == pytest.approx(-0.0001)


# -- the real histories -------------------------------------------------------------------
def test_csv_settlements_land_on_00_08_16_utc(real_file):
    b = real.load_funding_history_csv(real_file(BINANCE_FUNDING), venue=Venue.BINANCE)
    y = real.load_funding_history_csv(real_file(BYBIT_FUNDING), venue=Venue.BYBIT)
    for f, n, first in ((b, 4383, "2020-01-01"), (y, 3285, "2021-01-01")):
        assert len(f) == n
        assert set(f.index.hour) == {0, 8, 16}  # the file's 03/11/19 local (UTC+3) minus 3 h
        assert (f.index == f.index.floor("h")).all()
        assert f.index[0] == pd.Timestamp(first, tz=UTC) and f.index[-1] == pd.Timestamp("2023-12-31 16:00", tz=UTC)
        assert (f["interval_h"] == 8.0).all()
        assert (np.diff(f.index.asi8) == 8 * 3600 * 10**9).all()  # 8 h cadence, no gaps
    # first rows of the files: "2020-01-01 03:00:00.000,-0.00012359", "2021-01-01 03:00:00,0.00034729"
    assert b["rate"].iloc[0] == -0.00012359 and y["rate"].iloc[0] == 0.00034729
    with pytest.raises(MalformedInput, match="is not on the 8 h grid"):
        real.load_funding_history_csv(real_file(BINANCE_FUNDING), venue=Venue.BINANCE, utc_offset="0h")


def test_hyperliquid_cassette_switches_from_8h_to_hourly(real_file):
    h = real.load_hyperliquid_funding(real_file(HL_FUNDING))
    assert len(h) == 1038
    assert (h["interval_h"] == 8.0).sum() == 82 and (h["interval_h"] == 1.0).sum() == 956
    # the 2023-05-23 08:00 settlement was stamped 08:23:53.040 by the venue: snapped to 08:00
    assert h.loc[pd.Timestamp("2023-05-23 08:00", tz=UTC), "rate"] == -0.00017541
    assert h.loc["2023-06-08 00:00":"2023-06-08 01:00", "interval_h"].tolist() == [8.0, 1.0]
    g = hourly_grid(h)
    assert len(g) == 82 * 8 + 956
    # one hourly record is missing upstream (2023-07-02 20:00): absent, not invented
    assert pd.Timestamp("2023-07-02 20:00", tz=UTC) not in g.index
    assert pd.Timestamp("2023-07-02 21:00", tz=UTC) in g.index
    # 0.0001 per 8 h on 2023-06-08 00:00 and 0.0000125 per hour right after: equal per hour
    assert g.loc["2023-06-08 00:00"] == g.loc["2023-06-08 01:00"] == pytest.approx(0.0000125, rel=1e-12)


def test_binance_bybit_spread_on_real_history(real_file):
    b = real.load_funding_history_csv(real_file(BINANCE_FUNDING), venue=Venue.BINANCE)
    y = real.load_funding_history_csv(real_file(BYBIT_FUNDING), venue=Venue.BYBIT)
    s = cross_venue_spread({"binance": b, "bybit": y}, choose=PairChoice.HINDSIGHT)
    assert len(s) == 3285 * 8  # every Bybit hour (2021-2023) also has a Binance rate
    # the settlement of 2021-01-01 00:00 covers 2020-12-31 17:00..2021-01-01 00:00; the files
    # say binance 0.00022753, bybit 0.00034729: per hour (0.00034729 - 0.00022753) / 8 = 0.00001497
    row = s.loc[pd.Timestamp("2021-01-01 00:00", tz=UTC)]
    assert (row["short"], row["long"]) == ("bybit", "binance")
    assert row["spread"] == pytest.approx((0.00034729 - 0.00022753) / 8, rel=1e-12)


def test_causal_spread_on_real_history_by_hand(real_file):
    b = real.load_funding_history_csv(real_file(BINANCE_FUNDING), venue=Venue.BINANCE)
    y = real.load_funding_history_csv(real_file(BYBIT_FUNDING), venue=Venue.BYBIT)
    hl = real.load_hyperliquid_funding(real_file(HL_FUNDING))
    three = {"binance": b.loc["2023-05-11":"2023-07-18"], "bybit": y.loc["2023-05-11":"2023-07-18"], "hyperliquid": hl}
    s = cross_venue_spread(three)
    # the hour 2023-06-20 16:00 .. 17:00, chosen at 16:00 from the settlements of 16:00:
    #   binance -0.00002597/8 = -3.24625e-6/h, bybit 0.00004621/8 = 5.77625e-6/h, HL 0.00002035/h
    #   -> short HL, long binance, expected 0.00002035 + 3.24625e-6 = 2.359625e-5/h
    # paid in that hour: HL's 17:00 settlement 0.00003537, binance's 2023-06-21 00:00
    #   0.00006295 / 8 = 7.86875e-6/h -> 2.750125e-5/h
    row = s.loc[pd.Timestamp("2023-06-20 17:00", tz=UTC)]
    assert (row["short"], row["long"]) == ("hyperliquid", "binance")
    assert row["expected"] == pytest.approx(2.359625e-5, rel=1e-9) and row["spread"] == pytest.approx(2.750125e-5, rel=1e-9)
    # with hindsight that hour is short HL, long bybit (-0.0000864/8 = -1.08e-5/h): 4.617e-5/h
    hrow = cross_venue_spread(three, choose=PairChoice.HINDSIGHT).loc[pd.Timestamp("2023-06-20 17:00", tz=UTC)]
    assert (hrow["short"], hrow["long"], hrow["spread"]) == ("hyperliquid", "bybit", pytest.approx(4.617e-5, rel=1e-9))
    # ties: at 2023-06-07 08:00 all three settled 0.0001 (0.0000125/h): the hour after is
    # short binance, long bybit, expected 0 (never a venue against itself)
    tie = s.loc[pd.Timestamp("2023-06-07 09:00", tz=UTC)]
    assert (tie["short"], tie["long"], tie["expected"]) == ("binance", "bybit", 0.0)
    # over 2021-2023 Binance and Bybit tie in 6,816 hours: never a self-pair, and the causal
    # mean is about a third of the hindsight bound (4.7 % vs 12.9 %/year)
    causal = cross_venue_spread({"binance": b, "bybit": y})
    bound = cross_venue_spread({"binance": b, "bybit": y}, choose=PairChoice.HINDSIGHT)
    assert (causal["short"] != causal["long"]).all() and (bound["short"] != bound["long"]).all()
    assert (bound["binance"] == bound["bybit"]).sum() == 6_816
    assert round(causal["spread_apr"].mean(), 3) == 0.047 and round(bound["spread_apr"].mean(), 3) == 0.129
    # APR across Hyperliquid's 8-hourly and hourly regimes: per hour, not per settlement
    assert round(apr(hl).mean(), 3) == 0.242 and round(average_apr(hl), 3) == 0.125
    assert average_apr(hl) == pytest.approx(funding_stats(hl).realised_apr, rel=1e-12)


def test_funding_stats_streak_matches_a_loop_on_binance(real_file):
    b = real.load_funding_history_csv(real_file(BINANCE_FUNDING), venue=Venue.BINANCE)
    s = funding_stats(b)
    best = run = 0
    best_start = start = None
    for t, r in b["rate"].items():
        if r < 0:
            run, start = run + 1, (start if run else t)
            if run > best:
                best, best_start = run, start
        else:
            run = 0
    assert (s.longest_negative_streak, s.longest_negative_start) == (best, best_start)
    assert s.longest_negative_hours == best * 8
    assert s.share_negative == pytest.approx(sum(r < 0 for r in b["rate"]) / len(b))
    assert s.realised_apr == pytest.approx(b["rate"].sum() / (8 * len(b)) * 8760)


def test_predicted_vs_settled_on_real_binance(real_file):
    mark = real.load_binance_mark(real_file(USDM_2023))
    settled = real.load_funding_history_csv(real_file(BINANCE_FUNDING), venue=Venue.BINANCE)
    cmp = predicted_vs_settled(mark, settled)
    assert cmp.index.tolist() == [pd.Timestamp("2023-04-05 00:00", tz=UTC)]
    row = cmp.iloc[0]
    # last markPrice@1s frame (E = 23:59:59.001) predicted r = 0.00002754; settled 0.0000276
    assert row["predicted"] == 0.00002754 and row["settled"] == 0.0000276
    assert row["predicted_at"] == pd.Timestamp("2023-04-04 23:59:59.001", tz=UTC)
    assert row["error"] == pytest.approx(0.0000276 - 0.00002754, abs=1e-15)  # 6e-8
    with pytest.raises(ResearchError, match="no settlement has a prediction"):
        predicted_vs_settled(mark, settled.loc[:"2023-04-04"])


def test_bad_funding_input_is_refused():
    with pytest.raises(ResearchError, match=r"needs columns \['interval_h'\]"):
        apr(_funding([("2024-01-01", 0.0001, 8)]).drop(columns="interval_h"))
    with pytest.raises(ResearchError, match="interval_h must be > 0, got 0.0"):
        hourly_rate(_funding([("2024-01-01", 0.0001, 0)]))
    assert math.isnan(funding_stats(_funding([("2024-01-01", 0.0001, 8)])).std)
