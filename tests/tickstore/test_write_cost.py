"""The work of one insert does not grow with the days already stored.

Importers and downloaders load history one ``insert`` per day. In a table partitioned by
month, the insert of a new day must neither re-read nor rewrite the month's stored days
(it is added like an append; compaction merges by size tiers, see ``compaction``), and its
disk steps (files written, fsyncs) must be the same on day 5 of the first month as on
day 5 of the third: counted through an instrumented ``diskio.os``, never timed.
"""

from __future__ import annotations

import os

import pandas as pd

from tickstore import Tickstore, diskio
from tests.tickstore.helpers import SYM, bars


class CountingOS:
    """``os`` for ``diskio``: counts fsyncs, links, replaces, folders made and bytes written."""

    def __init__(self):
        self.counts = {"fsync": 0, "link": 0, "replace": 0, "mkdir": 0, "write": 0}

    def __getattr__(self, name):
        real = getattr(os, name)
        if name not in self.counts:
            return real

        def step(*args, **kwargs):
            out = real(*args, **kwargs)
            self.counts[name] += out if name == "write" else 1
            return out

        return step


def _day(t, day: pd.Timestamp, monkeypatch) -> tuple[dict, list[str]]:
    """Insert one day of 1-minute bars; (its diskio counts, the stored files it opened)."""
    counting = CountingOS()
    opened: list[str] = []
    files = t.store._files
    real_open = files._open

    def spy(path):
        opened.append(path)
        return real_open(path)

    monkeypatch.setattr(diskio, "os", counting)
    monkeypatch.setattr(files, "_open", spy)
    try:
        t.insert(SYM, str(day.date()), bars(str(day.date()), 1440, seed=int(day.dayofyear)), source="test")
    finally:
        monkeypatch.setattr(diskio, "os", os)
        monkeypatch.setattr(files, "_open", real_open)
    return counting.counts, opened


def test_a_new_day_in_a_month_partition_costs_the_same_however_many_days_are_stored(tmp_path, monkeypatch):
    with Tickstore(tmp_path / "s") as s:
        t = s["ohlcv_1m"]  # month partitions
        days = pd.date_range("2024-01-01", "2024-03-05", freq="D")
        costs = {}
        for day in days:
            costs[day] = _day(t, day, monkeypatch)
        early, late = costs[pd.Timestamp("2024-01-05")], costs[pd.Timestamp("2024-03-05")]
        for counts, opened in (early, late):
            # one data file and one index, each fsynced with its folder; no merge ran
            # (day 5 of a month: 4 day files stored, below the tier's 8), nothing stored read
            assert counts["link"] == 1 and counts["replace"] == 1 and counts["mkdir"] == 0
            assert counts["fsync"] == 4
            assert opened == []
        # bytes written: the day's file, the index, the intent and the clock's record; the
        # index holds one entry per closed month and the live month's files, so after two
        # closed months it may have grown by a few hundred bytes, never by the days stored
        assert late[0]["write"] <= early[0]["write"] + 2048
        # the store holds every day, and the closed months are one file each
        assert len(s["ohlcv_1m"].select(SYM)) == 1440 * len(days)
        visible = t._index(SYM).visible(None)
        per_month = pd.Series(visible["partition"]).value_counts()
        assert per_month.min() == 1 and per_month.max() == 5  # January and February closed, 5 days of March
        # the spy sees reads: a correction of a stored day looks into that day's file
        _, opened = _day(t, pd.Timestamp("2024-03-03"), monkeypatch)
        assert opened



def test_files_hold_the_bytes_pytables_public_attribute_setter_writes(tmp_path, monkeypatch):
    """``splay.set_attrs`` skips PyTables' Python checks, not a byte: a data file and an
    index built with it equal those built through ``node._v_attrs.<name> = value``, and
    PyTables reads the attributes back."""
    import json

    import numpy as np
    import tables

    from tickstore import index as ix, splay
    from tickstore.frames import frame_to_rows
    from tickstore.schemas import builtin_schema

    schema = builtin_schema("ohlcv_1m")
    rows = frame_to_rows(schema, bars("2024-01-01", 1440))
    meta = splay.FileMeta(
        table="ohlcv_1m", symbol=SYM, partition="month", partition_start="2024-01-01", version=3,
        committed_at=1_704_067_200_000_000_000, op="insert", replaces=(1, 2), reason="exchange correction", source="",
        rows=len(rows), first_ts=int(rows["ts"][0]), last_ts=int(rows["ts"][-1]), schema=json.dumps(schema.to_json()),
    )
    entries = np.zeros(3, ix.ENTRY)
    entries["partition"], entries["version"], entries["rows"] = 19723, [1, 2, 3], 1440
    index = ix.SymbolIndex("ohlcv_1m", SYM, schema.partition, entries)

    def build(name):
        path = tmp_path / f"{name}.h5"
        splay.write_file(
            path, rows, meta, complib=schema.complib, complevel=schema.complevel, shuffle=schema.shuffle, encoding=schema.encoding
        )
        index.save(tmp_path / f"{name}.idx")
        return path, path.read_bytes(), (tmp_path / f"{name}.idx").read_bytes()

    def public(node, **values):
        for name, value in values.items():
            setattr(node._v_attrs, name, value)

    fast_path, fast_data, fast_index = build("fast")
    monkeypatch.setattr(splay, "set_attrs", public)
    monkeypatch.setattr(ix, "set_attrs", public)
    _, public_data, public_index = build("public")
    assert fast_data == public_data
    assert fast_index == public_index
    with tables.open_file(str(fast_path), "r") as h:
        a = h.root._v_attrs
        assert (str(a.table), str(a.symbol), str(a.reason), str(a.source)) == ("ohlcv_1m", SYM, "exchange correction", "")
        assert (int(a.rows), int(a.version), json.loads(str(a.replaces))) == (1440, 3, [1, 2])
        assert int(h.root.data._v_attrs.chunk_rows) == 1440
        assert list(h.root.data._v_attrs.chunk_first_ts) == [int(rows["ts"][0])]
