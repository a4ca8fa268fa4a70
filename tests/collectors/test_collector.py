"""The live collector against the simulated exchange over loopback, into a real store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pandas as pd
import pytest

from collectors.collector import Collector, CollectorConfig, CollectorError, load_config
from collectors.exchanges import binance as bn
from collectors.exchanges.binance import Channel, Market
from collectors.journal import JournalConfig, Position, RecordKind, read_records
from collectors.session import BackoffPolicy
from collectors.simulator import Simulator, SimulatorConfig
from tests.collectors.helpers import assert_nothing_lost, book_rows_after, sent_before_stop, wait_for_store, wait_until
from tickstore import Tickstore
from tickstore.layout import encode_symbol

SPOT, PERP = "binance:BTC/USDT", "binance:ETH/USDT:USDT"
SYMBOLS = (SPOT, PERP)
FAST = BackoffPolicy(initial_s=0.05, max_s=0.2)




@pytest.fixture
def sim():
    s = Simulator(SimulatorConfig(symbols=SYMBOLS, seed=3, trades_per_tick=3, liquidation_prob=0.2)).start()
    yield s
    s.stop()


def config(sim, tmp_path, **kw) -> CollectorConfig:
    kw.setdefault("flush_interval_s", 0.5)
    kw.setdefault("backoff", FAST)
    return CollectorConfig(
        store=str(tmp_path / "store"),
        journal=str(tmp_path / "journal"),
        symbols=SYMBOLS,
        endpoints={m: sim.endpoints(m) for m in (Market.SPOT, Market.USDM)},
        **kw,
    )


def gaps_of(store, symbol=None) -> pd.DataFrame:
    return store["gaps"].select(list(SYMBOLS) if symbol is None else symbol)


def test_clean_run_loses_nothing(sim, tmp_path):
    root = tmp_path / "store"
    with Collector(config(sim, tmp_path)) as c:
        wait_until(lambda: all(len(sim.sent.trade_ids[s]) > 50 for s in SYMBOLS), 60, "50 trades sent per pair")
        wait_for_store(root, lambda store: all(len(store["book"].select(s)) >= 15 for s in SYMBOLS)
                       and len(store["mark"].select(PERP)) >= 2 and len(store["liquidations"].select(PERP)) >= 1,
                       60, "book rows, marks and a liquidation stored")
        before_stop = sent_before_stop(sim, SYMBOLS, root)
    with Tickstore(tmp_path / "store") as store:
        for sym in SYMBOLS:
            stored = store["trades"].select(sym)["trade_id"].tolist()
            assert len(before_stop[sym]) > 50
            assert_nothing_lost(stored, before_stop[sym], sim.sent.trade_ids[sym], sym)
            assert stored == list(range(stored[0], stored[0] + len(stored)))  # contiguous, no duplicate
            book = store["book"].select(sym)
            assert len(book) >= 15 and (book["bid_px_1"] < book["ask_px_1"]).all()
            assert book.index.is_unique and (book.index.asi8 % 100_000_000 == 0).all()  # the 100 ms grid
        assert len(store["mark"].select(PERP)) >= 2
        assert len(store["liquidations"].select(PERP)) >= 1
        assert gaps_of(store).empty
    assert c.stats.malformed == c.stats.unknown_streams == c.stats.store_errors == 0
    assert c.stats.snapshots_fetched == 2


def test_dropped_connection_is_in_the_gap_ledger_and_the_book_resyncs(sim, tmp_path):
    with Collector(config(sim, tmp_path)) as c:
        wait_until(lambda: c.stats.rows["book"] > 10, 60, "book rows")
        sim.drop(Market.USDM)
        n = len(sim.sent.trade_ids[PERP])
        wait_until(lambda: len(sim.sent.trade_ids[PERP]) > n + 20, 60, "trades after the reconnect")
        wait_until(lambda: c.books[PERP].synced, 60, "the book synced again")
        wait_for_store(tmp_path / "store", lambda store: book_rows_after(store, PERP, "resync") >= 5, 60,
                       "5 book rows after the resync")
        before_stop = sent_before_stop(sim, [PERP], tmp_path / "store")[PERP]
    with Tickstore(tmp_path / "store") as store:
        gaps = gaps_of(store, PERP)
        drop = gaps[gaps["cause"] == "disconnect"]
        assert len(drop) == 1 and drop["stream"].iloc[0] == "*"
        resync = gaps[gaps["cause"] == "resync"]
        assert len(resync) == 1 and "resynced from snapshot" in resync["detail"].iloc[0]
        assert gaps_of(store, SPOT).empty  # the spot connection was not touched
        book = store["book"].select(PERP)
        assert (book.index > resync.index[0]).sum() >= 5  # collecting again after the gap
        trades = store["trades"].select(PERP)["trade_id"]
        assert_nothing_lost(trades, before_stop, sim.sent.trade_ids[PERP], PERP)  # everything sent intact arrived
    assert c.stats.snapshots_fetched == 3


def test_skipped_sequence_number_is_a_break_then_a_resync(sim, tmp_path):
    with Collector(config(sim, tmp_path)) as c:
        wait_until(lambda: c.stats.rows["book"] > 10, 60, "book rows")
        sim.skip_sequence(SPOT)
        wait_until(lambda: c.books[SPOT].stats.resyncs == 1, 60, "the resync")
        wait_for_store(tmp_path / "store", lambda store: book_rows_after(store, SPOT, "resync") >= 5, 60,
                       "5 book rows after the resync")
    with Tickstore(tmp_path / "store") as store:
        gaps = gaps_of(store, SPOT)
        assert list(gaps["cause"]) == ["sequence_break", "resync"]
        assert "expected U=" in gaps["detail"].iloc[0]
        assert gaps_of(store, PERP).empty
        book = store["book"].select(SPOT)
        assert (book.index > gaps.index[-1]).sum() >= 5
    assert c.stats.snapshots_fetched == 3


def test_malformed_frames_are_counted_ledgered_and_resynced(sim, tmp_path):
    # depth only, so the cut frame is certainly a diff: the lost update must be resynced
    cfg = config(sim, tmp_path, channels=(Channel.DEPTH,))
    with Collector(cfg) as c:
        wait_until(lambda: c.stats.rows["book"] > 10, 60, "book rows")
        sim.malformed(2, Market.USDM)
        wait_until(lambda: c.books[PERP].stats.resyncs >= 1, 60, "the resync")
        rows = c.stats.rows["book"]
        wait_until(lambda: c.stats.rows["book"] > rows + 5, 60, "book rows after it")
    assert c.stats.malformed == 2
    with Tickstore(tmp_path / "store") as store:
        gaps = gaps_of(store, PERP)
        causes = Counter(gaps["cause"])
        assert causes["malformed"] == 2 and causes["sequence_break"] >= 1 and causes["resync"] >= 1
        assert all("MalformedFrame" in d for d in gaps[gaps["cause"] == "malformed"]["detail"])


def test_watchdog_reconnects_a_stalled_feed(sim, tmp_path):
    # stale after 1 s (a stalled test process can take that long on a loaded machine: extra
    # stale gaps are allowed below), the feed stalled three times as long
    with Collector(config(sim, tmp_path, stale_after_s=1.0)) as c:
        wait_until(lambda: c.stats.rows["trades"] > 10, 60, "trades")
        sim.stall(3.0, Market.SPOT)
        wait_until(lambda: c.stats.gaps >= 1, 60, "a stale gap")
        n = len(sim.sent.trade_ids[SPOT])
        wait_until(lambda: len(sim.sent.trade_ids[SPOT]) > n + 10, 60, "trades after the stall")
        before_stop = sent_before_stop(sim, [SPOT], tmp_path / "store")[SPOT]
    with Tickstore(tmp_path / "store") as store:
        gaps = gaps_of(store, SPOT)
        assert "stale" in set(gaps["cause"])
        trades = store["trades"].select(SPOT)
    # The stall can outlast a second connection too; frames the simulator writes to a
    # connection the client is abandoning are sent but never read. Such losses are allowed
    # only inside a ledgered connection gap: the stored trades around them (ids are
    # contiguous) were received before the gap opened and after it closed.
    recv = pd.Series(trades["recv_ts"].to_numpy(), index=trades["trade_id"].to_numpy()).sort_index()
    conn_gaps = gaps[gaps["stream"] == "*"]
    for t in sorted(set(before_stop) - set(recv.index)):
        before, after = recv[recv.index < t], recv[recv.index > t]
        assert len(before) and len(after), f"trade {t} lost at an edge of the run"
        covered = (conn_gaps.index >= before.iloc[-1]) & (conn_gaps["end_ts"] <= after.iloc[0])
        assert covered.any(), f"trade {t} lost outside every connection gap: {conn_gaps}"
    assert_nothing_lost(trades["trade_id"], [t for t in before_stop if t in recv.index], sim.sent.trade_ids[SPOT], SPOT)


def _journaled(jdir) -> tuple[set, Counter]:
    """Trade ids and liquidation rows of every frame in a kept journal."""
    trades, liqs = set(), Counter()
    for rec in read_records(jdir):
        if rec.kind is not RecordKind.FRAME:
            continue
        market = Market(rec.tag.split("-")[0])
        try:
            events = bn.parse(rec.body, rec.recv_ns, market)
        except bn.BadFrame:
            continue
        for e in events:
            if type(e).__name__ == "Trade":
                trades.add((e.symbol, e.trade_id))
            elif type(e).__name__ == "Liquidation":
                liqs[(e.symbol, e.ts, e.recv_ns, e.side, e.price, e.qty)] += 1
    return trades, liqs


def _stored(root) -> tuple[list, Counter, pd.DataFrame]:
    with Tickstore(root) as store:
        trades = [(s, int(t)) for s in SYMBOLS for t in store["trades"].select(s)["trade_id"]]
        liqs = Counter()
        for s in SYMBOLS:
            df = store["liquidations"].select(s)
            for ts, row in df.iterrows():
                liqs[(s, ts.value, row["recv_ts"].value, int(row["side"]), row["price"], row["qty"])] += 1
        gaps = gaps_of(store)
    return trades, liqs, gaps


def test_crash_between_append_and_checkpoint_replays_without_duplicates(sim, tmp_path):
    cfg = config(sim, tmp_path, journal_options=JournalConfig(keep_committed=True))
    ckpt = tmp_path / "journal" / "checkpoint.json"
    with Collector(cfg) as c1:
        wait_until(ckpt.exists, 60, "a first checkpoint")
        shutil.copy(ckpt, tmp_path / "old-checkpoint.json")
        # a keyless gap row in the window that will be replayed, after frames of its connection
        # (processed after the copy, so past the copied checkpoint): the gap starts at the
        # frame before it, which the replay sees too
        def perp_events(kind=None) -> int:
            return sum(st["events"] for st in c1.status()["streams"] if st["symbol"] == PERP and kind in (None, st["kind"]))

        n, liqs = perp_events(), perp_events("Liquidation")
        wait_until(lambda: perp_events() >= n + 3, 60, "perp frames past the copied checkpoint")
        sim.malformed(1, Market.USDM)
        wait_until(lambda: c1.stats.malformed == 1, 60, "the malformed frame")
        # and a liquidation in the window (keyless: the replay must reconcile it, not store it again)
        wait_until(lambda: perp_events("Liquidation") > liqs, 60, "a liquidation past the copied checkpoint")
        n = c1.stats.flushes
        wait_until(lambda: c1.stats.flushes >= n + 2, 60, "it and later rows stored and checkpointed")
    # As if the process died after its last appends but before their checkpoints:
    shutil.copy(tmp_path / "old-checkpoint.json", ckpt)
    before = _stored(tmp_path / "store")
    c2 = Collector(cfg)
    c2._open()
    assert c2._catch_up()  # the restart's replay + reconciling flushes, without connecting
    c2._close()
    after = _stored(tmp_path / "store")
    assert c2.stats.replayed > 0 and c2.stats.rows_reconciled > 0
    assert sorted(after[0]) == sorted(before[0]) and len(set(after[0])) == len(after[0])
    assert after[1] == before[1]  # liquidations: no key, reconciled row by row
    assert not after[2].reset_index().duplicated().any()
    # the books continue from <journal>/books.json (written before each checkpoint, so newer
    # than the old one): the replayed records they already hold are skipped, no book is lost,
    # no gap is written, and each book is exactly where the first process left it
    new = after[2][~after[2].reset_index().apply(tuple, axis=1).isin(before[2].reset_index().apply(tuple, axis=1)).to_numpy()]
    assert new.empty
    for sym, b in c2.books.items():
        old = c1.books[sym]
        assert b.synced and (b.update_id, b.top(1000), b.depth()) == (old.update_id, old.top(1000), old.depth()), sym
    # without the state file a restart cannot apply the replayed diffs: a resync gap says so
    (tmp_path / "journal" / "books.json").unlink()
    shutil.copy(tmp_path / "old-checkpoint.json", ckpt)
    c3 = Collector(cfg)
    c3._open()
    assert c3._catch_up()
    c3._close()
    with Tickstore(tmp_path / "store") as store:
        lost = gaps_of(store)
    lost = lost[lost["detail"].str.contains("book state lost at restart")]
    assert sorted(lost["symbol"]) == sorted(s for s, b in c3.books.items() if not b.synced) != []
    journaled_trades, journaled_liqs = _journaled(tmp_path / "journal")
    assert set(after[0]) == journaled_trades and after[1] == journaled_liqs


def _toml(sim, tmp_path) -> str:
    spot, usdm = sim.endpoints(Market.SPOT), sim.endpoints(Market.USDM)
    path = tmp_path / "collect.toml"
    path.write_text(
        f"""
[collector]
store = "{tmp_path / 'store'}"
journal = "{tmp_path / 'journal'}"
symbols = ["{SPOT}", "{PERP}"]
flush_interval_s = 1.0

[backoff]
initial_s = 0.05
max_s = 0.2

[journal]
keep_committed = true

[endpoints.spot]
ws = "{spot.ws}"
rest = "{spot.rest}"

[endpoints.usdm]
ws = "{usdm.ws}"
rest = "{usdm.rest}"
"""
    )
    return str(path)


def _spawn(cfg_path: str) -> subprocess.Popen:
    code = "import sys; from collectors.cli import collect; collect(sys.argv[1:])"
    return subprocess.Popen(
        [sys.executable, "-c", code, "--config", cfg_path, "--log-level", "WARNING"],
        cwd=os.getcwd(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _kill_while_records_are_pending(proc, jdir, timeout: float = 60.0) -> None:
    """SIGKILL ``proc`` at a moment its journal holds records past its checkpoint. It is
    stopped (SIGSTOP) while the journal is looked at, so no flush commits them between the
    look and the kill, however slow the machine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.send_signal(signal.SIGSTOP)
        doc = json.loads((jdir / "checkpoint.json").read_bytes())
        if next(read_records(jdir, after=Position(doc["segment"], doc["offset"])), None) is not None:
            proc.send_signal(signal.SIGKILL)
            return
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError(f"no journal record past the checkpoint within {timeout} s")


def test_kill_9_then_restart_leaves_a_complete_store_without_duplicates(sim, tmp_path):
    cfg_path = _toml(sim, tmp_path)
    jdir = tmp_path / "journal"
    proc = _spawn(cfg_path)
    try:
        wait_until(lambda: (jdir / "checkpoint.json").exists(), 60, "the first checkpoint")
        sim.malformed(1, Market.USDM)
        wait_for_store(tmp_path / "store", lambda store: (gaps_of(store)["cause"] == "malformed").any(), 60,
                       "the malformed frame's gap stored")
        _kill_while_records_are_pending(proc, jdir)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    proc = _spawn(cfg_path)
    try:
        n = len(sim.sent.trade_ids[PERP])
        wait_until(lambda: len(sim.sent.trade_ids[PERP]) > n + 30, 60, "collection after the restart")
        sent_before_stop(sim, SYMBOLS, tmp_path / "store")  # the restarted process is collecting
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"stopped:" in out
    replayed = int(out.split(b"'replayed': ")[1].split(b",")[0])
    assert replayed > 0  # the restart did replay records the killed process had not committed
    trades, liqs, gaps = _stored(tmp_path / "store")
    journaled_trades, journaled_liqs = _journaled(jdir)
    assert len(trades) == len(set(trades))
    assert set(trades) == journaled_trades  # every journaled frame made it, once
    assert liqs == journaled_liqs
    assert not gaps.reset_index().duplicated().any()
    restart = gaps[(gaps["cause"] == "disconnect") & gaps["detail"].str.contains("restart")]
    assert sorted(restart["symbol"]) == sorted(SYMBOLS)  # the downtime is in the ledger
    assert (gaps["cause"] == "malformed").sum() == 1
    # the checkpoint reached the end of the journal: nothing left to replay
    from collectors.journal import Journal

    with Journal(jdir) as j:
        assert list(j.pending()) == []


def test_config_file_errors_name_the_field(tmp_path):
    def check(text: str, match: str):
        p = tmp_path / "c.toml"
        p.write_text(text)
        with pytest.raises(CollectorError, match=match):
            load_config(p)

    base = '[collector]\nstore = "/tmp/x"\nsymbols = ["binance:BTC/USDT"]\n'
    check('[collector]\nsymbols = ["binance:BTC/USDT"]\n', r"collector\.store: missing")
    check(base + 'channels = ["trades", "candles"]\n', r"collector\.channels: unknown \['candles'\]")
    check(base + "flush_interval_s = \"2\"\n", r"collector\.flush_interval_s: expected a number, got '2'")
    check(base + "flush_interval_s = -1\n", r"flush_interval_s must be > 0, got -1")
    check(base + "[book]\ndepth = 5\n", r"book\.depth: unknown key")
    check(base + "[books]\n", r"\[books\]: unknown section")
    check(base + "[journal]\nfsync = \"sometimes\"\n", r"journal\.fsync: must be one of \['every', 'interval', 'never'\], got 'sometimes'")
    check(base + "[endpoints.futures]\nws = \"ws://x\"\n", r"\[endpoints\.futures\]: unknown market")
    check('[collector]\nstore = "/x"\nsymbols = ["binance:BTC/NOPE:XYZ"]\n', r"symbols: .*settle 'XYZ'")
    check("[collector\n", r"not valid TOML")
    cfg = load_config("collectors/configs/binance_btc_eth.toml", overrides={"store": str(tmp_path / "s")})
    assert cfg.symbols == ("binance:BTC/USDT", "binance:ETH/USDT", "binance:BTC/USDT:USDT", "binance:ETH/USDT:USDT")
    assert cfg.store == str(tmp_path / "s") and cfg.endpoints == {}


def test_collector_config_validates_values(tmp_path):
    with pytest.raises(CollectorError, match=r"symbols must be a non-empty list"):
        CollectorConfig(store=str(tmp_path), symbols=())
    with pytest.raises(CollectorError, match=r"book_levels must be in 1\.\.500, got 0"):
        CollectorConfig(store=str(tmp_path), symbols=(SPOT,), book_levels=0)
    with pytest.raises(CollectorError, match=r"streams_per_connection must be <= 1024"):
        CollectorConfig(store=str(tmp_path), symbols=(SPOT,), streams_per_connection=2000)


def test_streams_are_split_across_connections(tmp_path):
    cfg = CollectorConfig(store=str(tmp_path / "s"), symbols=SYMBOLS + ("binance:BTC/USDT:USDT",), streams_per_connection=5)
    c = Collector(cfg)
    tags = {tag: syms for tag, _, syms in c._session_specs}
    assert tags == {"spot-0": (SPOT,), "usdm-0": (PERP,), "usdm-1": ("binance:BTC/USDT:USDT",)}
    assert all(len(c._streams[t]) <= 5 for t in tags)


def test_demo_refuses_a_store_it_did_not_make(tmp_path):
    from collectors.demo import DEMO_MARKER, run_demo

    real = tmp_path / "ticks"
    with Tickstore(real) as store:
        idx = pd.DatetimeIndex([pd.Timestamp("2024-03-01 00:00:01", tz="UTC")], name="ts")
        store["trades"].append(PERP, pd.DataFrame({"recv_ts": idx, "trade_id": [1], "price": [1.0], "qty": [1.0], "side": [1]},
                                                  index=idx).astype({"side": "int8"}))
    before = sorted(str(p) for p in real.rglob("*"))
    with pytest.raises(CollectorError, match="not empty and was not made by tickstore demo"):
        run_demo(real, seconds=1)
    assert sorted(str(p) for p in real.rglob("*")) == before  # nothing written
    assert not (tmp_path / "ticks-journal").exists()
    report = run_demo(tmp_path / "demo", seconds=1, faults=False)  # a new folder: made, marked
    assert (tmp_path / "demo" / DEMO_MARKER).exists()
    again = run_demo(tmp_path / "demo", seconds=1, faults=False)  # its own store: allowed, and it adds to it
    # how many rows a run of wall-clock seconds collects depends on the machine's load; that
    # nothing of the first run is lost when the second one writes into the same store does not
    assert all(again.rows[t] >= n for t, n in report.rows.items())


# -- a stop closes the partitions it wrote ----------------------------------------------------
def _segments(root) -> Counter:
    """Data files on disk per (table, partition folder, symbol)."""
    out = Counter()
    for p in root.rglob("*.h5"):
        rel = p.relative_to(root)
        if "_index" not in rel.parts and not p.name.startswith("."):
            out[(rel.parts[0], str(rel.parent), p.name.rsplit("_", 1)[0])] += 1
    return out


def _run_until_segments_pile_up(sim, tmp_path):
    """A collector flushing every 0.1 s until some partition holds several live segments;
    returns (collector still running, a reader, an earlier knowledge time, every table's
    frames as of it, trade ids sent before the stop)."""
    c = Collector(config(sim, tmp_path, flush_interval_s=0.1)).start()
    root = tmp_path / "store"
    wait_until(lambda: max(_segments(root).values(), default=0) >= 3 and c.stats.rows["book"] > 5, 60, "live segments")
    reader = Tickstore(root)
    at = reader.now()
    seen = {(t, s): reader[t].select(s, as_of=at) for t in ("trades", "book", "quotes") for s in SYMBOLS}
    n = c.stats.flushes
    wait_until(lambda: c.stats.flushes >= n + 3, 60, "flushes after the as-of time")
    return c, reader, at, seen, sent_before_stop(sim, SYMBOLS, root)


def test_a_stopped_collector_leaves_each_partition_it_wrote_one_file(sim, tmp_path):
    """Issue 8: a collector's stop closes its partitions (the size-tier merges of a live
    day leave a few files per tier; a stop merges them into one), as-of reads unchanged."""
    root = tmp_path / "store"
    c, reader, at, seen, before_stop = _run_until_segments_pile_up(sim, tmp_path)
    c.stop()
    files = _segments(root)
    assert set(files.values()) == {1}, {k: n for k, n in files.items() if n > 1}
    assert c.stats.partitions_closed >= 1 and c.stats.store_errors == 0
    assert {(t, s) for t, _, s in files} >= {("trades", "binance@BTC+USDT"), ("book", "binance@ETH+USDT@USDT")}
    with Tickstore(root) as store:
        assert store.verify().ok
        for (t, s), frame in seen.items():
            pd.testing.assert_frame_equal(store[t].select(s, as_of=at), frame)  # the merge changed no as-of answer
        for sym in SYMBOLS:
            assert_nothing_lost(store["trades"].select(sym)["trade_id"].tolist(), before_stop[sym], sim.sent.trade_ids[sym], sym)
            assert store["book"].select(sym).index.is_unique
    reader.close()


def test_a_store_failing_at_the_stop_leaves_the_segments_and_loses_nothing(sim, tmp_path, monkeypatch):
    """Closing is housekeeping: if the merge fails (a full disk), the stop still returns,
    the rows stay committed in their segments, and the next run's writes close them."""
    import errno

    from tickstore import compaction
    from tickstore.errors import StorageError

    root = tmp_path / "store"
    c, reader, at, seen, before_stop = _run_until_segments_pile_up(sim, tmp_path)
    real_merge = compaction.merge

    def full_disk(table, symbol, part, entries):
        raise StorageError(f"{table.name} {symbol}: writing the merged file: [Errno 28] No space left on device",
                           path=root, errno=errno.ENOSPC)

    monkeypatch.setattr(compaction, "merge", full_disk)
    c.stop()
    monkeypatch.setattr(compaction, "merge", real_merge)
    assert c.stats.partitions_closed == 0 and c.stats.store_errors == 1
    assert max(_segments(root).values()) > 1  # left as they were
    with Tickstore(root) as store:
        assert store.verify().ok
        for (t, s), frame in seen.items():
            pd.testing.assert_frame_equal(store[t].select(s, as_of=at), frame)
        for sym in SYMBOLS:
            assert_nothing_lost(store["trades"].select(sym)["trade_id"].tolist(), before_stop[sym], sim.sent.trade_ids[sym], sym)
    # the next run (the disk has room again) closes what it writes to at its stop
    keys = {(t, s) for t in ("trades", "book") for s in SYMBOLS}
    with Collector(config(sim, tmp_path, flush_interval_s=0.1)) as c2:
        wait_until(lambda: keys <= c2.writer.written, 60, "trades and book rows of the second run")
    names = {(t, encode_symbol(s)) for t, s in keys}
    assert all(n == 1 for (t, _, s), n in _segments(root).items() if (t, s) in names), _segments(root)
    assert c2.stats.partitions_closed >= len(keys)
    reader.close()
