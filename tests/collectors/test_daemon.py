"""The collector daemon (several feeds in one process), its config files and `status`,
against the simulated exchange on 127.0.0.1 and a real store in tmp_path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from collectors.cli import status
from collectors.collector import CollectorConfig, CollectorError, load_config
from collectors.daemon import Daemon, load_feeds, save_config
from collectors.exchanges.binance import Channel, Market
from collectors.session import BackoffPolicy
from collectors.simulator import Simulator, SimulatorConfig
from collectors.status import status_frame
from tests.collectors.helpers import wait_for_store, wait_until
from tickstore import Tickstore

SPOT, PERP = "binance:BTC/USDT", "binance:ETH/USDT:USDT"




@pytest.fixture
def sim():
    s = Simulator(SimulatorConfig(symbols=(SPOT, PERP), seed=5, trades_per_tick=3)).start()
    yield s
    s.stop()


def _two_feeds_toml(sim, tmp_path) -> str:
    spot, usdm = sim.endpoints(Market.SPOT), sim.endpoints(Market.USDM)
    path = tmp_path / "feeds.toml"
    path.write_text(
        f"""
[collector]
store = "{tmp_path / 'store'}"
flush_interval_s = 0.5

[backoff]
initial_s = 0.05
max_s = 0.2

[[feeds]]
name = "spot"
symbols = ["{SPOT}"]
channels = ["trades", "depth"]
[feeds.endpoints.spot]
ws = "{spot.ws}"
rest = "{spot.rest}"

[[feeds]]
name = "usdm"
symbols = ["{PERP}"]
[feeds.endpoints.usdm]
ws = "{usdm.ws}"
rest = "{usdm.rest}"
[feeds.book]
levels = 10
"""
    )
    return str(path)


def test_feeds_config_merges_shared_sections_and_round_trips(sim, tmp_path):
    feeds = load_feeds(_two_feeds_toml(sim, tmp_path))
    assert [f.name for f in feeds] == ["spot", "usdm"]
    assert feeds[0].channels == (Channel.TRADES, Channel.DEPTH) and feeds[1].book_levels == 10
    assert feeds[0].book_levels == 5 and feeds[1].flush_interval_s == 0.5 and feeds[0].backoff.max_s == 0.2
    assert set(feeds[0].endpoints) == {Market.SPOT} and set(feeds[1].endpoints) == {Market.USDM}
    assert feeds[0].journal_dir == tmp_path / "store-journal" / "spot"
    saved = save_config(feeds, tmp_path / "saved.toml")
    assert load_feeds(saved) == feeds
    # the single-feed form stays valid, and round-trips in its own form
    single = load_config("collectors/configs/binance_btc_eth.toml", overrides={"store": str(tmp_path / "s")})
    assert load_feeds("collectors/configs/binance_btc_eth.toml", overrides={"store": str(tmp_path / "s")}) == (single,)
    text = save_config([single], tmp_path / "single.toml").read_text()
    assert "[collector]" in text and "[[feeds]]" not in text
    assert load_config(tmp_path / "single.toml") == single
    # a non-default config with every kind of field survives too
    odd = CollectorConfig(store=str(tmp_path / "x"), symbols=(PERP,), channels=(Channel.MARK,), name="odd",
                          backoff=BackoffPolicy(initial_s=0.25, max_s=4, factor=3.0, jitter=0.0),
                          endpoints={Market.USDM: sim.endpoints(Market.USDM)}, book_interval_ms=250)
    assert load_feeds(save_config([odd, feeds[0]], tmp_path / "odd.toml")) == (odd, feeds[0])


def test_feeds_config_errors_name_the_field(tmp_path):
    def check(text: str, match: str):
        p = tmp_path / "c.toml"
        p.write_text('[collector]\nstore = "/tmp/x"\n' + text)
        with pytest.raises(CollectorError, match=match):
            load_feeds(p)

    feed = '[[feeds]]\nname = "a"\nsymbols = ["binance:BTC/USDT"]\n'
    check('[[feeds]]\nsymbols = ["binance:BTC/USDT"]\n', r"feeds\[0\]\.name: missing")
    check(feed + '[[feeds]]\nname = "b"\n', r"feeds\[1\]\.symbols: missing")
    check(feed + feed, r"feeds\[1\]\.name: 'a' repeats feeds\[0\]\.name")
    check(feed + 'channels = ["candles"]\n', r"feeds\[0\]\.channels: unknown \['candles'\]")
    check(feed + 'flush_interval_s = "1"\n', r"feeds\[0\]\.flush_interval_s: expected a number, got '1'")
    check(feed + "[feeds.book]\ndepth = 3\n", r"feeds\[0\]\.book\.depth: unknown key")
    check(feed + "[feeds.books]\nlevels = 3\n", r"feeds\[0\]\.books: unknown section")
    check('[[feeds]]\nname = "a b"\nsymbols = ["binance:BTC/USDT"]\n', r"feeds\[0\]\.name must be letters")
    check(feed + 'journal = "/tmp/j"\n[[feeds]]\nname = "b"\nsymbols = ["binance:ETH/USDT"]\njournal = "/tmp/j"\n',
          r"feeds\[1\]\.journal: '/tmp/j' is also the journal of feeds\[0\]")
    check("feeds = 3\n", r"collector\.feeds: unknown key")  # inside [collector]
    p = tmp_path / "top.toml"
    p.write_text('feeds = 3\n[collector]\nstore = "/tmp/x"\n')
    with pytest.raises(CollectorError, match=r"feeds: must be one or more \[\[feeds\]\] tables, got 3"):
        load_feeds(p)


def test_status_after_a_run_reports_streams_lag_and_todays_gaps(sim, tmp_path):
    root = tmp_path / "store"
    feeds = load_feeds(_two_feeds_toml(sim, tmp_path))
    d = Daemon(feeds).start()
    try:
        wait_until(lambda: all(c.stats.rows["trades"] > 20 for c in d.collectors), 60, "trades of both feeds")
        sim.drop(Market.USDM)  # one disconnect gap, today, for the perp only
        wait_until(lambda: d.collectors[1].stats.gaps >= 1, 60, "the disconnect gap")
        wait_until(lambda: "mark" in set(status_frame(root).query("symbol == @PERP")["kind"]), 60,
                   "the perp's mark price in the status")
        live = status_frame(root)
        assert live["running"].all()
    finally:
        d.stop()
    files = sorted(p.name for p in root.glob("_collector_status*.json"))
    assert files == ["_collector_status.spot.json", "_collector_status.usdm.json"]
    doc = json.loads((root / "_collector_status.usdm.json").read_text())
    assert doc["running"] is False and doc["pid"] == os.getpid() and doc["symbols"] == [PERP]

    frame = status_frame(root)
    assert not frame["running"].any()
    trades = frame[frame["kind"] == "trade"].set_index("symbol")
    with Tickstore(root) as store:
        for sym in (SPOT, PERP):
            stored = store["trades"].select(sym)
            assert trades.loc[sym, "events"] == len(stored)  # every parsed trade reached the store
            assert trades.loc[sym, "last_recv"] == stored["recv_ts"].max()
            # the lag of the last trade: its receive time less its exchange time, in ms (not a
            # bound on it: how late a busy machine reads a frame is not the collector's to say)
            last = stored[stored["recv_ts"] == stored["recv_ts"].max()]
            lags = {round((r - t).value / 1e6, 3) for t, r in zip(last.index, last["recv_ts"])}
            assert trades.loc[sym, "lag_ms"] in lags and trades.loc[sym, "lag_ms"] >= 0
        gaps = store["gaps"].select(PERP)
    assert trades.loc[PERP, "gaps_today"] == len(gaps) >= 1
    assert trades.loc[SPOT, "gaps_today"] == 0
    assert set(frame.loc[frame["symbol"] == SPOT, "kind"]) == {"trade", "depthdiff"}  # its channels only
    assert "mark" in set(frame.loc[frame["symbol"] == PERP, "kind"])
    # tomorrow the ledger of today no longer counts
    tomorrow = pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=1)
    assert status_frame(root, today=tomorrow)["gaps_today"].sum() == 0

    out = CliRunner().invoke(status, ["--root", str(root), "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert {(r["feed"], r["symbol"], r["kind"]) for r in rows} == set(zip(frame["feed"], frame["symbol"], frame["kind"]))
    table = CliRunner().invoke(status, ["--root", str(root)])
    assert table.exit_code == 0 and "gaps_today" in table.output and PERP in table.output


def test_status_without_a_collector_says_so(tmp_path):
    Tickstore(tmp_path / "empty").close()
    out = CliRunner().invoke(status, ["--root", str(tmp_path / "empty")])
    assert out.exit_code != 0
    assert "no collector status" in str(out.exception)


def test_sigterm_stops_two_feeds_after_flushing_everything(sim, tmp_path):
    cfg_path = _two_feeds_toml(sim, tmp_path)
    saved = tmp_path / "running.toml"
    code = "import sys; from collectors.cli import collect; collect(sys.argv[1:])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--config", cfg_path, "--log-level", "WARNING", "--save-config", str(saved)],
        cwd=os.getcwd(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        root = tmp_path / "store"
        wait_until(lambda: len(list(root.glob("_collector_status*.json"))) == 2, 60, "both feeds flushing")
        wait_for_store(root, lambda store: all(len(store["trades"].select(s)) > 20 for s in (SPOT, PERP))
                       and len(store["book_10"].select(PERP)) > 0 and len(store["book"].select(SPOT)) > 0, 60,
                       "trades and book rows of both feeds stored")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"stopped spot:" in out and b"stopped usdm:" in out
    assert load_feeds(saved) == load_feeds(cfg_path)
    with Tickstore(root) as store:
        for sym in (SPOT, PERP):
            stored = sorted(store["trades"].select(sym)["trade_id"])
            sent = sorted(sim.sent.trade_ids[sym])
            # no hole and nothing invented; the simulator may have sent more after the stop
            assert len(stored) > 20 and set(stored) <= set(sent)
            assert stored == list(range(stored[0], stored[0] + len(stored)))
        assert len(store["book_10"].select(PERP)) > 0 and len(store["book"].select(SPOT)) > 0
    for feed in load_feeds(cfg_path):
        from collectors.journal import Journal

        with Journal(feed.journal_dir) as j:
            assert list(j.pending()) == []  # every journaled record was flushed and committed
        assert json.loads(feed.status_path.read_text())["running"] is False
