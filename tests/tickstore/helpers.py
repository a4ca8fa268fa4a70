"""Frame builders for store tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

SYM = "binance:BTC/USDT:USDT"


def trades(start: str, n: int, *, first_id: int = 1, step: str = "1s", price: float = 100.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=n, freq=step, tz="UTC", name="ts")
    return pd.DataFrame(
        {
            "recv_ts": idx + pd.Timedelta("3ms"),
            "trade_id": np.arange(first_id, first_id + n, dtype="i8"),
            "price": np.round(price + rng.normal(0, 1, n).cumsum(), 1),
            "qty": np.round(rng.exponential(0.1, n), 3),
            "side": rng.choice(np.array([-1, 1], dtype="i1"), n),
            # mostly market prints, a few liquidation / ADL prints (TradeKind 1, 2)
            "kind": rng.choice(np.array([0, 1, 2], dtype="i1"), n, p=[0.96, 0.03, 0.01]),
        },
        index=idx,
    )


def bars(start: str, n: int, *, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=n, freq="1min", tz="UTC", name="ts")
    close = 100 + rng.normal(0, 1, n).cumsum()
    return pd.DataFrame(
        {"open": close - 0.5, "high": close + 1, "low": close - 1, "close": close, "volume": rng.exponential(5, n)},
        index=idx,
    )


def stored_columns(h) -> dict[str, np.ndarray]:
    """Every array of a format-3 data file (an open PyTables handle), read through HDF5
    and decoded per the codecs the file records (splay's docstring): 'delta' int64
    differences, 'delta_scaled' differences of int / 10**scale, 'xor' of float bits,
    each restarting at every chunk of ``chunk_rows``."""
    import json

    codecs = json.loads(h.root.data._v_attrs.columns)
    k = int(h.root.data._v_attrs.chunk_rows)
    out = {}
    for node in h.root.data._f_iter_nodes("Leaf"):
        got = node.read()
        codec, scale = codecs[node.name]
        if codec != "plain":
            q = got.view(np.int64).copy()
            for a in range(0, len(q), k):
                (np.bitwise_xor.accumulate if codec == "xor" else np.cumsum)(q[a : a + k], out=q[a : a + k])
            got = q / 10.0**scale if codec == "delta_scaled" else q.view(np.float64) if codec == "xor" else q
        out[node.name] = got
    return out
