"""Execute notebooks/01_tickstore_tour.ipynb in a real python3 kernel (nbclient)."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "01_tickstore_tour.ipynb"


def _text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "".join(parts)


def test_tour_notebook_runs_on_real_trades(data_dir, monkeypatch):
    monkeypatch.setenv("TICKSTORE_DATA", str(data_dir))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    assert all(c.get("execution_count") for c in code)

    tagged = [c for c in code if "row-count" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert "rows: 9999" in _text(tagged[0])

    text = "\n".join(_text(c) for c in code)
    assert "rows now: 0" in text  # after the delete
    assert "read_pin rows: 9999" in text
    summary = next(_text(c) for c in code if "price_sum" in _text(c)).splitlines()[2:]
    table = {line[:17].strip(): line[17:].split() for line in summary}
    assert list(table) == ["after backfill", "snapshot", "after correction", "after delete", "latest"]
    assert [int(v[0]) for v in table.values()] == [9999, 9999, 9999, 0, 0]
    assert table["snapshot"][1] == table["after backfill"][1]
    assert float(table["after correction"][1]) - float(table["after backfill"][1]) == pytest.approx(50.0)
    removed = next(line for line in text.splitlines() if line.startswith("removed "))
    assert not Path(removed.split(" ", 1)[1]).exists()  # the notebook leaves nothing behind
