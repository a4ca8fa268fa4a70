"""Bybit quotes are the top of a book, live as in replay: a ``quotes`` channel alone
subscribes ``orderbook.1`` (Bybit's best bid/offer stream, snapshots only, on spot and
linear alike - spot tickers carry no bid/ask), against the simulated Bybit on 127.0.0.1.

The stream as Bybit documents it (https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook):
level 1 pushes snapshots only; an unchanged book is pushed again after 3 s with the same ``u``.
"""

from __future__ import annotations

import json

import pandas as pd

from collectors.collector import Collector, CollectorConfig
from collectors.exchanges import bybit as bb
from collectors.exchanges.binance import Channel
from collectors.journal import RecordKind, read_records
from collectors.replay import replay
from collectors.session import BackoffPolicy
from collectors.simulator import Simulator, SimulatorConfig
from collectors.venues import BybitFeed, Venue
from tests.collectors.helpers import wait_for_store, wait_until
from tickstore import Tickstore

SPOT, PERP = "bybit:BTC/USDT", "bybit:ETH/USDT:USDT"


def _config(sim, tmp_path, channels) -> CollectorConfig:
    return CollectorConfig(store=str(tmp_path / "store"), journal=str(tmp_path / "journal"), venue=Venue.BYBIT,
                           symbols=(SPOT, PERP), channels=channels, endpoints={m: sim.endpoints(m) for m in sim.markets},
                           flush_interval_s=0.5, backoff=BackoffPolicy(initial_s=0.05, max_s=0.2))


def _top_changes(jdir) -> dict[str, list[tuple]]:
    """Independent reading of the journaled orderbook.1 frames: per symbol, the top at every
    frame that changes it, stamped with the frame's cts and u."""
    native = {"BTCUSDT": SPOT, "ETHUSDT": PERP}
    out: dict[str, list] = {SPOT: [], PERP: []}
    last: dict[str, tuple] = {}
    for rec in read_records(jdir):
        if rec.kind is not RecordKind.FRAME or b'"topic"' not in rec.body:
            continue
        msg = json.loads(rec.body)
        assert msg["topic"].startswith(("orderbook.1.", "publicTrade.")), msg["topic"]  # no tickers, no deeper book
        if not msg["topic"].startswith("orderbook.1."):
            continue
        assert msg["type"] == "snapshot"  # level 1 is snapshots only
        d = msg["data"]
        sym = native[d["s"]]
        top = (float(d["b"][0][0]), float(d["b"][0][1]), float(d["a"][0][0]), float(d["a"][0][1]))
        if top != last.get(sym):
            last[sym] = top
            out[sym].append((msg["cts"] * 1_000_000, d["u"], *top))
    return out


def test_quotes_alone_subscribe_orderbook_1_on_spot_and_linear(tmp_path):
    cfg_sim = SimulatorConfig(symbols=(SPOT, PERP), seed=5, trades_per_tick=1, liquidation_prob=0.0)
    with Simulator(cfg_sim) as sim:
        cfg = _config(sim, tmp_path, (Channel.TRADES, Channel.QUOTES))
        plan = BybitFeed(cfg).plan()
        assert sorted(t for c in plan for t in c.streams) == [
            "orderbook.1.BTCUSDT", "orderbook.1.ETHUSDT", "publicTrade.BTCUSDT", "publicTrade.ETHUSDT"]
        with Collector(cfg) as c:
            wait_until(lambda: all(c.stats.rows.get("quotes", 0) and c.books[s].synced for s in (SPOT, PERP)), 60, "quotes")
            wait_for_store(tmp_path / "store", lambda store: all(len(store["quotes"].select(s)) >= 5 for s in (SPOT, PERP)),
                           60, "5 quotes of each pair stored")
        assert c.stats.malformed == c.stats.unknown_streams == c.stats.venue_errors == 0
    want = _top_changes(tmp_path / "journal")
    with Tickstore(tmp_path / "store") as store:
        for sym in (SPOT, PERP):
            q = store["quotes"].select(sym)
            assert len(q) >= 5, sym
            got = list(zip(q.index.asi8.tolist(), q["update_id"], q["bid_px"], q["bid_qty"], q["ask_px"], q["ask_qty"]))
            assert got == want[sym], sym  # every change of the top, once, at its cts and u
            assert (q["bid_px"] < q["ask_px"]).all()
        assert store["book"].symbols() == []  # quotes only: the book is kept for its top, no book rows
        assert store["gaps"].select([SPOT, PERP]).empty
        # a replay of the collector's journal quotes the same (and also stores its 1-level book)
        with Tickstore(tmp_path / "replayed") as other:
            replay([tmp_path / "journal"], store=other)
            for sym in (SPOT, PERP):
                pd.testing.assert_frame_equal(other["quotes"].select(sym)[["update_id", "bid_px", "bid_qty", "ask_px", "ask_qty"]],
                                              store["quotes"].select(sym)[["update_id", "bid_px", "bid_qty", "ask_px", "ask_qty"]])


def test_depth_and_quotes_quote_the_depth_book_without_orderbook_1(tmp_path):
    cfg = CollectorConfig(store=str(tmp_path / "s"), symbols=(SPOT, PERP), venue=Venue.BYBIT,
                          channels=(Channel.QUOTES, Channel.DEPTH, Channel.MARK))
    streams = sorted(t for c in BybitFeed(cfg).plan() for t in c.streams)
    assert streams == ["orderbook.50.BTCUSDT", "orderbook.50.ETHUSDT", "tickers.ETHUSDT"]  # tickers for mark only


def test_simulated_orderbook_1_is_snapshots_resent_after_3_s():
    from collectors.simulator.market import GeneratedMarket, Tick

    t0 = 1_700_000_000_000
    gm = GeneratedMarket(SimulatorConfig(symbols=(PERP,), seed=1, trades_per_tick=0, liquidation_prob=0.0),
                         bb.Category.LINEAR, t0)
    m, dialect = gm.symbols[PERP], gm.dialect
    books = [json.loads(f.payload) for f in dialect._on_subscribe("orderbook.1.ETHUSDT", m)]
    for i in range(1, 31):  # the walk: the top changes most steps
        books += [json.loads(f.payload) for f in gm.step(i) if f.stream == "orderbook.1.ETHUSDT"]
    moving = len(books)
    for i in range(31, 101):  # then 7 s of steps with the book held still
        m.now_ms = t0 + i * 100
        books += [json.loads(f.payload) for f in dialect.encode(m, Tick(m.now_ms, [], [])) if f.stream == "orderbook.1.ETHUSDT"]
    assert moving >= 10 and {f["type"] for f in books} == {"snapshot"}
    assert all(len(f["data"]["b"]) == len(f["data"]["a"]) == 1 for f in books)
    for a, b in zip(books, books[1:]):
        same = (a["data"]["b"], a["data"]["a"]) == (b["data"]["b"], b["data"]["a"])
        # a change is the next u; the same book again keeps its u, and comes only after 3 s
        assert b["data"]["u"] == a["data"]["u"] + (0 if same else 1)
        if same:
            assert b["ts"] - a["ts"] == 3000
    quiet = books[moving:]
    assert [f["ts"] - books[moving - 1]["ts"] for f in quiet] == [3000, 6000]
