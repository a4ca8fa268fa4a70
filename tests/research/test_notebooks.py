"""The research notebooks run top to bottom on the real data (nbclient, fresh kernel each),
and every figure they draw is saved twice: as plotly JSON (JupyterLab draws it) and as an
HTML rendering, so a notebook exported to HTML (``jupyter nbconvert --to html``: it copies
``text/html`` outputs, it cannot draw plotly's JSON) or viewed anywhere keeps its charts."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from research.datasets import ADA_KLINES, HL_BOOK, HL_FUNDING, TARDIS_TRADES, USDM_2024

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = {
    "02_bars_and_volatility": (TARDIS_TRADES, ADA_KLINES),
    "03_funding_and_basis": (HL_FUNDING, USDM_2024),
    "04_order_book": (USDM_2024, HL_BOOK),
    "05_volatility_by_hour": (),  # generated bars: no shared data needed
}
PLOTLY_JSON = "application/vnd.plotly.v1+json"


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_executes_with_html_renderings_of_its_figures(name, real_file):
    for rel in NOTEBOOKS[name]:
        real_file(rel)  # skip (or fail under CI) when the data is absent
    nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "notebooks are stored without outputs"
    # run from the repo root so the kernel imports this checkout's research/tickstore
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    figures = [o for o in outputs if PLOTLY_JSON in o.get("data", {})]
    assert len(figures) >= 2, "every notebook draws its figures"
    for fig in figures:
        html = fig["data"].get("text/html", "")
        spec = fig["data"][PLOTLY_JSON]
        # the HTML draws the same figure: its div and a Plotly.newPlot call with the traces
        assert "Plotly.newPlot" in html and '<div id="' in html
        first_trace = spec["data"][0]
        assert json.dumps(first_trace.get("type", "scatter")) in html
    # plotly.js itself travels in the notebook (once), so the HTML renders offline
    bundles = [o for o in outputs if "text/html" in o.get("data", {}) and "plotly.js v" in o["data"]["text/html"] and PLOTLY_JSON not in o["data"]]
    assert len(bundles) == 1
    first_fig = outputs.index(figures[0])
    assert outputs.index(bundles[0]) < first_fig, "plotly.js is loaded before the first figure"
