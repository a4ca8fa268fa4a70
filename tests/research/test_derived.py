"""Derived tables on a real store: 3-minute bars from real 1-minute klines, an SMA of those,
lineage to the input versions, staleness after a correction, as-of reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from research import datasets
from research.bars import OHLCV_COLUMNS, resample_bars
from research.datasets import ADA_KLINES
from research.derived import Derived, Source, lineage, materialise, read, staleness
from research.errors import ResearchError, StaleError
from research.indicators import indicator
from tickstore import Column, Schema

SYM = "binance:ADA/BTC"
DAY = pd.Timestamp("2021-11-27", tz="UTC")

BARS_3M = Derived(
    name="bars_3m",
    schema=Schema("bars_3m", tuple(Column(c, "float64") for c in OHLCV_COLUMNS), key=("ts",)),
    inputs=(Source("ohlcv_1m"),),
    compute=lambda bars, *, start, end: resample_bars(bars, "3min", bar_freq="1min", start=start, end=end)[list(OHLCV_COLUMNS)],
)
SMA_3M = Derived(
    name="sma_3m",
    schema=Schema("sma_3m", (Column("sma", "float64"),), key=("ts",)),
    inputs=(Source("bars_3m", lookback=pd.Timedelta("1h")),),
    compute=lambda bars, *, start, end: indicator(bars, "SMA", timeperiod=5).to_frame("sma"),
)


@pytest.fixture
def klines(real_file):
    return datasets.load_binance_klines(real_file(ADA_KLINES))[list(OHLCV_COLUMNS)]


def test_derived_chain_lineage_staleness_and_as_of(store, clock, klines):
    v1 = store["ohlcv_1m"].insert(SYM, DAY, klines, reason="backfill", source="binance-vision")
    clock.advance(60)
    m = materialise(store, BARS_3M, SYM, DAY)
    bars = read(store, BARS_3M, SYM)
    assert len(bars) == 480  # 1,440 minutes / 3
    pd.testing.assert_frame_equal(bars, resample_bars(klines, "3min")[list(OHLCV_COLUMNS)], check_freq=False)
    # lineage: one input file, the ohlcv_1m month file version written above
    lin = lineage(store, BARS_3M, SYM, DAY)
    assert len(lin) == 1
    assert lin["input_table"].iloc[0] == "ohlcv_1m" and lin["input_symbol"].iloc[0] == SYM
    assert lin["input_version"].iloc[0] == v1.versions[0][1]
    assert lin["input_checksum"].iloc[0] == m.pins[0].files[0].checksum
    assert lin["output_version"].iloc[0] == m.commit.versions[0][1]
    assert lin["code"].iloc[0] == "bars_3m@1"
    out_v = store["bars_3m"].versions(SYM, DAY).iloc[-1]
    assert out_v["source"] == "derived:bars_3m@1" and "ohlcv_1m/binance:ADA/BTC 2021-11-01v" in out_v["reason"]

    clock.advance(60)
    materialise(store, SMA_3M, SYM, DAY)
    sma = read(store, SMA_3M, SYM)
    np.testing.assert_allclose(sma["sma"].to_numpy(), talib.SMA(bars["close"].to_numpy(), 5), rtol=1e-12)
    assert not staleness(store, BARS_3M, SYM, DAY).stale and not staleness(store, SMA_3M, SYM, DAY).stale

    clock.advance(60)
    store.snapshot("before-fix")
    clock.advance(60)
    # an exchange correction of the 12:02 minute's close: the close of the 12:00 3-minute bar
    # (a correction of 12:00 or 12:01 would not reach the SMA of closes: staleness is by data)
    fixed = klines.copy()
    fixed.loc[DAY + pd.Timedelta("12:02:00"), "close"] *= 1.01
    store["ohlcv_1m"].insert(SYM, DAY, fixed, reason="exchange correction")
    st = staleness(store, BARS_3M, SYM, DAY)
    assert st.stale and "input 0 (ohlcv_1m/binance:ADA/BTC) changed" in st.reasons[0]
    assert not staleness(store, SMA_3M, SYM, DAY).stale  # its input (bars_3m) has not changed yet
    with pytest.raises(StaleError, match="bars_3m binance:ADA/BTC 2021-11-27 is stale"):
        read(store, BARS_3M, SYM, require_fresh=True)
    # as known before the fix, everything was fresh, and reads give the first results
    assert not staleness(store, BARS_3M, SYM, DAY, as_of="before-fix").stale
    pd.testing.assert_frame_equal(read(store, BARS_3M, SYM, as_of="before-fix"), bars)

    clock.advance(60)
    materialise(store, BARS_3M, SYM, DAY)
    assert not staleness(store, BARS_3M, SYM, DAY).stale
    assert staleness(store, SMA_3M, SYM, DAY).stale  # now the chain propagates
    new_bars = read(store, BARS_3M, SYM)
    assert new_bars.loc[DAY + pd.Timedelta("12h"), "close"] == pytest.approx(fixed.loc[DAY + pd.Timedelta("12:02:00"), "close"])
    clock.advance(60)
    materialise(store, SMA_3M, SYM, DAY)
    assert not staleness(store, SMA_3M, SYM, DAY).stale
    assert len(store["bars_3m"].versions(SYM, DAY)) == 2 and len(lineage(store, BARS_3M, SYM, DAY, as_of="before-fix")) == 1


def test_staleness_without_output_and_bad_specs(store):
    st = staleness(store, BARS_3M, SYM, DAY)
    assert st.stale and "never materialised" in st.reasons[0]
    with pytest.raises(ResearchError, match="schema is named 'bars_3m', derived table 'x'"):
        Derived(name="x", schema=BARS_3M.schema, inputs=BARS_3M.inputs, compute=BARS_3M.compute)
    with pytest.raises(ResearchError, match="not a UTC day"):
        staleness(store, BARS_3M, SYM, "2021-11-27 12:00")
