"""The out-of-scope scores of benchmarks/abstention.py: the logits and features its hooks read
are the served models' own, and the distances and the combined rule compute what they say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmarks.abstention import (Mahalanobis, NearestNeighbours, kept_by_either, rank_average,
                                   top_outputs)
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
