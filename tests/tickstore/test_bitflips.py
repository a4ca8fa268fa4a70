"""Damaged bytes are never read as data (SPEC section 3: a damaged file raises
``CorruptionError``, it is never read as data).

Single-bit flips over data and index files: every flip gives an error (a
``TickstoreError``) or exactly the undamaged answer. Each read runs in its own forked
process, so a crash of a C library (HDF5, blosc2) fails the test instead of killing it;
the flips are sampled deterministically (a fixed seed, every region of the file).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tickstore import CorruptionError, Tickstore
from tickstore.splay import CHUNK_ROWS
from tests.tickstore.helpers import SYM, trades
from tests.tickstore.test_file_format import _book

# Runs in a subprocess: reads the undamaged store once (the expected answers), then for
# each (offset, bit) flips the bit, forks a child that reads with a fresh store object,
# restores the byte. A child's exit code says: 0 same answer, 3 TickstoreError,
# 4 a different answer without an error, 5 another exception; a signal is a crash.
WORKER = r"""
import json, os, sys
sys.path.insert(0, {repo!r})
import pandas as pd
from tickstore import Tickstore, TickstoreError
root, table, rel, start, end, cols = {args!r}

def answers():
    s = Tickstore(root)
    t = s[table]
    out = (t.select({sym!r}), t.select({sym!r}, start, end, columns=cols))
    s.verify()  # must report, never raise or crash
    s.close()
    return out

expected = answers()
path = os.path.join(root, rel)
results = []
for offset, bit in json.loads(sys.stdin.read()):
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([old[0] ^ (1 << bit)]))
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            got = answers()
            code = 0 if all(g.equals(e) for g, e in zip(got, expected)) else 4
        except TickstoreError:
            code = 3
        except BaseException:
            code = 5
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(old)
    results.append([offset, bit, os.waitstatus_to_exitcode(status)])
print(json.dumps(results))
"""


def _flips(size: int, regions: list[tuple[int, int]], n: int, seed: int) -> list[tuple[int, int]]:
    """``n`` (offset, bit) pairs: a share in every region, the rest anywhere in the file."""
    rng = random.Random(seed)
    out = []
    for a, b in regions:
        out += [(rng.randrange(a, b), rng.randrange(8)) for _ in range(max(2, n // (2 * len(regions))))]
    out += [(rng.randrange(size), rng.randrange(8)) for _ in range(n - len(out))]
    return sorted(set(out))


def _run(root, table, rel, flips, start, end, cols):
    from tests.conftest import REPO

    script = WORKER.format(repo=str(REPO), args=(str(root), table, rel, str(start), str(end), cols), sym=SYM)
    proc = subprocess.run([sys.executable, "-c", script], input=json.dumps(flips), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == len(flips)
    bad = [(o, b, code) for o, b, code in results if code not in (0, 3)]
    assert not bad, f"flips (offset, bit, exit code) that were read as other data (4), raised a foreign exception (5) or crashed (<0): {bad}"
    return results


def _layout_regions(path) -> list[tuple[int, int]]:
    """Byte ranges of the header, the layout JSON and every chunk of a format-3 file."""
    raw = path.read_bytes()
    n = int(raw[19:29])  # b"TICKSTORE-LAYOUT-3\n", 10 digits, space, 16 hex digits, newline
    regions = [(0, 47), (47, 47 + n)]
    layout = json.loads(raw[47 : 47 + n])
    for _, _, _, chunks in layout["columns"].values():
        regions += [(o, o + z) for o, z, *_ in chunks]
    regions.append((raw.index(b"\x89HDF"), len(raw)))
    return regions


@pytest.mark.parametrize("table", ["trades", "book"])
def test_bit_flips_in_data_files_are_errors_or_change_nothing(tmp_path, table):
    n = CHUNK_ROWS * 2 + 500  # three chunks per column
    df = _book(n) if table == "book" else trades("2024-08-08", n, step="250ms")
    with Tickstore(tmp_path) as store:
        store[table].insert(SYM, "2024-08-08", df)
        (rel,) = store[table].index()["path"]
    path = tmp_path / rel
    flips = _flips(path.stat().st_size, _layout_regions(path), 90, seed=9)
    start, end = df.index[CHUNK_ROWS - 10], df.index[CHUNK_ROWS + 10]
    results = _run(tmp_path, table, rel, flips, start, end, [df.columns[-1]])
    # the test means something: most flips land in data that is read, and are caught
    assert sum(code == 3 for *_, code in results) > len(results) // 2


def test_bit_flips_in_an_index_file_are_errors_or_change_nothing(tmp_path):
    with Tickstore(tmp_path) as store:
        t = store["trades"]
        for d in range(6):
            day = pd.Timestamp("2024-08-01", tz="UTC") + pd.Timedelta(days=d)
            t.insert(SYM, day, trades(str(day), 50, first_id=d * 1000))
        t.delete(SYM, "2024-08-03", reason="bad feed")
        t.insert(SYM, "2024-08-04", trades("2024-08-04", 20, first_id=3000, seed=1), reason="correction")
    rel = "trades/_index/binance@BTC+USDT@USDT.h5"
    size = (tmp_path / rel).stat().st_size
    flips = _flips(size, [(0, 120), (120, 1024), (1024, size)], 100, seed=3)
    results = _run(tmp_path, "trades", rel, flips, "2024-08-02", "2024-08-05", ["price"])
    assert sum(code == 3 for *_, code in results) > len(results) // 2


def test_a_damaged_chunk_names_the_file_column_and_chunk(tmp_path):
    df = trades("2024-08-08", CHUNK_ROWS * 2 + 5, step="250ms")
    with Tickstore(tmp_path) as store:
        store["trades"].insert(SYM, "2024-08-08", df)
        (rel,) = store["trades"].index()["path"]
    raw = bytearray((tmp_path / rel).read_bytes())
    n = int(raw[19:29])
    offset, size, inner, inner_size, _ = json.loads(raw[47 : 47 + n])["columns"]["qty"][3][1]
    raw[offset + inner + inner_size // 2] ^= 0x10
    (tmp_path / rel).write_bytes(bytes(raw))
    with Tickstore(tmp_path) as store:
        t = store["trades"]
        pd.testing.assert_frame_equal(t.select(SYM, columns=["price"]), df[["price"]], check_freq=False)  # qty not read
        with pytest.raises(CorruptionError) as err:
            t.select(SYM)
        msg = str(err.value)
        assert rel in msg and "'qty'" in msg and "chunk 1" in msg and "checksum" in msg
        with pytest.raises(CorruptionError):  # the window holding that chunk
            t.select(SYM, df.index[CHUNK_ROWS + 1], df.index[CHUNK_ROWS + 2])
        got = t.select(SYM, None, df.index[CHUNK_ROWS])  # chunk 0 only: still readable
        pd.testing.assert_frame_equal(got, df.iloc[:CHUNK_ROWS], check_freq=False)
        assert not store.verify().ok


def test_a_valid_file_swapped_in_for_another_is_refused(tmp_path):
    other = "binance:ETH/USDT:USDT"
    with Tickstore(tmp_path) as store:
        t = store["trades"]
        t.insert(SYM, "2024-08-08", trades("2024-08-08", 100))
        t.insert(SYM, "2024-08-09", trades("2024-08-09", 100, first_id=500))
        t.insert(other, "2024-08-08", trades("2024-08-08", 100, seed=5))
        paths = {(s, str(d.date())): p for (s, d), p in t.index([SYM, other])["path"].items()}
    target = tmp_path / paths[(SYM, "2024-08-08")]
    original = target.read_bytes()
    for donor in (paths[(SYM, "2024-08-09")], paths[(other, "2024-08-08")]):
        target.write_bytes((tmp_path / donor).read_bytes())
        with Tickstore(tmp_path) as store:
            with pytest.raises(CorruptionError, match="swapped"):
                store["trades"].select(SYM, "2024-08-08", "2024-08-09")
            assert not store.verify(checksums=False).ok
    target.write_bytes(original)
    with Tickstore(tmp_path) as store:
        assert len(store["trades"].select(SYM)) == 200 and store.verify().ok


def test_an_index_copied_from_another_symbol_is_refused(tmp_path):
    other = "binance:ETH/USDT:USDT"
    with Tickstore(tmp_path) as store:
        store["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", 10))
        store["trades"].insert(other, "2024-08-08", trades("2024-08-08", 10))
    idx = tmp_path / "trades" / "_index"
    (idx / "binance@BTC+USDT@USDT.h5").write_bytes((idx / "binance@ETH+USDT@USDT.h5").read_bytes())
    with Tickstore(tmp_path) as store:
        with pytest.raises(CorruptionError, match="reindex"):
            store["trades"].select(SYM)
        assert not store.verify().ok
        store.reindex()
        assert store.verify().ok and len(store["trades"].select(SYM)) == 10


def test_truncated_data_file_is_an_error(tmp_path):
    with Tickstore(tmp_path) as store:
        store["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", 5000))
        (rel,) = store["trades"].index()["path"]
    raw = (tmp_path / rel).read_bytes()
    for keep in (10, 200, len(raw) // 2, len(raw) - 1):
        (tmp_path / rel).write_bytes(raw[:keep])
        with Tickstore(tmp_path) as store:
            with pytest.raises(CorruptionError):
                store["trades"].select(SYM)
            assert not store.verify(checksums=False).ok
    assert np.any(np.frombuffer(raw, np.uint8))  # sanity: the file was not empty
