"""Scoring a cascade on the rows of one split: its answers, and their scores against the true labels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import pandas as pd

from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from handlers import abstention
from table.events import DataError, event_dicts

if TYPE_CHECKING:
    from handlers.cascade import Cascade


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


class Evaluation(NamedTuple):
    scores: dict[str, Any]
    answers: list[dict]
    given: list[str]  # each row's subtaxonomy when its true taxonomy is given


def evaluate_frame(cascade: Cascade, frame: pd.DataFrame, batch_size: int = 256,
                   given: list[str] | None = None) -> Evaluation:
    """Metrics, answers and taxonomy-given subtaxonomies for the rows of ``frame`` (one split).

    ``given``: the taxonomy-given subtaxonomies of an earlier evaluation of the same rows.
    They depend on neither the decoding nor the paths level, so training's choices score
    val several times but compute them (a pass over every row) once.
    """
    events = event_dicts(frame)
    known = set(cascade.hierarchy.taxonomy.labels)
    unknown = sorted(set(frame.taxonomy) - known)
    if unknown:
        raise DataError(f"taxonomies not in this run's hierarchy: {', '.join(unknown[:10])}")
    answers: list[dict] = []
    for start in range(0, len(events), batch_size):
        answers += cascade.predict(events[start : start + batch_size], top_k=1)
    if given is None:
        given = subtaxonomy_given(cascade, events, list(frame.taxonomy))
    scores = cascade_scores(list(frame.taxonomy), list(frame.subtaxonomy), answers, given)
    return Evaluation(scores, answers, given)


def subtaxonomy_given(cascade: Cascade, events: list[dict], taxonomies: list[str]) -> list[str]:
    """The subtaxonomy each event gets when its taxonomy is given, not predicted: the second
    level scored apart from the first's errors."""
    inputs = cascade.encode(events)
    groups: dict[str, list[int]] = {}
    for i, tax in enumerate(taxonomies):
        groups.setdefault(tax, []).append(i)
    out = [""] * len(events)
    for tax, members in groups.items():
        level = cascade.hierarchy.subtaxonomies[tax]
        best = cascade.level_probs(level, inputs.take(members)).argmax(dim=-1).tolist()
        for i, b in zip(members, best):
            out[i] = level.labels[b]
    return out


def summary_line(split: str, s: dict[str, Any]) -> str:
    return (
        f"{split}: {s['rows']} events | taxonomy acc {s['taxonomy']['accuracy']:.4f} "
        f"macro-F1 {s['taxonomy']['macro_f1']:.4f} | leaf acc {s['subtaxonomy']['accuracy']:.4f} "
        f"macro-F1 {s['subtaxonomy']['macro_f1']:.4f} | leaf acc given taxonomy "
        f"{s['subtaxonomy_given_taxonomy']['accuracy']:.4f} | path acc {s['path_accuracy']:.4f}"
    )
