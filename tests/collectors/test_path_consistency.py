"""A replay of the collector's journal stores exactly what the collector stored.

Against the simulator on 127.0.0.1 (the real Binance wire protocol): a config of partial
books only (``depth5@100ms``: a row per frame by default, ``partial_book_rows``), on the
grid when configured, and diff books with ``keep_diffs`` (``book_diffs`` rows with their
ordinal in the diff). The journal is then replayed into a second store with the same
options and every table is compared.
"""

from __future__ import annotations


import pandas as pd
import pandas.testing as pdt
import pytest

from collectors.collector import Collector, CollectorConfig
from collectors.exchanges.binance import Channel, Market
from collectors.journal import JournalConfig
from collectors.replay import ReplayError, replay
from collectors.session import BackoffPolicy
from collectors.simulator import Simulator, SimulatorConfig
from tests.collectors.helpers import wait_for_store, wait_until
from tickstore import Tickstore

PAIRS = ("binance:BTC/USDT:USDT", "binance:ETH/USDT:USDT")
FAST = BackoffPolicy(initial_s=0.05, max_s=0.2, jitter=0.0)


def _collect(tmp_path, channels, rows: dict, pairs=PAIRS, market=Market.USDM, **kw) -> CollectorConfig:
    """A collector run until the live store holds at least ``rows[table]`` rows of each pair."""
    sim = Simulator(SimulatorConfig(symbols=pairs, seed=3, trades_per_tick=0.5, liquidation_prob=0.0)).start()
    try:
        cfg = CollectorConfig(
            store=str(tmp_path / "live"), journal=str(tmp_path / "journal"), symbols=pairs, channels=channels,
            endpoints={market: sim.endpoints(market)}, flush_interval_s=0.5, backoff=FAST,
            journal_options=JournalConfig(keep_committed=True), **kw,
        )
        with Collector(cfg):
            wait_until(lambda: sim.sent.frames > 40, 60, "frames for both pairs")
            wait_for_store(cfg.store, lambda store: all(len(store[t].select(s)) >= n for t, n in rows.items() for s in pairs),
                           120, f"{rows} rows stored per pair")
    finally:
        sim.stop()
    return cfg


def _same_tables(live_root, replayed_root, tables, pairs=PAIRS):
    with Tickstore(live_root) as live, Tickstore(replayed_root) as again:
        for table in tables:
            for sym in pairs:
                a, b = live[table].select(sym), again[table].select(sym)
                assert len(a) > 0, (table, sym)
                pdt.assert_frame_equal(b, a, check_freq=False, obj=f"{table} {sym}")


@pytest.mark.parametrize("rows", ["frames", "grid", "both"])
def test_replay_of_a_partial_book_journal_equals_the_collector(tmp_path, rows):
    kw = {} if rows == "frames" else {"partial_book_rows": rows}  # "frames": both defaults
    cfg = _collect(tmp_path, (Channel.BOOK5,), {"book": 3}, book_interval_ms=250, **kw)
    with Tickstore(tmp_path / "replayed") as store:
        report = replay([cfg.journal_dir], store=store, book_interval_ms=250, **kw)
    assert report.rows["book"] > 0
    _same_tables(cfg.store, tmp_path / "replayed", ["book"])


@pytest.mark.parametrize("market", [Market.USDM, Market.SPOT])
def test_tickstore_replay_of_a_partial_book_capture_stores_what_the_collector_stored(tmp_path, market):
    """The frames the collector received (``depth5@100ms`` and trades), written as an
    hftbacktest capture (``<recv_ns> <frame>``: what a recorder of the same streams keeps)
    and given to ``tickstore replay`` with its defaults: book and trades equal the
    collector's, row for row. Futures partial books carry ``E`` (a row per frame at it);
    spot ones carry no time and are stored at their receive time on both paths."""
    import gzip
    import os
    import subprocess
    import sys

    from collectors.journal import RecordKind, read_records

    pairs = PAIRS if market is Market.USDM else ("binance:BTC/USDT", "binance:ETH/USDT")
    cfg = _collect(tmp_path, (Channel.BOOK5, Channel.TRADES), {"book": 6, "trades": 1}, pairs=pairs, market=market)
    capture = tmp_path / f"partial_{market.value}.gz"
    with gzip.open(capture, "wb") as out:
        for rec in read_records(cfg.journal_dir):
            if rec.kind is RecordKind.FRAME:
                out.write(b"%d %s\n" % (rec.recv_ns, rec.body))
    cli = [sys.executable, "-m", "tickstore.cli", "replay", str(capture), "--root", str(tmp_path / "replayed")]
    res = subprocess.run(cli, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert res.returncode == 0, res.stderr
    _same_tables(cfg.store, tmp_path / "replayed", ["book", "trades"], pairs)
    with Tickstore(cfg.store) as live, Tickstore(tmp_path / "replayed") as again:
        assert sorted(again.tables()) == sorted(live.tables())
        for sym in pairs:  # a row per frame: as many rows as depth5 frames were received
            frames = [r for r in read_records(cfg.journal_dir) if r.kind is RecordKind.FRAME and b"@depth5" in r.body
                      and sym.split(":")[1].replace("/", "").lower().encode() in r.body[:40]]
            assert len(again["book"].select(sym)) == len(frames) > 5, sym


def test_replay_of_a_diff_journal_with_keep_diffs_equals_the_collector(tmp_path):
    cfg = _collect(tmp_path, (Channel.DEPTH, Channel.TRADES), {"book": 3, "book_diffs": 10, "trades": 1}, keep_diffs=True)
    with Tickstore(cfg.store) as live:
        diffs = live["book_diffs"].select(PAIRS[0])
        # each diff's rows carry their position in it: 0, 1, 2, ... per (update id)
        per_diff = diffs.groupby(["update_id"], sort=False)["ordinal"]
        assert (per_diff.transform(lambda o: list(range(len(o))) == o.tolist()).all())
    with Tickstore(tmp_path / "replayed") as store:
        replay([cfg.journal_dir], store=store, keep_diffs=True)
        again = replay([cfg.journal_dir], store=store, keep_diffs=True)
        assert again.rows.get("book_diffs", 0) == 0  # idempotent
    _same_tables(cfg.store, tmp_path / "replayed", ["book", "book_diffs", "trades"])


def test_partial_book_rows_is_checked(tmp_path, data_dir):
    with Tickstore(tmp_path / "s") as store, pytest.raises(ReplayError, match="partial_book_rows must be"):
        replay([data_dir / "hftbacktest/usdm/btcusdt_20240808.gz"], store=store, partial_book_rows="all")


def _depth5_frame(native: str, e_ms: int, u: int, mid: float) -> bytes:
    """A USD-M ``<symbol>@depth5@100ms`` frame as Binance documents it (Partial Book Depth
    Streams: e, E, T, s, U, u, pu, b, a)."""
    import orjson

    side = [[f"{mid - 0.5 * (i + 1):.1f}", "1.000"] for i in range(5)], [[f"{mid + 0.5 * (i + 1):.1f}", "2.000"] for i in range(5)]
    return orjson.dumps({"stream": f"{native.lower()}@depth5@100ms", "data": {
        "e": "depthUpdate", "E": e_ms, "T": e_ms - 1, "s": native, "U": u - 3, "u": u, "pu": u - 4, "b": side[0], "a": side[1]}})


@pytest.mark.parametrize("backlog", [8, 61, 100_000])
def test_book_rows_do_not_depend_on_when_the_collector_flushed(tmp_path, backlog):
    """A quiet book gets its grid rows from the market's grid clock (``flush_horizon`` of the
    newest depth time), a function of the data: the collector catching up on a journal with
    flushes every ``backlog`` rows stores the same book rows as a replay of that journal.
    (The collector used to flush quiet books up to the newest depth time at each flush, the
    replay 1 s behind every second: with ETH quiet while BTC went on, how many ETH rows the
    collector stored depended on when its flushes ran.)"""
    from collectors.exchanges.binance import Endpoints
    from collectors.journal import Journal, RecordKind

    t0 = 1_780_000_000_000  # ms
    with Journal(tmp_path / "journal") as j:
        for i in range(60):  # 6 s of BTC every 100 ms; ETH only in the first 2.45 s
            e = t0 + 100 * i + 3
            j.append(RecordKind.FRAME, _depth5_frame("BTCUSDT", e, 1_000 + 10 * i, 60_000 + i), recv_ns=(e + 4) * 1_000_000, tag="usdm-0")
            if i < 25:
                j.append(RecordKind.FRAME, _depth5_frame("ETHUSDT", e + 1, 5_000 + 10 * i, 3_000 - i), recv_ns=(e + 5) * 1_000_000, tag="usdm-0")
    dead = Endpoints("ws://127.0.0.1:9", "http://127.0.0.1:9", "/fapi/v1/depth")  # nothing listens: no live frame
    cfg = CollectorConfig(
        store=str(tmp_path / "live"), journal=str(tmp_path / "journal"), symbols=PAIRS, channels=(Channel.BOOK5,),
        endpoints={Market.USDM: dead}, flush_interval_s=0.5, backoff=FAST, book_interval_ms=250,
        partial_book_rows="grid", max_backlog_rows=backlog, journal_options=JournalConfig(keep_committed=True),
    )
    with Collector(cfg):
        pass
    with Tickstore(tmp_path / "replayed") as store:
        replay([cfg.journal_dir], store=store, book_interval_ms=250, partial_book_rows="grid")
    _same_tables(cfg.store, tmp_path / "replayed", ["book"])
    with Tickstore(cfg.store) as live:
        eth = live["book"].select(PAIRS[1])
        # ETH's grid runs past its last frame (2.404 s) up to the horizon of BTC's newest
        # depth time (5.903 s - 1 s, in whole seconds: 4 s), never further
        assert eth.index[-1] == pd.Timestamp(t0 + 3_750, unit="ms", tz="UTC")
