"""The run's decoding, settled on the validation split: greedy or joint, whichever scores
better, then the weight of the paths head.

Greedy takes the likeliest taxonomy, then its likeliest subtaxonomy; joint takes the path
with the highest product over the likeliest taxonomies, so a confident second level can
overrule an unsure first one. The paths head (the path warm-up's own top on the shared
trunk, a flat classifier over every path) can then be mixed into each path's score. Both
choices are written into hierarchy.json.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from training.evaluate import evaluate_frame


def choose_decoding(cascade: Any, val: pd.DataFrame, wanted: str, run_tmp: Path,
                    metrics: dict[str, Any]) -> dict[str, Any]:
    """Settle hierarchy.json's decoding: as asked, or whichever is better on val.

    Returns the val evaluation of each mode tried, so it is not computed again.
    """
    choice = "greedy" if wanted == "auto" and val.empty else wanted
    tried = {}
    if choice == "auto":
        scores = {}
        for mode in ("greedy", "joint"):
            cascade.decoding = mode
            tried[mode] = evaluate_frame(cascade, val)
            scores[mode] = tried[mode].scores["path_accuracy"]
        choice = "joint" if scores["joint"] > scores["greedy"] else "greedy"
        metrics["decoding_val_path_accuracy"] = scores
        print(f"decoding on val: greedy {scores['greedy']:.4f}, joint {scores['joint']:.4f} -> {choice}", flush=True)
    cascade.decoding = choice
    cascade.hierarchy = dataclasses.replace(cascade.hierarchy, decoding=choice)
    cascade.hierarchy.save(run_tmp)
    metrics["decoding"] = choice
    return tried


PATHS_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))
# The head costs about a quarter of the cascade's throughput (one more top pass per event and
# a candidate taxonomy; CLINC150, docs/results.md): auto keeps it only for a real val gain,
# not for one or two val events.
PATHS_MIN_GAIN = 0.0025


def choose_paths_weight(cascade: Any, val: pd.DataFrame, run_tmp: Path, metrics: dict[str, Any],
                        wanted: str | float = "auto", batch_size: int = 256) -> float:
    """Settle the paths head's weight: as given, or the one with the best val path accuracy,
    ties to the smaller, when that beats the cascade alone by at least ``PATHS_MIN_GAIN``.
    At 0 the run keeps no paths head (its folder is removed): it would cost a pass and
    change nothing. Returns the weight."""
    hierarchy = cascade.hierarchy
    if hierarchy.paths is None:
        return 0.0
    weights = tuple(sorted(set(PATHS_WEIGHTS) | ({float(wanted)} if wanted != "auto" else set())))
    by_weight: dict[float, float] = {}
    if not val.empty:
        events = val[["title", "description"]].to_dict("records")
        truth = list(zip(val.taxonomy, val.subtaxonomy))

        def scored(head: bool) -> list[Any]:
            # With the head on, path_scores runs it and adds its best path's taxonomy to the
            # candidates; weight 0 is scored without both, exactly as a run without the head serves.
            cascade.paths_weight = 1.0 if head else 0.0
            return [cascade.path_scores(events[i : i + batch_size], [1] * len(events[i : i + batch_size]))
                    for i in range(0, len(events), batch_size)]

        plain, mixed = scored(head=False), scored(head=True)
        for w in weights:
            cascade.paths_weight = w
            right = sum(tuple(cascade.path_answer(*chunk.of(i), 1)["path"]) == truth[start + i]
                        for start, chunk in zip(range(0, len(events), batch_size), plain if w == 0 else mixed)
                        for i in range(len(chunk.taxonomy)))
            by_weight[w] = right / len(events)
    if wanted != "auto":
        best = float(wanted)
    else:
        best = max(weights, key=lambda w: (by_weight[w], -w)) if by_weight else 0.0
        if best and by_weight[best] - by_weight[0.0] < PATHS_MIN_GAIN - 1e-9:  # 2 of 800 val events count
            best = 0.0
    if best == 0:
        cascade.models.pop(hierarchy.paths.checkpoint, None)
        shutil.rmtree(run_tmp / hierarchy.paths.checkpoint, ignore_errors=True)
        cascade.hierarchy = dataclasses.replace(hierarchy, paths=None, paths_weight=0.0)
    else:
        cascade.hierarchy = dataclasses.replace(hierarchy, paths_weight=best)
    cascade.paths_weight = best
    cascade.hierarchy.save(run_tmp)
    metrics["paths_head"] = {"weight": best, "val_path_accuracy_by_weight": {str(w): a for w, a in by_weight.items()}}
    if by_weight:
        print(f"paths head on val: path accuracy {by_weight[0.0]:.4f} without it, "
              f"{max(by_weight.values()):.4f} at best -> weight {best}", flush=True)
    return best
