"""Abstention: when no path fits, an answer says so (``"abstain": true``) and still shows its paths.

The rule is one threshold on one score of the answer: an answer scoring below ``min_score``
abstains. The score is the rule's ``score``: ``scope`` (a cascade trained with its default
flags) reads the answer's ``scope_score``, how much the event looks like the val split's
(handlers/scope.py: path_score and two feature distances, ranked against val's; its fitted
file in the run's ``folder``); ``path_score`` reads the answer's ``path_score`` (``score`` of a
single-level archive). Training chooses the threshold on the val split for a target
``coverage`` (the share of val answers kept) and records it in hierarchy.json; evaluation,
batch prediction and serving apply it through ``mark``, and a request may give its own
``min_score`` for the same score. A run recorded without a rule never abstains. No torch and
no TorchServe import here.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

DEFAULT_COVERAGE = 0.99
SCORES = ("scope", "path_score")  # the first: training's default
SCOPE_SCORE = "scope_score"  # the answer's field that the scope rule reads


@dataclass(frozen=True)
class Abstention:
    """Answers whose ``score`` is below ``min_score`` abstain; ``coverage``: the val share it was
    chosen to keep; ``folder``: the run's scope model (the scope score only)."""

    min_score: float = 0.0
    coverage: float | None = None
    score: str = "path_score"
    folder: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"abstention min_score {self.min_score} must be from 0 to 1")
        if self.coverage is not None and not 0.0 < self.coverage <= 1.0:
            raise ValueError(f"abstention coverage {self.coverage} must be above 0 and at most 1")
        if self.score not in SCORES:
            raise ValueError(f"abstention score {self.score!r} must be one of {', '.join(SCORES)}")
        if (self.score == "scope") != (self.folder is not None):
            raise ValueError("the scope score needs the folder of its scope model, and only it has one")

    def to_json(self) -> dict[str, Any]:
        data = {"score": self.score, "min_score": self.min_score, "coverage": self.coverage}
        return {**data, "folder": self.folder} if self.folder is not None else data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "Abstention":
        if not data:
            return cls()
        coverage, folder = data.get("coverage"), data.get("folder")
        return cls(float(data.get("min_score", 0.0)), None if coverage is None else float(coverage),
                   str(data.get("score", "path_score")), None if folder is None else str(folder))


def fraction_argument(value: str) -> float:
    """A command line's min_score: a number from 0 to 1."""
    return _argument(value, 0.0, "from 0 to 1")


def coverage_argument(value: str) -> float | None:
    """A command line's target coverage: above 0 and at most 1, or off (None: never abstain)."""
    return None if value == "off" else _argument(value, 1e-12, "above 0 and at most 1, or off")


def _argument(value: str, low: float, wanted: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not low <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number {wanted}, not {value!r}")
    return number


def answer_score(answer: Mapping[str, Any]) -> float:
    """The score the rule reads: the answer's ``scope_score`` when it has one (a run whose rule
    is ``scope``), else a path answer's ``path_score``, a level answer's ``score``."""
    for key in (SCOPE_SCORE, "path_score", "score"):
        if key in answer:
            return float(answer[key])
    raise KeyError("the answer has no score")


def abstains(score: float, min_score: float) -> bool:
    return score < min_score


def choose_min_score(scores: Sequence[float], coverage: float | None) -> float:
    """The highest threshold that keeps at least ``coverage`` of ``scores`` (val answers' scores).

    With n scores sorted ascending, at most floor((1 - coverage) · n) fall below the k-th
    smallest (k = that count), so the k-th smallest is the threshold. ``None`` (off), a
    coverage of 1 or no scores: 0, which never abstains.
    """
    if coverage is None or coverage >= 1.0 or not scores:
        return 0.0
    ordered = sorted(float(s) for s in scores)
    drop = int((1.0 - coverage) * len(ordered) + 1e-9)
    return ordered[drop]


def mark(answers: list[dict[str, Any]], rule: Abstention,
         min_score: float | Sequence[float | None] | None = None) -> list[dict[str, Any]]:
    """Set ``abstain`` on each answer, in place: by the request's ``min_score`` (one for all,
    or one per answer, None meaning the recorded rule's) or else by ``rule``."""
    wanted = list(min_score) if isinstance(min_score, (list, tuple)) else [min_score] * len(answers)
    if len(wanted) != len(answers):
        raise ValueError(f"{len(wanted)} min_score values for {len(answers)} answers")
    for answer, own in zip(answers, wanted):
        answer["abstain"] = abstains(answer_score(answer), rule.min_score if own is None else float(own))
    return answers


def scores(correct: Sequence[bool], abstained: Sequence[bool]) -> dict[str, Any]:
    """What the rule costs and keeps on one split: coverage, accuracy with abstentions counted
    wrong, and accuracy over the answers kept."""
    n = len(correct)
    kept = [c for c, a in zip(correct, abstained) if not a]
    return {
        "abstained": n - len(kept),
        "coverage": len(kept) / n if n else None,
        "accuracy_abstain_wrong": sum(kept) / n if n else None,
        "accuracy_when_answered": sum(kept) / len(kept) if kept else None,
    }
