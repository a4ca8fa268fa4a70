"""Binance fidelity: trade kinds, aggregated trades, spot exchange time, settlements seen in
the mark stream, Binance.US identity, parser state across runs (issue 11).

Real frames from ../shared/data; where the recordings hold no example (an insurance-fund
print, a funding time passing), a real frame is changed the way Binance's documentation
says the field varies, and the test says which field.
"""

from __future__ import annotations

import gzip
import json

import orjson
import pandas as pd
import pytest

from collectors.events import AggTrade, DepthDiff, Funding, Mark, Quote, Trade
from collectors.exchanges import UnknownSymbol
from collectors.exchanges.binance import (
    ENDPOINTS_US,
    TRADE_KINDS,
    BinanceParser,
    Market,
    from_tickstore,
    market_of_url,
    to_tickstore,
)
from collectors.symbols import MARKETS, MarketType, binance_venues, venue_of_url
from tickstore import TradeKind

MS = 1_000_000
USDM = "hftbacktest/usdm/btcusdt_20240808.gz"
MARK = "hftbacktest/usdm/btcusdt_20230404.dat.gz"
SPOT = "hftbacktest/spot/btcusdt_20240808.gz"


def lines(path, unit=1):
    with gzip.open(path, "rb") as fh:
        out = []
        for line in fh:
            ts, _, raw = line.rstrip(b"\n").partition(b" ")
            if not raw.startswith(b'{"lastUpdateId'):
                out.append((int(ts) * unit, raw))
        return out


def first(frames, stream_suffix):
    return next((t, raw) for t, raw in frames if orjson.loads(raw)["stream"].endswith(stream_suffix))


@pytest.mark.parametrize(
    "x, kind", [("MARKET", TradeKind.MARKET), ("INSURANCE_FUND", TradeKind.LIQUIDATION), ("ADL", TradeKind.ADL),
                ("NA", TradeKind.OTHER), ("SOMETHING_NEW", TradeKind.OTHER)],
)
def test_trade_type_x_becomes_the_kind(data_dir, x, kind):
    recv, raw = first(lines(data_dir / USDM), "@trade")
    msg = orjson.loads(raw)
    assert msg["data"]["X"] == "MARKET"  # every print of the captures is a market print
    msg["data"]["X"] = x  # Binance: X is MARKET, INSURANCE_FUND, ADL or NA
    (t,) = BinanceParser(Market.USDM).parse(orjson.dumps(msg), recv)
    assert type(t) is Trade and t.kind == kind
    assert (t.trade_id, t.price, t.ts) == (msg["data"]["t"], float(msg["data"]["p"]), msg["data"]["T"] * MS)
    assert set(TRADE_KINDS) == {"MARKET", "INSURANCE_FUND", "ADL", "NA"}


def test_spot_trades_are_market_prints(data_dir):
    parser = BinanceParser(Market.SPOT)
    kinds = {e.kind for t, raw in lines(data_dir / SPOT) if b"@trade" in raw[:40] for e in parser.parse(raw, t)}
    assert kinds == {TradeKind.MARKET}


def test_agg_trades_count_the_underlying_trades_exactly(data_dir):
    """The cryptofeed aggTrade recordings: 2 aggregates of 2 trades (spot), 91 of 180 (USD-M)."""
    for name, market, aggs, trades in (("cryptofeed/BINANCE.ws.1.0", Market.SPOT, 2, 2),
                                       ("cryptofeed/BINANCE_FUTURES.ws.1.0", Market.USDM, 91, 180)):
        parser = BinanceParser(market)
        got, want = [], 0
        for line in (data_dir / name).read_bytes().splitlines():
            if not line[:1].isdigit() or b"@aggTrade" not in line:
                continue
            ts, _, raw = line.partition(b": ")
            whole, _, frac = ts.decode().partition(".")
            d = orjson.loads(raw)["data"]
            want += d["l"] - d["f"] + 1  # independent count from the frames
            got += [e for e in parser.parse(raw, int(whole) * 10**9 + int((frac + "0" * 9)[:9])) if type(e) is AggTrade]
        assert len(got) == aggs and sum(a.last_trade_id - a.first_trade_id + 1 for a in got) == want == trades


def test_settlement_seen_in_the_mark_stream(data_dir):
    """The 2023-04-04 capture ends 1 s before the 00:00 funding time; its next frame (E
    after T, T moved 8 h on) is the last real frame with those two fields moved on."""
    frames = [(t, raw) for t, raw in lines(data_dir / MARK, 1000) if b"markPrice" in raw[:40]]
    parser = BinanceParser(Market.USDM)
    out = [e for t, raw in frames for e in parser.parse(raw, t)]
    assert all(type(e) is Mark for e in out) and len(out) == 99  # no funding time passed
    t, raw = frames[-1]
    msg = orjson.loads(raw)
    d = msg["data"]
    settled_at, last_rate = d["T"], float(d["r"])
    d["E"], d["T"], d["r"] = settled_at + 1000, settled_at + 8 * 3600 * 1000, "0.00008517"
    mark, funding = parser.parse(orjson.dumps(msg), t + 2_000_000_000)
    assert type(mark) is Mark and type(funding) is Funding
    assert funding.symbol == "binance:BTC/USDT:USDT"
    assert (funding.ts, funding.rate, funding.interval_h) == (settled_at * MS, last_rate, 8.0)
    assert funding.ts == 1680652800000 * MS  # 2023-04-05 00:00 UTC
    # the next frames of the same interval settle nothing; the next settlement has the
    # interval since this one
    d["E"] += 1000
    assert [type(e) for e in parser.parse(orjson.dumps(msg), t + 3_000_000_000)] == [Mark]
    d["E"], d["T"] = d["T"] + 5, d["T"] + 8 * 3600 * 1000
    _, nxt = parser.parse(orjson.dumps(msg), d["E"] * MS + 40 * MS)
    assert (nxt.ts, nxt.rate, nxt.interval_h) == ((settled_at + 8 * 3600 * 1000) * MS, 0.00008517, 8.0)
    # a delivery contract ("r": "") never settles funding
    d["r"], d["E"], d["T"] = "", d["T"] + 5, d["T"] + 8 * 3600 * 1000
    assert [type(e) for e in parser.parse(orjson.dumps(msg), d["E"] * MS + 40 * MS)] == [Mark]


def test_spot_quotes_get_the_depth_streams_exchange_time(data_dir):
    frames = lines(data_dir / SPOT)
    parser = BinanceParser(Market.SPOT)
    events = [e for t, raw in frames for e in parser.parse(raw, t)] + parser.drain()
    quotes = [e for e in events if type(e) is Quote]
    diffs = [e for e in events if type(e) is DepthDiff]
    assert len(quotes) == sum(1 for _, raw in frames if b"@bookTicker" in raw[:40])
    # every quote dated by a depth frame carries that frame's E, which covers its update id
    e_of = {d.ts for d in diffs}
    dated = [q for q in quotes if q.ts != q.recv_ns]
    assert all(q.ts in e_of for q in dated) and len(dated) / len(quotes) > 0.95
    by_u = sorted((d.update_id, d.first_update_id, d.ts) for d in diffs)
    import bisect

    for q in dated:
        u, first_u, e = by_u[bisect.bisect_left(by_u, (q.update_id, -1, -1))]
        assert first_u <= q.update_id <= u and q.ts == e
    # the clock lag of this capture (receive 1.27 s before E): dated quotes sit on exchange time
    lag = sorted(q.ts - q.recv_ns for q in dated)
    assert 1.2e9 < lag[len(lag) // 2] < 1.4e9
    # without a depth stream there is nothing to date them by: receive time, recv_ts equal
    alone = BinanceParser(Market.SPOT)
    solo = [e for t, raw in frames if b"@bookTicker" in raw[:40] for e in alone.parse(raw, t)]
    assert len(solo) == len(quotes) and all(q.ts == q.recv_ns for q in solo)


def test_parser_state_carries_quotes_and_settlements_across_runs(data_dir):
    frames = lines(data_dir / SPOT)
    one = BinanceParser(Market.SPOT)
    whole = [e for t, raw in frames for e in one.parse(raw, t)] + one.drain()
    half = len(frames) // 2
    a = BinanceParser(Market.SPOT)
    part = [e for t, raw in frames[:half] for e in a.parse(raw, t)]
    state = json.loads(json.dumps(a.save_state()))  # it is JSON
    assert state["held"]  # quotes waiting for their depth frame at the cut
    b = BinanceParser(Market.SPOT)
    b.restore_state(state)
    part += [e for t, raw in frames[half:] for e in b.parse(raw, t)] + b.drain()
    assert part == whole
    with pytest.raises(ValueError, match="does not fit"):
        BinanceParser(Market.USDM).restore_state(state)


def test_binance_us_is_its_own_venue(data_dir):
    assert venue_of_url("wss://stream.binance.us:9443/stream?streams=btcusdt@trade") == "binanceus"
    assert venue_of_url("https://api.binance.us/api/v3/depth?symbol=BTCUSD") == "binanceus"
    assert venue_of_url("wss://stream.binance.com:9443/ws") == venue_of_url("https://fapi.binance.com/") == "binance"
    assert venue_of_url("ws://127.0.0.1:9000/stream") is None  # a simulator: the venue cannot be told
    assert market_of_url(ENDPOINTS_US[Market.SPOT].ws) is Market.SPOT
    assert binance_venues(Market.SPOT) == ("binance", "binanceus") and binance_venues(Market.USDM) == ("binance",)
    us = BinanceParser(Market.SPOT, exchange="binanceus")
    t, raw = first(lines(data_dir / SPOT), "@trade")
    (trade,) = us.parse(raw, t)
    (same,) = BinanceParser(Market.SPOT).parse(raw, t)
    assert trade.symbol == "binanceus:BTC/USDT" and same.symbol == "binance:BTC/USDT"
    assert trade.trade_id == same.trade_id  # ids can collide: only the symbol keeps them apart
    assert to_tickstore("BTCUSD", Market.SPOT, "binanceus") == "binanceus:BTC/USD"
    assert from_tickstore("binanceus:BTC/USD") == ("BTCUSD", Market.SPOT)
    assert MARKETS.info("binanceus", "BTCUSD", market_type=MarketType.SPOT).symbol == "BTC/USD"
    with pytest.raises(UnknownSymbol, match="spot markets only"):
        from_tickstore("binanceus:BTC/USDT:USDT")
    with pytest.raises(ValueError, match="spot markets only"):
        BinanceParser(Market.USDM, exchange="binanceus")


def test_bybit_block_trades_are_kind_block(data_dir):
    """The cryptofeed Bybit capture's publicTrade frames all say ``"BT": false``; Bybit sets
    it true for a block trade (a print reported from outside the order book)."""
    import zstandard

    from collectors.exchanges.bybit import BybitParser, Category

    lines = zstandard.ZstdDecompressor().stream_reader(open(data_dir / "cryptofeed/BYBIT.jsonl.zst", "rb")).read()
    recs = [json.loads(ln) for ln in lines.decode().splitlines()]
    cat = {r["conn"]: r["addr"].rsplit("/", 1)[1] for r in recs if r["t"] == "connect"}
    r = next(r for r in recs if r["t"] == "recv" and '"publicTrade.' in r["data"] and cat[r["conn"]] == "linear")
    msg, recv = json.loads(r["data"]), int(round(r["ts"] * 1e7)) * 100
    assert all(x["BT"] is False for x in msg["data"])
    plain = BybitParser(Category.LINEAR).parse(json.dumps(msg), recv)
    assert [t.kind for t in plain] == [TradeKind.MARKET] * len(msg["data"])
    msg["data"][0]["BT"] = True
    block = BybitParser(Category.LINEAR).parse(json.dumps(msg), recv)
    assert block[0].kind == TradeKind.BLOCK and [t.kind for t in block[1:]] == [TradeKind.MARKET] * (len(block) - 1)
    assert (block[0].trade_id, block[0].price) == (plain[0].trade_id, plain[0].price)


def _mark_capture_with_a_settlement(data_dir, tmp_path):
    """The 2023-04-04 capture (hftbacktest lines, µs receive times) plus one markPrice frame
    one second after the 00:00 funding time: the last real frame with E and T moved on."""
    lines = gzip.open(data_dir / MARK).read().splitlines(keepends=True)
    last = next(ln for ln in reversed(lines) if b"@markPrice" in ln[:60])
    recv, _, raw = last.partition(b" ")
    msg = orjson.loads(raw)
    d = msg["data"]
    d["E"], d["T"], d["r"] = d["T"] + 1000, d["T"] + 8 * 3600 * 1000, "0.00008517"
    path = tmp_path / "btcusdt_20230404_settled.gz"
    path.write_bytes(gzip.compress(b"".join(lines) + str(d["E"] * 1000 + 2000).encode() + b" " + orjson.dumps(msg) + b"\n"))
    return path


def test_a_settlement_seen_in_the_mark_stream_is_a_funding_row_until_the_rest_history_replaces_it(data_dir, tmp_path):
    from collectors.backfill import Kind, RetryPolicy, backfill, make_exchange
    from collectors.replay import replay
    from collectors.restsim import RestSim, SimData
    from tickstore import Tickstore

    sym, day = "binance:BTC/USDT:USDT", "2023-04-05"
    capture = _mark_capture_with_a_settlement(data_dir, tmp_path)
    rest = {  # the settled history (UTC+3 wall clock in the file) around that settlement
        pd.Timestamp(t, tz="UTC") - pd.Timedelta(hours=3): float(r)
        for t, r in (ln.split(",")[1:] for ln in open(next((data_dir / "historical-funding-rates-fetcher").glob("*binance*.csv")))
                     if ln.startswith("BTC-USDT,2023-04-05"))
    }
    assert round(rest[pd.Timestamp(day, tz="UTC")], 8) == 0.0000276  # streamed 2.754e-5 just before it
    with Tickstore(tmp_path / "store") as store, RestSim(SimData.recorded(data_dir)) as sim:
        report = replay([capture], store=store)
        assert report.rows["funding"] == 1
        live = store["funding"].select(sym)
        assert live.index.tolist() == [pd.Timestamp(day, tz="UTC")]
        assert (live["rate"].iloc[0], live["interval_h"].iloc[0]) == (0.00002754, 8.0)
        (v,) = store["funding"].versions(sym, day)["source"].tolist()
        assert v.startswith("settlement seen in the mark stream")
        # the REST history of the day replaces it (a new version; the stream's stays in the audit trail)
        ex = make_exchange("binance", base_url=sim.base_url, rate_limit_ms=1)
        backfill(store, Kind.FUNDING, "BTC/USDT:USDT", exchange="binance", start=day, end="2023-04-06",
                 exchange_obj=ex, progress=False, retry=RetryPolicy(attempts=2, base_s=0.01, max_s=0.02))
        settled = store["funding"].select(sym, day, "2023-04-06")
        # on the settlement hour: the history's stamps (08:00:00.016) are snapped, as every writer does
        assert settled["rate"].to_dict() == {t.round("h"): r for t, r in rest.items()}
        assert (settled["interval_h"] == 8.0).all()
        assert [s.split(";")[0] for s in store["funding"].versions(sym, day)["source"]][-2:] == [
            "settlement seen in the mark stream", "rest"]
        # replaying the capture again changes nothing: the settled row is kept
        again = replay([capture], store=store)
        assert again.rows.get("funding", 0) == 0
        pd.testing.assert_frame_equal(store["funding"].select(sym, day, "2023-04-06"), settled)


def test_spot_quotes_and_spot_book_agree_on_exchange_time(data_dir, tmp_path):
    """The 2024 spot day pair: before, quotes were on the receive clock (1.27-1.37 s behind
    E) and disagreed with the book's top at 58% of its grid rows; dated by the depth stream
    they agree at 6,502 of its 6,504 grid rows."""
    from collectors.replay import replay
    from tickstore import Tickstore

    sym = "binance:BTC/USDT"
    with Tickstore(tmp_path / "store") as store:
        replay([data_dir / SPOT, data_dir / SPOT.replace("0808", "0809")], store=store)
        q, b = store["quotes"].select(sym), store["book"].select(sym)
    assert len(q) == 28040 + 45134 and (q.index != q["recv_ts"]).all()  # every quote dated
    top = b[["bid_px_1", "ask_px_1"]].reset_index()

    def agree(quotes):
        m = pd.merge_asof(top, quotes[["bid_px", "ask_px"]].reset_index(), on="ts", direction="backward").dropna()
        return len(m), float(((m.bid_px_1 == m.bid_px) & (m.ask_px_1 == m.ask_px)).mean())

    n, share = agree(q)
    assert n > 6000 and share > 0.999  # 6,502 of 6,504 grid rows
    _, on_receive_clock = agree(q.set_index("recv_ts").sort_index(kind="stable").rename_axis("ts"))
    assert on_receive_clock < 0.5


def _cryptofeed_v1(path, url, frames):
    """A cryptofeed v1 websocket recording (``<url> <-> <ts>`` then ``<ts>: <json>`` lines)."""
    first = frames[0][0]
    lines = [f"{url} <-> {first // 10**9}.{first % 10**9:09d}".encode()]
    lines += [f"{t // 10**9}.{t % 10**9:09d}: ".encode() + raw for t, raw in frames]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_binance_us_captures_keep_their_venue(data_dir, tmp_path):
    from collectors.replay import ReplayError, replay
    from tickstore import Tickstore

    frames = [(t, raw) for t, raw in lines(data_dir / SPOT) if b"@trade" in raw[:40]][:300]
    want = [orjson.loads(raw)["data"]["t"] for _, raw in frames]
    us = _cryptofeed_v1(tmp_path / "BINANCEUS.ws.1.0", "wss://stream.binance.us:9443/stream?streams=btcusdt@trade", frames)
    com = _cryptofeed_v1(tmp_path / "BINANCE.ws.1.0", "wss://stream.binance.com:9443/stream?streams=btcusdt@trade", frames)
    plain = tmp_path / "no_url.txt"
    plain.write_bytes(b"".join(str(t).encode() + b" " + raw + b"\n" for t, raw in frames))
    with Tickstore(tmp_path / "store") as store:
        assert replay([us], store=store).venues == {str(us): "binanceus"}  # the URL says Binance.US
        assert store["trades"].symbols() == ["binanceus:BTC/USDT"]
        assert store["trades"].select("binanceus:BTC/USDT")["trade_id"].tolist() == want
        replay([com], store=store)
        # the same trade ids on another venue: two symbols, nothing merged or deduplicated away
        assert store["trades"].symbols() == ["binance:BTC/USDT", "binanceus:BTC/USDT"]
        assert store["trades"].select("binance:BTC/USDT")["trade_id"].tolist() == want
        with pytest.raises(ReplayError, match="holds Binance frames, not Binance.US"):
            replay([com], store=store, venue="binanceus")  # its URL contradicts the option
        # frames without a URL cannot tell the two apart: Binance's unless --venue binanceus
        r = replay([plain], store=None, venue="binanceus")
        assert r.venues == {str(plain): "binanceus"} and r.rows_by_symbol == {("trades", "binanceus:BTC/USDT"): 300}
        with pytest.raises(ReplayError, match="Binance.US"):
            replay([data_dir / USDM], store=None, venue="binanceus")  # futures exist on Binance only
