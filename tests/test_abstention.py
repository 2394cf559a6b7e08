"""Abstention: the threshold chosen on val, the rule recorded in hierarchy.json, the per-request
override with its 400s, and the rule applied alike by evaluation, batch prediction and the handler."""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from handlers.abstention import Abstention, choose_min_score, mark
from handlers.cascade import Cascade
from handlers.hierarchy import Hierarchy, HierarchyError
from handlers.run_layout import HIERARCHY_FILE
from tests.test_handler import emitted, handler_with, run
from table.scoring import evaluate_frame
from table.record import split_frame


def test_the_threshold_keeps_the_target_share_of_a_hand_made_val() -> None:
    scores = [0.9, 0.1, 0.5, 0.3, 1.0, 0.2, 0.7, 0.4, 0.8, 0.6]
    assert choose_min_score(scores, 0.8) == 0.3  # 0.1 and 0.2 abstain: 8 of 10 kept
    assert choose_min_score(scores, 0.85) == 0.2  # one may go: 0.1
    assert choose_min_score(scores, 0.95) == 0.1  # none may go: the lowest score, which is kept
    hundred = [i / 100 for i in range(1, 101)]
    assert choose_min_score(hundred, 0.97) == 0.04  # 0.01, 0.02, 0.03 abstain
    assert choose_min_score(hundred, None) == choose_min_score(hundred, 1.0) == choose_min_score([], 0.9) == 0.0


def test_the_kept_share_of_val_is_never_below_the_target() -> None:
    rng = random.Random(7)
    for _ in range(200):
        scores = [round(rng.random(), 2) for _ in range(rng.randint(1, 60))]  # ties included
        coverage = rng.choice([0.5, 0.9, 0.95, 0.97, 0.99])
        threshold = choose_min_score(scores, coverage)
        kept = sum(s >= threshold for s in scores)
        assert kept >= coverage * len(scores) - 1e-9
        assert threshold == max(s for s in scores if sum(x >= s for x in scores) >= coverage * len(scores) - 1e-9)


def test_the_training_flag_takes_a_coverage_or_off(capsys) -> None:
    from training.options import parse_args

    base = ["--data", "x.csv", "--output", "run"]
    assert parse_args(base).abstain_coverage == 0.99 and parse_args(base).abstain_score == "scope"
    assert parse_args(base + ["--abstain-score", "path_score"]).abstain_score == "path_score"
    assert parse_args(base + ["--abstain-coverage", "0.99"]).abstain_coverage == 0.99
    assert parse_args(base + ["--abstain-coverage", "off"]).abstain_coverage is None
    for bad in ("0", "1.2", "most", "nan"):
        with pytest.raises(SystemExit):
            parse_args(base + ["--abstain-coverage", bad])
        assert f"must be a number above 0 and at most 1, or off, not '{bad}'" in capsys.readouterr().err


def test_mark_applies_the_rule_or_the_callers_min_score() -> None:
    answers = [{"path_score": 0.2}, {"path_score": 0.6}, {"score": 0.4}]
    assert [a["abstain"] for a in mark(answers, Abstention(0.5, 0.97))] == [True, False, True]
    assert [a["abstain"] for a in mark(answers, Abstention(0.5), 0.0)] == [False, False, False]
    assert [a["abstain"] for a in mark(answers, Abstention(), [None, 0.7, 0.3])] == [False, True, False]
    assert not any(a["abstain"] for a in mark(answers, Abstention()))  # no rule: never


def test_training_chose_the_rule_on_val_and_recorded_it(tiny_run: Path) -> None:
    rule = Hierarchy.load(tiny_run).abstention
    assert rule.coverage == 0.99 and rule.min_score > 0 and (rule.score, rule.folder) == ("scope", "scope")
    cascade = Cascade(tiny_run)
    val = split_frame(tiny_run).query("split == 'val'")
    answers = evaluate_frame(cascade, val).answers
    assert rule.min_score == choose_min_score([a["scope_score"] for a in answers], 0.99)
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["abstention"]["min_score"] == rule.min_score and metrics["abstention"]["score"] == "scope"
    kept = metrics["splits"]["val"]["abstention"]
    assert kept["coverage"] >= 0.99 and kept["abstained"] == sum(a["abstain"] for a in answers)
    assert "abstention_coverage.png" in (tiny_run / "report.md").read_text()
    points = {p["coverage"]: p for p in metrics["abstention"]["operating_points"]}
    values = [a["scope_score"] for a in answers]
    for coverage, point in points.items():  # other thresholds, chosen the same way
        assert point["min_score"] == choose_min_score(values, coverage)
        kept = [v >= point["min_score"] for v in values]
        right = [tuple(a["path"]) == t for a, t in zip(answers, zip(val.taxonomy, val.subtaxonomy))]
        assert point["val_accuracy_abstain_wrong"] == sum(k and r for k, r in zip(kept, right)) / len(val)
    assert points[0.99]["min_score"] == rule.min_score and points[0.9]["min_score"] >= rule.min_score
    assert f"| 0.9 | {points[0.9]['min_score']:.6f} |" in (tiny_run / "report.md").read_text()


def test_the_rule_round_trips_and_older_runs_never_abstain(tiny_run: Path, tmp_path: Path) -> None:
    hierarchy = Hierarchy.load(tiny_run)
    hierarchy.save(tmp_path)
    assert Hierarchy.load(tmp_path) == hierarchy
    data = json.loads((tiny_run / HIERARCHY_FILE).read_text())
    assert data["abstention"] == {"score": "scope", "min_score": hierarchy.abstention.min_score,
                                  "coverage": 0.99, "folder": "scope"}
    older = {k: v for k, v in data.items() if k != "abstention"}
    assert Hierarchy.from_json(older).abstention == Abstention()
    assert "abstention" not in Hierarchy.from_json(older).to_json()
    with pytest.raises(HierarchyError, match="min_score 2.0 must be from 0 to 1"):
        Hierarchy.from_json({**data, "abstention": {"min_score": 2}})


def test_every_answer_says_whether_it_abstains_and_keeps_its_paths(tiny_run: Path) -> None:
    cascade = Cascade(tiny_run)
    events = [{"text": "saxophone swing trio"}, {"text": "marathon runners"}]
    for answer in cascade.predict(events, top_k=2, min_score=1.0):
        assert answer["abstain"] is True and len(answer["top_k"]) == 2 and answer["path"]
    assert [a["abstain"] for a in cascade.predict(events, min_score=0.0)] == [False, False]
    rule = cascade.hierarchy.abstention.min_score
    assert [a["abstain"] for a in cascade.predict(events)] == [a["scope_score"] < rule for a in cascade.predict(events)]


def test_the_handler_takes_min_score_per_event_and_refuses_bad_ones(tiny_run: Path, caplog) -> None:
    handler = handler_with(tiny_run)
    bodies = [{"text": "saxophone", "min_score": 1}, [{"text": "marathon", "min_score": 0},
                                                      {"text": "dj club", "min_score": 0.99999}],
              {"text": "dj", "min_score": 1.5}, {"text": "dj", "min_score": "high"}, [{"text": "a", "min_score": None},
                                                                                         {"text": "b", "min_score": -0.1}],
              {"text": "dj", "min_score": True}]
    with caplog.at_level(logging.INFO):
        answers, codes, _ = run(handler, tiny_run, bodies)
    assert codes == [200, 200, 400, 400, 400, 400]
    assert answers[0]["abstain"] is True and [a["abstain"] for a in answers[1]] == [False, True]
    assert answers[2]["message"] == "'min_score' must be a number from 0 to 1, got 1.5"
    assert answers[3]["message"] == "'min_score' must be a number from 0 to 1, got \"high\""
    assert answers[4]["message"] == "item 1: 'min_score' must be a number from 0 to 1, got -0.1"
    assert "got true" in answers[5]["message"]
    abstained = {dims["Taxonomy"]: value for name, value, dims in emitted(caplog.records)
                 if name == "AbstentionsPerTaxonomy"}
    expected = Counter(a["taxonomy"]["label"] for a in [answers[0], *answers[1]] if a["abstain"])
    assert abstained == expected and sum(expected.values()) == 2


def test_batch_prediction_writes_the_abstain_column(tiny_run: Path, events_csv: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(events_csv, dtype=str, keep_default_na=False).head(12)
    frame.to_csv(tmp_path / "in.csv", index=False)
    script = [sys.executable, "-m", "serving.predict_batch", str(tmp_path / "in.csv")]
    rule = Hierarchy.load(tiny_run).abstention.min_score
    for out, extra in (("rule.csv", []), ("all.csv", ["--min-score", "1"])):
        done = subprocess.run(script + [str(tmp_path / out), "--run", str(tiny_run), "--quiet", *extra],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    by_rule = pd.read_csv(tmp_path / "rule.csv")
    assert by_rule.abstain.tolist() == (by_rule.path_score < rule).tolist()
    assert pd.read_csv(tmp_path / "all.csv").abstain.all()
    bad = subprocess.run(script + [str(tmp_path / "x.csv"), "--run", str(tiny_run), "--min-score", "2"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "must be a number from 0 to 1, not '2'" in bad.stderr
