"""Any TA-Lib function by name on bars: ``indicator(bars, "RSI", timeperiod=14)``.

TA-Lib's abstract API knows each function's inputs (open/high/low/close/volume, or a
single ``real`` series, which defaults to ``close``) and outputs; this wraps it so the
result keeps the bars' index and multi-output functions (MACD, BBANDS, ...) come back as
one frame with a column per output.
"""

from __future__ import annotations

import difflib

import numpy as np
import pandas as pd
import talib
from talib import abstract

from .errors import ResearchError, UnknownIndicatorError

__all__ = ["indicator", "indicator_names"]


def indicator_names() -> list[str]:
    """Every TA-Lib function name (upper case), e.g. ``["ACOS", "AD", "ADD", ...]``."""
    return sorted(talib.get_functions())


def _function(name: str) -> abstract.Function:
    upper = str(name).upper()
    names = indicator_names()
    if upper not in names:
        close = difflib.get_close_matches(upper, names, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see research.indicators.indicator_names()"
        raise UnknownIndicatorError(f"unknown TA-Lib function {name!r}{hint}")
    return abstract.Function(upper)


def indicator(bars: pd.DataFrame, name: str, /, *, input_column: str | None = None, **params) -> pd.Series | pd.DataFrame:
    """Apply the TA-Lib function ``name`` to ``bars``.

    Parameters
    ----------
    bars : DataFrame
        Columns the function reads (open, high, low, close, volume); any index.
    name : str
        TA-Lib function name, any case ("RSI", "macd", "BBANDS").
    input_column : str, optional
        For single-series functions (``real`` input): the column to use, default ``close``.
    **params
        The function's parameters (e.g. ``timeperiod=14``); unknown ones are refused.

    Returns
    -------
    Series (one output, named after the function, lower case) or DataFrame (one column per
    output, e.g. macd/macdsignal/macdhist), on the bars' index; warm-up rows are NaN.

    Raises
    ------
    UnknownIndicatorError
        Unknown name (message lists close matches).
    ResearchError
        Missing input columns or unknown parameters.
    """
    fn = _function(name)
    known = set(fn.parameters)
    unknown = sorted(set(params) - known)
    if unknown:
        raise ResearchError(f"{fn.info['name']} has no parameter(s) {unknown}; its parameters are {sorted(known)}")
    specs = dict(fn.input_names)  # slot -> column name (str) or list of column names
    single = [slot for slot, spec in specs.items() if isinstance(spec, str)]
    if input_column is not None:
        if len(single) != 1:
            raise ResearchError(f"input_column applies to functions of one series; {fn.info['name']} reads {specs}")
        specs[single[0]] = input_column
        fn.input_names = specs
    needed = list(dict.fromkeys(c for spec in specs.values() for c in ([spec] if isinstance(spec, str) else spec)))
    missing = [c for c in needed if c not in bars.columns]
    if missing:
        raise ResearchError(f"{fn.info['name']} needs columns {missing}; bars have {list(bars.columns)}")
    inputs = {c: bars[c].to_numpy(dtype=np.float64) for c in needed}
    if params:
        fn.set_parameters(**params)
    result = fn.run(inputs)
    outputs = fn.output_names
    if len(outputs) == 1:
        return pd.Series(np.asarray(result), index=bars.index, name=fn.info["name"].lower())
    return pd.DataFrame({o: np.asarray(r) for o, r in zip(outputs, result)}, index=bars.index)
