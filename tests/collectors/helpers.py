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


def wait_for_store(root, pred, timeout: float, what: str) -> None:
    """``wait_until`` ``pred(store)`` holds for a store opened afresh at ``root`` (the store a
    running collector, in this process or another, writes to)."""
    from tickstore import Tickstore

    def check() -> bool:
        with Tickstore(root) as store:
            return bool(pred(store))

    wait_until(check, timeout, what, poll=0.25)


def book_rows_after(store, symbol: str, cause: str, *, from_end: bool = False) -> int:
    """Book rows of ``symbol`` stored after its first ledgered gap of ``cause`` (after the
    gap's start, or its end with ``from_end``); 0 while there is no such gap."""
    gaps = store["gaps"].select(symbol)
    gaps = gaps[gaps["cause"] == cause]
    if not len(gaps):
        return 0
    after = gaps["end_ts"].iloc[0] if from_end else gaps.index[0]
    return int((store["book"].select(symbol).index > after).sum())


def sent_before_stop(sim, symbols, store_root, *, timeout: float = 60.0) -> dict[str, list[int]]:
    """Trade ids the simulator has sent so far, returned once the collector storing into
    ``store_root`` has read past them.

    Take it just before a collector stops. Frames the simulator writes while the client is
    hanging up count as sent (``SentLog`` records what was written intact) but are never
    read, so "every sent trade is stored" is checked against this, not the whole log. How
    soon the client reads what was written depends on the machine's load, so this waits
    for evidence, not for a fixed time: for each symbol, a stored trade that was sent no
    earlier than the last one taken (the last one itself, or a later one should it have
    been lost with a connection the client was abandoning). The collector processes its
    journal in order, so every earlier trade it received is stored by then too; whether
    any was lost is for the caller's assertions.
    """
    out = {s: list(sim.sent.trade_ids[s]) for s in symbols}

    def read_past(store) -> bool:
        for s, ids in out.items():
            if not ids:
                continue
            later = set(sim.sent.trade_ids[s][len(ids) - 1:])
            stored = store["trades"].select(s, columns=["trade_id"])["trade_id"]
            if not later.intersection(stored.tolist()):
                return False
        return True

    wait_for_store(store_root, read_past, timeout, f"the collector to store the last trades sent of {sorted(out)}")
    return out


def assert_nothing_lost(stored, before_stop: list, sent, what: str) -> None:
    """``stored`` trade ids hold every id of ``before_stop``, once, and nothing never ``sent``."""
    have = set(stored)
    assert len(have) == len(stored), f"{what}: a trade stored twice"
    missing = [i for i, t in enumerate(before_stop) if t not in have]
    assert not missing, f"{what}: sent trades missing at positions {missing} of {len(before_stop)}"
    assert have <= set(sent), f"{what}: {len(have - set(sent))} trades stored that were never sent"


def receive(ws, seconds: float, *, until=None) -> list[bytes]:
    """Text frames a websocket-client connection receives within ``seconds``, or until
    ``until`` frames came (an int), or until ``until(frames)`` holds (a predicate: give
    ``seconds`` generously then, e.g. 60 s; it fails the test when time runs out first)."""
    import websocket

    done = (lambda out: False) if until is None else (until if callable(until) else (lambda out: len(out) >= until))
    out, deadline = [], time.monotonic() + seconds
    ws.settimeout(0.1)
    while not done(out):
        if time.monotonic() >= deadline:
            if callable(until):
                raise AssertionError(f"timed out after {seconds} s receiving ({len(out)} frames)")
            break
        try:
            op, data = ws.recv_data()
        except websocket.WebSocketTimeoutException:
            continue
        if op == websocket.ABNF.OPCODE_TEXT:
            out.append(data)
    return out
