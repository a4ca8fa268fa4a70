"""The live collector on Bybit v5 and Hyperliquid: the simulated venue over loopback, a real
store, the gap ledger; the daemon with all three venues; ``tickstore demo --venue``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter

import pandas as pd
import pytest

from collectors.collector import Collector, CollectorConfig, CollectorError
from collectors.daemon import load_feeds, save_config
from collectors.exchanges import BadFrame
from collectors.exchanges import bybit as bb
from collectors.exchanges import hyperliquid as hl
from collectors.exchanges.binance import Channel, Market
from collectors.journal import Journal, RecordKind, read_records
from collectors.session import BackoffPolicy
from collectors.simulator import Simulator, SimulatorConfig
from collectors.venues import Venue, feed_class
from tests.collectors.helpers import assert_nothing_lost, book_rows_after, sent_before_stop, wait_for_store, wait_until
from tickstore import Tickstore

FAST = BackoffPolicy(initial_s=0.05, max_s=0.2)
BSPOT, BPERP = "bybit:BTC/USDT", "bybit:ETH/USDT:USDT"
HBTC, HETH = "hyperliquid:BTC/USDC:USDC", "hyperliquid:ETH/USDC:USDC"
VENUES = {
    # venue: (symbols, the symbol whose connection the faults hit, its market)
    Venue.BYBIT: ((BSPOT, BPERP), BPERP, bb.Category.LINEAR),
    Venue.HYPERLIQUID: ((HBTC, HETH), HETH, hl.Market.PERP),
}


@pytest.fixture(params=list(VENUES), ids=lambda v: v.value)
def venue(request):
    return request.param


@pytest.fixture
def sim(venue):
    s = Simulator(SimulatorConfig(symbols=VENUES[venue][0], seed=3, trades_per_tick=3, liquidation_prob=0.2)).start()
    yield s
    s.stop()


def config(sim, venue, tmp_path, **kw) -> CollectorConfig:
    kw.setdefault("flush_interval_s", 0.5)
    kw.setdefault("backoff", FAST)
    return CollectorConfig(
        store=str(tmp_path / "store"), journal=str(tmp_path / "journal"), venue=venue, symbols=VENUES[venue][0],
        endpoints={m: sim.endpoints(m) for m in sim.markets}, **kw,
    )


def gaps_of(store, symbols) -> pd.DataFrame:
    return store["gaps"].select(list(symbols))


def test_clean_run_loses_nothing(sim, venue, tmp_path):
    symbols = VENUES[venue][0]
    root = tmp_path / "store"

    def enough(store) -> bool:  # what the assertions below need, however slow the machine
        perp = symbols[1]
        return (all(len(store["book"].select(s)) >= 15 and (len(store["quotes"].select(s)) >= 10 or s == BSPOT)
                    for s in symbols)
                and len(store["mark"].select(perp)) >= 2 and len(store["open_interest"].select(perp)) >= 2
                and (venue is not Venue.BYBIT or len(store["liquidations"].select(list(symbols))) >= 1))

    with Collector(config(sim, venue, tmp_path)) as c:
        wait_until(lambda: all(len(sim.sent.trade_ids[s]) > 50 for s in symbols), 60, "50 trades sent per pair")
        wait_for_store(root, enough, 60, "book rows, quotes, marks, open interest (and a liquidation) stored")
        before_stop = sent_before_stop(sim, symbols, root)
    assert c.stats.malformed == c.stats.unknown_streams == c.stats.store_errors == c.stats.venue_errors == 0
    assert c.stats.resubscribes == c.stats.rows_rejected == 0
    with Tickstore(tmp_path / "store") as store:
        for sym in symbols:
            stored = store["trades"].select(sym)["trade_id"]
            assert len(before_stop[sym]) > 50
            assert_nothing_lost(stored, before_stop[sym], set(sim.sent.trade_ids[sym]), sym)
            book = store["book"].select(sym)
            assert len(book) >= 15 and (book["bid_px_1"] < book["ask_px_1"]).all()
            assert book.index.is_unique and (book.index.asi8 % 100_000_000 == 0).all()  # the 100 ms grid
            assert book[[f"bid_px_{i}" for i in range(1, 6)]].notna().all().all()
            quotes = store["quotes"].select(sym)
            assert len(quotes) >= 10 or sym == BSPOT  # Bybit spot tickers carry no bid/ask
        perp = symbols[1]
        mark, oi = store["mark"].select(perp), store["open_interest"].select(perp)
        assert len(mark) >= 2 and len(oi) >= 2 and (mark["funding_rate"].abs() < 0.01).all()
        assert (oi["oi_value"] > oi["oi"]).all()  # contracts times a price in the thousands
        liqs = store["liquidations"].select(list(symbols))
        assert (len(liqs) >= 1) if venue is Venue.BYBIT else liqs.empty  # Hyperliquid: no public stream
        assert gaps_of(store, symbols).empty


def test_dropped_connection_is_in_the_gap_ledger_and_the_book_resyncs(sim, venue, tmp_path):
    symbols, sym, market = VENUES[venue]
    with Collector(config(sim, venue, tmp_path)) as c:
        wait_until(lambda: c.stats.rows["book"] > 20, 60, "book rows")
        sim.drop(market)
        n = len(sim.sent.trade_ids[sym])
        wait_until(lambda: len(sim.sent.trade_ids[sym]) > n + 20, 60, "trades after the reconnect")
        wait_until(lambda: c.books[sym].synced, 60, "the book synced again")
        wait_for_store(tmp_path / "store", lambda store: book_rows_after(store, sym, "resync", from_end=True) >= 5, 60,
                       "5 book rows after the resync")
        assert c.sessions[-1].stats.connects >= 2
        before_stop = sent_before_stop(sim, [sym], tmp_path / "store")[sym]
    with Tickstore(tmp_path / "store") as store:
        gaps = gaps_of(store, [sym])
        drop = gaps[gaps["cause"] == "disconnect"]
        assert len(drop) == 1 and drop["stream"].iloc[0] == "*"
        resync = gaps[gaps["cause"] == "resync"]
        assert len(resync) == 1 and resync["stream"].iloc[0] == "depth"
        assert resync.index[0] <= drop["end_ts"].iloc[0] + pd.Timedelta(seconds=2)
        book = store["book"].select(sym)
        assert (book.index > resync["end_ts"].iloc[0]).sum() >= 5  # collecting again after the gap
        trades = store["trades"].select(sym)["trade_id"]  # everything sent intact arrived; a resent backlog once
        assert_nothing_lost(trades, before_stop, set(sim.sent.trade_ids[sym]), sym)
        if venue is Venue.BYBIT:
            assert gaps_of(store, [BSPOT]).empty  # the spot connection was not touched


def test_skipped_sequence_number(sim, venue, tmp_path):
    symbols, sym, _ = VENUES[venue]
    with Collector(config(sim, venue, tmp_path)) as c:
        wait_until(lambda: c.stats.rows["book"] > 20, 60, "book rows")
        skipped = sim.sent.skipped_updates
        sim.skip_sequence(sym)
        wait_until(lambda: sim.sent.skipped_updates > skipped, 60, "the withheld book update")
        if venue is Venue.BYBIT:
            wait_until(lambda: c.books[sym].stats.resyncs == 1, 60, "the resync")
            wait_for_store(tmp_path / "store", lambda store: book_rows_after(store, sym, "resync") >= 5, 60,
                           "5 book rows after the resync")
        rows = c.stats.rows["book"]
        wait_until(lambda: c.stats.rows["book"] > rows + 10, 60, "book rows after it")
    with Tickstore(tmp_path / "store") as store:
        gaps = gaps_of(store, symbols)
        book = store["book"].select(sym)
        if venue is Venue.BYBIT:
            # the u chain broke: the topic was resubscribed, Bybit sent a snapshot, the book resynced
            assert list(gaps["cause"]) == ["sequence_break", "resync"] and set(gaps["symbol"]) == {sym}
            assert "expected U=" in gaps["detail"].iloc[0]
            assert c.stats.resubscribes == 1
            assert (book.index > gaps.index[-1]).sum() >= 5
        else:
            # every l2Book is the whole book and has no sequence number: nothing to notice or repair
            assert gaps.empty and c.stats.resubscribes == 0
            assert (book["bid_px_1"] < book["ask_px_1"]).all()


def test_malformed_frames_are_counted_ledgered_and_survived(sim, venue, tmp_path):
    symbols, sym, market = VENUES[venue]
    # books only, so the cut frame is certainly a book update
    with Collector(config(sim, venue, tmp_path, channels=(Channel.DEPTH,))) as c:
        wait_until(lambda: c.stats.rows["book"] > 20, 60, "book rows")
        sim.malformed(2, market)
        wait_until(lambda: c.stats.malformed == 2, 60, "two malformed frames")
        if venue is Venue.BYBIT:
            wait_until(lambda: c.books[sym].stats.resyncs >= 1, 60, "the resync")
        rows = c.stats.rows["book"]
        wait_until(lambda: c.stats.rows["book"] > rows + 10, 60, "book rows after it")
        assert all(s._thread.is_alive() for s in c.sessions)
    with Tickstore(tmp_path / "store") as store:
        gaps = gaps_of(store, [sym])
        causes = Counter(gaps["cause"])
        assert causes["malformed"] == 2 and all("MalformedFrame" in d for d in gaps[gaps["cause"] == "malformed"]["detail"])
        if venue is Venue.BYBIT:  # a lost delta breaks the chain: resubscribed and resynced
            assert causes["sequence_break"] >= 1 and causes["resync"] >= 1 and c.stats.resubscribes >= 1
        else:  # a lost l2Book is replaced by the next one
            assert set(causes) == {"malformed"}


def test_bybit_channels_map_to_topics_and_unsubscribed_events_are_dropped(tmp_path):
    cfg = CollectorConfig(store=str(tmp_path / "s"), venue=Venue.BYBIT, symbols=(BSPOT, BPERP),
                          channels=(Channel.TRADES, Channel.MARK), book_levels=100, streams_per_connection=2)
    c = Collector(cfg)
    assert {t: list(c._streams[t]) for t, _, _ in c._session_specs} == {
        "bybit-spot-0": ["publicTrade.BTCUSDT"], "bybit-linear-0": ["publicTrade.ETHUSDT", "tickers.ETHUSDT"]}
    assert c.feed.dropped_events == {bb.Quote}  # tickers for mark only: no quotes rows
    assert c._connections[1].ping_payload == {"op": "ping"}
    depth = Collector(CollectorConfig(store=str(tmp_path / "s"), venue=Venue.BYBIT, symbols=(BPERP,), book_levels=100))
    assert "orderbook.200.ETHUSDT" in depth._streams["bybit-linear-0"]


def test_config_errors_name_the_field(tmp_path):
    def check(text: str, match: str):
        p = tmp_path / "c.toml"
        p.write_text('[collector]\nstore = "/tmp/x"\n' + text)
        with pytest.raises(CollectorError, match=match):
            load_feeds(p)

    by = '[[feeds]]\nname = "by"\nsymbols = ["bybit:BTC/USDT:USDT"]\n'
    check(by + 'exchange = "kraken"\n', r"feeds\[0\]\.exchange: must be one of \['binance', 'binanceus', 'bybit', 'hyperliquid'\], got 'kraken'")
    check(by + 'exchange = "bybit"\nvenue = "binance"\n', r"feeds\[0\]\.exchange: 'bybit' contradicts venue 'binance'")
    check(by + 'channels = ["agg_trades"]\n', r"feeds\[0\]\.channels: \['agg_trades'\] not offered by bybit")
    check(by + '[feeds.endpoints.usdm]\nws = "ws://x"\n', r"feeds\[0\]\.endpoints\.usdm: unknown market of bybit; known: \['linear', 'spot', 'inverse'\]")
    check(by + '[feeds.book]\nlevels = 300\n', r"feeds\[0\]\.book_levels: bybit books go to 200 levels")
    check('[[feeds]]\nname = "hl"\nvenue = "hyperliquid"\nsymbols = ["bybit:BTC/USDT"]\n',
          r"feeds\[0\]\.symbols: 'bybit:BTC/USDT' is not a hyperliquid tickstore symbol")
    check('[[feeds]]\nname = "hl"\nsymbols = ["hyperliquid:NOPE/USDC:USDC"]\n', r"feeds\[0\]\.symbols: hyperliquid: unknown market 'NOPE/USDC:USDC'")
    check('[[feeds]]\nname = "hl"\nsymbols = ["hyperliquid:BTC/USDC:USDC"]\n[feeds.book]\nlevels = 50\n',
          r"feeds\[0\]\.book_levels: hyperliquid l2Book frames have 20 levels a side, got 50")
    check('[[feeds]]\nname = "hl"\nsymbols = ["hyperliquid:BTC/USDC:USDC"]\nchannels = ["liquidations"]\n',
          r"feeds\[0\]\.channels: hyperliquid offers no public liquidation stream")
    sample = load_feeds("collectors/configs/three_venues.toml", overrides={"store": str(tmp_path / "s")})
    assert [(f.name, f.venue) for f in sample] == [("binance", Venue.BINANCE), ("bybit", Venue.BYBIT), ("hyperliquid", Venue.HYPERLIQUID)]
    assert load_feeds(save_config(sample, tmp_path / "sample.toml")) == sample
    p = tmp_path / "infer.toml"
    p.write_text('[collector]\nstore = "/tmp/x"\nsymbols = ["hyperliquid:BTC/USDC:USDC"]\n')
    assert load_feeds(p)[0].venue is Venue.HYPERLIQUID  # the exchange every symbol names
    with pytest.raises(CollectorError, match=r"endpoints must map Category \(\['linear', 'spot', 'inverse'\]\) to Endpoints"):
        CollectorConfig(store="/tmp/x", venue=Venue.BYBIT, symbols=(BPERP,), endpoints={Market.USDM: None})
    with pytest.raises(CollectorError, match=r"symbols: 'bybit:ETH/USDT:USDT' is not a binance tickstore symbol"):
        CollectorConfig(store="/tmp/x", symbols=(BPERP,))  # venue defaults to binance


# -- the daemon: three venues, one process --------------------------------------------------------
BINANCE = ("binance:BTC/USDT", "binance:ETH/USDT:USDT")


def _three_venues_toml(sim, tmp_path) -> str:
    def ep(market) -> str:
        e = sim.endpoints(market)
        return f'ws = "{e.ws}"\nrest = "{e.rest}"\n'

    path = tmp_path / "three.toml"
    path.write_text(
        f"""
[collector]
store = "{tmp_path / 'store'}"
flush_interval_s = 0.5

[backoff]
initial_s = 0.05
max_s = 0.2

[journal]
keep_committed = true

[[feeds]]
name = "binance"
symbols = {json.dumps(list(BINANCE))}
[feeds.endpoints.spot]
{ep(Market.SPOT)}[feeds.endpoints.usdm]
{ep(Market.USDM)}
[[feeds]]
name = "bybit"
exchange = "bybit"
symbols = ["{BSPOT}", "{BPERP}"]
[feeds.endpoints.spot]
{ep(bb.Category.SPOT)}[feeds.endpoints.linear]
{ep(bb.Category.LINEAR)}
[[feeds]]
name = "hyperliquid"
exchange = "hyperliquid"
symbols = ["{HBTC}", "{HETH}"]
[feeds.endpoints.perp]
{ep(hl.Market.PERP)}"""
    )
    return str(path)


def _journaled_trades(feed) -> set:
    """(symbol, trade_id) of every trade in a feed's kept journal, through its venue's parsers."""
    venue = feed_class(feed.venue)(feed)
    out = set()
    for rec in read_records(feed.journal_dir):
        if rec.kind is not RecordKind.FRAME:
            continue
        try:
            events = venue.parser(rec.tag).parse(rec.body, rec.recv_ns)
        except BadFrame:
            continue
        out.update((e.symbol, e.trade_id) for e in events if type(e).__name__ == "Trade")
    return out


def test_daemon_with_three_venues_stops_on_sigterm_and_loses_nothing(tmp_path):
    symbols = BINANCE + VENUES[Venue.BYBIT][0] + VENUES[Venue.HYPERLIQUID][0]
    with Simulator(SimulatorConfig(symbols=symbols, seed=9, trades_per_tick=2, liquidation_prob=0.1)) as sim:
        cfg_path = _three_venues_toml(sim, tmp_path)
        feeds = load_feeds(cfg_path)
        assert [f.venue for f in feeds] == [Venue.BINANCE, Venue.BYBIT, Venue.HYPERLIQUID]
        assert load_feeds(save_config(feeds, tmp_path / "saved.toml")) == feeds  # round trip, endpoints included
        code = "import sys; from collectors.cli import collect; collect(sys.argv[1:])"
        proc = subprocess.Popen([sys.executable, "-c", code, "--config", cfg_path, "--log-level", "WARNING"],
                                cwd=os.getcwd(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        root = tmp_path / "store"
        try:
            wait_until(lambda: len(list(root.glob("_collector_status*.json"))) == 3, 60, "three feeds flushing")
            wait_until(lambda: all(len(sim.sent.trade_ids[s]) > 30 for s in symbols), 60, "trades on every venue")
            wait_for_store(root, lambda store: all(len(store["trades"].select(s)) > 20 and len(store["book"].select(s)) > 5
                                                   for s in symbols)
                           and len(store["mark"].select([BPERP, HBTC, HETH, "binance:ETH/USDT:USDT"])) > 0
                           and len(store["open_interest"].select([BPERP, HBTC, HETH])) > 0, 60,
                           "trades, book rows, marks and open interest of every venue stored")
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert all(f"stopped {n}:".encode() in out for n in ("binance", "bybit", "hyperliquid"))
    with Tickstore(root) as store:
        stored = {(s, int(t)) for s in symbols for t in store["trades"].select(s)["trade_id"]}
        for s in symbols:
            assert len(store["trades"].select(s)) > 20 and len(store["book"].select(s)) > 5
            assert {t for sym, t in stored if sym == s} <= set(sim.sent.trade_ids[s])  # nothing invented
        assert len(store["mark"].select([BPERP, HBTC, HETH, "binance:ETH/USDT:USDT"])) > 0
        assert len(store["open_interest"].select([BPERP, HBTC, HETH])) > 0
    for feed in feeds:
        assert {(s, t) for s, t in stored if s in feed.symbols} == _journaled_trades(feed)  # every frame received, stored
        with Journal(feed.journal_dir) as j:
            assert list(j.pending()) == []  # every journaled record was flushed and committed
        assert json.loads(feed.status_path.read_text())["running"] is False
    bybit_spot = sorted(t for s, t in stored if s == BSPOT)  # decimal, contiguous ids: no hole
    assert bybit_spot == list(range(bybit_spot[0], bybit_spot[0] + len(bybit_spot)))


# -- tickstore demo --venue ------------------------------------------------------------------------
@pytest.mark.parametrize("venue_name", ["bybit", "hyperliquid"])
def test_demo_subprocess_per_venue(tmp_path, venue_name):
    proc = subprocess.run(
        [sys.executable, "-m", "tickstore.cli", "demo", "--venue", venue_name, "--seconds", "3", "--root", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert f"against the simulated {venue_name} on 127.0.0.1" in out
    rows = {line.split()[0]: int(line.split()[1].replace(",", "")) for line in out.splitlines() if line.startswith("  ") and "stream=" not in line}
    assert rows["trades"] > 50 and rows["book"] > 20 and rows["mark"] > 0 and rows["open_interest"] > 0
    assert "disconnect" in out and "malformed" in out and "resync" in out and "latency" in out
    if venue_name == "bybit":
        assert "sequence_break" in out and rows["liquidations"] >= 0
    else:
        assert "liquidations" not in rows and "no public liquidation stream" in out
