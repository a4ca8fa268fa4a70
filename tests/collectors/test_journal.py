"""The write-ahead journal: round trip, torn tails, corruption, checkpoints, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from collectors.journal import (
    FsyncPolicy,
    Journal,
    JournalConfig,
    JournalCorruptionError,
    JournalError,
    Position,
    RecordKind,
    read_records,
)


def _fill(j: Journal, n: int, start: int = 0) -> list[bytes]:
    bodies = []
    for i in range(start, start + n):
        body = b'{"i":%d,"pad":"%s"}' % (i, b"x" * (i % 37))
        kind = (RecordKind.FRAME, RecordKind.SNAPSHOT, RecordKind.GAP)[i % 3]
        j.append(kind, body, recv_ns=1_700_000_000_000_000_000 + i, tag=f"usdm-{i % 2}")
        bodies.append(body)
    return bodies


def test_round_trip_keeps_order_kind_tag_and_time(tmp_path):
    with Journal(tmp_path, config=JournalConfig(fsync=FsyncPolicy.NEVER)) as j:
        bodies = _fill(j, 500)
    recs = list(read_records(tmp_path))
    assert [r.body for r in recs] == bodies
    assert [r.recv_ns for r in recs] == [1_700_000_000_000_000_000 + i for i in range(500)]
    assert [r.kind for r in recs] == [(RecordKind.FRAME, RecordKind.SNAPSHOT, RecordKind.GAP)[i % 3] for i in range(500)]
    assert [r.tag for r in recs] == [f"usdm-{i % 2}" for i in range(500)]
    ends = [r.end for r in recs]
    assert ends == sorted(ends) and len(set(ends)) == 500


def test_on_append_sees_records_in_journal_order(tmp_path):
    seen = []
    with Journal(tmp_path, on_append=seen.append) as j:
        _fill(j, 50)
    assert [r.end for r in seen] == [r.end for r in read_records(tmp_path)]


def test_segments_rotate_and_replay_across_them(tmp_path):
    with Journal(tmp_path, config=JournalConfig(segment_bytes=4096)) as j:
        bodies = _fill(j, 400)
    segs = sorted(tmp_path.glob("seg-*.jnl"))
    assert len(segs) > 3
    assert all(p.stat().st_size <= 4096 for p in segs)
    assert [r.body for r in read_records(tmp_path)] == bodies


def test_commit_is_durable_and_pending_starts_after_it(tmp_path):
    with Journal(tmp_path, config=JournalConfig(segment_bytes=4096)) as j:
        _fill(j, 300)
        recs = list(read_records(tmp_path))
        j.commit(recs[199].end, meta={"last_recv_ns": recs[199].recv_ns})
    with Journal(tmp_path) as j2:
        assert j2.committed == recs[199].end
        assert j2.checkpoint_meta == {"last_recv_ns": recs[199].recv_ns}
        assert [r.body for r in j2.pending()] == [r.body for r in recs[200:]]
    # segments wholly before the checkpoint are gone, the rest still replays
    assert all(int(p.stem[4:]) >= recs[199].end.segment for p in tmp_path.glob("seg-*.jnl"))


def test_keep_committed_retains_the_raw_capture(tmp_path):
    cfg = JournalConfig(segment_bytes=4096, keep_committed=True)
    with Journal(tmp_path, config=cfg) as j:
        bodies = _fill(j, 300)
        j.commit(j.position)
    assert [r.body for r in read_records(tmp_path)] == bodies
    with Journal(tmp_path, config=cfg) as j2:
        assert list(j2.pending()) == []


def test_checkpoint_cannot_go_back(tmp_path):
    with Journal(tmp_path) as j:
        _fill(j, 10)
        j.commit(j.position)
        with pytest.raises(JournalError, match="may not go back"):
            j.commit(Position(0, 8))


@pytest.mark.parametrize("cut", [3, 11, 25])
def test_torn_tail_is_truncated_on_open_and_appends_continue(tmp_path, cut):
    with Journal(tmp_path) as j:
        bodies = _fill(j, 20)
    last = sorted(tmp_path.glob("seg-*.jnl"))[-1]
    good_size = last.stat().st_size
    # a crash in the middle of the next record's write
    whole = bytearray(open(last, "rb").read()[-40:])
    with open(last, "ab") as f:
        f.write(bytes(whole[:cut]))
    with Journal(tmp_path) as j2:
        assert last.stat().st_size == good_size
        assert [r.body for r in j2.pending()] == bodies
        more = _fill(j2, 5, start=100)
    assert [r.body for r in read_records(tmp_path)] == bodies + more


def test_crc_mismatch_in_a_closed_segment_is_corruption(tmp_path):
    with Journal(tmp_path, config=JournalConfig(segment_bytes=4096)) as j:
        _fill(j, 200)
    first = sorted(tmp_path.glob("seg-*.jnl"))[0]
    data = bytearray(first.read_bytes())
    data[100] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptionError, match=r"seg-0000000000\.jnl at byte \d+: (CRC mismatch|bad header)"):
        list(read_records(tmp_path))


def test_not_a_segment_is_refused(tmp_path):
    (tmp_path / "seg-0000000000.jnl").write_bytes(b"NOTAJOURNAL-----" * 4)
    (tmp_path / "seg-0000000001.jnl").write_bytes(b"TSJRNL01")
    with pytest.raises(JournalCorruptionError, match="not a journal segment"):
        list(read_records(tmp_path))


def test_bad_config_names_the_value():
    with pytest.raises(JournalError, match="segment_bytes must be >= 4096, got 10"):
        JournalConfig(segment_bytes=10)
    with pytest.raises(JournalError, match="fsync must be a FsyncPolicy, got 'always'"):
        JournalConfig(fsync="always")


def test_closed_journal_refuses_appends(tmp_path):
    j = Journal(tmp_path)
    j.close()
    with pytest.raises(JournalError, match="is closed"):
        j.append(RecordKind.FRAME, b"{}", recv_ns=1)


def _records(n: int, start: int = 0) -> list[tuple]:
    """The (kind, body, recv_ns, tag) records ``_fill`` appends one by one."""
    out = []
    for i in range(start, start + n):
        body = b'{"i":%d,"pad":"%s"}' % (i, b"x" * (i % 37))
        out.append(((RecordKind.FRAME, RecordKind.SNAPSHOT, RecordKind.GAP)[i % 3], body, 1_700_000_000_000_000_000 + i, f"usdm-{i % 2}"))
    return out


@pytest.mark.parametrize("batch", [1, 7, 64, 1000])
def test_append_many_writes_the_same_bytes_as_append(tmp_path, batch):
    """Same segments, same bytes, same rotation points, same Record ends, in fewer writes."""
    cfg = JournalConfig(segment_bytes=4096, fsync=FsyncPolicy.NEVER)
    one, many = tmp_path / "one", tmp_path / "many"
    seen_one, seen_many = [], []
    with Journal(one, config=cfg, on_append=seen_one.append) as j:
        _fill(j, 400)
    recs = _records(400)
    with Journal(many, config=cfg, on_append=seen_many.append) as j:
        ends = [j.append_many(recs[i : i + batch]) for i in range(0, len(recs), batch)]
        assert j.records_written == 400 and ends[-1] == j.position
        assert j.append_many([]) == j.position
    segs = sorted(p.name for p in one.iterdir())
    assert len(segs) > 4 and segs == sorted(p.name for p in many.iterdir())
    for name in segs:
        assert (one / name).read_bytes() == (many / name).read_bytes()
    assert seen_many == seen_one == list(read_records(one))
    assert ends == [seen_one[min(i + batch, 400) - 1].end for i in range(0, 400, batch)]


def test_append_many_refuses_a_batch_with_a_record_too_large_and_writes_none_of_it(tmp_path):
    with Journal(tmp_path, config=JournalConfig(fsync=FsyncPolicy.EVERY)) as j:
        j.append_many(_records(3))
        before = j.position
        with pytest.raises(JournalError, match="record too large"):
            j.append_many(_records(2, start=3) + [(RecordKind.FRAME, b"x", 1, "t" * 70_000)])
        assert j.position == before
        j.append_many(iter(_records(2, start=3)))  # any iterable
    assert [r.recv_ns for r in read_records(tmp_path)] == [1_700_000_000_000_000_000 + i for i in range(5)]
    j.close()
    with pytest.raises(JournalError, match="is closed"):
        j.append_many(_records(1))


_WRITER = textwrap.dedent(
    """
    import sys
    from collectors.journal import Journal, JournalConfig, FsyncPolicy, RecordKind
    j = Journal(sys.argv[1], config=JournalConfig(segment_bytes=1 << 16, fsync=FsyncPolicy.INTERVAL, fsync_interval_s=0.05))
    i = 0
    while True:
        j.append(RecordKind.FRAME, b'{"i":%d,"pad":"%s"}' % (i, b"y" * (i % 300)), recv_ns=i)
        i += 1
        if i % 500 == 0:
            print(i, flush=True)   # everything below i has returned from append
    """
)


def test_kill_9_mid_write_loses_no_acknowledged_record(tmp_path):
    jdir = tmp_path / "j"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(jdir)], stdout=subprocess.PIPE, cwd=os.getcwd())
    acked = 0
    deadline = time.monotonic() + 30
    try:
        while acked < 5000 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert acked >= 5000, "the writer did not get going"
    with Journal(jdir) as j:  # opening repairs a torn tail, if the kill left one
        got = [int(r.body.split(b",")[0][5:]) for r in j.pending()]
    assert got == list(range(len(got)))  # a clean prefix: nothing reordered, nothing doubled
    assert len(got) >= acked
