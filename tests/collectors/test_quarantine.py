"""The quarantine: bounded, rotated, each entry with its reason, each kept once."""

from __future__ import annotations

import base64

import pandas as pd
import pytest

from collectors.quarantine import Quarantine, QuarantineConfig, read_quarantine


def test_entries_keep_the_frame_the_reason_and_the_position(tmp_path):
    q = Quarantine(tmp_path)
    assert q.frame(reason="InvalidValue: T=1e17", tag="usdm-0", recv_ns=5, body=b'{"T":1e17}', position=(3, 100))
    assert q.frame(reason="MalformedFrame: not JSON", tag="spot-0", recv_ns=6, body=b"\xff\xfe", position=(3, 200))
    idx = pd.DatetimeIndex([pd.Timestamp("2024-01-01", tz="UTC")] * 2, name="ts")
    rows = pd.DataFrame({"recv_ts": idx, "trade_id": [7, 8], "price": [1.5, float("nan")]}, index=idx)
    assert q.rows(reason="FrameError: bad", table="trades", symbol="binance:BTC/USDT", df=rows, position=(3, 200))
    q.close()
    a, b, c = read_quarantine(tmp_path)
    assert (a["kind"], a["reason"], a["tag"], a["recv_ns"], a["position"], a["body"]) == \
        ("frame", "InvalidValue: T=1e17", "usdm-0", 5, [3, 100], '{"T":1e17}')
    assert base64.b64decode(b["body_b64"]) == b"\xff\xfe"  # not UTF-8: kept as base64
    assert c["kind"] == "rows" and c["table"] == "trades" and [r["trade_id"] for r in c["rows"]] == [7, 8]
    assert c["rows"][0]["ts"] == pd.Timestamp("2024-01-01", tz="UTC").value  # times as int ns


def test_a_replayed_journal_range_is_not_quarantined_twice(tmp_path):
    q = Quarantine(tmp_path)
    for off in (100, 200, 300):
        q.frame(reason="r", tag="t", recv_ns=off, body=b"x", position=(1, off))
    q.close()
    q2 = Quarantine(tmp_path)  # a restart replays from an older checkpoint
    assert not q2.frame(reason="r", tag="t", recv_ns=200, body=b"x", position=(1, 200))
    assert not q2.frame(reason="r", tag="t", recv_ns=300, body=b"x", position=(1, 300))
    assert q2.frame(reason="r", tag="t", recv_ns=400, body=b"x", position=(1, 400))
    q2.close()
    assert [e["position"] for e in read_quarantine(tmp_path)] == [[1, 100], [1, 200], [1, 300], [1, 400]]
    assert q2.skipped == 2


def test_the_files_rotate_and_their_total_is_bounded(tmp_path):
    cfg = QuarantineConfig(max_file_bytes=4096, max_files=3, max_body_bytes=500)
    q = Quarantine(tmp_path, cfg)
    for i in range(500):
        q.frame(reason=f"bad {i}", tag="t", recv_ns=i, body=b"y" * 2000, position=(0, i))
    q.close()
    files = sorted(tmp_path.glob("quarantine-*.jsonl"))
    assert len(files) == 3 and sum(f.stat().st_size for f in files) <= 3 * 4096
    kept = read_quarantine(tmp_path)
    assert kept[-1]["reason"] == "bad 499" and [e["recv_ns"] for e in kept] == list(range(kept[0]["recv_ns"], 500))
    assert all(e["truncated"] and e["size"] == 2000 and len(e["body"]) == 500 for e in kept)


def test_bad_config_names_the_value():
    with pytest.raises(ValueError, match="max_files must be a positive integer, got 0"):
        QuarantineConfig(max_files=0)
