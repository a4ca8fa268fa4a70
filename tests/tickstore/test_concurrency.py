"""One writer process appends and corrects while two reader processes select in a loop:
no reader ever errors or sees part of a version (SPEC section 4)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tickstore import LockedError, Tickstore
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
    Tickstore(root, lock_timeout=1)["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", 5))
