"""One generic websocket session for every venue: connect, subscribe, keep alive, reconnect.

The session knows nothing about any venue's messages: the venue module builds the URL
(Binance puts its combined streams in it), the subscribe messages and, where a venue
wants one, an application-level ping payload. The session hands every data frame, as
raw bytes, to ``on_frame(payload, recv_ns)`` with ``recv_ns = time.time_ns()`` taken the
moment the frame was read, and reports every interruption as ``Gap`` events::

     connected          last frame   watchdog/close     reconnected
   ----[=====frames=====]------|-----------x------(backoff)----[=====frames===
                               |<--------- Gap [ts, end_ts) ---------->|

A gap starts at the receive time of the last frame of the dead connection (anything
after it may be lost) and ends when the new connection is subscribed. Causes:

- ``disconnect``: the server closed, the socket failed, or connecting failed;
- ``stale``: the watchdog saw no data frame for ``stale_after_s`` (a silent feed is
  indistinguishable from a lost one, so we reconnect);
- ``reconnect``: proactive reconnect at ``max_age_s`` (Binance drops every connection at
  24 h; doing it ourselves earlier picks the moment, not the exchange);
- ``malformed``: a frame larger than ``max_message_bytes`` was dropped (never fatal).

``stop()`` itself leaves no gap (the collector's next start ledgers its downtime), but a
connection that ended on its own just as the stop came (a frame the journal could not keep,
a close, the watchdog) does: its gap runs from its last kept frame to the stop.

Frames over ``max_message_bytes`` are refused from their header: the payload (or the rest
of a fragmented message) is read and discarded in 64 KiB pieces, never held whole, and
``on_oversized(size)`` is told (websocket-client's frame reader is replaced by
``_BoundedFrames`` on each connection).

A failing callback never ends the session: if ``on_frame`` raises (the journal cannot
keep the frame: a full disk), the connection is dropped and re-made after the backoff,
and the gap starts at the last frame that was kept; if ``on_gap`` raises, the gap stays
open, the new connection is closed before it delivers anything, and both are retried
after the backoff. ``last_error`` says what went wrong last (for the status file).

Reconnects wait an exponential backoff with jitter (``BackoffPolicy``); the attempt
counter resets once a connection has stayed up ``reset_after_s``, so one flap after a
day of good service does not inherit the penalty of an outage long ago. Proactive
(max-age) reconnects do not wait at all.

Keep-alive: websocket-client answers server pings inside ``recv`` (Binance pings every
few minutes and drops clients that do not pong); we send our own ping every
``ping_interval_s`` so idle NATs keep the flow. Pongs do not feed the watchdog: only data
proves the feed is alive. Venues whose pongs and acks are text frames (Bybit
``{"op":"pong"}``, Hyperliquid ``{"channel":"pong"}``) say which frames are control
frames (``SessionConfig.is_control``): those are handed on (journaled) but do not count
as data for the watchdog either.

Threading: ``run()`` blocks in the calling thread; ``start()`` runs it in a daemon thread.
``stop()`` may be called from any thread (or a signal handler) and returns once the loop
has ended. The receive loop wakes every ``tick_s`` to run the watchdog and pings.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import orjson
import websocket
from websocket._abnf import ABNF, frame_buffer

from .events import Gap

__all__ = ["BackoffPolicy", "Backoff", "SessionConfig", "SessionStats", "Session"]

log = logging.getLogger(__name__)

MAX_DETAIL = 200  # the gaps table stores ``detail`` as str200


_STOPPED = "stopped"  # _receive's detail when stop() ended the connection (no gap: the next start ledgers the downtime)


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff with jitter: ``delay(n) = min(max_s, initial_s * factor**n)``,
    then scaled by a uniform factor in ``[1 - jitter, 1]`` so many clients that lost the
    same server do not come back in lockstep."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5
    reset_after_s: float = 30.0

    def __post_init__(self):
        if not (0 < self.initial_s <= self.max_s):
            raise ValueError(f"backoff needs 0 < initial_s <= max_s, got initial_s={self.initial_s} max_s={self.max_s}")
        if self.factor < 1:
            raise ValueError(f"backoff factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff jitter must be in [0, 1], got {self.jitter}")
        if self.reset_after_s < 0:
            raise ValueError(f"backoff reset_after_s must be >= 0, got {self.reset_after_s}")


class Backoff:
    """The mutable counter behind a ``BackoffPolicy`` (one per session)."""

    def __init__(self, policy: BackoffPolicy, *, rng: random.Random | None = None):
        self.policy = policy
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The wait before the next attempt; each call counts one more failure."""
        p = self.policy
        base = min(p.max_s, p.initial_s * p.factor**self.attempt)
        self.attempt += 1
        return base * (1.0 - p.jitter * self._rng.random())

    def connection_ended(self, lived_s: float) -> None:
        """Forget past failures if the connection that just ended was a good one."""
        if lived_s >= self.policy.reset_after_s:
            self.attempt = 0


@dataclass(frozen=True)
class SessionConfig:
    """One websocket connection.

    ``symbols`` are the tickstore symbols whose streams ride on this connection: each
    interruption yields one ``Gap`` per symbol (``stream="*"``: every stream of that
    symbol on this connection). ``subscribe`` are JSON messages sent after each connect,
    in order (empty for Binance combined streams, whose URL subscribes).
    ``ping_payload`` replaces the websocket ping by a text frame for venues that want an
    application ping (Bybit ``{"op": "ping"}``).
    """

    name: str
    url: str
    symbols: tuple[str, ...]
    subscribe: tuple[dict, ...] = ()
    ping_payload: dict | None = None
    is_control: Callable[[bytes], bool] | None = None  # pong/ack frames: not data for the watchdog
    ping_interval_s: float = 20.0
    stale_after_s: float = 15.0
    max_age_s: float = 23.5 * 3600
    connect_timeout_s: float = 10.0
    max_message_bytes: int = 8 << 20
    tick_s: float = 0.2
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)

    def __post_init__(self):
        if not self.url.startswith(("ws://", "wss://")):
            raise ValueError(f"session {self.name!r}: url must start with ws:// or wss://, got {self.url!r}")
        for name in ("ping_interval_s", "stale_after_s", "max_age_s", "connect_timeout_s", "tick_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"session {self.name!r}: {name} must be > 0, got {getattr(self, name)!r}")
        if self.max_message_bytes <= 0:
            raise ValueError(f"session {self.name!r}: max_message_bytes must be > 0, got {self.max_message_bytes}")
        if isinstance(self.symbols, str) or not self.symbols:
            raise ValueError(f"session {self.name!r}: symbols must be a non-empty tuple, got {self.symbols!r}")


@dataclass
class SessionStats:
    """Counters since the session was made (read them from any thread)."""

    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    stale: int = 0
    proactive: int = 0
    frames: int = 0
    bytes: int = 0
    oversized: int = 0
    gaps: int = 0
    control_frames: int = 0
    handler_errors: int = 0  # on_frame/on_gap raised (e.g. the journal's disk is full)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class _Oversized(Exception):
    """A message over the limit was read past and dropped; ``size`` is what it claimed."""

    def __init__(self, size: int):
        super().__init__(size)
        self.size = size


class _BoundedFrames(frame_buffer):
    """websocket-client's frame reader with a size limit checked on each frame header.

    A data frame, or a fragmented message, whose length passes ``limit`` is not buffered:
    its payload is read in 64 KiB pieces and dropped, then ``_Oversized`` is raised. The
    reads resume after a socket timeout (the remaining count is kept), like the parent's.
    Relies on websocket-client 1.9's ``frame_buffer`` (``recv_header``, ``recv_length``,
    ``recv_mask``, ``recv_strict``, ``header``, ``length``), pinned in setup.cfg.
    """

    _DATA = (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY, ABNF.OPCODE_CONT)

    def __init__(self, recv_fn, limit: int):
        super().__init__(recv_fn, skip_utf8_validation=True)
        self.limit = limit
        self._message = 0  # bytes of the current (possibly fragmented) message so far
        self._dropping = False  # the current message is over the limit
        self._discard = 0  # payload bytes of the current frame still to drop

    def recv_frame(self) -> ABNF:
        while True:
            if self._dropping and self.header is not None and self.length is not None:
                if self.needs_mask():  # a masked frame whose mask a timeout interrupted
                    self.recv_mask()
                while self._discard:
                    n = min(self._discard, 1 << 16)
                    self.recv_strict(n)
                    self._discard -= n
                fin = self.header[0]
                self.clear()
                if fin:
                    size, self._message, self._dropping = self._message, 0, False
                    raise _Oversized(size)
                continue  # the message goes on in continuation frames: drop them too
            if self.needs_header():
                self.recv_header()
            if self.needs_length():
                self.recv_length()
            opcode = self.header[4]
            if opcode in self._DATA:
                if opcode != ABNF.OPCODE_CONT:
                    self._message, self._dropping = 0, False
                self._message += self.length
                if self._dropping or self._message > self.limit:
                    self._dropping, self._discard = True, self.length
                    continue
            return super().recv_frame()


class _Interrupted(Exception):
    """The current connection has to go; ``cause``/``detail`` say why."""

    def __init__(self, cause: str, detail: str):
        super().__init__(detail)
        self.cause = cause
        self.detail = detail


class Session:
    """Keeps one websocket connection alive and feeds its frames to ``on_frame``.

    Parameters
    ----------
    config:
        The connection (``SessionConfig``).
    on_frame:
        ``on_frame(payload: bytes, recv_ns: int)``, called in the session thread for every
        data frame. It should be quick (journal and return); an exception in it is logged
        and drops the connection (a frame we could not keep is a gap), reconnecting after
        the backoff.
    on_gap:
        ``on_gap(gaps: list[Gap])`` once per interruption, after the reconnect (or at stop).
    on_connect:
        ``on_connect(connection_number)`` after each connect + subscribe; the collector
        resyncs order books here (a new connection means diffs were missed).
    on_oversized:
        ``on_oversized(size)`` for each message dropped unread for its size.
    clock, rng:
        Injectable ``time.time_ns`` and jitter source for tests.
    """

    def __init__(
        self,
        config: SessionConfig,
        *,
        on_frame: Callable[[bytes, int], None],
        on_gap: Callable[[list[Gap]], None] | None = None,
        on_connect: Callable[[int], None] | None = None,
        on_oversized: Callable[[int], None] | None = None,
        clock: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
    ):
        self.config = config
        self.on_frame = on_frame
        self.on_gap = on_gap or (lambda gaps: None)
        self.on_connect = on_connect or (lambda n: None)
        self.on_oversized = on_oversized or (lambda size: None)
        self.last_error: str | None = None  # what went wrong last; None once connected again
        self._last_ns = 0
        self.clock = clock
        self.backoff = Backoff(config.backoff, rng=rng)
        self.stats = SessionStats()
        self._stop = threading.Event()
        self._ws: websocket.WebSocket | None = None
        self._thread: threading.Thread | None = None
        self._reconnect_now: tuple[str, str] | None = None
        self.connected = threading.Event()

    # -- control ----------------------------------------------------------------------
    def start(self) -> "Session":
        """Run the session in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name=f"session-{self.config.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close the connection and end ``run()`` (idempotent, any thread)."""
        self._stop.set()
        ws = self._ws
        if ws is not None:
            ws.abort()  # wakes a recv blocked in the session thread
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def reconnect(self, *, cause: str = "reconnect", detail: str = "requested") -> None:
        """Ask the session thread to drop the connection and reconnect (any thread)."""
        self._reconnect_now = (cause, detail)

    def send(self, message: dict) -> bool:
        """Send one JSON message on the current connection (any thread).

        Returns False when there is no open connection or the send failed; the caller need
        not retry: a new connection sends ``subscribe`` again (Bybit resubscribes a topic
        this way to get a fresh book snapshot).
        """
        ws = self._ws
        if ws is None or not self.connected.is_set():
            return False
        try:
            ws.send(orjson.dumps(message).decode())  # enable_multithread: sends are locked
        except (websocket.WebSocketException, OSError) as exc:
            log.warning("%s: send failed: %s: %s", self.config.name, type(exc).__name__, exc)
            return False
        return True

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> None:
        """Connect and receive until ``stop()``; never raises on network or callback trouble."""
        cfg = self.config
        down_since: int | None = None  # start of the open gap, None when nothing is missing
        cause, detail = "disconnect", ""
        first, wait = True, False
        while not self._stop.is_set():
            if not first:
                delay = self.backoff.next_delay() if wait else 0.0
                if delay and self._stop.wait(delay):
                    break
            first, wait = False, True
            try:
                ws = self._connect()
            except Exception as exc:  # noqa: BLE001 - any connect failure is retried
                self.stats.connect_failures += 1
                if down_since is None:
                    down_since = self.clock()
                    cause = "disconnect"
                detail = f"connect failed: {type(exc).__name__}: {exc}"
                self.last_error = detail
                log.warning("%s: %s (attempt %d)", cfg.name, detail, self.backoff.attempt)
                continue
            connected_ns = self.clock()
            if down_since is not None and not self._emit_gap(down_since, connected_ns, cause, detail):
                # The gap cannot be recorded, so nothing of this connection may count as
                # received: close it before it delivers anything; the gap stays open.
                self._close(ws)
                self._ws = None
                continue
            down_since = None
            self.last_error = None
            self.stats.connects += 1
            self.connected.set()
            self._last_ns = connected_ns
            try:
                self.on_connect(self.stats.connects)
                cause, detail, last_ns = self._receive(ws, connected_ns)
            except Exception as exc:  # noqa: BLE001 - a failing callback costs a reconnect, not the process
                log.exception("%s: connection handler failed", cfg.name)
                cause, detail, last_ns = "disconnect", f"handler error: {type(exc).__name__}: {exc}", self._last_ns
                self.last_error = detail
            self.connected.clear()
            self._close(ws)
            self._ws = None
            lived_s = (self.clock() - connected_ns) / 1e9
            self.backoff.connection_ended(lived_s)
            if self._stop.is_set():
                if detail != _STOPPED:
                    # The connection ended on its own (a frame not kept, a close, the watchdog)
                    # as the stop came: what followed its last frame is missing, a gap.
                    self.stats.disconnects += 1
                    down_since = last_ns
                break
            self.stats.disconnects += 1
            down_since = last_ns
            wait = cause != "reconnect"  # a proactive reconnect does not wait
            log.warning("%s: %s (%s) after %.1f s", cfg.name, cause, detail, lived_s)
        if down_since is not None:
            self._emit_gap(down_since, self.clock(), cause, f"{detail}; stopped while disconnected")

    def _connect(self) -> websocket.WebSocket:
        cfg = self.config
        ws = websocket.create_connection(
            cfg.url,
            timeout=cfg.connect_timeout_s,
            skip_utf8_validation=True,  # orjson validates when it parses; doing it twice costs ~30% CPU
            enable_multithread=True,
        )
        # nothing was read from the frame stream yet (the handshake reads the socket directly)
        ws.frame_buffer = _BoundedFrames(ws._recv, cfg.max_message_bytes)
        self._ws = ws
        for message in cfg.subscribe:
            ws.send(orjson.dumps(message).decode())
        ws.settimeout(cfg.tick_s)
        return ws

    def _receive(self, ws: websocket.WebSocket, connected_ns: int) -> tuple[str, str, int]:
        """Receive until the connection has to go; returns (cause, detail, last data frame ns)."""
        cfg = self.config
        last_ns = connected_ns  # the last data frame kept: the watchdog's clock and a gap's start
        next_ping = time.monotonic() + cfg.ping_interval_s
        stale_ns = int(cfg.stale_after_s * 1e9)
        max_age_ns = int(cfg.max_age_s * 1e9)
        is_control = cfg.is_control
        try:
            while not self._stop.is_set():
                big = None
                try:
                    opcode, payload = ws.recv_data()
                except websocket.WebSocketTimeoutException:
                    opcode = None
                except _Oversized as exc:
                    opcode, big = None, exc.size
                    ws.cont_frame.cont_data = ws.cont_frame.recving_frames = None  # fragments kept before the limit
                now = self.clock()
                if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                    self.stats.frames += 1
                    self.stats.bytes += len(payload)
                    control = is_control is not None and is_control(payload)
                    try:
                        self.on_frame(payload, now)
                    except Exception as exc:  # noqa: BLE001 - the frame was not kept: a gap, not the end
                        self.stats.handler_errors += 1
                        self.last_error = f"frame not kept: {type(exc).__name__}: {exc}"
                        log.error("%s: %s; reconnecting after the backoff", cfg.name, self.last_error)
                        return "disconnect", self.last_error, last_ns
                    if control:
                        self.stats.control_frames += 1
                    else:
                        last_ns = self._last_ns = now
                elif big is not None:
                    self.stats.oversized += 1
                    log.warning("%s: dropped a %d-byte frame unread (max_message_bytes=%d)", cfg.name, big, cfg.max_message_bytes)
                    try:
                        self.on_oversized(big)
                    except Exception:  # noqa: BLE001 - a counter must not cost the connection
                        log.exception("%s: on_oversized failed", cfg.name)
                    if not self._emit_gap(now, now + 1, "malformed", f"oversized frame of {big} bytes > {cfg.max_message_bytes}"):
                        return "disconnect", "the gap of an oversized frame could not be recorded", last_ns
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                    reason = payload[2:].decode("utf-8", "replace")
                    return "disconnect", f"server closed (code={code} reason={reason!r})", last_ns
                if now - last_ns > stale_ns:
                    self.stats.stale += 1
                    return "stale", f"no data for {(now - last_ns) / 1e9:.1f} s (stale_after_s={cfg.stale_after_s})", last_ns
                if now - connected_ns > max_age_ns:
                    self.stats.proactive += 1
                    return "reconnect", f"max connection age {cfg.max_age_s} s reached", last_ns
                if self._reconnect_now is not None:
                    (cause, detail), self._reconnect_now = self._reconnect_now, None
                    return cause, detail, last_ns
                if time.monotonic() >= next_ping:
                    next_ping = time.monotonic() + cfg.ping_interval_s
                    if cfg.ping_payload is not None:
                        ws.send(orjson.dumps(cfg.ping_payload).decode())
                    else:
                        ws.ping()
        except (websocket.WebSocketException, OSError) as exc:
            if self._stop.is_set():
                return "disconnect", _STOPPED, last_ns
            return "disconnect", f"{type(exc).__name__}: {exc}", last_ns
        return "disconnect", _STOPPED, last_ns

    @staticmethod
    def _close(ws: websocket.WebSocket) -> None:
        try:
            ws.close(timeout=0.5)
        except Exception:  # noqa: BLE001 - the peer may be gone already; closing is best effort
            ws.shutdown()

    def _emit_gap(self, start_ns: int, end_ns: int, cause: str, detail: str) -> bool:
        """Hand one gap per symbol to ``on_gap``; False (logged) if it raised."""
        cfg = self.config
        now = self.clock()
        text = f"{cfg.name}: {detail}"[:MAX_DETAIL]
        gaps = [Gap(symbol=s, ts=start_ns, recv_ns=now, end_ts=max(end_ns, start_ns + 1), stream="*", cause=cause, detail=text) for s in cfg.symbols]
        try:
            self.on_gap(gaps)
        except Exception as exc:  # noqa: BLE001 - the gap stays open and is retried
            self.stats.handler_errors += 1
            self.last_error = f"gap not recorded: {type(exc).__name__}: {exc}"
            log.error("%s: %s; retried after the backoff", cfg.name, self.last_error)
            return False
        self.stats.gaps += 1
        return True
