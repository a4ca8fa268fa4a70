"""kill -9 at any instant of a write leaves a store that opens, verifies clean, and
answers every earlier as-of read the same way (SPEC section 4)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pandas.testing as pdt
import pytest

from tickstore import Tickstore
from tests.tickstore.helpers import SYM

WRITER = r"""
import sys, numpy as np, pandas as pd
sys.path.insert(0, {repo!r})
from tickstore import Tickstore
from tests.tickstore.helpers import trades, bars
r = int(sys.argv[2])
store = Tickstore(sys.argv[1], lock_timeout=30)
t, b = store["trades"], store["ohlcv_1m"]
day = pd.Timestamp("2024-08-01", tz="UTC") + pd.Timedelta(days=r)
nxt = day + pd.Timedelta(days=1)
print("ready", flush=True)
t.insert({sym!r}, day, trades(str(day), 150_000, step="500ms", first_id=r * 10_000_000, seed=r))
print("insert", flush=True)
for i in range(24):
    t.append({sym!r}, trades(str(nxt + pd.Timedelta(minutes=i)), 3000, step="10ms", first_id=r * 10_000_000 + 5_000_000 + i * 3000, seed=i))
    b.append({sym!r}, bars(str(day + pd.Timedelta(minutes=60 * i)), 60, seed=i))
print("appends", flush=True)
t.insert({sym!r}, day, trades(str(day), 150_000, step="500ms", first_id=r * 10_000_000, seed=r + 1000), reason="correction")
if r and len(t.select({sym!r}, day - pd.Timedelta(days=1), day)):  # the previous writer may have died before its insert
    t.delete({sym!r}, day - pd.Timedelta(days=1), reason="crash test")
t.compact()
b.compact()
print("done", flush=True)
"""


def _reads(root):
    s = Tickstore(root)
    try:
        return {name: s[name].select([SYM]) for name in ("trades", "ohlcv_1m")}
    finally:
        s.close()


@pytest.mark.slow
def test_sigkill_during_writes_never_breaks_the_store(tmp_path):
    from tests.conftest import REPO

    root = tmp_path / "store"
    script = WRITER.format(repo=str(REPO), sym=SYM)
    rng = random.Random(7)
    recorded = []  # (knowledge time, reads)
    kills = 0
    interrupted = 0  # kills that landed inside a write (its files await rollback)
    for r in range(14):
        proc = subprocess.Popen([sys.executable, "-c", script, str(root), str(r)], stdout=subprocess.PIPE, text=True)
        if r == 13:
            out, _ = proc.communicate(timeout=300)  # the last writer finishes: recovery worked
            assert proc.returncode == 0 and out.split()[-1] == "done"
        else:
            # kill at a random instant of the writes (not of the imports, which take
            # from 1 s to several on a loaded machine)
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.02, 3.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(timeout=60)
        report = Tickstore(root).verify()
        assert report.ok, str(report)
        interrupted += bool(report.pending)
        for at, reads in recorded:
            s = Tickstore(root)
            for name, frame in reads.items():
                pdt.assert_frame_equal(s[name].select([SYM], as_of=at), frame)
            s.close()
        now = time.time_ns()
        time.sleep(0.002)
        import pandas as pd

        recorded.append((pd.Timestamp(now, unit="ns", tz="UTC"), _reads(root)))
    assert kills >= 8
    print(f'kills={kills} interrupted={interrupted}')
    assert interrupted >= 2
    final = Tickstore(root).verify()
    assert final.ok and not final.pending, str(final)
