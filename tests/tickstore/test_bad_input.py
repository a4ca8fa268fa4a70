"""Every refusal is a clear TickstoreError subclass and leaves the disk untouched."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from tickstore import (
    CorruptionError,
    DuplicateKeyError,
    FormatVersionError,
    FrameError,
    SchemaError,
    SymbolError,
    TickstoreError,
    UnknownTableError,
)
from tests.tickstore.helpers import SYM, trades


def snapshot_tree(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if f.endswith(".lock"):
                continue
            out[p] = os.path.getsize(p)
    return out


@pytest.fixture
def seeded(store, clock):
    store["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", 20))
    clock.advance(1)
    return store


def _bad_frames():
    good = trades("2024-08-08", 5)
    yield "missing column", SchemaError, "missing \\['qty'\\]", good.drop(columns="qty")
    yield "extra column", SchemaError, "unexpected \\['venue'\\]", good.assign(venue="x")
    yield "float trade id", SchemaError, "trade_id must be int64", good.assign(trade_id=good.trade_id + 0.5)
    yield "str price", SchemaError, "price must be float64", good.assign(price=good.price.astype(str))
    yield "side out of int8", SchemaError, "do not fit int8", good.assign(side=np.arange(5) * 100)
    naive = good.copy()
    naive.index = naive.index.tz_localize(None)
    yield "naive index", SchemaError, "naive", naive
    nat = good.copy()
    nat.index = pd.DatetimeIndex([nat.index[0], pd.NaT, *nat.index[2:]], tz="UTC", name="ts")
    yield "NaT index", FrameError, "NaT at position 1", nat
    yield "unsorted", FrameError, "not sorted: row 1", good.iloc[[1, 0, 2, 3, 4]]
    yield "outside the day", FrameError, "outside the day 2024-08-08", trades("2024-08-08 23:59:58", 5)
    yield "naive recv_ts", SchemaError, "recv_ts is naive", good.assign(recv_ts=good.recv_ts.dt.tz_localize(None))
    yield "NaT recv_ts", FrameError, "recv_ts has NaT", good.assign(recv_ts=pd.Series([pd.NaT] * 5, index=good.index, dtype="datetime64[ns, UTC]"))
    wrong = good.copy()
    wrong.index.name = "time"
    yield "index name", FrameError, "named 'time'", wrong
    yield "not indexed by time", FrameError, "DatetimeIndex", good.reset_index()
    dup = pd.concat([good.iloc[:2], good.iloc[1:2].assign(price=1.0)])
    yield "conflicting key", DuplicateKeyError, "repeats key", dup


@pytest.mark.parametrize("case", list(_bad_frames()), ids=lambda c: c[0])
def test_bad_frames_are_refused_and_change_nothing(seeded, case):
    _, exc, msg, frame = case
    before = snapshot_tree(seeded.root)
    with pytest.raises(exc, match=msg):
        seeded["trades"].insert(SYM, "2024-08-08", frame)
    with pytest.raises(TickstoreError):
        seeded["trades"].append(SYM, frame) if "outside" not in case[0] else (_ for _ in ()).throw(FrameError("n/a"))
    assert snapshot_tree(seeded.root) == before
    assert len(seeded["trades"].select(SYM)) == 20


@pytest.mark.parametrize(
    "symbol",
    ["../etc/passwd", "/abs:BTC", "binance:BTC/../../x", "binance:BTC\x00", "BINANCE:BTC/USDT", "binance:" + "A" * 200,
     "binance", "binance:", "binance:BTC USDT", "binance:BTC/USDT/", 42,
     # control characters: matched whole, "$" would have let the trailing newline through
     "binance:BTC/USDT\n", "binance:BTC/USDT:USDT\n", "binance\n:BTC/USDT", "binance:BTC/\tUSDT", "binance:BTC/USDT\r",
     "binance:BTC/USDT\x1b", "binance:BTC/USDT\u2028", "binance:BTC/USDT\x85", "binance:BTC/\u0661"],
)
def test_malformed_symbols_are_refused(seeded, symbol):
    before = snapshot_tree(seeded.root)
    with pytest.raises(SymbolError):
        seeded["trades"].insert(symbol, "2024-08-08", trades("2024-08-08", 2))
    with pytest.raises(SymbolError):
        seeded["trades"].select(symbol)
    assert snapshot_tree(seeded.root) == before


def test_symbols_stay_inside_their_folder(store):
    store["trades"].insert("binance:BTC/USDT:USDT-240927", "2024-08-08", trades("2024-08-08", 2))
    (path,) = store["trades"].index()["path"]
    assert path == "trades/2024/08/08/binance@BTC+USDT@USDT-240927_0001.h5"
    assert store["trades"].symbols() == ["binance:BTC/USDT:USDT-240927"]


def test_unknown_table_and_bad_times(seeded):
    with pytest.raises(UnknownTableError, match="unknown table 'tardes'"):
        seeded["tardes"]
    with pytest.raises(UnknownTableError):
        seeded["../trades"]
    t = seeded["trades"]
    with pytest.raises(FrameError, match="naive"):
        t.select(SYM, start=pd.Timestamp("2024-08-08"))
    with pytest.raises(FrameError, match="not before end"):
        t.select(SYM, "2024-08-09", "2024-08-08")
    with pytest.raises(FrameError, match="not a UTC midnight"):
        t.insert(SYM, "2024-08-08 12:00", trades("2024-08-08 12:00", 1))
    with pytest.raises(SchemaError, match="no column 'vwap'"):
        t.select(SYM, columns=["vwap"])
    with pytest.raises(FrameError, match="needs a reason"):
        t.delete(SYM, "2024-08-08", reason="")
    with pytest.raises(FrameError, match="at most 256"):
        t.insert(SYM, "2024-08-08", trades("2024-08-08", 1), reason="x" * 300)


@pytest.mark.parametrize("name", ["trades\n", "ohlcv_1m\n", "book_5\n", "trades\x00", "\ntrades", "ohlcv_\u0661m"])
def test_table_names_with_control_characters_are_refused(seeded, name):
    before = snapshot_tree(seeded.root)
    with pytest.raises(UnknownTableError):
        seeded[name]
    from tickstore import Column, Schema

    with pytest.raises(SchemaError):
        seeded.create_table(name, Schema(name, (Column("x", "float64"),)))
    with pytest.raises(SchemaError):
        Schema("mine", (Column("x\n", "float64"),))
    with pytest.raises(SchemaError):
        Schema("mine", (Column("x", "float64\n"),))
    assert snapshot_tree(seeded.root) == before


@pytest.mark.parametrize("name", ["snap\n", "snap\r\n", "snap\x00", "\nsnap", "snap\t1"])
def test_snapshot_names_with_control_characters_are_refused(seeded, name):
    from tickstore import SnapshotError

    before = snapshot_tree(seeded.root)
    with pytest.raises(SnapshotError):
        seeded.snapshot(name)
    with pytest.raises(FrameError):  # not a snapshot name, and not a time either
        seeded["trades"].select(SYM, as_of=name)
    assert snapshot_tree(seeded.root) == before


def test_times_past_2262_are_refused_clearly(seeded):
    t = seeded["trades"]
    for when in ("2300-01-01", pd.Timestamp("2300-01-01", tz="UTC"), np.datetime64("2300-01-01"), "1500-01-01"):
        with pytest.raises(FrameError, match="outside the times the store holds"):
            t.select(SYM, when)
        with pytest.raises(FrameError, match="outside the times"):
            t.select(SYM, as_of=when)
        with pytest.raises(FrameError, match="outside the times"):
            t.delete(SYM, when, reason="x")
    before = snapshot_tree(seeded.root)
    late = trades("2024-08-08", 3)
    late.index = pd.DatetimeIndex(np.array(["2300-01-01", "2300-01-02", "2300-01-03"], "M8[s]"), name="ts").tz_localize("UTC")
    with pytest.raises(FrameError, match="outside"):
        t.append(SYM, late)
    late = trades("2024-08-08", 3)
    late["recv_ts"] = pd.Series(np.array(["2300-01-01"] * 3, "M8[s]"), index=late.index).dt.tz_localize("UTC")
    with pytest.raises(FrameError, match="outside"):
        t.append(SYM, late)
    assert snapshot_tree(seeded.root) == before


def test_a_malformed_table_schema_file_is_a_schema_error(seeded):
    from tickstore import Column, Schema

    seeded.create_table("mine", Schema("mine", (Column("x", "float64"),)))
    (seeded.root / "mine" / "_schema.json").write_text('{"name": "mine", "columns": 5}')
    seeded._tables.clear()
    with pytest.raises(SchemaError, match="malformed table schema"):
        seeded["mine"]
    assert any("mine" in p for p in seeded.verify().problems)


def test_corrupted_file_is_detected_by_verify_and_on_read(seeded):
    t = seeded["trades"]
    assert seeded.verify().ok
    (rel,) = t.index()["path"]
    path = seeded.root / rel
    raw = bytearray(path.read_bytes())
    for i in range(len(raw) // 2, len(raw) // 2 + 64):
        raw[i] ^= 0x5A
    path.write_bytes(bytes(raw))
    report = seeded.verify()
    assert not report.ok
    assert any(rel in p and "corrupted" in p for p in report.problems), report.problems
    truncated = path.read_bytes()[:300]
    path.write_bytes(truncated)
    report = seeded.verify()
    assert any("size" in p for p in report.problems)
    seeded.close()
    from tickstore import Tickstore

    with pytest.raises(CorruptionError, match="verify"):
        Tickstore(seeded.root)["trades"].select(SYM)


def test_unknown_format_version_is_refused(seeded):
    import tables

    from tickstore.splay import layout_header, read_meta

    (rel,) = seeded["trades"].index()["path"]
    path = seeded.root / rel
    with tables.open_file(str(path), "a") as h:
        h.root._v_attrs.tickstore_format = np.int64(99)
    # a future writer stamps its layout block too (what the read path looks at)
    raw = bytearray(path.read_bytes())
    magic = b"TICKSTORE-LAYOUT-3\n"
    n = int(raw[len(magic) : len(magic) + 10])
    body = json.loads(raw[len(magic) + 28 : len(magic) + 28 + n])
    body["tickstore_format"] = 99
    new = layout_header(json.dumps(body).encode())
    raw[: len(raw[: raw.index(b"\x89HDF")])] = new.ljust(raw.index(b"\x89HDF"), b" ")
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatVersionError, match="format 99"):
        read_meta(path)
    seeded.close()
    from tickstore import Tickstore

    with pytest.raises(FormatVersionError, match="format 99"):
        Tickstore(seeded.root)["trades"].select(SYM)
    assert any("format 99" in p for p in seeded.verify(checksums=False).problems)


def test_no_pickle_anywhere_on_disk(seeded):
    """No file the store writes holds a pickled object (the pickle protocol header)."""
    seeded.snapshot("s1")
    seeded["gaps"].append(SYM, pd.DataFrame(
        {"recv_ts": pd.to_datetime(["2024-08-08 00:00:01"], utc=True), "end_ts": pd.to_datetime(["2024-08-08 00:00:05"], utc=True),
         "stream": ["btcusdt@trade"], "cause": ["disconnect"], "detail": ["é ünïcode"]},
        index=pd.DatetimeIndex(["2024-08-08"], tz="UTC", name="ts")))
    assert seeded["gaps"].select(SYM)["detail"].iloc[0] == "é ünïcode"
    for dirpath, _, files in os.walk(seeded.root):
        for f in files:
            data = open(os.path.join(dirpath, f), "rb").read()
            assert b"\x80\x04\x95" not in data and b"cnumpy" not in data, f
