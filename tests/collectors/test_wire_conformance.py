"""Wire conformance: every message type the parsers take, as the venues document it, to the
rows it must become (each table's declared clock, ccxt symbols, the side conventions of
``tickstore.schemas``), and the documented order-book rules of each venue.

Frames are the venues' published examples (URL above each) or trimmed real frames of the
same shape (``../shared/data``), with values changed where a case needs it. Expected rows
are written out by hand from the documentation, never computed by the code under test.
"""

from __future__ import annotations

import gzip
import math
import uuid

import ccxt
import orjson
import pytest
import yaml
import zstandard

from collectors.book import BookBuilder
from collectors.events import (
    AggTrade,
    Bar,
    BookTop,
    DepthDiff,
    DepthSnapshot,
    Gap,
    Liquidation,
    Mark,
    OpenInterest,
    Quote,
    Trade,
)
from collectors.exchanges import InvalidValue, MalformedFrame, UnknownSymbol
from collectors.exchanges import binance as bn
from collectors.exchanges import bybit as bb
from collectors.exchanges import hyperliquid as hl
from collectors.replay import ReplayError, replay
from collectors.symbols import MARKETS, Markets, MarketType, SymbolNotFound
from tickstore import TradeKind

MS = 1_000_000
RECV = 1_700_000_000_000 * MS  # a receive time for frames whose own times are far from "now"


def _one(events, cls):
    out = [e for e in events if type(e) is cls]
    assert len(out) == 1, events
    return out[0]


# ============================== Binance ========================================================
SPOT_DOCS = "https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams"
USDM_DOCS = "https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams"
COINM_DOCS = "https://developers.binance.com/docs/derivatives/coin-margined-futures/websocket-market-streams"


def test_binance_spot_trade_and_agg_trade():
    # SPOT_DOCS#trade-streams: "m": Is the buyer the market maker? -> true: the seller was the taker
    trade = (b'{"stream":"bnbbtc@trade","data":{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,'
             b'"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}}')
    assert bn.parse(trade, 5, bn.Market.SPOT) == [
        Trade("binance:BNB/BTC", 1672515782136 * MS, 5, 12345, 0.001, 100.0, -1, int(TradeKind.MARKET))
    ]
    # SPOT_DOCS#aggregate-trade-streams: first/last trade ids kept (table agg_trades), ts = T
    agg = (b'{"stream":"bnbbtc@aggTrade","data":{"e":"aggTrade","E":1672515782136,"s":"BNBBTC","a":12345,'
           b'"p":"0.001","q":"100","f":100,"l":105,"T":1672515782136,"m":false,"M":true}}')
    assert bn.parse(agg, 5, bn.Market.SPOT) == [
        AggTrade("binance:BNB/BTC", 1672515782136 * MS, 5, 12345, 100, 105, 0.001, 100.0, 1)
    ]
    for bad in (b'"true"', b"1", b"null"):  # a maker flag that is no JSON boolean is no side
        with pytest.raises(InvalidValue, match="m="):
            bn.parse(trade.replace(b'"m":true', b'"m":' + bad), 5, bn.Market.SPOT)


def test_binance_futures_trade_kinds_and_agg_trade():
    # USD-M @trade (served, undocumented; real frame shape of ../shared/data hftbacktest/usdm):
    # X is the trade type: MARKET, INSURANCE_FUND (liquidation engine), ADL, NA
    frame = (b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161256322,"T":1723161256322,"s":"BTCUSDT",'
             b'"t":5266583935,"p":"61800.30","q":"0.006","X":"MARKET","m":false}}')
    for x, kind in (("MARKET", TradeKind.MARKET), ("INSURANCE_FUND", TradeKind.LIQUIDATION), ("ADL", TradeKind.ADL),
                    ("NA", TradeKind.OTHER), ("SOMETHING_NEW", TradeKind.OTHER)):
        (t,) = bn.parse(frame.replace(b"MARKET", x.encode()), 5, bn.Market.USDM)
        assert (t.symbol, t.ts, t.trade_id, t.price, t.qty, t.side, t.kind) == (
            "binance:BTC/USDT:USDT", 1723161256322 * MS, 5266583935, 61800.3, 0.006, 1, int(kind))
    # USDM_DOCS/Aggregate-Trade-Streams (no "M" on futures; the example's times 123456789 and
    # 123456785 moved to 2019 so that they pass the plausibility check)
    agg = (b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1568014460893,"s":"BTCUSDT","a":5933014,"p":"0.001",'
           b'"q":"100","f":100,"l":105,"T":1568014460889,"m":true}}')
    assert bn.parse(agg, 0, bn.Market.USDM) == [AggTrade("binance:BTC/USDT:USDT", 1568014460889 * MS, 0, 5933014, 100, 105, 0.001, 100.0, -1)]


def test_binance_book_tickers_spot_usdm_coinm():
    # SPOT_DOCS#individual-symbol-book-ticker-streams: no event time at all -> ts = receive
    # time (no depth stream to date it), recv_ts equal: a row that says it has no exchange time
    spot = b'{"stream":"bnbusdt@bookTicker","data":{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}}'
    assert bn.parse(spot, RECV, bn.Market.SPOT) == [Quote("binance:BNB/USDT", RECV, RECV, 400900217, 25.3519, 31.21, 25.3652, 40.66)]
    # USDM_DOCS/Individual-Symbol-Book-Ticker-Streams: quotes are on event time E (not T)
    usdm = (b'{"stream":"bnbusdt@bookTicker","data":{"e":"bookTicker","u":400900217,"E":1568014460893,"T":1568014460891,'
            b'"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}}')
    assert bn.parse(usdm, 0, bn.Market.USDM) == [Quote("binance:BNB/USDT:USDT", 1568014460893 * MS, 0, 400900217, 25.3519, 31.21, 25.3652, 40.66)]
    # COIN-M (real frame, ../shared/data hftbacktest/cm): "ps" pair; a dated contract's id
    coinm = (b'{"stream":"btcusd_240927@bookTicker","data":{"u":1007198632021,"e":"bookTicker","s":"BTCUSD_240927",'
             b'"ps":"BTCUSD","b":"61804.7","B":"35","a":"61804.8","A":"1645","T":1723161257465,"E":1723161257476}}')
    (q,) = bn.parse(coinm, 0, bn.Market.COINM)
    assert (q.symbol, q.ts, q.update_id, q.bid_qty) == ("binance:BTC/USD:BTC-240927", 1723161257476 * MS, 1007198632021, 35.0)


def test_binance_diff_and_partial_depth():
    # SPOT_DOCS#diff-depth-stream: no pu (prev_update_id -1), ts = E
    spot = (b'{"stream":"bnbbtc@depth@100ms","data":{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,'
            b'"b":[["0.0024","10"]],"a":[["0.0026","100"]]}}')
    assert bn.parse(spot, 0, bn.Market.SPOT) == [
        DepthDiff("binance:BNB/BTC", 1672515782136 * MS, 0, 157, 160, -1, [(0.0024, 10.0)], [(0.0026, 100.0)])]
    # COIN-M diff (real frame shape): pu chains the stream; BTCUSD_PERP -> BTC/USD:BTC
    cm = (b'{"stream":"btcusd_perp@depth@0ms","data":{"e":"depthUpdate","E":1723161257440,"T":1723161257432,"s":"BTCUSD_PERP",'
          b'"ps":"BTCUSD","U":1007198631260,"u":1007198631565,"pu":1007198631198,"b":[["61773.6","1001"]],"a":[["61801.4","0"]]}}')
    assert bn.parse(cm, 0, bn.Market.COINM) == [
        DepthDiff("binance:BTC/USD:BTC", 1723161257440 * MS, 0, 1007198631260, 1007198631565, 1007198631198,
                  [(61773.6, 1001.0)], [(61801.4, 0.0)])]
    # SPOT_DOCS#partial-book-depth-streams: {lastUpdateId, bids, asks}, symbol from the stream
    part = b'{"stream":"bnbbtc@depth5@100ms","data":{"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}}'
    assert bn.parse(part, 9, bn.Market.SPOT) == [DepthSnapshot("binance:BNB/BTC", 9, 9, 160, [(0.0024, 10.0)], [(0.0026, 100.0)])]
    # COINM_DOCS/Partial-Book-Depth-Streams: the diff shape, a whole top-N book, ts = E
    cm_part = (b'{"stream":"btcusd_200626@depth5","data":{"e":"depthUpdate","E":1591269996801,"T":1591269996646,'
               b'"s":"BTCUSD_200626","ps":"BTCUSD","U":17276694,"u":17276952,"pu":17276690,'
               b'"b":[["9523.0","5"]],"a":[["9524.6","2"]]}}')
    assert bn.parse(cm_part, 0, bn.Market.COINM) == [
        DepthSnapshot("binance:BTC/USD:BTC-200626", 1591269996801 * MS, 0, 17276952, [(9523.0, 5.0)], [(9524.6, 2.0)])]


def test_binance_rest_depth_snapshots():
    p = bn.BinanceParser(bn.Market.SPOT)
    # https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints#order-book
    # no E/T on spot: the snapshot is at its receive time
    snap = p.parse_snapshot(b'{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],"asks":[["4.00000200","12.00000000"]]}',
                            RECV, native_symbol="BNBBTC")
    assert snap == DepthSnapshot("binance:BNB/BTC", RECV, RECV, 1027024, [(4.0, 431.0)], [(4.000002, 12.0)])
    # COIN-M /dapi/v1/depth (real body shape): names its symbol, ts = E
    cm = bn.BinanceParser(bn.Market.COINM).parse_snapshot(
        b'{"lastUpdateId":1007198635033,"E":1723161257835,"T":1723161257823,"symbol":"BTCUSD_PERP","pair":"BTCUSD",'
        b'"bids":[["61804.7","35"]],"asks":[["61804.8","1645"]]}', 0)
    assert (cm.symbol, cm.ts, cm.update_id) == ("binance:BTC/USD:BTC", 1723161257835 * MS, 1007198635033)


def test_binance_mark_price_usdm_and_coinm_delivery():
    # USDM_DOCS/Mark-Price-Stream
    usdm = (b'{"stream":"btcusdt@markPrice@1s","data":{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT",'
            b'"p":"11794.15000000","i":"11784.62659091","P":"11784.25641265","r":"0.00038167","T":1562306400000}}')
    assert bn.parse(usdm, 0, bn.Market.USDM) == [
        Mark("binance:BTC/USDT:USDT", 1562305380000 * MS, 0, 11794.15, 11784.62659091, 0.00038167, 1562306400000 * MS)]
    # COINM_DOCS/Mark-Price-Stream: "r":"" for a delivery symbol, "T":0 -> NaN rate, no next
    # funding time, and never a settlement
    cm = (b'{"stream":"btcusd_201225@markPrice","data":{"e":"markPriceUpdate","E":1596095725000,"s":"BTCUSD_201225",'
          b'"p":"10934.62615417","P":"10962.17178236","i":"10933.62615417","r":"","T":0}}')
    p = bn.BinanceParser(bn.Market.COINM)
    (m,) = p.parse(cm, 0)
    assert (m.symbol, m.ts, m.mark_px, m.index_px, m.next_funding_ts) == (
        "binance:BTC/USD:BTC-201225", 1596095725000 * MS, 10934.62615417, 10933.62615417, 0)
    assert math.isnan(m.funding_rate)
    later = cm.replace(b"1596095725000", b"1596095726000")
    assert [type(e) for e in p.parse(later, 0)] == [Mark]


def test_binance_liquidations_usdm_and_coinm():
    # USDM_DOCS/Liquidation-Order-Streams: S is the liquidation order's side; SELL = a long
    # was liquidated = -1 in liquidations ("side +1 buy (short liquidated), -1 sell"); ts = o.T
    usdm = (b'{"stream":"btcusdt@forceOrder","data":{"e":"forceOrder","E":1568014460893,"o":{"s":"BTCUSDT","S":"SELL",'
            b'"o":"LIMIT","f":"IOC","q":"0.014","p":"9910","ap":"9910","X":"FILLED","l":"0.014","z":"0.014","T":1568014460893}}}')
    assert bn.parse(usdm, 0, bn.Market.USDM) == [Liquidation("binance:BTC/USDT:USDT", 1568014460893 * MS, 0, -1, 9910.0, 0.014)]
    # COINM_DOCS/Liquidation-Order-Streams (also the !forceOrder@arr stream): "ps" in o, q in contracts
    cm = (b'{"stream":"!forceOrder@arr","data":{"e":"forceOrder","E":1591154240950,"o":{"s":"BTCUSD_200925","ps":"BTCUSD",'
          b'"S":"BUY","o":"LIMIT","f":"IOC","q":"1","p":"9425.5","ap":"9496.5","X":"FILLED","l":"1","z":"1","T":1591154240949}}}')
    # what was executed: the average fill price ap (not the order's limit price p 9425.5)
    # and the filled quantity z, as Tardis and the liquidationSnapshot archive store it
    assert bn.parse(cm, 0, bn.Market.COINM) == [Liquidation("binance:BTC/USD:BTC-200925", 1591154240949 * MS, 0, 1, 9496.5, 1.0)]
    partly = cm.replace(b'"q":"1"', b'"q":"3"').replace(b'"X":"FILLED","l":"1","z":"1"', b'"X":"EXPIRED","l":"1","z":"2"')
    assert [(x.price, x.qty) for x in bn.parse(partly, 0, bn.Market.COINM)] == [(9496.5, 2.0)]  # z of q
    nothing = cm.replace(b'"ap":"9496.5"', b'"ap":"0"').replace(b'"X":"FILLED","l":"1","z":"1"', b'"X":"EXPIRED","l":"0","z":"0"')
    assert bn.parse(nothing, 0, bn.Market.COINM) == []  # nothing filled: no liquidation print
    with pytest.raises(InvalidValue, match="S='LONG'"):
        bn.parse(cm.replace(b'"S":"BUY"', b'"S":"LONG"'), 0, bn.Market.COINM)


def test_binance_klines_closed_only():
    # SPOT_DOCS#klinecandlestick-streams-for-utc: "x": Is this kline closed?
    k = (b'{"stream":"bnbbtc@kline_1m","data":{"e":"kline","E":1672515782136,"s":"BNBBTC","k":{"t":1672515780000,'
         b'"T":1672515839999,"s":"BNBBTC","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020","h":"0.0025","l":"0.0015",'
         b'"v":"1000","n":100,"x":false,"q":"1.0000","V":"500","Q":"0.500","B":"123456"}}}')
    assert bn.parse(k, 0, bn.Market.SPOT) == []
    assert bn.parse(k.replace(b'"x":false', b'"x":true'), 0, bn.Market.SPOT) == [
        Bar("binance:BNB/BTC", 1672515780000 * MS, 0.001, 0.0025, 0.0015, 0.002, 1000.0, "1m")]
    with pytest.raises(InvalidValue, match="k.x="):
        bn.parse(k.replace(b'"x":false', b'"x":"false"'), 0, bn.Market.SPOT)


# -- Binance local order book: the documented procedures ------------------------------------------
def _diff(first, last, prev=-1, *, t=1, bids=(), asks=()):
    return DepthDiff("binance:BTC/USDT", t * MS, t * MS, first, last, prev, list(bids), list(asks))


def _snap(uid, t=0):
    return DepthSnapshot("binance:BTC/USDT", t * MS, t * MS, uid, [(100.0, 1.0), (99.0, 1.0)], [(101.0, 1.0), (102.0, 1.0)])


def test_binance_spot_book_rule():
    # SPOT_DOCS "How to manage a local order book correctly": discard buffered events with
    # u <= lastUpdateId; then, per event: u <= book id -> ignore; U > book id + 1 -> restart;
    # else apply (an event overlapping ids already applied sets absolute quantities)
    b = BookBuilder("binance:BTC/USDT", bn.Market.SPOT, levels=2)
    b.on_diff(_diff(90, 100, t=1, bids=[(98.0, 7.0)]))  # older than the snapshot: discarded
    b.on_diff(_diff(101, 105, t=2, bids=[(100.0, 2.0)]))  # U == lastUpdateId + 1: the first applied
    out = b.on_snapshot(_snap(100))
    assert b.synced and b.stats.dropped == 1 and b.update_id == 105 and not [e for e in out if type(e) is Gap]
    assert b.top(2)[:2] == ([100.0, 99.0], [2.0, 1.0])
    b.on_diff(_diff(103, 110, t=3, bids=[(100.0, 3.0)]))  # overlaps 103..105: applied, not a break
    assert b.synced and b.update_id == 110 and b.top(1)[1] == [3.0] and b.stats.breaks == 0
    assert b.on_diff(_diff(104, 110, t=4)) == [] and b.stats.duplicates == 1  # u <= book id: ignored
    gaps = [e for e in b.on_diff(_diff(112, 115, t=5)) if type(e) is Gap]  # 111 missing
    assert [g.cause for g in gaps] == ["sequence_break"] and "expected U=111" in gaps[0].detail and b.needs_snapshot
    # "If the lastUpdateId from the snapshot is strictly less than the U" of the first event
    # (a gap before it): a newer snapshot is needed
    b2 = BookBuilder("binance:BTC/USDT", bn.Market.SPOT, levels=2)
    b2.on_diff(_diff(90, 95, t=1))
    assert b2.on_snapshot(_snap(80)) == [] and b2.needs_snapshot and b2.stats.stale_snapshots == 1


def test_binance_futures_book_rule():
    # USDM_DOCS/How-to-manage-a-local-order-book-correctly: drop u < lastUpdateId; the first
    # processed has U <= lastUpdateId AND u >= lastUpdateId; then pu == the previous u
    sym = "binance:BTC/USDT:USDT"
    b = BookBuilder(sym, bn.Market.USDM, levels=2)
    b.on_diff(_diff(90, 99, 89, t=1))  # u < 100: dropped
    b.on_diff(_diff(99, 100, 99, t=2, asks=[(101.0, 4.0)]))  # u == lastUpdateId: spans it
    b.on_snapshot(_snap(100))
    assert b.synced and b.update_id == 100 and b.stats.dropped == 1 and b.top(1)[3] == [4.0]
    b.on_diff(_diff(150, 160, 100, t=3))  # ids jump; pu chains: fine on futures
    assert b.synced and b.update_id == 160
    gaps = [e for e in b.on_diff(_diff(170, 180, 165, t=4)) if type(e) is Gap]
    assert [g.cause for g in gaps] == ["sequence_break"] and "expected pu=160" in gaps[0].detail
    # U > lastUpdateId on the first event: the snapshot is older than the stream, fetch again
    b2 = BookBuilder(sym, bn.Market.COINM, levels=2)
    b2.on_diff(_diff(101, 110, 95, t=1))
    assert b2.on_snapshot(_snap(100)) == [] and b2.needs_snapshot and b2.stats.stale_snapshots == 1


# ============================== Bybit ==========================================================
BYBIT_DOCS = "https://bybit-exchange.github.io/docs/v5/websocket/public"


def test_bybit_public_trades_linear_spot_and_sides():
    # BYBIT_DOCS/trade: "S: Side of taker. Buy,Sell"; ts = T; linear ids are UUIDs (folded to
    # 63 bits), spot ids decimal; "BT": block trade -> kind BLOCK
    lin = (b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{"T":1672304486865,"s":"BTCUSDT",'
           b'"S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick","i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false}]}')
    tid = uuid.UUID("20f43950-d8dd-5b31-9112-a178eb6023af").int >> 65
    assert bb.BybitParser(bb.Category.LINEAR).parse(lin, 0) == [
        Trade("bybit:BTC/USDT:USDT", 1672304486865 * MS, 0, tid, 16578.5, 0.001, 1, int(TradeKind.MARKET))]
    # a real spot frame of ../shared/data cryptofeed/BYBIT.jsonl.zst (with RPI and seq)
    spot = (b'{"topic":"publicTrade.ETHUSDT","ts":1786310821917,"type":"snapshot","data":[{"i":"2280000001739247417",'
            b'"T":1786310821917,"p":"1923.28","v":"0.04537","S":"Sell","seq":178477362706,"s":"ETHUSDT","BT":true,"RPI":false}]}')
    assert bb.BybitParser(bb.Category.SPOT).parse(spot, 1786310821917 * MS) == [
        Trade("bybit:ETH/USDT", 1786310821917 * MS, 1786310821917 * MS, 2280000001739247417, 1923.28, 0.04537, -1,
              int(TradeKind.BLOCK))]
    with pytest.raises(InvalidValue, match="S='buy'"):
        bb.BybitParser(bb.Category.LINEAR).parse(lin.replace(b'"Buy"', b'"buy"'), 0)


def test_bybit_ids_any_listed_contract():
    # Symbols not in the built-in table: USDC perpetual, dated future, inverse perpetual,
    # a spot pair quoted in USD1 (ccxt's names; see test_bybit_wire_rules_equal_ccxt)
    cases = [
        (bb.Category.LINEAR, "1000PEPEPERP", "bybit:1000PEPE/USDC:USDC"),
        (bb.Category.LINEAR, "BTCUSDT-14AUG26", "bybit:BTC/USDT:USDT-260814"),
        (bb.Category.LINEAR, "ADAUSDT", "bybit:ADA/USDT:USDT"),
        (bb.Category.INVERSE, "BTCUSD", "bybit:BTC/USD:BTC"),
        (bb.Category.SPOT, "MNTUSD1", "bybit:MNT/USD1"),
        (bb.Category.SPOT, "BTCXUSD", "bybit:BTC/XUSD"),
    ]
    for cat, native, sym in cases:
        frame = (b'{"topic":"publicTrade.%s","type":"snapshot","ts":1786310821917,"data":[{"i":"%s","T":1786310821917,'
                 b'"p":"1.5","v":"2","S":"Buy","s":"%s","BT":false}]}') % (
            native.encode(), b"228" if cat is bb.Category.SPOT else b"a9188a0a-82bc-50de-be60-03eedbe3cdd7", native.encode())
        (t,) = bb.BybitParser(cat).parse(frame, 1786310821917 * MS)
        assert t.symbol == sym, native
    with pytest.raises(UnknownSymbol, match="inverse future's delivery date"):
        bb.BybitParser(bb.Category.INVERSE).symbol("BTCUSDH25")


def test_bybit_wire_rules_equal_ccxt(data_dir):
    """Every instrument of the recorded /v5/market/instruments-info answers (800 linear, 557
    spot, in ../shared/data cryptofeed/BYBIT.jsonl.zst) gets ccxt's own symbol, ccxt parsing
    the same answers offline."""
    raw = zstandard.ZstdDecompressor().stream_reader(open(data_dir / "cryptofeed" / "BYBIT.jsonl.zst", "rb")).read()
    bodies = {}
    for line in raw.splitlines()[1:]:
        rec = orjson.loads(line)
        if rec["t"] == "http":
            body = orjson.loads(rec["data"])
            bodies[body["result"]["category"]] = body
    assert set(bodies) == {"linear", "spot"}
    ex = ccxt.bybit()
    empty = {"retCode": 0, "retMsg": "OK", "result": {"list": []}, "time": 0}

    def answer(params={}):  # the recorded answers; no request leaves the machine
        cat = params.get("category")
        return bodies[cat] if cat in bodies and params.get("status") != "PreLaunch" else {**empty, "result": {"category": cat, "list": []}}

    ex.publicGetV5MarketInstrumentsInfo = answer
    ex.options["fetchMarkets"] = {"types": ["spot", "linear"]}
    markets = ex.fetch_markets()
    assert len(markets) == 1357
    bare = Markets([])  # nothing registered: the rules alone
    for m in markets:
        cat = "spot" if m["spot"] else "linear"
        info = bare.wire_info("bybit", m["id"], category=cat)
        assert (info.symbol, info.type.value, info.base, info.quote, info.settle) == (
            m["symbol"], m["type"], m["base"], m["quote"], m["settle"]), m["id"]
    # with ccxt's markets loaded the registry answers first, the same
    loaded = Markets([])
    loaded.set_markets("bybit", markets)
    assert loaded.wire_symbol("bybit", "BTCUSDT-14AUG26", category="linear") == "bybit:BTC/USDT:USDT-260814"
    assert loaded.wire_symbol("bybit", "BTCUSDT", category="spot") == "bybit:BTC/USDT"


def _book_frame(kind, u, ts, bids, asks, depth=50, cts=None):
    return orjson.dumps({"topic": f"orderbook.{depth}.BTCUSDT", "type": kind, "ts": ts,
                         "data": {"s": "BTCUSDT", "b": bids, "a": asks, "u": u, "seq": 7961638724},
                         "cts": ts - 17 if cts is None else cts})


def _feed(parser, book, frames, recv=None):
    out = []
    for f in frames:
        for ev in parser.parse(f, recv if recv is not None else 0):
            out += bb.apply_to_book(book, ev)
    return out


def test_bybit_orderbook_snapshot_delta_and_event_time():
    # BYBIT_DOCS/orderbook: snapshot then deltas (size "0" deletes); u consecutive; ts is the
    # frame's "ts" (event time, TsClock.EVENT as Binance's E), not the engine's "cts"
    p = bb.BybitParser(bb.Category.LINEAR)
    snap = _book_frame("snapshot", 13079592, 1671179923028, [["17440.00", "40.833"], ["17439.50", "0.513"]],
                       [["17440.50", "78.815"], ["17441.00", "8.858"]])
    delta = _book_frame("delta", 13079593, 1671179923046, [], [["17440.50", "78.857"], ["17442.00", "1.510"], ["17441.00", "0"]])
    assert p.parse(snap, 0) == [DepthSnapshot("bybit:BTC/USDT:USDT", 1671179923028 * MS, 0, 13079592,
                                              [(17440.0, 40.833), (17439.5, 0.513)], [(17440.5, 78.815), (17441.0, 8.858)])]
    assert p.parse(delta, 0) == [DepthDiff("bybit:BTC/USDT:USDT", 1671179923046 * MS, 0, 13079593, 13079593, 13079592,
                                           [], [(17440.5, 78.857), (17442.0, 1.51), (17441.0, 0.0)])]
    with pytest.raises(MalformedFrame, match="type 'update'"):
        p.parse(delta.replace(b'"delta"', b'"update"'), 0)


def test_bybit_u1_snapshot_resets_the_book_and_u1_delta_breaks_it():
    # BYBIT_DOCS/orderbook: "Occasionally, you'll receive "u"=1, which is a snapshot data due
    # to the restart of the service. So please overwrite the locally saved orderbook"
    p = bb.BybitParser(bb.Category.LINEAR)
    book = BookBuilder("bybit:BTC/USDT:USDT", bn.Market.SPOT, levels=2, interval_ms=100, quotes=True)
    t0 = 1_700_000_000_000
    _feed(p, book, [_book_frame("snapshot", 5000, t0, [["100", "1"]], [["101", "1"]]),
                    _book_frame("delta", 5001, t0 + 50, [["100", "2"]], [])])
    assert book.synced and book.update_id == 5001
    out = _feed(p, book, [_book_frame("snapshot", 1, t0 + 1000, [["200", "1"]], [["201", "3"]])])
    gaps = [e for e in out if type(e) is Gap]
    assert [g.cause for g in gaps] == ["resync"] and (gaps[0].ts, gaps[0].end_ts) == ((t0 + 50) * MS, (t0 + 1000) * MS)
    assert book.synced and book.update_id == 1 and book.top(1) == ([200.0], [1.0], [201.0], [3.0])
    assert [q.bid_px for q in out if type(q) is Quote] == [200.0]  # the new top is quoted at once
    _feed(p, book, [_book_frame("delta", 2, t0 + 1100, [["200", "5"]], [])])  # the chain continues from 1
    assert book.synced and book.update_id == 2 and book.top(1)[1] == [5.0]
    # the same restart announced as a *delta* u=1: never taken for an old duplicate
    out = _feed(p, book, [_book_frame("delta", 1, t0 + 2000, [["300", "1"]], [])])
    assert [g.cause for g in out if type(g) is Gap] == ["sequence_break"] and book.needs_snapshot
    rows = [e for e in out if type(e) is BookTop]
    assert all(r.bid_px[0] == 200.0 for r in rows)  # nothing of the unknown book is written


def test_bybit_orderbook_1_is_snapshots_only():
    # BYBIT_DOCS/orderbook: "Linear, inverse, spot level 1 data has snapshot message only";
    # "if 3 seconds have elapsed without a change in the orderbook, a snapshot message will be
    # pushed again, and the field u will be the same as that in the previous message"
    for cat in (bb.Category.LINEAR, bb.Category.SPOT, bb.Category.INVERSE):
        p = bb.BybitParser(cat)
        native = "BTCUSD" if cat is bb.Category.INVERSE else "BTCUSDT"
        sym = p.symbol(native)
        book = BookBuilder(sym, bn.Market.SPOT, levels=1, interval_ms=100, quotes=True)
        t0 = 1_700_000_000_000
        frames = [_book_frame("snapshot", u, t, [[bp, "1"]], [["101", "2"]], depth=1).replace(b"BTCUSDT", native.encode())
                  for u, t, bp in ((10, t0, "100"), (11, t0 + 10, "100.5"), (11, t0 + 3010, "100.5"), (13, t0 + 3100, "99"))]
        out = _feed(p, book, frames)
        assert not [e for e in out if type(e) is Gap] and book.synced and book.update_id == 13
        quotes = [(q.ts // MS - t0, q.update_id, q.bid_px) for q in out if type(q) is Quote]
        assert quotes == [(0, 10, 100.0), (10, 11, 100.5), (3100, 13, 99.0)]  # the keep-alive repeat adds nothing
        rows = {r.ts // MS - t0: r.bid_px[0] for r in out if type(r) is BookTop}
        assert rows[0] == 100.0 and rows[100] == rows[3000] == 100.5  # grid rows from the snapshot's own time


def test_bybit_orderbook_1_beside_a_deeper_book_gives_the_quotes():
    # a connection carrying orderbook.1 and orderbook.50 of a symbol: the book is the deeper
    # topic's, the quotes Bybit's BBO stream (level 1 pushed every 10 ms, level 50 every 20 ms)
    t0 = 1_700_000_000_000
    p = bb.BybitParser(bb.Category.LINEAR, book_natives=frozenset({"1.BTCUSDT", "50.BTCUSDT"}))
    sym = "bybit:BTC/USDT:USDT"
    assert not p.book_quotes(sym) and bb.BybitParser(bb.Category.LINEAR, book_natives=frozenset({"50.BTCUSDT"})).book_quotes(sym)
    one = _book_frame("snapshot", 10, t0, [["100", "1"]], [["101", "2"]], depth=1)
    assert p.parse(one, 0) == [Quote(sym, t0 * MS, 0, 10, 100.0, 1.0, 101.0, 2.0)]
    assert p.parse(_book_frame("snapshot", 10, t0 + 3000, [["100", "1"]], [["101", "2"]], depth=1), 0) == []  # keep-alive
    (snap,) = p.parse(_book_frame("snapshot", 500, t0 + 5, [["100", "1"], ["99", "4"]], [["101", "2"]]), 0)
    assert type(snap) is DepthSnapshot and snap.update_id == 500
    # older spot level-1 streams also sent deltas: a side absent is unchanged, a size 0 empties it
    delta = _book_frame("delta", 11, t0 + 3010, [["100.5", "3"]], [], depth=1)
    assert p.parse(delta, 0) == [Quote(sym, (t0 + 3010) * MS, 0, 11, 100.5, 3.0, 101.0, 2.0)]
    (q,) = p.parse(_book_frame("delta", 12, t0 + 3020, [], [["101", "0"]], depth=1), 0)
    assert (q.bid_px, q.update_id) == (100.5, 12) and math.isnan(q.ask_px) and math.isnan(q.ask_qty)


def test_bybit_tickers_linear_inverse_future_and_spot():
    # BYBIT_DOCS/ticker: "If a response param is not found in the message, then its value
    # has not changed"; mark/OI rows at the frame's ts
    p = bb.BybitParser(bb.Category.LINEAR)
    snap = (b'{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT","tickDirection":"PlusTick",'
            b'"lastPrice":"17216.00","markPrice":"17217.33","indexPrice":"17227.36","openInterest":"68744.761",'
            b'"openInterestValue":"1183601235.91","nextFundingTime":"1673280000000","fundingRate":"-0.000212",'
            b'"bid1Price":"17215.50","bid1Size":"84.489","ask1Price":"17216.00","ask1Size":"83.020"},"cs":24987956059,"ts":1673272861686}')
    out = p.parse(snap, 0)
    assert _one(out, Mark) == Mark("bybit:BTC/USDT:USDT", 1673272861686 * MS, 0, 17217.33, 17227.36, -0.000212, 1673280000000 * MS)
    assert _one(out, OpenInterest) == OpenInterest("bybit:BTC/USDT:USDT", 1673272861686 * MS, 68744.761, 1183601235.91)
    assert _one(out, Quote).update_id == 24987956059
    delta = b'{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT","markPrice":"17218.00"},"cs":24987956060,"ts":1673272861786}'
    (m,) = p.parse(delta, 0)  # merged into the snapshot; no OI or quote field changed
    assert (m.mark_px, m.index_px, m.funding_rate) == (17218.0, 17227.36, -0.000212)
    # a dated future has no funding: "fundingRate":"" and "nextFundingTime":"0" (or "")
    fut = (b'{"topic":"tickers.BTCUSDT-14AUG26","type":"snapshot","data":{"symbol":"BTCUSDT-14AUG26","markPrice":"65300.5",'
           b'"indexPrice":"65137.76","openInterest":"12.5","openInterestValue":"816256.25","nextFundingTime":"",'
           b'"fundingRate":"","deliveryTime":"2026-08-14T08:00:00Z","basisRate":"0.0025"},"cs":1,"ts":1786310817883}')
    m = _one(p.parse(fut, 1786310817883 * MS), Mark)
    assert m.symbol == "bybit:BTC/USDT:USDT-260814" and math.isnan(m.funding_rate) and m.next_funding_ts == 0
    # inverse: "The unit of value, e.g., BTCUSD(inverse) is USD" (v5/market/open-interest):
    # 1 contract = 1 USD, so oi_value (quote currency) is the open interest itself
    inv = (b'{"topic":"tickers.BTCUSD","type":"snapshot","data":{"symbol":"BTCUSD","markPrice":"65117.44",'
           b'"indexPrice":"65137.76","openInterest":"461134384","openInterestValue":"7081.55","nextFundingTime":"1786320000000",'
           b'"fundingRate":"0.0001"},"cs":1,"ts":1786310817883}')
    oi = _one(bb.BybitParser(bb.Category.INVERSE).parse(inv, 1786310817883 * MS), OpenInterest)
    assert (oi.symbol, oi.oi, oi.oi_value) == ("bybit:BTC/USD:BTC", 461134384.0, 461134384.0)
    # spot tickers (real frame): no mark, funding or open interest
    spot = (b'{"topic":"tickers.BTCUSDT","ts":1786310819126,"type":"snapshot","cs":112488546160,"data":{"symbol":"BTCUSDT",'
            b'"lastPrice":"65140.5","highPrice24h":"65305.6","lowPrice24h":"64727.9","prevPrice24h":"65045.3",'
            b'"volume24h":"2953.835931","turnover24h":"191907024.69597728","price24hPcnt":"0.0015","usdIndexPrice":"65091.459221"}}')
    assert bb.BybitParser(bb.Category.SPOT).parse(spot, 0) == []


def test_bybit_liquidations_position_side():
    # BYBIT_DOCS/all-liquidation: "S: Position side ... When you receive a Buy update, this
    # means that a long position has been liquidated" -> a forced sell, -1; p bankruptcy
    # price, v executed size, ts = T
    p = bb.BybitParser(bb.Category.LINEAR)
    frame = (b'{"topic":"allLiquidation.ROSEUSDT","type":"snapshot","ts":1739502303204,"data":[{"T":1739502302929,'
             b'"s":"ROSEUSDT","S":"Sell","v":"20000","p":"0.04499"},{"T":1739502302930,"s":"ROSEUSDT","S":"Buy","v":"10","p":"0.04"}]}')
    assert p.parse(frame, 0) == [
        Liquidation("bybit:ROSE/USDT:USDT", 1739502302929 * MS, 0, 1, 0.04499, 20000.0),
        Liquidation("bybit:ROSE/USDT:USDT", 1739502302930 * MS, 0, -1, 0.04, 10.0),
    ]
    # BYBIT_DOCS/liquidation (deprecated): one object; the example names the time
    # "updatedTime", the field table "updateTime": both are read
    legacy = (b'{"topic":"liquidation.BTCUSDT","type":"snapshot","ts":1703485237953,"data":{"updatedTime":1703485237953,'
              b'"symbol":"BTCUSDT","side":"Sell","size":"0.003","price":"43511.70"}}')
    want = [Liquidation("bybit:BTC/USDT:USDT", 1703485237953 * MS, 0, 1, 43511.7, 0.003)]
    assert p.parse(legacy, 0) == want
    assert p.parse(legacy.replace(b"updatedTime", b"updateTime"), 0) == want
    with pytest.raises(InvalidValue, match="S='Long'"):
        p.parse(frame.replace(b'"S":"Buy"', b'"S":"Long"'), 0)
    inv = frame.replace(b"ROSEUSDT", b"BTCUSD")  # inverse contracts: the same topic and sides
    assert bb.BybitParser(bb.Category.INVERSE).parse(inv, 0)[0].symbol == "bybit:BTC/USD:BTC"


def test_bybit_infer_category_of_inverse_and_linear_only_ids():
    trade = (b'{"topic":"publicTrade.%s","type":"snapshot","ts":1,"data":[{"T":1,"s":"%s","S":"Buy","v":"1","p":"1",'
             b'"i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false}]}')
    assert bb.infer_category(trade % (b"BTCUSD", b"BTCUSD")) is bb.Category.INVERSE
    assert bb.infer_category(trade % (b"BTCUSDT", b"BTCUSDT")) is bb.Category.LINEAR
    assert bb.infer_category(_book_frame("delta", 2, 1, [], []).replace(b"BTCUSDT", b"BTCPERP")) is bb.Category.LINEAR
    assert bb.infer_category(_book_frame("delta", 2, 1, [], [])) is None  # a book alone: spot or linear
    assert bb.category_of_url("wss://stream.bybit.com/v5/public/inverse") is bb.Category.INVERSE


# ============================== Hyperliquid ====================================================
HL_SUBS = "https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/websocket/subscriptions"


def test_hyperliquid_trades_book_bbo_and_sides():
    # HL_SUBS WsTrade; notation: "B = Bid = Buy, A = Ask = Short. Side is aggressing side for
    # trades" (https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/notation);
    # real frame shape of ../shared/data hftbacktest/hyperliquid
    trades = (b'{"channel":"trades","data":[{"coin":"BTC","side":"B","px":"105056.0","sz":"0.00219","time":1737918794873,'
              b'"hash":"0xde47","tid":121451470284048,"users":["0xe9ed","0x6802"]},{"coin":"BTC","side":"A","px":"105055.0",'
              b'"sz":"0.1","time":1737918794873,"hash":"0xde47","tid":121451470284049,"users":["0x1","0x2"]}]}')
    assert hl.HyperliquidParser().parse(trades, 0) == [
        Trade("hyperliquid:BTC/USDC:USDC", 1737918794873 * MS, 0, 121451470284048, 105056.0, 0.00219, 1),
        Trade("hyperliquid:BTC/USDC:USDC", 1737918794873 * MS, 0, 121451470284049, 105055.0, 0.1, -1),
    ]
    with pytest.raises(InvalidValue, match="side='S'"):
        hl.HyperliquidParser().parse(trades.replace(b'"side":"A"', b'"side":"S"'), 0)
    # WsBook: levels [bids, asks], best first; "n" (orders at the level) is not stored
    book = (b'{"channel":"l2Book","data":{"coin":"HYPE","time":1737918843542,"levels":[[{"px":"25.1","sz":"3","n":5}],'
            b'[{"px":"25.2","sz":"6","n":13}]]}}')
    (snap,) = hl.HyperliquidParser().parse(book, 0)
    assert snap == DepthSnapshot("hyperliquid:HYPE/USDC:USDC", 1737918843542 * MS, 0, 1737918843542, [(25.1, 3.0)], [(25.2, 6.0)])
    with pytest.raises(MalformedFrame):
        hl.HyperliquidParser().parse(book.replace(b'[[{"px":"25.1","sz":"3","n":5}],', b"["), 0)
    # WsBbo: bbo [bid | null, ask | null]
    bbo = b'{"channel":"bbo","data":{"coin":"ETH","time":1737918843542,"bbo":[null,{"px":"3300.5","sz":"2","n":1}]}}'
    (q,) = hl.HyperliquidParser().parse(bbo, 0)
    assert q.symbol == "hyperliquid:ETH/USDC:USDC" and math.isnan(q.bid_px) and (q.ask_px, q.ask_qty) == (3300.5, 2.0)


def test_hyperliquid_asset_ctx_spot_coins_and_unstored_channels():
    p = hl.HyperliquidParser()
    # HL_SUBS activeAssetCtx (PerpsAssetCtx): no exchange time -> ts = receive time
    ctx = (b'{"channel":"activeAssetCtx","data":{"coin":"BTC","ctx":{"funding":"0.0000125","openInterest":"100.5",'
           b'"oraclePx":"105050.0","markPx":"105055.0","midPx":"105055.5","premium":"0.00004",'
           b'"impactPxs":["105055.0","105056.0"],"dayNtlVlm":"1","prevDayPx":"1"}}}')
    hour = 3600 * 10**9
    assert p.parse(ctx, RECV) == [
        Mark("hyperliquid:BTC/USDC:USDC", RECV, RECV, 105055.0, 105050.0, 0.0000125, (RECV // hour + 1) * hour),
        OpenInterest("hyperliquid:BTC/USDC:USDC", RECV, 100.5, 100.5 * 105055.0),
    ]
    # spot coins ("@107", "PURR/USDC") and their contexts are refused, saying why
    for frame in (b'{"channel":"trades","data":[{"coin":"@107","side":"B","px":"1","sz":"1","time":1737918794873,"tid":1}]}',
                  b'{"channel":"l2Book","data":{"coin":"PURR/USDC","time":1737918843542,"levels":[[],[]]}}',
                  b'{"channel":"activeSpotAssetCtx","data":{"coin":"@107","ctx":{"markPx":"1","midPx":"1","prevDayPx":"1",'
                  b'"dayNtlVlm":"1","circulatingSupply":"1"}}}',
                  b'{"channel":"activeAssetCtx","data":{"coin":"@107","ctx":{"markPx":"1","midPx":"1"}}}'):
        with pytest.raises(UnknownSymbol, match="is a spot market"):
            p.parse(frame, RECV)
    with pytest.raises(UnknownSymbol, match="builder-deployed"):
        p.parse(b'{"channel":"trades","data":[{"coin":"xyz:TSLA","side":"B","px":"1","sz":"1","time":1737918794873,"tid":1}]}', RECV)
    assert p.parse(b'{"channel":"allMids","data":{"mids":{"BTC":"105055.5","@107":"25.1"}}}', RECV) == []


def test_hyperliquid_wire_rule_equals_ccxt(data_dir):
    """Every perp of the recorded ``meta`` universe (hyperliquid-python-sdk cassette) gets
    ccxt's symbol by the rule alone."""
    doc = yaml.safe_load((data_dir / "hyperliquid-python-sdk" / "test_get_funding_history[None].yaml").read_text())
    meta = next(orjson.loads(i["response"]["body"]["string"]) for i in doc["interactions"]
                if orjson.loads(i["request"]["body"])["type"] == "meta")
    ex, bare = ccxt.hyperliquid(), Markets([])
    assert len(meta["universe"]) > 20
    for i, u in enumerate(meta["universe"]):
        cm = ex.parse_market({**u, "baseId": i})
        info = bare.wire_info("hyperliquid", u["name"])
        assert (info.symbol, info.native, info.type) == (cm["symbol"], u["name"], MarketType.SWAP), u["name"]
    with pytest.raises(SymbolNotFound, match="close matches"):
        MARKETS.resolve("hyperliquid", "ETHH")  # a typed name must be known; only wire ids follow the rule


# ============================== replay of captures ==============================================
def test_replay_of_an_inverse_capture_and_unlisted_symbols(store, tmp_path):
    """A cryptofeed v3 container of Bybit's inverse endpoint (documented frame shapes): the
    connection's URL says inverse; symbols, sides and units as documented."""
    t = 1786310819000
    recs = [{"t": "connect", "conn": "BYBIT.ws.4", "ts": t / 1000, "addr": "wss://stream.bybit.com/v5/public/inverse"}]
    frames = [
        {"topic": "publicTrade.BTCUSD", "type": "snapshot", "ts": t + 1, "data": [
            {"T": t + 1, "s": "BTCUSD", "S": "Sell", "v": "1500", "p": "65114.5", "L": "MinusTick",
             "i": "a9188a0a-82bc-50de-be60-03eedbe3cdd7", "BT": False}]},
        {"topic": "tickers.BTCUSD", "type": "snapshot", "cs": 5, "ts": t + 2, "data": {
            "symbol": "BTCUSD", "markPrice": "65117.44", "indexPrice": "65137.76", "openInterest": "461134384",
            "openInterestValue": "7081.55", "nextFundingTime": "1786320000000", "fundingRate": "0.0001"}},
        {"topic": "allLiquidation.BTCUSD", "type": "snapshot", "ts": t + 3, "data": [
            {"T": t + 3, "s": "BTCUSD", "S": "Buy", "v": "2000", "p": "64000"}]},
    ]
    recs += [{"t": "recv", "conn": "BYBIT.ws.4", "ts": (t + 5 + k) / 1000, "data": orjson.dumps(f).decode()}
             for k, f in enumerate(frames)]
    path = tmp_path / "BYBIT_INVERSE.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(b"\n".join(orjson.dumps(r) for r in recs) + b"\n"))
    report = replay([path], store=store)
    assert report.markets == {str(path): "inverse"} and report.bad_frames == {}
    sym = "bybit:BTC/USD:BTC"
    tr = store["trades"].select(sym)
    assert list(zip(tr.index.asi8, tr.price, tr.qty, tr.side)) == [((t + 1) * MS, 65114.5, 1500.0, -1)]
    oi = store["open_interest"].select(sym)
    assert list(zip(oi.oi, oi.oi_value)) == [(461134384.0, 461134384.0)]
    liq = store["liquidations"].select(sym)
    assert list(zip(liq.index.asi8, liq.side, liq.price, liq.qty)) == [((t + 3) * MS, -1, 64000.0, 2000.0)]


def test_replay_of_hyperliquid_coins_beyond_the_builtin_table(data_dir, store, tmp_path):
    """The real hftbacktest Hyperliquid capture with its coin renamed to one the built-in
    table does not hold: every frame is stored under ccxt's symbol; the same capture as a
    spot coin is refused, saying so, and writes nothing."""
    lines = gzip.open(data_dir / "hftbacktest" / "hyperliquid" / "btcusd_20250126.gz").read().splitlines()
    for coin, ok in ((b"FARTCOIN", True), (b"@107", False)):
        path = tmp_path / f"hl_{len(coin)}.gz"
        path.write_bytes(gzip.compress(b"\n".join(ln.replace(b'"coin":"BTC"', b'"coin":"' + coin + b'"') for ln in lines) + b"\n"))
        if ok:
            report = replay([path], store=store)
            n = sum(len(orjson.loads(ln.partition(b" ")[2])["data"]) for ln in lines if b'"channel":"trades"' in ln)
            assert report.bad_frames == {} and len(store["trades"].select("hyperliquid:FARTCOIN/USDC:USDC")) == n > 0
            assert len(store["book"].select("hyperliquid:FARTCOIN/USDC:USDC")) > 0
        else:
            with pytest.raises(ReplayError, match="yielded no rows.*UnknownSymbol.*'@107' is a spot market"):
                replay([path], store=store)


def test_hftbacktest_bybit_capture_of_three_depths_in_two_files(data_dir, store, tmp_path):
    """hftbacktest's Bybit collector records ``orderbook.1``, ``.50`` and ``.500`` of every
    symbol on one connection (collector/src/main.rs of nkaz001/hftbacktest), each topic with
    its own ``u`` chain, and rotates files without resubscribing. Built from the real linear
    BTCUSDT ``orderbook.200`` frames of ../shared/data (renamed ``orderbook.500``), with
    ``orderbook.1`` (the top, its own ``u``) and ``orderbook.50`` (top-50 snapshots, its own
    ``u``) frames interleaved, split in two files replayed one run each: the book is the
    deepest topic's, without a gap, in both runs; the quotes are ``orderbook.1``'s (Bybit's
    BBO stream, pushed every 10 ms), not the deep book's top."""
    from tests.collectors.test_replay_venues import GRID, bybit_frames, grid_rows, same, stored_tops, top

    frames = [(recv, m) for cat, recv, m in bybit_frames(data_dir)
              if cat == "linear" and m.get("topic") in ("orderbook.200.BTCUSDT", "publicTrade.BTCUSDT")]
    bids, asks, lines, states, quotes = {}, {}, [], [], []
    u1, u50 = 7000, 90000
    for recv, m in frames:
        if m["topic"].startswith("publicTrade"):
            lines.append((recv, m))
            continue
        if m["type"] == "snapshot":
            bids, asks = {}, {}
        for side, levels in ((bids, m["data"]["b"]), (asks, m["data"]["a"])):
            for px, q in levels:
                side.pop(float(px), None) if float(q) == 0 else side.__setitem__(float(px), float(q))
        lines.append((recv, {**m, "topic": "orderbook.500.BTCUSDT"}))
        t5 = top(bids, asks)
        states.append((m["ts"] * MS, t5))
        u1 += 1
        best = (t5[0][0], t5[1][0], t5[2][0], t5[3][0])
        if not quotes or quotes[-1][2:] != best:  # quotes: orderbook.1 (the BBO stream), its u
            quotes.append((m["ts"] * MS, u1, *best))
        u50 += 1
        b50, a50 = sorted(bids, reverse=True)[:50], sorted(asks)[:50]
        for depth, u, bb_, aa_ in ((1, u1, b50[:1], a50[:1]), (50, u50, b50, a50)):
            lines.append((recv + 1, {"topic": f"orderbook.{depth}.BTCUSDT", "type": "snapshot", "ts": m["ts"],
                                     "data": {"s": "BTCUSDT", "b": [[repr(p), repr(bids[p])] for p in bb_],
                                              "a": [[repr(p), repr(asks[p])] for p in aa_], "u": u, "seq": 1}, "cts": m["ts"]}))
    lines.sort(key=lambda x: x[0])
    half = len(lines) // 2
    paths = []
    for k, part in enumerate((lines[:half], lines[half:])):
        path = tmp_path / f"btcusdt_2026080{k + 8}.gz"
        path.write_bytes(gzip.compress(b"".join(b"%d %s\n" % (r, orjson.dumps(m)) for r, m in part)))
        paths.append(path)
    for path in paths:  # one run per file, as a day's files are replayed
        report = replay([path], store=store, market="linear")
        assert report.gaps == 0 and report.sequence_breaks == 0 and report.unsynced_books == (), report.summary()
    sym = "bybit:BTC/USDT:USDT"
    got = store["book"].select(sym)
    first = -(-states[0][0] // GRID) * GRID
    assert got.index.asi8[0] == first and (pd_diff := (got.index.asi8[1:] - got.index.asi8[:-1]) == GRID).all(), pd_diff
    want = grid_rows(states, first, int(got.index.asi8[-1]) + 1)
    tops = stored_tops(got)
    assert tops.keys() == want.keys() and all(same(tops[g], want[g]) for g in want)
    assert len(want) > 100
    q = store["quotes"].select(sym)
    assert list(zip(q.index.asi8, q.update_id, q.bid_px, q.bid_qty, q.ask_px, q.ask_qty)) == quotes
    assert len(store["trades"].select(sym)) == sum(len(m["data"]) for _, m in frames if m["topic"].startswith("publicTrade"))
