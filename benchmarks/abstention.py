#!/usr/bin/env python3
"""Abstention, measured: in-scope accuracy kept and out-of-scope text refused, per score.

    python -m benchmarks.abstention --run artifacts/clinc150 --oos ../shared/data/clinc150-oos.csv

For each score, a threshold is chosen on the in-scope val split alone (no out-of-scope row is
seen: a real user has none) to keep a share ``--coverage`` of val answers, as training does
(handlers/abstention.py); then on the in-scope test split it reports the path accuracy with
abstentions counted wrong and the coverage, and on the out-of-scope val rows of ``--oos``
the share refused. The out-of-scope train rows of ``--oos`` (and in-scope val accuracy) pick
the best score ("selection" columns), so the reported test and out-of-scope val figures of
that pick are on rows the pick did not see. Scores (higher: more in scope):
  recorded     the run's own rule from hierarchy.json, as the served answers apply it;
  scope_score  the served answers' scope score (a run whose rule reads it: handlers/scope.py,
               which is rank(path_score,maha_cls,maha_sub_cls) fitted by training);
  path_score   the plain threshold on the answer's path_score at each --coverage;
  level_agreement  the taxonomy level's top-1 probability times the top-1 probability of the
               answer's taxonomy's subtaxonomy level (each as the cascade mixes it);
  {tax,sub}_max_logit, {tax,sub}_energy  the largest logit and the logsumexp of the logits of
               the taxonomy model and of the answer's taxonomy's subtaxonomy model (captured
               with a forward hook on each top's head); energy_sum: the two energies added;
  maha_{cls,pre}   minus the smallest Mahalanobis distance to a path's centroid (shared
               covariance, fitted on the train split) of the taxonomy top's final features:
               cls, the first-position hidden state that enters the head; pre, the head's
               ReLU(pre_classifier) output that enters the classifier layer;
  maha_sub_{cls,pre}  as maha_*, on the features of the answer's taxonomy's own subtaxonomy
               top, to that taxonomy's leaf centroids, the covariance shared within the taxonomy
               and fitted on its train rows alone (their own taxonomy's top), shrunk toward a
               multiple of the identity by the Ledoit-Wolf estimate (more for a taxonomy of few
               rows); a taxonomy of one leaf has no top: the taxonomy top's features stand in;
  maha_sub_every_cls  (--every-subtaxonomy) every subtaxonomy top on every event: minus the
               smallest of maha_sub_cls's distances over every taxonomy's leaves;
  maha_path_cls  [taxonomy top cls ; the answer's subtaxonomy top cls] (train rows: their own
               taxonomy's top), minus the distance to the centroid of the answer's own path
               (shared covariance over all paths, Ledoit-Wolf shrunk);
  knn{1,10}_{cls,pre}  cosine similarity of those features to their k-th nearest train event;
  mahalanobis  as maha_*, on the mean-pooled trunk features (runs with a shared trunk only);
  tfidf_agreement  the geometric mean of path_score and the run's TF-IDF models' probability
               of the same path (runs whose levels all have a lexical model in use);
  or(A,B)      abstain when A or B is below its own threshold, both set at one val quantile
               so that the pair keeps the target val coverage;
  rank(A,B[,C])  the mean of the scores' ranks among the val scores (empirical CDF on val).
Prints a markdown table and writes it with the raw figures (JSON) to --output.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import pandas as pd
import torch

from handlers.abstention import SCOPE_SCORE, choose_min_score
from handlers.batching import IDS_CALL_COST, STATES_CALL_COST, padded_chunks
from handlers.cascade import Cascade
from handlers.encoded import Encoded
from handlers.hierarchy import Level
from handlers.precision import autocast
from table.record import split_frame
from table.events import event_dicts
from training.scope_fit import TAXONOMY_SHRINK, positions, whitening

PARTS = ("val", "test", "oos", "oos_train")  # oos: out-of-scope val rows; oos_train: the selection's
FEATURE_SCORES = ("maha_cls", "maha_pre", "knn1_cls", "knn10_cls", "knn1_pre", "knn10_pre")
COMBINED_WITH = ("maha_cls", "maha_pre", "knn10_cls", "knn10_pre", "tax_energy", "sub_energy",
                 "maha_sub_cls", "maha_sub_pre", "maha_sub_every_cls", "maha_path_cls")  # each with path_score
RANKED_TOGETHER = (("path_score", "maha_cls", "maha_sub_cls"), ("path_score", "maha_cls", "maha_path_cls"))


def answers_of(cascade: Cascade, frame: pd.DataFrame, batch: int = 256) -> list[dict[str, Any]]:
    events = event_dicts(frame)
    return [a for s in range(0, len(events), batch) for a in cascade.predict(events[s : s + batch])]


def pooled(inputs: Encoded) -> np.ndarray:
    """Per event, the mean of the trunk's hidden states over every token of every window."""
    sums = torch.zeros((len(inputs.texts), inputs.states[0].shape[-1]))
    counts = torch.zeros(len(inputs.texts))
    for state, owner in zip(inputs.states, inputs.owner):
        sums[owner] += state.float().sum(dim=0).cpu()
        counts[owner] += state.shape[0]
    return (sums / counts.unsqueeze(1)).numpy().astype(np.float64)


class TopOutputs(NamedTuple):
    """Per event (mean over its windows): a level model's logits and the head's two inputs."""

    logits: np.ndarray
    cls: np.ndarray  # the first position's hidden state after the top's last layer
    pre: np.ndarray  # ReLU(pre_classifier(cls)): what the classifier layer reads


@torch.inference_mode()
def top_outputs(cascade: Cascade, level: Level, inputs: Encoded) -> TopOutputs:
    """One level model's logits and final features, batched as ``Cascade._model_probs`` batches
    them; the features are read by forward hooks on the model's head (handlers/distilbert.py)."""
    n = len(inputs.texts)
    if level.checkpoint is None:
        return TopOutputs(np.zeros((n, 1)), np.zeros((n, 1)), np.zeros((n, 1)))
    model = cascade.models[level.checkpoint]
    seen: dict[str, torch.Tensor] = {}
    hooks = [model.head.register_forward_hook(lambda m, args, out: seen.update(cls=args[0], logits=out)),
             model.head.pre_classifier.register_forward_hook(lambda m, args, out: seen.update(pre=out.relu()))]
    windows = len(inputs.ids)
    out = {key: None for key in TopOutputs._fields}
    call_cost = IDS_CALL_COST if inputs.states is None else STATES_CALL_COST
    try:
        for chunk, input_ids, mask in padded_chunks(inputs.ids, cascade.max_batch, cascade.pad_id, call_cost):
            first = input_ids if inputs.states is None else torch.nn.utils.rnn.pad_sequence(
                [inputs.states[i] for i in chunk], batch_first=True)
            with autocast(cascade.precision, cascade.device):
                model(first.to(cascade.device), mask.to(cascade.device))
            for key in out:
                value = seen[key].float().cpu()
                if out[key] is None:
                    out[key] = torch.zeros((windows, value.shape[1]))
                out[key][torch.tensor(chunk)] = value
    finally:
        for hook in hooks:
            hook.remove()
    owner = torch.tensor(inputs.owner if inputs.owner is not None else list(range(windows)))
    counts = torch.bincount(owner, minlength=n).unsqueeze(1)
    return TopOutputs(*(torch.zeros((n, out[key].shape[1])).index_add_(0, owner, out[key]).div_(counts)
                        .numpy().astype(np.float64) for key in TopOutputs._fields))


def subtaxonomy_outputs(cascade: Cascade, taxonomy: str, inputs: Encoded, tax: TopOutputs) -> TopOutputs:
    """The subtaxonomy top of ``taxonomy`` on ``inputs``; a taxonomy of one leaf has no model, so
    its features are the taxonomy top's (``tax``, of the same events) and its logits one zero."""
    level = cascade.hierarchy.subtaxonomies[taxonomy]
    out = top_outputs(cascade, level, inputs)
    return out if level.checkpoint is not None else out._replace(cls=tax.cls, pre=tax.pre)


def part_outputs(cascade: Cascade, frame: pd.DataFrame, routes: list[str] | None, probs: bool = False,
                 every: bool = False, batch: int = 256) -> dict[str, np.ndarray]:
    """Per event of ``frame``: pooled trunk features and the taxonomy top's logits and features;
    with ``routes`` (per event a taxonomy: its answer's, or a train row's own), that taxonomy's
    subtaxonomy top's logits and features (sub_*); with ``probs``, both levels' top-1
    probabilities as the cascade mixes them; with ``every``, the features of every taxonomy's
    subtaxonomy top (every_cls: events x taxonomies x dim, float32)."""
    hierarchy, events = cascade.hierarchy, event_dicts(frame)
    rows: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(events), batch):
        inputs = cascade.encode(events[start : start + batch])
        tax = top_outputs(cascade, hierarchy.taxonomy, inputs)
        got = {"tax_logits": tax.logits, "cls": tax.cls, "pre": tax.pre}
        if inputs.states is not None:
            got["pooled"] = pooled(inputs)
        if probs:
            got["tax_top1"] = cascade.level_probs(hierarchy.taxonomy, inputs).max(dim=1).values.numpy()
        if routes is not None:
            mine = routes[start : start + batch]
            got.update(sub_max_logit=np.zeros(len(mine)), sub_energy=np.zeros(len(mine)),
                       sub_cls=np.zeros_like(tax.cls), sub_pre=np.zeros_like(tax.pre))
            if probs:
                got["sub_top1"] = np.zeros(len(mine))
            for taxonomy, members in positions(mine).items():
                part = inputs.take(members)
                sub = subtaxonomy_outputs(cascade, taxonomy, part, TopOutputs(*(x[members] for x in tax)))
                got["sub_max_logit"][members] = sub.logits.max(axis=1)
                got["sub_energy"][members] = torch.logsumexp(torch.from_numpy(sub.logits), dim=1).numpy()
                got["sub_cls"][members], got["sub_pre"][members] = sub.cls, sub.pre
                if probs:
                    level = hierarchy.subtaxonomies[taxonomy]
                    got["sub_top1"][members] = cascade.level_probs(level, part).max(dim=1).values.numpy()
        if every:
            got["every_cls"] = np.stack([subtaxonomy_outputs(cascade, taxonomy, inputs, tax).cls.astype(np.float32)
                                         for taxonomy in hierarchy.taxonomy.labels], axis=1)
        for key, value in got.items():
            rows.setdefault(key, []).append(value)
    return {key: np.concatenate(value) for key, value in rows.items()}


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
    for taxonomy, members in positions([answer["path"][0] for answer in answers]).items():
        level = hierarchy.subtaxonomies[taxonomy]
        if len(level.labels) > 1:
            probs = cascade.lexical[level.lexical].predict_proba([texts[i] for i in members])
            for row, i in enumerate(members):
                lexical[i] *= probs[row, level.labels.index(answers[i]["path"][1])]
    return np.sqrt(lexical * np.array([a["path_score"] for a in answers]))


class Mahalanobis:
    """Class centroids and one shared covariance of train features, shrunk toward a multiple of
    the identity so that it inverts: by ``shrink`` times its mean eigenvalue added, or (``shrink``
    None) by the Ledoit-Wolf estimate, cov' = (1 - s) cov + s mean-eigenvalue I, whose s grows as
    the rows get few against the dimensions (``self.shrink`` keeps the s used).

    What a run would store: the centroids (classes x dim) and a whitening matrix (dim x dim)."""

    def __init__(self, features: np.ndarray, labels: list[str], shrink: float | None = TAXONOMY_SHRINK) -> None:
        self.names, means, self.whiten, self.shrink = whitening(features, labels, shrink)
        self.centroids = means @ self.whiten  # precision = W Wᵀ: (x - m)ᵀ precision (x - m) = |x W - m W|²
        self.centroid_norms = (self.centroids**2).sum(axis=1)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Squared distances, events x centroids (in ``self.names`` order)."""
        z = features @ self.whiten
        return (z**2).sum(axis=1, keepdims=True) - 2 * z @ self.centroids.T + self.centroid_norms

    def score(self, features: np.ndarray) -> np.ndarray:
        """Minus the smallest squared distance to a centroid: higher is more in scope."""
        return -self.distances(features).min(axis=1)

    def score_of(self, features: np.ndarray, labels: list[str]) -> np.ndarray:
        """Minus the squared distance of each event to its own label's centroid (-inf for a label
        that had no train row)."""
        distances = np.hstack([self.distances(features), np.full((len(features), 1), np.inf)])
        column = {name: c for c, name in enumerate(self.names)}
        return -distances[np.arange(len(features)), [column.get(label, len(self.names)) for label in labels]]


class PerTaxonomy:
    """One ``Mahalanobis`` per taxonomy, on features of that taxonomy's own subtaxonomy top: its
    leaves' centroids and a covariance of its train rows alone, Ledoit-Wolf shrunk (a taxonomy of
    few rows is shrunk the more). What a run would store: each taxonomy's centroids and whitening."""

    def __init__(self, features: np.ndarray, taxonomies: list[str], leaves: list[str]) -> None:
        self.models = {taxonomy: Mahalanobis(features[members], [leaves[i] for i in members], shrink=None)
                       for taxonomy, members in positions(taxonomies).items()}

    def score(self, features: np.ndarray, taxonomies: list[str]) -> np.ndarray:
        """Per event, its taxonomy's model's score of its features (-inf for a taxonomy with no
        train row)."""
        out = np.full(len(features), -np.inf)
        for taxonomy, members in positions(taxonomies).items():
            if taxonomy in self.models:
                out[members] = self.models[taxonomy].score(features[members])
        return out

    def score_every(self, every: np.ndarray, taxonomies: list[str]) -> np.ndarray:
        """The best score over every taxonomy (``every``: events x ``taxonomies`` x dim, each
        taxonomy's top's features): minus the smallest distance to any leaf."""
        return np.max([self.models[t].score(every[:, j].astype(np.float64)) if t in self.models
                       else np.full(len(every), -np.inf) for j, t in enumerate(taxonomies)], axis=0)

    def stored_mb(self) -> float:
        return sum(4 * (m.centroids.size + m.whiten.size) for m in self.models.values()) / 1e6


class NearestNeighbours:
    """Cosine similarity to the k-th nearest of the (L2-normalised) train features; what a run
    would store: the train features themselves (events x dim)."""

    def __init__(self, features: np.ndarray, k: int) -> None:
        self.train = torch.from_numpy(_normalised(features)).float()
        self.k = k

    def score(self, features: np.ndarray, chunk: int = 1024) -> np.ndarray:
        query = torch.from_numpy(_normalised(features)).float()
        return np.concatenate([(q @ self.train.T).topk(self.k, dim=1).values[:, -1].double().numpy()
                               for q in query.split(chunk)])


def _normalised(features: np.ndarray) -> np.ndarray:
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


Scores = dict[str, np.ndarray]  # by part (PARTS), one score per event


def kept_by_threshold(scores: Scores, coverage: float) -> dict[str, np.ndarray]:
    threshold = choose_min_score(list(scores["val"]), coverage)
    return {part: values >= threshold for part, values in scores.items()}


def kept_by_either(a: Scores, b: Scores, coverage: float) -> tuple[dict[str, np.ndarray], tuple[float, float]]:
    """Kept when both scores clear their own threshold, each the same val quantile, the highest
    that keeps at least ``coverage`` of val together (bisection on that quantile); and the two
    thresholds."""
    def thresholds(q: float) -> tuple[float, float]:
        return choose_min_score(list(a["val"]), q), choose_min_score(list(b["val"]), q)

    def kept(q: float) -> dict[str, np.ndarray]:
        t_a, t_b = thresholds(q)
        return {part: (a[part] >= t_a) & (b[part] >= t_b) for part in a}

    low, high = coverage, 1.0  # kept(1.0) keeps all
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (low, mid) if kept(mid)["val"].mean() >= coverage else (mid, high)
    return kept(high), thresholds(high)


def rank_average(*scores: Scores) -> Scores:
    """The mean of each score's empirical CDF over the val scores."""
    def ranks(one: Scores) -> Scores:
        ordered = np.sort(one["val"])
        return {part: np.searchsorted(ordered, values, side="right") / len(ordered) for part, values in one.items()}

    each = [ranks(one) for one in scores]
    return {part: sum(r[part] for r in each) / len(each) for part in each[0]}


def measure(kept: dict[str, np.ndarray], right: dict[str, np.ndarray]) -> dict[str, float]:
    return {"val_coverage": float(kept["val"].mean()), "test_coverage": float(kept["test"].mean()),
            "test_accuracy_abstain_wrong": float((right["test"] & kept["test"]).mean()),
            "oos_refused": float(1 - kept["oos"].mean()),
            "val_accuracy_abstain_wrong": float((right["val"] & kept["val"]).mean()),
            "oos_train_refused": float(1 - kept["oos_train"].mean())}


def per_event_ms(score: Callable[[np.ndarray], Any], features: np.ndarray, events: int = 200) -> float:
    """Median milliseconds to score one event alone (its features already computed)."""
    times = []
    for row in features[:events]:
        start = time.perf_counter()
        score(row[None, :])
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def all_scores(cascade: Cascade, frame: pd.DataFrame, parts: dict[str, pd.DataFrame],
               answers: dict[str, list[dict[str, Any]]], every: bool = False
               ) -> tuple[dict[str, Scores], dict[str, dict[str, Any]]]:
    """Every score by name and part, and per score what it costs per event and needs stored;
    ``every``: also maha_sub_every_cls (every subtaxonomy top runs on every event)."""
    routes = {part: [a["path"][0] for a in answers[part]] for part in parts}
    outputs = {part: part_outputs(cascade, rows, routes[part], probs=True, every=every) for part, rows in parts.items()}
    methods: dict[str, Scores] = {}
    cost: dict[str, dict[str, Any]] = {}

    def add(name: str, per_part: Callable[[str], np.ndarray], ms: float | None, stored: str) -> None:
        """``ms`` None: read from what the served pass computes anyway."""
        methods[name] = {part: per_part(part) for part in parts}
        cost[name] = {"ms_per_event": ms, "stored": stored}

    add("path_score", lambda p: np.array([a["path_score"] for a in answers[p]]), None, "nothing (the answer's)")
    if all(SCOPE_SCORE in a for a in answers["val"]):
        add(SCOPE_SCORE, lambda p: np.array([a[SCOPE_SCORE] for a in answers[p]]), None,
            "the run's scope model (handlers/scope.py), computed by the served pass")
    add("level_agreement", lambda p: outputs[p]["tax_top1"] * outputs[p]["sub_top1"], None,
        "nothing (the levels' probabilities are computed)")
    energy = {p: torch.logsumexp(torch.from_numpy(outputs[p]["tax_logits"]), dim=1).numpy() for p in parts}
    add("tax_max_logit", lambda p: outputs[p]["tax_logits"].max(axis=1), None, "nothing (hook on the head)")
    add("tax_energy", lambda p: energy[p], None, "nothing (hook on the head)")
    add("sub_max_logit", lambda p: outputs[p]["sub_max_logit"], None, "nothing (hook on the head)")
    add("sub_energy", lambda p: outputs[p]["sub_energy"], None, "nothing (hook on the head)")
    add("energy_sum", lambda p: energy[p] + outputs[p]["sub_energy"], None, "nothing (hook on the head)")
    train = frame[frame.split == "train"]
    train_out = part_outputs(cascade, train, list(train.taxonomy))
    paths = [f"{t} / {s}" for t, s in zip(train.taxonomy, train.subtaxonomy)]
    for feature in ("cls", "pre"):
        dim = train_out[feature].shape[1]
        model = Mahalanobis(train_out[feature], paths)
        ms = per_event_ms(model.score, outputs["test"][feature])
        add(f"maha_{feature}", lambda p, m=model, f=feature: m.score(outputs[p][f]), ms,
            f"{len(model.centroids)} centroids x {dim} + a {dim}x{dim} whitening matrix (float32: "
            f"{4 * (len(model.centroids) * dim + dim * dim) / 1e6:.2f} MB)")
        for k in (1, 10):
            knn = NearestNeighbours(train_out[feature], k)
            ms = per_event_ms(knn.score, outputs["test"][feature])
            add(f"knn{k}_{feature}", lambda p, m=knn, f=feature: m.score(outputs[p][f]), ms,
                f"{len(train)} train features x {dim} (float32: {4 * len(train) * dim / 1e6:.1f} MB)")
        sub = PerTaxonomy(train_out[f"sub_{feature}"], list(train.taxonomy), list(train.subtaxonomy))
        first = routes["test"][0]
        ms = per_event_ms(lambda row, m=sub: m.score(row, [first]), outputs["test"][f"sub_{feature}"])
        shrinks = ", ".join(f"{m.shrink:.3f}" for m in sub.models.values())
        add(f"maha_sub_{feature}", lambda p, m=sub, f=feature: m.score(outputs[p][f"sub_{f}"], routes[p]), ms,
            f"per taxonomy, its leaves' centroids + a whitening matrix (float32: {sub.stored_mb():.2f} MB; "
            f"Ledoit-Wolf shrinkage {shrinks})")
        if feature == "cls" and every:
            labels = cascade.hierarchy.taxonomy.labels
            ms = per_event_ms(lambda row, m=sub: m.score_every(row.reshape(1, len(labels), -1), labels),
                              outputs["test"]["every_cls"].reshape(len(parts["test"]), -1))
            add("maha_sub_every_cls", lambda p, m=sub: m.score_every(outputs[p]["every_cls"], labels), ms,
                f"as maha_sub_cls ({sub.stored_mb():.2f} MB); every subtaxonomy top runs on every event")
    joined = {p: np.hstack([outputs[p]["cls"], outputs[p]["sub_cls"]]) for p in parts}
    model = Mahalanobis(np.hstack([train_out["cls"], train_out["sub_cls"]]), paths, shrink=None)
    answer_paths = {p: [" / ".join(a["path"]) for a in answers[p]] for p in parts}
    ms = per_event_ms(lambda row, m=model: m.score_of(row, answer_paths["test"][:1]), joined["test"])
    dim = joined["test"].shape[1]
    add("maha_path_cls", lambda p, m=model: m.score_of(joined[p], answer_paths[p]), ms,
        f"{len(model.centroids)} centroids x {dim} + a {dim}x{dim} whitening matrix (float32: "
        f"{4 * (model.centroids.size + model.whiten.size) / 1e6:.2f} MB; Ledoit-Wolf shrinkage {model.shrink:.3f})")
    agreement = {part: tfidf_agreement(cascade, rows, answers[part]) for part, rows in parts.items()}
    if all(v is not None for v in agreement.values()):
        add("tfidf_agreement", lambda p: agreement[p], None, "nothing (the TF-IDF models are in the run)")
    if "pooled" in train_out:
        model = Mahalanobis(train_out["pooled"], paths)
        dim = train_out["pooled"].shape[1]
        ms = per_event_ms(model.score, outputs["test"]["pooled"])
        add("mahalanobis", lambda p: model.score(outputs[p]["pooled"]), ms,
            f"{len(model.centroids)} centroids x {dim} + a {dim}x{dim} whitening matrix; mean-pooled trunk states")
    return methods, cost


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run directory (its own data and split are read)")
    p.add_argument("--oos", required=True,
                   help="out-of-scope rows (split,title,description); val rows are reported, train rows pick")
    p.add_argument("--coverage", type=float, nargs="+", default=[0.97, 0.98, 0.99],
                   help="target shares of in-scope val answers kept")
    p.add_argument("--output", default="abstention.json", help="where to write the table and figures")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--every-subtaxonomy", action="store_true",
                   help="also maha_sub_every_cls: every subtaxonomy top runs on every event (slower)")
    p.add_argument("--target-accuracy", type=float, default=0.955,
                   help="the pick: most out-of-scope train rows refused among rows at least this accurate on val")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cascade = Cascade(args.run)
    frame = split_frame(args.run)
    oos = pd.read_csv(args.oos, dtype=str, keep_default_na=False)
    parts = {"val": frame[frame.split == "val"], "test": frame[frame.split == "test"],
             "oos": oos[oos.split == "val"], "oos_train": oos[oos.split == "train"]}
    answers = {name: answers_of(cascade, rows) for name, rows in parts.items()}
    right = {name: np.array([tuple(a["path"]) == t for a, t in zip(answers[name], zip(parts[name].taxonomy,
                                                                                  parts[name].subtaxonomy))])
             for name in ("val", "test")}
    methods, cost = all_scores(cascade, frame, parts, answers, args.every_subtaxonomy)
    rows = [{"method": "none", "coverage": None, **measure(kept_by_threshold(methods["path_score"], 1.0), right)}]
    rule = cascade.hierarchy.abstention
    rows.append({"method": "recorded", "coverage": rule.coverage,
                 **measure({part: np.array([not a["abstain"] for a in answers[part]]) for part in parts}, right)})
    for coverage in args.coverage:
        for name, scores in methods.items():
            rows.append({"method": name, "coverage": coverage, **measure(kept_by_threshold(scores, coverage), right)})
        for other in (name for name in COMBINED_WITH if name in methods):
            rows.append({"method": f"or(path_score,{other})", "coverage": coverage,
                         **measure(kept_by_either(methods["path_score"], methods[other], coverage)[0], right)})
            rows.append({"method": f"rank(path_score,{other})", "coverage": coverage,
                         **measure(kept_by_threshold(rank_average(methods["path_score"], methods[other]), coverage),
                                   right)})
        for names in RANKED_TOGETHER:
            rows.append({"method": f"rank({','.join(names)})", "coverage": coverage,
                         **measure(kept_by_threshold(rank_average(*(methods[n] for n in names)), coverage), right)})
    rows.sort(key=lambda r: (r["method"] not in ("none", "recorded"), r["method"], r["coverage"] or 0))
    table = ["| score | target val coverage | test coverage | in-scope test acc (abstain = wrong) | "
             "out-of-scope val refused | selection: in-scope val acc | selection: out-of-scope train refused |",
             "|---|---|---|---|---|---|---|"]
    table += [f"| {r['method']} | {r['coverage'] if r['coverage'] is not None else '–'} | "
              f"{100 * r['test_coverage']:.2f} | {100 * r['test_accuracy_abstain_wrong']:.2f} | "
              f"{100 * r['oos_refused']:.1f} | {100 * r['val_accuracy_abstain_wrong']:.2f} | "
              f"{100 * r['oos_train_refused']:.1f} |" for r in rows]
    eligible = [r for r in rows if r["coverage"] and r["val_accuracy_abstain_wrong"] >= args.target_accuracy]
    pick = max(eligible, key=lambda r: (r["oos_train_refused"], r["val_accuracy_abstain_wrong"]), default=None)
    costs = ["| score | ms per event (features already computed) | stored in a run |", "|---|---|---|"]
    costs += [f"| {name} | {'–' if c['ms_per_event'] is None else format(c['ms_per_event'], '.3f')} | {c['stored']} |"
              for name, c in cost.items()]
    print(f"{args.run}: {len(parts['test'])} in-scope test rows, {len(parts['oos'])} out-of-scope val rows, "
          f"{len(parts['oos_train'])} out-of-scope train rows (selection only)")
    print("\n".join(table))
    print("\n".join(costs))
    if pick is not None:
        print(f"pick (in-scope val acc >= {100 * args.target_accuracy:.1f}, most out-of-scope train rows refused): "
              f"{pick['method']} at {pick['coverage']}: test {100 * pick['test_accuracy_abstain_wrong']:.2f}, "
              f"out-of-scope val refused {100 * pick['oos_refused']:.1f}")
    Path(args.output).write_text(json.dumps({"run": args.run, "rows": rows, "cost": cost, "pick": pick,
                                             "table": table, "costs": costs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
