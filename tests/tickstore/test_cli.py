"""The ``tickstore`` CLI on real stores in tmp_path (CliRunner in-process; subprocesses for demo and plugins)."""

from __future__ import annotations

import ast
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from tickstore import Tickstore
from tickstore.cli import main
from tickstore.demo import run_demo

from .helpers import SYM, trades

ETH = "binance:ETH/USDT:USDT"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def root(store, clock):
    """A store with two days of BTC, one of ETH, a snapshot, then a correction of day 1."""
    t = store["trades"]
    t.insert(SYM, "2025-01-01", trades("2025-01-01 00:00", 50), reason="backfill", source="rest")
    clock.advance(60)
    t.insert(SYM, "2025-01-02", trades("2025-01-02 00:00", 30, first_id=1000, seed=1), reason="backfill")
    t.insert(ETH, "2025-01-01", trades("2025-01-01 12:00", 20, first_id=5000, price=3000.0, seed=2))
    clock.advance(60)
    store.snapshot("paper-1")
    clock.advance(60)
    day = t.select(SYM, "2025-01-01", "2025-01-02")
    day.iloc[10, day.columns.get_loc("price")] = 12345.5
    t.insert(SYM, "2025-01-01", day, reason="exchange correction")
    store.close()
    return store.root


def run(root, *args):
    return CliRunner().invoke(main, ["--root", str(root), *args])


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def tree(path: Path) -> list:
    """Every file and folder under path with size and mtime: 'nothing changed on disk'.

    A writer's lock file gets the holder's pid on every acquisition, so only its
    existence counts; the store clock's high-water mark (``_clock``) moves forward with
    every attempt to commit or snapshot, so only its existence counts too.
    """
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.stat()
            if name.endswith(".lock") or name == "_clock":
                out.append((str(p.relative_to(path)), 0, 0))
            else:
                out.append((str(p.relative_to(path)), st.st_size if p.is_file() else 0, st.st_mtime_ns))
    return sorted(out)


def store_at(root) -> Tickstore:
    return Tickstore(root)


# -- help ---------------------------------------------------------------------------------
def test_every_command_has_help_text():
    assert main.help and main.commands
    for name, cmd in main.commands.items():
        assert (cmd.help or "").strip(), f"command {name!r} has no help text"
        assert (cmd.get_short_help_str() or "").strip()
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert f"Usage: main {name}" in result.stdout or f"{name} [OPTIONS]" in result.stdout
    listing = ok(CliRunner().invoke(main, ["--help"]))
    for name in ["select", "ls", "versions", "snapshot", "verify", "reindex", "demo"]:
        assert f"  {name} " in listing


def test_tickstore_package_does_not_import_collectors_or_research():
    for path in (REPO / "tickstore").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            assert not [n for n in names if n.split(".")[0] in ("collectors", "research")], path


# -- select -------------------------------------------------------------------------------
def test_select_table_format(root):
    out = ok(run(root, "select", "trades", SYM, "--start", "2025-01-01", "--end", "2025-01-02", "-n", "5"))
    lines = out.splitlines()
    assert lines[0].split() == ["ts", "recv_ts", "trade_id", "price", "qty", "side", "kind"]  # one header line
    body = lines[1:]
    assert len(body) == 5
    assert body[0].startswith("2025-01-01 00:00:00+00:00")
    assert [int(line.split()[4]) for line in body] == [1, 2, 3, 4, 5]  # trade ids


def test_select_csv_equals_the_library(root):
    out = ok(run(root, "select", "trades", SYM, "--format", "csv"))
    got = pd.read_csv(io.StringIO(out))
    want = store_at(root)["trades"].select(SYM)
    assert len(got) == len(want) == 80
    assert list(got.columns) == ["ts", "recv_ts", "trade_id", "price", "qty", "side", "kind"]
    assert got["ts"].iloc[0] == "2025-01-01T00:00:00.000Z"  # ISO 8601, UTC
    assert (pd.DatetimeIndex(pd.to_datetime(got["ts"], utc=True)) == want.index).all()
    assert (pd.to_datetime(got["recv_ts"], utc=True).to_numpy() == want["recv_ts"].to_numpy()).all()
    assert got["trade_id"].tolist() == want["trade_id"].tolist()
    assert got["price"].tolist() == want["price"].tolist()
    assert 12345.5 in got["price"].tolist()  # the correction is the latest answer


def test_select_json_records_with_iso_times(root):
    out = ok(run(root, "select", "trades", SYM, "-f", "json", "--columns", "price,side", "--start", "2025-01-02"))
    records = json.loads(out)
    want = store_at(root)["trades"].select(SYM, "2025-01-02", columns=["price", "side"])
    assert len(records) == len(want) == 30
    assert set(records[0]) == {"ts", "price", "side"}
    assert records[0]["ts"] == "2025-01-02T00:00:00.000Z"
    assert [r["price"] for r in records] == want["price"].tolist()
    assert {r["side"] for r in records} <= {-1, 1}


def test_select_as_of_snapshot_gives_the_old_answer(root):
    now = json.loads(ok(run(root, "select", "trades", SYM, "-f", "json", "--end", "2025-01-02")))
    then = json.loads(ok(run(root, "select", "trades", SYM, "-f", "json", "--end", "2025-01-02", "--as-of", "paper-1")))
    assert len(now) == len(then) == 50
    assert now[10]["price"] == 12345.5 and then[10]["price"] != 12345.5
    before_all = ok(run(root, "select", "trades", SYM, "--as-of", "2024-12-31T23:59:59Z"))
    assert before_all.strip() == "(no rows)"


def test_select_several_symbols_adds_a_symbol_column(root):
    got = pd.read_csv(io.StringIO(ok(run(root, "select", "trades", SYM, ETH, "-f", "csv", "--end", "2025-01-02"))))
    assert got["symbol"].value_counts().to_dict() == {SYM: 50, ETH: 20}
    assert got["ts"].is_monotonic_increasing


# -- listing, versions, snapshots ----------------------------------------------------------
def test_ls_tables_symbols_dates(root):
    assert ok(run(root, "ls")).splitlines() == ["trades"]
    assert ok(run(root, "ls", "trades")).splitlines() == [SYM, ETH]
    assert ok(run(root, "ls", "trades", SYM)).splitlines() == ["2025-01-01", "2025-01-02"]
    assert ok(run(root, "ls", "trades", ETH)).splitlines() == ["2025-01-01"]
    assert ok(run(root, "ls", "funding")) == ""  # a built-in table with no data


def test_versions_shows_the_audit_trail(root):
    out = ok(run(root, "versions", "trades", SYM, "2025-01-01"))
    lines = out.splitlines()
    assert "operation" in lines[0] and "checksum" not in lines[0]
    assert "backfill" in lines[2] and "exchange correction" in lines[3]
    got = pd.read_csv(io.StringIO(ok(run(root, "versions", "trades", SYM, "2025-01-01", "-f", "csv"))))
    assert got["version"].tolist() == [1, 2]
    assert got["operation"].tolist() == ["insert", "insert"]
    assert got["rows"].tolist() == [50, 50]
    assert got["superseded_at"].iloc[0] == got["committed_at"].iloc[1]
    assert got["superseded_at"].isna().iloc[1]
    assert len(got["checksum"].iloc[0]) == 64
    assert "checksum" in ok(run(root, "versions", "trades", SYM, "2025-01-01", "--long"))


def test_snapshot_create_list_and_refuse_duplicates(root):
    out = ok(run(root, "snapshot", "paper-2", "--note", "for the referee"))
    assert out.startswith("snapshot paper-2 as of ")
    listing = ok(run(root, "snapshot", "--list"))
    assert "paper-1" in listing and "paper-2" in listing and "for the referee" in listing
    snaps = json.loads(ok(run(root, "snapshot", "--list", "-f", "json")))
    assert [s["name"] for s in snaps] == ["paper-1", "paper-2"]
    before = tree(root)
    again = run(root, "snapshot", "paper-2")
    assert again.exit_code == 1
    assert again.stderr.startswith("error: snapshot 'paper-2' exists")
    assert tree(root) == before
    # the new snapshot reads the corrected day
    data = json.loads(ok(run(root, "select", "trades", SYM, "-f", "json", "--as-of", "paper-2", "--end", "2025-01-02")))
    assert data[10]["price"] == 12345.5


# -- verify, reindex ------------------------------------------------------------------------
def test_verify_clean_then_corrupted(root):
    out = ok(run(root, "verify"))
    assert "verified 4 files: clean" in out
    victim = root / "trades/2025/01/02/binance@BTC+USDT@USDT_0001.h5"
    data = bytearray(victim.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 8] = bytes(b ^ 0xFF for b in data[mid : mid + 8])
    victim.write_bytes(bytes(data))
    result = run(root, "verify")
    assert result.exit_code == 1
    assert "binance@BTC+USDT@USDT_0001.h5" in result.stdout and "file corrupted" in result.stdout
    assert result.stderr.strip().splitlines() == [f"error: verify found 1 problem(s) in {root}"]
    assert "Traceback" not in result.output


def test_reindex_rebuilds_a_lost_index(root):
    store = store_at(root)
    before_now = store["trades"].select(SYM)
    before_then = store["trades"].select(SYM, as_of="paper-1")
    store.close()
    (root / "trades/_index/binance@BTC+USDT@USDT.h5").unlink()
    assert ok(run(root, "ls", "trades")).splitlines() == [ETH]
    assert ok(run(root, "reindex")).splitlines() == ["trades: 4 files indexed"]
    assert ok(run(root, "ls", "trades")).splitlines() == [SYM, ETH]
    store = store_at(root)
    pd.testing.assert_frame_equal(store["trades"].select(SYM), before_now)
    pd.testing.assert_frame_equal(store["trades"].select(SYM, as_of="paper-1"), before_then)
    assert ok(run(root, "verify")).startswith("verified 4 files: clean")
    assert ok(run(root, "reindex", "trades")).splitlines() == ["trades: 4 files indexed"]


def test_damage_is_one_clean_error_line_never_a_traceback(root):
    victim = root / "trades/2025/01/02/binance@BTC+USDT@USDT_0001.h5"
    data = bytearray(victim.read_bytes())
    n = int(data[19:29])  # the layout JSON's length (see tickstore.splay)
    offset, size, inner, inner_size, _ = json.loads(data[47 : 47 + n])["columns"]["price"][3][0]
    data[offset + inner + inner_size - 3] ^= 4  # inside the compressed prices
    victim.write_bytes(bytes(data))
    result = run(root, "select", "trades", SYM)
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and "binance@BTC+USDT@USDT_0001.h5" in line and "damaged" in line
    index = root / "trades/_index/binance@BTC+USDT@USDT.h5"
    index.write_bytes(index.read_bytes()[:-10])
    for args in (["select", "trades", SYM], ["versions", "trades", SYM, "2025-01-01"]):
        result = run(root, *args)
        assert result.exit_code == 1 and "Traceback" not in result.output
        (line,) = result.stderr.splitlines()
        assert "truncated" in line and "tickstore reindex trades" in line, line
    (root / "_snapshots.json").write_text('{"paper-1": 5}')
    result = run(root, "snapshot", "--list")
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "malformed" in result.stderr


def test_reindex_lists_what_it_skipped_and_removed(root):
    (root / "trades/2025/01/01/notes.h5").write_bytes(b"mine")
    (root / "trades/2025/01/01/.binance@BTC+USDT@USDT_0003.h5.tmp-4242").write_bytes(b"half")
    (root / "trades/_index/binance@BTC+USDT@USDT.h5").write_bytes(b"garbage")
    result = run(root, "reindex")
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "trades: 4 files indexed"
    assert any(x.startswith("  skipped: trades/2025/01/01/notes.h5") for x in lines), lines
    assert any(x.startswith("  removed: trades/2025/01/01/.binance@BTC+USDT@USDT_0003.h5.tmp-4242") for x in lines), lines
    assert result.stderr.strip() == "error: reindex left 1 file(s) out of the index (listed above); the rest is indexed"
    assert (root / "trades/2025/01/01/notes.h5").exists()


def test_reindex_records_a_damaged_version_until_it_is_restored_then_reindex_symbol(root):
    victim = root / "trades/2025/01/01/binance@BTC+USDT@USDT_0002.h5"  # the correction
    good = victim.read_bytes()
    data = bytearray(good)
    data[30] ^= 1  # the layout header
    victim.write_bytes(bytes(data))
    result = run(root, "reindex", "trades")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert any(x.startswith("  skipped: trades/2025/01/01/binance@BTC+USDT@USDT_0002.h5: unreadable") and "damaged" in x
               for x in result.stdout.splitlines()), result.stdout
    result = run(root, "select", "trades", SYM, "--start", "2025-01-01", "--end", "2025-01-02")
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.stderr.splitlines()
    assert "binance@BTC+USDT@USDT_0002.h5" in line and "restored" in line and "tickstore reindex trades" in line, line
    assert ok(run(root, "select", "trades", ETH, "--format", "csv")).count("\n") == 21  # other symbols read on: header + 20 rows
    result = run(root, "verify")
    assert result.exit_code == 1 and "binance@BTC+USDT@USDT_0002.h5: damaged" in result.stdout
    victim.write_bytes(good)
    assert ok(run(root, "reindex", "trades", "--symbol", SYM)).splitlines() == ["trades: 3 files indexed"]
    assert ok(run(root, "verify")).startswith("verified 4 files: clean")
    result = run(root, "reindex", "--symbol", "BTCUSDT")
    assert result.exit_code == 1 and result.stderr.startswith("error: malformed symbol 'BTCUSDT'")


def test_a_full_disk_is_one_clean_error_line(root, monkeypatch):
    import errno

    from tickstore import diskio
    from tests.tickstore.test_faults import FaultyOS

    before = tree(root)
    monkeypatch.setattr(diskio, "os", FaultyOS(fail_at=0, code=errno.ENOSPC, sticky=True))
    result = run(root, "snapshot", "paper-2")
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and "_snapshots.json" in line and "No space left on device" in line, line
    assert tree(root) == before


# -- bad input ------------------------------------------------------------------------------
BAD = {
    "unknown table": (["select", "nosuch", SYM], "error: unknown table 'nosuch'"),
    "malformed symbol": (["select", "trades", "BTCUSDT"], "error: malformed symbol 'BTCUSDT'"),
    "escaping symbol": (["select", "trades", "binance:../../etc"], "error: malformed symbol"),
    "bad as-of time": (["select", "trades", SYM, "--as-of", "2025-13-45 25:00"], "error: as_of="),
    "unknown snapshot": (["select", "trades", SYM, "--as-of", "paper-9"], "error: no snapshot named 'paper-9'"),
    "bad start": (["select", "trades", SYM, "--start", "yesterday?"], "error: start="),
    "empty window": (["select", "trades", SYM, "--start", "2025-01-02", "--end", "2025-01-01"], "error: start "),
    "unknown column": (["select", "trades", SYM, "--columns", "price,vwap"], "error: table 'trades' has no column 'vwap'"),
    "ls unknown table": (["ls", "nosuch"], "error: unknown table 'nosuch'"),
    "ls bad symbol": (["ls", "trades", "nope"], "error: malformed symbol 'nope'"),
    "versions bad date": (
        ["versions", "trades", SYM, "2025-01-01T12:00"],
        "error: date=2025-01-01 12:00:00+00:00 is not a UTC midnight",
    ),
    "bad snapshot name": (["snapshot", "1 bad name"], "error: snapshot name '1 bad name'"),
    "reindex unknown table": (["reindex", "nosuch"], "error: unknown table 'nosuch'"),
    "reindex empty table": (["reindex", "funding"], "error: table 'funding' holds no data"),
    "time past 2262": (["select", "trades", SYM, "--start", "2300-01-01"], "error: start='2300-01-01' is outside the times"),
    "as-of past 2262": (["select", "trades", SYM, "--as-of", "2262-04-12"], "error: as_of='2262-04-12' is outside the times"),
    "table with a newline": (["select", "trades\n", SYM], "error: unknown table 'trades\\n'"),
    "symbol with a newline": (["select", "trades", SYM + "\n"], "error: malformed symbol"),
    "symbol with a tab": (["select", "trades", "binance:BTC/\tUSDT"], "error: malformed symbol"),
    "snapshot with a newline": (["snapshot", "snap\n"], "error: snapshot name 'snap\\n'"),
}


@pytest.mark.parametrize("args,message", list(BAD.values()), ids=list(BAD))
def test_bad_input_is_one_clean_line_and_changes_nothing(root, args, message):
    before = tree(root)
    result = run(root, *args)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert "Traceback" not in result.output
    assert tree(root) == before


def test_missing_root_is_an_error_and_is_not_created(tmp_path):
    missing = tmp_path / "no-store-here"
    result = run(missing, "ls")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: no tickstore at {missing} (the folder does not exist); give --root DIR or set TICKSTORE_ROOT"
    )
    assert not missing.exists()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    result = run(a_file, "ls")
    assert result.exit_code == 1 and result.stderr == f"error: --root {a_file} is a file, not a tickstore folder\n"


def test_root_from_the_environment(root):
    result = CliRunner(env={"TICKSTORE_ROOT": str(root)}).invoke(main, ["ls", "trades"])
    assert result.exit_code == 0 and result.stdout.splitlines() == [SYM, ETH]


# -- demo -----------------------------------------------------------------------------------
# The collectors package replaces `demo` with its live demo through a plugin; these tests
# are about the built-in as-of demo, so they run the CLI with plugins switched off.
BUILTIN_ONLY = {**os.environ, "TICKSTORE_NO_PLUGINS": "1"}


def _as_of_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if " as_of=" in line and "price_checksum=" in line]


def test_demo_subprocess_shows_as_of_stability(tmp_path, data_dir):
    demo_root = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "tickstore.cli", "demo", "--root", str(demo_root), "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=BUILTIN_ONLY,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "9999 real Binance USD-M BTCUSDT trades" in out
    lines = _as_of_lines(out)
    assert len(lines) == 8  # insert, snapshot, 4 appends, correction, delete
    assert all(line.endswith("same as then") for line in lines), lines
    rows = [int(line.split("rows=")[1].split()[0]) for line in lines]
    assert rows == [7999, 7999, 8499, 8999, 9499, 9999, 9999, 0]
    checksums = [line.split("price_checksum=")[1].split()[0] for line in lines]
    assert checksums[-3] != checksums[-2]  # the correction changed a price (and only later reads see it)
    assert "100 skipped (same trade ids)" in out
    assert "read_pin: rows=7999" in out and "same as the pinned select" in out
    assert "verified 7 files: clean" in out
    assert "CHANGED" not in out and "DIFFERENT" not in out
    # the store it leaves behind answers the CLI the same way
    then = json.loads(ok(run(demo_root, "select", "trades", SYM, "-f", "json", "--as-of", "after-backfill", "-n", "3")))
    assert [r["trade_id"] for r in then] == [42377944, 42377945, 42377946]
    assert ok(run(demo_root, "select", "trades", SYM)).strip() == "(no rows)"


def test_demo_console_script_defaults_to_a_fresh_temp_dir(tmp_path):
    exe = shutil.which("tickstore")
    if exe is None:
        pytest.skip("console script 'tickstore' is not on PATH (pip install -e .)")
    own_store = tmp_path / "my-real-store"
    env = {**BUILTIN_ONLY, "TMPDIR": str(tmp_path), "TICKSTORE_ROOT": str(own_store)}
    proc = subprocess.run([exe, "demo"], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith(f"demo store: {tmp_path}/tickstore-demo-")
    assert Path(first.split(": ", 1)[1], "trades").is_dir()
    assert not own_store.exists()  # the user's own store is never touched
    assert all(line.endswith("same as then") for line in _as_of_lines(proc.stdout))


def test_demo_refuses_a_non_empty_root(root):
    before = tree(root)
    for args in (["demo", "--root", str(root)], ["--root", str(root), "demo"]):  # the global --root counts too
        proc = subprocess.run(
            [sys.executable, "-m", "tickstore.cli", *args], capture_output=True, text=True, timeout=120, env=BUILTIN_ONLY
        )
        assert proc.returncode == 1, proc.stdout
        assert proc.stderr == f"error: demo root {root} is not an empty folder; give a new or empty one\n"
    assert tree(root) == before


def test_run_demo_without_shared_data_uses_generated_trades(tmp_path):
    lines = []
    steps = run_demo(tmp_path / "demo", data_dir=tmp_path / "nothing-here", out=lines.append)
    assert lines[0].startswith("data: 10000 generated trades")
    assert [s.rows for s in steps] == [8000, 8000, 8500, 9000, 9500, 10000, 10000, 0]
    assert all(s.same and s.rows_now == s.rows and s.checksum_now == s.checksum for s in steps)
    assert steps[1].as_of == "after-backfill"
    assert len({s.checksum for s in steps}) == 7  # each step changed the answer (snapshot = insert)


# -- plugins --------------------------------------------------------------------------------
def test_plugins_add_and_replace_commands(tmp_path):
    site = tmp_path / "site"
    (site / "tsplugin-0.1.dist-info").mkdir(parents=True)
    (site / "tsplugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: tsplugin\nVersion: 0.1\n")
    (site / "tsplugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[tickstore.cli]\nhello = tsplugin_mod:hello\nls = tsplugin_mod:listing\nbroken = tsplugin_missing:cmd\n"
    )
    (site / "tsplugin_mod.py").write_text(
        textwrap.dedent(
            '''
            import click

            @click.command()
            def hello():
                """Say hello from a plugin."""
                click.echo("hello from plugin")

            @click.command()
            def listing():
                """A listing that replaces the built-in one."""
                click.echo("listing from plugin")
            '''
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}

    def cli(*args, env=env):
        return subprocess.run(
            [sys.executable, "-m", "tickstore.cli", *args], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
        )

    listing = cli("--help")
    assert listing.returncode == 0, listing.stderr
    assert "Say hello from a plugin." in listing.stdout
    assert "A listing that replaces the built-in one." in listing.stdout
    assert "select" in listing.stdout  # built-ins are still there
    assert cli("hello").stdout == "hello from plugin\n"
    assert cli("ls").stdout == "listing from plugin\n"
    broken = cli("broken", "--whatever")
    assert broken.returncode == 1
    assert broken.stderr.startswith("error: plugin command 'broken' failed to load (ModuleNotFoundError")
    assert len(broken.stderr.splitlines()) == 1
    builtin_only = cli("--help", env={**env, "TICKSTORE_NO_PLUGINS": "1"})
    assert "hello" not in builtin_only.stdout and "List tables" in builtin_only.stdout


# -- start-up -------------------------------------------------------------------------------
def test_export_choices_agree_with_the_exporter():
    from tickstore import cli, export

    assert cli.EXPORT_FORMATS == export.FORMATS and cli.EXPORT_LAYOUTS == export.LAYOUTS


HEAVY = ("pandas", "blosc2", "tables", "numpy", "ccxt", "talib", "dask", "websocket", "tickstore.store", "tickstore.splay",
         "collectors.cli", "collectors.venues", "collectors.collector", "research", "importers.cli")


def test_help_imports_neither_the_store_nor_the_plugins():
    """`tickstore --help` lists every command (plugins' help read from their source) without
    importing numpy, pandas, blosc2, PyTables, the store or any plugin: the start-up cost
    is Python's and click's (benchmarks/README.md has the timings)."""
    probe = (
        "import sys\n"
        "from tickstore.cli import main\n"
        "try:\n"
        "    main(['--help'], prog_name='tickstore')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "LOADED []" in out.stdout, out.stdout[-300:]
    assert "Say hello" not in out.stdout
    for command in ("select", "export", "verify", "replay", "collect", "import"):
        assert f"\n  {command} " in out.stdout


def test_select_in_a_new_process_prints_without_pandas(root):
    """`python -m tickstore.cli select trades SYM -n 10` prints the rows, and the same
    command run through ``main`` in a new process imports none of NOT_ON_THE_READ_PATH
    (the one list of what a reading process must not import: pandas, tables, blosc2, the
    write machinery, importlib.metadata...) nor any of their submodules: neither its
    plugin lookup nor its output path adds any of them."""
    from .test_select_columns import read_path_offenders

    args = ["--root", str(root), "select", "trades", SYM, "-n", "10"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "tickstore.cli", *args], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["ts", "recv_ts", "trade_id", "price", "qty", "side", "kind"] and len(lines) == 11
    assert [int(line.split()[4]) for line in lines[1:]] == list(range(1, 11))
    probe = (
        "import json, sys\n"
        "before = sorted(sys.modules)\n"
        "from tickstore.cli import main\n"
        "main(json.loads(sys.argv[1]), standalone_mode=False)\n"
        "print('MODULES', json.dumps([before, sorted(sys.modules)]))\n"
    )
    for fmt in ("table", "csv", "json"):
        out = subprocess.run([sys.executable, "-c", probe, json.dumps([*args, "-f", fmt])], capture_output=True, text=True,
                             timeout=120, env=env)
        assert out.returncode == 0, out.stderr
        body, _, modules = out.stdout.rpartition("MODULES ")
        assert (len(json.loads(body)) if fmt == "json" else len(body.splitlines()) - 1) == 10, body  # the rows came out
        before, after = json.loads(modules)
        assert "tickstore.render" in after and "tickstore.entry_points" in after  # it printed and looked up plugins
        assert read_path_offenders(before, after) == [], fmt


def test_the_module_entry_point_help_imports_nothing_heavy():
    """``python -m tickstore.cli --help`` (what the console script runs: the module, then
    ``main()``), read from ``-X importtime``: every module the process imported is
    listed there, so none of the heavy ones may appear."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "tickstore.cli", "--help"], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "\n  select " in out.stdout and "\n  collect " in out.stdout
    imported = {line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert {"tickstore", "tickstore.errors", "click"} <= imported  # the listing is read correctly
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    assert not {m for m in imported if m.split(".")[0] in ("pandas", "numpy", "tables", "blosc2", "ccxt", "research")}
