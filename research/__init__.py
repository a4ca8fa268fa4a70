"""Research helpers on top of the tickstore: bars, volatility, funding, basis, indicators,
plots, derived tables, backtests and Dask scans.

Import the module you need (``from research.bars import trade_bars``); nothing heavy is
imported here, so ``import research`` stays cheap (plots pull in plotly/cufflinks, scale
pulls in dask).
"""

__all__ = [
    "bars",
    "volatility",
    "funding",
    "basis",
    "indicators",
    "datasets",
    "plots",
    "derived",
    "backtest",
    "scale",
    "conventions",
    "errors",
]
