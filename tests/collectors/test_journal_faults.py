"""The journal never loses an acknowledged record: failed writes, damage, salvage, fsync."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from collectors import journal as jmod
from collectors.journal import (
    FsyncPolicy,
    Journal,
    JournalConfig,
    JournalCorruptionError,
    JournalWriteError,
    RecordKind,
    read_records,
    salvage,
)

NEVER = JournalConfig(fsync=FsyncPolicy.NEVER)


def _body(i: int) -> bytes:
    return b'{"i":%d,"pad":"%s"}' % (i, b"z" * (i % 23))


def _append(j: Journal, i: int):
    return j.append(RecordKind.FRAME, _body(i), recv_ns=1_700_000_000_000_000_000 + i, tag="usdm-0")


def _ids(records) -> list[int]:
    return [int(r.body.split(b",")[0][5:]) for r in records]


class _DiskFull:
    """``os.write`` that writes the first ``after`` bytes of the next call, then fails."""

    def __init__(self, after: int, err: int = errno.ENOSPC):
        self.after, self.err, self.armed = after, err, True

    def __call__(self, fd, data):
        if not self.armed:
            return os.write(fd, data)
        self.armed = False
        if self.after:
            os.write(fd, bytes(data[: self.after]))
        raise OSError(self.err, os.strerror(self.err))


def test_a_write_failing_at_any_byte_of_a_record_is_rolled_back(tmp_path, monkeypatch):
    size = len(jmod._encode(RecordKind.FRAME, _body(5), 0, "usdm-0"))
    for cut in range(size):
        d = tmp_path / f"cut{cut}"
        acked = []
        with Journal(d, config=NEVER) as j:
            for i in range(5):
                _append(j, i)
                acked.append(i)
            monkeypatch.setattr(jmod, "_write", _DiskFull(cut))
            before = j.position
            with pytest.raises(JournalWriteError, match="rolled back, the record was not kept"):
                _append(j, 5)  # refused: the frame never counted as received
            assert j.position == before
            seg = sorted(d.glob("seg-*.jnl"))[-1]
            assert seg.stat().st_size == before.offset, f"cut at byte {cut}: a partial record stayed"
            monkeypatch.setattr(jmod, "_write", os.write)
            for i in range(6, 13):  # the disk has room again
                _append(j, i)
                acked.append(i)
        with Journal(d, config=NEVER) as j2:
            assert _ids(j2.pending()) == acked, f"cut at byte {cut}"


def test_append_many_rolls_back_its_failed_write(tmp_path, monkeypatch):
    with Journal(tmp_path, config=NEVER) as j:
        j.append_many([(RecordKind.FRAME, _body(i), i, "t") for i in range(3)])
        monkeypatch.setattr(jmod, "_write", _DiskFull(40))
        with pytest.raises(JournalWriteError):
            j.append_many([(RecordKind.FRAME, _body(i), i, "t") for i in range(3, 9)])
        monkeypatch.setattr(jmod, "_write", os.write)
        j.append_many([(RecordKind.FRAME, _body(i), i, "t") for i in range(9, 11)])
    assert _ids(read_records(tmp_path)) == [0, 1, 2, 9, 10]


def test_a_failed_rollback_refuses_appends_until_it_succeeds(tmp_path, monkeypatch):
    real = os.ftruncate
    broken = {"on": True}

    def ftruncate(fd, n):
        if broken["on"]:
            raise OSError(errno.EIO, "I/O error")
        return real(fd, n)

    with Journal(tmp_path, config=NEVER) as j:
        _append(j, 0)
        monkeypatch.setattr(jmod, "_write", _DiskFull(7))
        monkeypatch.setattr(jmod.os, "ftruncate", ftruncate)
        with pytest.raises(JournalWriteError, match="rolling back failed too"):
            _append(j, 1)
        with pytest.raises(JournalWriteError, match="partial record after byte"):
            _append(j, 2)  # nothing may follow the partial record
        broken["on"] = False
        _append(j, 3)
    assert _ids(read_records(tmp_path)) == [0, 3]


def test_a_failed_fdatasync_under_every_is_a_refused_record(tmp_path, monkeypatch):
    def fail(fd):
        raise OSError(errno.EIO, "I/O error")

    with Journal(tmp_path, config=JournalConfig(fsync=FsyncPolicy.EVERY)) as j:
        _append(j, 0)
        monkeypatch.setattr(jmod, "_fdatasync", fail)
        with pytest.raises(JournalWriteError):
            _append(j, 1)
        monkeypatch.setattr(jmod, "_fdatasync", os.fdatasync)
        _append(j, 2)
    assert _ids(read_records(tmp_path)) == [0, 2]


def _damaged_journal(tmp_path, flip_at_record: int, n: int = 100):
    """A closed journal of ``n`` records in one segment with one byte flipped in record k."""
    ends = []
    with Journal(tmp_path, config=NEVER) as j:
        ends = [_append(j, i).end for i in range(n)]
    seg = sorted(tmp_path.glob("seg-*.jnl"))[-1]
    data = bytearray(seg.read_bytes())
    start = ends[flip_at_record - 1].offset if flip_at_record else len(jmod.MAGIC)
    data[start + 25] ^= 0x40  # inside the record's tag/body: a CRC mismatch
    seg.write_bytes(bytes(data))
    return seg, start, ends


def test_damage_before_intact_records_is_corruption_not_a_torn_tail(tmp_path):
    seg, start, ends = _damaged_journal(tmp_path, flip_at_record=9)
    with pytest.raises(JournalCorruptionError) as err:
        Journal(tmp_path)
    e = err.value
    assert e.offset == start and e.next_good == ends[9].offset and e.path == seg
    assert f"at byte {start}: CRC mismatch" in str(e) and "tickstore journal salvage" in str(e)
    assert seg.stat().st_size == ends[-1].offset  # opening changed nothing


def test_salvage_keeps_every_intact_record_and_the_checkpoint(tmp_path):
    with Journal(tmp_path, config=NEVER) as j:
        ends = [_append(j, i).end for i in range(100)]
        j.commit(ends[4])
    seg = sorted(tmp_path.glob("seg-*.jnl"))[-1]
    data = bytearray(seg.read_bytes())
    data[ends[9].offset + 30] ^= 0x01  # record 10
    seg.write_bytes(bytes(data))
    report = salvage(tmp_path)
    assert report.records_kept == 99 and len(report.ranges) == 1
    (n, off, nbytes, backup) = report.ranges[0]
    assert (off, nbytes) == (ends[9].offset, ends[10].offset - ends[9].offset)
    assert open(backup, "rb").read() == bytes(data[off : off + nbytes])  # the damaged bytes are kept
    assert "padded over" in report.summary()
    with Journal(tmp_path) as j2:
        got = list(j2.pending())
        assert _ids(got) == [i for i in range(5, 100) if i != 10]  # after the checkpoint, minus the damaged one
        assert [r.end for r in got] == [ends[i] for i in range(5, 100) if i != 10]  # offsets unchanged
    assert salvage(tmp_path).ranges == ()  # idempotent


def test_a_zero_filled_tail_after_power_loss_is_a_torn_tail(tmp_path):
    with Journal(tmp_path, config=NEVER) as j:
        for i in range(10):
            _append(j, i)
    seg = sorted(tmp_path.glob("seg-*.jnl"))[-1]
    size = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(b"\0" * 8192)  # pages the kernel allocated but never wrote
    with Journal(tmp_path) as j2:
        assert _ids(j2.pending()) == list(range(10))
    assert seg.stat().st_size == size


def test_damage_in_an_older_segment_names_it(tmp_path):
    with Journal(tmp_path, config=JournalConfig(segment_bytes=4096, fsync=FsyncPolicy.NEVER)) as j:
        for i in range(300):
            _append(j, i)
    first = sorted(tmp_path.glob("seg-*.jnl"))[0]
    data = bytearray(first.read_bytes())
    data[-3] ^= 0xFF  # the last record of a closed segment
    first.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptionError, match=r"seg-0000000000\.jnl at byte \d+: CRC mismatch; no intact record follows"):
        list(read_records(tmp_path))
    report = salvage(tmp_path)
    assert len(report.truncated) == 1 and report.records_kept == 299
    got = _ids(read_records(tmp_path))
    assert len(got) == 299 and got == sorted(got) and len(set(got)) == 299


def test_sync_does_not_hold_the_lock_during_fdatasync(tmp_path, monkeypatch):
    entered, release = threading.Event(), threading.Event()

    def slow(fd):
        entered.set()
        release.wait(10)

    j = Journal(tmp_path, config=JournalConfig(fsync=FsyncPolicy.NEVER))
    try:
        _append(j, 0)
        j._dirty = True
        monkeypatch.setattr(jmod, "_fdatasync", slow)
        syncer = threading.Thread(target=j.sync)
        syncer.start()
        assert entered.wait(10)
        done = threading.Event()
        appender = threading.Thread(target=lambda: (_append(j, 1), done.set()))
        appender.start()
        assert done.wait(10), "append blocked behind an fdatasync"
        release.set()
        syncer.join(10)
        appender.join(10)
    finally:
        release.set()
        j.close()
    assert _ids(read_records(tmp_path)) == [0, 1]
