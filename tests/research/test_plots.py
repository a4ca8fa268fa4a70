"""cufflinks figures build and serialise on numpy 2 / plotly 7 / pandas 2 (through the compat layer)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.research import real
from research import _cufflinks_compat as compat
from research import plots
from research.bars import trade_bars
from research.datasets import ADA_KLINES, BINANCE_FUNDING, BYBIT_FUNDING, TARDIS_TRADES
from research.errors import ResearchError
from research.funding import Venue, apr
from research.volatility import hour_of_day_profile, hourly_table


REPO = Path(__file__).resolve().parents[2]


def _values(x) -> np.ndarray:
    """Trace data as floats; plotly >= 6 may hold numpy data as a typed-array spec {dtype, bdata}."""
    if isinstance(x, dict) and "bdata" in x:
        return np.frombuffer(base64.b64decode(x["bdata"]), dtype=np.dtype(x["dtype"])).astype(float)
    return np.asarray(x, dtype=float)


def _no_numpy_repr(fig) -> str:
    text = fig.to_json()
    assert "np.float64" not in text and "np.int64" not in text
    return text


def test_to_rgba_formats_numpy_scalars_as_plain_numbers():
    # numpy 2: str((226, 74, 51, np.float64(0.9))) == "(226, 74, 51, np.float64(0.9))"
    assert compat.to_rgba("#E24A33", np.float64(0.9)) == "rgba(226, 74, 51, 0.9)"  # E2 = 226, 4A = 74, 33 = 51
    assert compat.to_rgba("rgb(1, 2, 3)", np.float32(0.5)) == "rgba(1, 2, 3, 0.5)"
    assert compat.to_rgba("rgba(1, 2, 3, np.float64(0.25))", 0.75) == "rgba(1, 2, 3, 0.75)"
    assert compat.to_rgba(("#ffffff", 1), None) == "rgba(255, 255, 255, 1)"


def test_sanitize_moves_plotly5_names_under_title():
    fig = {"layout": {"xaxis": {"titlefont": {"color": "#000"}, "title": "x"}, "yaxis": {"titlefont": {"size": 3}}},
           "data": [{"marker": {"colorbar": {"titleside": "right"}}}]}
    out = compat.sanitize_figure(fig)
    assert out["layout"]["xaxis"] == {"title": {"text": "x", "font": {"color": "#000"}}}
    assert out["layout"]["yaxis"] == {"title": {"font": {"size": 3}}}
    assert out["data"][0]["marker"]["colorbar"] == {"title": {"side": "right"}}


def test_patch_is_idempotent_and_leaves_pandas_alone():
    import cufflinks
    from cufflinks import colors, plotlytools

    compat.patch()
    first = (colors.to_rgba, plotlytools.Figure, plotlytools.pd)
    compat.patch()
    assert (colors.to_rgba, plotlytools.Figure, plotlytools.pd) == first
    assert colors.to_rgba is compat.to_rgba and getattr(cufflinks, "_research_compat_patched")
    assert not hasattr(pd, "np")  # pd.np exists only inside cufflinks' plotlytools
    assert plotlytools.pd.np is np and plotlytools.pd.DataFrame is pd.DataFrame


def test_unpatched_cufflinks_really_fails_on_this_stack():
    """Why the layer exists: plain cufflinks 0.17.3 cannot build a line chart here."""
    code = (
        "import pandas as pd, cufflinks\n"
        "df = pd.DataFrame({'a': [1.0, 2.0]})\n"
        "try:\n    df.iplot(asFigure=True)\nexcept ValueError as e:\n    print('FAILS', 'titlefont' in str(e) or 'color' in str(e))\n"
        "else:\n    print('WORKS')\n"
    )
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "FAILS True", out.stdout + out.stderr


def test_candles_with_volume_from_real_trades(real_file):
    bars = trade_bars(real.load_tardis_trades(real_file(TARDIS_TRADES)), "5min")
    fig = plots.candles(bars, title="BTCUSDT 5 min")
    by_type = {t.type: t for t in fig.data}
    assert sorted(by_type) == ["bar", "candlestick"]  # cufflinks puts the volume trace first
    full = bars[bars["open"].notna()]
    np.testing.assert_array_equal(_values(by_type["candlestick"].open), full["open"].to_numpy())
    np.testing.assert_array_equal(_values(by_type["bar"].y), full["volume"].to_numpy())
    assert json.loads(_no_numpy_repr(fig))["layout"]["title"]["text"] == "BTCUSDT 5 min"
    with pytest.raises(ResearchError, match="every bar is empty"):
        plots.candles(bars.iloc[:0])


def test_funding_apr_lines_from_real_history(real_file):
    b = real.load_funding_history_csv(real_file(BINANCE_FUNDING), venue=Venue.BINANCE)
    y = real.load_funding_history_csv(real_file(BYBIT_FUNDING), venue=Venue.BYBIT)
    frame = pd.concat({"binance": apr(b), "bybit": apr(y)}, axis=1).loc["2023"]
    fig = plots.lines(frame, title="funding APR", y_title="APR")
    assert [t.name for t in fig.data] == ["binance", "bybit"] and all(t.type == "scatter" for t in fig.data)
    assert len(fig.data[0].x) == 3 * 365  # 2023: three settlements a day
    text = _no_numpy_repr(fig)
    assert "rgba(" in text and "+00:00" not in text  # colours built, times drawn as UTC without offset
    with pytest.raises(ResearchError, match="no numeric column"):
        plots.lines(pd.DataFrame({"a": ["x"]}))


def test_volatility_bubble_from_real_klines(real_file):
    prof = hour_of_day_profile(hourly_table(real.load_binance_klines(real_file(ADA_KLINES)), min_coverage=59 / 60))
    fig = plots.volatility_bubble(prof)
    assert len(fig.data) == 1 and fig.data[0].mode == "markers"
    assert list(fig.data[0].x) == list(range(24))
    np.testing.assert_allclose(_values(fig.data[0].y), prof["volatility"].to_numpy())
    sizes = _values(fig.data[0].marker.size)
    assert sizes.argmax() == prof["volume"].to_numpy().argmax()  # the biggest bubble is the busiest hour
    # every hour has its own colour (cufflinks coloured 10 and left 14 black)
    colours = list(fig.data[0].marker.color)
    assert len(colours) == 24 and len(set(colours)) == 24 and not any(c in (None, "black", "rgb(0, 0, 0)") for c in colours)
    assert colours == plots.hour_colours(range(24))
    # an hour keeps its colour when others are missing (uncovered hours left out)
    part = plots.volatility_bubble(prof.drop(index=[0, 5]))
    assert list(part.data[0].marker.color) == plots.hour_colours([h for h in range(24) if h not in (0, 5)])
    _no_numpy_repr(fig)


def test_plain_cufflinks_bubbles_get_a_colour_per_point():
    df = pd.DataFrame({"x": np.arange(30.0), "y": np.arange(30.0) ** 0.5, "s": np.arange(30.0) + 1})
    fig = df.iplot(kind="bubble", x="x", y="y", size="s", asFigure=True)
    colours = list(fig.data[0].marker.color)
    assert len(colours) == 30 and len(set(colours)) == 30
    one = df.iplot(kind="bubble", x="x", y="y", size="s", colors="red", asFigure=True)
    assert set(one.data[0].marker.color) == {"red"}


@pytest.mark.parametrize(
    "imports",
    [
        "import research",  # cufflinks never imported by the user: df.iplot imports it
        "import research\nimport cufflinks as cf\ncf.go_offline()",  # cufflinks' docs, after research
        "import cufflinks as cf\nimport research",  # cufflinks first
    ],
)
def test_import_research_makes_df_iplot_work_as_in_cufflinks_docs(imports):
    code = (
        f"{imports}\nimport pandas as pd, sys\n"
        "df = pd.DataFrame({'a': [1.0, 2.0, 4.0], 'b': [3.0, 1.0, 2.0]})\n"
        "fig = df.iplot(kind='scatter', title='t', xTitle='x', yTitle='y', asFigure=True)\n"
        "s = df['a'].iplot(asFigure=True)\n"
        "print(type(fig).__name__, [t.name for t in fig.data], fig.layout.xaxis.title.text, type(s).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=180, cwd=REPO)
    assert out.stdout.strip() == "Figure ['a', 'b'] x Figure", out.stdout + out.stderr


def test_import_research_stays_cheap_and_tickstore_does_not_import_it():
    def run(code: str) -> str:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
        return out.stdout.strip() + out.stderr
    assert run("import sys, research; print('cufflinks' in sys.modules, 'plotly' in sys.modules)") == "False False"
    assert run("import sys, tickstore; print(sorted(m for m in sys.modules if m.split('.')[0] in ('research', 'cufflinks')))") == "[]"
