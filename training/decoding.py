"""The run's decoding, settled on the validation split: greedy or joint, whichever scores better.

Greedy takes the likeliest taxonomy, then its likeliest subtaxonomy; joint takes the path
with the highest product over the likeliest taxonomies, so a confident second level can
overrule an unsure first one. The choice is written into hierarchy.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from training.evaluate import evaluate_frame


def choose_decoding(cascade: Any, val: pd.DataFrame, wanted: str, run_tmp: Path,
                    metrics: dict[str, Any]) -> dict[str, Any]:
    """Settle hierarchy.json's decoding: as asked, or whichever is better on val.

    Returns the val evaluation of each mode tried, so it is not computed again.
    """
    import dataclasses

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
