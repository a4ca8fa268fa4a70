"""The offline exchange: Binance, Bybit v5 and Hyperliquid wire protocols on 127.0.0.1.

One server core, one small dialect per venue::

    core.py          Simulator, SimulatorConfig, SentLog: one port per market, the asyncio
                     loop, HTTP + websocket plumbing, the clock, misbehaviour on request
    wire.py          RFC 6455 framing and one client connection
    market.py        the generated market (seeded random-walk book, trades, funding/mark/OI)
                     every dialect speaks about, and the ``Dialect`` interface
    binance.py       spot/USD-M/COIN-M combined streams + REST depth; ReplayMarket (captures)
    bybit.py         v5 public linear + spot: op subscribe/ping, orderbook snapshot + delta
                     (u, seq), publicTrade, tickers snapshot + delta, allLiquidation
    hyperliquid.py   /ws: method subscribe/ping, trades, l2Book, bbo, activeAssetCtx

Usage::

    with Simulator(SimulatorConfig(symbols=("bybit:BTC/USDT:USDT", "hyperliquid:BTC/USDC:USDC"))) as sim:
        ep = sim.endpoints(Category.LINEAR)        # Endpoints(ws=ws://127.0.0.1:<port>/v5/public/linear, ...)
        sim.skip_sequence("bybit:BTC/USDT:USDT")   # the next orderbook delta is withheld
        sim.drop(Market.PERP); sim.malformed(2); sim.stall(1.5)

Each dialect's module docstring lists its paths and messages. Faults work the same for
every dialect (``core.py``); what a skipped sequence means is the dialect's: a ``U``/``pu``
gap on Binance, a ``u`` gap on Bybit, a withheld (and undetectable) book on Hyperliquid.
"""

from .binance import BinanceDialect, ReplayMarket
from .bybit import BybitDialect
from .core import SentLog, Simulator, SimulatorConfig
from .hyperliquid import HyperliquidDialect
from .market import Dialect, Frame, GeneratedMarket, SymbolMarket

__all__ = [
    "SimulatorConfig",
    "Simulator",
    "SentLog",
    "GeneratedMarket",
    "ReplayMarket",
    "Dialect",
    "Frame",
    "SymbolMarket",
    "BinanceDialect",
    "BybitDialect",
    "HyperliquidDialect",
]
