"""Binance parsers against every real recorded Binance frame in ../shared/data.

Each test reads the capture independently (gzip/plain text + orjson, no collectors code)
and checks the parser's events one by one against the fields of the frame they came from.
"""

from __future__ import annotations

import bisect
import gzip
import math

import numpy as np
import orjson
import pytest

from collectors.events import AggTrade, Bar, DepthDiff, DepthSnapshot, Liquidation, Mark, Quote, Trade
from collectors.exchanges import InvalidValue, MalformedFrame, OversizedFrame, UnknownStream, UnknownSymbol, VenueErrorFrame
from collectors.exchanges.binance import (
    BinanceParser,
    Channel,
    Market,
    depth_snapshot_url,
    from_tickstore,
    infer_market,
    market_of_symbol,
    market_of_url,
    native_symbol_of_url,
    parse,
    parse_snapshot,
    register_symbol,
    stream_names,
    subscribe_message,
    to_native,
    to_tickstore,
    to_unified,
    ws_url,
)

MS = 1_000_000

# (file, market, tickstore symbol, receive-ts unit in ns)
HFT = [
    ("hftbacktest/usdm/btcusdt_20240808.gz", Market.USDM, "binance:BTC/USDT:USDT", 1),
    ("hftbacktest/usdm/btcusdt_20230404.dat.gz", Market.USDM, "binance:BTC/USDT:USDT", 1000),
    ("hftbacktest/spot/btcusdt_20240808.gz", Market.SPOT, "binance:BTC/USDT", 1),
    ("hftbacktest/spot/btcusdt_20240809.gz", Market.SPOT, "binance:BTC/USDT", 1),
    ("hftbacktest/cm/btcusd_perp_20240808.gz", Market.COINM, "binance:BTC/USD:BTC", 1),
    ("hftbacktest/cm/btcusd_perp_20240809.gz", Market.COINM, "binance:BTC/USD:BTC", 1),
]
CRYPTOFEED = [
    ("cryptofeed/BINANCE.ws.1.0", Market.SPOT),
    ("cryptofeed/BINANCE_FUTURES.ws.1.0", Market.USDM),
]


def hft_lines(path):
    """(recv_ns, raw bytes) of every line, read without collectors code."""
    out = []
    with gzip.open(path, "rb") as fh:
        for line in fh:
            ts, _, raw = line.rstrip(b"\n").partition(b" ")
            out.append((int(ts), raw))
    return out


def cryptofeed_frames(path):
    """(recv_ns, raw) of every received-frame line of a cryptofeed v1 recording."""
    out = []
    for line in path.read_bytes().splitlines():
        if line[:1].isdigit():
            ts, _, raw = line.partition(b": ")
            whole, _, frac = ts.decode().partition(".")
            out.append((int(whole) * 10**9 + int((frac + "0" * 9)[:9]), raw))
    return out


class SpotClock:
    """The exchange time of spot frames without one, computed independently: the ``E`` of
    the first depth frame (in receive order) of the symbol whose ``u`` reaches the update
    id, if it is received within 2 s; else the receive time."""

    def __init__(self, lines):
        self.depth = {}  # native -> ([recv_ns], [U], [u], [E ns]) in receive order
        for recv, raw in lines:
            msg = orjson.loads(raw)
            d = msg.get("data", {})
            if d.get("e") == "depthUpdate":
                cols = self.depth.setdefault(d["s"], ([], [], [], []))
                for col, v in zip(cols, (recv, d["U"], d["u"], d["E"] * MS)):
                    col.append(v)
        for recvs, _, us, _ in self.depth.values():  # what bisect below relies on
            assert recvs == sorted(recvs) and us == sorted(us)

    def ts(self, native: str, update_id: int, recv_ns: int) -> int:
        recvs, firsts, us, es = self.depth.get(native, ([], [], [], []))
        seen = bisect.bisect_right(recvs, recv_ns)  # depth frames received before it
        if not seen:
            return recv_ns
        if update_id <= us[seen - 1]:  # an earlier depth frame covers it
            return es[bisect.bisect_left(us, update_id)] if firsts[0] <= update_id else recv_ns
        j = max(seen, bisect.bisect_left(us, update_id))  # the next one that reaches it
        return es[j] if j < len(us) and recvs[j] - recv_ns <= 2_000_000_000 else recv_ns


def check_event(ev, data, recv_ns, symbol, clock=None):
    """The event carries exactly the frame's values."""
    assert ev.symbol == symbol
    assert ev.recv_ns == recv_ns
    e = data["e"] if "e" in data else "bookTicker"
    if e == "trade":
        assert type(ev) is Trade
        assert (ev.ts, ev.trade_id, ev.price, ev.qty) == (data["T"] * MS, data["t"], float(data["p"]), float(data["q"]))
        assert ev.side == (-1 if data["m"] else 1)
        assert ev.kind == {None: 0, "MARKET": 0, "INSURANCE_FUND": 1, "ADL": 2, "NA": 4}[data.get("X")]
    elif e == "aggTrade":
        assert type(ev) is AggTrade
        assert (ev.ts, ev.agg_id, ev.price, ev.qty) == (data["T"] * MS, data["a"], float(data["p"]), float(data["q"]))
        assert (ev.first_trade_id, ev.last_trade_id) == (data["f"], data["l"])
        assert ev.side == (-1 if data["m"] else 1)
    elif e == "bookTicker":
        assert type(ev) is Quote
        assert ev.ts == (data["E"] * MS if "E" in data else clock.ts(data["s"], data["u"], recv_ns) if clock else recv_ns)
        assert (ev.update_id, ev.bid_px, ev.bid_qty, ev.ask_px, ev.ask_qty) == (
            data["u"], float(data["b"]), float(data["B"]), float(data["a"]), float(data["A"]),
        )
    elif e == "depthUpdate":
        assert type(ev) is DepthDiff
        assert (ev.ts, ev.first_update_id, ev.update_id) == (data["E"] * MS, data["U"], data["u"])
        assert ev.prev_update_id == data.get("pu", -1)
        assert [tuple(x) for x in ev.bids] == [(float(p), float(q)) for p, q in data["b"]]
        assert [tuple(x) for x in ev.asks] == [(float(p), float(q)) for p, q in data["a"]]
    elif e == "markPriceUpdate":
        assert type(ev) is Mark
        assert (ev.ts, ev.mark_px, ev.index_px, ev.funding_rate, ev.next_funding_ts) == (
            data["E"] * MS, float(data["p"]), float(data["i"]), float(data["r"]), data["T"] * MS,
        )
    else:
        raise AssertionError(f"unexpected event type {e!r}")


@pytest.mark.parametrize("name,market,symbol,unit", HFT, ids=[h[0] for h in HFT])
def test_every_hftbacktest_frame_parses_to_its_values(data_dir, name, market, symbol, unit):
    lines = [(ts * unit, raw) for ts, raw in hft_lines(data_dir / name)]
    frames = [(ts, raw) for ts, raw in lines if not raw.startswith(b'{"lastUpdateId')]
    clock = SpotClock(frames) if market is Market.SPOT else None
    parser = BinanceParser(market)
    kinds = {}
    events = []
    for ts, raw in frames:
        kind = orjson.loads(raw)["stream"].split("@", 1)[1]
        kinds[kind] = kinds.get(kind, 0) + 1
        events += parser.parse(raw, ts)
    events += parser.drain()
    # every frame of the file became exactly one event of its kind, whenever it came out
    assert len(events) == len(frames) == sum(kinds.values())
    key = {Trade: lambda e: e.trade_id, Quote: lambda e: e.update_id, DepthDiff: lambda e: e.update_id, Mark: lambda e: e.ts}
    by_frame = {(type(e), e.recv_ns, key[type(e)](e)): e for e in events}
    assert len(by_frame) == len(events)
    cls = {"trade": Trade, "bookTicker": Quote, "depthUpdate": DepthDiff, "markPriceUpdate": Mark}
    for ts, raw in frames:
        d = orjson.loads(raw)["data"]
        t = cls[d.get("e", "bookTicker")]
        ident = {Trade: "t", Quote: "u", DepthDiff: "u"}.get(t)
        ev = by_frame[(t, ts, d[ident] if ident else d["E"] * MS)]
        check_event(ev, d, ts, symbol, clock)
    trade_ids = [e.trade_id for e in events if type(e) is Trade]
    assert kinds.get("trade", 0) == len(trade_ids) > 0
    # PROVENANCE: 0 trade-id gaps in these captures
    assert (np.diff(trade_ids) == 1).all()
    if market is Market.SPOT:  # spot quotes carry exchange time wherever the depth stream dates them
        quotes = [e for e in events if type(e) is Quote]
        dated = sum(q.ts != q.recv_ns for q in quotes)
        assert dated / len(quotes) > 0.95, (dated, len(quotes))


def test_markprice_frames_of_the_2023_capture(data_dir):
    """The only markPrice@1s recording: 99 frames, every value carried over."""
    lines = hft_lines(data_dir / "hftbacktest/usdm/btcusdt_20230404.dat.gz")
    marks = []
    for ts, raw in lines:
        if b"markPrice" in raw[:40]:
            (ev,) = parse(raw, ts * 1000, Market.USDM)
            d = orjson.loads(raw)["data"]
            check_event(ev, d, ts * 1000, "binance:BTC/USDT:USDT")
            marks.append(ev)
    assert len(marks) == sum(1 for _, raw in lines if b'"markPriceUpdate"' in raw) == 99
    assert all(m.next_funding_ts == marks[0].next_funding_ts for m in marks)  # one funding window
    assert all(0 < abs(m.mark_px - m.index_px) / m.index_px < 0.01 for m in marks)


@pytest.mark.parametrize("name,market", CRYPTOFEED, ids=[c[0] for c in CRYPTOFEED])
def test_cryptofeed_multisymbol_frames(data_dir, name, market):
    frames = cryptofeed_frames(data_dir / name)
    parser = BinanceParser(market)
    unknown = 0
    seen_symbols = set()
    clock = SpotClock(frames) if market is Market.SPOT else None
    events, bars_of = {}, {}
    for i, (recv, raw) in enumerate(frames):
        for ev in parser.parse(raw, recv):
            if type(ev) is Bar:  # a bar has no receive time: it belongs to the frame parsed
                bars_of.setdefault(i, []).append(ev)
            else:
                events.setdefault((type(ev), ev.recv_ns, ev.symbol), []).append(ev)
    for ev in parser.drain():
        events.setdefault((type(ev), ev.recv_ns, ev.symbol), []).append(ev)
    bars = []
    for i, (recv, raw) in enumerate(frames):
        msg = orjson.loads(raw)
        native = msg["data"]["s"]
        symbol = to_tickstore(native, market)
        if "@kline" in msg["stream"]:
            k = msg["data"]["k"]
            got = bars_of.pop(i, [])
            if k["x"]:  # a closed kline is a bar of its minute; the running updates are nothing
                (bar,) = got
                assert bar.symbol == symbol
                assert (bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.freq) == (
                    k["t"] * MS, float(k["o"]), float(k["h"]), float(k["l"]), float(k["c"]), float(k["v"]), "1m")
                bars.append(bar)
            else:
                assert got == []
            unknown += 1
            continue
        cls = {"aggTrade": AggTrade, "depthUpdate": DepthDiff}.get(msg["data"].get("e"), Quote)
        ev = events[(cls, recv, symbol)].pop(0)
        check_event(ev, msg["data"], recv, symbol, clock)
        seen_symbols.add(symbol)
    assert not any(events.values()) and not bars_of
    assert unknown == sum(1 for _, raw in frames if b"@kline_1m" in raw) > 0
    assert sum(1 for _, raw in frames if b'"x":true' in raw) == len(bars)
    # the capture's 30 s hold no closed kline: close a real one (x -> true) as Binance does at the minute
    msg = orjson.loads(next(raw for _, raw in frames if b"@kline_1m" in raw))
    msg["data"]["k"]["x"] = True
    k = msg["data"]["k"]
    (bar,) = BinanceParser(market).parse(orjson.dumps(msg), 5)
    assert type(bar) is Bar and bar.symbol == to_tickstore(msg["data"]["s"], market)
    assert (bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.freq) == (
        k["t"] * MS, float(k["o"]), float(k["h"]), float(k["l"]), float(k["c"]), float(k["v"]), "1m")
    assert BinanceParser(market, klines=False).parse(orjson.dumps(msg), 5) == []  # ignored by configuration
    expected = {
        Market.SPOT: {"binance:NKN/USDT", "binance:BLZ/ETH", "binance:LRC/BTC", "binance:RUNE/EUR"},
        Market.USDM: {"binance:SUSHI/USDT:USDT", "binance:AKRO/USDT:USDT", "binance:KEEP/USDT:USDT", "binance:CTK/USDT:USDT"},
    }[market]
    assert seen_symbols == expected


def rest_bodies(data_dir):
    """(body, market, native symbol or None) of every REST depth snapshot in the captures."""
    out = []
    for name, market, symbol, _ in HFT:
        for _, raw in hft_lines(data_dir / name):
            if raw.startswith(b'{"lastUpdateId'):
                out.append((raw, market, from_tickstore(symbol)[0]))
    for name in ("cryptofeed/BINANCE.http.0.0", "cryptofeed/BINANCE_FUTURES.http.0.0"):
        for line in filter(None, (data_dir / name).read_bytes().splitlines()):
            url, _, rest = line.partition(b" -> ")
            out.append((rest.partition(b": ")[2], market_of_url(url.decode()), native_symbol_of_url(url.decode())))
    return out


def test_every_rest_snapshot(data_dir):
    bodies = rest_bodies(data_dir)
    assert len(bodies) == 4 + 8  # 4 hftbacktest sessions + 4 spot + 4 usdm cryptofeed symbols
    for raw, market, native in bodies:
        d = orjson.loads(raw)
        snap = parse_snapshot(raw, 123, market, native_symbol=native)
        assert type(snap) is DepthSnapshot
        assert snap.symbol == to_tickstore(native, market)
        assert snap.update_id == d["lastUpdateId"]
        assert snap.ts == (d["E"] * MS if "E" in d else 123)
        assert [tuple(x) for x in snap.bids] == [(float(p), float(q)) for p, q in d["bids"]]
        assert [tuple(x) for x in snap.asks] == [(float(p), float(q)) for p, q in d["asks"]]
        assert snap.bids[0][0] < snap.asks[0][0]
    # the COIN-M body names its symbol itself
    cm = next(raw for raw, market, _ in bodies if market is Market.COINM)
    assert parse_snapshot(cm, 1, Market.COINM).symbol == "binance:BTC/USD:BTC"
    spot = next(raw for raw, market, _ in bodies if market is Market.SPOT)
    with pytest.raises(MalformedFrame, match="names no symbol; pass native_symbol="):
        parse_snapshot(spot, 1, Market.SPOT)


@pytest.mark.parametrize(
    "name,market",
    [(h[0], h[1]) for h in HFT] + CRYPTOFEED,
)
def test_infer_market_from_the_first_frame(data_dir, name, market):
    path = data_dir / name
    if name.startswith("hftbacktest"):
        raw = hft_lines(path)[0][1]
    else:
        raw = cryptofeed_frames(path)[0][1]
    assert infer_market(raw) is market


def test_infer_market_of_every_kind_of_frame(data_dir):
    """Every frame of a capture that decides anything decides its own market."""
    for name, market, _, _ in HFT:
        decided = [infer_market(raw) for _, raw in hft_lines(data_dir / name)[:2000]]
        assert set(decided) - {None} == {market}, name
    for name, market in CRYPTOFEED:  # aggTrade, bookTicker, depth decide; kline cannot
        for _, raw in cryptofeed_frames(data_dir / name):
            assert infer_market(raw) is (None if b"@kline" in raw else market), raw[:80]


# -- bad frames ------------------------------------------------------------------------------
@pytest.fixture
def usdm_frames(data_dir):
    return hft_lines(data_dir / "hftbacktest/usdm/btcusdt_20240808.gz")[:200]


def test_malformed_frames_raise_with_the_frame_quoted(usdm_frames):
    parser = BinanceParser(Market.USDM)
    raw = next(r for _, r in usdm_frames if b"@trade" in r[:40])
    with pytest.raises(MalformedFrame, match="not JSON") as exc:
        parser.parse(raw[: len(raw) // 2], 1)  # a truncated frame
    assert "btcusdt@trade" in str(exc.value)
    d = orjson.loads(raw)
    del d["data"]["p"]
    with pytest.raises(MalformedFrame, match="KeyError 'p'"):
        parser.parse(orjson.dumps(d), 1)
    d = orjson.loads(raw)
    d["data"]["q"] = "abc"
    with pytest.raises(MalformedFrame, match="abc"):
        parser.parse(orjson.dumps(d), 1)
    with pytest.raises(MalformedFrame, match="expected a JSON object, got list"):
        parser.parse(b"[1, 2]", 1)
    with pytest.raises(MalformedFrame):
        parser.parse(b"", 1)


def test_unknown_stream_oversized_and_venue_errors(usdm_frames):
    depth = next(r for _, r in usdm_frames if b"@depth@0ms" in r[:40] and len(r) > 2000)
    small = BinanceParser(Market.USDM, max_frame_bytes=1000)
    with pytest.raises(OversizedFrame, match=f"frame of {len(depth)} bytes exceeds max_frame_bytes=1000"):
        small.parse(depth, 1)
    d = orjson.loads(depth)
    d["stream"] = "btcusdt@depthy"
    with pytest.raises(UnknownStream, match="'depthy'"):
        small.parse(orjson.dumps({"stream": d["stream"], "data": {"e": "kline"}}), 1)
    with pytest.raises(UnknownStream, match="'24hrTicker'"):
        parse(b'{"e":"24hrTicker","E":1,"s":"BTCUSDT"}', 1, Market.USDM)
    with pytest.raises(VenueErrorFrame, match="Invalid symbol"):
        parse(b'{"code":-1121,"msg":"Invalid symbol.","id":3}', 1, Market.SPOT)
    assert parse(b'{"result":null,"id":1}', 1, Market.SPOT) == []


def test_depth_level_memo_is_exact_bounded_and_refuses_bad_levels(usdm_frames, monkeypatch):
    """Level strings -> floats go through a per-parser memo: same values as float(), bounded,
    malformed levels and non-finite or negative ones refused and never remembered."""
    import collectors.exchanges.binance as binance

    monkeypatch.setattr(binance, "_FLOAT_MEMO", 300)
    parser = BinanceParser(Market.USDM)
    depth = [raw for _, raw in usdm_frames if b"@depth@0ms" in raw[:40]]
    assert len(depth) > 5
    for raw in depth * 2:  # the second pass reads from the memo
        d = orjson.loads(raw)["data"]
        (ev,) = parser.parse(raw, 1)
        for got, levels in ((ev.bids, d["b"]), (ev.asks, d["a"])):
            want = [(float(p), float(q)) for p, q in levels]
            assert got == want and all(type(x) is float for pair in got for x in pair)
        assert len(parser._floats) <= 300 + 2 * (len(d["b"]) + len(d["a"]))
    d = orjson.loads(depth[0])
    for bad in ([["NaN", "1.0"]], [["61800.20", "inf"]], [["-1.5", "1.0"]]):
        d["data"]["b"] = bad
        with pytest.raises(InvalidValue):
            parser.parse(orjson.dumps(d), 1)
        assert not {'NaN', 'inf', '-1.5'} & set(parser._floats)
    long = "1" * 40 + ".5"
    d["data"]["b"] = [[long, "1.0"]]
    (ev,) = parser.parse(orjson.dumps(d), 1)
    assert ev.bids == [(float(long), 1.0)] and long not in parser._floats  # long strings are not kept
    for bad in ([["61800.20", "abc"]], [["61800.20", "1.0", "2.0"]], [["61800.20"]], [[["61800.20"], "1.0"]], [None]):
        d["data"]["b"] = bad
        with pytest.raises(MalformedFrame):
            parser.parse(orjson.dumps(d), 1)
        assert "abc" not in parser._floats


def test_raw_ws_frames_without_envelope(usdm_frames):
    """/ws/<stream> connections deliver the payload without {"stream","data"}."""
    for _, raw in usdm_frames:
        if raw.startswith(b'{"stream"'):
            inner = orjson.dumps(orjson.loads(raw)["data"])
            assert parse(inner, 7, Market.USDM) == parse(raw, 7, Market.USDM)


def test_documented_payloads_without_a_recording():
    """forceOrder, partial books and market-wide streams: no capture holds them, so these
    are the example payloads of Binance's API documentation (values as published)."""
    force = (
        b'{"stream":"btcusdt@forceOrder","data":{"e":"forceOrder","E":1568014460893,"o":{"s":"BTCUSDT",'
        b'"S":"SELL","o":"LIMIT","f":"IOC","q":"0.014","p":"9910","ap":"9910","X":"FILLED","l":"0.014",'
        b'"z":"0.014","T":1568014460893}}}'
    )
    (liq,) = parse(force, 5, Market.USDM)
    assert liq == Liquidation("binance:BTC/USDT:USDT", 1568014460893 * MS, 5, -1, 9910.0, 0.014)
    spot_partial = b'{"stream":"bnbbtc@depth5@100ms","data":{"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}}'
    (snap,) = parse(spot_partial, 9, Market.SPOT)
    assert snap == DepthSnapshot("binance:BNB/BTC", 9, 9, 160, [(0.0024, 10.0)], [(0.0026, 100.0)])
    fut_partial = (
        b'{"stream":"btcusdt@depth5@100ms","data":{"e":"depthUpdate","E":1571889248277,"T":1571889248276,'
        b'"s":"BTCUSDT","U":390497796,"u":390497878,"pu":390497794,"b":[["7403.89","0.002"]],"a":[["7405.96","3.340"]]}}'
    )
    (snap,) = parse(fut_partial, 9, Market.USDM)
    assert (snap.ts, snap.update_id, snap.bids, snap.asks) == (1571889248277 * MS, 390497878, [(7403.89, 0.002)], [(7405.96, 3.34)])
    arr = (
        b'{"stream":"!markPrice@arr@1s","data":[{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT",'
        b'"p":"11794.15000000","i":"11784.62659091","P":"11784.25641265","r":"0.00038167","T":1562306400000},'
        b'{"e":"markPriceUpdate","E":1562305380000,"s":"ETHUSDT","p":"300.1","i":"300.2","P":"300.3","r":"","T":0}]}'
    )
    btc, eth = parse(arr, 1, Market.USDM)
    assert (btc.symbol, btc.mark_px, btc.funding_rate) == ("binance:BTC/USDT:USDT", 11794.15, 0.00038167)
    assert eth.symbol == "binance:ETH/USDT:USDT" and math.isnan(eth.funding_rate)


# -- symbols and subscriptions -----------------------------------------------------------------
@pytest.mark.parametrize(
    "native,market,unified",
    [
        ("BTCUSDT", Market.SPOT, "BTC/USDT"),
        ("BLZETH", Market.SPOT, "BLZ/ETH"),
        ("RUNEEUR", Market.SPOT, "RUNE/EUR"),
        ("USDCUSDT", Market.SPOT, "USDC/USDT"),
        ("ETHFDUSD", Market.SPOT, "ETH/FDUSD"),
        ("BTCUSDT", Market.USDM, "BTC/USDT:USDT"),
        ("1000PEPEUSDT", Market.USDM, "1000PEPE/USDT:USDT"),
        ("BTCUSDC", Market.USDM, "BTC/USDC:USDC"),
        ("BTCUSDT_240927", Market.USDM, "BTC/USDT:USDT-240927"),
        ("BTCUSD_PERP", Market.COINM, "BTC/USD:BTC"),
        ("ETHUSD_240927", Market.COINM, "ETH/USD:ETH-240927"),
    ],
)
def test_symbol_mapping_round_trips(native, market, unified):
    assert to_unified(native, market) == unified
    assert to_native(unified) == native
    assert market_of_symbol(unified) is market
    assert from_tickstore(f"binance:{unified}") == (native, market)


def test_symbol_errors_name_the_values():
    with pytest.raises(UnknownSymbol, match="'XYZQQQ'.*register_symbol"):
        to_unified("XYZQQQ", Market.SPOT)
    with pytest.raises(UnknownSymbol, match="'BTCUSDT' is not a COIN-M id"):
        to_unified("BTCUSDT", Market.COINM)
    with pytest.raises(UnknownSymbol, match="'bybit:BTC/USDT' is not a binance tickstore symbol"):
        from_tickstore("bybit:BTC/USDT")
    with pytest.raises(UnknownSymbol, match="settle 'ETH' is neither"):
        market_of_symbol("BTC/USDT:ETH")
    register_symbol("ABCXYZQ", "ABC/XYZQ", Market.SPOT)
    assert to_unified("ABCXYZQ", Market.SPOT) == "ABC/XYZQ" and to_native("ABC/XYZQ") == "ABCXYZQ"


def test_streams_urls_and_subscribe_messages():
    assert stream_names("BTC/USDT:USDT", [Channel.TRADES, Channel.DEPTH, Channel.MARK]) == [
        "btcusdt@trade", "btcusdt@depth@100ms", "btcusdt@markPrice@1s",
    ]
    assert stream_names("binance:BTC/USD:BTC", [Channel.QUOTES, Channel.DEPTH_RT]) == [
        "btcusd_perp@bookTicker", "btcusd_perp@depth@0ms",
    ]
    assert stream_names("BTCUSDT", ["aggTrade", "depth10@100ms"], market=Market.SPOT) == [
        "btcusdt@aggTrade", "btcusdt@depth10@100ms",
    ]
    with pytest.raises(ValueError, match="LIQUIDATIONS .* does not exist on Binance spot"):
        stream_names("BTC/USDT", [Channel.LIQUIDATIONS])
    with pytest.raises(ValueError, match="needs market="):
        stream_names("BTCUSDT", [Channel.TRADES])
    assert ws_url(Market.USDM, ["btcusdt@trade", "btcusdt@depth@100ms"]) == (
        "wss://fstream.binance.com/stream?streams=btcusdt@trade/btcusdt@depth@100ms"
    )
    assert orjson.loads(subscribe_message(["btcusdt@trade"], request_id=7)) == {
        "method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 7,
    }
    assert depth_snapshot_url("BTC/USDT") == "https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=1000"
    assert depth_snapshot_url("BTC/USD:BTC", limit=500).startswith("https://dapi.binance.com/dapi/v1/depth?symbol=BTCUSD_PERP")
    with pytest.raises(ValueError, match="depth limit 5000 is not accepted by Binance usdm"):
        depth_snapshot_url("BTC/USDT:USDT", limit=5000)
    for url, market in [
        ("wss://stream.binance.com:9443/stream?streams=x", Market.SPOT),
        ("https://fapi.binance.com/fapi/v1/depth?symbol=SUSHIUSDT&limit=1000", Market.USDM),
        ("wss://dstream.binance.com/stream", Market.COINM),
        ("http://127.0.0.1:8765/api/v3/depth?symbol=BTCUSDT", Market.SPOT),
    ]:
        assert market_of_url(url) is market
    assert market_of_url("ws://127.0.0.1:9000/stream") is None
