"""The on-disk format: columnar arrays, delta codecs, chunk-boundary range reads, format 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
import tables

from tickstore import Tickstore
from tickstore.errors import FormatVersionError
from tickstore.schemas import Partition
from tickstore.splay import CHUNK_ROWS, _Layout, read_meta
from tests.tickstore.helpers import SYM, stored_columns, trades


def _book(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp("2024-08-08", tz="UTC") + pd.to_timedelta(np.arange(n) * 100, unit="ms")
    bid = 600_000 + np.cumsum(rng.choice([-1, 0, 0, 0, 1], n))
    cols = {
        "recv_ts": ts + pd.to_timedelta(rng.integers(1_000_000, 30_000_000, n), unit="ns"),
        "update_id": 5_123_107_832_006 + np.cumsum(rng.integers(1, 60, n)),
    }
    for i in range(1, 6):
        cols[f"bid_px_{i}"] = np.round((bid - i + 1) * 0.1, 1)
    for i in range(1, 6):
        cols[f"bid_qty_{i}"] = np.round(rng.lognormal(-0.5, 1.5, n), 3)
    for i in range(1, 6):
        cols[f"ask_px_{i}"] = np.round((bid + i) * 0.1, 1)
    for i in range(1, 6):
        cols[f"ask_qty_{i}"] = np.round(rng.lognormal(-0.5, 1.5, n), 3)
    return pd.DataFrame(cols, index=pd.DatetimeIndex(ts, name="ts"))


def _codecs(path) -> dict:
    with tables.open_file(str(path)) as h:
        return {name: tuple(v) for name, v in json.loads(h.root.data._v_attrs.columns).items()}


def test_book_columns_are_delta_coded_and_round_trip_bit_for_bit(tmp_path):
    df = _book(CHUNK_ROWS * 2 + 1234)
    # awkward values that must survive exactly: not exact decimals, NaN, -0.0, huge
    df.iloc[5, df.columns.get_loc("bid_qty_5")] = 1 / 3
    df.iloc[7, df.columns.get_loc("ask_qty_5")] = np.nan
    df.iloc[9, df.columns.get_loc("ask_qty_4")] = -0.0
    df.iloc[11, df.columns.get_loc("ask_qty_3")] = 1e300
    # rows a sample of the column skips, in the last chunk: every chunk checks its own rows
    df.iloc[CHUNK_ROWS * 2 + 101, df.columns.get_loc("bid_qty_4")] = 1 / 7
    with Tickstore(tmp_path) as store:
        store["book"].insert(SYM, "2024-08-08", df)
        got = store["book"].select(SYM)
        pdt.assert_frame_equal(got, df, check_freq=False)
        assert np.array_equal(got["ask_qty_4"].to_numpy().view("i8"), df["ask_qty_4"].to_numpy().view("i8"))  # -0.0 kept
        (path,) = [p for p in (tmp_path / "book").rglob("*.h5") if "_index" not in p.parts]
        codecs = _codecs(path)
    assert codecs["ts"] == ("plain", 0)
    assert codecs["recv_ts"] == ("delta", 0) and codecs["update_id"] == ("delta", 0)
    assert codecs["bid_px_1"] == ("delta_scaled", 1) and codecs["bid_qty_1"] == ("delta_scaled", 3)
    for odd in ("bid_qty_5", "ask_qty_5", "ask_qty_4", "ask_qty_3", "bid_qty_4"):
        assert codecs[odd] == ("xor", 0), odd  # 1/3, NaN, -0.0, 1e300, 1/7: no exact decimal scale


@pytest.mark.parametrize("table", ["book", "trades"])
def test_range_reads_across_chunk_boundaries(tmp_path, table):
    n = CHUNK_ROWS * 2 + 77
    df = _book(n) if table == "book" else trades("2024-08-08", n, step="100ms")
    with Tickstore(tmp_path) as store:
        t = store[table]
        t.insert(SYM, "2024-08-08", df)
        ts = df.index
        for a, b in [(0, 1), (CHUNK_ROWS - 1, CHUNK_ROWS + 1), (CHUNK_ROWS, CHUNK_ROWS * 2), (12345, n - 3), (n - 1, n)]:
            got = t.select(SYM, ts[a], ts[b] if b < n else None, columns=list(df.columns[-2:]))
            pdt.assert_frame_equal(got, df.iloc[a:b, -2:], check_freq=False)


def test_columns_not_asked_for_are_not_read(tmp_path, monkeypatch):
    with Tickstore(tmp_path) as store:
        store["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", 1000))
        read = []
        real = _Layout.read_chunk

        def spy(self, name, *a, **k):
            read.append(name)
            return real(self, name, *a, **k)

        monkeypatch.setattr(_Layout, "read_chunk", spy)
        store["trades"].select(SYM, columns=["price"])
    assert set(read) == {"ts", "price"}


def _rewrite_as_format_1(path, *, drop: tuple[str, ...] = ()) -> None:
    """What the format-1 writer produced: one compound-row Table at /data, same attributes
    (``drop``: columns the schema of that time did not have yet)."""
    with tables.open_file(str(path)) as h:
        attrs = {k: h.root._v_attrs[k] for k in h.root._v_attrs._v_attrnames}
        cols = stored_columns(h)
        assert set(json.loads(h.root.data._v_attrs.columns)) == set(cols)
    schema = json.loads(attrs["schema"])
    names = ["ts"] + [c[0] for c in schema["columns"] if c[0] not in drop]
    rows = np.empty(len(cols["ts"]), [(n, cols[n].dtype) for n in names])
    for n in names:
        rows[n] = cols[n]
    with tables.open_file(str(path), "w") as h:
        h.create_table("/", "data", obj=rows, filters=tables.Filters(5, "blosc2:blosclz", shuffle=True))
        for k, v in attrs.items():
            h.root._v_attrs[k] = v
        h.root._v_attrs.tickstore_format = np.int64(1)


def test_format_1_files_are_still_read(tmp_path):
    df = trades("2024-08-08", 5000)
    with Tickstore(tmp_path) as store:
        store["trades"].insert(SYM, "2024-08-08", df)
    (path,) = [p for p in (tmp_path / "trades").rglob("*.h5") if "_index" not in p.parts]
    _rewrite_as_format_1(path)
    assert read_meta(path).rows == 5000
    with Tickstore(tmp_path) as store:
        store.reindex()  # new checksums
        assert store.verify().ok
        t = store["trades"]
        pdt.assert_frame_equal(t.select(SYM), df, check_freq=False)
        for n in (0, 1, 7, 4999, 5000, 5001):  # a limited read of a format-1 file: its row ranges through HDF5
            pdt.assert_frame_equal(t.select(SYM, limit=n), df.iloc[:n], check_freq=False)
            pdt.assert_frame_equal(t.select(SYM, df.index[100], None, limit=n), df.iloc[100 : 100 + n], check_freq=False)
    # a process that has not imported PyTables (format-3 reads never do) imports it for them
    code = "import sys; from tickstore.store import Tickstore; t = Tickstore(sys.argv[1])['trades']; "
    code += "print(len(t.select_columns(sys.argv[2], columns=['price'])), 'tables' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path), SYM], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ["5000", "True"], out.stderr
    with Tickstore(tmp_path) as store:
        t = store["trades"]
        pdt.assert_frame_equal(
            t.select(SYM, df.index[100], df.index[200], columns=["qty"]), df.iloc[100:200, [3]], check_freq=False
        )
        t.append(SYM, trades("2024-08-08 23:00", 10, first_id=10_000))  # format 2 beside format 1
        t.compact(SYM)
        assert len(t.select(SYM)) == 5010


def test_format_1_files_without_the_kind_column_read_as_market_prints(tmp_path):
    """A format-1 trades file from before ``kind`` existed: every row reads as MARKET."""
    df = trades("2024-08-08", 3000)
    with Tickstore(tmp_path) as store:
        store["trades"].insert(SYM, "2024-08-08", df)
    (path,) = [p for p in (tmp_path / "trades").rglob("*.h5") if "_index" not in p.parts]
    _rewrite_as_format_1(path, drop=("kind",))
    with tables.open_file(str(path)) as h:
        assert "kind" not in h.root.data.colnames
    with Tickstore(tmp_path) as store:
        store.reindex()
        assert store.verify().ok
        t = store["trades"]
        pdt.assert_frame_equal(t.select(SYM), df.assign(kind=np.int8(0)), check_freq=False)
        pdt.assert_frame_equal(t.select(SYM, columns=["kind"]), df[["kind"]].assign(kind=np.int8(0)), check_freq=False)
        pdt.assert_frame_equal(t.select(SYM, limit=9), df.iloc[:9].assign(kind=np.int8(0)), check_freq=False)
        t.append(SYM, trades("2024-08-08 23:00", 10, first_id=10_000))  # format 2 (with kind) beside it
        t.compact(SYM)
        got = t.select(SYM)
        assert len(got) == 3010 and (got["kind"].iloc[:3000] == 0).all()
        pdt.assert_series_equal(got["kind"].iloc[3000:], trades("2024-08-08 23:00", 10, first_id=10_000)["kind"], check_freq=False)


def test_unknown_format_is_refused(tmp_path):
    with Tickstore(tmp_path) as store:
        store["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", 10))
    (path,) = [p for p in (tmp_path / "trades").rglob("*.h5") if "_index" not in p.parts]
    with tables.open_file(str(path), "a") as h:
        h.root._v_attrs.tickstore_format = np.int64(4)
    raw = bytearray(path.read_bytes())  # a future format without our layout block
    raw[: raw.index(b"\x89HDF")] = b" " * raw.index(b"\x89HDF")
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatVersionError, match="format 4"):
        read_meta(path)


def _rewrite_as_format_2(path) -> None:
    """What the format-2 writer produced: the same arrays, a layout block without checksums
    or metadata (magic ``TICKSTORE-LAYOUT``, no checksum on its JSON), attribute format 2."""
    raw = bytearray(path.read_bytes())
    n = int(raw[19:29])
    layout = json.loads(raw[47 : 47 + n])
    layout["tickstore_format"] = 2
    del layout["meta"], layout["file_bytes"]
    for col in layout["columns"].values():
        col[3] = [ref[:4] for ref in col[3]]
    body = json.dumps(layout).encode()
    block = raw.index(b"\x89HDF")
    raw[:block] = (b"TICKSTORE-LAYOUT\n" + b"%010d\n" % len(body) + body).ljust(block, b" ")
    path.write_bytes(bytes(raw))
    with tables.open_file(str(path), "a") as h:
        h.root._v_attrs.tickstore_format = np.int64(2)


def _rewrite_index_as_format_2(path, entries) -> None:
    """What the index-format-2 writer produced: its ENTRY bytes (the rows' layout before
    kt_max) as a uint8 array, no user block."""
    from tickstore.index import ENTRY_V3 as ENTRY

    old = np.zeros(len(entries), ENTRY)
    for name in ENTRY.names:
        old[name] = entries[name]
    raw = np.ascontiguousarray(old).view(np.uint8)
    with tables.open_file(str(path), "w") as h:
        h.create_array("/", "entries", obj=raw)
        a = h.root._v_attrs
        a.entry_dtype = json.dumps(ENTRY.descr)
        a.tickstore_index_format = np.int64(2)
        a.table, a.symbol, a.partition = "trades", SYM, "day"


def test_format_2_data_and_index_files_are_still_read(tmp_path):
    df = trades("2024-08-08", CHUNK_ROWS + 100, step="500ms")
    with Tickstore(tmp_path) as store:
        store["trades"].insert(SYM, "2024-08-08", df)
        entries = store["trades"]._index(SYM).entries
    (path,) = [p for p in (tmp_path / "trades").rglob("*.h5") if "_index" not in p.parts]
    _rewrite_as_format_2(path)
    index = tmp_path / "trades/_index/binance@BTC+USDT@USDT.h5"
    _rewrite_index_as_format_2(index, entries)
    assert read_meta(path).rows == CHUNK_ROWS + 100
    with Tickstore(tmp_path) as store:
        t = store["trades"]
        pdt.assert_frame_equal(t.select(SYM), df, check_freq=False)
        pdt.assert_frame_equal(t.select(SYM, df.index[CHUNK_ROWS - 5], df.index[CHUNK_ROWS + 5], columns=["qty"]),
                               df.iloc[CHUNK_ROWS - 5 : CHUNK_ROWS + 5, [3]], check_freq=False)
        for n in (3, 5, 6, 200):  # a limited read across the chunk boundary of a format-2 file
            pdt.assert_frame_equal(t.select(SYM, df.index[CHUNK_ROWS - 5], None, limit=n),
                                   df.iloc[CHUNK_ROWS - 5 : CHUNK_ROWS - 5 + n], check_freq=False)
        report = store.verify()
        assert not report.ok and "sha256" in str(report)  # the rewrite changed the bytes: reindex
        store.reindex()
        assert store.verify().ok
        t.append(SYM, trades("2024-08-08 23:00", 10, first_id=10**6))  # the next commit writes index format 3
        assert index.read_bytes().startswith(b"TICKSTORE-INDEX-3\n")
        assert len(t.select(SYM)) == CHUNK_ROWS + 110


def _rewrite_index_as_format(path, fmt: int, monkeypatch) -> None:
    """What the index-format-3 or -4 writer produced: the same writer (1 KB user block),
    its checksummed header without ``last_commit``, ``damaged`` and ``block`` and, for
    format 3, its rows without ``kt_max`` (``ENTRY_V3``)."""
    from tickstore import index as ix
    from tickstore.splay import layout_header

    idx = ix.SymbolIndex.load(path, "trades", SYM, Partition.DAY)
    with monkeypatch.context() as m:
        if fmt == 3:
            old = np.zeros(len(idx.entries), ix.ENTRY_V3)
            for name in ix.ENTRY_V3.names:
                old[name] = idx.entries[name]
            idx = ix.SymbolIndex(idx.table, idx.symbol, idx.partition, old)
            m.setattr(ix, "ENTRY", ix.ENTRY_V3)
            m.setattr(ix.SymbolIndex, "last_commit", property(lambda self: 0))
        m.setattr(ix, "INDEX_FORMAT_VERSION", fmt)
        idx.save(path)
    raw = path.read_bytes()
    m = len(ix._INDEX_MAGIC)
    n = int(raw[m : m + 10])
    header = json.loads(raw[m + 28 : m + 28 + n])
    assert header["block"] == ix._INDEX_BLOCK and header["tickstore_index_format"] == fmt
    del header["last_commit"], header["damaged"], header["block"]
    head = layout_header(json.dumps(header, separators=(",", ":")).encode(), ix._INDEX_MAGIC)
    path.write_bytes(head.ljust(ix._INDEX_BLOCK, b" ") + raw[ix._INDEX_BLOCK :])


@pytest.mark.parametrize("fmt", [3, 4])
def test_format_3_and_4_index_files_are_still_read_and_give_the_clock_their_last_commit(tmp_path, monkeypatch, fmt):
    from tickstore.index import index_last_commit, index_partition
    from tickstore.store import durable_floor

    df = trades("2024-08-08", 100)
    with Tickstore(tmp_path) as store:
        t = store["trades"]
        t.insert(SYM, "2024-08-08", df)
        last = t.append(SYM, trades("2024-08-09", 5, first_id=10_000)).committed_at.value
        before = t.versions(SYM, "2024-08-08")
    index = tmp_path / "trades/_index/binance@BTC+USDT@USDT.h5"
    assert index_last_commit(index) == last  # format 5: from the header alone
    _rewrite_index_as_format(index, fmt, monkeypatch)
    assert b'"tickstore_index_format":%d' % fmt in index.read_bytes()[:1024]
    assert index_partition(index) is Partition.DAY
    assert index_last_commit(index) == last == durable_floor(tmp_path)  # formats 3, 4: loaded
    with Tickstore(tmp_path) as store:
        t = store["trades"]
        assert len(t.select(SYM)) == 105 and store.verify().ok
        pdt.assert_frame_equal(t.versions(SYM, "2024-08-08"), before)
        t.append(SYM, trades("2024-08-09 01:00", 5, first_id=20_000))  # the next commit writes format 5
    assert b'"tickstore_index_format":5' in index.read_bytes()[:1024]
    with Tickstore(tmp_path) as store:
        assert len(store["trades"].select(SYM)) == 110 and store.verify().ok


def test_an_index_listing_many_damaged_versions_grows_its_header_block(tmp_path):
    """Format 5 lists damaged versions in the header: a long list takes a larger user block
    (a power of two, said in the header) instead of failing to save."""
    from tickstore import index as ix

    with Tickstore(tmp_path) as store:
        t = store["trades"]
        t.insert(SYM, "2024-08-08", trades("2024-08-08", 10))
    path = tmp_path / "trades/_index/binance@BTC+USDT@USDT.h5"
    idx = ix.SymbolIndex.load(path, "trades", SYM, Partition.DAY)
    why = "column 'price' chunk 0 (rows 0..9) is damaged (checksum mismatch); run `tickstore verify` \u00e9\n" * 2
    damaged = tuple((19_000 + i, 3, why) for i in range(40))
    ix.SymbolIndex(idx.table, idx.symbol, idx.partition, idx.entries, damaged).save(path)
    raw = path.read_bytes()
    m = len(ix._INDEX_MAGIC)
    assert m + 28 + int(raw[m : m + 10]) > 4 * ix._INDEX_BLOCK  # the header runs past 4 KB
    back = ix.SymbolIndex.load(path, "trades", SYM, Partition.DAY)
    assert back.damaged == damaged
    np.testing.assert_array_equal(back.entries, idx.entries)
    assert ix.index_partition(path) is Partition.DAY and ix.index_last_commit(path) == idx.last_commit
