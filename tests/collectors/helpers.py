"""Shared helpers of the collector tests."""

from __future__ import annotations

import time


def wait_until(pred, timeout: float, what: str, *, poll: float = 0.02) -> None:
    """Poll ``pred`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def sent_before_stop(sim, symbols, *, grace: float = 0.5) -> dict[str, list[int]]:
    """Trade ids the simulator has sent so far, then ``grace`` seconds for the client to read them.

    Take it just before a collector stops. Frames the simulator writes while the client is
    hanging up count as sent (``SentLog`` records what was written intact) but are never
    read, so "every sent trade is stored" is checked against this, not the whole log.
    """
    out = {s: list(sim.sent.trade_ids[s]) for s in symbols}
    time.sleep(grace)
    return out


def assert_nothing_lost(stored, before_stop: list, sent, what: str) -> None:
    """``stored`` trade ids hold every id of ``before_stop``, once, and nothing never ``sent``."""
    have = set(stored)
    assert len(have) == len(stored), f"{what}: a trade stored twice"
    missing = [i for i, t in enumerate(before_stop) if t not in have]
    assert not missing, f"{what}: sent trades missing at positions {missing} of {len(before_stop)}"
    assert have <= set(sent), f"{what}: {len(have - set(sent))} trades stored that were never sent"


def receive(ws, seconds: float, *, until: int | None = None) -> list[bytes]:
    """Text frames a websocket-client connection receives within ``seconds`` (or until
    ``until`` frames came)."""
    import websocket

    out, deadline = [], time.monotonic() + seconds
    ws.settimeout(0.1)
    while time.monotonic() < deadline and (until is None or len(out) < until):
        try:
            op, data = ws.recv_data()
        except websocket.WebSocketTimeoutException:
            continue
        if op == websocket.ABNF.OPCODE_TEXT:
            out.append(data)
    return out
