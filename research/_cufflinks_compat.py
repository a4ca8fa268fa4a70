"""Make cufflinks 0.17.3 work on numpy 2, plotly >= 6 and pandas 2, without pinning them back.

cufflinks (last release 2020) breaks in three places on the current stack:

1. **numpy 2 scalar repr leaks into colour strings.** ``colors.to_rgba`` builds
   ``'rgba' + str((r, g, b, alpha))``; ``colorgen`` passes ``alpha`` as an ``np.float64``
   and numpy 2 prints it as ``np.float64(0.9)``, so plotly gets
   ``'rgba(226, 74, 51, np.float64(0.9))'`` and refuses the colour.
   Fix: a ``to_rgba`` that formats plain Python numbers, bound everywhere it was imported.
2. **plotly 6 removed ``titlefont``/``titleside`` and ``show_link``/``link_text``.** Every
   cufflinks theme puts ``titlefont`` on the axes, and its ``iplot`` passes ``show_link``
   to ``plotly.offline.iplot``. cufflinks itself still reads
   ``getLayout(...)['xaxis']['titlefont']`` internally, so the layout is left alone and
   the figure dict is rewritten where cufflinks hands it to plotly (``Figure(...)`` and
   ``plotly.offline.iplot/plot``): ``titlefont`` -> ``title.font``, ``titleside`` ->
   ``title.side``, the two offline keywords dropped.
3. **``pd.np`` is gone (pandas 2).** ``plotlytools`` uses ``pd.np.ndarray``/``pd.np.nan``;
   it gets a module-local pandas proxy that also answers ``np``. pandas itself is untouched.
4. **Bubble charts run out of colours.** ``kind="bubble"`` takes one colour per point
   from a 10-colour scale; points past the tenth get none and plotly draws them black
   (14 of 24 hours of day). The wrapped ``iplot`` gives a bubble chart as many colours as
   points (cufflinks' own ``colorgen``: the scale, then lighter variants of it).

``patch()`` is idempotent (a marker attribute on the cufflinks module) and also puts
cufflinks in offline mode in a notebook (``go_offline``: figures render locally, as its
docs start with; online mode needs a chart-studio account). It touches only cufflinks'
own module globals and ``DataFrame.iplot``/``Series.iplot``, which cufflinks defines.

``install()`` runs on ``import research``: it patches cufflinks if it is already imported,
else patches it the moment anything imports it (an import hook, so ``import research``
stays cheap: cufflinks and plotly take seconds to import), and gives ``DataFrame.iplot``
/ ``Series.iplot`` a stand-in that imports cufflinks on first use. So ``import research``
is all it takes for ``df.iplot(...)`` to work as in cufflinks' documentation, whatever is
imported after it. ``tickstore`` does not import research and does not do this.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import numbers
import sys
import types

__all__ = ["install", "patch", "to_rgba", "sanitize_figure", "bubble_colours"]

_MARKER = "_research_compat_patched"
# plotly < 6 accepted "<prefix><suffix>" as a shorthand for "<prefix>: {<suffix>: ...}"
_MOVED = {"titlefont": ("title", "font"), "titleside": ("title", "side")}
_REMOVED_OFFLINE_KWARGS = ("show_link", "link_text")


def _plain(x):
    """A Python scalar for a numpy one, so str() prints ``0.9`` not ``np.float64(0.9)``."""
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        return float(x)
    return x


def to_rgba(color, alpha):
    """cufflinks' ``colors.to_rgba`` (hex | rgb | rgba -> 'rgba(r, g, b, a)') with plain numbers."""
    from cufflinks import colors  # the original helpers it relies on

    if type(color) is tuple:
        color, alpha = color
    color = color.lower()
    if "rgba" in color:
        parts = [_plain(v) for v in _parse_tuple(color[4:])]
        if alpha:
            parts[3] = _plain(alpha)
        return "rgba" + str(tuple(parts))
    if "rgb" in color:
        r, g, b = (_plain(v) for v in _parse_tuple(color[3:]))
        return "rgba" + str((r, g, b, _plain(alpha)))
    return to_rgba(colors.hex_to_rgb(color), alpha)


def _parse_tuple(text: str) -> list:
    """'(1, 2, 3, 0.5)' -> [1, 2, 3, 0.5] without eval (cufflinks evals colour strings)."""
    inner = text.strip().strip("()")
    out = []
    for tok in inner.split(","):
        tok = tok.strip()
        if tok.startswith("np.float64(") or tok.startswith("np.int64("):
            tok = tok[tok.index("(") + 1 : -1]  # a string made by the unpatched to_rgba
        num = float(tok)
        out.append(int(num) if num.is_integer() and "." not in tok else num)
    return out


def sanitize_figure(obj):
    """Rewrite plotly<6 property names in a (nested) figure dict; other objects pass through."""
    if isinstance(obj, list):
        return [sanitize_figure(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out: dict = {}
    moved: dict = {}
    for key, value in obj.items():
        if key in _MOVED:
            parent, child = _MOVED[key]
            moved.setdefault(parent, {})[child] = sanitize_figure(value)
        else:
            out[key] = sanitize_figure(value)
    for parent, extra in moved.items():
        current = out.get(parent)
        if current is None or current == "":
            current = {}
        elif isinstance(current, str):
            current = {"text": current}
        elif not isinstance(current, dict):
            current = dict(current.to_plotly_json()) if hasattr(current, "to_plotly_json") else {}
        out[parent] = {**extra, **current}
    return out


def _figure(data=None, layout=None, frames=None, skip_invalid=False, **kwargs):
    """``go.Figure`` taking cufflinks' dicts (with plotly<6 names)."""
    import plotly.graph_objs as go

    if isinstance(data, go.Figure):
        return go.Figure(data, layout=layout, frames=frames, skip_invalid=skip_invalid, **kwargs)
    return go.Figure(
        sanitize_figure(data), layout=sanitize_figure(layout), frames=frames, skip_invalid=skip_invalid, **kwargs
    )


def _offline_call(fn):
    def call(figure_or_data, *args, **kwargs):
        for k in _REMOVED_OFFLINE_KWARGS:
            kwargs.pop(k, None)
        if isinstance(figure_or_data, dict):
            figure_or_data = sanitize_figure(figure_or_data)
        return fn(figure_or_data, *args, **kwargs)

    call.__name__ = fn.__name__
    return call


class _ModuleProxy(types.ModuleType):
    """A stand-in module: overrides a few names, forwards everything else to ``target``."""

    def __init__(self, target, **overrides):
        super().__init__(target.__name__)
        self.__dict__["_target"] = target
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(self.__dict__["_target"], name)


def bubble_colours(n: int, colors=None, colorscale=None) -> list[str]:
    """``n`` colours for ``n`` bubbles: cufflinks' scale (or ``colors``), then lighter variants."""
    from cufflinks import colors as cf_colors

    if isinstance(colors, str):
        return [colors] * n  # one colour for every bubble, as cufflinks does
    gen = cf_colors.colorgen(colors=list(colors) if colors else None, n=n, scale=colorscale)
    return [next(gen) for _ in range(n)]


def _with_bubble_colours(iplot):
    """cufflinks' ``_iplot``, giving ``kind="bubble"`` one colour per point (fix 4)."""

    def call(self, *args, **kwargs):
        kind = args[0] if args else kwargs.get("kind", "scatter")
        if kind == "bubble" and len(self) > 1:
            given = kwargs.get("colors")
            if not isinstance(given, str) and (given is None or len(given) < len(self)):
                kwargs["colors"] = bubble_colours(len(self), given, kwargs.get("colorscale"))
        return iplot(self, *args, **kwargs)

    call.__name__, call.__doc__ = iplot.__name__, iplot.__doc__
    call._research_wrapped = iplot
    return call


def patch() -> None:
    """Apply the fixes above to cufflinks (importing it; idempotent)."""
    import numpy as np
    import pandas as pd
    import plotly.graph_objs as go
    import plotly.offline as py_offline

    import cufflinks
    from cufflinks import colors, offline, plotlytools, quant_figure, tools

    if getattr(cufflinks, _MARKER, False):
        return
    colors.to_rgba = to_rgba
    plotlytools.to_rgba = to_rgba
    tools.to_rgba = to_rgba
    plotlytools.Figure = _figure
    tools.Figure = _figure
    quant_figure.go = _ModuleProxy(go, Figure=_figure)
    plotlytools.pd = _ModuleProxy(pd, np=np)
    offline.py_offline = _ModuleProxy(
        py_offline, iplot=_offline_call(py_offline.iplot), plot=_offline_call(py_offline.plot)
    )
    wrapped = _with_bubble_colours(plotlytools._iplot)
    plotlytools._iplot = wrapped
    pd.DataFrame.iplot = wrapped
    pd.Series.iplot = wrapped
    setattr(cufflinks, _MARKER, True)
    if offline.run_from_ipython() and not offline.is_offline():
        try:
            cufflinks.go_offline()
        except ImportError:  # an IPython without a notebook front end: nothing to set up
            pass


class _PatchingLoader(importlib.abc.Loader):
    """cufflinks' own loader; once the module has run, ``patch()`` it."""

    def __init__(self, inner):
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        self._inner.exec_module(module)
        patch()

    def __getattr__(self, name):  # resources, get_data, ... as the real loader
        return getattr(self._inner, name)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds ``cufflinks`` as the path finders do, with a loader that patches it."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "cufflinks":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader)
        return spec


def _lazy_iplot(self, *args, **kwargs):
    """Stand-in for cufflinks' ``iplot`` until cufflinks is imported: import (and patch) it,
    then call the real one."""
    import cufflinks  # noqa: F401 - the import hook patches it; it defines DataFrame.iplot

    patch()  # cufflinks was imported before the hook existed: patch it here
    real = type(self).iplot
    if real is _lazy_iplot:
        raise RuntimeError("cufflinks did not install DataFrame.iplot")
    return real(self, *args, **kwargs)


def install() -> None:
    """Make ``df.iplot`` work through the patched cufflinks (see the module doc); idempotent."""
    if "cufflinks" in sys.modules:
        patch()
        return
    if not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
    import pandas as pd

    for cls in (pd.DataFrame, pd.Series):
        if not hasattr(cls, "iplot"):
            cls.iplot = _lazy_iplot
