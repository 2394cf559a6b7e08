"""The out-of-scope scores of benchmarks/abstention.py: the logits and features its hooks read
are the served models' own, and the distances and the combined rule compute what they say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from sklearn.covariance import LedoitWolf

from benchmarks.abstention import (Mahalanobis, NearestNeighbours, PerTaxonomy, kept_by_either, main,
                                   part_outputs, rank_average, top_outputs)
from handlers.cascade import Cascade
from table.events import event_dicts
from table.record import split_frame


def test_the_hooked_logits_are_the_ones_the_cascade_turns_into_probabilities(tiny_run: Path) -> None:
    cascade = Cascade(tiny_run, precision="fp32", max_batch=4)  # several chunks, rows reordered by length
    events = event_dicts(split_frame(tiny_run))[:40]
    for i, event in enumerate(events):  # lengths that differ, so the chunks' order is not the rows'
        event["description"] = " ".join(event["description"].split()[: 1 + i % 7])
    inputs = cascade.encode(events)
    assert len({len(ids) for ids in inputs.ids}) > 3
    for level in [cascade.hierarchy.taxonomy, *cascade.hierarchy.subtaxonomies.values()]:
        if level.checkpoint is None:
            continue
        out = top_outputs(cascade, level, inputs)
        expected = cascade._model_probs(level, inputs).numpy()
        assert np.allclose(torch.softmax(torch.from_numpy(out.logits), dim=1).numpy(), expected, atol=1e-5)
        head = cascade.models[level.checkpoint].head  # the features are what the head reads
        logits = head(torch.from_numpy(out.cls).float()).detach().numpy()
        assert np.allclose(logits, out.logits, atol=1e-4)
        assert (out.pre >= 0).all() and out.pre.shape == out.cls.shape


def test_mahalanobis_is_the_distance_to_the_nearest_centroid_under_the_shared_covariance() -> None:
    rng = np.random.default_rng(0)
    labels = [str(i % 3) for i in range(300)]
    features = rng.normal(size=(300, 5)) * [1, 2, 3, 0.5, 1] + np.array([[int(l)] * 5 for l in labels])
    model = Mahalanobis(features, labels, shrink=0.0)
    means = np.stack([features[np.array(labels) == c].mean(axis=0) for c in "012"])
    centred = features - means[[int(l) for l in labels]]
    precision = np.linalg.inv(centred.T @ centred / len(features))
    queries = rng.normal(size=(20, 5)) * 3
    direct = np.array([min((q - m) @ precision @ (q - m) for m in means) for q in queries])
    assert np.allclose(model.score(queries), -direct)


def _direct(features: np.ndarray, labels: list[str], queries: np.ndarray) -> np.ndarray:
    """Per query, squared Mahalanobis distances to each label's centroid (sorted labels) under
    the Ledoit-Wolf covariance of the within-label residuals, by the textbook formula."""
    names = sorted(set(labels))
    means = np.stack([features[np.array(labels) == c].mean(axis=0) for c in names])
    centred = features - means[[names.index(l) for l in labels]]
    precision = np.linalg.inv(LedoitWolf(assume_centered=True).fit(centred).covariance_)
    return np.array([[(q - m) @ precision @ (q - m) for m in means] for q in queries])


def test_the_shrunk_covariance_is_ledoit_wolfs_and_a_label_is_scored_against_its_own_centroid() -> None:
    rng = np.random.default_rng(2)
    labels = [str(i % 3) for i in range(40)]  # fewer rows per label than dimensions
    features = rng.normal(size=(40, 30)) + np.array([[3.0 * int(l)] * 30 for l in labels])
    model = Mahalanobis(features, labels, shrink=None)
    assert 0 < model.shrink < 1
    queries = rng.normal(size=(10, 30)) * 2 + 3
    direct = _direct(features, labels, queries)
    assert np.allclose(model.score(queries), -direct.min(axis=1))
    wanted = ["2", "0", "1", "2", "0", "1", "1", "0", "2", "2"]
    assert np.allclose(model.score_of(queries, wanted), -direct[np.arange(10), [int(w) for w in wanted]])
    assert (model.score_of(queries, wanted) < model.score(queries)).any()  # not the nearest centroid's
    assert model.score_of(queries[:1], ["unseen"])[0] == -np.inf


def test_each_taxonomy_scores_its_own_events_with_its_own_leaves_and_covariance() -> None:
    rng = np.random.default_rng(3)
    taxonomies = ["a"] * 60 + ["b"] * 90
    leaves = [f"a{i % 2}" for i in range(60)] + [f"b{i % 3}" for i in range(90)]
    features = np.vstack([rng.normal(size=(60, 4)) * [1, 5, 1, 1], rng.normal(size=(90, 4)) * [3, 1, 1, 0.2] + 4])
    model = PerTaxonomy(features, taxonomies, leaves)
    queries = rng.normal(size=(8, 4)) * 3 + 2
    routes = ["a", "b", "b", "a", "b", "a", "a", "b"]
    own = {t: -_direct(features[:60] if t == "a" else features[60:], leaves[:60] if t == "a" else leaves[60:],
                       queries).min(axis=1) for t in "ab"}
    assert np.allclose(model.score(queries, routes), [own[t][i] for i, t in enumerate(routes)])
    assert not np.allclose(own["a"], own["b"])  # so a wrong route would show
    assert model.score(queries[:1], ["c"])[0] == -np.inf
    every = np.stack([queries, queries + 1], axis=1)  # each taxonomy's top sees other features
    expected = np.maximum(own["a"], -_direct(features[60:], leaves[60:], queries + 1).min(axis=1))
    assert np.allclose(model.score_every(every, ["a", "b"]), expected)


def test_the_routed_features_are_each_events_own_taxonomys_top(tiny_run: Path) -> None:
    cascade = Cascade(tiny_run, precision="fp32", max_batch=4)
    frame = split_frame(tiny_run).iloc[:30]
    labels = cascade.hierarchy.taxonomy.labels
    assert any(cascade.hierarchy.subtaxonomies[t].checkpoint is None for t in labels)  # the stand-in is met
    routes = [labels[(i * 7) % len(labels)] for i in range(len(frame))]  # not each row's own taxonomy
    out = part_outputs(cascade, frame, routes, probs=True, every=True, batch=8)
    inputs = cascade.encode(event_dicts(frame))
    tax = top_outputs(cascade, cascade.hierarchy.taxonomy, inputs)
    for i, route in enumerate(routes):
        level = cascade.hierarchy.subtaxonomies[route]
        alone = top_outputs(cascade, level, inputs.take([i])) if level.checkpoint is not None else tax
        row = 0 if level.checkpoint is not None else i
        assert np.allclose(out["sub_cls"][i], alone.cls[row], atol=1e-4)
        assert np.allclose(out["sub_pre"][i], alone.pre[row], atol=1e-4)
        assert np.allclose(out["every_cls"][i, labels.index(route)], alone.cls[row], atol=1e-4)
    assert np.allclose(out["cls"], tax.cls, atol=1e-4)


def test_nearest_neighbours_read_the_kth_most_similar_train_row() -> None:
    train = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    query = np.array([[2.0, 0.0]])  # cosines: 1, 0, 0.7071
    assert np.allclose(NearestNeighbours(train, 1).score(query), [1.0])
    assert np.allclose(NearestNeighbours(train, 2).score(query), [np.sqrt(0.5)], atol=1e-6)
    assert np.allclose(NearestNeighbours(train, 3).score(query), [0.0], atol=1e-6)


def test_the_pair_rule_keeps_the_target_val_share_and_abstains_when_either_score_is_low() -> None:
    rng = np.random.default_rng(1)
    a = {part: rng.random(n) for part, n in (("val", 1000), ("test", 500))}
    b = {part: rng.random(n) for part, n in (("val", 1000), ("test", 500))}
    for coverage in (0.9, 0.97, 0.99):
        kept, (t_a, t_b) = kept_by_either(a, b, coverage)
        assert coverage <= kept["val"].mean() <= coverage + 0.005
        for part in ("val", "test"):  # kept: both scores clear their own threshold
            assert (kept[part] == ((a[part] >= t_a) & (b[part] >= t_b))).all()
        assert (a["val"] >= t_a).sum() == (b["val"] >= t_b).sum() < 1000  # the same val quantile, and it cuts
    ranks = rank_average(a, b)
    best = int(np.argmax(a["val"] + b["val"]))
    assert 0 < ranks["val"].min() and ranks["val"].max() <= 1 and ranks["val"][best] >= np.median(ranks["val"])


def test_three_scores_rank_as_the_mean_of_their_val_cdfs() -> None:
    a = {"val": np.array([1.0, 2.0, 3.0, 4.0]), "test": np.array([2.5, 0.0])}
    b = {"val": np.array([40.0, 30.0, 20.0, 10.0]), "test": np.array([45.0, 10.0])}
    c = {"val": np.array([0.1, 0.4, 0.3, 0.2]), "test": np.array([0.35, 0.2])}
    ranks = rank_average(a, b, c)
    assert np.allclose(ranks["val"], [(0.25 + 1 + 0.25) / 3, (0.5 + 0.75 + 1) / 3, (0.75 + 0.5 + 0.75) / 3,
                                      (1 + 0.25 + 0.5) / 3])
    assert np.allclose(ranks["test"], [(0.5 + 1 + 0.75) / 3, (0 + 0.25 + 0.5) / 3])


def test_the_benchmark_scores_every_part_with_the_leaf_scores_and_keeps_the_val_share(tiny_run: Path,
                                                                                     tmp_path: Path) -> None:
    oos = tmp_path / "oos.csv"
    rows = [f"{'train' if i % 2 else 'val'},weather forecast {i},rain snow sunshine wind {i}" for i in range(12)]
    oos.write_text("split,title,description\n" + "\n".join(rows) + "\n")
    output = tmp_path / "abstention.json"
    assert main(["--run", str(tiny_run), "--oos", str(oos), "--coverage", "0.9", "--every-subtaxonomy",
                 "--threads", "2", "--output", str(output)]) == 0
    found = {row["method"]: row for row in json.loads(output.read_text())["rows"]}
    for name in ("maha_sub_cls", "maha_sub_pre", "maha_sub_every_cls", "maha_path_cls",
                 "or(path_score,maha_sub_cls)", "rank(path_score,maha_sub_every_cls)",
                 "rank(path_score,maha_cls,maha_sub_cls)", "rank(path_score,maha_cls,maha_path_cls)"):
        assert found[name]["val_coverage"] >= 0.9, name  # the threshold keeps the val share it was set for
        assert 0 <= found[name]["oos_refused"] <= 1 and 0 <= found[name]["test_accuracy_abstain_wrong"] <= 1
