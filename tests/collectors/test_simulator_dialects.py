"""The simulated Bybit v5 and Hyperliquid on 127.0.0.1: wire shapes (checked against the real
captures), subscriptions, sequencing, determinism and misbehaviour, over real websockets."""

from __future__ import annotations

import gzip
import json
import time
import urllib.error
import urllib.request

import orjson
import pytest
import websocket
import zstandard

from collectors.book import BookBuilder
from collectors.events import DepthDiff, DepthSnapshot, Gap, Liquidation, Mark, OpenInterest, Quote, Trade
from collectors.exchanges import bybit as bb
from collectors.exchanges import hyperliquid as hl
from collectors.exchanges import UnknownSymbol, VenueErrorFrame
from collectors.exchanges.binance import Market
from collectors.simulator import GeneratedMarket, Simulator, SimulatorConfig
from tests.collectors.helpers import receive

BSPOT, BPERP = "bybit:BTC/USDT", "bybit:ETH/USDT:USDT"
HBTC, HETH = "hyperliquid:BTC/USDC:USDC", "hyperliquid:ETH/USDC:USDC"
LINEAR, SPOT, PERP = bb.Category.LINEAR, bb.Category.SPOT, hl.Market.PERP


@pytest.fixture(scope="module")
def sim():
    s = Simulator(SimulatorConfig(symbols=(BSPOT, BPERP, HBTC, HETH), seed=11, trades_per_tick=4, liquidation_prob=0.3)).start()
    yield s
    s.stop()


def connect(sim, market, messages=()):
    ws = websocket.create_connection(sim.endpoints(market).ws, timeout=5, skip_utf8_validation=True)
    for m in messages:
        ws.send(orjson.dumps(m).decode())
    return ws


def keys(d) -> set:
    return set(d) if isinstance(d, dict) else set()


# -- Bybit ----------------------------------------------------------------------------------------
def _bybit_capture(data_dir) -> list[tuple[str, dict]]:
    raw = zstandard.ZstdDecompressor().stream_reader(open(data_dir / "cryptofeed" / "BYBIT.jsonl.zst", "rb")).read()
    out = []
    for line in raw.decode().splitlines()[1:]:
        r = json.loads(line)
        if r["t"] == "recv":
            out.append(({"BYBIT.ws.2": "linear", "BYBIT.ws.3": "spot"}[r["conn"]], json.loads(r["data"])))
    return out


def test_bybit_frames_have_the_real_shapes_and_parse(sim, data_dir):
    topics = ["publicTrade.ETHUSDT", "orderbook.50.ETHUSDT", "tickers.ETHUSDT", "allLiquidation.ETHUSDT"]
    want = {("orderbook", "snapshot"), ("orderbook", "delta"), ("tickers", "snapshot"), ("tickers", "delta"),
            ("publicTrade", "snapshot"), ("allLiquidation", "snapshot")}

    def enough(fr) -> bool:  # every kind of frame, and 16 book frames (however slow the machine)
        ms = [orjson.loads(f) for f in fr[1:]]
        return ({(m["topic"].split(".")[0], m["type"]) for m in ms} >= want
                and sum(m["topic"].startswith("orderbook") for m in ms) > 15)

    ws = connect(sim, LINEAR, bb.subscribe_messages(topics))
    try:
        frames = receive(ws, 60, until=enough)
    finally:
        ws.close()
    msgs = [orjson.loads(f) for f in frames]
    real = _bybit_capture(data_dir)

    def real_of(kind: str, typ: str | None, cat="linear") -> dict:
        return next(m for c, m in real if c == cat and m.get("topic", "").startswith(kind) and m.get("type") == typ)

    ack = msgs[0]
    real_ack = next(m for c, m in real if c == "linear" and m.get("op") == "subscribe")
    assert keys(ack) == keys(real_ack) and ack["success"] is True and ack["op"] == "subscribe"
    by = {}
    for m in msgs[1:]:
        by.setdefault((m["topic"].split(".")[0], m["type"]), []).append(m)
    assert set(by) == {("orderbook", "snapshot"), ("orderbook", "delta"), ("tickers", "snapshot"), ("tickers", "delta"),
                       ("publicTrade", "snapshot"), ("allLiquidation", "snapshot")}
    for kind, typ in [("orderbook", "snapshot"), ("orderbook", "delta"), ("publicTrade", "snapshot")]:
        ours, theirs = by[(kind, typ)][0], real_of(kind, typ)
        assert keys(ours) == keys(theirs), kind
        if kind == "orderbook":
            assert keys(ours["data"]) == keys(theirs["data"])
        else:
            assert keys(ours["data"][0]) == keys(theirs["data"][0])
    snap = by[("tickers", "snapshot")][0]
    assert keys(snap["data"]) <= keys(real_of("tickers", "snapshot")["data"])
    assert {"markPrice", "indexPrice", "fundingRate", "nextFundingTime", "openInterest", "bid1Price"} <= keys(snap["data"])
    assert keys(by[("allLiquidation", "snapshot")][0]["data"][0]) == {"T", "s", "S", "v", "p"}
    # the deltas continue the snapshot's u one by one
    us = [m["data"]["u"] for m in msgs if m.get("topic", "").startswith("orderbook")]
    assert us == list(range(us[0], us[0] + len(us))) and len(us) > 15
    # and everything goes through the real parser into a synced book
    parser, book = bb.BybitParser(LINEAR), BookBuilder(BPERP, Market.SPOT, levels=5, quotes=True)
    events = [e for f in frames for e in parser.parse(f, time.time_ns())]
    out = [r for e in events if isinstance(e, (DepthSnapshot, DepthDiff)) for r in bb.apply_to_book(book, e)]
    assert book.synced and not [r for r in out if isinstance(r, Gap)]
    bids, _, asks, _ = book.top(5)
    assert bids[0] < asks[0] and book.depth() == (50, 50)
    kinds = {type(e) for e in events} | {type(r) for r in out}  # quotes: the book's top (with a book on the connection)
    assert {Trade, Quote, Mark, OpenInterest, Liquidation} <= kinds
    trades = [e for e in events if isinstance(e, Trade)]
    assert set(sim.sent.trade_ids[BPERP]) >= {t.trade_id for t in trades}


def test_bybit_spot_speaks_spot(sim, data_dir):
    ws = connect(sim, SPOT, [{"op": "subscribe", "args": ["publicTrade.BTCUSDT", "tickers.BTCUSDT"]}, {"op": "ping"}])
    try:
        msgs = [orjson.loads(f) for f in receive(ws, 60, until=lambda fr: {"op:ping", "publicTrade.BTCUSDT", "tickers.BTCUSDT"}
                                                   <= {orjson.loads(f).get("topic") or f"op:{orjson.loads(f).get('op')}" for f in fr})]
        ws.send(orjson.dumps({"op": "subscribe", "args": [f"publicTrade.X{i}" for i in range(11)]}).decode())
        refused = [orjson.loads(f) for f in receive(ws, 60, until=lambda fr: any(b'"success":false' in f for f in fr))]
    finally:
        ws.close()
    real = _bybit_capture(data_dir)
    real_ack = next(m for c, m in real if c == "spot" and m.get("op") == "subscribe")
    assert keys(msgs[0]) == keys(real_ack) and msgs[0]["ret_msg"] == "subscribe"  # spot: no req_id
    pong = next(m for m in msgs if m.get("op") == "ping")
    assert pong == {"success": True, "ret_msg": "pong", "conn_id": msgs[0]["conn_id"], "op": "ping"}
    tick = next(m for m in msgs if m.get("topic") == "tickers.BTCUSDT")
    real_tick = next(m for c, m in real if c == "spot" and m.get("topic", "").startswith("tickers"))
    assert keys(tick["data"]) == keys(real_tick["data"]) and tick["type"] == "snapshot"
    ids = [x["i"] for m in msgs if m.get("topic") == "publicTrade.BTCUSDT" for x in m["data"]]
    assert ids and all(i.isdigit() for i in ids)  # spot ids are decimal, contiguous here
    assert [int(i) for i in ids] == list(range(int(ids[0]), int(ids[0]) + len(ids)))
    refused = [m for m in refused if "op" in m]
    assert refused == [{"success": False, "ret_msg": "args size >10", "conn_id": msgs[0]["conn_id"], "op": "subscribe"}]


def test_bybit_refusals_and_resubscription_snapshot(sim):
    t = "orderbook.50.ETHUSDT"
    ws = connect(sim, LINEAR, [{"op": "subscribe", "args": [t]}])
    try:
        first = [orjson.loads(f) for f in receive(ws, 60, until=lambda fr: any(b'"type":"snapshot"' in f for f in fr))]
        ws.send(orjson.dumps({"op": "subscribe", "args": [t], "req_id": "again"}).decode())
        ws.send(orjson.dumps({"op": "subscribe", "args": ["orderbook.7.ETHUSDT"]}).decode())
        for m in bb.subscribe_messages([t], op="unsubscribe") + bb.subscribe_messages([t]):
            ws.send(orjson.dumps(m).decode())
        # until both refusals, the unsubscribe's and the resubscription's acks, its snapshot
        later = [orjson.loads(f) for f in receive(ws, 60, until=lambda fr: sum(b'"success":false' in f for f in fr) >= 2
                                                  and sum(b'"success":true' in f for f in fr) >= 2
                                                  and any(b'"type":"snapshot"' in f for f in fr))]
    finally:
        ws.close()
    errors = [m for m in later if m.get("success") is False]
    assert [e["ret_msg"] for e in errors] == [f"error:already subscribed,topic:{t}", "error:handler not found,topic:orderbook.7.ETHUSDT"]
    assert errors[0]["req_id"] == "again"
    with pytest.raises(VenueErrorFrame):
        bb.BybitParser(LINEAR).parse(orjson.dumps(errors[0]), 0)
    snaps = [m for m in first + later if m.get("type") == "snapshot"]
    assert len(snaps) == 2  # one per subscription
    # the resubscription's snapshot is the book the deltas continue from
    book = BookBuilder(BPERP, Market.SPOT, levels=5)
    parser = bb.BybitParser(LINEAR)
    i = next(k for k, m in enumerate(later) if m.get("type") == "snapshot")
    gaps = []
    for m in later[i:]:
        for e in parser.parse(orjson.dumps(m), 0):
            gaps += [r for r in bb.apply_to_book(book, e) if isinstance(r, Gap)]
    assert book.synced and gaps == []


def _us(frames) -> list[int]:
    """The ``u`` of each book frame (the first frame is the subscription's ack)."""
    return [orjson.loads(f)["data"]["u"] for f in frames[1:]]


def _after_jump(us: list[int]) -> list[int]:
    """The update ids after the first break in their chain."""
    return next((us[i + 1:] for i, (a, b) in enumerate(zip(us, us[1:])) if b != a + 1), [])


def test_bybit_skip_breaks_u_once_and_rest_book(sim):
    ws = connect(sim, LINEAR, [{"op": "subscribe", "args": ["orderbook.50.ETHUSDT"]}])
    try:
        frames = receive(ws, 60, until=3)
        skipped = sim.sent.skipped_updates
        sim.skip_sequence(BPERP)
        # until the break came and 10 book frames after it (none of them another break)
        frames += receive(ws, 60, until=lambda fr: sim.sent.skipped_updates == skipped + 1
                          and len(_after_jump(_us(frames + fr))) >= 10)
    finally:
        ws.close()
    us = _us(frames)
    jumps = [(a, b) for a, b in zip(us, us[1:]) if b != a + 1]
    assert jumps == [(jumps[0][0], jumps[0][0] + 2)] and sim.sent.skipped_updates == skipped + 1
    rest = sim.endpoints(LINEAR).rest
    with urllib.request.urlopen(f"{rest}/v5/market/orderbook?category=linear&symbol=ETHUSDT&limit=50", timeout=5) as r:
        body = orjson.loads(r.read())
    assert body["retCode"] == 0 and len(body["result"]["b"]) == len(body["result"]["a"]) == 50
    assert float(body["result"]["b"][0][0]) < float(body["result"]["a"][0][0])
    with urllib.request.urlopen(f"{rest}/v5/market/orderbook?category=spot&symbol=ETHUSDT&limit=50", timeout=5) as r:
        assert orjson.loads(r.read())["retCode"] == 10001  # the spot book lives on the other port


# -- Hyperliquid ----------------------------------------------------------------------------------
def _hl_capture(data_dir) -> list[dict]:
    with gzip.open(data_dir / "hftbacktest" / "hyperliquid" / "btcusd_20250126.gz", "rb") as fh:
        return [json.loads(line.split(b" ", 1)[1]) for line in fh]


def test_hyperliquid_frames_have_the_real_shapes_and_parse(sim, data_dir):
    subs = hl.subscribe_messages([hl.Channel.TRADES, hl.Channel.BOOK, hl.Channel.BBO, hl.Channel.ASSET_CTX], ["BTC"])
    def enough(fr) -> bool:  # every channel and three books (however slow the machine)
        ms = [orjson.loads(f) for f in fr]
        return (sum(m["channel"] == "subscriptionResponse" for m in ms) == 4 and {"channel": "pong"} in ms
                and {"trades", "bbo", "activeAssetCtx"} <= {m["channel"] for m in ms}
                and sum(m["channel"] == "l2Book" for m in ms) >= 3)

    ws = connect(sim, PERP, subs + [hl.ping_message()])
    try:
        frames = receive(ws, 60, until=enough)
    finally:
        ws.close()
    msgs = [orjson.loads(f) for f in frames]
    acks = [m for m in msgs if m["channel"] == "subscriptionResponse"]
    assert [a["data"]["subscription"]["type"] for a in acks] == ["trades", "l2Book", "bbo", "activeAssetCtx"]
    assert acks[1]["data"] == {"method": "subscribe", "subscription": {"type": "l2Book", "coin": "BTC", "nSigFigs": None, "mantissa": None}}
    assert {"channel": "pong"} in msgs
    real = _hl_capture(data_dir)
    real_book = next(m for m in real if m["channel"] == "l2Book")
    real_trade = next(m for m in real if m["channel"] == "trades")
    book = next(m for m in msgs if m["channel"] == "l2Book")
    assert keys(book) == keys(real_book) and keys(book["data"]) == keys(real_book["data"])
    assert [len(side) for side in book["data"]["levels"]] == [len(side) for side in real_book["data"]["levels"]] == [20, 20]
    assert keys(book["data"]["levels"][0][0]) == keys(real_book["data"]["levels"][0][0])
    trade = next(m for m in msgs if m["channel"] == "trades")
    assert keys(trade["data"][0]) == keys(real_trade["data"][0])
    times = [m["data"]["time"] for m in msgs if m["channel"] == "l2Book"]
    # one at the subscription, then one per 500 ms of the market's time (not of the machine's)
    assert times == sorted(times) and len(times) >= 3 and all(b - a == 500 for a, b in zip(times[1:], times[2:])), times
    events = [e for f in frames for e in hl.HyperliquidParser().parse(f, time.time_ns())]
    kinds = {type(e) for e in events}
    assert {Trade, DepthSnapshot, Quote, Mark, OpenInterest} <= kinds
    assert all(q.bid_px < q.ask_px for q in events if isinstance(q, Quote))
    assert {e.trade_id for e in events if isinstance(e, Trade)} <= set(sim.sent.trade_ids[HBTC])


def test_hyperliquid_all_dexs_asset_ctxs_equal_the_active_asset_ctx_of_each_coin(sim):
    """One subscription for every perp: the main dex's contexts at their registry asset index
    (BTC 0, ETH 1), equal to the per-coin ``activeAssetCtx`` of the same second."""
    subs = hl.subscribe_messages([hl.Channel.ALL_ASSET_CTXS, hl.Channel.ASSET_CTX], ["BTC", "ETH"])
    assert subs[0] == {"method": "subscribe", "subscription": {"type": "allDexsAssetCtxs"}} and len(subs) == 3
    ws = connect(sim, PERP, subs)
    try:
        msgs = [orjson.loads(f) for f in receive(ws, 60, until=lambda fr: sum(b'"allDexsAssetCtxs"' in f for f in fr) >= 3)]
    finally:
        ws.close()
    alls = [m for m in msgs if m["channel"] == "allDexsAssetCtxs"]
    singles = {(m["data"]["coin"], m["data"]["ctx"]["oraclePx"], m["data"]["ctx"]["openInterest"]): m["data"]["ctx"]
               for m in msgs if m["channel"] == "activeAssetCtx"}
    assert len(alls) >= 2
    for m in alls:
        (dex, main), (builder, _) = m["data"]["ctxs"]
        assert dex == "" and builder == "sim"
        for i, coin in ((0, "BTC"), (1, "ETH")):  # the meta universe order (the SDK cassette: BTC, ETH, ...)
            assert (coin, main[i]["oraclePx"], main[i]["openInterest"]) in singles
            assert main[i] == singles[(coin, main[i]["oraclePx"], main[i]["openInterest"])]
    parser = hl.HyperliquidParser()
    events = parser.parse(orjson.dumps(alls[-1]), 7)
    (dex, main), _ = alls[-1]["data"]["ctxs"]
    marks = {e.symbol: e for e in events if isinstance(e, Mark)}
    ois = {e.symbol: e for e in events if isinstance(e, OpenInterest)}
    assert set(marks) == set(ois) == {HBTC, HETH}  # the idle assets of the universe (no price) are not stored
    for sym, c in ((HBTC, main[0]), (HETH, main[1])):
        assert (marks[sym].mark_px, marks[sym].index_px, marks[sym].funding_rate) == (
            float(c["markPx"]), float(c["oraclePx"]), float(c["funding"]))
        assert (ois[sym].oi, ois[sym].oi_value) == (float(c["openInterest"]), float(c["openInterest"]) * float(c["markPx"]))
        assert marks[sym].ts == 7
    assert parser.unmapped_ctxs == sum(1 for i in range(len(main)) if i not in (0, 1, 4, 5)) + 1  # + the builder dex's


def _errors_then_backlog(frames) -> bool:
    """Three errors came, and a trades frame after the last subscription's response."""
    ms = [orjson.loads(f) for f in frames]
    acks = [k for k, m in enumerate(ms) if m["channel"] == "subscriptionResponse"]
    return (sum(m["channel"] == "error" for m in ms) >= 3 and len(acks) >= 2
            and any(m["channel"] == "trades" for m in ms[acks[-1]:]))


def test_hyperliquid_errors_backlog_and_info(sim):
    sub = {"method": "subscribe", "subscription": {"type": "trades", "coin": "ETH"}}
    ws = connect(sim, PERP, [sub])
    try:
        first = [orjson.loads(f) for f in receive(ws, 60, until=lambda fr: sum(b'"channel":"trades"' in f for f in fr) >= 3)]
        ws.send(orjson.dumps(sub).decode())
        ws.send(orjson.dumps({"method": "subscribe", "subscription": {"type": "trades", "coin": "NOPE"}}).decode())
        ws.send("{not json")
        ws.send(orjson.dumps({**sub, "method": "unsubscribe"}).decode())
        ws.send(orjson.dumps(sub).decode())
        later = [orjson.loads(f) for f in receive(ws, 60, until=_errors_then_backlog)]
    finally:
        ws.close()
    errors = [m["data"] for m in later if m["channel"] == "error"]
    assert errors[0].startswith("Already subscribed") and errors[1].startswith("Invalid subscription")
    assert errors[2].startswith("Error parsing JSON")
    with pytest.raises(VenueErrorFrame):
        hl.HyperliquidParser().parse(orjson.dumps(next(m for m in later if m["channel"] == "error")), 0)
    # a new subscription first gets the most recent trades again (the venue's backlog)
    seen = {t["tid"] for m in first if m["channel"] == "trades" for t in m["data"]}
    i = max(k for k, m in enumerate(later) if m["channel"] == "subscriptionResponse")
    backlog = next(m for m in later[i:] if m["channel"] == "trades")
    assert {t["tid"] for t in backlog["data"]} <= seen | set(sim.sent.trade_ids[HETH]) and len(backlog["data"]) <= 10
    req = urllib.request.Request(sim.endpoints(PERP).rest + "/info", data=orjson.dumps({"type": "l2Book", "coin": "ETH"}), method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        snap = hl.parse_l2_snapshot(r.read(), 0)
    assert snap.symbol == HETH and len(snap.bids) == 20
    bad = urllib.request.Request(sim.endpoints(PERP).rest + "/info", data=b'{"type":"meta"}', method="POST")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(bad, timeout=5)
    assert exc.value.code == 422


def test_app_ping_venues_drop_silent_clients_and_keep_pinging_ones():
    # Not a timing test: the silent client is waited for (up to 60 s), and the pinging one
    # pings every 0.1 s against a 3 s timeout (a stall that long would be a broken machine).
    cfg = SimulatorConfig(symbols=(HBTC,), pong_timeout_s=3.0, ping_interval_s=0.2)
    with Simulator(cfg) as s:
        quiet = connect(s, PERP, [{"method": "subscribe", "subscription": {"type": "bbo", "coin": "BTC"}}])
        alive = connect(s, PERP, [{"method": "subscribe", "subscription": {"type": "bbo", "coin": "BTC"}}])
        alive.settimeout(0.1)
        pings = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and s.connections() > 1:
            alive.send('{"method":"ping"}')
            try:
                op, frame = alive.recv_data_frame(control_frame=True)
                pings += op == websocket.ABNF.OPCODE_PING
            except websocket.WebSocketTimeoutException:
                pass
            time.sleep(0.1)
        assert s.connections() == 1 and pings == 0  # no websocket pings from an app-ping venue
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError, OSError)):
            quiet.settimeout(2)
            for _ in range(1000):
                quiet.recv()
        alive.close()


# -- both -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("symbols, market", [((BSPOT, BPERP), LINEAR), ((BSPOT, BPERP), SPOT), ((HBTC, HETH), PERP)])
def test_same_seed_same_bytes(symbols, market):
    cfg = SimulatorConfig(symbols=symbols, seed=5, start_ms=1_700_000_000_000, liquidation_prob=0.2)
    other = SimulatorConfig(symbols=symbols, seed=6, start_ms=1_700_000_000_000, liquidation_prob=0.2)
    a, b, c = (GeneratedMarket(x, market, x.start_ms) for x in (cfg, cfg, other))
    if market is not PERP:  # books are only published once subscribed: subscribe every topic
        for g in (a, b, c):
            for m in g.symbols.values():
                g.dialect._view(m, 50)
    fa, fb, fc = ([f.payload for i in range(100) for f in g.step(i)] for g in (a, b, c))
    assert fa == fb and fa != fc and len(fa) > 200


def test_config_and_endpoints_of_every_venue():
    cfg = SimulatorConfig(symbols=("binance:BTC/USDT:USDT", BSPOT, BPERP, HBTC))
    assert cfg.markets == (Market.USDM, SPOT, LINEAR, PERP)
    with Simulator(cfg) as s:
        assert s.endpoints(LINEAR).ws.endswith("/v5/public/linear") and s.endpoints(SPOT).ws.endswith("/v5/public/spot")
        assert s.endpoints(PERP).ws.endswith("/ws") and s.endpoints("usdm").depth_path == "/fapi/v1/depth"
        with pytest.raises(ValueError, match="the simulator serves"):
            s.endpoints(Market.SPOT)
    with pytest.raises(UnknownSymbol, match="kraken:BTC/USD"):
        SimulatorConfig(symbols=("kraken:BTC/USD",))
    with pytest.raises(UnknownSymbol, match="NOPE"):
        SimulatorConfig(symbols=("hyperliquid:NOPE/USDC:USDC",))
