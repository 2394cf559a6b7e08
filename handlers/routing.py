"""Which subtaxonomy models an event's answer needs: where the cascade routes.

An answer (its predicted path and its top_k list) is made of path scores: a taxonomy's
probability times its subtaxonomy's, mixed with the paths level's probability of the path
when that level is on (weight ``w``). Each subtaxonomy model run is one more pass over the
event, and on long posts with smooth taxonomy probabilities (TF-IDF mixed in) top_k and the
joint beam used to visit two to three taxonomies per event. So the cascade runs first the
taxonomies the prediction surely needs, then only those other candidates whose best
possible path could still enter the top k: a path of taxonomy t scores at most
``(1 - w) * P(t) + w * max(paths level's probability of t's paths)``. Answers are exactly
those of running every candidate. No TorchServe import here.
"""

from __future__ import annotations

from typing import Sequence

import torch

from handlers.hierarchy import Hierarchy


def candidate_taxonomies(tax_probs: torch.Tensor, ks: Sequence[int], best_path_taxonomy: Sequence[int] | None,
                         decoding: str, beam_width: int, beam_min_prob: float) -> list[set[int]]:
    """Per event, the taxonomies whose subtaxonomy model may run.

    Always the best one (and the taxonomy of the paths level's best path); with top_k > 1
    (or joint decoding, its beam) also the next likeliest that reach ``beam_min_prob``, so
    answers can span taxonomies.
    """
    candidates = sure_taxonomies(tax_probs, best_path_taxonomy)
    for i, (chosen, k) in enumerate(zip(candidates, ks)):
        width = max(k, beam_width) if decoding == "joint" else k
        if width > 1:
            top = torch.topk(tax_probs[i], min(width, tax_probs.shape[1]))
            chosen |= {t for p, t in zip(top.values.tolist(), top.indices.tolist()) if p >= beam_min_prob}
    return candidates


def sure_taxonomies(tax_probs: torch.Tensor, best_path_taxonomy: Sequence[int] | None) -> list[set[int]]:
    """Per event, the taxonomies every decoding needs: the likeliest (greedy's prediction) and
    the paths level's best path's."""
    best = tax_probs.argmax(dim=-1).tolist()
    if best_path_taxonomy is None:
        return [{t} for t in best]
    return [{t, p} for t, p in zip(best, best_path_taxonomy)]


def score_bounds(tax_probs: torch.Tensor, paths: torch.Tensor | None, weight: float,
                 column_taxonomy: torch.Tensor | None) -> torch.Tensor:
    """(events x taxonomies): the highest score any path of the taxonomy can reach.

    A subtaxonomy probability is at most 1, and a path's paths-level probability at most the
    best of its taxonomy's columns (``column_taxonomy``: each column's taxonomy index).
    """
    if paths is None or weight == 0 or column_taxonomy is None:
        return tax_probs
    index = column_taxonomy.unsqueeze(0).expand(paths.shape[0], -1)
    best = torch.zeros_like(tax_probs).scatter_reduce(1, index, paths.to(tax_probs.dtype), reduce="amax")
    return (1 - weight) * tax_probs + weight * best


def kth_best(scores: Sequence[float], k: int) -> float:
    """The score a path must reach to enter the top ``k`` (minus infinity while fewer are known)."""
    if len(scores) < k:
        return float("-inf")
    return sorted(scores, reverse=True)[max(1, k) - 1]


def max_passes(hierarchy: Hierarchy, decoding: str, beam_width: int, paths_weight: float, top_k: int,
               windows: int | None = None) -> int:
    """The most model passes one event with this ``top_k`` can cost (for the handler's cap).

    One taxonomy pass, then one subtaxonomy pass per candidate taxonomy: as many as
    ``top_k`` asks for, or the beam under joint decoding, at most every taxonomy; with
    the paths level, its head's pass (none when its lexical model reads it alone) and the
    taxonomy of its best path. Each pass reads every window of the event: ``windows``, or at
    most ``max_windows`` under ``windows`` truncation when not given.
    """
    fmt = hierarchy.text
    if windows is None:
        windows = fmt.max_windows if fmt.truncation == "windows" else 1
    if hierarchy.single_level:
        return windows
    width = max(top_k, beam_width) if decoding == "joint" else top_k
    extra = 1 if paths_weight > 0 else 0  # the paths level's best path's taxonomy
    head = extra if hierarchy.paths is not None and hierarchy.paths.lexical_weight < 1.0 else 0
    return windows * (1 + head + min(max(1, width) + extra, len(hierarchy.taxonomy.labels)))
