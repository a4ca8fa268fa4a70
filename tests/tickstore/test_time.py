"""Knowledge time: monotonic across the store even when the system clock steps back,
never at or before a snapshot already taken, assigned so that a read as of T sees exactly
the commits at or before T, whatever is in flight."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pandas as pd
import pandas.testing as pdt
import pytest

from tickstore import FrozenClock, LockedError, SnapshotError, Tickstore
from tests.tickstore.helpers import SYM, trades


class SteppedClock:
    """A wall clock NTP can step back, beside a monotonic clock that never does."""

    def __init__(self, start: str):
        self.wall = pd.Timestamp(start).value
        self.mono = 1_000_000_000

    def now_ns(self) -> int:
        return self.wall

    def monotonic_ns(self) -> int:
        return self.mono

    def tick(self, seconds: float) -> None:
        self.wall += int(seconds * 1e9)
        self.mono += int(seconds * 1e9)

    def step_back(self, seconds: float) -> None:
        self.wall -= int(seconds * 1e9)


def test_a_clock_stepped_back_moves_no_commit_before_a_snapshot(tmp_path):
    clock = SteppedClock("2025-01-01T00:00:00Z")
    store = Tickstore(tmp_path, clock=clock)
    t = store["trades"]
    c1 = t.insert(SYM, "2024-08-08", trades("2024-08-08", 10)).committed_at
    clock.tick(1)
    snap = store.snapshot("before-step")
    seen = t.select(SYM, as_of="before-step")
    clock.step_back(2)  # NTP steps the wall clock back 2 s
    clock.tick(0.5)
    c2 = t.insert(SYM, "2024-08-08", trades("2024-08-08", 10, price=5), reason="after the step").committed_at
    assert c1 < snap < c2
    # knowledge time kept moving at the monotonic clock's pace from the snapshot
    assert c2 >= snap + pd.Timedelta("0.5s")
    pdt.assert_frame_equal(t.select(SYM, as_of="before-step"), seen)
    assert store.now() >= c2
    # another process of the store (its own clock object) orders after both
    other = Tickstore(tmp_path, clock=SteppedClock("2024-12-31T00:00:00Z"))
    c3 = other["trades"].append(SYM, trades("2024-08-08 12:00", 3, first_id=500)).committed_at
    assert c3 > c2


def test_commits_and_snapshots_strictly_increase_across_tables_under_a_frozen_clock(store, clock):
    a = store["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", 5)).committed_at
    b = store["quotes"].append(SYM, pd.DataFrame(
        {"recv_ts": pd.DatetimeIndex(["2024-08-08"], tz="UTC"), "update_id": [1], "bid_px": [1.0], "bid_qty": [1.0],
         "ask_px": [2.0], "ask_qty": [1.0]}, index=pd.DatetimeIndex(["2024-08-08"], tz="UTC", name="ts"))).committed_at
    s = store.snapshot("s1")
    c = store["trades"].append(SYM, trades("2024-08-08 01:00", 2, first_id=100)).committed_at
    assert a < b < s < c
    assert clock.now() == pd.Timestamp("2025-01-01T00:00:00Z")  # the clock itself never moved


def test_as_of_later_than_now_is_refused(store, clock):
    store["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", 5))
    later = store.now() + pd.Timedelta("1s")
    with pytest.raises(SnapshotError, match="later than now"):
        store["trades"].select(SYM, as_of=later)
    with pytest.raises(SnapshotError, match="later than now"):
        store.resolve_as_of(later)
    pdt.assert_frame_equal(store["trades"].select(SYM, as_of=store.now()), store["trades"].select(SYM))


_HOLDER = "import time, sys; print('up', flush=True); time.sleep(60)"


def _commit_in_flight(store, pid: int, floor: int) -> None:
    """The intent a writer leaves while it writes its files (see tickstore/intent.py)."""
    from tickstore.intent import _started

    path = store["trades"]._tx.intent_path(SYM)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"kind": "commit", "pid": pid, "started": _started(pid), "floor": floor, "new": [], "drop": []}))


def test_a_read_waits_for_a_commit_in_flight_at_its_time_and_not_for_a_dead_writer(tmp_path):
    clock = FrozenClock("2025-01-01")
    store = Tickstore(tmp_path, clock=clock, read_wait=0.3)
    t = store["trades"]
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 5))
    before = store.now()
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "up"
        _commit_in_flight(store, holder.pid, store._clock.floor())  # its time will be after `before`
        clock.advance(1)
        # as of now (or the commit's floor), the in-flight commit may land at or before it:
        # the read must wait; here it never finishes, so the read fails clearly
        t0 = time.monotonic()
        with pytest.raises(LockedError, match="in flight"):
            t.select(SYM)
        assert time.monotonic() - t0 >= 0.3
        # a read as of an earlier time does not wait
        assert len(t.select(SYM, as_of=before)) == 5
    finally:
        holder.kill()
        holder.wait()
    # its writer is dead: the commit never lands, reads go on (the next writer rolls back)
    assert len(t.select(SYM)) == 5
    t.append(SYM, trades("2024-08-08 10:00", 2, first_id=100))
    assert not t._tx.intent_path(SYM).exists() and store.verify().ok


def _lose_clock_record(root, how: str, old: bytes) -> None:
    """What a power cut can leave of ``<root>/_clock`` (written in place, fsynced only by
    snapshots): nothing, an empty or torn file, or an older record of the previous boot."""
    import zlib

    p = root / "_clock"
    if how == "missing":
        p.unlink()
    elif how == "empty":
        p.write_bytes(b"")
    elif how == "torn":
        p.write_bytes(old[:40] + b"\0" * (len(old) - 40))
    else:  # rewound: the record of an earlier commit, written in the previous boot
        hw, mono, _boot = old.split(b" ")[:3]
        body = b"%s %s %s" % (hw, mono, b"00000000-0000-4000-8000-000000000000")
        p.write_bytes((b"%s %08x" % (body, zlib.crc32(body))).ljust(95) + b"\n")


def _durable_times(store) -> int:
    """The latest knowledge time any index or snapshot names."""
    latest = max((int(v) for v in store.snapshots()["as_of"].astype("int64")), default=0)
    for name in store.tables():
        for sym in store[name].symbols():
            latest = max(latest, store[name]._index(sym).last_commit)
    return latest


@pytest.mark.parametrize("how", ["missing", "empty", "torn", "rewound"])
def test_knowledge_time_survives_a_power_cut_that_lost_the_clock_record(tmp_path, how):
    """After a power cut the clock record may have lost its last updates; with the wall
    clock then behind (no NTP yet), commits must still land after every committed version
    and every snapshot, and reads as of now must see everything committed."""
    other = "binance:ETH/USDT:USDT"
    clock = SteppedClock("2025-06-01T00:00:00Z")
    store = Tickstore(tmp_path, clock=clock)
    t, q = store["trades"], store["quotes"]
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 10))
    old = (tmp_path / "_clock").read_bytes()
    for i in range(3):  # live segments, then a merge that keeps their knowledge times
        clock.tick(10)
        t.append(other, trades(f"2024-08-08 0{i}:00", 5, first_id=100 * i))
    t.compact(other)
    clock.tick(10)
    snap = store.snapshot("before-the-cut")
    clock.tick(10)
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 10, price=7), reason="correction")  # supersedes v1
    clock.tick(10)
    last = q.append(SYM, pd.DataFrame(
        {"recv_ts": pd.DatetimeIndex(["2024-08-08"], tz="UTC"), "update_id": [1], "bid_px": [1.0], "bid_qty": [1.0],
         "ask_px": [2.0], "ask_qty": [1.0]}, index=pd.DatetimeIndex(["2024-08-08"], tz="UTC", name="ts"))).committed_at
    seen = {(name, s): store[name].select(s) for name, s in [("trades", SYM), ("trades", other), ("quotes", SYM)]}
    floor = _durable_times(store)
    assert floor == last.value and floor > snap.value
    store.close()
    _lose_clock_record(tmp_path, how, old)

    # the machine comes back with its wall clock five months behind
    back = Tickstore(tmp_path, clock=SteppedClock("2025-01-01T00:00:00Z"))
    assert back.now().value >= floor
    for (name, s), frame in seen.items():
        pdt.assert_frame_equal(back[name].select(s), frame)  # nothing committed is in the future
    new = back["trades"].append("binance:SOL/USDT:USDT", trades("2024-08-09", 3, first_id=1)).committed_at
    assert new.value > floor  # a symbol with no history of its own still commits after all
    assert back.snapshot("after-the-cut").value > new.value
    assert len(back["trades"].select(SYM, as_of="before-the-cut")) == 10  # v1, not the correction
    # another process, its clock even further behind, orders after too
    c3 = Tickstore(tmp_path, clock=SteppedClock("2024-01-01T00:00:00Z"))["trades"].append(
        other, trades("2024-08-08 05:00", 2, first_id=900)).committed_at
    assert c3 > new


def test_reindex_raises_the_clock_past_the_commits_it_rebuilds(tmp_path):
    """A power cut that lost the clock record and damaged the newest index: the durable
    floor cannot see that index's commits, but reindex brings them back and raises the
    clock past them before any commit can land."""
    clock = SteppedClock("2025-06-01T00:00:00Z")
    with Tickstore(tmp_path, clock=clock) as store:
        store["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", 10))
        clock.tick(3600)
        last = store["trades"].append(SYM, trades("2024-08-08 05:00", 3, first_id=500)).committed_at
    (tmp_path / "_clock").unlink()
    (tmp_path / "trades/_index/binance@BTC+USDT@USDT.h5").write_bytes(b"garbage")
    back = Tickstore(tmp_path, clock=SteppedClock("2025-01-01T00:00:00Z"))
    back.reindex()
    assert back.now() >= last
    assert back["quotes"].append(SYM, pd.DataFrame(
        {"recv_ts": pd.DatetimeIndex(["2024-08-08"], tz="UTC"), "update_id": [1], "bid_px": [1.0], "bid_qty": [1.0],
         "ask_px": [2.0], "ask_qty": [1.0]}, index=pd.DatetimeIndex(["2024-08-08"], tz="UTC", name="ts"))).committed_at > last
