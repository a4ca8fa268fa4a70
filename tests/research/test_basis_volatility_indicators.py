"""Basis, volatility and TA-Lib indicators against hand-computed values and real data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import talib

from tests.research import real
from research.bars import book_features, trade_bars
from research.basis import align, basis, premium
from research.conventions import Compounding
from research.datasets import ADA_KLINES, SPOT_2024, TARDIS_TRADES, USDM_2023, USDM_2024
from research.errors import ResearchError, UnknownIndicatorError
from research.indicators import indicator, indicator_names
from research.volatility import hour_of_day_profile, hourly_table, log_returns, realised_volatility

UTC = "UTC"
T0 = pd.Timestamp("2024-01-01", tz=UTC)


def _s(pairs, name) -> pd.Series:
    return pd.Series([p for _, p in pairs], index=pd.DatetimeIndex([T0 + pd.Timedelta(s, "s") for s, _ in pairs], name="ts"), name=name)


# -- basis --------------------------------------------------------------------------------
def test_dated_basis_by_hand():
    spot = _s([(0, 100.0), (10, 101.0)], "spot")
    fut = _s([(-0.5, 102.0), (10.2, 103.0)], "fut")  # 103 comes after the spot at 10 s: not used
    b = basis(spot, fut, tolerance="20s", expiry=T0 + pd.Timedelta(days=73))
    assert b["future"].tolist() == [102.0, 102.0]
    assert b["basis"].tolist() == [2.0, 1.0]
    # relative: 102 / 100 - 1 = 0.02; annualised simple over 73 days: 0.02 * 365 / 73 = 0.1
    assert b["basis_rel"].iloc[0] == pytest.approx(0.02, rel=1e-12)
    assert b["basis_ann"].iloc[0] == pytest.approx(0.1, rel=1e-12)
    comp = basis(spot, fut, tolerance="20s", expiry=T0 + pd.Timedelta(days=73), compounding=Compounding.COMPOUNDED)
    assert comp["basis_ann"].iloc[0] == pytest.approx(1.02**5 - 1, rel=1e-12)  # 365 / 73 = 5 periods
    with pytest.raises(ResearchError, match="rows at or after expiry"):
        basis(spot, fut, tolerance="20s", expiry=T0 + pd.Timedelta(seconds=5))


def test_perp_basis_tolerance_and_errors():
    spot = _s([(0, 100.0), (5, 100.0), (10, 100.0)], "spot")
    perp = _s([(4.5, 100.1), (9.8, 99.9)], "perp")
    b = basis(spot, perp, tolerance="1s", funding_interval_h=8)
    # 0 s: no perp before it -> dropped; 5 s pairs with 4.5 s; 10 s pairs with 9.8 s
    assert b.index.tolist() == [T0 + pd.Timedelta(5, "s"), T0 + pd.Timedelta(10, "s")]
    assert b.attrs["unmatched"] == 1
    # 100.1 / 100 - 1 = 0.001 per 8 h -> * 1095 = 1.095
    assert b["basis_ann"].iloc[0] == pytest.approx(1.095, rel=1e-9)
    assert "basis_ann" not in basis(spot, perp, tolerance="1s").columns
    assert len(align(spot, perp, tolerance="0.4s")) == 1  # only 10 s has a perp within 0.4 s (9.8)
    with pytest.raises(ResearchError, match="not both"):
        basis(spot, perp, tolerance="1s", expiry=T0 + pd.Timedelta(days=1), funding_interval_h=8)
    with pytest.raises(ResearchError, match="has a 'future' row within 0 days 00:00:00.100000"):
        basis(spot, perp, tolerance="100ms")


def test_spot_vs_usdm_perp_basis_on_real_quotes(real_file):
    # both venues on exchange time: spot quotes are dated by the depth stream's E (the
    # quotes before the first depth frame keep their receive time, ts == recv_ts)
    spot_q = real.load_binance_quotes(real_file(SPOT_2024))
    perp_q = real.load_binance_quotes(real_file(USDM_2024))
    assert (spot_q.index != spot_q["recv_ts"]).mean() > 0.95
    spot = book_features(spot_q)["mid"]
    perp = book_features(perp_q)["mid"]
    b = basis(spot, perp, tolerance="1s", funding_interval_h=8)
    assert len(b) > 20_000 and (b["basis_rel"].abs() < 0.005).all()
    # one row by hand: the 1000th basis row's spot quote and the last perp quote at or before
    # it (rows are spot quotes in order, those before the first perp quote left out; several
    # spot quotes share the E of the depth frame that dates them)
    k = len(spot) - len(b)
    assert spot.index[k:].equals(b.index) and spot.index[k] >= perp.index[0] > spot.index[k - 1]
    t = spot.index[k + 1000]
    j = np.searchsorted(perp.index.asi8, t.value, side="right") - 1
    row = b.iloc[1000]
    assert row["spot"] == spot.iloc[k + 1000] and row["future"] == perp.iloc[j]
    assert row["basis_rel"] == pytest.approx(perp.iloc[j] / spot.iloc[k + 1000] - 1, rel=1e-12)


def test_premium_of_mark_over_index_on_real_mark(real_file):
    p = premium(real.load_binance_mark(real_file(USDM_2023)), funding_interval_h=8)
    first = p.iloc[0]
    # first markPrice@1s frame: p = 28147.27373413, i = 28159.75642857
    assert first["premium"] == pytest.approx(28147.27373413 - 28159.75642857, abs=1e-8)  # -12.48269444
    assert first["premium_rel"] == pytest.approx(28147.27373413 / 28159.75642857 - 1, rel=1e-12)
    assert first["premium_ann"] == pytest.approx(first["premium_rel"] * 1095, rel=1e-12)


# -- volatility ---------------------------------------------------------------------------
def test_returns_and_rolling_volatility_by_hand():
    idx = pd.date_range(T0, periods=4, freq="1min", name="ts")
    bars = pd.DataFrame({"close": [100.0, 110.0, np.nan, 99.0]}, index=idx)  # bar 2 is empty
    r = log_returns(bars["close"])
    # ln(110/100) = 0.0953102; empty bar: close carried -> 0; ln(99/110) = -0.1053605
    assert np.isnan(r.iloc[0])
    assert r.iloc[1:].tolist() == pytest.approx([math.log(1.1), 0.0, math.log(99 / 110)], rel=1e-12)
    v = realised_volatility(bars, window="2min")
    # 2-bar window ending at bar 2: mean r^2 = (ln(1.1)^2 + 0) / 2, 525,600 minutes a year
    assert np.isnan(v.iloc[1])  # window holds the NaN first return: not full
    assert v.iloc[2] == pytest.approx(math.sqrt(math.log(1.1) ** 2 / 2 * 525_600), rel=1e-12)
    assert v.iloc[3] == pytest.approx(math.sqrt(math.log(99 / 110) ** 2 / 2 * 525_600), rel=1e-12)
    with pytest.raises(ResearchError, match="whole number"):
        realised_volatility(bars, window="90s")


def test_hourly_table_on_real_klines_matches_a_loop(real_file):
    kl = real.load_binance_klines(real_file(ADA_KLINES))
    h = hourly_table(kl)
    assert len(h) == 24 and h["hour"].tolist() == list(range(24)) and set(h["month"]) == {"2021-11"}
    closes = kl["close"].tolist()
    rv = [0.0] * 24
    for i in range(1, len(closes)):  # the return ending in minute i belongs to that minute's hour
        rv[i // 60] += math.log(closes[i] / closes[i - 1]) ** 2
    # hour 0 lacks the return into its first minute (no close before the data): 59 of 60
    # returns, so it is not covered and left out, never averaged in as a short hour
    assert h["n_returns"].tolist() == [59] + [60] * 23 and h["covered"].tolist() == [False] + [True] * 23
    assert np.isnan(h["realised_var"].iloc[0])
    assert h["realised_var"].iloc[1:].tolist() == pytest.approx(rv[1:], rel=1e-9)
    assert h["realised_vol"].iloc[1:].tolist() == pytest.approx([math.sqrt(x * 8760) for x in rv[1:]], rel=1e-9)
    assert (h["coverage"] == 1.0).all()  # every minute bar is there
    prof = hour_of_day_profile(h)
    assert prof.index.tolist() == list(range(1, 24)) and (prof["n_hours"] == 1).all() and (prof["n_uncovered"] == 0).all()
    assert prof["volatility"].tolist() == pytest.approx(h["realised_vol"].iloc[1:].tolist(), rel=1e-12)
    assert prof["volume"].tolist() == pytest.approx(h["volume"].iloc[1:].tolist(), rel=1e-12)
    assert hour_of_day_profile(h, by_month=True).index.names == ["month", "hour"]
    # accepting 59/60 of the returns covers hour 0, its variance scaled to 60 returns
    h59 = hourly_table(kl, min_coverage=59 / 60)
    assert h59["covered"].all() and h59["realised_var"].iloc[0] == pytest.approx(rv[0] * 60 / 59, rel=1e-9)


def test_hourly_table_from_trades(real_file):
    trades = real.load_tardis_trades(real_file(TARDIS_TRADES))
    h = hourly_table(trade_bars(trades, "1min"))
    assert h.index.tolist() == [pd.Timestamp(f"2020-02-22 0{i}:00", tz=UTC) for i in range(3)]
    assert h["count"].sum() == 9_999
    # prints run 00:00:02 .. 02:05:47: hour 2 has 6 minute bars, the rest of it was not
    # recorded, so it is not covered (its 6 minutes are not an hour of variance)
    assert h["coverage"].tolist() == pytest.approx([1.0, 1.0, 6 / 60]) and h["covered"].tolist() == [False, True, False]


# -- indicators ---------------------------------------------------------------------------
def test_indicator_by_name_matches_talib_and_keeps_the_index(real_file):
    kl = real.load_binance_klines(real_file(ADA_KLINES))
    rsi = indicator(kl, "RSI", timeperiod=14)
    assert rsi.name == "rsi" and rsi.index.equals(kl.index)
    np.testing.assert_array_equal(rsi.to_numpy(), talib.RSI(kl["close"].to_numpy(), timeperiod=14))
    assert rsi.iloc[:14].isna().all() and rsi.iloc[14:].notna().all()
    macd = indicator(kl, "macd", fastperiod=12, slowperiod=26, signalperiod=9)
    assert list(macd.columns) == ["macd", "macdsignal", "macdhist"] and macd.index.equals(kl.index)
    ref = talib.MACD(kl["close"].to_numpy(), 12, 26, 9)
    for col, r in zip(macd.columns, ref):
        np.testing.assert_array_equal(macd[col].to_numpy(), r)
    atr = indicator(kl, "ATR", timeperiod=5)
    np.testing.assert_array_equal(atr.to_numpy(), talib.ATR(kl["high"].to_numpy(), kl["low"].to_numpy(), kl["close"].to_numpy(), 5))
    assert "RSI" in indicator_names() and len(indicator_names()) > 150


def test_indicator_sma_by_hand_and_input_column():
    bars = pd.DataFrame({"close": [1.0, 2.0, 3.0, 4.0], "vwap": [2.0, 4.0, 6.0, 8.0]}, index=pd.date_range(T0, periods=4, freq="1min"))
    assert indicator(bars, "SMA", timeperiod=3).tolist()[2:] == [2.0, 3.0]  # (1+2+3)/3, (2+3+4)/3
    assert indicator(bars, "SMA", input_column="vwap", timeperiod=3).tolist()[2:] == [4.0, 6.0]


def test_indicator_errors_name_the_problem():
    bars = pd.DataFrame({"close": [1.0, 2.0]}, index=pd.date_range(T0, periods=2, freq="1min"))
    with pytest.raises(UnknownIndicatorError, match="unknown TA-Lib function 'RSII'; did you mean RSI"):
        indicator(bars, "RSII")
    with pytest.raises(ResearchError, match=r"ATR needs columns \['high', 'low'\]"):
        indicator(bars, "ATR")
    with pytest.raises(ResearchError, match=r"RSI has no parameter\(s\) \['period'\]; its parameters are \['timeperiod'\]"):
        indicator(bars, "RSI", period=3)
    with pytest.raises(ResearchError, match="input_column applies to functions of one series"):
        indicator(bars, "ATR", input_column="close")
