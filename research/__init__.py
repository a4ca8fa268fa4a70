"""Research helpers on top of the tickstore: bars, volatility, funding, basis, indicators,
plots, derived tables, backtests and Dask scans.

Import the module you need (``from research.bars import trade_bars``); nothing heavy is
imported here, so ``import research`` stays cheap (plots pull in plotly/cufflinks, scale
pulls in dask). It does one thing: ``df.iplot(...)`` works as in cufflinks' docs from then
on, through the fixes in ``research._cufflinks_compat`` (applied to cufflinks when it is
imported, by whatever imports it).
"""

from . import _cufflinks_compat

_cufflinks_compat.install()

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
    "coverage",
    "errors",
]
