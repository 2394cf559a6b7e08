"""Fitting the scope model that abstention reads (handlers/scope.py) on the train split.

The taxonomy model's [CLS] state of every train row, and the state of the row's own
taxonomy's subtaxonomy model, in one pass over the train split; then the centroids and a
whitening matrix: one covariance over every path for the taxonomy state (shrunk by 1e-3 of its
mean eigenvalue), one per taxonomy over its leaves for the subtaxonomy state (shrunk by the
Ledoit-Wolf estimate: a taxonomy of few rows needs more). benchmarks/abstention.py measured
these choices against others on out-of-scope text (docs/results.md).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
import torch
from sklearn.covariance import ledoit_wolf_shrinkage

from handlers.cascade import Cascade
from handlers.hierarchy import path_label
from handlers.scope import Distances, ScopeModel
from table.events import event_dicts

TAXONOMY_SHRINK = 1e-3


def positions(keys: list[str]) -> dict[str, list[int]]:
    """Each distinct key's positions in ``keys``, in order of first appearance."""
    out: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        out.setdefault(key, []).append(i)
    return out


def whitening(features: np.ndarray, labels: list[str], shrink: float | None) -> tuple[list[str], np.ndarray,
                                                                                      np.ndarray, float]:
    """Class names (sorted), their means, and W with W Wᵀ the inverse of the shared covariance,
    shrunk toward a multiple of the identity so that it inverts: cov' = (1 - s) cov + s m I (m:
    its mean eigenvalue), s the Ledoit-Wolf estimate when ``shrink`` is None, else cov + shrink m I.
    Returns the s used too."""
    names = sorted(set(labels))
    index = np.array([names.index(label) for label in labels])
    means = np.stack([features[index == c].mean(axis=0) for c in range(len(names))])
    centred = features - means[index]
    cov = centred.T @ centred / len(features)
    scale = max(np.trace(cov) / cov.shape[0], 1e-12) * np.eye(cov.shape[0])
    if shrink is None:
        s = float(ledoit_wolf_shrinkage(centred, assume_centered=True)) if len(features) > 1 else 1.0
        s = s if np.isfinite(s) else 1.0
        cov = (1 - s) * cov + s * scale
    else:
        s = shrink
        cov = cov + shrink * scale
    return names, means, np.linalg.cholesky(np.linalg.inv(cov)), s


def fitted_distances(features: np.ndarray, labels: list[str], shrink: float | None) -> Distances:
    _, means, whiten, _ = whitening(features, labels, shrink)
    return Distances(torch.from_numpy(whiten), torch.from_numpy(means @ whiten))


def train_states(cascade: Cascade, frame: pd.DataFrame, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the taxonomy model's [CLS] state, and that of its own taxonomy's subtaxonomy
    model (the taxonomy state where that level has no model), as the cascade computes them."""
    hierarchy, events = cascade.hierarchy, event_dicts(frame)
    taxonomies = list(frame.taxonomy)
    tax_rows, sub_rows = [], []
    started, shown = time.perf_counter(), 0.0
    for start in range(0, len(events), batch):
        inputs = cascade.encode(events[start : start + batch])
        tax = cascade.level_pass(hierarchy.taxonomy, inputs, with_first=True).first
        if tax is None:
            raise ValueError("the taxonomy level runs no model: the scope score has no [CLS] state to read")
        sub = tax.clone()
        for taxonomy, members in positions(taxonomies[start : start + batch]).items():
            first = cascade.level_pass(hierarchy.subtaxonomies[taxonomy], inputs.take(members), with_first=True).first
            if first is not None:
                sub[members] = first
        tax_rows.append(tax.double().numpy())
        sub_rows.append(sub.double().numpy())
        done = min(start + batch, len(events))
        if time.perf_counter() - shown > 10 or done == len(events):
            shown = time.perf_counter()
            print(f"scope model: [CLS] states of {done}/{len(events)} train rows ({shown - started:.0f}s)",
                  file=sys.stderr, flush=True)
    return np.concatenate(tax_rows), np.concatenate(sub_rows)


def fit_scope(cascade: Cascade, train: pd.DataFrame) -> ScopeModel:
    """The scope model's distances, fitted on ``train`` (no val signals yet)."""
    tax, sub = train_states(cascade, train)
    taxonomies, leaves = list(train.taxonomy), list(train.subtaxonomy)
    paths = [path_label(t, s) for t, s in zip(taxonomies, leaves)]
    subtaxonomies = {taxonomy: fitted_distances(sub[members], [leaves[i] for i in members], shrink=None)
                     for taxonomy, members in positions(taxonomies).items()}
    return ScopeModel(fitted_distances(tax, paths, TAXONOMY_SHRINK), subtaxonomies)


def scope_possible(cascade: Cascade) -> bool:
    """Whether the run's taxonomy level runs a model whose [CLS] state the scope score can read."""
    taxonomy = cascade.hierarchy.taxonomy
    return (not cascade.hierarchy.single_level and taxonomy.checkpoint is not None
            and taxonomy.lexical_weight < 1.0)
