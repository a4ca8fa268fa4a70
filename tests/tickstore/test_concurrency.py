"""One writer process appends and corrects while reader processes select, pin and
snapshot in a loop: no reader ever errors or sees part of a version, and every read
re-made later as of its time (its pin's, its snapshot's) is equal (SPEC sections 1, 4)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from tickstore import LockedError, Pin, Tickstore
from tests.tickstore.helpers import SYM, trades

WRITER = r"""
import sys, time, numpy as np, pandas as pd
sys.path.insert(0, {repo!r})
from tickstore import Tickstore
from tests.tickstore.helpers import trades
store = Tickstore(sys.argv[1])
t = store["trades"]
deadline = time.monotonic() + float(sys.argv[2])
batch = 0
while time.monotonic() < deadline:
    batch += 1
    # live day: batches of 100 rows whose ids encode the batch
    df = trades("2024-08-09 00:00", 100, step="1ms", first_id=batch * 1000)
    df.index = df.index + pd.Timedelta(seconds=batch)
    t.append({sym!r}, df)
    # corrected day: every version has one price everywhere
    if batch % 3 == 0:
        c = trades("2024-08-08", 2000, step="1s")
        c["price"] = float(batch)
        t.insert({sym!r}, "2024-08-08", c, reason=f"v{{batch}}")
print(batch)
"""

READER = r"""
import sys, json, time, numpy as np
sys.path.insert(0, {repo!r})
from tickstore import Tickstore
store = Tickstore(sys.argv[1])
t = store["trades"]
deadline = time.monotonic() + float(sys.argv[2])
reads, last_live, errors = 0, 0, []
while time.monotonic() < deadline:
    try:
        live = t.select({sym!r}, "2024-08-09", "2024-08-10")
        counts = np.bincount((live["trade_id"].to_numpy() // 1000))
        partial = counts[(counts != 0) & (counts != 100)]
        if len(partial):
            errors.append(f"partial batch: {{partial.tolist()}}")
        if len(live) < last_live:
            errors.append(f"went back from {{last_live}} to {{len(live)}} rows")
        last_live = len(live)
        day = t.select({sym!r}, "2024-08-08", "2024-08-09", columns=["price"])
        if len(day) not in (0, 2000) or day["price"].nunique() > 1:
            errors.append(f"mixed version: {{len(day)}} rows, prices {{sorted(set(day['price']))[:5]}}")
        reads += 1
    except Exception as exc:
        errors.append(f"{{type(exc).__name__}}: {{exc}}")
print(json.dumps({{"reads": reads, "rows": last_live, "errors": errors[:5], "n_errors": len(errors)}}))
"""


@pytest.mark.slow
def test_readers_never_see_partial_state(tmp_path):
    from tests.conftest import REPO

    root = str(tmp_path / "store")
    first = trades("2024-08-08", 2000, step="1s")
    first["price"] = 0.0
    Tickstore(root)["trades"].insert(SYM, "2024-08-08", first)
    seconds = "8"
    w = subprocess.Popen([sys.executable, "-c", WRITER.format(repo=str(REPO), sym=SYM), root, seconds], stdout=subprocess.PIPE, text=True)
    readers = [
        subprocess.Popen([sys.executable, "-c", READER.format(repo=str(REPO), sym=SYM), root, seconds], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    batches = int(w.communicate(timeout=120)[0].strip())
    results = [json.loads(r.communicate(timeout=120)[0]) for r in readers]
    assert w.returncode == 0 and batches > 10
    for res in results:
        assert res["n_errors"] == 0, res["errors"]
        assert res["reads"] > 10
    assert Tickstore(root).verify().ok


def test_second_writer_gets_a_clear_error(tmp_path):
    """The lock is per table and per process; a second writer waits lock_timeout, then fails."""
    root = str(tmp_path / "store")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time, fcntl, os\n"
         f"os.makedirs({root!r} + '/trades', exist_ok=True)\n"
         f"fd = os.open({root!r} + '/trades/.lock', os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); print('locked', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        s = Tickstore(root, lock_timeout=0.2)
        with pytest.raises(LockedError, match=rf"another writer \(pid {holder.pid}\)"):
            s["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", 5))
        assert s["trades"].select(SYM).empty
        s["quotes"]  # other tables are not locked
    finally:
        holder.kill()
        holder.wait()
    s = Tickstore(root, lock_timeout=1)
    s["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", 5))
    lock_file = tmp_path / "store" / "trades" / ".lock"
    assert lock_file.read_text() == f"{os.getpid()}\n"  # the dead holder's pid is replaced by ours
    s["trades"].insert(SYM, "2024-08-09", trades("2024-08-09", 5))  # the same writer: the same pid, not written again
    assert lock_file.read_text() == f"{os.getpid()}\n"


RACE_WRITER = r"""
import sys, time, numpy as np, pandas as pd
sys.path.insert(0, {repo!r})
from tickstore import Tickstore
from tests.tickstore.helpers import trades
store = Tickstore(sys.argv[1])
t = store["trades"]
deadline = time.monotonic() + float(sys.argv[2])
batch = 0
while time.monotonic() < deadline:
    batch += 1
    # large live appends (their files take a while to write: the window in which a commit
    # was taken but not yet published), with ties in ts across batches
    n = 20_000 if batch % 4 == 0 else 300
    df = trades("2024-08-09 00:00", n, step="1ms", first_id=batch * 100_000, seed=batch)
    df.index = df.index + pd.Timedelta(seconds=batch // 2)
    t.append({sym!r}, df)
    if batch % 5 == 0:
        c = trades("2024-08-08", 3000, step="1s", seed=batch)
        c["price"] = float(batch)
        t.insert({sym!r}, "2024-08-08", c, reason=f"v{{batch}}")
print(batch)
"""

RACE_READER = r"""
import sys, json, time, hashlib, pandas as pd
sys.path.insert(0, {repo!r})
from tickstore import Tickstore
store = Tickstore(sys.argv[1])
t = store["trades"]
me, deadline = sys.argv[3], time.monotonic() + float(sys.argv[2])

def digest(frame):
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()).hexdigest()

out, i = [], 0
while time.monotonic() < deadline:
    i += 1
    sel = t.select_pinned({sym!r})
    out.append(["pin", sel.pin.to_json(), digest(sel.data), len(sel.data)])
    if i % 3 == 0:
        name = f"{{me}}-{{i}}"
        store.snapshot(name)
        out.append(["snapshot", name, digest(t.select({sym!r}, as_of=name)), 0])
print(json.dumps(out))
"""


def _digest(frame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()).hexdigest()


@pytest.mark.slow
def test_every_read_made_while_a_writer_commits_reads_the_same_later(tmp_path):
    from tests.conftest import REPO

    root = str(tmp_path / "store")
    Tickstore(root)["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", 3000, step="1s"))
    seconds = "10"
    w = subprocess.Popen([sys.executable, "-c", RACE_WRITER.format(repo=str(REPO), sym=SYM), root, seconds], stdout=subprocess.PIPE, text=True)
    readers = [
        subprocess.Popen([sys.executable, "-c", RACE_READER.format(repo=str(REPO), sym=SYM), root, seconds, f"r{k}"], stdout=subprocess.PIPE, text=True)
        for k in range(2)
    ]
    batches = int(w.communicate(timeout=300)[0].strip())
    records = [rec for r in readers for rec in json.loads(r.communicate(timeout=300)[0])]
    assert w.returncode == 0 and batches > 8
    store = Tickstore(root)
    t = store["trades"]
    pins = [r for r in records if r[0] == "pin"]
    assert len(pins) > 10 and len({r[3] for r in pins}) > 3  # reads saw the store at many states
    for kind, what, digest, _ in records:
        if kind == "pin":
            pin = Pin.from_json(what)
            assert _digest(t.select(SYM, as_of=pin.as_of_time)) == digest  # the read, as of its time
            assert _digest(store.read_pin(pin)) == digest  # its pin, after merges retired its files
        else:
            assert _digest(t.select(SYM, as_of=what)) == digest  # the snapshot, as taken
    assert store.verify().ok
