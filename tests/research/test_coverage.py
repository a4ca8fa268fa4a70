"""Coverage: a gap written into the ledger and a missing day reach bars, book bars and the
volatility profile; spans arithmetic by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tests.research import real
from research.bars import resample_bars, select_bars, select_book_bars, select_trade_bars, trade_bars
from research.coverage import (
    SPAN_COLUMNS,
    bin_coverage,
    ledger_spans,
    merge_spans,
    missing_partitions,
    settlement_spans,
    streams_of,
    uncovered,
)
from research.datasets import HL_BOOK, SPOT_2024
from research.errors import ResearchError
from research.volatility import hour_of_day_profile, hourly_table, realised_volatility, valid_returns, on_grid
from tickstore import Partition

UTC = "UTC"
SPOT = "binance:BTC/USDT"
SPOT_0809 = "hftbacktest/spot/btcusdt_20240809.gz"


def T(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz=UTC)


def gap_rows(*rows) -> pd.DataFrame:
    """rows: (start, end, stream, cause) -> a ``gaps`` table frame (recv_ts = end)."""
    return pd.DataFrame(
        {
            "recv_ts": [T(r[1]) for r in rows],
            "end_ts": [T(r[1]) for r in rows],
            "stream": [r[2] for r in rows],
            "cause": [r[3] for r in rows],
            "detail": [f"test {r[3]}" for r in rows],
        },
        index=pd.DatetimeIndex([T(r[0]) for r in rows], name="ts"),
    )


def spans(*pairs) -> pd.DataFrame:
    return pd.DataFrame({"start": [T(a) for a, _ in pairs], "end": [T(b) for _, b in pairs], "stream": "*", "cause": "x", "detail": ""})


# -- by hand ------------------------------------------------------------------------------
def test_merge_and_bin_coverage_by_hand():
    s = spans(("2024-01-01 00:00:30", "2024-01-01 00:01:15"), ("2024-01-01 00:01:00", "2024-01-01 00:01:30"), ("2024-01-01 00:03:45", "2024-01-01 00:04:00"))
    a, b = merge_spans(s)
    assert [pd.Timestamp(x, tz=UTC) for x in a] == [T("2024-01-01 00:00:30"), T("2024-01-01 00:03:45")]
    assert [pd.Timestamp(x, tz=UTC) for x in b] == [T("2024-01-01 00:01:30"), T("2024-01-01 00:04:00")]
    edges = pd.date_range(T("2024-01-01"), periods=6, freq="1min")
    # minute 0: 30 s out; minute 1: 30 s out; 2: none; 3: 15 s out; 4: none
    np.testing.assert_array_equal(bin_coverage(edges, s), [0.5, 0.5, 1.0, 0.75, 1.0])
    assert bin_coverage(edges, s.iloc[:0]).tolist() == [1.0] * 5


def test_missing_partitions_of_day_and_month_tables():
    days = pd.DatetimeIndex([T("2024-03-01"), T("2024-03-03")])
    got = missing_partitions(days, Partition.DAY, "2024-02-29T12:00Z", "2024-03-04T06:00Z", what="trades x:y")
    assert got[["start", "end"]].values.tolist() == [
        [T("2024-02-29 12:00"), T("2024-03-01")], [T("2024-03-02"), T("2024-03-03")], [T("2024-03-04"), T("2024-03-04 06:00")]
    ]
    assert set(got["cause"]) == {"missing_partition"} and "trades x:y" in got["detail"].iloc[1]
    months = missing_partitions(pd.DatetimeIndex([T("2024-02-01")]), Partition.MONTH, "2024-01-15", "2024-03-10")
    assert months[["start", "end"]].values.tolist() == [[T("2024-01-15"), T("2024-02-01")], [T("2024-03-01"), T("2024-03-10")]]


def test_settlement_spans_find_a_missing_record():
    idx = pd.DatetimeIndex([T("2024-01-01 00:00"), T("2024-01-01 08:00"), T("2024-01-01 16:00"), T("2024-01-02 08:00")], name="ts")
    f = pd.DataFrame({"rate": 1e-4, "interval_h": 8.0}, index=idx)
    # (16:00, 00:00] is paid by the 00:00 settlement of the 2nd, which is missing
    got = settlement_spans(f, "2024-01-01 00:00Z", "2024-01-02 08:00Z")
    assert got[["start", "end"]].values.tolist() == [[T("2024-01-01 16:00") + pd.Timedelta(1, "ns"), T("2024-01-02 00:00") + pd.Timedelta(1, "ns")]]
    assert got["cause"].tolist() == ["missing_settlement"]


def test_streams_per_table():
    assert streams_of("trades") == ("*",) and streams_of("quotes") == ("*",)
    assert streams_of("book") == ("*", "depth") and streams_of("book_20") == ("*", "depth")
    assert streams_of("funding") == ()


# -- a store with a gap in the ledger and a missing day -------------------------------------
@pytest.fixture
def spot_store(store, real_file):
    """Real spot prints 2024-08-08 23:54 .. 2024-08-09 00:05 (two day files); the ledger holds
    a 45 s disconnect and a book resync; 2024-08-07 has no file."""
    trades = pd.concat([real.load_binance_trades(real_file(SPOT_2024)), real.load_binance_trades(real_file(SPOT_0809))])
    store["trades"].append(SPOT, trades)
    return store, trades


def test_trade_bars_carry_their_coverage_from_the_ledger_and_the_partitions(spot_store, clock):
    store, trades = spot_store
    start, end = T("2024-08-07 23:58"), T("2024-08-09 00:02")
    clean = select_trade_bars(store["trades"], SPOT, "1min", start=start, end=end)
    # no ledger yet: 2024-08-07 is a missing day, the rest is covered
    assert (clean.loc[:"2024-08-07", "coverage"] == 0).all() and (clean.loc["2024-08-08":, "coverage"] == 1).all()
    t0 = clock.now()
    clock.advance(60)
    store["gaps"].append(SPOT, gap_rows(
        ("2024-08-08 23:56:30", "2024-08-08 23:57:15", "*", "disconnect"),     # trades and book lose 45 s
        ("2024-08-08 23:58:00", "2024-08-08 23:58:20", "depth", "resync"),      # the book only
    ))
    bars = select_trade_bars(store["trades"], SPOT, "1min", start=start, end=end)
    cov = bars["coverage"]
    assert cov[T("2024-08-08 23:56")] == 0.5 and cov[T("2024-08-08 23:57")] == 0.75
    assert cov[T("2024-08-08 23:58")] == 1.0  # a book resync does not lose prints
    assert (cov.loc[:"2024-08-07"] == 0).all() and cov.loc["2024-08-08 23:59":].eq(1).all()
    # the rest of the bar is what the store holds, exactly
    pd.testing.assert_frame_equal(bars.drop(columns="coverage"), trade_bars(trades, "1min", start=start, end=end))
    # reproducible: as of before the ledger row, the coverage is what it was then
    pd.testing.assert_frame_equal(select_trade_bars(store["trades"], SPOT, "1min", start=start, end=end, as_of=t0), clean)
    # the uncovered spans themselves: one missing day (clipped) and the disconnect
    sp = uncovered(store, "trades", SPOT, start, end)
    assert list(sp.columns) == list(SPAN_COLUMNS)
    assert sp[["start", "end", "cause"]].values.tolist() == [
        [start, T("2024-08-08"), "missing_partition"], [T("2024-08-08 23:56:30"), T("2024-08-08 23:57:15"), "disconnect"]
    ]
    # 5-minute bars from the minute bars: time-weighted coverage, 75 s of 300 out
    five = resample_bars(bars, "5min", start=T("2024-08-08 23:55"), end=T("2024-08-09 00:00"))
    assert five["coverage"].tolist() == [pytest.approx(1 - 45 / 300)]


def test_a_gap_that_began_before_the_range_is_found(spot_store):
    store, _ = spot_store
    # a disconnect from 23:40 on the 8th to 00:01 on the 9th, asked about from 00:00
    store["gaps"].append(SPOT, gap_rows(("2024-08-08 23:40", "2024-08-09 00:01", "*", "stale")))
    bars = select_trade_bars(store["trades"], SPOT, "1min", start=T("2024-08-09 00:00"), end=T("2024-08-09 00:03"))
    assert bars["coverage"].tolist() == [0.0, 1.0, 1.0]


def test_book_bars_lose_coverage_to_resyncs(store, real_file):
    hl = "hyperliquid:BTC/USDC:USDC"
    store["book_20"].append(hl, real.load_hyperliquid_book(real_file(HL_BOOK)))  # 19:14:03 .. 19:14:29
    store["gaps"].append(hl, gap_rows(("2025-01-26 19:14:10", "2025-01-26 19:14:15", "depth", "resync")))
    start, end = T("2025-01-26 19:14:00"), T("2025-01-26 19:14:30")
    got = select_book_bars(store["book_20"], hl, "10s", start=start, end=end)
    assert got["coverage"].tolist() == [1.0, 0.5, 1.0]
    # the same time on the trades side: a book resync does not lose prints
    assert (uncovered(store, "trades", hl, start, end)["cause"] == "missing_partition").all()
    assert uncovered(store, "book_20", hl, start, end)["cause"].tolist() == ["resync"]


def test_bad_ranges_are_refused(store):
    with pytest.raises(ResearchError, match="not after start"):
        uncovered(store, "trades", SPOT, "2024-01-02", "2024-01-01")
    with pytest.raises(ResearchError, match="naive"):
        uncovered(store, "trades", SPOT, pd.Timestamp("2024-01-01"), "2024-01-02")
    # a symbol never stored: everything is uncovered, nothing fails
    sp = uncovered(store, "trades", SPOT, "2024-01-01", "2024-01-03")
    assert sp["cause"].tolist() == ["missing_partition"] * 2


# -- volatility over a gap ------------------------------------------------------------------
def minute_bars(days: int, *, seed: int = 7) -> pd.DataFrame:
    """1-minute bars whose volatility depends on the hour of day (deterministic)."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range(T("2024-01-01"), periods=days * 1440, freq="1min", name="ts")
    sigma = 1e-4 * (1 + idx.hour.to_numpy() / 6)
    close = 100 * np.exp(np.cumsum(rng.normal(0, sigma)))
    return pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0 + idx.hour.to_numpy()}, index=idx)


def profile_by_loop(bars: pd.DataFrame) -> dict[int, list[float]]:
    """Independent: for every clock hour whose 60 minutes and the minute before are all in
    the frame, the sum of its 60 squared log returns; grouped by hour of day."""
    closes = dict(zip(bars.index.asi8.tolist(), bars["close"].tolist()))
    minute = 60 * 10**9
    out: dict[int, list[float]] = {}
    hours = sorted({t - t % (3600 * 10**9) for t in closes})
    for h in hours:
        ts = [h + k * minute for k in range(-1, 60)]
        if all(t in closes for t in ts):
            rv = sum(math.log(closes[ts[k + 1]] / closes[ts[k]]) ** 2 for k in range(60))
            out.setdefault(pd.Timestamp(h, tz=UTC).hour, []).append(rv)
    return out


def test_missing_day_leaves_the_hour_profile_unbiased():
    full = minute_bars(91)
    holed = full.drop(full.loc["2024-02-10"].index)  # one missing day of 91
    h = hourly_table(holed)
    # the missing day's 24 hours, its successor's hour 0 (its first return spans the day)
    # and the very first hour (no close before the data) are not covered
    assert (~h["covered"]).sum() == 24 + 1 + 1
    assert not h.loc[T("2024-02-11 00:00"), "covered"] and h.loc[T("2024-02-11 01:00"), "covered"]
    assert (h.loc["2024-02-10", "coverage"] == 0).all()
    prof = hour_of_day_profile(h)
    ref = profile_by_loop(holed)
    assert prof.index.tolist() == list(range(24))
    assert prof["n_hours"].tolist() == [len(ref[k]) for k in range(24)] == [88] + [90] * 23
    assert prof["n_uncovered"].tolist() == [3] + [1] * 23
    expected = [math.sqrt(np.mean(ref[k]) * 8760) for k in range(24)]
    assert prof["volatility"].tolist() == pytest.approx(expected, rel=1e-10)
    # the 24-hour return over the missing day never lands in hour 0
    r = valid_returns(on_grid(holed))
    assert np.isnan(r[T("2024-02-11 00:00")]) and r.loc["2024-02-10"].isna().all()
    # without coverage (the old rule) hour 0 absorbed it: +several % on one day of 91
    naive = np.log(holed["close"]).diff()
    naive_h0 = (naive[naive.index.hour == 0] ** 2).groupby(naive.index[naive.index.hour == 0].normalize()).sum()
    assert math.sqrt(naive_h0.mean() * 8760) > 1.02 * prof.loc[0, "volatility"]


def test_a_ledger_gap_excludes_the_returns_it_spans():
    bars = minute_bars(2)
    bars["coverage"] = 1.0
    bars.loc[T("2024-01-01 12:10"), "coverage"] = 0.5  # a 30 s disconnect in 12:10
    r = valid_returns(on_grid(bars))
    # the return into 12:10 spans 12:09..12:10, the one into 12:11 spans 12:10..12:11
    assert r[[T("2024-01-01 12:10"), T("2024-01-01 12:11")]].isna().all() and r.notna().sum() == 2 * 1440 - 3
    h = hourly_table(bars)
    assert not h.loc[T("2024-01-01 12:00"), "covered"] and h.loc[T("2024-01-01 12:00"), "n_returns"] == 58
    relaxed = hourly_table(bars, min_coverage=0.95)
    got = relaxed.loc[T("2024-01-01 12:00"), "realised_var"]
    assert got == pytest.approx(r.loc["2024-01-01 12:00":"2024-01-01 12:59"].pow(2).sum() * 60 / 58, rel=1e-12)
    vol = realised_volatility(bars, window="1h")
    assert vol.loc["2024-01-01 12:10":"2024-01-01 13:10"].isna().all() and vol[T("2024-01-01 13:11")] > 0
    vol95 = realised_volatility(bars, window="1h", min_coverage=0.95)
    assert vol95[T("2024-01-01 12:30")] == pytest.approx(
        math.sqrt(r.loc["2024-01-01 11:31":"2024-01-01 12:30"].pow(2).mean() * 525_600), rel=1e-12
    )


def test_stored_bars_read_their_coverage_and_the_profile_skips_the_gap(store, clock):
    sym = "binance:BTC/USDT"
    bars = minute_bars(10)
    store["ohlcv_1m"].append(sym, bars[["open", "high", "low", "close", "volume"]].loc[lambda b: b.index.normalize() != T("2024-01-05")])
    store["gaps"].append(sym, gap_rows(("2024-01-08 13:20", "2024-01-08 13:50", "*", "disconnect")))
    got = select_bars(store["ohlcv_1m"], sym, start="2024-01-01", end="2024-01-11")
    assert len(got) == 9 * 1440 and "2024-01-05" not in set(got.index.strftime("%Y-%m-%d"))
    assert (got.loc["2024-01-08 13:20":"2024-01-08 13:49", "coverage"] == 0).all() and got["coverage"].sum() == 9 * 1440 - 30
    h = hourly_table(got)
    assert not h.loc[T("2024-01-08 13:00"), "covered"] and h.loc[T("2024-01-08 14:00"), "covered"]
    assert (~h["covered"]).sum() == 1 + 24 + 1 + 1  # first hour, the missing day, its next 00:00, the disconnect
    prof = hour_of_day_profile(h)
    ref = profile_by_loop(bars.loc[(bars.index.normalize() != T("2024-01-05")) & ~((bars.index >= T("2024-01-08 13:20")) & (bars.index < T("2024-01-08 13:50")))])
    assert prof["n_hours"].tolist() == [len(ref[k]) for k in range(24)]
    assert prof["volatility"].tolist() == pytest.approx([math.sqrt(np.mean(ref[k]) * 8760) for k in range(24)], rel=1e-10)
