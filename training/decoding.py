"""The run's decoding, settled on the validation split: greedy or joint, whichever scores
better, then the paths level's weights.

Greedy takes the likeliest taxonomy, then its likeliest subtaxonomy; joint takes the path
with the highest product over the likeliest taxonomies, so a confident second level can
overrule an unsure first one. A paths level, a flat classifier over every path, can then be
mixed into each path's score: the paths head (the path warm-up's own top on the shared
trunk), a TF-IDF model over the paths, or a mix of the two. Each choice changes the cascade
it is scored on (its decoding, hierarchy and paths level) and nothing on disk:
training/choices.py writes the final hierarchy and removes what it does not use.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd
import torch

from handlers.cascade import Cascade
from handlers.hierarchy import Hierarchy, Level
from handlers.lexical import LexicalModel
from handlers.run_layout import LEXICAL_JSON, PATHS_LEXICAL
from table.events import event_dicts
from table.scoring import Evaluation, evaluate_frame


def choose_decoding(cascade: Cascade, val: pd.DataFrame, wanted: str,
                    metrics: dict[str, Any]) -> dict[str, Evaluation]:
    """Settle the cascade's decoding: as asked, or whichever is better on val.

    Returns the val evaluation of each mode tried, so it is not computed again.
    """
    choice = "greedy" if wanted == "auto" and val.empty else wanted
    tried = {}
    if choice == "auto":
        scores, given = {}, None
        for mode in ("greedy", "joint"):
            cascade.decoding = mode
            tried[mode] = evaluate_frame(cascade, val, given=given)
            scores[mode], given = tried[mode].scores["path_accuracy"], tried[mode].given
        choice = "joint" if scores["joint"] > scores["greedy"] else "greedy"
        metrics["decoding_val_path_accuracy"] = scores
        print(f"decoding on val: greedy {scores['greedy']:.4f}, joint {scores['joint']:.4f} -> {choice}", flush=True)
    cascade.decoding = choice
    cascade.hierarchy = dataclasses.replace(cascade.hierarchy, decoding=choice)
    metrics["decoding"] = choice
    return tried


PATHS_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))
# The head costs about a quarter of the cascade's throughput (one more top pass per event and
# a candidate taxonomy; CLINC150, docs/results.md): auto keeps it only for a real val gain,
# not for one or two val events. The TF-IDF paths model costs next to nothing.
PATHS_MIN_GAIN = 0.0025

Pair = tuple[float, float]  # (paths weight, lexical share of the paths level)


def choose_paths_weight(cascade: Cascade, val: pd.DataFrame, metrics: dict[str, Any],
                        wanted: str | float = "auto", batch_size: int = 256) -> float:
    """Settle the paths level: its weight in the path scores and the TF-IDF paths model's share
    in it against the paths head's, as given or the pair with the best val path accuracy (ties
    to the smaller). The head stays only when it beats the best pair without it by at least
    ``PATHS_MIN_GAIN``; what is not kept leaves the cascade's hierarchy (weight 0: no paths
    level, scored exactly as a run without one serves). Returns the paths weight."""
    hierarchy = cascade.hierarchy
    lexical_dir = cascade.run_dir / PATHS_LEXICAL
    lexical = LexicalModel.load(lexical_dir, cascade.lexical_features) \
        if (lexical_dir / LEXICAL_JSON).is_file() else None
    head = hierarchy.paths if hierarchy.paths is not None and hierarchy.paths.checkpoint else None
    if head is None and lexical is None:
        cascade.hierarchy = without_unused_features(hierarchy)
        return 0.0
    labels = head.labels if head is not None else lexical.labels
    cascade.index_paths(labels)
    shares = PATHS_WEIGHTS if lexical is not None and head is not None else (1.0,) if head is None else (0.0,)
    weights = tuple(sorted(set(PATHS_WEIGHTS) | ({float(wanted)} if wanted not in ("auto", "off") else set())))
    pairs = [(0.0, 0.0)] + [(w, share) for w in weights if w > 0 for share in shares]
    accuracy = _path_accuracy(cascade, val, pairs, head, lexical, batch_size) if not val.empty else {}

    def uses_head(pair: Pair) -> bool:
        return head is not None and pair[0] > 0 and pair[1] < 1

    def best_of(candidates: list[Pair]) -> Pair:
        return max(candidates, key=lambda p: (accuracy[p], -p[0], -p[1])) if accuracy else candidates[0]

    if wanted not in ("auto", "off") and head is not None:  # the head at the weight asked for
        best = best_of([p for p in pairs if p[0] == float(wanted) and (p[0] == 0 or uses_head(p))])
    else:
        best = best_of(pairs)
        plain = best_of([p for p in pairs if not uses_head(p)])
        if uses_head(best) and accuracy[best] - accuracy[plain] < PATHS_MIN_GAIN - 1e-9:  # 2 of 800 val events
            best = plain
    _keep(cascade, best, labels, head if uses_head(best) else None, lexical if best[1] > 0 else None)
    metrics["paths_head"] = {
        "weight": best[0], "head": uses_head(best), "lexical_share": best[1] if best[0] > 0 else 0.0,
        "val_path_accuracy_by_weight": {str(w): accuracy[(w, best[1]) if w > 0 else (0.0, 0.0)]
                                        for w in weights if accuracy and (w == 0 or (w, best[1]) in accuracy)},
        "val_path_accuracy_by_lexical_share": {str(s): accuracy[(best[0], s)]
                                               for s in shares if accuracy and best[0] > 0}}
    if accuracy:
        print(f"paths level on val: path accuracy {accuracy[(0.0, 0.0)]:.4f} without it, "
              f"{accuracy[best]:.4f} with weight {best[0]} (TF-IDF share {best[1]}, head {uses_head(best)})", flush=True)
    return best[0]


def _path_accuracy(cascade: Cascade, val: pd.DataFrame, pairs: list[Pair], head: Level | None,
                   lexical: LexicalModel | None, batch_size: int) -> dict[Pair, float]:
    """Val path accuracy of every pair, as the cascade would serve it (its candidate
    taxonomies included); each subtaxonomy level runs once per event that any pair needs."""
    events = event_dicts(val)
    truth = list(zip(val.taxonomy, val.subtaxonomy))
    hits = dict.fromkeys(pairs, 0)
    for start in range(0, len(events), batch_size):
        inputs = cascade.encode(events[start : start + batch_size])
        n = len(inputs.texts)
        tax = cascade.level_probs(cascade.hierarchy.taxonomy, inputs)
        head_probs = cascade._model_probs(head, inputs) if head is not None else None
        lexical_probs = torch.from_numpy(cascade.lexical_probs(lexical, inputs)) if lexical is not None else None
        subs: list[dict[int, torch.Tensor]] = [{} for _ in range(n)]
        for weight, share in pairs:
            paths = None if weight == 0 else lexical_probs if share >= 1 else head_probs if share == 0 \
                else (1 - share) * head_probs + share * lexical_probs
            cascade.paths_weight = weight
            candidates = cascade.candidate_taxonomies(tax, [1] * n, paths)
            missing = [{t for t in chosen if t not in subs[i]} for i, chosen in enumerate(candidates)]
            if any(missing):
                for i, found in enumerate(cascade.subtaxonomy_passes(inputs, missing)):
                    subs[i].update(found)
            for i, chosen in enumerate(candidates):
                answer = cascade.path_answer(tax[i], {t: subs[i][t] for t in chosen},
                                             None if paths is None else paths[i], 1)
                hits[(weight, share)] += tuple(answer["path"]) == truth[start + i]
    return {pair: right / len(events) for pair, right in hits.items()}


def _keep(cascade: Cascade, pair: Pair, labels: tuple[str, ...], head: Level | None,
          lexical: LexicalModel | None) -> None:
    """Put the chosen paths level into the cascade and its hierarchy."""
    hierarchy, (weight, share) = cascade.hierarchy, pair
    if hierarchy.paths is not None and hierarchy.paths.checkpoint and head is None:
        cascade.models.pop(hierarchy.paths.checkpoint, None)
    if weight == 0:
        lexical, paths = None, None
    else:
        paths = Level(labels, head.checkpoint if head is not None else None,
                      PATHS_LEXICAL if lexical is not None else None, share if lexical is not None else 0.0)
        if lexical is not None:
            cascade.lexical[PATHS_LEXICAL] = lexical
    cascade.paths_weight = weight
    cascade.hierarchy = without_unused_features(dataclasses.replace(hierarchy, paths=paths, paths_weight=weight))


def without_unused_features(hierarchy: Hierarchy) -> Hierarchy:
    """The hierarchy without lexical features when no lexical model is left to read them: a
    run carries nothing it does not read."""
    if hierarchy.lexical_features is None or hierarchy.lexical_folders() != [hierarchy.lexical_features]:
        return hierarchy
    return dataclasses.replace(hierarchy, lexical_features=None)
