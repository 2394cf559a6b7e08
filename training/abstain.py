"""The run's abstention rule, settled on the validation split (its curve: training/plots.py).

A threshold on the answers' ``path_score`` is chosen so that the target share of val answers
is kept (handlers/abstention.py); it goes into hierarchy.json, so evaluation, batch
prediction and serving all apply it. Out-of-scope rows are not needed: the rule sees only
the scores of in-scope val answers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from handlers.abstention import Abstention, answer_score, choose_min_score, mark
from handlers.cascade import Cascade
from table.scoring import Evaluation, abstention_scores


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
