"""The cascade in-process: batching, top-k, single-child taxonomies, single-level runs."""

from __future__ import annotations

import dataclasses
import itertools
import shutil
from pathlib import Path

import pytest
import torch

from handlers import routing
from handlers.cascade import Cascade
from handlers.abstention import Abstention
from handlers.hierarchy import Hierarchy
from tests.tiny import VOCAB

EVENTS = [
    {"title": "saxophone trio", "description": "swing and bebop with friends"},
    {"title": "marathon", "description": "runners on the track"},
    {"text": "dj dance club midnight"},
    {"title": "bike peloton", "description": "road pedal"},
    {"description": "guitar riff band amplifier in the city evening with friends and tickets"},
]

# Words of two subtaxonomies at once: events the models are unsure about, so routing has to think.
WORDS = [words for subs in VOCAB.values() for words in subs.values()]
MIXED = [{"title": f"{a[0]} {b[0]}", "description": f"{a[1]} {b[1]} {a[2]} {b[2]}"}
         for a, b in itertools.permutations(WORDS, 2)]


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
    single = dataclasses.replace(h, taxonomy=level, subtaxonomies={}, name="sports only", abstention=Abstention())
    shutil.copytree(tiny_run / "tokenizer", tmp_path / "tokenizer")
    shutil.copytree(tiny_run / level.checkpoint, tmp_path / level.checkpoint)
    for folder in [h.trunk.folder, h.lexical_features, level.lexical]:
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


def assert_routing_is_exact(cascade: Cascade, events: list[dict]) -> tuple[int, int]:
    """Routed answers equal those of running every candidate; returns (routed, every) model runs."""
    runs = {True: 0, False: 0}
    answers = {}
    for k in (1, 2, 5):
        for routed in (False, True):
            cascade.routing = routed
            runs[routed] += sum(len(subs) for subs in cascade.path_scores(events, [k] * len(events)).subtaxonomy)
            answers[routed] = cascade.predict(events, top_k=k)
        for got, want in zip(answers[True], answers[False]):
            assert got["path"] == want["path"]
            assert got["path_score"] == pytest.approx(want["path_score"], abs=1e-5)
            assert [(p["taxonomy"], p["subtaxonomy"]) for p in got["top_k"]] == \
                [(p["taxonomy"], p["subtaxonomy"]) for p in want["top_k"]]
            assert [p["score"] for p in got["top_k"]] == pytest.approx([p["score"] for p in want["top_k"]], abs=1e-5)
    return runs[True], runs[False]


def flatten_taxonomy_level(cascade: Cascade, temperature: float) -> Cascade:
    """Make the taxonomy level's probabilities less peaked (the tiny models are sure of
    everything), so that other taxonomies' paths compete for the top k as on real data."""
    real = cascade.level_probs

    def level_probs(level, inputs):
        probs = real(level, inputs)
        if level is cascade.hierarchy.taxonomy:
            probs = torch.softmax(torch.log(probs.clamp_min(1e-9)) / temperature, dim=-1)
        return probs

    cascade.level_probs = level_probs
    return cascade


def test_routing_skips_taxonomies_whose_paths_cannot_enter_the_answer(tiny_run: Path) -> None:
    for decoding in ("greedy", "joint"):
        for temperature in (1.0, 4.0):
            cascade = Cascade(tiny_run, decoding=decoding, beam_min_prob=0.0, precision="fp32")
            routed, every = assert_routing_is_exact(flatten_taxonomy_level(cascade, temperature), EVENTS + MIXED)
            assert routed < every, (decoding, temperature)


def test_a_taxonomys_bound_is_the_best_score_its_paths_could_reach() -> None:
    generator = torch.Generator().manual_seed(0)
    column_taxonomy = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 3])  # taxonomy 4 has no path among the columns
    tax = torch.softmax(torch.randn(6, 5, generator=generator), dim=-1)
    paths = torch.softmax(torch.randn(6, 9, generator=generator), dim=-1)
    for weight in (0.0, 0.3, 1.0):
        bounds = routing.score_bounds(tax, paths, weight, column_taxonomy)
        for i in range(6):
            for t in range(5):
                best = max((float(paths[i, c]) for c in range(9) if column_taxonomy[c] == t), default=0.0)
                # reached by a path of t whose subtaxonomy probability is 1 and whose column is t's best
                assert float(bounds[i, t]) == pytest.approx((1 - weight) * float(tax[i, t]) + weight * best)
    assert routing.kth_best([0.2, 0.5, 0.1], 2) == 0.2 and routing.kth_best([0.2], 2) == float("-inf")
