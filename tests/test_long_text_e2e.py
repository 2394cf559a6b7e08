"""The long path end to end: a run on long descriptions chooses windows and a lexical mix,
and the served answers equal evaluate's, with windows and with head+tail.

Each description here is longer than max_length: half carry their class words at the end
(the tail window reads them), half in the middle (two windows of 32 tokens read head and
tail, not the middle; only the lexical model, which reads every word, does). So the
defaults must choose ``windows`` and a lexical weight above 0, and the run must still
classify the val rows well.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from handlers.hierarchy import Hierarchy
from tests.live_server import register
from tests.tiny import COMMON, tiny_events, write_csv

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


def long_events(seed: int = 1) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i, row in enumerate(tiny_events(rows_per_class=16, seed=seed)):
        filler = [rng.choice(COMMON) for _ in range(40)]
        cut = 40 if i % 2 else 20  # class words last, or in the middle
        words = filler[:cut] + row["description"].split() + filler[cut:]
        rows.append({**row, "title": "", "description": " ".join(words)})
    return rows


def train_long(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, *flags: str) -> tuple[Path, Path]:
    from training.train import main

    base = tmp_path_factory.mktemp("long")
    data = write_csv(base / "long.csv", long_events())
    out = base / "run"
    code = main(["--data", str(data), "--output", str(out), "--base-model", str(tiny_base), "--epochs", "6",
                 "--patience", "3", "--path-warmup-epochs", "0", "--learning-rate", "1e-2", "--batch-size", "8",
                 "--max-length", "32", "--quiet", "--threads", "2", *flags])
    assert code == 0
    return out, data


@pytest.fixture(scope="module")
def long_run(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> tuple[Path, Path]:
    return train_long(tmp_path_factory, tiny_base)


@pytest.fixture(scope="module")
def head_tail_run(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> tuple[Path, Path]:
    return train_long(tmp_path_factory, tiny_base, "--truncation", "head_tail")


def test_the_defaults_choose_windows_and_a_lexical_mix(long_run) -> None:
    run, _ = long_run
    hierarchy = Hierarchy.load(run)
    assert (hierarchy.text.truncation, hierarchy.text.max_windows) == ("windows", 2)
    assert hierarchy.taxonomy.lexical == "lexical/taxonomy" and hierarchy.taxonomy.lexical_weight > 0
    assert (run / "lexical" / "taxonomy" / "lexical.safetensors").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["long_text"]["truncation"].startswith("windows (auto")
    # Long texts: --top-layers auto trains one layer per top over a trunk of the other.
    assert metrics["long_text"]["top_layers"] == "1 (auto: long texts -> 1)" and hierarchy.trunk.layers == 1
    assert "Reading: truncation windows (auto" in (run / "report.md").read_text()
    scores = metrics["long_text"]["lexical"]["taxonomy"]["val_accuracy_by_weight"]
    weight = hierarchy.taxonomy.lexical_weight
    assert scores[str(weight)] == max(scores.values()) and scores[str(weight)] > scores["0.0"]
    assert metrics["splits"]["val"]["taxonomy"]["accuracy"] >= 0.9


def test_windows_read_head_and_tail_as_two_passes(long_run) -> None:
    from handlers.cascade import Cascade

    run, _ = long_run
    # Every description here is over 32 tokens: each is read as two windows.
    inputs = Cascade(run).encode([{"description": e["description"]} for e in long_events(seed=2)[:8]])
    assert all(inputs.owner.count(i) == 2 for i in range(8))


def test_head_tail_is_recorded_when_given(head_tail_run) -> None:
    run, _ = head_tail_run
    hierarchy = Hierarchy.load(run)
    assert hierarchy.text.truncation == "head_tail"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["long_text"]["truncation"].startswith("head_tail (given)")
    assert metrics["long_text"]["top_layers"] == "1 (auto: long texts -> 1)"  # the texts are long, however read
    assert metrics["splits"]["val"]["taxonomy"]["accuracy"] >= 0.9


@pytest.mark.parametrize("which", ["long_run", "head_tail_run"])
def test_served_long_events_equal_evaluate(which: str, request: pytest.FixtureRequest, server, tmp_path: Path) -> None:
    from handlers.cascade import Cascade
    from table.scoring import evaluate_frame
    from table.record import split_frame

    run, _ = request.getfixturevalue(which)
    store = server.model_store
    built = subprocess.run([sys.executable, "-m", "archives.build", "--run", str(run), "--name", "long",
                            "--model-store", str(store), "--threads", "1", "--force"],
                           capture_output=True, text=True, cwd=ROOT)
    assert built.returncode == 0, built.stderr
    register(server, "long.mar")
    try:
        rows = split_frame(run)
        rows = rows[rows.split == "val"]
        offline = evaluate_frame(Cascade(run), rows).answers
        events = [{"description": d} for d in rows.description]
        code, body = server.call("inference", "POST", "/predictions/long",
                                 json.dumps([{**e, "top_k": 1} for e in events]).encode(),
                                 {"Content-Type": "application/json"})
        assert code == 200, body
        served = json.loads(body)
        assert [a["path"] for a in served] == [a["path"] for a in offline]
        for s, o in zip(served, offline):
            assert s["path_score"] == pytest.approx(o["path_score"], abs=1e-4)
        # A 600-word event is answered in one request, reading its end.
        long_one = " ".join(["the"] * 600 + ["saxophone", "swing", "trio", "bebop"])
        code, body = server.call("inference", "POST", "/predictions/long", json.dumps({"description": long_one}).encode(),
                                 {"Content-Type": "application/json"})
        assert code == 200 and json.loads(body)["path"] == ["music", "jazz"]
    finally:
        server.call("management", "DELETE", "/models/long")
