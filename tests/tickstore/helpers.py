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
