"""Scores of a cascade's predictions against the true labels of one split."""

from __future__ import annotations

from typing import Any, Sequence

from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from handlers import abstention


def level_scores(true: Sequence[str], pred: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro and weighted F1, and per-class precision/recall/F1/support."""
    labels = sorted(set(true) | set(pred))
    p, r, f, s = precision_recall_fscore_support(true, pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(true, pred)) if len(true) else None,
        "macro_f1": float(f1_score(true, pred, labels=sorted(set(true)), average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(true, pred, average="weighted", zero_division=0)),
        "per_class": {
            label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, label in enumerate(labels)
        },
    }


def cascade_scores(
    true_tax: Sequence[str],
    true_sub: Sequence[str],
    answers: Sequence[dict[str, Any]],
    sub_given_true_tax: Sequence[str],
) -> dict[str, Any]:
    """Every figure metrics.json holds for one split.

    ``subtaxonomy`` scores the leaf of the predicted path (a wrong taxonomy makes it
    wrong); ``subtaxonomy_given_taxonomy`` scores each subtaxonomy model on the rows of
    its own true taxonomy, which separates the two levels' errors.
    """
    pred_tax = [a["taxonomy"]["label"] for a in answers]
    pred_sub = [a["subtaxonomy"]["label"] for a in answers]
    n = len(true_tax)
    path_hits = sum(t == pt and s == ps for t, s, pt, ps in zip(true_tax, true_sub, pred_tax, pred_sub))
    # Leaf labels may repeat under different taxonomies, so they are scored as full paths.
    true_path = [f"{t} / {s}" for t, s in zip(true_tax, true_sub)]
    pred_path = [f"{t} / {s}" for t, s in zip(pred_tax, pred_sub)]
    given = [f"{t} / {s}" for t, s in zip(true_tax, sub_given_true_tax)]
    per_taxonomy = {}
    for tax in sorted(set(true_tax)):
        rows = [i for i, t in enumerate(true_tax) if t == tax]
        per_taxonomy[tax] = {
            "rows": len(rows),
            "accuracy_given_taxonomy": sum(true_sub[i] == sub_given_true_tax[i] for i in rows) / len(rows),
        }
    return {
        "rows": n,
        "taxonomy": level_scores(true_tax, pred_tax),
        "subtaxonomy": level_scores(true_path, pred_path),
        "subtaxonomy_given_taxonomy": {
            **{k: v for k, v in level_scores(true_path, given).items() if k != "per_class"},
            "per_taxonomy": per_taxonomy,
        },
        "path_accuracy": path_hits / n if n else None,
        "abstention": abstention_scores(true_tax, true_sub, answers),
    }


def abstention_scores(true_tax: Sequence[str], true_sub: Sequence[str],
                      answers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run's abstention rule on one split (handlers/abstention.py): coverage, path accuracy
    counting abstentions wrong, and path accuracy over the answers kept."""
    right = [tuple(a["path"]) == (t, s) for t, s, a in zip(true_tax, true_sub, answers)]
    return abstention.scores(right, [bool(a.get("abstain")) for a in answers])
