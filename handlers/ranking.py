"""Path scores and the answer made of them. No TorchServe import here.

A path (taxonomy, subtaxonomy) scores the product of its two levels' probabilities, mixed
with the paths level's probability of it when that level is on: ``(1 - w) · product + w ·
P_paths``. The cascade computes the probabilities (handlers/cascade.py) and decides which
subtaxonomy levels run (handlers/routing.py); here they become ranked paths and an answer.
"""

from __future__ import annotations

from typing import Sequence

import torch

from handlers.answers import PathAnswer, round_score
from handlers.hierarchy import Hierarchy, path_label

Ranked = list[tuple[float, int, int]]  # (score, taxonomy index, subtaxonomy index), best first


class PathColumns:
    """Where each (taxonomy index, subtaxonomy index) pair sits among the paths level's labels
    (-1: not among them), and each column's taxonomy index."""

    def __init__(self, hierarchy: Hierarchy, labels: Sequence[str]) -> None:
        column = {label: i for i, label in enumerate(labels)}
        self.of_pair = {(t, s): column.get(path_label(tax, sub), -1)
                        for t, tax in enumerate(hierarchy.taxonomy.labels)
                        for s, sub in enumerate(hierarchy.subtaxonomies[tax].labels)}
        taxonomy = [0] * len(labels)  # every label is a known pair (Hierarchy)
        for (t, _), col in self.of_pair.items():
            if col >= 0:
                taxonomy[col] = t
        self.taxonomy = torch.tensor(taxonomy, dtype=torch.long)
        self._taxonomy = taxonomy

    def best_taxonomies(self, paths: torch.Tensor | None) -> list[int] | None:
        """Per event, the taxonomy of the paths level's likeliest path."""
        return None if paths is None else [self._taxonomy[c] for c in paths.argmax(dim=-1).tolist()]


def ranked_paths(tax_probs: torch.Tensor, sub_probs: dict[int, torch.Tensor], paths: torch.Tensor | None,
                 weight: float, columns: PathColumns | None) -> Ranked:
    """Every computed path of one event, best first."""
    def score(product: float, t: int, s: int) -> float:
        if paths is None or weight == 0 or columns is None:
            return product
        column = columns.of_pair[(t, s)]
        return (1 - weight) * product + weight * (float(paths[column]) if column >= 0 else 0.0)

    return sorted(((score(float(tax_probs[t]) * p, t, s), t, s)
                   for t, probs in sub_probs.items() for s, p in enumerate(probs.tolist())),
                  key=lambda path: -path[0])


def path_answer(hierarchy: Hierarchy, tax_probs: torch.Tensor, sub_probs: dict[int, torch.Tensor],
                ranked: Ranked, best_scored: bool, k: int) -> PathAnswer:
    """The predicted path and the k best of ``ranked``: the best-scoring path when
    ``best_scored`` (joint decoding, or a mix with the paths level), else the likeliest
    taxonomy's likeliest subtaxonomy (greedy). Either way the prediction does not depend on k."""
    if best_scored:
        score, t, s = ranked[0]
    else:
        t = int(tax_probs.argmax())
        s = int(sub_probs[t].argmax())
        score = float(tax_probs[t]) * float(sub_probs[t][s])
    def labels(tt: int, j: int) -> tuple[str, str]:
        tax = hierarchy.taxonomy.labels[tt]
        return tax, hierarchy.subtaxonomies[tax].labels[j]

    taxonomy, subtaxonomy = labels(t, s)
    top = [(labels(tt, j), sc) for sc, tt, j in ranked[:k]]
    return {
        "taxonomy": {"label": taxonomy, "score": round_score(tax_probs[t])},
        "subtaxonomy": {"label": subtaxonomy, "score": round_score(sub_probs[t][s])},
        "path": [taxonomy, subtaxonomy],
        "path_score": round_score(score),
        "top_k": [{"taxonomy": tax, "subtaxonomy": sub, "score": round_score(sc)} for (tax, sub), sc in top],
    }
