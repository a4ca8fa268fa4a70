"""kill -9 at any step of a write - a commit, a merge, the deletion of merged files, a
prune - leaves a store that opens, verifies clean, answers every earlier as-of read and
pin the same way, and holds every acknowledged row (SPEC section 4).

The kills are deterministic: the writer runs with ``TICKSTORE_CRASH_AT=<point>:<n>`` and
SIGKILLs itself the n-th time it reaches that step (``tickstore.intent.crash_point``), so
every step is hit on every run whatever the load of the machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from tickstore import Pin, PrunedError, Tickstore
from tests.tickstore.helpers import SYM

LIVE = "binance:ETH/USDT:USDT"  # only ever appended to: every acknowledged row must stay

WRITER = r"""
import sys, pandas as pd
sys.path.insert(0, {repo!r})
from tickstore import Tickstore
from tests.tickstore.helpers import trades, bars
root, r, prune_before = sys.argv[1], int(sys.argv[2]), sys.argv[3]
store = Tickstore(root, lock_timeout=30)
t, b = store["trades"], store["ohlcv_1m"]
day = pd.Timestamp("2024-08-01", tz="UTC") + pd.Timedelta(days=r)

def ack(*what):
    print("ack", *what, flush=True)

t.insert({sym!r}, day, trades(str(day), 2000, step="30s", first_id=r * 10_000_000, seed=r))
ack("insert")
t.insert({sym!r}, day, trades(str(day), 2000, step="30s", first_id=r * 10_000_000, seed=r + 50), reason="early fix")
ack("early correction")  # the first version is history now: a later round's prune forgets it
for i in range(10):  # the live path: size-tiered merges of the day, bars merging in their month
    first = r * 1_000_000 + i * 50
    t.append({live!r}, trades(str(day + pd.Timedelta(minutes=i)), 50, step="100ms", first_id=first, seed=i))
    ack("append", first, 50)
    b.append({sym!r}, bars(str(day + pd.Timedelta(hours=i)), 60, seed=i))
t.append({live!r}, trades(str(day + pd.Timedelta(days=1)), 5, first_id=r * 1_000_000 + 900_000))  # closes the day
ack("append", r * 1_000_000 + 900_000, 5)
t.insert({sym!r}, day, trades(str(day), 2000, step="30s", first_id=r * 10_000_000, seed=r + 100), reason="correction")
ack("correction")
if r:
    t.delete({sym!r}, day - pd.Timedelta(days=1), reason="crash test")
    ack("delete")
t.compact()
b.compact()
if prune_before != "-":
    store.prune(prune_before, reason="crash test")
    ack("prune")
print("done", flush=True)
"""

# (step, n): the writer kills itself the n-th time it reaches the step
POINTS = [
    ("commit:intent", 1), ("commit:file", 1), ("commit:published", 1),
    ("commit:intent", 7), ("commit:published", 12),
    ("merge:intent", 1), ("merge:file", 1), ("merge:published", 1),
    ("drop:file", 1), ("drop:file", 4), ("merge:published", 3),
    ("prune:recorded", 1), ("prune:intent", 1), ("prune:published", 1),
]


def _reads(store):
    return {(name, sym): store[name].select(sym) for name in ("trades", "ohlcv_1m") for sym in (SYM, LIVE)}


@pytest.mark.slow
def test_sigkill_at_every_step_of_a_write_never_breaks_the_store(tmp_path):
    from tests.conftest import REPO

    root = tmp_path / "store"
    script = WRITER.format(repo=str(REPO), sym=SYM, live=LIVE)
    recorded = []  # (knowledge time, reads, pin of the live symbol's trades)
    snapshots = {}
    acked: list[tuple[int, int]] = []
    pending_seen = 0
    for r, (point, n) in enumerate(POINTS + [(None, 0)]):
        # prune what was superseded before the round before last, so the rounds since stay
        prune_before = str(recorded[-2][0]) if len(recorded) >= 2 else "-"
        env = dict(os.environ, TICKSTORE_CRASH_AT=f"{point}:{n}" if point else "")
        proc = subprocess.run([sys.executable, "-c", script, str(root), str(r), prune_before],
                              capture_output=True, text=True, env=env, timeout=300)
        lines = proc.stdout.split()
        if point is None:
            assert proc.returncode == 0 and lines[-1] == "done", proc.stderr  # the last writer finishes
        else:
            assert proc.returncode == -signal.SIGKILL, (point, n, proc.returncode, proc.stderr[-2000:])
        for line in proc.stdout.splitlines():
            if line.startswith("ack append"):
                _, _, first, count = line.split()
                acked.append((int(first), int(count)))
        store = Tickstore(root)
        report = store.verify()
        assert report.ok, f"after a kill at {point}:{n}\n{report}"
        pending_seen += bool(report.pending)
        horizon = store.pruned_before or pd.Timestamp(0, tz="UTC")
        for at, reads, pin in recorded:
            for (name, sym), frame in reads.items():
                if at < horizon:
                    with pytest.raises(PrunedError):
                        store[name].select(sym, as_of=at)
                else:
                    pdt.assert_frame_equal(store[name].select(sym, as_of=at), frame)
            if at >= horizon:
                pdt.assert_frame_equal(store.read_pin(Pin.from_json(pin)), reads[("trades", LIVE)])
        for name, reads in snapshots.items():  # snapshots protect what they name from prune
            for (table, sym), frame in reads.items():
                pdt.assert_frame_equal(store[table].select(sym, as_of=name), frame)
        # nothing acknowledged is lost
        ids = store["trades"].select(LIVE, columns=["trade_id"])["trade_id"].to_numpy()
        want = np.concatenate([np.arange(a, a + c) for a, c in acked]) if acked else np.zeros(0, np.int64)
        assert np.isin(want, ids).all(), f"acknowledged rows lost after a kill at {point}:{n}"
        at = store.now()
        recorded.append((at, _reads(store), store["trades"].select_pinned(LIVE).pin.to_json()))
        store.snapshot(f"round-{r}")
        snapshots[f"round-{r}"] = _reads(store)
        store.close()
    final = Tickstore(root).verify()
    assert final.ok and not final.pending, str(final)
    assert pending_seen >= 5  # kills inside writes left work for the next writer to finish
