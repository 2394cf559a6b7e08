"""The scope score abstention reads by default (handlers/scope.py, training/scope_fit.py): the
fitted distances are the textbook Mahalanobis ones, the ranks are val's, the features are the
[CLS] states the heads read, and a run stores, checks and packs its scope model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.covariance import LedoitWolf

from benchmarks.abstention import top_outputs
from handlers.cascade import Cascade
from handlers.hierarchy import HierarchyError
from handlers.run_dir import check_run_dir
from handlers.scope import SCOPE_FILE, SIGNALS, Distances, ScopeModel
from table.events import event_dicts
from table.record import split_frame
from training.scope_fit import TAXONOMY_SHRINK, fitted_distances, train_states


def _textbook(features: np.ndarray, labels: list[str], queries: np.ndarray, shrink: float | None) -> np.ndarray:
    """Minus the smallest squared distance to a label's mean under the shrunk within-label covariance."""
    names = sorted(set(labels))
    means = np.stack([features[np.array(labels) == c].mean(axis=0) for c in names])
    centred = features - means[[names.index(label) for label in labels]]
    if shrink is None:
        cov = LedoitWolf(assume_centered=True).fit(centred).covariance_
    else:
        cov = centred.T @ centred / len(features)
        cov = cov + shrink * np.trace(cov) / len(cov) * np.eye(len(cov))
    precision = np.linalg.inv(cov)
    return -np.array([min((q - m) @ precision @ (q - m) for m in means) for q in queries])


@pytest.mark.parametrize("shrink", [TAXONOMY_SHRINK, None])
def test_the_fitted_distances_are_mahalanobis_to_the_nearest_centroid(shrink: float | None) -> None:
    rng = np.random.default_rng(0)
    labels = [str(i % 4) for i in range(120)]
    features = rng.normal(size=(120, 6)) * [1, 2, 3, 0.5, 1, 4] + np.array([[2.0 * int(l)] * 6 for l in labels])
    queries = rng.normal(size=(15, 6)) * 3 + 2
    got = fitted_distances(features, labels, shrink).score(torch.from_numpy(queries).float()).numpy()
    assert np.allclose(got, _textbook(features, labels, queries.astype(np.float32).astype(np.float64), shrink),
                       rtol=1e-6, atol=1e-6)


def test_the_scope_score_is_the_mean_of_the_signals_ranks_among_vals() -> None:
    identity = Distances(torch.eye(2), torch.zeros((1, 2)))  # score: minus the squared norm
    model = ScopeModel(identity, {"a": identity},
                       val={"path_score": torch.tensor([0.4, 0.1, 0.3, 0.2]),
                            "taxonomy": torch.tensor([-4.0, -3.0, -2.0, -1.0]),
                            "subtaxonomy": torch.tensor([-1.0, -1.0, -9.0, -5.0])})
    signals = model.signals([0.25, 0.9], torch.tensor([[1.0, 1.0], [3.0, 0.0]]), torch.tensor([[0.0, 0.0], [2.0, 0.0]]),
                            ["a", "unknown"])
    assert signals["taxonomy"].tolist() == [-2.0, -9.0] and signals["subtaxonomy"].tolist() == [0.0, float("-inf")]
    # 0.25 is above 2 of 4 val path scores, -2 at or above 3 of 4, 0 above all 4; then 4, 0, 0 of 4.
    assert torch.allclose(model.scores(signals), torch.tensor([(0.5 + 0.75 + 1) / 3, (1 + 0 + 0) / 3],
                                                              dtype=torch.float64))
    # A val answer served again, a few roundings lower, still ranks with its own val entry.
    again = {"path_score": torch.tensor([0.3 - 1e-7]), "taxonomy": torch.tensor([-2.0 - 1e-6]),
             "subtaxonomy": torch.tensor([-5.0 - 1e-6])}
    assert torch.allclose(model.scores(again), torch.tensor([(0.75 + 0.75 + 0.5) / 3], dtype=torch.float64))
    with pytest.raises(ValueError, match="no val signals"):
        ScopeModel(identity, {}).scores(signals)


def test_the_scope_model_round_trips_through_its_file(tmp_path: Path) -> None:
    rng = torch.Generator().manual_seed(0)
    names = ["música / en vivo", "a.b", ""]
    model = ScopeModel(Distances(torch.randn((4, 4), generator=rng), torch.randn((3, 4), generator=rng)),
                       {name: Distances(torch.randn((4, 4), generator=rng), torch.randn((j + 1, 4), generator=rng))
                        for j, name in enumerate(names)},
                       val={name: torch.randn(7, generator=rng) for name in ("path_score", "taxonomy", "subtaxonomy")})
    model.save(tmp_path)
    again = ScopeModel.load(tmp_path)
    assert list(again.subtaxonomies) == names
    queries = torch.randn((5, 4), generator=rng)
    signals = model.signals([0.5] * 5, queries, queries, names + names[:2])
    assert torch.equal(again.scores(again.signals([0.5] * 5, queries, queries, names + names[:2])),
                       model.scores(signals))


def test_the_states_read_are_the_ones_the_heads_read(tiny_run: Path) -> None:
    cascade = Cascade(tiny_run, precision="fp32", max_batch=4)  # several chunks, rows reordered by length
    frame = split_frame(tiny_run).query("split == 'train'").iloc[:30]
    tax, sub = train_states(cascade, frame, batch=8)
    inputs = cascade.encode(event_dicts(frame))
    hooked = top_outputs(cascade, cascade.hierarchy.taxonomy, inputs)  # forward hooks on the head
    assert np.allclose(tax, hooked.cls, atol=1e-5)
    single = 0
    for i, taxonomy in enumerate(frame.taxonomy):
        level = cascade.hierarchy.subtaxonomies[taxonomy]
        if level.checkpoint is None:  # one leaf, no model: the taxonomy top's state stands in
            single += 1
            assert np.allclose(sub[i], tax[i])
        else:
            assert np.allclose(sub[i], top_outputs(cascade, level, inputs.take([i])).cls[0], atol=1e-5)
    assert 0 < single < len(frame)


def test_served_scope_scores_follow_from_the_stored_model(tiny_run: Path) -> None:
    """Each answer's scope_score recomputed by hand from the hooked states of its own path's tops."""
    cascade = Cascade(tiny_run, precision="fp32")
    scope = ScopeModel.load(tiny_run / "scope")
    events = event_dicts(split_frame(tiny_run).query("split == 'test'"))
    answers = cascade.predict(events)
    inputs = cascade.encode(events)
    tax = torch.from_numpy(top_outputs(cascade, cascade.hierarchy.taxonomy, inputs).cls)
    own = tax.clone()
    for i, answer in enumerate(answers):
        level = cascade.hierarchy.subtaxonomies[answer["path"][0]]
        if level.checkpoint is not None:
            own[i] = torch.from_numpy(top_outputs(cascade, level, inputs.take([i])).cls[0])
    signals = scope.signals([a["path_score"] for a in answers], tax, own, [a["path"][0] for a in answers])
    expected = scope.scores(signals)
    assert np.allclose([a["scope_score"] for a in answers], expected.numpy(), atol=2e-6)
    assert len({a["scope_score"] for a in answers}) > len(answers) // 2  # not one value for all
    rule = cascade.hierarchy.abstention.min_score
    assert [a["abstain"] for a in answers] == [a["scope_score"] < rule for a in answers]


def test_a_run_without_its_scope_model_is_refused_by_name(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "scope" / SCOPE_FILE).unlink()
    with pytest.raises(HierarchyError, match="scope model: .*scope.safetensors not found"):
        check_run_dir(run)
    (run / "scope" / SCOPE_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(HierarchyError, match="scope model: .*not readable"):
        check_run_dir(run)
    narrow = Distances(torch.eye(5), torch.zeros((2, 5)))  # fitted on other models' states
    ScopeModel(narrow, {"music": narrow}, val={name: torch.zeros(3) for name in SIGNALS}).save(run / "scope")
    width = json.loads((run / "taxonomy" / "config.json").read_text())["dim"]
    with pytest.raises(HierarchyError, match=rf"measures states \[5\] wide, but the run's models are {width} wide"):
        check_run_dir(run)
    data = json.loads((run / "hierarchy.json").read_text())
    data["abstention"]["folder"] = "../elsewhere"
    (run / "hierarchy.json").write_text(json.dumps(data))
    with pytest.raises(HierarchyError, match="contains '..'"):
        check_run_dir(run)


def test_training_on_path_score_keeps_no_scope_model(tiny_base: Path, events_csv: Path, tmp_path: Path) -> None:
    from tests.conftest import TINY_RUN_FLAGS
    from training.train import main

    out = tmp_path / "plain"
    assert main(["--data", str(events_csv), "--output", str(out), "--base-model", str(tiny_base), *TINY_RUN_FLAGS,
                 "--abstain-score", "path_score"]) == 0
    rule = json.loads((out / "hierarchy.json").read_text())["abstention"]
    assert rule["score"] == "path_score" and "folder" not in rule and not (out / "scope").exists()
    answers = Cascade(out).predict([{"text": "saxophone swing trio"}])
    assert "scope_score" not in answers[0] and answers[0]["abstain"] == (answers[0]["path_score"] < rule["min_score"])
