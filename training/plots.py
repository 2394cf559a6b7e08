"""The figures of a run's report: confusion matrices, training curves, the abstention curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402

from handlers.abstention import SCOPE_SCORE, Abstention  # noqa: E402
from table.scoring import abstention_scores  # noqa: E402


def plot_confusion(true: Sequence[str], pred: Sequence[str], labels: Sequence[str], title: str, path: Path) -> Path:
    """Row-normalised confusion matrix; counts written in cells while they stay legible."""
    labels = list(labels)
    matrix = confusion_matrix(true, pred, labels=labels)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    n = len(labels)
    size = min(4 + 0.45 * n, 22)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=9 if n <= 30 else 6)
    ax.set_yticks(range(n), labels, fontsize=9 if n <= 30 else 6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(history: list[dict[str, Any]], title: str, path: Path) -> Path:
    """Training loss by step and validation loss/accuracy by epoch, from the Trainer's log."""
    train = [(h["epoch"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["epoch"], h["eval_loss"], h.get("eval_accuracy")) for h in history if "eval_loss" in h]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue", alpha=0.8)
    if evals:
        ax.plot([e[0] for e in evals], [e[1] for e in evals], "o-", label="val loss", color="tab:orange")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    handles, labels = ax.get_legend_handles_labels()
    if evals and evals[0][2] is not None:
        acc = ax.twinx()
        acc.plot([e[0] for e in evals], [e[2] for e in evals], "s--", label="val accuracy", color="tab:green")
        acc.set_ylabel("val accuracy")
        acc.set_ylim(0, 1.02)
        more = acc.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False)
    fig.subplots_adjust(bottom=0.22)
    ax.set_title(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    path by path_score, and path by the scope score when the rule reads it), with the run's
    operating point on the curve of the rule's score."""
    truth = list(zip(rows.taxonomy, rows.subtaxonomy))
    fig, ax = plt.subplots(figsize=(6, 4))
    path_right = [tuple(a["path"]) == t for a, t in zip(answers, truth)]
    levels = {
        "taxonomy": ([a["taxonomy"]["score"] for a in answers], [a["taxonomy"]["label"] == t for a, (t, _) in
                                                                 zip(answers, truth)]),
        "path by path_score": ([a["path_score"] for a in answers], path_right),
    }
    if answers and SCOPE_SCORE in answers[0]:
        levels["path by scope_score"] = ([a[SCOPE_SCORE] for a in answers], path_right)
    for name, (scores, right) in levels.items():
        ax.plot(*coverage_curve(scores, right), label=name)
    point = abstention_scores(list(rows.taxonomy), list(rows.subtaxonomy), answers)
    if point["accuracy_when_answered"] is not None:
        ax.plot([point["coverage"]], [point["accuracy_when_answered"]], "o", color="black",
                label=f"{rule.score} >= {rule.min_score:.4f}")
    ax.set_xlabel("coverage (share of answers kept)")
    ax.set_ylabel("accuracy of the answers kept")
    ax.set_title(f"abstention ({split})")
    ax.legend(loc="lower left", frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
