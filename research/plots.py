"""Figures with cufflinks/plotly: candles with volume, funding and basis lines, the
hour x volatility x volume bubble chart.

Every function returns a ``plotly.graph_objects.Figure`` (cufflinks ``asFigure=True``), so
it can be shown (``fig.show()``), saved or serialised (``fig.to_json()``). cufflinks is
patched for numpy 2 / plotly >= 6 / pandas 2 (``_cufflinks_compat``; ``import research``
already arranges it, so plain ``df.iplot(...)`` works too).

In a notebook, ``notebook_mode()`` makes every figure output carry an HTML rendering next
to plotly's JSON: JupyterLab draws the JSON, and ``jupyter nbconvert --to html`` (or any
viewer without the plotly extension) keeps the chart from the HTML. By default plotly.js
is embedded once per notebook (~4.6 MB, works offline); ``connected=True`` loads it from
plotly's CDN instead (small files, needs the internet to view).

Time axes are drawn in UTC with the offset dropped: plotly.js does not parse "+00:00"
suffixes, and every frame in the store is UTC anyway.
"""

from __future__ import annotations

import contextlib
import warnings

import cufflinks as cf
import pandas as pd
import plotly.graph_objects as go

from . import _cufflinks_compat
from ._frames import require_columns
from .errors import ResearchError

__all__ = ["notebook_mode", "candles", "lines", "volatility_bubble", "hour_colours"]

_cufflinks_compat.patch()


def notebook_mode(*, connected: bool = False) -> str:
    """Render figures as plotly JSON **and** HTML in this notebook; returns the renderer set.

    Parameters
    ----------
    connected : bool
        Load plotly.js from the CDN (True) instead of embedding it (default).
    """
    import plotly.io as pio

    name = "plotly_mimetype+notebook_connected" if connected else "plotly_mimetype+notebook"
    pio.renderers.default = name
    return name


def hour_colours(hours) -> list[str]:
    """One colour per hour of day (0-23) on a cyclic scale: 23:00 sits next to 00:00, and an
    hour keeps its colour whichever hours a chart shows."""
    from plotly.colors import cyclical, sample_colorscale

    return sample_colorscale(cyclical.Twilight, [int(h) % 24 / 24 for h in hours])


@contextlib.contextmanager
def _quiet_cufflinks():
    # cufflinks calls Index.format() and positional Series[int]; pandas 2 warns (FutureWarning)
    # on every figure. The calls still work on pandas 2; the warnings are cufflinks' to fix.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"cufflinks\..*")
        yield


def _naive_utc(frame: pd.DataFrame) -> pd.DataFrame:
    if isinstance(frame.index, pd.DatetimeIndex) and frame.index.tz is not None:
        frame = frame.copy()
        frame.index = frame.index.tz_convert("UTC").tz_localize(None)
    return frame


def candles(bars: pd.DataFrame, *, title: str = "", volume: bool = True) -> go.Figure:
    """Candlestick chart of OHLC bars, with a volume panel below.

    Parameters
    ----------
    bars : DataFrame
        open/high/low/close (+ volume) bars, e.g. ``trade_bars`` output. Empty bars (NaN
        open) are left out, so gaps show as gaps on the time axis.
    title : str
    volume : bool
        Add the volume panel (needs a ``volume`` column).

    Returns
    -------
    plotly Figure

    Raises
    ------
    ResearchError
        Missing columns or no non-empty bar.
    """
    cols = ["open", "high", "low", "close"] + (["volume"] if volume else [])
    require_columns(bars, cols, what="candles")
    data = _naive_utc(bars.loc[bars["open"].notna(), cols])
    if data.empty:
        raise ResearchError("candles: every bar is empty (no open price)")
    with _quiet_cufflinks():
        qf = cf.QuantFig(data, title=title, legend="top", name="price")
        if volume:
            qf.add_volume()
        return qf.iplot(asFigure=True)


def lines(frame: pd.DataFrame | pd.Series, *, title: str = "", y_title: str = "", secondary_y: list[str] | None = None) -> go.Figure:
    """One line per column (funding APRs, carry, basis, spreads...).

    Parameters
    ----------
    frame : DataFrame | Series
        Numeric columns on a time (or any) index.
    title, y_title : str
    secondary_y : list of str, optional
        Columns drawn against a right-hand axis.

    Returns
    -------
    plotly Figure

    Raises
    ------
    ResearchError
        No numeric column.
    """
    df = frame.to_frame() if isinstance(frame, pd.Series) else frame
    df = _naive_utc(df.select_dtypes("number"))
    if df.shape[1] == 0:
        raise ResearchError(f"lines: no numeric column among {list(frame.columns) if hasattr(frame, 'columns') else frame.name}")
    kw = {"secondary_y": secondary_y} if secondary_y else {}
    with _quiet_cufflinks():
        return df.iplot(kind="scatter", mode="lines", title=title, yTitle=y_title, asFigure=True, **kw)


def volatility_bubble(profile: pd.DataFrame, *, title: str = "Volatility by hour of day (UTC)") -> go.Figure:
    """Bubble chart: x = hour of day, y = annualised volatility, bubble size = volume.

    Parameters
    ----------
    profile : DataFrame
        ``volatility.hour_of_day_profile`` output (index ``hour``; ``volatility``, ``volume``).

    Returns
    -------
    plotly Figure
        One bubble per hour, each in its hour's colour (``hour_colours``).
    """
    require_columns(profile, ("volatility", "volume"), what="volatility_bubble")
    df = profile.reset_index()
    require_columns(df, ("hour",), what="volatility_bubble")
    df = df[["hour", "volatility", "volume"]].astype(float)
    if df.empty:
        raise ResearchError("volatility_bubble: the profile has no hour (no covered hour in the data?)")
    df["label"] = [f"{int(h):02d}:00 UTC" for h in df["hour"]]
    with _quiet_cufflinks():
        return df.iplot(
            kind="bubble", x="hour", y="volatility", size="volume", text="label", colors=hour_colours(df["hour"]),
            title=title, xTitle="hour of day (UTC)", yTitle="annualised volatility", asFigure=True,
        )
