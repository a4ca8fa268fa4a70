"""Where the real recorded exchange files are (``../shared/data``, see its PROVENANCE.md).

Research keeps no ingestion code: files come into a store through ``tickstore import``
(``collectors.importers``: Tardis CSVs, Binance's archive, funding-history CSVs,
Hyperliquid REST answers, ...) or ``tickstore replay`` (recorded websocket captures), and
research reads them back with ``select``. This module only names the shared files::

    from collectors.importers import ImportOptions, import_files
    import_files(store, [data_dir() / TARDIS_TRADES])
    import_files(store, [data_dir() / ADA_KLINES], options=ImportOptions(market="spot"))
    import_files(store, [data_dir() / BINANCE_FUNDING], options=ImportOptions(utc_offset="3h"))
    import_files(store, [data_dir() / HL_FUNDING])            # a vcrpy cassette of REST answers
    from collectors.replay import replay
    replay([data_dir() / USDM_2024], store=store)              # trades, quotes, book, mark
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "data_dir",
    "TARDIS_TRADES",
    "USDM_2024",
    "USDM_2023",
    "SPOT_2024",
    "SPOT_0809",
    "CM_2024",
    "HL_BOOK",
    "ADA_KLINES",
    "BINANCE_FUNDING",
    "BYBIT_FUNDING",
    "HL_FUNDING",
]

# The real recorded files, relative to ``data_dir()`` (see PROVENANCE.md).
TARDIS_TRADES = "nautilus_trader/trades.csv"  # Tardis trades CSV, binance-futures BTCUSDT
USDM_2024 = "hftbacktest/usdm/btcusdt_20240808.gz"  # hftbacktest capture, Binance USD-M
USDM_2023 = "hftbacktest/usdm/btcusdt_20230404.dat.gz"  # ... with markPrice@1s
SPOT_2024 = "hftbacktest/spot/btcusdt_20240808.gz"
SPOT_0809 = "hftbacktest/spot/btcusdt_20240809.gz"
CM_2024 = "hftbacktest/cm/btcusd_perp_20240808.gz"
HL_BOOK = "hftbacktest/hyperliquid/btcusd_20250126.gz"  # Hyperliquid l2Book + trades capture
ADA_KLINES = "nautilus_trader/ADABTC-1m-2021-11-27.csv"  # data.binance.vision spot klines
BINANCE_FUNDING = "historical-funding-rates-fetcher/BTC-USDT_binance_2020-01-01_2024-01-01_funding_history.csv"
BYBIT_FUNDING = "historical-funding-rates-fetcher/BTC-USDT_bybit_2021-01-01_2024-01-01_funding_history.csv"
HL_FUNDING = "hyperliquid-python-sdk/test_get_funding_history[None].yaml"


def data_dir() -> Path:
    """The shared real-data folder: ``$TICKSTORE_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("TICKSTORE_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
