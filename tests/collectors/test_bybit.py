"""Bybit v5 parser: the real cryptofeed capture replayed, sequence rules, ticker merging."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import pandas as pd
import pytest
import zstandard

from collectors.book import BookBuilder
from collectors.events import BookTop, DepthDiff, DepthSnapshot, EventBatcher, Gap, Liquidation, Mark, OpenInterest, Quote, Trade
from collectors.exchanges.binance import Market
from collectors.exchanges import MalformedFrame, UnknownStream, UnknownSymbol, VenueErrorFrame
from collectors.exchanges.bybit import (
    BybitParser,
    Category,
    apply_to_book,
    Channel,
    endpoint,
    ping_message,
    subscribe_messages,
    topic,
    trade_id,
)

CONN = {"BYBIT.ws.2": Category.LINEAR, "BYBIT.ws.3": Category.SPOT}


def _capture(data_dir):
    raw = zstandard.ZstdDecompressor().stream_reader(open(data_dir / "cryptofeed" / "BYBIT.jsonl.zst", "rb")).read()
    return [json.loads(line) for line in raw.decode().splitlines()]


def _frames(data_dir):
    """(category, recv_ns, raw bytes) of every received frame, in order."""
    return [
        (CONN[r["conn"]], int(round(r["ts"] * 1e6)) * 1000, r["data"].encode())
        for r in _capture(data_dir)
        if r["t"] == "recv"
    ]


def _replay(data_dir):
    parsers = {c: BybitParser(c) for c in Category}
    out = []
    for cat, recv_ns, raw in _frames(data_dir):
        out += [(cat, e) for e in parsers[cat].parse(raw, recv_ns)]
    return parsers, out


def _suffix(cat):
    return ":USDT" if cat is Category.LINEAR else ""


def test_replay_yields_one_event_per_trade_and_book_frame(data_dir):
    parsers, events = _replay(data_dir)
    # expected counts, derived from the raw frames independently of the parser
    want = Counter()
    for cat, _, raw in _frames(data_dir):
        m = json.loads(raw)
        t = m.get("topic", "")
        if t.startswith("publicTrade."):
            want[("Trade", cat)] += len(m["data"])
        elif t.startswith("orderbook."):
            want[("DepthSnapshot" if m["type"] == "snapshot" else "DepthDiff", cat)] += 1
    got = Counter((type(e).__name__, cat) for cat, e in events if isinstance(e, (Trade, DepthSnapshot, DepthDiff)))
    assert got == want and sum(want.values()) > 2000
    # the capture has no sequence break (PROVENANCE: u strictly consecutive per topic)
    assert not [e for _, e in events if isinstance(e, Gap)]
    assert parsers[Category.LINEAR].dropped == 0
    symbols = {e.symbol for _, e in events}
    assert symbols == {"bybit:BTC/USDT:USDT", "bybit:ETH/USDT:USDT", "bybit:SOL/USDT:USDT", "bybit:DOGE/USDT:USDT",
                       "bybit:BTC/USDT", "bybit:ETH/USDT"}


def test_trades_equal_the_frames(data_dir):
    parsers = {c: BybitParser(c) for c in Category}
    n = 0
    for cat, recv_ns, raw in _frames(data_dir):
        m = json.loads(raw)
        if not m.get("topic", "").startswith("publicTrade."):
            continue
        events = parsers[cat].parse(raw, recv_ns)
        for x, e in zip(m["data"], events, strict=True):
            base = x["s"][: -len("USDT")]
            assert e.symbol == f"bybit:{base}/USDT{_suffix(cat)}"
            assert (e.ts, e.recv_ns) == (x["T"] * 1_000_000, recv_ns)
            assert (e.price, e.qty) == (float(x["p"]), float(x["v"]))
            assert e.side == (1 if x["S"] == "Buy" else -1)
            assert e.trade_id == trade_id(x["i"])
            n += 1
    assert n > 100


def test_trade_ids_are_stable_unique_int64(data_dir):
    ids = defaultdict(set)
    raw_ids = defaultdict(set)
    for cat, _, raw in _frames(data_dir):
        m = json.loads(raw)
        if m.get("topic", "").startswith("publicTrade."):
            for x in m["data"]:
                ids[cat].add(trade_id(x["i"]))
                raw_ids[cat].add(x["i"])
    for cat in (Category.LINEAR, Category.SPOT):  # the capture has no inverse connection
        assert len(ids[cat]) == len(raw_ids[cat]) > 0
        assert all(0 <= i < 2**63 for i in ids[cat])
    spot = next(iter(raw_ids[Category.SPOT]))
    assert trade_id(spot) == int(spot)  # spot ids are decimal already
    with pytest.raises(ValueError, match="'not-an-id'"):
        trade_id("not-an-id")


def test_book_sequence_in_capture_is_consecutive_and_diffs_chain(data_dir):
    _, events = _replay(data_dir)
    last = {}
    for _, e in events:
        if isinstance(e, DepthSnapshot):
            last[e.symbol] = e.update_id
        elif isinstance(e, DepthDiff):
            assert e.first_update_id == e.update_id == last[e.symbol] + 1
            assert e.prev_update_id == last[e.symbol]
            last[e.symbol] = e.update_id


def _book_frames(data_dir, topic_name="orderbook.200.BTCUSDT", cat=Category.LINEAR):
    return [(r, raw) for c, r, raw in _frames(data_dir) if c is cat and json.loads(raw).get("topic") == topic_name]


def _independent_book(frames):
    """The book of one topic by Bybit's rule, maintained without the parser or builder."""
    bids, asks = {}, {}
    for _, raw in frames:
        m = json.loads(raw)
        if m["type"] == "snapshot":
            bids, asks = {}, {}
        for side, levels in ((bids, m["data"]["b"]), (asks, m["data"]["a"])):
            for p, q in levels:
                if float(q) == 0:
                    side.pop(float(p), None)
                else:
                    side[float(p)] = float(q)
    return bids, asks


@pytest.mark.parametrize("topic_name, cat", [("orderbook.200.BTCUSDT", Category.LINEAR),
                                             ("orderbook.200.ETHUSDT", Category.SPOT)])
def test_generic_book_builder_syncs_the_real_bybit_book(data_dir, topic_name, cat):
    frames = _book_frames(data_dir, topic_name, cat)
    p = BybitParser(cat)
    sym = f"bybit:{topic_name.split('.')[-1][:-4]}/USDT{_suffix(cat)}"
    book = BookBuilder(sym, Market.SPOT, levels=20, interval_ms=100)
    out = []
    for recv, raw in frames:
        for e in p.parse(raw, recv):
            out += apply_to_book(book, e)
    assert book.synced and not [e for e in out if isinstance(e, Gap)] and not p.breaks
    rows = [e for e in out if isinstance(e, BookTop)]
    assert len(rows) > 50
    bids, asks = _independent_book(frames)
    best_bids = sorted(bids, reverse=True)[:20]
    best_asks = sorted(asks)[:20]
    assert book.top(20) == (best_bids, [bids[x] for x in best_bids], best_asks, [asks[x] for x in best_asks])


def test_sequence_break_and_restart_snapshot_go_to_the_gap_ledger(data_dir):
    frames = _book_frames(data_dir)
    p = BybitParser(Category.LINEAR)
    book = BookBuilder("bybit:BTC/USDT:USDT", Market.SPOT, levels=5, interval_ms=100)
    out = []
    for i, (recv, raw) in enumerate(frames[:40]):
        if i == 20:
            continue  # a lost delta
        for e in p.parse(raw, recv):
            out += apply_to_book(book, e)
    gaps = [e for e in out if isinstance(e, Gap)]
    assert [g.cause for g in gaps] == ["sequence_break"] and p.breaks == {"orderbook.200.BTCUSDT": 1}
    assert book.needs_snapshot
    # Bybit restarts its book service: a snapshot with u == 1, then deltas from 2 (the
    # capture's first frames again, renumbered and moved after the break in time)
    shift = json.loads(frames[40][1])["ts"] - json.loads(frames[0][1])["ts"] + 1000
    out = []
    for k, (recv, raw) in enumerate(frames[:20]):
        d = json.loads(raw)
        d["data"]["u"], d["ts"], d["cts"] = 1 + k, d["ts"] + shift, d["cts"] + shift
        for e in p.parse(json.dumps(d).encode(), recv + shift * 1_000_000):
            out += apply_to_book(book, e)
    assert book.synced and [g.cause for g in out if isinstance(g, Gap)] == ["resync"]
    snap = json.loads(frames[0][1])
    snap["ts"] = snap["cts"] = json.loads(frames[20][1])["ts"] + 2 * shift
    # a mid-stream snapshot of another state replaces a synced book (Bybit's rule)
    snap["data"]["u"] = 500
    out = []
    for e in p.parse(json.dumps(snap).encode(), frames[60][0] + 3 * shift * 1_000_000):
        out += apply_to_book(book, e)
    d = json.loads(frames[1][1])
    d["data"]["u"], d["ts"], d["cts"] = 501, snap["ts"] + 1, snap["cts"] + 1
    for e in p.parse(json.dumps(d).encode(), frames[60][0] + 3 * shift * 1_000_000):
        out += apply_to_book(book, e)
    assert book.synced and book.update_id == 501 and [g.cause for g in out if isinstance(g, Gap)] == ["resync"]
    bids, asks = _independent_book(frames[:2])
    assert book.top(3)[0] == sorted(bids, reverse=True)[:3] and book.top(3)[2] == sorted(asks)[:3]


def test_ticker_deltas_merge_into_last_snapshot_mark_and_oi_equal_the_frames(data_dir):
    p = BybitParser(Category.LINEAR)
    state: dict = {}
    marks = ois = quotes = 0
    for cat, recv, raw in _frames(data_dir):
        if cat is not Category.LINEAR:
            continue
        m = json.loads(raw)
        if not m.get("topic", "").startswith("tickers."):
            continue  # tickers alone: a connection without books quotes from its tickers
        d = m["data"]
        state[d["symbol"]] = dict(d) if m["type"] == "snapshot" else {**state[d["symbol"]], **d}
        full = state[d["symbol"]]
        events = p.parse(raw, recv)
        by_type = {type(e): e for e in events}
        touched_mark = any(k in d for k in ("markPrice", "indexPrice", "fundingRate", "nextFundingTime"))
        touched_oi = any(k in d for k in ("openInterest", "openInterestValue"))
        assert (Mark in by_type) == touched_mark and (OpenInterest in by_type) == touched_oi
        if touched_mark:
            mk = by_type[Mark]
            assert (mk.mark_px, mk.index_px, mk.funding_rate) == (
                float(full["markPrice"]), float(full["indexPrice"]), float(full["fundingRate"]))
            assert mk.next_funding_ts == int(full["nextFundingTime"]) * 1_000_000
            assert mk.ts == m["ts"] * 1_000_000 and mk.recv_ns == recv
            marks += 1
        if touched_oi:
            oi = by_type[OpenInterest]
            assert (oi.oi, oi.oi_value) == (float(full["openInterest"]), float(full["openInterestValue"]))
            ois += 1
        if Quote in by_type:
            q = by_type[Quote]
            assert (q.bid_px, q.bid_qty, q.ask_px, q.ask_qty) == tuple(
                float(full[k]) for k in ("bid1Price", "bid1Size", "ask1Price", "ask1Size"))
            quotes += 1
    # deltas that carry only some fields were merged (most deltas carry no markPrice)
    assert marks > 50 and ois > 50 and quotes > 100


def test_tickers_quote_only_symbols_without_a_book_on_the_connection(data_dir):
    """With orderbook frames on the connection, a symbol's quotes come from its book, so
    ticker bid1/ask1 stop at the symbol's first book frame (they never interleave)."""
    p = BybitParser(Category.LINEAR)
    booked, ticker_quotes, late = set(), 0, 0
    for cat, recv, raw in _frames(data_dir):
        if cat is not Category.LINEAR:
            continue
        m = json.loads(raw)
        t = m.get("topic", "")
        events = p.parse(raw, recv)
        if t.startswith("orderbook."):
            booked.add(t.rsplit(".", 1)[1])
        for e in events:
            if isinstance(e, Quote):
                ticker_quotes += 1
                late += m["data"]["symbol"] in booked
    assert late == 0 and ticker_quotes < 20 and booked == {"BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"}


def test_spot_tickers_give_no_mark_and_early_delta_is_dropped(data_dir):
    p = BybitParser(Category.LINEAR)
    delta = {"topic": "tickers.BTCUSDT", "type": "delta", "data": {"symbol": "BTCUSDT", "markPrice": "1"}, "cs": 1, "ts": 1}
    assert p.parse(json.dumps(delta), 5) == [] and p.dropped == 1
    spot = BybitParser(Category.SPOT)
    for cat, recv, raw in _frames(data_dir):
        if cat is Category.SPOT and json.loads(raw).get("topic", "").startswith("tickers."):
            assert spot.parse(raw, recv) == []


def test_all_liquidation_side_is_the_forced_order():
    # sample from Bybit's v5 docs (allLiquidation); the 45 s capture holds none
    frame = {"topic": "allLiquidation.BTCUSDT", "type": "snapshot", "ts": 1739502303204, "data": [
        {"T": 1739502302929, "s": "BTCUSDT", "S": "Buy", "v": "0.5", "p": "95000.5"},
        {"T": 1739502302930, "s": "BTCUSDT", "S": "Sell", "v": "20000", "p": "95001"},
    ]}
    out = BybitParser(Category.LINEAR).parse(json.dumps(frame), 7)
    assert out == [
        Liquidation("bybit:BTC/USDT:USDT", 1739502302929_000_000, 7, -1, 95000.5, 0.5),  # long liquidated: forced sell
        Liquidation("bybit:BTC/USDT:USDT", 1739502302930_000_000, 7, 1, 95001.0, 20000.0),
    ]


def test_subscribe_messages_match_the_recorded_requests(data_dir):
    sent = [(r["conn"], json.loads(r["data"])) for r in _capture(data_dir) if r["t"] == "send"]
    assert sent
    for conn, msg in sent:
        assert subscribe_messages(msg["args"]) == [msg]
    linear = [a for conn, m in sent if conn == "BYBIT.ws.2" for a in m["args"]]
    assert topic(Channel.BOOK, "BTCUSDT", depth=200) in linear
    assert topic(Channel.TRADES, "SOLUSDT") in linear and topic(Channel.LIQUIDATIONS, "DOGEUSDT") in linear
    addr = {r["conn"]: r["addr"] for r in _capture(data_dir) if r["t"] == "connect"}
    assert addr == {"BYBIT.ws.2": endpoint(Category.LINEAR), "BYBIT.ws.3": endpoint(Category.SPOT)}
    many = subscribe_messages([f"publicTrade.X{i}USDT" for i in range(23)])
    assert [len(m["args"]) for m in many] == [10, 10, 3]
    assert ping_message() == {"op": "ping"}
    with pytest.raises(ValueError, match="depth"):
        topic(Channel.BOOK, "BTCUSDT", depth=7)


def test_bad_frames_raise_clear_errors():
    p = BybitParser(Category.LINEAR)
    with pytest.raises(MalformedFrame, match="not JSON"):
        p.parse(b'{"topic": ', 1)
    with pytest.raises(MalformedFrame, match="KeyError.*publicTrade"):
        p.parse(b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","data":[{"T":1786310819680,"s":"BTCUSDT"}]}', 1)
    with pytest.raises(UnknownStream, match="'weird.BTCUSDT'"):
        p.parse(b'{"topic":"weird.BTCUSDT","data":{}}', 1)
    # an id Bybit's naming rules cannot place (a linear id is <BASE>USDT, <BASE>PERP or dated)
    with pytest.raises(UnknownSymbol, match="'NOPEUSDX'"):
        p.parse(b'{"topic":"publicTrade.NOPEUSDX","data":[{"T":1786310819680,"s":"NOPEUSDX","S":"Buy","v":"1","p":"1","i":"1"}]}', 1)
    with pytest.raises(VenueErrorFrame, match="handler not found"):
        p.parse(b'{"success":false,"ret_msg":"error:handler not found","op":"subscribe"}', 1)
    assert p.parse(b'{"success":true,"ret_msg":"pong","conn_id":"x","op":"ping"}', 1) == []


def test_replayed_events_land_in_the_store(data_dir, store):
    _, events = _replay(data_dir)
    batcher = EventBatcher()
    batcher.extend(e for _, e in events if isinstance(e, (Trade, Mark, OpenInterest, Quote)))
    frames = batcher.drain()
    for (table, symbol), frame in frames.items():
        store[table].append(symbol, frame, source="replay")
    mark = store["mark"].select("bybit:BTC/USDT:USDT")
    want = [e for _, e in events if isinstance(e, Mark) and e.symbol == "bybit:BTC/USDT:USDT"]
    assert len(want) == len({e.ts for e in want}) > 10  # one mark per ticker frame, keyed by ts
    want.sort(key=lambda e: e.ts)
    assert mark["mark_px"].tolist() == [e.mark_px for e in want]
    assert mark["funding_rate"].tolist() == [e.funding_rate for e in want]
    assert mark["next_funding_ts"].tolist() == [pd.Timestamp(e.next_funding_ts, tz="UTC") for e in want]
    trades = store["trades"].select("bybit:SOL/USDT:USDT")
    sol = [e for _, e in events if isinstance(e, Trade) and e.symbol == "bybit:SOL/USDT:USDT"]
    assert len(trades) == len(sol)
    assert trades.index[0] == pd.Timestamp(min(e.ts for e in sol), tz="UTC")
