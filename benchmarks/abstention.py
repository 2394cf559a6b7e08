#!/usr/bin/env python3
"""Abstention, measured: in-scope accuracy kept and out-of-scope text refused, per score.

    python -m benchmarks.abstention --run artifacts/clinc150 --oos ../shared/data/clinc150-oos.csv

For each score, a threshold is chosen on the in-scope val split alone (no out-of-scope row is
seen: a real user has none) to keep a share ``--coverage`` of val answers, as training does
(handlers/abstention.py); then on the in-scope test split it reports the path accuracy with
abstentions counted wrong and the coverage, and on the out-of-scope val rows of ``--oos``
the share refused. Scores (higher: more in scope):
  recorded     the run's own rule from hierarchy.json (path_score, its recorded threshold);
  path_score   the plain threshold on the answer's path_score at each --coverage;
  mahalanobis  minus the smallest Mahalanobis distance of the event's mean-pooled trunk
               features to a path's centroid (shared covariance, fitted on the train split);
               runs with a shared trunk only;
  tfidf_agreement  the geometric mean of path_score and the run's TF-IDF models' probability
               of the same path (runs whose levels all have a lexical model in use).
Prints a markdown table and writes it with the raw figures (JSON) to --output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from handlers.abstention import choose_min_score
from handlers.cascade import Cascade
from table.record import split_frame
from table.events import event_dicts


def answers_of(cascade: Cascade, frame: pd.DataFrame, batch: int = 256) -> list[dict[str, Any]]:
    events = event_dicts(frame)
    return [a for s in range(0, len(events), batch) for a in cascade.predict(events[s : s + batch])]


def pooled_features(cascade: Cascade, frame: pd.DataFrame, batch: int = 256) -> np.ndarray:
    """Per event, the mean of the trunk's hidden states over every token of every window."""
    events = event_dicts(frame)
    out = []
    for start in range(0, len(events), batch):
        inputs = cascade.encode(events[start : start + batch])
        sums = torch.zeros((len(inputs.texts), inputs.states[0].shape[-1]))
        counts = torch.zeros(len(inputs.texts))
        for state, owner in zip(inputs.states, inputs.owner):
            sums[owner] += state.float().sum(dim=0).cpu()
            counts[owner] += state.shape[0]
        out.append((sums / counts.unsqueeze(1)).numpy())
    return np.concatenate(out).astype(np.float64)


def tfidf_agreement(cascade: Cascade, frame: pd.DataFrame, answers: list[dict[str, Any]]) -> np.ndarray | None:
    """Per event, the geometric mean of its path_score and the TF-IDF models' probability of the
    same path (taxonomy model times that taxonomy's subtaxonomy model): a second opinion from
    another kind of model. None when the run's levels have no lexical model loaded."""
    hierarchy = cascade.hierarchy
    levels = [hierarchy.taxonomy, *hierarchy.subtaxonomies.values()]
    if any(level.lexical not in cascade.lexical for level in levels if len(level.labels) > 1):
        return None
    texts = [hierarchy.text.format(e) for e in event_dicts(frame)]
    lexical = np.ones(len(texts))
    tax = cascade.lexical[hierarchy.taxonomy.lexical].predict_proba(texts)
    for i, answer in enumerate(answers):
        lexical[i] = tax[i, hierarchy.taxonomy.labels.index(answer["path"][0])]
    by_taxonomy: dict[str, list[int]] = {}
    for i, answer in enumerate(answers):
        by_taxonomy.setdefault(answer["path"][0], []).append(i)
    for taxonomy, members in by_taxonomy.items():
        level = hierarchy.subtaxonomies[taxonomy]
        if len(level.labels) > 1:
            probs = cascade.lexical[level.lexical].predict_proba([texts[i] for i in members])
            for row, i in enumerate(members):
                lexical[i] *= probs[row, level.labels.index(answers[i]["path"][1])]
    return np.sqrt(lexical * np.array([a["path_score"] for a in answers]))


class Mahalanobis:
    """Class centroids and one shared covariance (slightly shrunk, so it inverts) of train features."""

    def __init__(self, features: np.ndarray, labels: list[str], shrink: float = 1e-3) -> None:
        names = sorted(set(labels))
        index = np.array([names.index(label) for label in labels])
        self.means = np.stack([features[index == c].mean(axis=0) for c in range(len(names))])
        centred = features - self.means[index]
        cov = centred.T @ centred / len(features)
        cov += shrink * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
        self.precision = np.linalg.inv(cov)

    def score(self, features: np.ndarray) -> np.ndarray:
        """Minus the smallest squared distance to a centroid: higher is more in scope."""
        best = np.full(len(features), np.inf)
        for mean in self.means:
            d = features - mean
            best = np.minimum(best, np.einsum("ij,jk,ik->i", d, self.precision, d))
        return -best


def measure(scores: dict[str, np.ndarray], right: np.ndarray, threshold: float) -> dict[str, float]:
    kept_test = scores["test"] >= threshold
    return {"threshold": float(threshold), "val_coverage": float((scores["val"] >= threshold).mean()),
            "test_coverage": float(kept_test.mean()),
            "test_accuracy_abstain_wrong": float((right & kept_test).mean()),
            "oos_refused": float((scores["oos"] < threshold).mean())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run directory (its own data and split are read)")
    p.add_argument("--oos", required=True, help="out-of-scope rows (split,title,description); val rows are used")
    p.add_argument("--coverage", type=float, nargs="+", default=[0.97, 0.98, 0.99],
                   help="target shares of in-scope val answers kept")
    p.add_argument("--output", default="abstention.json", help="where to write the table and figures")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cascade = Cascade(args.run)
    frame = split_frame(args.run)
    oos = pd.read_csv(args.oos, dtype=str, keep_default_na=False)
    oos = oos[oos.split == "val"]
    parts = {"val": frame[frame.split == "val"], "test": frame[frame.split == "test"], "oos": oos}
    answers = {name: answers_of(cascade, rows) for name, rows in parts.items()}
    test = parts["test"]
    right = np.array([tuple(a["path"]) == t for a, t in zip(answers["test"], zip(test.taxonomy, test.subtaxonomy))])
    methods = {"path_score": {k: np.array([a["path_score"] for a in v]) for k, v in answers.items()}}
    agreement = {k: tfidf_agreement(cascade, rows, answers[k]) for k, rows in parts.items()}
    if all(v is not None for v in agreement.values()):
        methods["tfidf_agreement"] = agreement
    if cascade.trunk is not None:
        train = frame[frame.split == "train"]
        model = Mahalanobis(pooled_features(cascade, train), [f"{t} / {s}" for t, s in zip(train.taxonomy,
                                                                                           train.subtaxonomy)])
        methods["mahalanobis"] = {k: model.score(pooled_features(cascade, rows)) for k, rows in parts.items()}
    rows = [{"method": "none", "coverage": None, **measure(methods["path_score"], right, 0.0)}]
    rule = cascade.hierarchy.abstention
    rows.append({"method": "recorded", "coverage": rule.coverage,
                 **measure(methods["path_score"], right, rule.min_score)})
    for name, scores in methods.items():
        for coverage in args.coverage:
            rows.append({"method": name, "coverage": coverage,
                         **measure(scores, right, choose_min_score(list(scores["val"]), coverage))})
    table = ["| score | target val coverage | test coverage | in-scope test acc (abstain = wrong) | "
             "out-of-scope val refused |", "|---|---|---|---|---|"]
    table += [f"| {r['method']} | {r['coverage'] if r['coverage'] is not None else '–'} | "
              f"{100 * r['test_coverage']:.2f} | {100 * r['test_accuracy_abstain_wrong']:.2f} | "
              f"{100 * r['oos_refused']:.1f} |" for r in rows]
    print(f"{args.run}: {len(test)} in-scope test rows, {len(oos)} out-of-scope val rows")
    print("\n".join(table))
    Path(args.output).write_text(json.dumps({"run": args.run, "rows": rows, "table": table}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
