"""The generic websocket session against the simulated exchange on 127.0.0.1."""

from __future__ import annotations

import random
import socket
import threading
import time

import pytest

from collectors.exchanges import binance as bn
from collectors.exchanges.binance import Channel, Market
from collectors.session import Backoff, BackoffPolicy, Session, SessionConfig
from collectors.simulator import Simulator, SimulatorConfig
from tests.collectors.helpers import wait_until

SYM = "binance:BTC/USDT:USDT"




@pytest.fixture
def sim():
    s = Simulator(SimulatorConfig(symbols=(SYM,), seed=7, trades_per_tick=3)).start()
    yield s
    s.stop()


def url_of(sim, channels=(Channel.TRADES, Channel.DEPTH, Channel.QUOTES)):
    return bn.ws_url(Market.USDM, bn.stream_names(SYM, channels), endpoints=sim.endpoints(Market.USDM))


class Recorder:
    def __init__(self):
        self.frames: list[tuple[bytes, int]] = []
        self.gaps = []
        self.connects: list[int] = []
        self.lock = threading.Lock()

    def frame(self, payload, recv_ns):
        with self.lock:
            self.frames.append((payload, recv_ns))

    def gap(self, gaps):
        with self.lock:
            self.gaps.extend(gaps)

    def connect(self, n):
        self.connects.append(n)

    def count(self):
        with self.lock:
            return len(self.frames)


def start(sim_or_url, rec: Recorder, **kw) -> Session:
    url = sim_or_url if isinstance(sim_or_url, str) else url_of(sim_or_url)
    cfg = SessionConfig(name="t", url=url, symbols=(SYM,), **kw)
    return Session(cfg, on_frame=rec.frame, on_gap=rec.gap, on_connect=rec.connect, rng=random.Random(1)).start()


# -- backoff ----------------------------------------------------------------------------------
def test_backoff_grows_exponentially_within_jitter_and_caps():
    b = Backoff(BackoffPolicy(initial_s=1, max_s=8, factor=2, jitter=0.5), rng=random.Random(3))
    delays = [b.next_delay() for _ in range(6)]
    for d, base in zip(delays, [1, 2, 4, 8, 8, 8]):
        assert base * 0.5 <= d <= base
    assert b.attempt == 6


def test_backoff_resets_only_after_a_long_enough_connection():
    b = Backoff(BackoffPolicy(initial_s=1, max_s=60, jitter=0, reset_after_s=30))
    for _ in range(4):
        b.next_delay()
    b.connection_ended(29.9)
    assert b.next_delay() == 16  # a short connection keeps the penalty
    b.connection_ended(30.0)
    assert b.next_delay() == 1


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"initial_s": 0}, "initial_s=0"),
        ({"initial_s": 5, "max_s": 1}, "initial_s=5 max_s=1"),
        ({"factor": 0.5}, "got 0.5"),
        ({"jitter": 2}, "got 2"),
    ],
)
def test_backoff_policy_rejects_bad_values(kw, msg):
    with pytest.raises(ValueError, match=msg):
        BackoffPolicy(**kw)


def test_session_config_rejects_bad_values():
    with pytest.raises(ValueError, match="url must start with ws:// or wss://, got 'http://x'"):
        SessionConfig(name="a", url="http://x", symbols=(SYM,))
    with pytest.raises(ValueError, match="stale_after_s must be > 0, got 0"):
        SessionConfig(name="a", url="ws://x", symbols=(SYM,), stale_after_s=0)
    with pytest.raises(ValueError, match="symbols must be a non-empty tuple"):
        SessionConfig(name="a", url="ws://x", symbols=SYM)


# -- live behaviour ----------------------------------------------------------------------------
def test_frames_arrive_with_receive_time(sim):
    rec = Recorder()
    s = start(sim, rec)
    try:
        wait_until(lambda: rec.count() >= 30, 60, "30 frames")
    finally:
        s.stop()
    before = time.time_ns()
    assert all(isinstance(p, bytes) for p, _ in rec.frames)
    times = [t for _, t in rec.frames]
    assert times == sorted(times) and times[-1] <= before
    events = [e for p, t in rec.frames for e in bn.parse(p, t, Market.USDM)]
    assert {type(e).__name__ for e in events} >= {"Trade", "DepthDiff", "Quote"}
    assert rec.gaps == [] and rec.connects == [1]


def test_dropped_connection_is_a_gap_and_reconnects(sim):
    rec = Recorder()
    s = start(sim, rec, backoff=BackoffPolicy(initial_s=0.05, max_s=0.2))
    try:
        wait_until(lambda: rec.count() >= 10, 60, "first frames")
        sim.drop()
        wait_until(lambda: len(rec.connects) >= 2, 60, "a reconnect")
        n = rec.count()
        wait_until(lambda: rec.count() > n + 10, 60, "frames after the reconnect")
    finally:
        s.stop()
    assert len(rec.gaps) == 1
    g = rec.gaps[0]
    assert (g.symbol, g.stream, g.cause) == (SYM, "*", "disconnect")
    last_before = max(t for _, t in rec.frames if t <= g.end_ts)
    assert g.ts == last_before < g.end_ts <= g.recv_ns
    assert s.stats.disconnects == 1 and s.stats.connects == 2


def test_watchdog_reconnects_a_stalled_feed(sim):
    rec = Recorder()
    s = start(sim, rec, stale_after_s=0.4, tick_s=0.05, backoff=BackoffPolicy(initial_s=0.05, max_s=0.1))
    try:
        wait_until(lambda: rec.count() >= 10, 60, "first frames")
        sim.stall(1.5)
        wait_until(lambda: any(g.cause == "stale" for g in rec.gaps), 60, "a stale gap")
        n = rec.count()
        wait_until(lambda: rec.count() > n + 5, 60, "frames once the stall is over")
    finally:
        s.stop()
    stale = [g for g in rec.gaps if g.cause == "stale"]
    assert stale and s.stats.stale >= 1
    assert "no data for" in stale[0].detail and "stale_after_s=0.4" in stale[0].detail
    assert stale[0].end_ts - stale[0].ts >= 0.4e9


def test_max_connection_age_reconnects_proactively_without_waiting(sim):
    rec = Recorder()
    s = start(sim, rec, max_age_s=0.5, tick_s=0.05, backoff=BackoffPolicy(initial_s=5, max_s=5))
    try:
        wait_until(lambda: len(rec.connects) >= 3, 60, "two proactive reconnects")
    finally:
        s.stop()
    assert s.stats.proactive >= 2
    causes = {g.cause for g in rec.gaps}
    assert causes == {"reconnect"}
    # no 5 s backoff was waited: no delay was ever drawn (each draw counts an attempt), so
    # each reconnect followed at once (a count, not a duration: a busy machine can be slow)
    assert s.backoff.attempt == 0


def test_backoff_resets_after_a_good_connection_but_not_after_a_short_one(sim):
    rec = Recorder()
    # reset after 4 s: the short connections stay short even when a busy machine holds this
    # test up for a while; the good one is kept open longer than that
    s = start(sim, rec, backoff=BackoffPolicy(initial_s=0.05, max_s=0.1, reset_after_s=4.0))
    try:
        wait_until(lambda: rec.count() > 0, 60, "first frames")
        sim.drop()  # the first connection lived < 4 s: its failure counts
        wait_until(lambda: len(rec.connects) >= 2, 60, "reconnect 1")
        assert s.backoff.attempt == 1
        sim.drop()
        wait_until(lambda: len(rec.connects) >= 3, 60, "reconnect 2")
        assert s.backoff.attempt == 2
        time.sleep(4.2)  # a good connection now (at least this long: a lower bound, whatever the load)
        sim.drop()
        wait_until(lambda: len(rec.connects) >= 4, 60, "reconnect 3")
        assert s.backoff.attempt == 1  # reset to 0, then one failure
    finally:
        s.stop()


def test_unreachable_server_backs_off_and_reports_the_outage_at_stop():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once the probe is closed
    rec = Recorder()
    s = start(f"ws://127.0.0.1:{port}/stream?streams=btcusdt@trade", rec, connect_timeout_s=1,
              backoff=BackoffPolicy(initial_s=0.05, max_s=0.2, jitter=0))
    try:
        wait_until(lambda: s.stats.connect_failures >= 4, 60, "four failed connects")
    finally:
        s.stop()
    assert s.backoff.attempt >= 4
    assert len(rec.gaps) == 1
    assert rec.gaps[0].cause == "disconnect" and "stopped while disconnected" in rec.gaps[0].detail
    assert "connect failed" in rec.gaps[0].detail


def test_oversized_frames_are_dropped_and_reported_not_fatal(sim):
    rec = Recorder()
    s = start(sim, rec, max_message_bytes=200)
    try:
        wait_until(lambda: s.stats.oversized >= 3 and rec.count() >= 3, 60, "oversized and normal frames")
    finally:
        s.stop()
    assert all(len(p) <= 200 for p, _ in rec.frames)
    big = [g for g in rec.gaps if g.cause == "malformed"]
    assert big and "bytes > 200" in big[0].detail
    assert s.stats.connects == 1  # never reconnected for it


def test_a_failing_frame_handler_costs_a_reconnect_not_the_session(sim):
    rec = Recorder()
    calls = {"n": 0}

    def flaky(payload, recv_ns):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("disk full")
        rec.frame(payload, recv_ns)

    cfg = SessionConfig(name="t", url=url_of(sim), symbols=(SYM,), backoff=BackoffPolicy(initial_s=0.05, max_s=0.1))
    s = Session(cfg, on_frame=flaky, on_gap=rec.gap).start()
    try:
        wait_until(lambda: s.stats.connects >= 2 and rec.count() > 10, 60, "recovery")
    finally:
        s.stop()
    (gap,) = [g for g in rec.gaps if "frame not kept: RuntimeError: disk full" in g.detail]
    assert gap.ts == rec.frames[3][1]  # the gap starts at the last frame that was kept
    assert s.stats.handler_errors == 1


def _header(opcode: int, length: int, *, fin: bool = True) -> bytes:
    b1 = (0x80 if fin else 0) | opcode
    if length < 126:
        return bytes([b1, length])
    if length < 1 << 16:
        return bytes([b1, 126]) + length.to_bytes(2, "big")
    return bytes([b1, 127]) + length.to_bytes(8, "big")


class _HugeFrameServer:
    """A bare websocket server on 127.0.0.1: after the handshake it sends a 400 MB text
    frame (streamed in 1 MB pieces, never built whole), a small frame, a 12 MB message in
    1 MB fragments, and another small frame."""

    BIG = 400 << 20

    def __init__(self):
        import socket

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self.sock.getsockname()[1]}/ws"
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        from collectors.simulator.wire import accept_key

        conn, _ = self.sock.accept()
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            key = [ln.split(b":", 1)[1].strip().decode() for ln in head.split(b"\r\n") if ln.lower().startswith(b"sec-websocket-key")][0]
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n")
            piece = b"x" * (1 << 20)
            conn.sendall(_header(0x1, self.BIG))
            for _ in range(self.BIG // len(piece)):
                conn.sendall(piece)
            conn.sendall(_header(0x1, 8) + b'{"ok":1}')
            conn.sendall(_header(0x1, len(piece), fin=False) + piece)
            for i in range(11):
                conn.sendall(_header(0x0, len(piece), fin=(i == 10)) + piece)
            conn.sendall(_header(0x1, 8) + b'{"ok":2}')
            self.done.wait(30)
        except OSError:
            pass
        finally:
            conn.close()
            self.sock.close()


def test_a_huge_frame_is_refused_from_its_header_never_buffered():
    import tracemalloc

    srv = _HugeFrameServer()
    rec, sizes = Recorder(), []
    cfg = SessionConfig(name="t", url=srv.url, symbols=(SYM,), max_message_bytes=4 << 20, stale_after_s=60)
    s = Session(cfg, on_frame=rec.frame, on_gap=rec.gap, on_oversized=sizes.append)
    tracemalloc.start()
    try:
        s.start()
        wait_until(lambda: rec.count() >= 2, 120, "the small frames after the huge ones")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        srv.done.set()
        s.stop()
    assert [p for p, _ in rec.frames] == [b'{"ok":1}', b'{"ok":2}']
    assert sizes == [_HugeFrameServer.BIG, 12 << 20] and s.stats.oversized == 2
    assert peak < 32 << 20, f"{peak / 2**20:.0f} MB held while refusing a 400 MB frame"
    assert s.stats.connects == 1  # the connection survived both
    assert [g.cause for g in rec.gaps] == ["malformed", "malformed"] and "bytes > 4194304" in rec.gaps[0].detail


def test_pongs_and_acks_do_not_keep_a_stalled_feed_alive():
    """Bybit answers the application ping with a text frame; only data counts for the watchdog."""
    from collectors.exchanges import bybit as bb

    sym = "bybit:BTC/USDT:USDT"
    sim = Simulator(SimulatorConfig(symbols=(sym,), seed=2)).start()
    rec = Recorder()
    cfg = SessionConfig(name="t", url=sim.endpoints(bb.Category.LINEAR).ws, symbols=(sym,),
                        subscribe=tuple(bb.subscribe_messages(["publicTrade.BTCUSDT"])), ping_payload=bb.ping_message(),
                        is_control=bb.is_control_frame, ping_interval_s=0.1, stale_after_s=1.0,
                        backoff=BackoffPolicy(initial_s=0.05, max_s=0.1))
    s = Session(cfg, on_frame=rec.frame, on_gap=rec.gap)
    try:
        s.start()
        wait_until(lambda: rec.count() > 5, 60, "trades")
        pongs = s.stats.control_frames
        sim.stall(4.0)
        # the stale gap itself (emitted at the reconnect), not only the watchdog's count: a stop
        # between the two would end the session with no gap to look at
        wait_until(lambda: any(g.cause == "stale" for g in rec.gaps), 60, "the watchdog's gap")
    finally:
        s.stop()
        sim.stop()
    assert s.stats.control_frames > pongs  # pongs kept coming and were journaled ...
    assert any(p.startswith(b'{"success":true,"ret_msg":"pong"') or b'"op":"pong"' in p or b'"pong"' in p for p, _ in rec.frames)
    stale = [g for g in rec.gaps if g.cause == "stale"]  # ... yet the feed was declared stale
    assert stale and "no data for" in stale[0].detail


def test_a_connection_that_fails_as_the_stop_comes_leaves_its_gap(sim):
    """A frame the journal could not keep (a full disk) while the collector is stopping:
    the connection ends on its own with the stop already set. What followed the last kept
    frame is missing, so the gap is ledgered (it used to be dropped with the stop)."""
    rec = Recorder()
    kept = []

    def on_frame(payload, recv_ns):
        if len(kept) == 20:
            s._stop.set()  # the stop arrives in this very frame (as Session.stop() sets it)
            raise OSError(28, "No space left on device")
        kept.append(recv_ns)

    s = Session(SessionConfig(name="t", url=url_of(sim), symbols=(SYM,)), on_frame=on_frame, on_gap=rec.gap)
    s.start()
    wait_until(lambda: not s._thread.is_alive(), 60, "the session to end")
    s.stop()
    assert len(kept) == 20
    (g,) = rec.gaps
    assert (g.symbol, g.stream, g.cause) == (SYM, "*", "disconnect")
    assert g.ts == kept[-1] < g.end_ts and "No space left" in g.detail and "stopped while disconnected" in g.detail
    assert s.stats.disconnects == 1 and s.stats.handler_errors == 1


def test_a_plain_stop_leaves_no_gap(sim):
    rec = Recorder()
    s = start(sim, rec)
    wait_until(lambda: rec.count() >= 20, 60, "frames")
    s.stop()
    assert not s._thread.is_alive() and rec.gaps == [] and s.stats.disconnects == 0
