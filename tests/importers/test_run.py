"""import_files as a whole: detection up front, the ledger, resuming, staging spills, faults."""

from __future__ import annotations

import pandas as pd
import pytest

from collectors.importers import DataImportError, MissingOption, import_files
from collectors.importers.run import LEDGER
from tests.importers.helpers import run, write

PERP = "binance:BTC/USDT:USDT"
HEAD = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
DAY = 86_400_000_000  # us


def _trades(days: int, per_day: int = 3, first_id: int = 1) -> str:
    """Tardis trades (https://docs.tardis.dev/downloadable-csv-files) over ``days`` days."""
    t0 = 1704067200_000000
    lines, tid = [], first_id
    for d in range(days):
        for i in range(per_day):
            ts = t0 + d * DAY + i * 1_000_000
            lines.append(f"binance-futures,BTCUSDT,{ts},{ts + 7},{tid},{'buy' if tid % 2 else 'sell'},{100 + tid},0.5")
            tid += 1
    return HEAD + "\n".join(lines) + "\n"


def test_an_undetectable_file_stops_the_run_before_anything_is_written(store, tmp_path):
    good = write(tmp_path / "binance-futures_trades_2024-01-01_BTCUSDT.csv", _trades(1))
    odd = write(tmp_path / "notes.csv", "a,b\n1,2\n")
    with pytest.raises(MissingOption, match=r"notes.csv.*pass --format"):
        run(store, good, odd)
    assert store.tables() == []
    with pytest.raises(DataImportError, match="no such file"):
        run(store, tmp_path / "missing.csv")
    with pytest.raises(DataImportError, match="unknown format 'tardiz'"):
        run(store, good, fmt="tardiz")


def test_ledger_skips_a_done_file_until_its_rows_are_deleted(store, tmp_path, clock):
    path = write(tmp_path / "binance-futures_trades_2024-01-01_BTCUSDT.csv", _trades(2))
    assert run(store, path).files[0].status == "imported"
    assert (store.root / LEDGER).exists()
    assert run(store, path).files[0].status == "skipped"
    clock.advance(1)
    store["trades"].delete(PERP, "2024-01-02", reason="bad day")
    redo = run(store, path)  # a day it wrote was deleted since: parsed again, the day comes back
    assert redo.files[0].status == "imported" and redo.files[0].rows == {"trades": 3}
    assert redo.files[0].held == {"trades": 3}
    assert len(store["trades"].select(PERP)) == 6


def test_force_parses_again_and_changes_nothing(store, tmp_path):
    path = write(tmp_path / "binance-futures_trades_2024-01-01_BTCUSDT.csv", _trades(3))
    run(store, path)
    before = store["trades"].index(PERP)
    again = import_files(store, [str(path)], progress=False, force=True)
    assert again.files[0].status == "unchanged" and again.files[0].held == {"trades": 9}
    pd.testing.assert_frame_equal(store["trades"].index(PERP), before)


def test_an_interrupted_import_resumes_without_duplicates(store, tmp_path, monkeypatch):
    path = write(tmp_path / "binance-futures_trades_2024-01-01_BTCUSDT.csv", _trades(4))
    table = store["trades"]
    real = type(table).ingest
    calls = []

    def dying(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the second commit
        return real(self, *a, **k)

    monkeypatch.setattr(type(table), "ingest", dying)
    with pytest.raises(KeyboardInterrupt):
        import_files(store, [str(path)], progress=False, memory_rows=5)  # 5 rows a commit: 3 commits
    monkeypatch.setattr(type(table), "ingest", real)
    partial = store["trades"].select(PERP)
    assert 0 < len(partial) < 12
    report = run(store, path)
    assert report.files[0].rows == {"trades": 12 - len(partial)}
    got = store["trades"].select(PERP)
    assert got["trade_id"].tolist() == list(range(1, 13))
    assert not list((store.root / "_imports").glob("staging-*"))  # the spill folder is gone


def test_spilled_staging_gives_the_same_rows(store, tmp_path):
    from tickstore import Tickstore

    path = write(tmp_path / "binance-futures_trades_2024-01-01_BTCUSDT.csv", _trades(3, per_day=50))
    import_files(store, [str(path)], progress=False, memory_rows=7)  # spills to Parquet many times
    with Tickstore(tmp_path / "other") as other:
        run(other, path)
        pd.testing.assert_frame_equal(store["trades"].select(PERP), other["trades"].select(PERP))


def test_repeated_keys_in_a_file_keep_the_first_row(store, tmp_path):
    text = _trades(1) + "binance-futures,BTCUSDT,1704067203000000,1704067203000007,1,sell,99,9\n"
    report = run(store, write(tmp_path / "binance-futures_trades_2024-01-01_BTCUSDT.csv", text))
    got = store["trades"].select(PERP)
    assert report.files[0].repeated == 1 and got["trade_id"].tolist() == [1, 2, 3]
    assert got["price"].iat[0] == 101.0  # the first row with id 1, as the live collector keeps


def test_folder_import_and_progress_bar(store, tmp_path, capsys):
    write(tmp_path / "in" / "a" / "binance-futures_trades_2024-01-01_BTCUSDT.csv", _trades(1))
    write(tmp_path / "in" / "b" / "binance-futures_trades_2024-01-02_BTCUSDT.csv", _trades(1, first_id=10).replace(
        "1704067200", "1704153600"))
    report = import_files(store, [str(tmp_path / "in")], progress=True)
    assert [f.status for f in report.files] == ["imported", "imported"]
    assert "import" in capsys.readouterr().err  # tqdm writes to stderr
    assert len(store["trades"].select(PERP)) == 6


def _percentages(err: str, desc: str) -> list[int]:
    """The percentages the ``desc`` bar showed (tqdm redraws with carriage returns)."""
    import re

    return [int(m.group(1)) for part in re.split(r"[\r\n]", err) if part.startswith(f"{desc}:")
            for m in [re.search(r"(\d+)%\|", part)] if m]


def test_progress_of_a_tar_gz_counts_each_byte_of_the_file_once(data_dir, tmp_path, capsys):
    """Each entry of a compressed tar is read by decompressing the archive from its start,
    and parsers read a file's header before its rows: the bar counts the bytes of the file
    read, once each, so it ends at 100% and never passes it (it showed 200% and more).
    The archive: the real T_DEPTH CSVs (Binance's futures order-book download, a
    ``.tar.gz`` of ``..._depth_snap.csv`` and ``..._depth_update.csv``)."""
    from collectors.importers.core import ReadBytes, open_members
    from tests.importers.helpers import write_tar

    parts = [(f"BTCUSDT_T_DEPTH_2022-11-01_depth_{kind}.csv",
              (data_dir / "nautilus_trader" / f"btcusdt-depth-{kind}.csv").read_text()) for kind in ("snap", "update")]
    tar = write_tar(tmp_path / "BTCUSDT_T_DEPTH_2022-11-01.tar.gz", parts)
    size = tar.stat().st_size

    # every member read to its end, each through its own read of the file from the start
    reads, seen = [], ReadBytes()
    members = open_members(tar, lambda at, n: (reads.append((at, n)), seen.add(at, n)))
    texts = [m.read().decode() for m in members]
    assert texts == [text for _, text in parts]
    assert sum(n for _, n in reads) > size  # the archive was read more than once...
    assert [at for at, _ in reads].count(0) == 2
    assert seen.total <= size and seen.total == sum(  # ...and each byte is counted once
        b - a for a, b in _union([(at, at + n) for at, n in reads]))

    from tickstore import Tickstore

    with Tickstore(tmp_path / "store") as store:
        report = import_files(store, [str(tar)], progress=True)
    assert report.files[0].status == "imported"
    shown = _percentages(capsys.readouterr().err, "import")
    assert shown and max(shown) <= 100 and shown[-1] == 100


def _union(spans):
    out = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def test_read_bytes_counts_the_union_of_ranges():
    from collectors.importers.core import ReadBytes

    r = ReadBytes()
    assert [r.add(*x) for x in [(0, 10), (5, 10), (30, 5), (0, 40), (40, 0), (39, 2)]] == [10, 5, 5, 20, 0, 1]
    assert r.total == 41
    import random

    rng = random.Random(7)
    for _ in range(200):
        r, spans = ReadBytes(), []
        for _ in range(rng.randint(1, 12)):
            a, n = rng.randint(0, 100), rng.randint(0, 30)
            r.add(a, n)
            spans.append((a, a + n))
            assert r.total == sum(b - a for a, b in _union([s for s in spans if s[1] > s[0]]))
