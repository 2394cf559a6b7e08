"""The run's lexical models: TF-IDF features and a logistic regression per level, fitted on
the training split, each mixed in with the weight that scores best on val.

Every run fits them unless ``--lexical off``: a TF-IDF model reads the whole text for almost
no cost, so on long descriptions it catches what the transformers' first tokens miss, and
on short texts val gives it weight 0 (left out). All of them read one set of TF-IDF features
fitted on the whole training split (handlers/lexical.py holds what serving loads and runs;
fitting with scikit-learn happens here only).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from handlers.cascade import Cascade
from handlers.hierarchy import Hierarchy, Level, path_label
from handlers.lexical import FAMILIES, LexicalFeatures, LexicalModel
from handlers.run_layout import LEXICAL_FEATURES, PATHS_LEXICAL, lexical_folder
from handlers.tfidf import TermVectorizer
from table.events import event_dicts

logger = logging.getLogger("training")

WEIGHTS = tuple(round(w, 1) for w in np.arange(0.0, 1.01, 0.1))
LevelProbs = tuple[np.ndarray, np.ndarray, np.ndarray]  # one level's val rows: model probs, lexical probs, true ids


def fit_features(texts: Sequence[str], families: Sequence[dict[str, Any]] = FAMILIES,
                 max_chars: int | None = None) -> LexicalFeatures:
    """Each family's vocabulary and idf, learnt from ``texts`` with scikit-learn."""
    vectorizers = []
    for settings in families:
        fitting = dict(settings)
        if len(texts) < 50:  # tiny tables: keep terms seen once
            fitting["min_df"] = 1
        fitted = TfidfVectorizer(**{**fitting, "ngram_range": tuple(fitting["ngram_range"])},
                                 dtype=np.float32).fit(texts)
        vectorizers.append(TermVectorizer(settings, fitted.vocabulary_, fitted.idf_, max_chars))
    return LexicalFeatures(vectorizers, families)


def fit_model(features: LexicalFeatures, matrix: Any, labels: Sequence[str], order: Sequence[str],
              c: float = 10.0, seed: int = 0) -> LexicalModel:
    """A level's model on ``matrix`` (``features.transform`` of the training texts, one row per label)."""
    index = {label: i for i, label in enumerate(order)}
    target = np.array([index[label] for label in labels])
    classifier = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(matrix, target)
    coef = np.zeros((len(order), matrix.shape[1]), dtype=np.float32)
    intercept = np.full(len(order), -1e4, dtype=np.float32)  # a label absent from training is never chosen
    if len(classifier.classes_) == 2 and classifier.coef_.shape[0] == 1:  # binary: one row for class 1
        rows, biases = np.vstack([-classifier.coef_[0], classifier.coef_[0]]) / 2, \
            np.array([-classifier.intercept_[0], classifier.intercept_[0]]) / 2
    else:
        rows, biases = classifier.coef_, classifier.intercept_
    coef[classifier.classes_] = rows
    intercept[classifier.classes_] = biases
    # A subtaxonomy level sees only its taxonomy's rows: most feature columns never occur in
    # them and their coefficients are exactly 0. Only the columns used are kept.
    used = np.flatnonzero(np.any(coef != 0, axis=0))
    if len(used) < coef.shape[1]:
        return LexicalModel(features, coef[:, used], intercept, order, used.astype(np.int32))
    return LexicalModel(features, coef, intercept, order)


def best_weight(groups: Sequence[LevelProbs]) -> tuple[float, dict[float, float]]:
    """The mixing weight with the best accuracy over all groups' rows; ties go to the smaller weight.

    Groups are pooled by decisions, not probabilities: levels have different label counts.
    """
    def accuracy(w: float) -> float:
        right = np.concatenate([((1 - w) * m + w * x).argmax(axis=1) == y for m, x, y in groups])
        return float(right.mean())

    scores = {w: accuracy(w) for w in WEIGHTS}
    return max(WEIGHTS, key=lambda w: (scores[w], -w)), scores


def path_labels(hierarchy: Hierarchy) -> tuple[str, ...]:
    """The paths level's labels: the paths head's, or every pair of the hierarchy."""
    if hierarchy.paths is not None:
        return hierarchy.paths.labels
    return tuple(path_label(t, s) for t in hierarchy.taxonomy.labels for s in hierarchy.subtaxonomies[t].labels)


def add_lexical_models(run_dir: Path, hierarchy: Hierarchy, train: pd.DataFrame, val: pd.DataFrame,
                       seed: int) -> tuple[Hierarchy, dict[str, Any]]:
    """Fit the run's TF-IDF features, then a lexical model per level on them; choose the
    taxonomy weight and one subtaxonomy weight on val; fit one over the full paths too (its
    weight is chosen with the paths head's, later; features no model keeps are dropped then).

    One weight for all subtaxonomy levels, chosen on their pooled taxonomy-given val
    accuracy: a subtaxonomy level alone often has too few val rows to choose on.
    Returns the hierarchy with the chosen weights (levels at weight 0 keep no model) and
    a summary for metrics.json.
    """
    cascade = Cascade(run_dir, hierarchy=hierarchy)  # the transformers alone: no lexical model yet
    fmt = hierarchy.text
    summary: dict[str, Any] = {}
    fitted: dict[str, LexicalModel] = {}
    texts = [fmt.format(r) for r in event_dicts(train)]
    features = fit_features(texts, max_chars=fmt.max_chars)  # one vocabulary and idf for every level: each text is read once
    matrix = features.transform(texts)

    def fit(name: str, level: Level, rows: np.ndarray, labels: Sequence[str]) -> None:
        fitted[name] = fit_model(features, matrix[rows], labels, level.labels, seed=seed)

    val_texts = [fmt.format(r) for r in event_dicts(val)]
    val_matrix = features.transform(val_texts) if val_texts else None  # once, not once per level

    def probs(name: str, level: Level, among: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inputs = cascade.encode(event_dicts(val[among]))
        return cascade.level_probs(level, inputs).numpy(), fitted[name].predict_proba(inputs.texts, val_matrix[among])

    if hierarchy.taxonomy.checkpoint:
        fit("taxonomy", hierarchy.taxonomy, np.arange(len(train)), list(train.taxonomy))
        target = np.array([hierarchy.taxonomy.labels.index(t) for t in val.taxonomy])
        weight, scores = best_weight([(*probs("taxonomy", hierarchy.taxonomy, np.ones(len(val), bool)), target)])
        summary["taxonomy"] = {"weight": weight, "val_accuracy_by_weight": scores}
    pooled: list[LevelProbs] = []
    for tax, level in hierarchy.subtaxonomies.items():
        if not level.checkpoint:
            continue
        among = (train.taxonomy == tax).to_numpy()
        fit(tax, level, np.flatnonzero(among), list(train.subtaxonomy[among]))
        in_val = (val.taxonomy == tax).to_numpy()
        if in_val.any():
            target = np.array([level.labels.index(s) for s in val.subtaxonomy[in_val]])
            pooled.append((*probs(tax, level, in_val), target))
    features.save(run_dir / LEXICAL_FEATURES)
    if hierarchy.subtaxonomies:  # a candidate for the paths level, weighed with the paths head
        paths = [path_label(t, s) for t, s in zip(train.taxonomy, train.subtaxonomy)]
        fit_model(features, matrix, paths, path_labels(hierarchy), seed=seed).save(run_dir / PATHS_LEXICAL)
    sub_weight = 0.0
    if pooled:
        sub_weight, scores = best_weight(pooled)
        summary["subtaxonomy"] = {"weight": sub_weight, "val_accuracy_given_taxonomy_by_weight": scores}
    summary["features"] = {"families": [f"{f['analyzer']} {f['ngram_range'][0]}-{f['ngram_range'][1]}"
                                        for f in features.settings], "size": features.size}
    hierarchy = dataclasses.replace(hierarchy, lexical_features=LEXICAL_FEATURES)
    hierarchy = _with_weights(run_dir, hierarchy, fitted, summary.get("taxonomy", {}).get("weight", 0.0), sub_weight)
    return hierarchy, summary


def _with_weights(run_dir: Path, hierarchy: Hierarchy, fitted: dict[str, LexicalModel], tax_weight: float,
                  sub_weight: float) -> Hierarchy:
    """Save the models whose weight is above 0 and record folder and weight per level."""
    def attach(name: str, level: Level, weight: float, slug: str) -> Level:
        if weight <= 0 or name not in fitted:
            return level
        folder = lexical_folder(slug)
        fitted[name].save(run_dir / folder)
        return dataclasses.replace(level, lexical=folder, lexical_weight=weight)

    taxonomy = attach("taxonomy", hierarchy.taxonomy, tax_weight, "taxonomy")
    subtaxonomies = {
        tax: attach(tax, level, sub_weight, (level.checkpoint or tax).rsplit("/", 1)[-1])
        for tax, level in hierarchy.subtaxonomies.items()
    }
    for name, weight in (("taxonomy", tax_weight), ("subtaxonomies", sub_weight)):
        logger.info("lexical model weight for %s: %.1f (chosen on val)", name, weight)
    return dataclasses.replace(hierarchy, taxonomy=taxonomy, subtaxonomies=subtaxonomies)
