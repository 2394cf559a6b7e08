"""Batch prediction over a table, in-process and through the server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.live_server import SESSION, register

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = [sys.executable, "-m", "serving.predict_batch"]


def test_in_process_keeps_columns_and_adds_predictions(tiny_run: Path, events_csv: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(events_csv, dtype=str, keep_default_na=False).head(20)
    frame.loc[3, ["title", "description"]] = ""
    frame.to_parquet(tmp_path / "in.parquet")
    result = subprocess.run(SCRIPT + [str(tmp_path / "in.parquet"), str(tmp_path / "out.jsonl"), "--run", str(tiny_run),
                                      "--batch-size", "6", "--top-k", "2", "--quiet"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = pd.read_json(tmp_path / "out.jsonl", lines=True, dtype=False)
    assert list(out.columns[: len(frame.columns)]) == list(frame.columns) and len(out) == 20
    assert out.loc[3, "error"] == "no title or description" and out.loc[3, "taxonomy_pred"] == ""
    good = out.drop(index=3)
    assert (good.error == "").all() and good.taxonomy_pred.isin(["music", "nightlife", "sports"]).all()
    assert all(len(json.loads(k)) == 2 for k in good.top_k)
    assert (good.taxonomy_pred == good.taxonomy).mean() >= 0.8


def test_missing_text_columns_are_reported(tiny_run: Path, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("name,kind\na,b\n")
    result = subprocess.run(SCRIPT + [str(tmp_path / "in.csv"), str(tmp_path / "o.csv"), "--run", str(tiny_run)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "neither 'title' nor 'description'" in result.stderr
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.e2e
def test_through_the_server_matches_in_process(server, tiny_run: Path, events_csv: Path, tmp_path: Path) -> None:
    code, body = register(server, "events.mar")
    assert code == 200, body
    args = [str(events_csv), "--batch-size", "16", "--quiet", "--top-k", "1"]
    local = subprocess.run(SCRIPT + [args[0], str(tmp_path / "a.csv"), "--run", str(tiny_run), *args[1:]])
    remote = subprocess.run(SCRIPT + [args[0], str(tmp_path / "b.csv"), "--server", "events", *args[1:]],
                            env=SESSION())  # the test server's TS_CONFIG and SERVE_DIR
    assert local.returncode == 0 and remote.returncode == 0
    a = pd.read_csv(tmp_path / "a.csv", dtype=str, keep_default_na=False)
    b = pd.read_csv(tmp_path / "b.csv", dtype=str, keep_default_na=False)
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    scores = ["taxonomy_score", "subtaxonomy_score", "path_score"]
    for column in a.columns:  # every column: the input's, labels, scores, top-k paths, errors
        if column in scores:
            assert b[column].astype(float).tolist() == pytest.approx(a[column].astype(float).tolist(), abs=1e-4)
        elif column == "top_k":
            for x, y in zip(a.top_k, b.top_k):
                x, y = json.loads(x), json.loads(y)
                assert [(k["taxonomy"], k["subtaxonomy"]) for k in x] == [(k["taxonomy"], k["subtaxonomy"]) for k in y]
                assert [k["score"] for k in y] == pytest.approx([k["score"] for k in x], abs=1e-4)
        else:
            assert a[column].tolist() == b[column].tolist(), column
