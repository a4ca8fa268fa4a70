"""Bars from trades and book snapshots, checked against plain loops over real prints."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.research import real
from research.bars import (
    BAR_COLUMNS,
    BOOK_FEATURES,
    bin_edges,
    book_bars,
    book_depth,
    book_features,
    reduce_bins,
    resample_bars,
    trade_bars,
)
from research.bars import _tick_grid
from research.errors import ResearchError
from tickstore.errors import TickstoreError

from research.datasets import ADA_KLINES, HL_BOOK, TARDIS_TRADES, USDM_2024

UTC = "UTC"


def _trades(rows) -> pd.DataFrame:
    """rows: (iso time, price, qty, side)."""
    ts = pd.DatetimeIndex([pd.Timestamp(r[0], tz=UTC) for r in rows], name="ts")
    return pd.DataFrame(
        {
            "price": [float(r[1]) for r in rows],
            "qty": [float(r[2]) for r in rows],
            "side": np.array([r[3] for r in rows], dtype=np.int8),
        },
        index=ts,
    )


def loop_bars(trades: pd.DataFrame, step_ns: int) -> dict[int, dict]:
    """The independent reference: one pass over the prints in plain Python.

    Bin label = the print time floored to a multiple of ``step_ns`` since the epoch;
    every label from the first print's to the last print's is present.
    """
    out: dict[int, dict] = {}
    ts = trades.index.asi8.tolist()
    first = ts[0] - ts[0] % step_ns
    last = ts[-1] - ts[-1] % step_ns
    for label in range(first, last + 1, step_ns):
        out[label] = {"open": math.nan, "high": math.nan, "low": math.nan, "close": math.nan, "volume": 0.0,
                      "notional": 0.0, "count": 0, "buy_volume": 0.0, "sell_volume": 0.0}
    for t, p, q, s in zip(ts, trades["price"].tolist(), trades["qty"].tolist(), trades["side"].tolist()):
        b = out[t - t % step_ns]
        if b["count"] == 0:
            b["open"] = b["high"] = b["low"] = p
        b["high"] = max(b["high"], p)
        b["low"] = min(b["low"], p)
        b["close"] = p
        b["volume"] += q
        b["notional"] += p * q
        b["count"] += 1
        if s > 0:
            b["buy_volume"] += q
        elif s < 0:
            b["sell_volume"] += q
    for b in out.values():
        b["vwap"] = b["notional"] / b["volume"] if b["volume"] > 0 else math.nan
    return out


def assert_matches_loop(bars: pd.DataFrame, ref: dict[int, dict]) -> None:
    assert bars.index.asi8.tolist() == list(ref)
    for col in ("open", "high", "low", "close", "count"):  # picked, not summed: exact
        np.testing.assert_array_equal(bars[col].to_numpy(), np.array([ref[k][col] for k in ref]), err_msg=col)
    for col in ("volume", "notional", "vwap", "buy_volume", "sell_volume"):  # summed: order of adds
        np.testing.assert_allclose(bars[col].to_numpy(), np.array([ref[k][col] for k in ref]), rtol=1e-12, err_msg=col)


# -- hand-computed ------------------------------------------------------------------------
def test_trade_bars_hand_computed_with_empty_bin_and_print_on_edge():
    trades = _trades(
        [
            ("2024-01-01 00:00:00.500", 100, 1, 1),
            ("2024-01-01 00:00:00.900", 102, 3, -1),
            ("2024-01-01 00:00:02.000", 101, 2, 1),  # exactly on an edge: opens the 2 s bin
        ]
    )
    bars = trade_bars(trades, "1s")
    assert list(bars.columns) == list(BAR_COLUMNS)
    assert bars.index.tolist() == [pd.Timestamp(f"2024-01-01 00:00:0{i}", tz=UTC) for i in range(3)]
    b0, b1, b2 = (bars.iloc[i] for i in range(3))
    # bin 0: prints 100x1 (buy), 102x3 (sell): vwap = (100*1 + 102*3) / 4 = 406 / 4 = 101.5
    assert (b0.open, b0.high, b0.low, b0.close) == (100, 102, 100, 102)
    assert (b0.volume, b0.vwap, b0["count"], b0.buy_volume, b0.sell_volume, b0.notional) == (4, 101.5, 2, 1, 3, 406)
    # bin 1 is empty: explicit, NaN prices, zero volume and count
    assert np.isnan([b1.open, b1.high, b1.low, b1.close, b1.vwap]).all()
    assert (b1.volume, b1["count"], b1.buy_volume, b1.sell_volume, b1.notional) == (0, 0, 0, 0, 0)
    assert (b2.open, b2.close, b2.volume, b2.vwap, b2["count"]) == (101, 101, 2, 101, 1)
    assert bars["count"].dtype == np.int64


def test_start_end_give_leading_and_trailing_empty_bins():
    trades = _trades([("2024-01-01 00:01:30", 10, 1, 1)])
    bars = trade_bars(trades, "1min", start=pd.Timestamp("2024-01-01", tz=UTC), end=pd.Timestamp("2024-01-01 00:04", tz=UTC))
    assert bars.index.tolist() == [pd.Timestamp(f"2024-01-01 00:0{i}", tz=UTC) for i in range(4)]
    assert bars["count"].tolist() == [0, 1, 0, 0]
    # rows outside [start, end) are ignored, not binned
    outside = trade_bars(trades, "1min", start=pd.Timestamp("2024-01-01 00:02", tz=UTC), end=pd.Timestamp("2024-01-01 00:03", tz=UTC))
    assert outside["count"].tolist() == [0]


def test_bins_count_from_the_epoch_so_calls_agree():
    # 7-minute bins: 00:00 is 28,401,120 minutes after the epoch = 4,057,302 * 7 + 6, so the
    # bin holding 2024-01-01 00:00 opened 6 minutes before, at 2023-12-31 23:54
    edges = bin_edges(pd.Timestamp("2024-01-01", tz=UTC), pd.Timestamp("2024-01-01 00:01", tz=UTC), "7min")
    assert edges.tolist() == [pd.Timestamp("2023-12-31 23:54", tz=UTC), pd.Timestamp("2024-01-01 00:01", tz=UTC)]


def test_calendar_frequency_bins_open_on_the_anchor():
    trades = _trades([("2024-03-13 12:00", 1, 1, 1), ("2024-03-19 09:00", 2, 1, -1)])  # Wed, next Tue
    weekly = trade_bars(trades, "W-MON")
    assert weekly.index.tolist() == [pd.Timestamp("2024-03-11", tz=UTC), pd.Timestamp("2024-03-18", tz=UTC)]
    monthly = trade_bars(trades, "MS")
    assert monthly.index.tolist() == [pd.Timestamp("2024-03-01", tz=UTC)] and monthly["count"].tolist() == [2]


# -- exact bins over long ranges -----------------------------------------------------------
TEN_YEARS = [
    ("2015-03-07 11:22:33.123456789", "2025-03-07 11:22:33.123456789"),  # off-grid both ends
    ("2016-01-01", "2026-01-01"),  # on the grid at every step
    ("2020-01-01", "2029-12-31 23:59:59.999999999"),  # 1 ns before a day edge
]


@pytest.mark.parametrize("freq", ["100ms", "1s", "1min", "h", "D"])
@pytest.mark.parametrize("start, end", TEN_YEARS)
def test_bin_edges_are_exact_over_ten_years(freq, start, end):
    s, e, step = pd.Timestamp(start, tz=UTC), pd.Timestamp(end, tz=UTC), pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    lo, hi = s.floor(freq), max(e.ceil(freq), s.floor(freq) + step)
    n = (hi - lo) // step  # pandas' own integer Timedelta arithmetic: bins
    if n <= 6_000_000:  # every edge against pandas (1 min: 5.3M edges, 42 MB)
        edges = bin_edges(s, e, freq)
        assert len(edges) == n + 1 and edges.equals(pd.date_range(lo, hi, freq=freq).rename("ts"))
    # 100 ms and 1 s make 3.2e9 and 3.2e8 edges: the grid (first edge, bin count) that
    # builds them as first + step * arange(n + 1) is checked instead, at every step
    first, bins = _tick_grid(s.value, e.value, step.value)
    assert (first, bins) == (lo.value, n)
    # and the edges at the end of the range, where the float-sized arange lost one
    tail = bin_edges(hi - 2 * step - pd.Timedelta(1, "ns"), e, freq)
    assert tail.tolist() == [hi - 3 * step, hi - 2 * step, hi - step, hi]


def test_four_years_of_minute_bars_resample_to_every_hour():
    # the report: resample_bars(m1, "h") over 4 years returned 35,063 hours (the last
    # missing, with its volume) and hourly_table crashed
    start = pd.Timestamp("2020-01-01", tz=UTC)
    idx = pd.date_range(start, start + pd.Timedelta(days=1461), freq="1min", inclusive="left", name="ts")
    n = len(idx)
    close = 100 * np.exp(np.cumsum(np.sin(np.arange(n) / 7.0) * 1e-4))
    m1 = pd.DataFrame({"open": close, "high": close * 1.0001, "low": close * 0.9999, "close": close, "volume": 1.0 + (np.arange(n) % 5)}, index=idx)
    hourly = resample_bars(m1, "h")
    assert len(hourly) == 1461 * 24 == 35_064
    assert hourly.index[-1] == idx[-1].floor("h") and hourly["volume"].iloc[-1] == m1["volume"].iloc[-60:].sum()
    assert hourly["volume"].sum() == m1["volume"].sum()
    ref = m1.resample("h").agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    pd.testing.assert_frame_equal(hourly[ref.columns.tolist()], ref, check_freq=False)
    edges = bin_edges("2020-01-01T00:00Z", "2020-12-31T00:00Z", "h")
    assert len(edges) == 8_761 and edges[-1] == pd.Timestamp("2020-12-31", tz=UTC)


# -- real prints against the loop ---------------------------------------------------------
@pytest.mark.parametrize("freq, step_ns", [("1s", 10**9), ("5s", 5 * 10**9), ("1min", 60 * 10**9), ("7min", 420 * 10**9), ("h", 3600 * 10**9)])
def test_tardis_trades_match_a_plain_loop(real_file, freq, step_ns):
    trades = real.load_tardis_trades(real_file(TARDIS_TRADES))
    assert len(trades) == 9_999
    bars = trade_bars(trades, freq)
    assert_matches_loop(bars, loop_bars(trades, step_ns))
    assert bars["count"].sum() == 9_999


@pytest.mark.parametrize("freq, step_ns", [("100ms", 10**8), ("1s", 10**9), ("1min", 60 * 10**9)])
def test_binance_usdm_trades_match_a_plain_loop(real_file, freq, step_ns):
    trades = real.load_binance_trades(real_file(USDM_2024))
    assert len(trades) == 21_313
    assert_matches_loop(trade_bars(trades, freq), loop_bars(trades, step_ns))


@pytest.mark.parametrize("fine, coarse", [("1min", "5min"), ("1min", "h"), ("1s", "1min"), ("10s", "30s"), ("1min", "D")])
def test_coarse_bars_from_fine_bars_equal_bars_from_prints(real_file, fine, coarse):
    trades = real.load_tardis_trades(real_file(TARDIS_TRADES))
    direct = trade_bars(trades, coarse)
    merged = resample_bars(trade_bars(trades, fine), coarse)
    assert merged.index.equals(direct.index)
    pd.testing.assert_frame_equal(merged[["open", "high", "low", "close", "count"]], direct[["open", "high", "low", "close", "count"]])
    pd.testing.assert_frame_equal(merged, direct, check_exact=False, rtol=1e-12)


def test_binance_klines_to_hourly_match_pandas_resample(real_file):
    kl = real.load_binance_klines(real_file(ADA_KLINES))
    hourly = resample_bars(kl, "h")
    assert len(hourly) == 24
    ref = kl.resample("h").agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    pd.testing.assert_frame_equal(hourly[ref.columns.tolist()], ref, check_freq=False, rtol=1e-12)
    # a day of ADABTC: 1,440 klines (ohlcv_1m keeps OHLCV; the kline trade count is dropped)
    assert len(kl) == 1440 and hourly["volume"].sum() == pytest.approx(kl["volume"].sum(), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    offsets_ms=st.lists(st.integers(0, 3_600_000), min_size=1, max_size=200),
    fine_s=st.sampled_from([1, 5, 15, 60]),
    mult=st.sampled_from([1, 2, 3, 4, 12]),
)
def test_law_merging_fine_bars_equals_binning_prints(offsets_ms, fine_s, mult):
    offsets_ms.sort()
    n = len(offsets_ms)
    trades = pd.DataFrame(
        {"price": 100 + (np.arange(n) % 7), "qty": 1.0 + (np.arange(n) % 3), "side": np.where(np.arange(n) % 2, 1, -1).astype(np.int8)},
        index=pd.DatetimeIndex(pd.Timestamp("2024-05-01", tz=UTC) + pd.to_timedelta(offsets_ms, unit="ms"), name="ts"),
    )
    coarse = f"{fine_s * mult}s"
    direct = trade_bars(trades, coarse)
    merged = resample_bars(trade_bars(trades, f"{fine_s}s"), coarse, bar_freq=f"{fine_s}s")
    pd.testing.assert_frame_equal(merged, direct, check_exact=False, rtol=1e-12)
    assert direct["count"].sum() == n and direct["volume"].sum() == pytest.approx(trades["qty"].sum())


# -- bad input ----------------------------------------------------------------------------
def test_bad_input_is_refused_with_the_values():
    good = _trades([("2024-01-01 00:00:01", 1, 1, 1), ("2024-01-01 00:00:02", 2, 1, 1)])
    with pytest.raises(ResearchError, match=r"needs columns \['side'\]"):
        trade_bars(good.drop(columns="side"), "1s")
    with pytest.raises(ResearchError, match="not sorted: 2024-01-01 00:00:02"):
        trade_bars(good.iloc[::-1], "1s")
    with pytest.raises(ResearchError, match="tz-aware UTC"):
        trade_bars(good.tz_localize(None), "1s")
    with pytest.raises(ResearchError, match="'fortnightly' is not a pandas frequency"):
        trade_bars(good, "fortnightly")
    bad = good.copy()
    bad.iloc[1, 0] = np.nan
    with pytest.raises(ResearchError, match="'price' holds nan at 2024-01-01 00:00:02"):
        trade_bars(bad, "1s")
    with pytest.raises(ResearchError, match="cannot merge 0 days 00:01:00 bars into '90s'"):
        resample_bars(trade_bars(good, "1min"), "90s", bar_freq="1min")
    with pytest.raises(TickstoreError):  # one exception root for the whole project
        trade_bars(good, "0s")
    with pytest.raises(ResearchError, match="no rows and no start/end"):
        trade_bars(good.iloc[:0], "1s")


# -- book snapshots -----------------------------------------------------------------------
def _book(rows, n=2) -> pd.DataFrame:
    """rows: (ms offset, [bid px, bid qty, ask px, ask qty] per level)."""
    cols = {f"{s}_{w}_{i}": [] for s in ("bid", "ask") for w in ("px", "qty") for i in range(1, n + 1)}
    for _, levels in rows:
        for i, (bp, bq, ap, aq) in enumerate(levels, start=1):
            cols[f"bid_px_{i}"].append(bp)
            cols[f"bid_qty_{i}"].append(bq)
            cols[f"ask_px_{i}"].append(ap)
            cols[f"ask_qty_{i}"].append(aq)
    idx = pd.DatetimeIndex([pd.Timestamp("2024-01-01", tz=UTC) + pd.Timedelta(milliseconds=ms) for ms, _ in rows], name="ts")
    return pd.DataFrame(cols, index=idx)


def test_book_features_hand_computed():
    book = _book([(0, [(100.0, 1.0, 101.0, 3.0), (99.0, 2.0, 102.0, 4.0)])])
    f = book_features(book).iloc[0]
    assert f.mid == 100.5  # (100 + 101) / 2
    assert f.spread == 1.0  # 101 - 100
    assert f.spread_bps == pytest.approx(1 / 100.5 * 1e4)  # 99.5025 bp
    assert f.microprice == 100.25  # (100 * 3 + 101 * 1) / (1 + 3) = 401 / 4
    assert f.imbalance == pytest.approx(-0.4)  # B = 1 + 2 = 3, A = 3 + 4 = 7: (3 - 7) / 10
    assert book_features(book, depth=1).iloc[0].imbalance == pytest.approx(-0.5)  # (1 - 3) / 4
    assert list(book_features(book).columns) == list(BOOK_FEATURES)
    with pytest.raises(ResearchError, match=r"depth must be an int in 1..2"):
        book_features(book, depth=3)
    with pytest.raises(ResearchError, match=r"book level 2 of 2 misses columns \['ask_qty_2'\]"):
        book_depth(book.drop(columns="ask_qty_2"))


def test_book_bars_take_the_last_snapshot_of_each_bin_on_non_nesting_grids():
    # 100 ms snapshots, bid price = 100 + snapshot number, so the mid tells which one was kept
    rows = [(ms, [(100.0 + ms // 100, 1.0, 101.0 + ms // 100, 1.0)]) for ms in range(0, 1000, 100)]
    book = _book(rows, n=1)
    g = book_bars(book, "250ms")
    # [0,250): 0,100,200 -> #2; [250,500): 300,400 -> #4; [500,750): 500..700 -> #7; [750,1000): 800,900 -> #9
    assert g["mid"].tolist() == [102.5, 104.5, 107.5, 109.5]
    assert g["count"].tolist() == [3, 2, 3, 2]
    assert book_bars(book, "500ms")["mid"].tolist() == [104.5, 109.5]
    assert book_bars(book, "1s")["mid"].tolist() == [109.5]
    gappy = book_bars(book.iloc[[0, 9]], "250ms")
    assert gappy["count"].tolist() == [1, 0, 0, 1] and np.isnan(gappy["mid"].iloc[1])


def test_hyperliquid_book_on_a_1s_grid_matches_a_loop(real_file):
    book = real.load_hyperliquid_book(real_file(HL_BOOK))
    assert book_depth(book) == 20
    grid = book_bars(book, "1s", depth=5)
    feats = book_features(book, depth=5)
    expected = {}
    for t, row in feats.iterrows():  # last snapshot per second wins
        expected[t.floor("1s")] = row
    got = grid[grid["count"] > 0]
    assert got.index.tolist() == list(expected)
    pd.testing.assert_frame_equal(got[list(BOOK_FEATURES)], pd.DataFrame(expected).T.rename_axis("ts")[list(BOOK_FEATURES)].astype(float), check_freq=False)
    # top-5 imbalance by hand for the first snapshot
    b = book.iloc[0]
    bid5 = sum(b[f"bid_qty_{i}"] for i in range(1, 6))
    ask5 = sum(b[f"ask_qty_{i}"] for i in range(1, 6))
    assert feats["imbalance"].iloc[0] == pytest.approx((bid5 - ask5) / (bid5 + ask5))


def test_quotes_100ms_grid_then_250ms_equals_last_quote_per_250ms(real_file):
    quotes = real.load_binance_quotes(real_file(USDM_2024))
    assert book_depth(quotes) == 1  # bid_px/bid_qty/ask_px/ask_qty read as one level
    g100 = book_bars(quotes, "100ms")
    # re-gridding the 100 ms grid to 250 ms is not allowed to differ from gridding the quotes
    # where the 250 ms edges coincide with 100 ms edges (every 500 ms)
    g500_direct = book_bars(quotes, "500ms")
    g500_from_100 = reduce_bins(g100.dropna(subset=["mid"]), "500ms", how={c: "last" for c in BOOK_FEATURES},
                                start=g500_direct.index[0], end=g500_direct.index[-1] + pd.Timedelta("500ms"))
    pd.testing.assert_frame_equal(g500_from_100[list(BOOK_FEATURES)], g500_direct[list(BOOK_FEATURES)])
    last = quotes.groupby(quotes.index.floor("250ms")).tail(1)
    g250 = book_bars(quotes, "250ms")
    np.testing.assert_array_equal(g250.loc[g250["count"] > 0, "mid"].to_numpy(), ((last["bid_px"] + last["ask_px"]) / 2).to_numpy())


# -- trade kinds: market prints unless asked otherwise -------------------------------------
def test_bars_use_market_prints_only_unless_asked(store, real_file):
    from research.bars import MARKET_ONLY, select_trade_bars
    from research.scale import trade_bars_dask
    from tickstore import TradeKind

    trades = real.load_binance_trades(real_file(USDM_2024))
    assert (trades["kind"] == TradeKind.MARKET).all()
    # One real print becomes an insurance-fund print, as Binance's trade stream marks it
    # ("X": "INSURANCE_FUND" instead of "MARKET", USD-M futures websocket docs): the first
    # minute's highest print where it is the only one at that price, which then is not a
    # price the book traded at.
    for t, minute in trades.groupby(trades.index.floor("min")):
        if (minute["price"] == minute["price"].max()).sum() == 1:
            break
    pos = int(np.flatnonzero((trades.index.floor("min") == t) & (trades["price"] == minute["price"].max()))[0])
    trades.iloc[pos, trades.columns.get_loc("kind")] = np.int8(TradeKind.LIQUIDATION)
    market = trades[trades["kind"] == TradeKind.MARKET]
    bars = trade_bars(trades, "1min")
    every = trade_bars(trades, "1min", kinds=None)
    pd.testing.assert_frame_equal(bars, trade_bars(market.drop(columns="kind"), "1min"))
    assert every.loc[t, "high"] == minute["price"].max() > bars.loc[t, "high"] == market.loc[t : t + pd.Timedelta("59.999s"), "price"].max()
    assert every["count"].sum() == len(trades) == bars["count"].sum() + 1
    assert bars.loc[t, "volume"] == pytest.approx(every.loc[t, "volume"] - trades["qty"].iloc[pos], rel=1e-12)
    both = trade_bars(trades, "1min", kinds=(TradeKind.MARKET, TradeKind.LIQUIDATION))
    pd.testing.assert_frame_equal(both, every)
    assert MARKET_ONLY == (TradeKind.MARKET,)
    with pytest.raises(ResearchError, match="kinds must be TradeKind values"):
        trade_bars(trades, "1min", kinds=("market",))
    # from the store, in process and on Dask: the same choice
    store["trades"].insert("binance:BTC/USDT:USDT", "2024-08-08", trades.loc["2024-08-08"], reason="test")
    lo, hi = pd.Timestamp("2024-08-08 23:54", tz=UTC), pd.Timestamp("2024-08-09", tz=UTC)
    got = select_trade_bars(store["trades"], "binance:BTC/USDT:USDT", "1min", start=lo, end=hi, coverage=False)
    pd.testing.assert_frame_equal(got, trade_bars(trades.loc["2024-08-08"], "1min", start=lo, end=hi))
    all_kinds = select_trade_bars(store["trades"], "binance:BTC/USDT:USDT", "1min", start=lo, end=hi, coverage=False, kinds=None)
    assert all_kinds.loc[t, "high"] == every.loc[t, "high"]
    dask_bars = trade_bars_dask(store, "binance:BTC/USDT:USDT", "1min", start=lo, end=hi, coverage=False).compute(scheduler="sync")
    pd.testing.assert_frame_equal(dask_bars, got)
