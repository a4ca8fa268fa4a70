"""tickstore.export: what select returns, in Parquet/Arrow/CSV, with the pin of the read."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tickstore.cli import main
from tickstore.export import ExportError, export, read_export_pin
from tickstore.pin import Pin

SYM = "binance:BTC/USDT:USDT"


@pytest.fixture
def filled(store, clock):
    t = store["trades"]
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        ts = pd.date_range(day, periods=5, freq="3h", tz="UTC", name="ts")
        ids = np.arange(5) + 10 * int(day[-1])
        t.insert(SYM, day, pd.DataFrame({"recv_ts": ts + pd.Timedelta("1ms"), "trade_id": ids, "price": ids * 1.5,
                                         "qty": np.ones(5), "side": np.ones(5, "i1")}, index=ts), reason="r", source="s")
        clock.advance(1)
    store.snapshot("before")
    clock.advance(1)
    t.delete(SYM, "2024-01-02", reason="gone")
    return store


def test_parquet_round_trip_equals_select_with_the_pin(filled, tmp_path):
    t = filled["trades"]
    out = export(t, SYM, "2024-01-01", "2024-01-02", path=tmp_path / "d.parquet")
    assert out.files == (tmp_path / "d.parquet",)
    back = pq.read_table(tmp_path / "d.parquet").to_pandas()
    pd.testing.assert_frame_equal(back, t.select(SYM, "2024-01-01", "2024-01-02"))
    assert str(back.index.tz) == "UTC" and str(back["recv_ts"].dt.tz) == "UTC"
    pin = read_export_pin(tmp_path / "d.parquet")
    pd.testing.assert_frame_equal(filled.read_pin(pin), back)


def test_many_days_as_of_a_snapshot_make_a_hive_folder(filled, tmp_path):
    t = filled["trades"]
    out = export(t, SYM, path=tmp_path / "h", as_of="before")
    assert [f.relative_to(tmp_path / "h").as_posix() for f in out.files] == [
        "date=2024-01-01/part-0.parquet", "date=2024-01-02/part-0.parquet", "date=2024-01-03/part-0.parquet"]
    back = pq.read_table(tmp_path / "h").to_pandas()
    want = t.select(SYM, as_of="before")
    assert back["date"].astype(str).tolist() == [str(d.date()) for d in want.index]
    pd.testing.assert_frame_equal(back.drop(columns="date"), want)
    for f in out.files:  # each day file reproduces itself from its own pin
        pd.testing.assert_frame_equal(filled.read_pin(read_export_pin(f)), pq.read_table(f).to_pandas())
    whole = Pin.from_json((tmp_path / "h" / "_pin.json").read_text())
    pd.testing.assert_frame_equal(filled.read_pin(whole), want)


def test_arrow_and_csv(filled, tmp_path):
    t = filled["trades"]
    export(t, [SYM], "2024-01-03", "2024-01-04", path=tmp_path / "a.arrow", format="arrow")
    back = feather.read_table(tmp_path / "a.arrow").to_pandas()
    pd.testing.assert_frame_equal(back, t.select([SYM], "2024-01-03", "2024-01-04"))
    export(t, SYM, "2024-01-03", "2024-01-04", path=tmp_path / "c.csv", format="csv")
    text = (tmp_path / "c.csv").read_text().splitlines()
    assert text[0] == "ts,recv_ts,trade_id,price,qty,side,kind" and text[1].startswith("2024-01-03T00:00:00.000Z,2024-01-03T00:00:00.001Z,30,")
    pin = json.loads((tmp_path / "c.csv.pin.json").read_text())
    assert pin["table"] == "trades" and len(pin["files"]) == 1


def test_existing_path_and_bad_format_are_refused(filled, tmp_path):
    t = filled["trades"]
    (tmp_path / "x.parquet").write_text("mine")
    with pytest.raises(ExportError, match="exists"):
        export(t, SYM, path=tmp_path / "x.parquet")
    assert (tmp_path / "x.parquet").read_text() == "mine"
    with pytest.raises(ExportError, match="format must be one of"):
        export(t, SYM, path=tmp_path / "y", format="xlsx")
    export(t, SYM, "2024-01-01", "2024-01-02", path=tmp_path / "x.parquet", overwrite=True)
    assert len(pq.read_table(tmp_path / "x.parquet")) == 5


def test_cli_export(filled, tmp_path):
    r = CliRunner().invoke(main, ["--root", str(filled.root), "export", "trades", SYM, "--start", "2024-01-03",
                                  "-o", str(tmp_path / "e.parquet")])
    assert r.exit_code == 0, r.output
    assert "exported 5 rows of trades as parquet" in r.output
    r = CliRunner().invoke(main, ["--root", str(filled.root), "export", "trades", SYM, "-o", str(tmp_path / "e.parquet")])
    assert r.exit_code == 1 and "exists" in r.output
