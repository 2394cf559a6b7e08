"""Backbone comparison on two tiny bases."""

from __future__ import annotations

import json
from pathlib import Path

from tests.tiny import make_tiny_base
from training.compare import main


def test_compare_trains_each_base_on_the_same_split(tiny_base: Path, events_csv: Path, tmp_path: Path) -> None:
    other = make_tiny_base(tmp_path / "other-base", seed=1)
    out = tmp_path / "compare"
    code = main(["--data", str(events_csv), "--base-models", f"{tiny_base},{other}", "--output", str(out), "--",
                 "--epochs", "2", "--quiet", "--max-length", "16"])
    assert code == 0
    rows = json.loads((out / "comparison.json").read_text())
    assert [r["base"] for r in rows] == ["tiny-distilbert", "other-base"]
    assert all(r["events_per_s"] > 0 and 0 <= r["leaf_acc"] <= 100 for r in rows)
    splits = [json.loads((out / r["base"] / "training.json").read_text())["split"]["counts"] for r in rows]
    assert splits[0] == splits[1]
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert "| tiny-distilbert |" in (out / "comparison.md").read_text()
