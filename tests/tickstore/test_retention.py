"""Retention: ``prune(before=T)`` forgets the versions visible at no knowledge time >= T and
at no snapshot; reads before the horizon raise ``PrunedError``, never a different frame."""

from __future__ import annotations

import os

import pandas as pd
import pandas.testing as pdt
import pytest
from click.testing import CliRunner

from tickstore import Pin, PrunedError, SnapshotError, Tickstore
from tickstore.cli import main
from tests.tickstore.helpers import SYM, trades


def _history(store, clock):
    """v1 (kept by a snapshot), v2 (visible only between two corrections), v3 (now)."""
    t = store["trades"]
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 10, price=1))
    clock.advance(1)
    store.snapshot("paper")
    clock.advance(1)
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 10, price=2), reason="fix 1")
    clock.advance(1)
    during_v2 = clock.now()
    pin_v2 = t.select_pinned(SYM)
    clock.advance(1)
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 10, price=3), reason="fix 2")
    clock.advance(1)
    return during_v2, pin_v2


def test_prune_forgets_what_no_later_time_and_no_snapshot_sees(store, clock):
    t = store["trades"]
    during_v2, pin_v2 = _history(store, clock)
    paper, latest = t.select(SYM, as_of="paper"), t.select(SYM)
    files_before = {p for p in t.index(SYM)["path"]}
    cutoff = clock.now()
    record = store.prune(cutoff, reason="one year of corrections")
    assert (record["versions"], record["done"], record["reason"]) == (1, True, "one year of corrections")
    assert record["bytes"] > 0 and store.pruned_before == cutoff
    # v2 is gone from the index and the disk; v1 (the snapshot's) and v3 stay
    v = t.versions(SYM, "2024-08-08")
    assert v["reason"].tolist() == ["", "fix 2"]
    gone = files_before - set(v["path"])
    assert len(gone) == 1 and not any(os.path.exists(store.root / p) for p in gone)
    # reads before the horizon fail clearly; snapshots and later reads are unchanged
    with pytest.raises(PrunedError, match="prune horizon"):
        t.select(SYM, as_of=during_v2)
    with pytest.raises(PrunedError):
        store.read_pin(Pin.from_json(pin_v2.pin.to_json()))
    pdt.assert_frame_equal(t.select(SYM, as_of="paper"), paper)
    pdt.assert_frame_equal(t.select(SYM, as_of=store.snapshots()["as_of"].iloc[0]), paper)  # its exact time too
    pdt.assert_frame_equal(t.select(SYM), latest)
    pdt.assert_frame_equal(t.select(SYM, as_of=cutoff), latest)
    assert store.verify().ok
    log = store.prunes()
    assert log["done"].tolist() == [True] and log["versions"].tolist() == [1]
    # the files alone (and the prune log) give the same index: v1 stays closed when v2 came
    import shutil

    index = t.index()
    shutil.rmtree(t.dir / "_index")
    store._indexes.forget()
    store.reindex()
    pdt.assert_frame_equal(t.index(), index)
    pdt.assert_frame_equal(t.select(SYM, as_of="paper"), paper)
    pdt.assert_frame_equal(t.select(SYM), latest)


def test_prune_refuses_the_future_and_records_nothing(store, clock):
    _history(store, clock)
    with pytest.raises(SnapshotError, match="later than now"):
        store.prune(store.now() + pd.Timedelta("1s"))
    assert store.pruned_before is None and store.prunes().empty
    assert store.prune(store.now())["versions"] == 1
    assert store.prune(store.now())["versions"] == 0  # nothing more to forget


def test_cli_prune_and_its_log(tmp_path, clock):
    store = Tickstore(tmp_path / "s", clock=clock)
    _history(store, clock)
    cutoff = clock.now().isoformat()
    store.close()
    runner = CliRunner()
    out = runner.invoke(main, ["--root", str(tmp_path / "s"), "prune", "--before", cutoff, "--reason", "tidy"])
    assert out.exit_code == 0, out.output
    assert "1 versions" in out.output and "snapshots still read" in out.output
    listed = runner.invoke(main, ["--root", str(tmp_path / "s"), "prune", "--list", "-f", "csv"])
    assert listed.exit_code == 0 and "tidy" in listed.output and "True" in listed.output
    bad = runner.invoke(main, ["--root", str(tmp_path / "s"), "prune", "--before", "2199-01-01"])
    assert bad.exit_code == 1 and bad.output.startswith("error: ") and "later than now" in bad.output
    assert runner.invoke(main, ["--root", str(tmp_path / "s"), "prune"]).exit_code == 2  # usage
