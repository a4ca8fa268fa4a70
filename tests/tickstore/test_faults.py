"""Faults are inputs: a full disk at every write step, a read-only store, a compaction
that fails after its write committed, fork-started processes. Each leaves the store as
it was (or, after the commit point, committed) and says so with a ``TickstoreError``."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from tickstore import StorageError, Tickstore
from tickstore import diskio, lock
from tickstore.compaction import FANOUT
from tests.tickstore.helpers import SYM, trades

WRITE_STEPS = {"open", "write", "fsync", "link", "replace", "mkdir"}


class FaultyOS:
    """``os`` for ``diskio`` (and ``lock``): counts the write steps (opening a file for
    writing, write, fsync, link, replace, mkdir) and fails the ``fail_at``-th with
    ``code`` (every one from there on when ``sticky``)."""

    def __init__(self, fail_at: int | None = None, code: int = errno.ENOSPC, sticky: bool = False):
        self.fail_at, self.code, self.sticky, self.steps = fail_at, code, sticky, []

    def __getattr__(self, name):
        real = getattr(os, name)
        if name not in WRITE_STEPS:
            return real

        def step(*args, **kwargs):
            if name == "open" and not args[1] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                return real(*args, **kwargs)  # opening to read or fsync a folder is not a write
            i = len(self.steps)
            self.steps.append(name)
            if self.fail_at is not None and (i == self.fail_at or (self.sticky and i > self.fail_at)):
                raise OSError(self.code, os.strerror(self.code), str(args[0]) if args else None)
            return real(*args, **kwargs)

        return step


def _state(root) -> dict[str, str]:
    """Every file under ``root`` (but the lock files and the store clock's high-water
    mark, which moves forward with every attempt to commit) -> sha256 of its bytes."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".lock") or f == "_clock":
                continue
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def _base(tmp_path) -> "os.PathLike":
    base = tmp_path / "base"
    with Tickstore(base) as s:
        t = s["trades"]
        t.insert(SYM, "2024-08-08", trades("2024-08-08", 200))
        for i in range(FANOUT - 1):  # one more append to the 9th merges the day's files
            t.append(SYM, trades(f"2024-08-09 0{i}:00", 20, first_id=10_000 + i * 100))
        s["liquidations"].append(SYM, _liquidations())
    return base


def _liquidations() -> pd.DataFrame:
    ts = pd.DatetimeIndex(["2024-08-09 01:00"] * 3 + ["2024-08-09 02:00"], tz="UTC", name="ts")
    return pd.DataFrame(
        {"recv_ts": ts, "side": np.array([1, 1, 1, -1], "i1"), "price": [10.0, 10.0, 10.0, 11.0], "qty": [1.0, 1.0, 1.0, 2.0]},
        index=ts,
    )


OPERATIONS = {
    "insert new day": lambda s: s["trades"].insert(SYM, "2024-08-10", trades("2024-08-10", 50, first_id=50_000)),
    "insert correction": lambda s: s["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", 100, seed=7), reason="fix"),
    "delete": lambda s: s["trades"].delete(SYM, "2024-08-08", reason="bad feed"),
    # the 8th file of the day: the append commits, then the automatic compaction merges
    "append + compaction": lambda s: s["trades"].append(SYM, trades("2024-08-09 12:00", 20, first_id=20_000)),
    "append to a new table": lambda s: s["funding"].append(SYM, pd.DataFrame(
        {"rate": [0.0001], "interval_h": [8.0]}, index=pd.DatetimeIndex(["2024-08-09 08:00"], tz="UTC", name="ts"))),
    "append keyless": lambda s: s["liquidations"].append(SYM, _liquidations()),
    "compact": lambda s: s["trades"].compact(SYM),
    "snapshot": lambda s: s.snapshot("after"),
}


def _reads(root):
    with Tickstore(root) as s:
        return {n: s[n].select(SYM) for n in ("trades", "funding", "liquidations")}


@pytest.mark.parametrize("op", sorted(OPERATIONS))
def test_disk_full_at_every_write_step_changes_nothing(tmp_path, monkeypatch, op):
    base = _base(tmp_path)
    # a dry run counts the write steps and gives the answer a successful write gives
    ok = tmp_path / "ok"
    shutil.copytree(base, ok)
    counter = FaultyOS()
    monkeypatch.setattr(diskio, "os", counter)
    with Tickstore(ok) as s:
        OPERATIONS[op](s)
    monkeypatch.undo()
    steps = counter.steps
    assert len(steps) >= 5, steps
    expected_after, before = _reads(ok), _reads(base)
    pre_state = _state(base)
    committed_at = None  # the first step whose failure no longer undoes the write
    for k in range(len(steps)):
        root = tmp_path / f"k{k}"
        shutil.copytree(base, root)
        faulty = FaultyOS(fail_at=k)
        monkeypatch.setattr(diskio, "os", faulty)
        with Tickstore(root) as s:
            try:
                OPERATIONS[op](s)
                failed = None
            except StorageError as exc:
                failed = exc
        monkeypatch.undo()
        assert faulty.steps[k:k + 1] == [steps[k]], (k, faulty.steps, steps)  # the same step was hit
        with Tickstore(root) as s:
            report = s.verify()
        assert report.ok and not report.pending, (k, steps[k], str(report))
        if failed is not None:
            assert failed.errno == errno.ENOSPC and failed.path and "No space left" in str(failed), failed
            assert _state(root) == pre_state, (k, steps[k])  # nothing changed on disk
            reads = _reads(root)
            for name in reads:
                pdt.assert_frame_equal(reads[name], before[name])
            assert committed_at is None, f"step {k} ({steps[k]}) failed after step {committed_at} committed"
            with Tickstore(root) as s:  # the same write, retried, works
                OPERATIONS[op](s)
        elif committed_at is None:
            committed_at = k
        reads = _reads(root)
        for name in reads:
            pdt.assert_frame_equal(reads[name], expected_after[name])
        shutil.rmtree(root)
    assert committed_at is not None and committed_at > 0


def test_a_committed_append_reports_success_when_its_compaction_fails(tmp_path, monkeypatch, caplog):
    base = _base(tmp_path)
    counter = FaultyOS()
    monkeypatch.setattr(diskio, "os", counter)
    with Tickstore(base) as s:
        n_files = len(s["trades"].index())
    # find the first step of the compaction: after the append's index replace
    probe = tmp_path / "probe"
    shutil.copytree(base, probe)
    with Tickstore(probe) as s:
        OPERATIONS["append + compaction"](s)
    first_compaction_step = counter.steps.index("replace") + 1
    monkeypatch.setattr(diskio, "os", FaultyOS(fail_at=first_compaction_step, sticky=True))
    with Tickstore(base) as s:
        commit = OPERATIONS["append + compaction"](s)  # no error: the rows are committed
        assert commit.rows == 20
    monkeypatch.undo()
    assert "compaction after a committed write failed" in caplog.text
    with Tickstore(base) as s:
        t = s["trades"]
        assert len(t.index()) == n_files + 1  # appended, not merged
        assert s.verify().ok and not s.verify().pending
        assert len(t.select(SYM)) == 200 + FANOUT * 20
        t.append(SYM, trades("2024-08-09 13:00", 20, first_id=30_000))  # the retry merges
        assert len(t.index().query("superseded_at.isna()")) <= 3
        assert len(t.select(SYM)) == 200 + (FANOUT + 1) * 20


def test_a_read_only_store_reads_and_refuses_writes_clearly(tmp_path, monkeypatch):
    base = _base(tmp_path)
    before = _reads(base)
    state = _state(base)
    ro = FaultyOS(fail_at=0, code=errno.EROFS, sticky=True)
    monkeypatch.setattr(diskio, "os", ro)
    monkeypatch.setattr(lock, "os", ro)
    with Tickstore(base) as s:
        for name in before:
            pdt.assert_frame_equal(s[name].select(SYM), before[name])
        assert s.verify().ok
        for op in OPERATIONS.values():
            with pytest.raises(StorageError, match="read-only") as err:
                op(s)
            assert err.value.errno == errno.EROFS and err.value.path
    with pytest.raises(StorageError, match="read-only"):
        Tickstore(tmp_path / "new-store")  # creating a root on a read-only disk
    monkeypatch.undo()
    assert _state(base) == state


def test_keyless_tables_keep_identical_but_distinct_rows(tmp_path):
    df = _liquidations()
    with Tickstore(tmp_path) as s:
        t = s["liquidations"]
        t.insert(SYM, "2024-08-09", df)
        pdt.assert_frame_equal(t.select(SYM), df)  # three identical rows stay three
        for i in range(FANOUT + 1):  # appends and the compactions they trigger keep them all
            t.append(SYM, df)
        t.compact(SYM)
        got = t.select(SYM)
        assert len(got) == len(df) * (FANOUT + 2)
        assert (got.groupby(level=0).size() == [3 * (FANOUT + 2), FANOUT + 2]).all()


def test_string_values_round_trip_exactly_or_are_refused(tmp_path):
    from tickstore import FrameError, SchemaError

    def gap(detail):
        ts = pd.DatetimeIndex(["2024-08-08"], tz="UTC", name="ts")
        return pd.DataFrame({"recv_ts": ts, "end_ts": ts, "stream": ["s"], "cause": ["c"], "detail": [detail]}, index=ts)

    with Tickstore(tmp_path) as s:
        g = s["gaps"]
        for bad in ("trailing NUL\x00", "lone \ud800 surrogate", "\udfff"):
            with pytest.raises(SchemaError):
                g.append(SYM, gap(bad))
        for bad_reason in ("why\x00", "\ud800"):
            with pytest.raises(FrameError):
                s["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", 3), reason=bad_reason)
        assert not list(tmp_path.rglob("*.h5"))  # nothing was written
        for i, good in enumerate(("inner\x00nul", "é ünïcode 🚀", " padded ", "")):
            g.append(SYM, gap(good).set_axis(pd.DatetimeIndex([f"2024-08-0{i + 1}"], tz="UTC", name="ts")))
        assert list(g.select(SYM)["detail"]) == ["inner\x00nul", "é ünïcode 🚀", " padded ", ""]


FORK = r"""
import faulthandler, multiprocessing, sys
sys.path.insert(0, {repo!r})
faulthandler.dump_traceback_later(400, exit=True)  # a hang elsewhere shows where, and fails
from tickstore import Tickstore
from tests.tickstore.helpers import SYM, trades

def reader(root, queue):
    queue.put(len(Tickstore(root)["trades"].select(SYM)))

def writer(root, queue):
    s = Tickstore(root)
    s["trades"].append(SYM, trades("2024-08-10", 300_000, step="100ms", first_id=10**8))
    queue.put(len(s["trades"].select(SYM)))

root = sys.argv[1]
s = Tickstore(root)
s["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", 400_000, step="100ms"))
assert len(s["trades"].select(SYM)) == 400_000  # blosc2 decompresses on all cores: its pool exists
ctx = multiprocessing.get_context("fork")
for target, want in ((reader, 400_000), (writer, 700_000), (reader, 700_000)):
    queue = ctx.Queue()
    child = ctx.Process(target=target, args=(root, queue))
    child.start()
    child.join(300)  # a hang, not a slow child: ~1 s alone, ~10 s on a loaded machine
    if child.is_alive():
        child.kill()
        sys.exit(f"the forked {{target.__name__}} hung")
    assert child.exitcode == 0 and queue.get(timeout=5) == want, target.__name__
assert len(s["trades"].select(SYM)) == 700_000  # the parent's pool works after the forks
s["trades"].append(SYM, trades("2024-08-11", 1000, first_id=10**9))
print("ok", flush=True)
"""


def test_fork_started_readers_and_writers_work(tmp_path):
    """blosc2's thread pool, once used, hung a forked child (the issue). In a process of its
    own: pytest's process may hold other libraries' threads, and a fork while a thread holds
    a lock is unsafe whatever the library (use ``spawn`` in such programs)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.run([sys.executable, "-c", FORK.format(repo=str(REPO)), str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-4000:]
