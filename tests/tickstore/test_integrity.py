"""verify compares every index field with the files; reindex rebuilds from the files
alone whatever state the index is in; a write never destroys committed data."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from tickstore import CorruptionError, SnapshotError, Tickstore
from tickstore.clock import MAX_NS
from tickstore.index import SymbolIndex, index_path
from tickstore.lock import TableLock
from tests.tickstore.helpers import SYM, trades

DAYS = [pd.Timestamp("2024-08-01", tz="UTC") + pd.Timedelta(days=d) for d in range(4)]


@pytest.fixture
def store(tmp_path, clock):
    s = Tickstore(tmp_path, clock=clock)
    t = s["trades"]
    for i, day in enumerate(DAYS):
        t.insert(SYM, day, trades(str(day), 1000, step="10s", first_id=i * 10_000))
        clock.advance(1)
    t.delete(SYM, DAYS[1], reason="bad feed")
    clock.advance(1)
    t.insert(SYM, DAYS[2], trades(str(DAYS[2]), 500, step="10s", first_id=20_000, seed=3), reason="correction")
    clock.advance(1)
    t.append(SYM, trades(str(DAYS[3] + pd.Timedelta(hours=23)), 100, first_id=40_000))
    clock.advance(1)
    yield s
    s.close()


def _tamper(store, edit) -> None:
    """Rewrite the trades index with ``edit(entries)`` applied, with a valid checksum: what
    a hand edit or a buggy tool would leave."""
    path = index_path(store.root, "trades", SYM)
    idx = SymbolIndex.load(path, "trades", SYM, store["trades"].schema.partition)
    entries = idx.entries.copy()
    edit(entries)
    SymbolIndex("trades", SYM, idx.partition, entries).save(path)
    store._indexes.forget()


def _day(entries, day, version=None):
    m = entries["partition"] == day.value // 86_400_000_000_000
    if version is not None:
        m &= entries["version"] == version
    return np.flatnonzero(m)


TAMPERS = {
    # the deleted day comes back (100 -> 200 rows visible): its superseded_at reopened
    "superseded_at": lambda e: e["superseded_at"].__setitem__(_day(e, DAYS[1], 1), MAX_NS),
    "first_ts": lambda e: e["first_ts"].__setitem__(_day(e, DAYS[0]), e["first_ts"][_day(e, DAYS[0])] + 10**12),
    "last_ts": lambda e: e["last_ts"].__setitem__(_day(e, DAYS[0]), e["last_ts"][_day(e, DAYS[0])] - 10**12),
    "kmin": lambda e: e["kmin"].__setitem__(_day(e, DAYS[3]), 10**9),
    "kmax": lambda e: e["kmax"].__setitem__(_day(e, DAYS[3]), -1),
    "rows": lambda e: e["rows"].__setitem__(_day(e, DAYS[0]), 999),
    "committed_at": lambda e: e["committed_at"].__setitem__(_day(e, DAYS[0]), 5),
    "op": lambda e: e["op"].__setitem__(_day(e, DAYS[1], 2), b"insert"),
    "reason": lambda e: e["reason"].__setitem__(_day(e, DAYS[2], 2), b"nothing to see"),
    "source": lambda e: e["source"].__setitem__(_day(e, DAYS[0]), b"rest"),
    "size": lambda e: e["size"].__setitem__(_day(e, DAYS[0]), 1),
    "checksum": lambda e: e["checksum"].__setitem__(_day(e, DAYS[0]), b"0" * 64),
}


@pytest.mark.parametrize("field", sorted(TAMPERS))
def test_verify_catches_every_tampered_index_field(store, field):
    assert store.verify().ok, str(store.verify())
    _tamper(store, TAMPERS[field])
    report = store.verify()
    assert not report.ok
    assert any(field in p or (field == "checksum" and "sha256" in p) or (field == "size" and "size" in p) for p in report.problems), str(report)
    store.reindex()
    assert store.verify().ok


@pytest.mark.parametrize("field", ["rows", "first_ts", "last_ts"])
def test_a_read_checks_the_index_against_the_files_own_layout(store, field):
    """The index's row count and time span decide which rows a read takes from a file: a
    hand-edited one must raise, never give a shorter read or rows outside the window."""
    t = store["trades"]
    day0 = t.select(SYM, DAYS[0], DAYS[1])
    other = t.select(SYM, DAYS[2], DAYS[3])
    pinned = t.select_pinned(SYM, DAYS[0], DAYS[1])
    edit = {
        "rows": lambda e: e["rows"].__setitem__(_day(e, DAYS[0]), 999),  # one row short
        # the file looks wholly inside a window that ends before its last row
        "last_ts": lambda e: e["last_ts"].__setitem__(_day(e, DAYS[0]), e["last_ts"][_day(e, DAYS[0])] - 10**10),
        "first_ts": lambda e: e["first_ts"].__setitem__(_day(e, DAYS[0]), e["first_ts"][_day(e, DAYS[0])] + 10**10),
    }[field]
    _tamper(store, edit)
    cut = DAYS[0] + pd.Timedelta(hours=1)
    for start, end in [(DAYS[0], DAYS[1]), (None, None), (DAYS[0], cut), (cut, DAYS[1])]:
        with pytest.raises(CorruptionError, match="altered or is damaged") as info:
            t.select(SYM, start, end)
        assert "2024/08/01" in str(info.value)
    with pytest.raises(CorruptionError, match="altered"):
        t.append(SYM, day0.iloc[:10])  # a write reading the file (its keys) checks it too
    pdt.assert_frame_equal(t.select(SYM, DAYS[2], DAYS[3]), other)  # other days read on
    pdt.assert_frame_equal(store.read_pin(pinned.pin), day0)  # the pin says the file's own count
    store.reindex()
    pdt.assert_frame_equal(t.select(SYM, DAYS[0], DAYS[1]), day0)


def test_a_pin_with_an_altered_row_count_raises(store):
    import dataclasses

    t = store["trades"]
    sel = t.select_pinned(SYM, DAYS[0], DAYS[1])
    files = tuple(dataclasses.replace(f, rows=f.rows - 1) for f in sel.pin.files)
    with pytest.raises(CorruptionError, match="altered"):
        store.read_pin(dataclasses.replace(sel.pin, files=files), check=False)


def test_verify_catches_an_extra_or_a_dropped_version(store):
    _tamper(store, lambda e: e["version"].__setitem__(_day(e, DAYS[0]), 7))
    report = store.verify()
    assert any("missing on disk" in p for p in report.problems) and any("in no index" in p for p in report.problems), str(report)


def test_verify_checks_the_snapshots_file(store):
    store.snapshot("before")
    good = (store.root / "_snapshots.json").read_bytes()
    assert store.verify().ok
    for bad in [b"{", b"[1, 2]", b'{"a": 5}', b'{"a": {"as_of": "x"}}', b'{"a\\n": {"as_of": 1}}', b'{"a": {"as_of": 1, "extra": 1}}', b"\xff\xfe"]:
        (store.root / "_snapshots.json").write_bytes(bad)
        report = store.verify()
        assert any("_snapshots.json" in p for p in report.problems), (bad, str(report))
        with pytest.raises(SnapshotError):
            store["trades"].select(SYM, as_of="before")
        with pytest.raises(SnapshotError):
            store.snapshots()
    (store.root / "_snapshots.json").write_bytes(good)
    assert store.verify().ok


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "missing", "hdf5-garbage"])
def test_reindex_rebuilds_whatever_state_the_index_is_in(store, damage):
    t = store["trades"]
    before = t.select(SYM)
    versions = t.versions(SYM, DAYS[2])
    path = index_path(store.root, "trades", SYM)
    raw = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(os.urandom(len(raw)))
    elif damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "missing":
        path.unlink()
    else:
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(2000))  # an HDF5 signature, then noise
    fresh = Tickstore(store.root)
    if damage == "missing":
        # the symbol looks empty to readers, and writers refuse instead of renumbering
        with pytest.raises(CorruptionError, match="tickstore reindex trades"):
            fresh["trades"].append(SYM, trades(str(DAYS[3]), 5, first_id=90_000))
    else:
        with pytest.raises(CorruptionError, match="reindex"):
            fresh["trades"].select(SYM)
        with pytest.raises(CorruptionError, match="reindex"):
            fresh["trades"].append(SYM, trades(str(DAYS[3]), 5, first_id=90_000))
        assert not fresh.verify().ok
    report = fresh.reindex()
    assert report.ok and report.indexed == {"trades": 7}, str(report)
    assert fresh.verify().ok
    pdt.assert_frame_equal(fresh["trades"].select(SYM), before)
    pdt.assert_frame_equal(fresh["trades"].versions(SYM, DAYS[2]), versions)
    fresh.close()


def test_missing_index_then_write_never_destroys_committed_data(tmp_path):
    """The issue's case: with the index gone, an append restarted numbering at 1 and
    replaced the committed _0001.h5 (50,000 rows lost)."""
    with Tickstore(tmp_path) as s:
        s["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", 50_000, step="1s"))
        (rel,) = s["trades"].index()["path"]
    committed = (tmp_path / rel).read_bytes()
    index_path(tmp_path, "trades", SYM).unlink()
    with Tickstore(tmp_path) as s:
        for write in (
            lambda t: t.append(SYM, trades("2024-08-08 20:00", 10, first_id=10**6)),
            lambda t: t.insert(SYM, "2024-08-08", trades("2024-08-08", 10)),
            lambda t: t.delete(SYM, "2024-08-08", reason="x"),
            lambda t: t.compact(SYM),
        ):
            with pytest.raises(CorruptionError, match="index is missing.*tickstore reindex trades"):
                write(s["trades"])
        assert (tmp_path / rel).read_bytes() == committed
        assert sorted(p.name for p in (tmp_path / "trades").rglob("*.h5")) == [os.path.basename(rel)]
        s.reindex()
        s["trades"].append(SYM, trades("2024-08-08 20:00", 10, first_id=10**6))
        assert len(s["trades"].select(SYM)) == 50_010 and s.verify().ok


def test_a_file_at_the_next_version_is_never_replaced(store):
    """A stray file where the next version would go: the write refuses and keeps it."""
    t = store["trades"]
    stray = store.root / "trades/2024/08/01/binance@BTC+USDT@USDT_0002.h5"
    stray.write_bytes(b"not mine")
    with pytest.raises(CorruptionError, match="exists"):
        t.insert(SYM, DAYS[0], trades(str(DAYS[0]), 10))
    assert stray.read_bytes() == b"not mine"
    assert not list((store.root / "trades/_index").glob("*.intent"))


def test_reindex_skips_and_reports_foreign_unreadable_and_leftover_files(store):
    t = store["trades"]
    before = t.select(SYM, DAYS[0], DAYS[1])
    root = store.root
    day0 = root / "trades/2024/08/01"
    (day0 / "notes.h5").write_bytes(b"my notes")
    (day0 / "binance@BTC+USDT@USDT_0001.h5.bak").write_bytes(b"a backup")
    (root / "trades/2024/08/01/binance@BTC+USDT\n_0001.h5").write_bytes(b"control character in the name")
    (root / "trades/2024/13").mkdir(parents=True)
    (root / "trades/2024/13/binance@BTC+USDT@USDT_0001.h5").write_bytes(b"no such month")
    (day0 / ".binance@BTC+USDT@USDT_0009.h5.tmp-99999").write_bytes(b"half a file")
    (root / "trades/_index/.binance@BTC+USDT@USDT.h5.tmp-99999").write_bytes(b"half an index")
    damaged = root / t.index().loc[(SYM, DAYS[2])]["path"].iloc[-1]
    raw = bytearray(damaged.read_bytes())
    raw[30] ^= 1  # the layout header
    damaged.write_bytes(bytes(raw))
    report = store.verify()
    assert len(report.problems) >= 6, str(report)
    r = store.reindex()
    assert not r.ok
    skipped = "\n".join(r.skipped)
    for name in ("notes.h5", ".bak", "USDT\n_0001", "2024/13", damaged.name):
        assert name in skipped, (name, str(r))
    assert len(r.removed) == 2 and not (day0 / ".binance@BTC+USDT@USDT_0009.h5.tmp-99999").exists()
    assert (day0 / "notes.h5").exists() and damaged.exists()  # never deleted
    pdt.assert_frame_equal(t.select(SYM, DAYS[0], DAYS[1]), before)
    # the damaged version was left out of the index and recorded there: its day raises
    # (never the previous version instead), and verify keeps saying so
    assert r.damaged == [str(damaged.relative_to(root))]
    with pytest.raises(CorruptionError, match=re.escape(damaged.name)):
        t.select(SYM, DAYS[2], DAYS[3])
    assert any(damaged.name in p and "damaged" in p for p in store.verify().problems)


def test_reindex_rolls_back_an_uncommitted_write_and_keeps_a_committed_one(store):
    t = store["trades"]
    before = t.select(SYM)
    rel_new = "trades/2024/08/01/binance@BTC+USDT@USDT_0002.h5"
    import shutil

    shutil.copy(store.root / t.index().loc[(SYM, DAYS[0])]["path"].iloc[0], store.root / rel_new)
    intent = store.root / "trades/_index/binance@BTC+USDT@USDT.intent"
    intent.write_text(json.dumps([rel_new]))
    report = store.verify()
    assert report.ok and any("did not finish" in p for p in report.pending), str(report)
    r = store.reindex()
    assert any(rel_new in x for x in r.removed) and not (store.root / rel_new).exists()
    assert not intent.exists()
    pdt.assert_frame_equal(t.select(SYM), before)


def test_verify_tells_a_write_in_progress_from_a_dead_one_and_a_stray(store):
    intent = store.root / "trades/_index/binance@BTC+USDT@USDT.intent"
    target = "trades/2024/08/04/binance@BTC+USDT@USDT_0003.h5"
    tmp = store.root / "trades/2024/08/04/.binance@BTC+USDT@USDT_0003.h5.tmp-12345"
    intent.write_text(json.dumps([target]))
    tmp.write_bytes(b"being written")
    lock = TableLock(store.root / "trades" / ".lock", timeout=1)
    with lock.hold():  # a live writer
        report = store.verify()
    assert report.ok and any("write in progress" in p for p in report.pending), str(report)
    report = store.verify()  # the writer is gone: the next writer rolls it back
    assert report.ok and any("did not finish" in p for p in report.pending), str(report)
    intent.unlink()
    report = store.verify()
    assert any("leftover temporary" in p for p in report.problems), str(report)
    tmp.unlink()
    (store.root / target).write_bytes(b"stray")
    report = store.verify()
    assert any("stray" in p for p in report.problems), str(report)


VERIFY_WHILE_APPENDING = r"""
import sys
sys.path.insert(0, {repo!r})
import pandas as pd
from tickstore import Tickstore
from tests.tickstore.helpers import trades
store = Tickstore(sys.argv[1], lock_timeout=30)
t = store["trades"]
start = pd.Timestamp("2024-08-05", tz="UTC")
for i in range(int(sys.argv[2])):
    t.append({sym!r}, trades(str(start + pd.Timedelta(minutes=i)), 2000, step="10ms", first_id=10**7 + i * 2000))
print("done", flush=True)
"""


def test_verify_during_live_appends_reports_no_false_problems(store):
    from tests.conftest import REPO

    writer = subprocess.Popen(
        [sys.executable, "-c", VERIFY_WHILE_APPENDING.format(repo=str(REPO), sym=SYM), str(store.root), "60"],
        stdout=subprocess.PIPE, text=True,
    )
    runs = 0
    try:
        while writer.poll() is None or runs < 3:
            report = Tickstore(store.root).verify(checksums=runs % 2 == 0)
            assert report.ok, str(report)
            runs += 1
    finally:
        out, _ = writer.communicate(timeout=300)
    assert writer.returncode == 0 and out.strip() == "done"
    final = Tickstore(store.root).verify()
    assert final.ok and not final.pending, str(final)


def _flip(path, where: str, donor=None) -> None:
    """Damage a format-3 data file: a bit of its layout header, of a chunk of a column, or
    the whole file replaced by another valid file (``donor``)."""
    raw = bytearray(path.read_bytes())
    if where == "swapped":
        path.write_bytes(donor.read_bytes())
        return
    if where == "layout":
        raw[30] ^= 1
    else:
        n = int(raw[19:29])
        offset, size, inner, inner_size, _ = json.loads(raw[47 : 47 + n])["columns"][where][3][0]
        raw[offset + max(inner, 0) + (inner_size if inner >= 0 else size) // 2] ^= 0x10
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("where", ["layout", "trade_id", "price", "swapped"])
def test_reindex_never_turns_a_damaged_version_into_a_different_answer(store, clock, where):
    """Issue 9: after reindex skipped a damaged newest version, its day read as the older
    version without an error. Now the version is recorded as damaged and every read and
    write of its day raises, naming it, until it is restored or deleted and reindexed."""
    t = store["trades"]
    day, nxt = DAYS[2], DAYS[3]
    hist = t.versions(SYM, day)  # v1 insert, v2 correction
    assert list(hist["version"]) == [1, 2]
    latest, older = t.select(SYM, day, nxt), t.select(SYM, day, nxt, as_of=hist["committed_at"].iloc[1] - pd.Timedelta(1, "ns"))
    everything_else = t.select(SYM, DAYS[0], day)
    rel = hist["path"].iloc[-1]
    path = store.root / rel
    good = path.read_bytes()
    _flip(path, where, donor=store.root / t.versions(SYM, DAYS[0])["path"].iloc[0])

    report = store.reindex()
    assert not report.ok and report.damaged == [rel], str(report)
    assert path.read_bytes() != good  # left in place
    for reader in (store, Tickstore(store.root)):  # recorded on disk: any process sees it
        tt = reader["trades"]
        for args, kw in [((day, nxt), {}), ((), {}), ((day, nxt), {"as_of": hist["committed_at"].iloc[0]})]:
            with pytest.raises(CorruptionError, match=re.escape(rel)) as info:
                tt.select(SYM, *args, **kw)
            assert "restored" in str(info.value) and "deleted" in str(info.value)
        with pytest.raises(CorruptionError, match=re.escape(rel)):
            tt.dates(SYM)
        pdt.assert_frame_equal(tt.select(SYM, DAYS[0], day), everything_else)  # other days read on
    # nothing is written into the damaged day (a correction would supersede the wrong version)
    with pytest.raises(CorruptionError, match=re.escape(rel)):
        t.insert(SYM, day, latest, reason="retry")
    with pytest.raises(CorruptionError, match=re.escape(rel)):
        t.append(SYM, trades(str(day + pd.Timedelta(hours=23)), 5, first_id=70_000))
    clock.advance(1)
    t.append(SYM, trades(str(nxt + pd.Timedelta(hours=23, minutes=30)), 5, first_id=80_000))  # other days: fine
    t.compact()  # skips the damaged day
    assert list(t.versions(SYM, day)["version"]) == [1]  # only what reindex could read
    d = t.damaged()
    assert list(d["path"]) == [rel] and list(d["version"]) == [2] and d["on_disk"].all()
    report = store.verify()
    assert any(rel in p and "damaged" in p for p in report.problems), str(report)
    assert not any(rel in p and "stray" in p for p in report.problems), str(report)  # one problem, not two

    # resolution 1: the file is restored; reindex (of that symbol) brings it back
    path.write_bytes(good)
    r = store.reindex(["trades"], symbols=[SYM])
    assert r.ok and not r.damaged, str(r)
    pdt.assert_frame_equal(t.select(SYM, day, nxt), latest)
    assert store.verify().ok and t.damaged().empty

    # resolution 2: damaged again, then deleted on purpose: the day reads without it
    _flip(path, where, donor=store.root / t.versions(SYM, DAYS[0])["path"].iloc[0])
    store.reindex()
    with pytest.raises(CorruptionError):
        t.select(SYM, day, nxt)
    path.unlink()
    report = store.verify()
    assert any("no longer on disk" in p for p in report.problems), str(report)
    with pytest.raises(CorruptionError):
        t.select(SYM, day, nxt)  # deleting alone does not decide it: reindex does
    assert store.reindex().ok
    pdt.assert_frame_equal(t.select(SYM, day, nxt), older)
    assert store.verify().ok


def test_reindex_keeps_the_members_of_a_merge_whose_file_is_damaged(store, clock):
    """A merge killed before it deleted its members, then its merged file damaged: the
    members still hold the rows, so reindex keeps them (it deletes members only for a
    merged file whose chunks check), records the merged file as damaged, and after the
    damaged file is deleted the day reads exactly as before."""
    t = store["trades"]
    day = pd.Timestamp("2024-08-06", tz="UTC")
    for i in range(3):
        t.append(SYM, trades(str(day + pd.Timedelta(hours=i)), 20, first_id=50_000 + 100 * i))
        clock.advance(1)
    before = t.select(SYM, day, day + pd.Timedelta(days=1))
    members = [store.root / p for p in t.versions(SYM, day)["path"]]
    saved = {p: p.read_bytes() for p in members}
    assert t.compact(SYM) == 1
    (merged,) = [store.root / p for p in t.versions(SYM, day)["path"]]
    for p, raw in saved.items():  # as if the merge died before deleting them
        p.write_bytes(raw)
    _flip(merged, "price")
    r = store.reindex()
    assert r.damaged == [str(merged.relative_to(store.root))] and all(p.exists() for p in members), str(r)
    with pytest.raises(CorruptionError, match=re.escape(merged.name)):
        t.select(SYM, day, day + pd.Timedelta(days=1))
    merged.unlink()
    assert store.reindex().ok
    pdt.assert_frame_equal(t.select(SYM, day, day + pd.Timedelta(days=1)), before)
