"""The run's abstention rule, settled on the validation split, and its coverage curve.

A threshold on the answers' ``path_score`` is chosen so that the target share of val answers
is kept (handlers/abstention.py); it goes into hierarchy.json, so evaluation, batch
prediction and serving all apply it. Out-of-scope rows are not needed: the rule sees only
the scores of in-scope val answers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from handlers.abstention import Abstention, answer_score, choose_min_score, mark  # noqa: E402
from handlers.cascade import Cascade  # noqa: E402
from table.scoring import Evaluation, abstention_scores  # noqa: E402


def choose_abstention(cascade: Cascade, val: pd.DataFrame, result: Evaluation, coverage: float | None,
                      metrics: dict[str, Any]) -> Abstention:
    """Settle the cascade's rule on val's evaluation (its answers marked again, its scores
    updated) and return it."""
    answers = result.answers
    min_score = choose_min_score([answer_score(a) for a in answers], coverage)
    rule = Abstention(min_score, coverage) if min_score > 0 else Abstention()
    cascade.hierarchy = dataclasses.replace(cascade.hierarchy, abstention=rule)
    mark(answers, rule)
    metrics["abstention"] = {"score": "path_score", "min_score": rule.min_score, "target_coverage": coverage}
    if answers:
        kept = result.scores["abstention"] = abstention_scores(list(val.taxonomy), list(val.subtaxonomy), answers)
        print(f"abstention on val: path_score below {rule.min_score:.6f} abstains "
              f"(coverage {kept['coverage']:.4f}, target {coverage})", flush=True)
    return rule


def coverage_curve(scores: Sequence[float], right: Sequence[bool]) -> tuple[list[float], list[float]]:
    """Coverage and accuracy of the answers kept, as the threshold rises through every score."""
    ranked = sorted(zip(scores, right), key=lambda pair: -pair[0])
    coverage, accuracy, hits = [], [], 0
    for i, (_, hit) in enumerate(ranked, 1):
        hits += hit
        coverage.append(i / len(ranked))
        accuracy.append(hits / i)
    return coverage, accuracy


def plot_coverage(rows: pd.DataFrame, answers: list[dict[str, Any]], rule: Abstention, split: str,
                  path: Path) -> Path:
    """Coverage against accuracy of the answers kept, per level (taxonomy by its own score,
    path by path_score), with the run's operating point on the path curve."""
    truth = list(zip(rows.taxonomy, rows.subtaxonomy))
    fig, ax = plt.subplots(figsize=(6, 4))
    levels = {
        "taxonomy": ([a["taxonomy"]["score"] for a in answers], [a["taxonomy"]["label"] == t for a, (t, _) in
                                                                 zip(answers, truth)]),
        "path": ([a["path_score"] for a in answers], [tuple(a["path"]) == t for a, t in zip(answers, truth)]),
    }
    for name, (scores, right) in levels.items():
        ax.plot(*coverage_curve(scores, right), label=name)
    point = abstention_scores(list(rows.taxonomy), list(rows.subtaxonomy), answers)
    if point["accuracy_when_answered"] is not None:
        ax.plot([point["coverage"]], [point["accuracy_when_answered"]], "o", color="black",
                label=f"path_score >= {rule.min_score:.4f}")
    ax.set_xlabel("coverage (share of answers kept)")
    ax.set_ylabel("accuracy of the answers kept")
    ax.set_title(f"abstention ({split})")
    ax.legend(loc="lower left", frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
