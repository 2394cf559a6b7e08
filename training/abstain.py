"""The run's abstention rule, settled on the validation split (its curve: training/plots.py).

A threshold on the rule's score is chosen so that the target share of val answers is kept
(handlers/abstention.py); it goes into hierarchy.json, so evaluation, batch prediction and
serving all apply it. The default score, ``scope`` (handlers/scope.py), is fitted on the train
split and ranked against val's (training/scope_fit.py); ``path_score`` reads the answers'
path_score alone. Out-of-scope rows are not needed: the rule sees in-scope rows only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from handlers.abstention import SCOPE_SCORE, Abstention, answer_score, choose_min_score, mark, scores
from handlers.cascade import Cascade
from handlers.run_layout import SCOPE_DIR
from handlers.scope import SIGNALS, ScopeModel
from table.events import event_dicts
from table.scoring import Evaluation, abstention_scores
from training.scope_fit import fit_scope, scope_possible

OPERATING_POINTS = (0.9, 0.95, 0.97, 0.98, 0.985, 0.99, 0.995)  # val coverages the report tabulates


def choose_abstention(cascade: Cascade, run_dir: Path, train: pd.DataFrame, val: pd.DataFrame, result: Evaluation,
                      coverage: float | None, score: str, metrics: dict[str, Any]) -> Abstention:
    """Settle the cascade's rule on val's evaluation (its answers marked again, its scores
    updated; the scope model, when the rule reads it, written to the run) and return it."""
    answers = result.answers
    if coverage is not None and score == "scope":
        if scope_possible(cascade) and answers and not train.empty:
            add_scope_scores(cascade, run_dir, train, val, answers)
        else:
            print("abstention: no scope score (the taxonomy level runs no model, or no train rows), "
                  "so the rule reads path_score", flush=True)
            score = "path_score"
    min_score = choose_min_score([answer_score(a) for a in answers], coverage)
    rule = Abstention()
    if min_score > 0:
        rule = Abstention(min_score, coverage, score, SCOPE_DIR if score == "scope" else None)
    cascade.hierarchy = dataclasses.replace(cascade.hierarchy, abstention=rule)
    if rule.folder is None:
        cascade.scope, cascade.with_first = None, False
        for answer in answers:
            answer.pop(SCOPE_SCORE, None)
    mark(answers, rule)
    metrics["abstention"] = {"score": rule.score, "min_score": rule.min_score, "target_coverage": coverage,
                             "operating_points": operating_points(val, answers) if rule.min_score > 0 else []}
    if answers:
        kept = result.scores["abstention"] = abstention_scores(list(val.taxonomy), list(val.subtaxonomy), answers)
        print(f"abstention on val: {rule.score} below {rule.min_score:.6f} abstains "
              f"(coverage {kept['coverage']:.4f}, target {coverage})", flush=True)
    return rule


def operating_points(val: pd.DataFrame, answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rule's other thresholds on val: per coverage in ``OPERATING_POINTS``, the min_score
    that keeps it and val's path accuracy then, for a reviewer choosing another (a request's
    min_score, or hierarchy.json's, without training again)."""
    values = [answer_score(a) for a in answers]
    right = [tuple(a["path"]) == t for a, t in zip(answers, zip(val.taxonomy, val.subtaxonomy))]
    points = []
    for coverage in OPERATING_POINTS:
        threshold = choose_min_score(values, coverage)
        kept = scores(right, [v < threshold for v in values])
        points.append({"coverage": coverage, "min_score": threshold,
                       "val_accuracy_abstain_wrong": kept["accuracy_abstain_wrong"],
                       "val_accuracy_when_answered": kept["accuracy_when_answered"]})
    return points


def add_scope_scores(cascade: Cascade, run_dir: Path, train: pd.DataFrame, val: pd.DataFrame,
                     answers: list[dict[str, Any]], batch_size: int = 256) -> None:
    """Fit the scope model on train, rank against val's signals, write it to the run and give
    the cascade and val's answers their scope scores."""
    scope = fit_scope(cascade, train)
    cascade.with_first = True
    events, parts = event_dicts(val), []
    for start in range(0, len(events), batch_size):
        chunk = events[start : start + batch_size]
        again, scores = cascade.path_answers(chunk, [1] * len(chunk))
        if [a["path"] for a in again] != [a["path"] for a in answers[start : start + batch_size]]:
            raise RuntimeError("val's answers changed between two passes of the same cascade")
        parts.append(scope.answer_signals(again, scores, cascade.hierarchy.taxonomy.labels))
    signals = {name: torch.cat([part[name] for part in parts]) for name in SIGNALS}
    scope = ScopeModel(scope.taxonomy, scope.subtaxonomies, val=signals)
    scope.save(run_dir / SCOPE_DIR)
    cascade.scope = scope
    scope.assign(answers, signals)
