"""The cascade in-process: batching, top-k, single-child taxonomies, single-level runs."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from handlers.cascade import Cascade
from handlers.hierarchy import Hierarchy

EVENTS = [
    {"title": "saxophone trio", "description": "swing and bebop with friends"},
    {"title": "marathon", "description": "runners on the track"},
    {"text": "dj dance club midnight"},
    {"title": "bike peloton", "description": "road pedal"},
    {"description": "guitar riff band amplifier in the city evening with friends and tickets"},
]


@pytest.fixture(scope="module")
def cascade(tiny_run: Path) -> Cascade:
    return Cascade(tiny_run, max_batch=2)


def test_answers_carry_labels_scores_and_top_k_paths(cascade: Cascade) -> None:
    h = cascade.hierarchy
    answers = cascade.predict(EVENTS, top_k=3)
    assert len(answers) == len(EVENTS)
    for answer in answers:
        tax, sub = answer["taxonomy"]["label"], answer["subtaxonomy"]["label"]
        assert sub in h.subtaxonomies[tax].labels
        assert answer["path"] == [tax, sub]
        assert answer["path_score"] == pytest.approx(answer["taxonomy"]["score"] * answer["subtaxonomy"]["score"], abs=1e-5)
        scores = [p["score"] for p in answer["top_k"]]
        assert scores == sorted(scores, reverse=True) and 1 <= len(scores) <= 3
        for p in answer["top_k"]:
            assert p["subtaxonomy"] in h.subtaxonomies[p["taxonomy"]].labels


def test_batched_answers_equal_one_at_a_time(cascade: Cascade) -> None:
    together = cascade.predict(EVENTS, top_k=2)
    alone = [cascade.predict([e], top_k=2)[0] for e in EVENTS]
    for a, b in zip(together, alone):
        assert a["path"] == b["path"]
        assert a["path_score"] == pytest.approx(b["path_score"], abs=1e-4)


def test_single_child_taxonomy_needs_no_model(cascade: Cascade) -> None:
    assert cascade.hierarchy.subtaxonomies["nightlife"].checkpoint is None
    assert "subtaxonomy/nightlife" not in cascade.models
    answers = cascade.predict(EVENTS, top_k=5)
    nightlife = [a for a in answers if a["taxonomy"]["label"] == "nightlife"]
    assert nightlife, "no event was classified nightlife: the single-child branch was never run"
    for answer in nightlife:
        assert answer["subtaxonomy"] == {"label": "club night", "score": 1.0}
        assert answer["path"] == ["nightlife", "club night"]
        assert answer["path_score"] == pytest.approx(answer["taxonomy"]["score"], abs=1e-6)


def test_top_k_one_and_per_event_top_k(cascade: Cascade) -> None:
    answers = cascade.predict(EVENTS[:2], top_k=[1, 4])
    assert len(answers[0]["top_k"]) == 1
    assert answers[0]["top_k"][0]["subtaxonomy"] == answers[0]["subtaxonomy"]["label"]
    assert len(answers[1]["top_k"]) >= 2
    assert cascade.predict([]) == []


def test_timings_reported_per_level(cascade: Cascade) -> None:
    timings: dict[str, float] = {}
    cascade.predict(EVENTS, timings=timings)
    assert timings["taxonomy_ms"] > 0 and timings["subtaxonomy_ms"] > 0


def test_single_level_run(tiny_run: Path, tmp_path: Path) -> None:
    h = Hierarchy.load(tiny_run)
    level = h.subtaxonomies["sports"]
    single = dataclasses.replace(h, taxonomy=level, subtaxonomies={}, name="sports only")
    shutil.copytree(tiny_run / "tokenizer", tmp_path / "tokenizer")
    shutil.copytree(tiny_run / level.checkpoint, tmp_path / level.checkpoint)
    for folder in [h.trunk.folder, level.lexical]:
        if folder:
            shutil.copytree(tiny_run / folder, tmp_path / folder)
    single.save(tmp_path)
    answers = Cascade(tmp_path).predict(EVENTS[:2], top_k=2)
    assert answers[0]["label"] in level.labels and len(answers[0]["top_k"]) == 2


def test_joint_decoding_predicts_the_best_path_product(tiny_run: Path) -> None:
    joint = Cascade(tiny_run, decoding="joint", beam_min_prob=0.0)
    greedy = Cascade(tiny_run, decoding="greedy")
    for a, g in zip(joint.predict(EVENTS * 2, top_k=1), greedy.predict(EVENTS * 2, top_k=1)):
        assert a["path"] == [a["top_k"][0]["taxonomy"], a["top_k"][0]["subtaxonomy"]]
        assert a["path_score"] == pytest.approx(a["top_k"][0]["score"], abs=1e-6)
        assert a["path_score"] >= g["path_score"] - 1e-6
    with pytest.raises(ValueError, match="decoding"):
        Cascade(tiny_run, decoding="beam")
