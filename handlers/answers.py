"""The answer shapes the handler serialises (the README documents them), and a level's answer
built from its probabilities. No TorchServe import: it ships in the archive with the cascade."""

from __future__ import annotations

from typing import Sequence, TypedDict

import torch


class Scored(TypedDict):
    label: str
    score: float


class PathOption(TypedDict):
    taxonomy: str
    subtaxonomy: str
    score: float


class PathAnswer(TypedDict, total=False):
    """A cascade's answer: the predicted path, each level's score, the top-k paths (and the caller's id)."""

    taxonomy: Scored
    subtaxonomy: Scored
    path: list[str]
    path_score: float
    top_k: list[PathOption]
    scope_score: float  # on a run whose rule is scope: how much the event looks like val's (handlers/scope.py)
    abstain: bool  # no path fits: the rule's score under its threshold (handlers/abstention.py)
    id: str | int


class LevelAnswer(TypedDict, total=False):
    """A single-level archive's answer: the label, its score, the top-k labels (and the caller's id)."""

    label: str
    score: float
    top_k: list[Scored]
    abstain: bool  # score under the rule's threshold (handlers/abstention.py)
    id: str | int


def round_score(x: float) -> float:
    return round(float(x), 6)


def level_answer(labels: Sequence[str], probs: torch.Tensor, k: int) -> LevelAnswer:
    top = torch.topk(probs, min(k, len(labels)))
    best = int(probs.argmax())
    return {
        "label": labels[best],
        "score": round_score(probs[best]),
        "top_k": [{"label": labels[j], "score": round_score(p)} for p, j in zip(top.values.tolist(), top.indices.tolist())],
    }
