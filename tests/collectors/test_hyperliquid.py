"""Hyperliquid parser: the hftbacktest capture and SDK cassettes replayed; liquidation polling."""

from __future__ import annotations

import gzip
import json
import math
import urllib.request

import pytest
import yaml

from collectors.events import BookTop, DepthSnapshot, EventBatcher, Liquidation, Mark, OpenInterest, Quote, Trade
from collectors.exchanges import MalformedFrame, UnknownStream, UnknownSymbol
from collectors.exchanges.hyperliquid import (
    Channel,
    HyperliquidParser,
    LiquidationPoller,
    fills_request,
    parse_l2_snapshot,
    ping_message,
    subscribe_messages,
)
from collectors.restsim import RestSim, SimData

SYM = "hyperliquid:BTC/USDC:USDC"


def _lines(data_dir):
    with gzip.open(data_dir / "hftbacktest" / "hyperliquid" / "btcusd_20250126.gz", "rb") as fh:
        for line in fh:
            recv, raw = line.rstrip(b"\n").split(b" ", 1)
            yield int(recv), raw


def test_capture_trades_equal_the_frames(data_dir):
    p = HyperliquidParser()
    n = 0
    for recv, raw in _lines(data_dir):
        m = json.loads(raw)
        events = p.parse(raw, recv)
        if m["channel"] != "trades":
            continue
        for x, e in zip(m["data"], events, strict=True):
            assert isinstance(e, Trade) and e.symbol == SYM
            assert (e.ts, e.recv_ns, e.trade_id) == (x["time"] * 1_000_000, recv, x["tid"])
            assert (e.price, e.qty, e.side) == (float(x["px"]), float(x["sz"]), 1 if x["side"] == "B" else -1)
            n += 1
    assert n == sum(len(json.loads(r)["data"]) for _, r in _lines(data_dir) if json.loads(r)["channel"] == "trades")


def test_capture_books_are_full_snapshots_with_top_rows(data_dir):
    p = HyperliquidParser(book_depth=5)
    books = 0
    last_id = -1
    for recv, raw in _lines(data_dir):
        m = json.loads(raw)
        if m["channel"] != "l2Book":
            continue
        snap, top = p.parse(raw, recv)
        bids, asks = m["data"]["levels"]
        assert isinstance(snap, DepthSnapshot) and isinstance(top, BookTop)
        assert snap.bids == [(float(x["px"]), float(x["sz"])) for x in bids]
        assert snap.asks == [(float(x["px"]), float(x["sz"])) for x in asks]
        assert snap.update_id == m["data"]["time"] and snap.ts == m["data"]["time"] * 1_000_000
        assert snap.update_id >= last_id  # book time only grows: usable as update id
        last_id = snap.update_id
        assert top.bid_px == [float(x["px"]) for x in bids[:5]] and top.ask_qty == [float(x["sz"]) for x in asks[:5]]
        assert top.bid_px[0] < top.ask_px[0]
        books += 1
    assert books == sum(1 for _, r in _lines(data_dir) if json.loads(r)["channel"] == "l2Book") > 40
    # BookTop rows go to the book table through the batcher
    batcher = EventBatcher(book_table="book")
    for recv, raw in _lines(data_dir):
        batcher.extend(p.parse(raw, recv))
    frames = batcher.drain()
    assert len(frames[("book", SYM)]) == books


def test_rest_l2_snapshot_cassette(data_dir):
    doc = yaml.safe_load((data_dir / "hyperliquid-python-sdk" / "test_get_l2_snapshot.yaml").read_text())
    body = next(i["response"]["body"]["string"] for i in doc["interactions"]
                if json.loads(i["request"]["body"])["type"] == "l2Book")
    d = json.loads(body)
    snap = parse_l2_snapshot(body, 123)
    assert snap.symbol == "hyperliquid:DYDX/USDC:USDC" and snap.update_id == d["time"] and snap.recv_ns == 123
    assert snap.bids == [(float(x["px"]), float(x["sz"])) for x in d["levels"][0]]
    assert snap.asks == [(float(x["px"]), float(x["sz"])) for x in d["levels"][1]]
    with pytest.raises(MalformedFrame, match="levels"):
        parse_l2_snapshot(b'{"coin":"DYDX","time":1}', 1)


def test_bbo_and_asset_ctx():
    p = HyperliquidParser()
    bbo = {"channel": "bbo", "data": {"coin": "BTC", "time": 1737918843542,
                                      "bbo": [{"px": "105055.0", "sz": "3.03622", "n": 5}, None]}}
    (q,) = p.parse(json.dumps(bbo), 9)
    assert isinstance(q, Quote) and (q.bid_px, q.bid_qty, q.update_id) == (105055.0, 3.03622, 1737918843542)
    assert math.isnan(q.ask_px) and math.isnan(q.ask_qty)
    recv = 1737918843_900_000_000  # 19:14:03.9 UTC
    ctx = {"channel": "activeAssetCtx", "data": {"coin": "BTC", "ctx": {
        "funding": "0.0000125", "openInterest": "12000.5", "oraclePx": "105050.0", "markPx": "105055.0",
        "midPx": "105055.5", "premium": "0.00004", "impactPxs": ["105055.0", "105056.0"]}}}
    mark, oi = p.parse(json.dumps(ctx), recv)
    assert isinstance(mark, Mark) and isinstance(oi, OpenInterest)
    assert (mark.mark_px, mark.index_px, mark.funding_rate) == (105055.0, 105050.0, 0.0000125)
    assert mark.ts == recv  # the channel carries no exchange time
    assert mark.next_funding_ts == 1737921600_000_000_000  # 20:00 UTC, the next hourly settlement
    assert (oi.oi, oi.oi_value) == (12000.5, 12000.5 * 105055.0)


def test_subscriptions_and_bad_frames():
    msgs = subscribe_messages([Channel.TRADES, Channel.BOOK], ["BTC", "ETH"])
    assert msgs[0] == {"method": "subscribe", "subscription": {"type": "trades", "coin": "BTC"}}
    assert len(msgs) == 4 and ping_message() == {"method": "ping"}
    with pytest.raises(ValueError, match="'BTC'"):
        subscribe_messages([Channel.TRADES], "BTC")
    p = HyperliquidParser()
    assert p.parse(b'{"channel":"subscriptionResponse","data":{"method":"subscribe"}}', 1) == []
    assert p.parse(b'{"channel":"pong"}', 1) == []
    with pytest.raises(MalformedFrame, match="channel"):
        p.parse(b"[1,2]", 1)
    with pytest.raises(UnknownStream, match="'webData2'"):
        p.parse(b'{"channel":"webData2","data":{}}', 1)
    assert p.parse(b'{"channel":"candle","data":{}}', 1) == []  # recognised, stored nowhere
    with pytest.raises(UnknownSymbol, match="'@107' is a spot market"):
        p.parse(b'{"channel":"trades","data":[{"coin":"@107","px":"1","sz":"1","side":"B","tid":1,"time":1}]}', 1)
    with pytest.raises(ValueError, match="book_depth"):
        HyperliquidParser(book_depth=50)


LIQUIDATED = "0x" + "ab" * 20
VAULT = "0x" + "cd" * 20


def _post(url):
    def post(body: dict):
        req = urllib.request.Request(url + "/info", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())
    return post


def test_liquidation_poller_against_a_local_info_server():
    data = SimData()
    liq = {"liquidatedUser": LIQUIDATED, "markPx": "1812.9", "method": "market"}
    data.fills[LIQUIDATED] = [
        {"coin": "ETH", "px": "1812.7", "sz": "3.0", "side": "A", "time": 1000, "dir": "Close Long", "tid": 1,
         "liquidation": liq},
        {"coin": "ETH", "px": "1813.0", "sz": "1.0", "side": "B", "time": 2000, "dir": "Open Long", "tid": 2},
    ]
    data.fills[VAULT] = [
        {"coin": "BTC", "px": "30000", "sz": "0.5", "side": "B", "time": 1500, "dir": "Open Long", "tid": 3,
         "liquidation": {"liquidatedUser": "0x" + "ef" * 20, "markPx": "30001", "method": "backstop"}},
    ]
    with RestSim(data) as sim:
        poller = LiquidationPoller((LIQUIDATED, VAULT), _post(sim.base_url), start_ms=0)
        got = poller.poll(77)
        assert got == [
            # the liquidated account sold: a long was liquidated
            Liquidation("hyperliquid:ETH/USDC:USDC", 1000 * 1_000_000, 77, -1, 1812.7, 3.0),
            # the vault bought the position of a liquidated long: the forced order was a sell
            Liquidation("hyperliquid:BTC/USDC:USDC", 1500 * 1_000_000, 77, -1, 30000.0, 0.5),
        ]
        assert poller.poll(78) == []  # the cursor moved on and fills are de-duplicated by tid
        data.fills[LIQUIDATED].append({"coin": "ETH", "px": "1700", "sz": "2", "side": "B", "time": 3000,
                                       "dir": "Close Short", "tid": 4, "liquidation": liq})
        assert poller.poll(79) == [Liquidation("hyperliquid:ETH/USDC:USDC", 3000 * 1_000_000, 79, 1, 1700.0, 2.0)]
        bodies = [r.params for r in sim.requests]
    assert bodies[-2] == fills_request(LIQUIDATED, 2000) and bodies[-1] == fills_request(VAULT, 1500)
    with pytest.raises(ValueError, match="'0x12'"):
        LiquidationPoller(("0x12",), lambda b: [], start_ms=0)
