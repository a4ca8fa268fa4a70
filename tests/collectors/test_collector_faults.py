"""Faults are inputs: store failures, poison frames, a full journal disk, a damaged journal.

Every test runs the real collector against the simulated Binance on 127.0.0.1 into a real
store and ends by checking that every frame journaled (kept: ``keep_committed``) is in the
store exactly once - trades by id, liquidations and gap rows as multisets - or in the
quarantine with its reason, and that every trade the simulator sent intact before the
stop was stored. Waits are on conditions, never on timing.
"""

from __future__ import annotations

import errno
import json
import shutil
from collections import Counter

import pandas as pd
import pytest
from click.testing import CliRunner

from collectors import journal as jmod
from collectors.cli import journal as journal_cli
from collectors.collector import Collector, CollectorConfig
from collectors.exchanges import BadFrame
from collectors.exchanges.binance import BinanceParser, Channel, Market
from collectors.journal import Journal, JournalConfig, JournalCorruptionError, RecordKind, read_records
from collectors.quarantine import read_quarantine
from collectors.session import BackoffPolicy
from collectors.simulator import Simulator, SimulatorConfig
from collectors.status import status_frame
from tests.collectors.faults import FAULTS, POISON, FaultyStore
from tests.collectors.helpers import sent_before_stop, wait_until
from tickstore import Tickstore

SPOT, PERP = "binance:BTC/USDT", "binance:ETH/USDT:USDT"
SYMBOLS = (SPOT, PERP)
FAST = BackoffPolicy(initial_s=0.05, max_s=0.2)


@pytest.fixture
def sim():
    s = Simulator(SimulatorConfig(symbols=SYMBOLS, seed=11, trades_per_tick=3, liquidation_prob=0.3)).start()
    yield s
    s.stop()


def config(sim, tmp_path, **kw) -> CollectorConfig:
    kw.setdefault("flush_interval_s", 0.3)
    kw.setdefault("backoff", FAST)
    kw.setdefault("stop_retry_s", 10.0)
    kw.setdefault("store_retry_max_s", 1.0)
    kw.setdefault("journal_options", JournalConfig(keep_committed=True))
    return CollectorConfig(
        store=str(tmp_path / "store"), journal=str(tmp_path / "journal"), symbols=SYMBOLS,
        endpoints={m: sim.endpoints(m) for m in (Market.SPOT, Market.USDM)}, **kw,
    )


def journaled(jdir) -> tuple[set, Counter, list]:
    """(trade keys, liquidation rows, refused frame bodies) of every frame in a kept journal."""
    parsers, trades, liqs, refused = {}, set(), Counter(), []
    for rec in read_records(jdir):
        if rec.kind is not RecordKind.FRAME:
            continue
        p = parsers.setdefault(rec.tag, BinanceParser(Market(rec.tag.split("-")[0])))
        try:
            events = p.parse(rec.body, rec.recv_ns)
        except BadFrame:
            refused.append(rec.body)
            continue
        for e in events:
            if type(e).__name__ == "Trade":
                trades.add((e.symbol, e.trade_id))
            elif type(e).__name__ == "Liquidation":
                liqs[(e.symbol, e.ts, e.recv_ns, e.side, e.price, e.qty)] += 1
    return trades, liqs, refused


def stored(root) -> tuple[list, Counter, pd.DataFrame]:
    with Tickstore(root) as store:
        trades = [(s, int(t)) for s in SYMBOLS for t in store["trades"].select(s)["trade_id"]]
        liqs = Counter()
        for s in SYMBOLS:
            for ts, row in store["liquidations"].select(s).iterrows():
                liqs[(s, ts.value, row["recv_ts"].value, int(row["side"]), row["price"], row["qty"])] += 1
        gaps = store["gaps"].select(list(SYMBOLS))
    return trades, liqs, gaps


def assert_exactly_once(tmp_path, before_stop: dict, *, quarantined_ids=frozenset(), in_gaps: bool = False) -> None:
    """Everything journaled is stored once (or quarantined); everything sent intact arrived
    (``in_gaps``: or was lost on a connection that went down, inside its ledgered gap)."""
    trades, liqs, gaps = stored(tmp_path / "store")
    want_trades, want_liqs, _ = journaled(tmp_path / "journal")
    assert len(trades) == len(set(trades)), "a trade stored twice"
    assert set(trades) == want_trades - set(quarantined_ids)
    assert liqs == want_liqs and sum(liqs.values()) > 0
    assert not gaps.reset_index().duplicated().any(), "a gap row stored twice"
    for sym, ids in before_stop.items():
        missing = {(sym, t) for t in ids} - set(trades) - set(quarantined_ids)
        if in_gaps:
            assert_lost_only_in_gaps(tmp_path, sym, sorted(t for _, t in missing))
        else:
            assert not missing, f"{sym}: trades sent before the stop are missing: {sorted(missing)[:5]}"
    with Journal(tmp_path / "journal") as j:
        assert list(j.pending()) == []  # the checkpoint reached the end: nothing left behind


def assert_lost_only_in_gaps(tmp_path, sym: str, missing: list) -> None:
    """Each missing trade id lies between two stored trades whose receive times enclose a
    connection gap of the ledger (the frame went to a connection that was going down)."""
    with Tickstore(tmp_path / "store") as store:
        df = store["trades"].select(sym)
        gaps = store["gaps"].select(sym)
    recv = pd.Series(df["recv_ts"].to_numpy(), index=df["trade_id"].to_numpy()).sort_index()
    conn = gaps[gaps["stream"] == "*"]
    for t in missing:
        before, after = recv[recv.index < t], recv[recv.index > t]
        assert len(before) and len(after), f"{sym} trade {t} lost at an edge of the run"
        covered = (conn.index >= before.iloc[-1]) & (conn["end_ts"] <= after.iloc[0])
        assert covered.any(), f"{sym} trade {t} lost outside every connection gap"


@pytest.mark.parametrize(
    "fault,after_commit",
    [("corruption", False), ("disk_full", False), ("enospc_oserror", False), ("hdf5", False), ("locked", False),
     ("bug", False), ("corruption", True), ("bug", True)],
)
def test_a_failing_store_loses_nothing_and_stores_everything_once(sim, tmp_path, fault, after_commit):
    base = Tickstore(tmp_path / "store")
    store = FaultyStore(base, fault, after_commit=after_commit)
    c = Collector(config(sim, tmp_path), store=store).start()
    try:
        wait_until(lambda: c.stats.rows["trades"] > 20 and c.stats.rows["liquidations"] > 0, 60, "rows stored")
        store.fail_from = store.calls + 1  # the next commit fails, and every one after it until up()
        wait_until(lambda: store.raised >= 3, 60, "three failed appends")
        sim.malformed(1, Market.USDM)  # a gap row (no key) produced while the store is down
        wait_until(lambda: c.stats.malformed >= 1 and store.raised >= 6, 60, "the malformed frame, more failures")
        health = c.health()
        assert health["state"] == "degraded" and type(FAULTS[fault]()).__name__ in health["error"]
        assert health["backlog_rows"] > 0 and health["journal_backlog_bytes"] > 0
        checkpoint = c.journal.committed
        c.write_status()
        frame = status_frame(tmp_path / "store")
        assert set(frame["health"]) == {"degraded"} and (frame["backlog_rows"] > 0).all()
        assert frame["error"].str.contains(type(FAULTS[fault]()).__name__).all()
        assert c.journal.committed == checkpoint  # the checkpoint does not pass unstored rows
        store.up()
        n = c.stats.rows["trades"]
        wait_until(lambda: c.health()["state"] == "ok" and c.stats.rows["trades"] > n + 20, 60, "recovery")
        before_stop = sent_before_stop(sim, SYMBOLS, tmp_path / "store")
    finally:
        c.stop()
        base.close()
    assert c.stats.store_errors >= 6 and c.stats.rows_quarantined == 0 and c.stats.spills == 0
    assert_exactly_once(tmp_path, before_stop)


def test_a_long_outage_leaves_the_backlog_to_the_journal_and_catches_up(sim, tmp_path):
    base = Tickstore(tmp_path / "store")
    store = FaultyStore(base, "disk_full")
    c = Collector(config(sim, tmp_path, max_backlog_rows=300), store=store).start()
    peak = 0
    try:
        wait_until(lambda: c.stats.rows["trades"] > 20, 60, "rows stored")
        store.down.set()
        sim.drop(Market.SPOT)  # a disconnect gap while the backlog is only in the journal

        def spilled_twice():
            nonlocal peak
            peak = max(peak, c.health()["backlog_rows"])
            return c.stats.spills >= 1 and c.stats.store_errors >= 8

        wait_until(spilled_twice, 60, "a spill and retries")
        assert c.health()["catching_up"] and c.health()["state"] == "degraded"
        store.up()
        wait_until(lambda: c.health()["state"] == "ok" and not c.health()["catching_up"], 60, "the catch-up")
        n = c.stats.rows["trades"]
        wait_until(lambda: c.stats.rows["trades"] > n + 20, 60, "live again")
        before_stop = sent_before_stop(sim, SYMBOLS, tmp_path / "store")
    finally:
        c.stop()
        base.close()
    # memory held at most about one flush beyond the bound, whatever the outage's length
    assert peak < 300 + 2000
    assert_exactly_once(tmp_path, before_stop, in_gaps=True)  # the dropped connection may lose what it had in flight
    _, _, gaps = stored(tmp_path / "store")
    assert ((gaps["cause"] == "disconnect") & (gaps["symbol"] == SPOT)).sum() == 1


def test_rows_the_store_refuses_are_quarantined_with_the_reason_and_the_rest_stored(sim, tmp_path):
    base = Tickstore(tmp_path / "store")
    store = FaultyStore(base)
    bad = lambda df: df["trade_id"] % 7 == 0  # noqa: E731 - rows with these ids are "invalid"
    store.refuse = lambda table, df: table == "trades" and bool(bad(df).any())
    c = Collector(config(sim, tmp_path), store=store).start()
    try:
        wait_until(lambda: c.stats.rows_quarantined >= 10, 60, "refused rows")
        before_stop = sent_before_stop(sim, SYMBOLS, tmp_path / "store")
    finally:
        c.stop()
        base.close()
    entries = [e for e in read_quarantine(tmp_path / "journal" / "quarantine") if e["kind"] == "rows"]
    refused = {(e["symbol"], r["trade_id"]) for e in entries for r in e["rows"]}
    assert all(e["table"] == "trades" and "FrameError" in e["reason"] and "injected invalid" in e["reason"] for e in entries)
    assert all(t % 7 == 0 for _, t in refused) and len(refused) == c.stats.rows_quarantined
    want, _, _ = journaled(tmp_path / "journal")
    assert refused == {k for k in want if k[1] % 7 == 0}  # each refused row alone, none of its neighbours
    assert_exactly_once(tmp_path, before_stop, quarantined_ids=refused)


def test_poison_frames_are_quarantined_counted_and_survive_a_restart(sim, tmp_path):
    cfg = config(sim, tmp_path)
    ckpt = tmp_path / "journal" / "checkpoint.json"
    c = Collector(cfg).start()
    try:
        wait_until(lambda: c.stats.rows["trades"] > 20, 60, "rows stored")
        shutil.copy(ckpt, tmp_path / "old-checkpoint.json")  # taken before the poison
        for name, (mutate, _) in POISON.items():
            sim.poison(PERP, mutate)
        wait_until(lambda: len(sim.sent.poisoned) == len(POISON), 60, "every poisoned frame sent")
        wait_until(lambda: c.stats.quarantined_frames >= len(POISON), 60, "the poison quarantined")
        n = c.stats.rows["trades"]
        wait_until(lambda: c.stats.rows["trades"] > n + 40, 60, "trades after the poison")  # nothing wedged
        before_stop = sent_before_stop(sim, SYMBOLS, tmp_path / "store")
    finally:
        c.stop()
    assert c.stats.invalid_values == len(POISON) == c.stats.quarantined_frames
    assert c.stats.store_errors == 0
    poisoned = {(sym, t) for sym, ids, _ in sim.sent.poisoned for t in ids}
    q = [e for e in read_quarantine(cfg.quarantine_dir) if e["kind"] == "frame"]
    assert len(q) == len(POISON)
    bodies = {e["body"].encode() for e in q}
    assert bodies == {payload for _, _, payload in sim.sent.poisoned}  # the frames themselves, kept
    for (name, (_, why)), payload in zip(POISON.items(), [p for _, _, p in sim.sent.poisoned]):
        (entry,) = [e for e in q if e["body"].encode() == payload]
        assert "InvalidValue" in entry["reason"] and why in entry["reason"], (name, entry["reason"])
    assert_exactly_once(tmp_path, before_stop, quarantined_ids=poisoned)

    # As if the process had died before its checkpoint passed the poison: the restart
    # replays the poisoned frames, treats them the same way, and starts.
    shutil.copy(tmp_path / "old-checkpoint.json", ckpt)
    c2 = Collector(cfg).start()
    c2.stop()
    assert c2.stats.replayed > 0 and c2.stats.invalid_values == len(POISON)
    assert len([e for e in read_quarantine(cfg.quarantine_dir) if e["kind"] == "frame"]) == len(POISON)  # kept once
    assert_exactly_once(tmp_path, {}, quarantined_ids=poisoned)


def test_a_full_journal_disk_costs_a_gap_and_a_reconnect_not_the_feed(sim, tmp_path, monkeypatch):
    full = {"on": False, "refused": 0}
    real = jmod._write

    def write(fd, data):
        if full["on"]:
            full["refused"] += 1
            n = real(fd, bytes(data[: len(data) // 3]))  # a short write, then the disk is full
            assert n >= 0
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(jmod, "_write", write)
    cfg = config(sim, tmp_path)
    c = Collector(cfg).start()
    try:
        wait_until(lambda: c.stats.rows["trades"] > 20, 60, "rows stored")
        full["on"] = True
        wait_until(lambda: full["refused"] >= 6 and all(s.stats.handler_errors >= 2 for s in c.sessions), 60,
                   "frames and gaps refused on every connection")
        health = c.health()
        assert health["state"] == "degraded" and "No space left on device" in health["error"]
        assert all(t.is_alive() for t in [s._thread for s in c.sessions] + [c._processor])
        full["on"] = False
        n = c.stats.rows["trades"]
        wait_until(lambda: c.stats.rows["trades"] > n + 40 and c.health()["state"] == "ok", 60, "collecting again")
        before_stop = sent_before_stop(sim, SYMBOLS, tmp_path / "store")
    finally:
        c.stop()
    # the journal holds no partial record: it reads back clean, every record acknowledged
    _, _, gaps = stored(tmp_path / "store")
    lost = gaps[(gaps["stream"] == "*") & gaps["detail"].str.contains("not kept|not recorded")]
    assert set(lost["symbol"]) == set(SYMBOLS)  # the span without a journal is in the gap ledger
    # trades sent while the disk was full are gone, but only inside those gaps
    assert_exactly_once(tmp_path, before_stop, in_gaps=True)


def test_a_store_down_at_start_does_not_stop_the_start(sim, tmp_path):
    cfg = config(sim, tmp_path)
    ckpt = tmp_path / "journal" / "checkpoint.json"
    with Collector(cfg) as c:
        wait_until(lambda: c.stats.rows["trades"] > 20, 60, "rows stored")
        shutil.copy(ckpt, tmp_path / "old-checkpoint.json")
        n = c.stats.rows["trades"]
        wait_until(lambda: c.stats.rows["trades"] > n + 30, 60, "more rows")
    shutil.copy(tmp_path / "old-checkpoint.json", ckpt)  # a crash before the last checkpoints
    base = Tickstore(tmp_path / "store")
    store = FaultyStore(base, "corruption")
    store.down.set()
    with Journal(cfg.journal_dir) as j:
        checkpoint = j.committed
    c2 = Collector(cfg, store=store).start()  # the replay fails: collecting goes on regardless
    try:
        assert c2.health()["state"] == "degraded" and store.raised >= 1 and c2.stats.replayed > 0
        wait_until(lambda: all(s.connected.is_set() for s in c2.sessions), 60, "connected")
        # trades sent while no collector was connected (between the two) are not expected
        first = {s: len(sim.sent.trade_ids[s]) for s in SYMBOLS}
        wait_until(lambda: sum(s.stats.frames for s in c2.sessions) > 50, 60, "frames journaled meanwhile")
        assert c2.journal.committed == checkpoint
        store.up()
        wait_until(lambda: c2.health()["state"] == "ok", 60, "the replay stored")
        n = c2.stats.rows["trades"]
        wait_until(lambda: c2.stats.rows["trades"] > n + 20, 60, "live again")
        before_stop = {s: ids[first[s]:] for s, ids in sent_before_stop(sim, SYMBOLS, tmp_path / "store").items()}
    finally:
        c2.stop()
        base.close()
    assert c2.stats.replayed > 0
    assert_exactly_once(tmp_path, before_stop)


def test_a_damaged_journal_names_the_offset_and_salvage_lets_the_collector_start(sim, tmp_path):
    cfg = config(sim, tmp_path, journal_options=JournalConfig(keep_committed=True, segment_bytes=1 << 16))
    with Collector(cfg) as c:
        wait_until(lambda: c.journal.position.segment >= 3, 60, "a few segments")
        ckpt = c.journal.committed
    segs = sorted((tmp_path / "journal").glob("seg-*.jnl"))
    victim = segs[-2]  # after the checkpoint? make sure: rewind the checkpoint before it
    (tmp_path / "journal" / "checkpoint.json").write_text(json.dumps(
        {"format": 1, "segment": int(victim.stem[4:]), "offset": 8, "updated_ns": 0, "meta": {}}))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x10
    victim.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptionError, match=rf"{victim.name} at byte \d+: .*next intact record starts at byte \d+") as err:
        Collector(cfg).start()
    assert err.value.path == victim and err.value.next_good > err.value.offset
    out = CliRunner().invoke(journal_cli, ["check", str(tmp_path / "journal")])
    assert out.exit_code != 0 and "next intact record" in out.output
    out = CliRunner().invoke(journal_cli, ["salvage", str(tmp_path / "journal")])
    assert out.exit_code == 0 and "padded over" in out.output, out.output
    with Collector(cfg) as c2:  # starts, replays everything after the checkpoint but the damaged record
        wait_until(lambda: c2.stats.rows["trades"] > 0, 60, "collecting")
    assert c2.stats.replayed > 0 and ckpt.segment >= 0
    trades, _, _ = stored(tmp_path / "store")
    assert len(trades) == len(set(trades))


def test_oversized_frames_are_counted_by_the_collector(sim, tmp_path):
    with Collector(config(sim, tmp_path, channels=(Channel.TRADES, Channel.DEPTH), max_frame_bytes=200)) as c:
        wait_until(lambda: c.stats.oversized >= 3, 60, "oversized depth frames")
    assert c.stats.oversized == sum(s.stats.oversized for s in c.sessions)
    _, _, gaps = stored(tmp_path / "store")
    assert gaps["detail"].str.contains("oversized frame of").any()
