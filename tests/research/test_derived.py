"""Derived tables on a real store: 3-minute bars from real 1-minute klines, an SMA of those,
lineage to the input versions, staleness after a correction, as-of reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from tests.research import real
from research.bars import OHLCV_COLUMNS, resample_bars
from research.datasets import ADA_KLINES
from research.derived import Derived, Source, data_hash, lineage, materialise, read, staleness
from research.errors import ResearchError, StaleError
from research.indicators import indicator
from tickstore import Column, Schema
from tickstore.schemas import builtin_schema

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
    return real.load_binance_klines(real_file(ADA_KLINES))[list(OHLCV_COLUMNS)]


def test_derived_chain_lineage_staleness_and_as_of(store, clock, klines):
    v1 = store["ohlcv_1m"].insert(SYM, DAY, klines, reason="backfill", source="binance-vision")
    clock.advance(60)
    m = materialise(store, BARS_3M, SYM, DAY)
    bars = read(store, BARS_3M, SYM)
    assert len(bars) == 480  # 1,440 minutes / 3
    pd.testing.assert_frame_equal(bars, resample_bars(klines, "3min")[list(OHLCV_COLUMNS)], check_freq=False)
    # lineage: one input file, the ohlcv_1m month file version written above
    lin = lineage(store, BARS_3M, SYM, DAY)
    assert lin["input_no"].tolist() == [-1, 0]  # the output day itself, then the one input file
    own, lin = lin.iloc[:1], lin.iloc[1:]
    assert own["input_table"].iloc[0] == "bars_3m" and own["input_rows"].iloc[0] == 480
    assert own["data_hash"].iloc[0] == data_hash(bars)
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
    assert len(store["bars_3m"].versions(SYM, DAY)) == 2 and len(lineage(store, BARS_3M, SYM, DAY, as_of="before-fix")) == 2


def test_staleness_without_output_and_bad_specs(store):
    st = staleness(store, BARS_3M, SYM, DAY)
    assert st.stale and "never materialised" in st.reasons[0]
    with pytest.raises(ResearchError, match="schema is named 'bars_3m', derived table 'x'"):
        Derived(name="x", schema=BARS_3M.schema, inputs=BARS_3M.inputs, compute=BARS_3M.compute)
    with pytest.raises(ResearchError, match="not a UTC day"):
        staleness(store, BARS_3M, SYM, "2021-11-27 12:00")


# -- coarse partitions, declared columns, names ---------------------------------------------
def synth_minutes(days: int, start: str = "2024-01-01") -> pd.DataFrame:
    idx = pd.date_range(pd.Timestamp(start, tz="UTC"), periods=days * 1440, freq="1min", name="ts")
    close = 100 + np.sin(np.arange(len(idx)) / 97.0) + np.arange(len(idx)) * 1e-4
    return pd.DataFrame({"open": close, "high": close + 0.5, "low": close - 0.5, "close": close, "volume": 1.0 + np.arange(len(idx)) % 7}, index=idx)


def bars_spec(name: str, freq: str, schema: Schema) -> Derived:
    return Derived(
        name=name, schema=schema, inputs=(Source("ohlcv_1m"),),
        compute=lambda bars, *, start, end: resample_bars(bars, freq, bar_freq="1min", start=start, end=end)[list(OHLCV_COLUMNS)],
    )


@pytest.mark.parametrize("name, freq", [("ohlcv_3m", "3min"), ("ohlcv_1h", "h")])  # month files, year files
def test_month_and_year_files_keep_lineage_per_day(store, clock, name, freq):
    spec = bars_spec(name, freq, builtin_schema(name))
    assert spec.builtin and store[name].schema.partition.value == ("month" if name == "ohlcv_3m" else "year")
    m1 = synth_minutes(14, "2024-01-20")  # 14 days across a month boundary
    for d in pd.date_range("2024-01-20", periods=14, freq="D", tz="UTC"):
        store["ohlcv_1m"].insert(SYM, d, m1.loc[d.strftime("%Y-%m-%d")], reason="backfill")
    clock.advance(60)
    days = pd.date_range("2024-01-20", periods=14, freq="D", tz="UTC")
    for d in days:
        clock.advance(1)
        materialise(store, spec, SYM, d)
    # 12 January days in one month (or year) file: their appends were compacted into one
    assert "compact" in set(store[name].versions(SYM, days[0])["operation"])
    # every day fresh right after, although they share (compacted) files
    for d in days:
        st = staleness(store, spec, SYM, d)
        assert not st.stale, (d, st.reasons)
    got = read(store, spec, SYM, require_fresh=True)
    pd.testing.assert_frame_equal(got, resample_bars(m1, freq)[list(OHLCV_COLUMNS)], check_freq=False)
    # each day's lineage names the 1-minute file it read (day 3's: the January file)
    lin = lineage(store, spec, SYM, days[3])
    assert lin["input_no"].tolist() == [-1, 0] and lin["input_partition"].iloc[1] == pd.Timestamp("2024-01-01", tz="UTC")
    # a correction of one day's 1-minute closes makes that day stale, not its file-mates
    clock.advance(60)
    fix = m1.loc["2024-01-22"].copy()
    fix["close"] *= 1.001
    store["ohlcv_1m"].insert(SYM, days[2], fix, reason="correction")
    assert [staleness(store, spec, SYM, d).stale for d in days] == [d == days[2] for d in days]
    # an interrupted materialise: output written, lineage not (the second commit never ran)
    clock.advance(60)
    redo = resample_bars(fix, freq, bar_freq="1min")[list(OHLCV_COLUMNS)]
    store[name].insert(SYM, days[2], redo, reason="written by hand")
    st = staleness(store, spec, SYM, days[2])
    assert st.stale and "differs from the output its lineage describes" in st.reasons[0]
    clock.advance(60)
    materialise(store, spec, SYM, days[2])
    assert not any(staleness(store, spec, SYM, d).stale for d in days)


def test_a_declared_column_is_all_that_can_make_an_output_stale(store, clock):
    m1 = synth_minutes(2)
    for d in ("2024-01-01", "2024-01-02"):
        store["ohlcv_1m"].insert(SYM, d, m1.loc[d], reason="backfill")
    bars = bars_spec("ohlcv_3m", "3min", builtin_schema("ohlcv_3m"))
    sma = Derived(
        name="sma_closes", schema=Schema("sma_closes", (Column("sma", "float64"),), key=("ts",)),
        inputs=(Source("ohlcv_3m", columns=("close",), lookback=pd.Timedelta("1h")),),
        compute=lambda b, *, start, end: indicator(b, "SMA", timeperiod=5).to_frame("sma"),
    )
    undeclared = Derived(
        name="sma_all", schema=Schema("sma_all", (Column("sma", "float64"),), key=("ts",)),
        inputs=(Source("ohlcv_3m", lookback=pd.Timedelta("1h")),),
        compute=lambda b, *, start, end: indicator(b, "SMA", timeperiod=5).to_frame("sma"),
    )
    day = pd.Timestamp("2024-01-02", tz="UTC")
    for d in ("2024-01-01", "2024-01-02"):
        materialise(store, bars, SYM, d)
    materialise(store, sma, SYM, day)
    materialise(store, undeclared, SYM, day)
    clock.advance(60)
    b = store["ohlcv_3m"].select(SYM, day, day + pd.Timedelta(days=1))
    b["high"] += 1.0  # the 3-minute highs change; the closes do not
    store["ohlcv_3m"].insert(SYM, day, b, reason="high corrected")
    assert not staleness(store, sma, SYM, day).stale
    st = staleness(store, undeclared, SYM, day)
    assert st.stale and "input 0 (ohlcv_3m/binance:ADA/BTC) changed" in st.reasons[0]
    b["close"] += 1.0
    store["ohlcv_3m"].insert(SYM, day, b, reason="close corrected")
    st = staleness(store, sma, SYM, day)
    assert st.stale and "(columns ['close']) changed" in st.reasons[0]


def test_names_never_clash_with_built_ins_silently():
    other = Schema("ohlcv_3m", tuple(Column(c, "float64") for c in OHLCV_COLUMNS), key=("ts",))  # day files
    with pytest.raises(ResearchError, match=r"'ohlcv_3m' is a built-in table .*month files.*day files"):
        bars_spec("ohlcv_3m", "3min", other)
    with pytest.raises(ResearchError, match="built-in table"):
        Derived(name="trades", schema=Schema("trades", (Column("price", "float64"),)), inputs=(Source("ohlcv_1m"),), compute=lambda b, **k: b)
    with pytest.raises(ResearchError, match="reserved for lineage tables"):
        Derived(name="lineage_x", schema=Schema("lineage_x", (Column("a", "float64"),)), inputs=(Source("ohlcv_1m"),), compute=lambda b, **k: b)
    assert not BARS_3M.builtin and bars_spec("ohlcv_3m", "3min", builtin_schema("ohlcv_3m")).builtin
