"""The simulated Binance on 127.0.0.1: wire protocol, sequencing, determinism, misbehaviour."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
import websocket

from collectors.book import BookBuilder
from collectors.exchanges import binance as bn
from collectors.exchanges.binance import Channel, Market
from collectors.simulator import GeneratedMarket, Simulator, SimulatorConfig
from tests.collectors.helpers import receive

SPOT, PERP = "binance:BTC/USDT", "binance:ETH/USDT:USDT"
DATA = Path(os.environ.get("TICKSTORE_SHARED_DATA", "/work/shared/data"))
USDM_2023 = DATA / "hftbacktest/usdm/btcusdt_20230404.dat.gz"


def needs_data(path: Path):
    if not path.exists() and os.environ.get("CI") != "true":
        pytest.skip(f"shared data {path} absent")
    return path


@pytest.fixture
def sim():
    s = Simulator(SimulatorConfig(symbols=(SPOT, PERP), seed=11, trades_per_tick=4, liquidation_prob=0.3)).start()
    yield s
    s.stop()


def connect(sim, symbol, channels, market):
    url = bn.ws_url(market, bn.stream_names(symbol, channels), endpoints=sim.endpoints(market))
    ws = websocket.create_connection(url, timeout=5, skip_utf8_validation=True)
    return ws


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read())


def test_combined_stream_frames_parse_and_sequence(sim):
    ws = connect(sim, PERP, [Channel.TRADES, Channel.DEPTH, Channel.QUOTES, Channel.MARK, Channel.LIQUIDATIONS], Market.USDM)
    try:
        # until every stream has spoken (a liquidation is rare; a busy machine is slow)
        frames = receive(ws, 60, until=lambda fr: len({orjson.loads(f)["stream"] for f in fr}) >= 5)
    finally:
        ws.close()
    envelopes = [orjson.loads(f) for f in frames]
    assert {e["stream"] for e in envelopes} == {
        "ethusdt@trade", "ethusdt@depth@100ms", "ethusdt@bookTicker", "ethusdt@markPrice@1s", "ethusdt@forceOrder"
    }
    events = [ev for f in frames for ev in bn.parse(f, time.time_ns(), Market.USDM)]
    trades = [e.trade_id for e in events if type(e).__name__ == "Trade"]
    assert trades == list(range(trades[0], trades[0] + len(trades)))  # contiguous ids
    diffs = [e for e in events if type(e).__name__ == "DepthDiff"]
    for a, b in zip(diffs, diffs[1:]):
        assert b.prev_update_id == a.update_id and b.first_update_id == a.update_id + 1
    quotes = [e for e in events if type(e).__name__ == "Quote"]
    assert all(q.bid_px < q.ask_px for q in quotes)
    marks = [e for e in events if type(e).__name__ == "Mark"]
    assert marks and all(m.next_funding_ts % (8 * 3600 * 10**9) == 0 for m in marks)
    assert any(type(e).__name__ == "Liquidation" for e in events)


def test_rest_snapshot_bridges_the_diff_stream_into_a_synced_book(sim):
    for symbol, market in ((SPOT, Market.SPOT), (PERP, Market.USDM)):
        ws = connect(sim, symbol, [Channel.DEPTH], market)
        try:
            # Binance's procedure: subscribe and buffer, then fetch the snapshot
            before = receive(ws, 0.3)
            status, body = get(bn.depth_snapshot_url(symbol, limit=1000, endpoints=sim.endpoints(market)))
            # until a diff past the snapshot came (the ones read first may be older)
            after = receive(ws, 60, until=lambda fr: fr and max(d.update_id for d in bn.parse(fr[-1], 0, market))
                            > body["lastUpdateId"])
        finally:
            ws.close()
        assert status == 200 and len(body["bids"]) == len(body["asks"]) == 100
        assert ("E" in body) is market.is_futures
        native = bn.from_tickstore(symbol)[0]
        book = BookBuilder(symbol, market, levels=5)
        out = [g for f in before for d in bn.parse(f, 0, market) for g in book.on_diff(d)]
        assert book.needs_snapshot and book.buffered == len(before)
        out += book.on_snapshot(bn.parse_snapshot(orjson.dumps(body), time.time_ns(), market, native_symbol=native))
        for f in after:
            for d in bn.parse(f, time.time_ns(), market):
                out += book.on_diff(d)
        assert book.synced, f"{symbol}: {book.stats}"
        assert not [g for g in out if type(g).__name__ == "Gap"]
        bids, _, asks, _ = book.top(5)
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]


def test_same_seed_same_bytes_other_seed_other_bytes():
    cfg = SimulatorConfig(symbols=(SPOT, PERP), seed=5, start_ms=1_700_000_000_000)
    a, b = GeneratedMarket(cfg, Market.USDM, cfg.start_ms), GeneratedMarket(cfg, Market.USDM, cfg.start_ms)
    c = GeneratedMarket(SimulatorConfig(symbols=(SPOT, PERP), seed=6, start_ms=cfg.start_ms), Market.USDM, cfg.start_ms)
    fa = [f.payload for i in range(200) for f in a.step(i)]
    fb = [f.payload for i in range(200) for f in b.step(i)]
    fc = [f.payload for i in range(200) for f in c.step(i)]
    assert fa == fb
    assert fa != fc
    first = orjson.loads(fa[0])
    assert first["data"]["E"] == 1_700_000_000_000


def _after_jump(frames) -> list:
    """The spot diffs of ``frames`` after the first break in their update-id chain."""
    diffs = [d for f in frames for d in bn.parse(f, 0, Market.SPOT)]
    for i, (a, b) in enumerate(zip(diffs, diffs[1:])):
        if b.first_update_id != a.update_id + 1:
            return diffs[i + 1:]
    return []


def test_skip_sequence_breaks_the_chain_once(sim):
    ws = connect(sim, SPOT, [Channel.DEPTH], Market.SPOT)
    try:
        frames = receive(ws, 60, until=3)
        sim.skip_sequence(SPOT)
        # until the break came and 10 diffs after it (none of them another break)
        frames += receive(ws, 60, until=lambda fr: sim.sent.skipped_updates == 1 and len(_after_jump(frames + fr)) >= 10)
    finally:
        ws.close()
    diffs = [d for f in frames for d in bn.parse(f, 0, Market.SPOT)]
    jumps = [(a.update_id, b.first_update_id) for a, b in zip(diffs, diffs[1:]) if b.first_update_id != a.update_id + 1]
    assert len(jumps) == 1 and jumps[0][1] > jumps[0][0] + 1
    assert sim.sent.skipped_updates == 1


def _cut(frame: bytes) -> bool:
    try:
        orjson.loads(frame)
    except orjson.JSONDecodeError:
        return True
    return False


def test_malformed_frames_are_cut_json(sim):
    ws = connect(sim, PERP, [Channel.TRADES, Channel.QUOTES], Market.USDM)
    try:
        receive(ws, 60, until=1)
        sim.malformed(3)
        # until the 3 cut frames came and 10 after the last (none of them cut)
        frames = receive(ws, 60, until=lambda fr: sum(map(_cut, fr)) >= 3
                         and len(fr) - max(i for i, f in enumerate(fr) if _cut(f)) > 10)
    finally:
        ws.close()
    bad = [f for f in frames if _cut(f)]
    assert len(bad) == 3 and sim.sent.malformed == 3
    assert all(f.startswith(b'{"stream":"ethusdt@') for f in bad)


def test_drop_closes_the_socket(sim):
    ws = connect(sim, PERP, [Channel.TRADES], Market.USDM)
    receive(ws, 60, until=1)  # connected and subscribed
    sim.drop(Market.USDM)
    ws.settimeout(60)
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError, OSError)):
        for _ in range(1000):
            ws.recv()
    assert sim.sent.drops == 1


def test_stall_sends_nothing_then_resumes(sim):
    ws = connect(sim, PERP, [Channel.QUOTES], Market.USDM)
    try:
        receive(ws, 60, until=3)
        sim.stall(3.0)
        stalled_at = sim.now_ms() * 1_000_000  # the market's time once the stall is on
        during = receive(ws, 0.8)
        after = receive(ws, 60, until=lambda fr: sum(_quote_ts(f) > stalled_at for f in fr) >= 3)
    finally:
        ws.close()
    # what came during the stall was written before it (a busy machine may read it late):
    # quotes of the market's time before the stall began, none of a later time
    assert all(_quote_ts(f) <= stalled_at for f in during)
    assert sum(_quote_ts(f) > stalled_at for f in after) >= 3  # then it resumed


def _quote_ts(frame: bytes) -> int:
    (q,) = bn.parse(frame, 0, Market.USDM)
    return q.ts


def test_subscribe_on_an_open_connection_is_acknowledged(sim):
    ws = connect(sim, PERP, [Channel.QUOTES], Market.USDM)
    try:
        ws.send(bn.subscribe_message(["ethusdt@trade"], request_id=42).decode())
        frames = receive(ws, 60, until=lambda fr: any(orjson.loads(f).get("stream") == "ethusdt@trade" for f in fr))
        ws.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 43}).decode())
        later = receive(ws, 60, until=lambda fr: any(orjson.loads(f).get("id") == 43 for f in fr))
    finally:
        ws.close()
    assert orjson.loads(frames[0]) == {"result": None, "id": 42} or {"result": None, "id": 42} in [orjson.loads(f) for f in frames]
    assert any(orjson.loads(f).get("stream") == "ethusdt@trade" for f in frames)
    assert {"result": ["ethusdt@bookTicker", "ethusdt@trade"], "id": 43} in [orjson.loads(f) for f in later]


def test_rest_errors_name_the_bad_value(sim):
    rest = sim.endpoints(Market.USDM).rest
    assert get(f"{rest}/fapi/v1/depth?symbol=NOPEUSDT&limit=5") == (400, {"code": -1121, "msg": "Invalid symbol 'NOPEUSDT'."})
    status, body = get(f"{rest}/fapi/v1/depth?symbol=ETHUSDT&limit=abc")
    assert status == 400 and "'abc'" in body["msg"]
    status, body = get(f"{rest}/api/v3/depth?symbol=ETHUSDT")
    assert status == 404 and "/api/v3/depth" in body["msg"]
    assert get(f"{rest}/fapi/v1/ping") == (200, {})


def test_server_pings_and_drops_clients_that_do_not_pong():
    # the timeout is long enough that a loaded machine does not drop the answering client,
    # and the silent one is waited for (up to 60 s), not timed
    cfg = SimulatorConfig(symbols=(PERP,), ping_interval_s=0.2, pong_timeout_s=3.0)
    with Simulator(cfg) as s:
        ws = connect(s, PERP, [Channel.QUOTES], Market.USDM)
        ws.settimeout(0.2)
        # at least 5 s (beyond the pong timeout) and 3 pings, however slow the machine
        pings, closed = 0, False
        t0 = time.monotonic()
        while not closed and (pings < 3 or time.monotonic() < t0 + 5) and time.monotonic() < t0 + 60:
            try:
                op, frame = ws.recv_data_frame(control_frame=True)  # answers pings itself
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketConnectionClosedException, OSError):
                closed = True
                break
            pings += op == websocket.ABNF.OPCODE_PING
        assert pings >= 3 and not closed and s.connections() == 1  # pongs keep it alive
        # a client that never answers: raw socket, handshake only
        import socket as _s
        raw = _s.create_connection(("127.0.0.1", s.endpoints(Market.USDM).ws.rsplit(":", 1)[1] and int(s.endpoints(Market.USDM).ws.rsplit(":", 1)[1])), timeout=5)
        raw.sendall(b"GET /stream?streams=ethusdt@bookTicker HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in raw.recv(4096)
        deadline, eof = time.monotonic() + 60, False
        while time.monotonic() < deadline and not eof:
            try:
                eof = raw.recv(65536) == b""
            except (ConnectionError, OSError):
                eof = True
        raw.close()
        ws.close()
        assert eof


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="only listens on loopback, got host='0.0.0.0'"):
        SimulatorConfig(host="0.0.0.0")
    with pytest.raises(ValueError, match="tick_ms=0"):
        SimulatorConfig(tick_ms=0)
    with pytest.raises(ValueError, match="tuple of tickstore symbols"):
        SimulatorConfig(symbols="binance:BTC/USDT")
    with pytest.raises(bn.UnknownSymbol, match="NOPE"):
        SimulatorConfig(symbols=("NOPE",))


def test_generation_is_bounded_by_max_seconds():
    with Simulator(SimulatorConfig(symbols=(PERP,), tick_ms=50, max_seconds=0.5, speed=4)) as s:
        assert s.finished.wait(5)
        assert s.steps == 10


def test_replays_a_recorded_capture_at_accelerated_speed():
    path = needs_data(USDM_2023)
    cfg = SimulatorConfig(replay=(str(path),), speed=50)
    with Simulator(cfg) as s:
        ws = connect(s, "binance:BTC/USDT:USDT", [Channel.TRADES, Channel.DEPTH, Channel.QUOTES, Channel.MARK], Market.USDM)
        try:
            status, snap = get(bn.depth_snapshot_url("binance:BTC/USDT:USDT", endpoints=s.endpoints(Market.USDM)))
            t0 = time.monotonic()
            frames = receive(ws, 10.0, until=13_383)
            took = time.monotonic() - t0
        finally:
            ws.close()
    # the 2023 capture: 100 s of BTCUSDT futures, 13,384 lines = 13,383 frames + 1 REST snapshot
    assert status == 200 and snap["lastUpdateId"] > 0
    assert len(frames) == 13_383
    # 100 s of market at 50x is ~2 s; real time would be 100 s. Half of real time proves the
    # acceleration and leaves room for a loaded machine (a tight bound would be a flaky test)
    assert took < 50.0
    trades = [e.trade_id for f in frames for e in bn.parse(f, 0, Market.USDM) if type(e).__name__ == "Trade"]
    assert len(trades) == 2197 and s.sent.trade_ids["binance:BTC/USDT:USDT"] == trades
