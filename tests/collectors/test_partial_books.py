"""Partial-book recorders against the simulator: a config of only ``depth5@100ms`` for 44
USD-M pairs (what a high-frequency desk's recorder subscribes) stores every frame as a
book row at its exchange time; ``partial_book_rows="grid"`` samples them onto the grid.

The expected rows are an independent parse of the frames the collector journaled (orjson
and the frame fields, no collectors code).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import orjson
import pandas as pd
import pytest

from collectors.collector import Collector, CollectorConfig
from collectors.exchanges.binance import Channel, Market
from collectors.journal import JournalConfig, RecordKind, read_records
from collectors.session import BackoffPolicy
from collectors.simulator import Simulator, SimulatorConfig
from tests.collectors.helpers import wait_for_store, wait_until
from tickstore import Tickstore

BASES = (
    "BTC ETH BNB SOL XRP DOGE ADA AVAX LINK DOT LTC BCH TRX ATOM UNI ETC FIL APT ARB OP NEAR AAVE "
    "SUI INJ SEI TIA WLD FTM SAND MANA AXS GALA CRV LDO DYDX RUNE STX IMX ICP HBAR XLM VET ALGO EOS"
).split()
PAIRS = tuple(f"binance:{b}/USDT:USDT" for b in BASES)
FAST = BackoffPolicy(initial_s=0.05, max_s=0.2, jitter=0.0)
MS = 1_000_000


def _journaled_partials(journal_dir) -> dict[str, list[dict]]:
    """Every depth5 frame the collector received, per tickstore symbol, in receive order."""
    out = defaultdict(list)
    for rec in read_records(journal_dir):
        if rec.kind is not RecordKind.FRAME:
            continue
        msg = orjson.loads(rec.body)
        if "stream" in msg and "@depth5" in msg["stream"]:
            d = msg["data"]
            out[f"binance:{d['s'][:-4]}/USDT:USDT"].append({**d, "recv_ns": rec.recv_ns})
    return out


def _run(tmp_path, sim, symbols, rows: int, **kw) -> CollectorConfig:
    """A collector run until the store holds at least ``rows`` book rows of every symbol."""
    cfg = CollectorConfig(
        store=str(tmp_path / "store"), journal=str(tmp_path / "journal"), symbols=symbols,
        channels=(Channel.BOOK5,), endpoints={Market.USDM: sim.endpoints(Market.USDM)}, flush_interval_s=0.5,
        backoff=FAST, journal_options=JournalConfig(keep_committed=True), **kw,
    )
    with Collector(cfg) as c:
        assert c.books and all(b.rows == kw.get("partial_book_rows", "frames") for b in c.books.values())
        wait_until(lambda: sim.sent.frames > len(symbols) * 10, 60, "partial-book frames for every pair")
        wait_for_store(cfg.store, lambda store: all(len(store["book"].select(s)) >= rows for s in symbols), 120,
                       f"{rows} book rows of every pair stored")
    return cfg


def _levels(side) -> tuple[list, list]:
    px = [float(p) for p, _ in side] + [np.nan] * (5 - len(side))
    qty = [float(q) for _, q in side] + [np.nan] * (5 - len(side))
    return px, qty


def test_44_pairs_of_depth5_at_100ms_store_every_frame_at_its_exchange_time(tmp_path):
    sim = Simulator(SimulatorConfig(symbols=PAIRS, seed=11, trades_per_tick=0.5, liquidation_prob=0.0)).start()
    try:
        cfg = _run(tmp_path, sim, PAIRS, 10)
    finally:
        sim.stop()
    frames = _journaled_partials(cfg.journal_dir)
    assert sorted(frames) == sorted(PAIRS)
    with Tickstore(cfg.store) as store:
        assert store["book"].symbols() == sorted(PAIRS)
        for sym in PAIRS:
            got = store["book"].select(sym)
            want = frames[sym]
            assert len(got) == len(want) >= 10, sym  # one row per frame, none lost, none made up
            assert got.index.asi8.tolist() == [d["E"] * MS for d in want]  # the frame's exchange time
            assert got["update_id"].tolist() == [d["u"] for d in want]
            assert got["recv_ts"].array.asi8.tolist() == [d["recv_ns"] for d in want]
            for i in (0, len(want) // 2, len(want) - 1):
                bp, bq = _levels(want[i]["b"])
                ap, aq = _levels(want[i]["a"])
                row = got.iloc[i]
                np.testing.assert_array_equal(row[[f"bid_px_{k}" for k in range(1, 6)]].to_numpy(float), bp)
                np.testing.assert_array_equal(row[[f"bid_qty_{k}" for k in range(1, 6)]].to_numpy(float), bq)
                np.testing.assert_array_equal(row[[f"ask_px_{k}" for k in range(1, 6)]].to_numpy(float), ap)
                np.testing.assert_array_equal(row[[f"ask_qty_{k}" for k in range(1, 6)]].to_numpy(float), aq)
            # 100 ms apart, as the stream is paced
            assert (np.diff(got.index.asi8) == 100 * MS).all(), sym
        assert store["gaps"].symbols() == []  # nothing was missed, nothing to resync


def test_partial_books_on_the_grid_when_configured(tmp_path):
    pairs = PAIRS[:2]
    sim = Simulator(SimulatorConfig(symbols=pairs, seed=5, trades_per_tick=0.5, liquidation_prob=0.0)).start()
    try:
        cfg = _run(tmp_path, sim, pairs, 3, partial_book_rows="grid", book_interval_ms=250)
    finally:
        sim.stop()
    frames = _journaled_partials(cfg.journal_dir)
    with Tickstore(cfg.store) as store:
        for sym in pairs:
            got = store["book"].select(sym)
            e = np.array([d["E"] * MS for d in frames[sym]])
            assert len(got) >= 3 and (got.index.asi8 % (250 * MS) == 0).all()
            for g, row in zip(got.index.asi8, got.itertuples()):
                i = int(np.searchsorted(e, g, side="right")) - 1  # the last frame at or before the grid point
                assert i >= 0 and row.update_id == frames[sym][i]["u"]
                assert row.bid_px_1 == float(frames[sym][i]["b"][0][0])


def test_partial_channels_are_checked_and_named_by_their_stream(tmp_path):
    from collectors.config import CollectorError, load_config

    with pytest.raises(CollectorError, match=r"\['book5'\] carry 5 levels, fewer than book_levels=10"):
        CollectorConfig(store=str(tmp_path), symbols=PAIRS[:1], channels=(Channel.BOOK5,), book_levels=10)
    with pytest.raises(CollectorError, match="partial_book_rows must be 'frames', 'grid' or 'both'"):
        CollectorConfig(store=str(tmp_path), symbols=PAIRS[:1], channels=(Channel.BOOK5,), partial_book_rows="all")
    with pytest.raises(CollectorError, match=r"none of \['book5_500ms'\] exists for binance spot symbol 'binance:BTC/USDT'"):
        CollectorConfig(store=str(tmp_path / "s"), symbols=("binance:BTC/USDT",), channels=(Channel.BOOK5_500MS,))
    p = tmp_path / "desk.toml"
    p.write_text(
        '[collector]\nstore = "%s"\nsymbols = %s\nchannels = ["depth5@100ms"]\n[book]\npartial_rows = "both"\n'
        % (tmp_path / "store", list(PAIRS))
    )
    cfg = load_config(p)
    assert cfg.channels == (Channel.BOOK5,) and cfg.partial_book_rows == "both" and len(cfg.symbols) == 44
