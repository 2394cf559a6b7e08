"""Reading long descriptions whole: the truncation choice and the lexical models of a run.

Both choices are made from the run's own data and recorded in hierarchy.json, so
``training.evaluate`` and the TorchServe handler apply them through the one cascade:
- truncation: when more than ``LONG_SHARE`` of the training texts are longer than
  ``max_length`` tokens, read each text as windows (by default two: its head and its tail,
  each a pass of its own, probabilities averaged) instead of its head alone; on long posts
  this beat one pass over head and tail, and 256 tokens in one pass, at less cost
  (docs/results.md);
- top layers: with a shared trunk, each level's top has one layer on such texts and two
  otherwise (``choose_top_layers``): a one-layer top computes the first position only, so on
  windows of long text a level costs little beyond the trunk, while on short texts the
  second layer is worth a few tenths of a point (docs/results.md);
- lexical models: a TF-IDF classifier per level (handlers/lexical.py) fitted on the
  training split, mixed in with the weight that scores best on the validation split
  (0, i.e. left out, when it does not help, as on short texts); all of them read one set of
  TF-IDF features fitted on the whole training split.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from handlers.hierarchy import Hierarchy, Level, path_label
from handlers.text import TextFormat
from handlers.lexical import LexicalFeatures, LexicalModel
from handlers.run_layout import LEXICAL_DIR, LEXICAL_FEATURES, PATHS_LEXICAL
from table.events import event_dicts

logger = logging.getLogger("training")

LONG_SHARE = 0.10
TOP_LAYERS_SHORT, TOP_LAYERS_LONG = 2, 1  # --top-layers auto
WEIGHTS = tuple(round(w, 1) for w in np.arange(0.0, 1.01, 0.1))


def path_labels(hierarchy: Hierarchy) -> tuple[str, ...]:
    """The paths level's labels: the paths head's, or every pair of the hierarchy."""
    if hierarchy.paths is not None:
        return hierarchy.paths.labels
    return tuple(path_label(t, s) for t in hierarchy.taxonomy.labels for s in hierarchy.subtaxonomies[t].labels)


def choose_truncation(text: TextFormat, tokenizer: Any, texts: Sequence[str], wanted: str) -> tuple[str, str, bool]:
    """The truncation to train and serve with, why (for the report), and whether the texts
    are long (over ``LONG_SHARE`` of them longer than ``max_length``), whatever was given."""
    lengths = np.array([len(ids) for ids in tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]])
    share = float((lengths > text.max_length).mean()) if len(lengths) else 0.0
    summary = (f"{100 * share:.1f}% of training texts are over {text.max_length} tokens "
               f"(median {int(np.median(lengths)) if len(lengths) else 0}, 90th percentile "
               f"{int(np.percentile(lengths, 90)) if len(lengths) else 0})")
    long = share > LONG_SHARE
    if wanted != "auto":
        return wanted, f"{wanted} (given); {summary}", long
    choice = "windows" if long else "head"
    return choice, f"{choice} (auto: over {100 * LONG_SHARE:.0f}% long -> windows); {summary}", long


def choose_top_layers(wanted: int | str, long: bool) -> tuple[int, str]:
    """K, the top layers each level trains over the shared trunk (0: no trunk), and why.

    auto: one on long texts, where it served 1.2-1.7 x faster at equal accuracy, two on short
    ones, where the second layer gained a few tenths of a point (docs/results.md).
    """
    if wanted != "auto":
        return int(wanted), f"{wanted or 'all'} (given)"
    k = TOP_LAYERS_LONG if long else TOP_LAYERS_SHORT
    return k, f"{k} (auto: {'long' if long else 'short'} texts -> {k})"


def choose_reading(args: Any, tokenizer: Any, frame: pd.DataFrame) -> tuple[TextFormat, dict[str, str]]:
    """How a run's events become text and tokens: truncation, and the tops' layers
    (``args.top_layers``, resolved in place), chosen from the training texts' lengths; the
    notes say why (printed, and kept in metrics.json)."""
    text = TextFormat(separator=args.separator, max_length=args.max_length,
                      max_chars=max(8192, args.max_length * args.max_windows * 16), max_windows=args.max_windows)
    train_texts = [text.format(r) for r in event_dicts(frame[frame.split == "train"])]
    truncation, note, long = choose_truncation(text, tokenizer, train_texts, args.truncation)
    args.top_layers, top_note = choose_top_layers(args.top_layers, long)
    return dataclasses.replace(text, truncation=truncation), {"truncation": note, "top_layers": top_note}


Scored = tuple[np.ndarray, np.ndarray, np.ndarray]  # model probs, lexical probs, true label ids


def best_weight(groups: Sequence[Scored]) -> tuple[float, dict[float, float]]:
    """The mixing weight with the best accuracy over all groups' rows; ties go to the smaller weight.

    Groups are pooled by decisions, not probabilities: levels have different label counts.
    """
    def accuracy(w: float) -> float:
        right = np.concatenate([((1 - w) * m + w * x).argmax(axis=1) == y for m, x, y in groups])
        return float(right.mean())

    scores = {w: accuracy(w) for w in WEIGHTS}
    return max(WEIGHTS, key=lambda w: (scores[w], -w)), scores


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
    from handlers.cascade import Cascade

    cascade = Cascade(run_dir)  # the transformers alone: the hierarchy has no lexical model yet
    fmt = hierarchy.text
    summary: dict[str, Any] = {}
    fitted: dict[str, LexicalModel] = {}
    texts = [fmt.format(r) for r in event_dicts(train)]
    features = LexicalFeatures.fit(texts, max_chars=fmt.max_chars)  # one vocabulary and idf for every level: each text is read once
    matrix = features.transform(texts)

    def fit(name: str, level: Level, rows: np.ndarray, labels: Sequence[str]) -> None:
        fitted[name] = LexicalModel.fit(features, matrix[rows], labels, level.labels, seed=seed)

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
    pooled: list[Scored] = []
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
        LexicalModel.fit(features, matrix, paths, path_labels(hierarchy), seed=seed).save(run_dir / PATHS_LEXICAL)
    sub_weight = 0.0
    if pooled:
        sub_weight, scores = best_weight(pooled)
        summary["subtaxonomy"] = {"weight": sub_weight, "val_accuracy_given_taxonomy_by_weight": scores}
    summary["features"] = {"families": [f"{f['analyzer']} {f['ngram_range'][0]}-{f['ngram_range'][1]}"
                                        for f in features.settings], "size": features.size}
    hierarchy = dataclasses.replace(hierarchy, lexical_features=LEXICAL_FEATURES)
    hierarchy = _with_weights(run_dir, hierarchy, fitted, summary.get("taxonomy", {}).get("weight", 0.0), sub_weight)
    return hierarchy, summary


def drop_unused_features(run_dir: Path, hierarchy: Hierarchy) -> Hierarchy:
    """The hierarchy without lexical features when no level kept a lexical model (and the
    features' folder removed): a run carries nothing it does not read."""
    if hierarchy.lexical_features is None or hierarchy.lexical_folders() != [hierarchy.lexical_features]:
        return hierarchy
    features = run_dir / hierarchy.lexical_features
    shutil.rmtree(features, ignore_errors=True)
    if features.parent != run_dir and features.parent.is_dir() and not any(features.parent.iterdir()):
        features.parent.rmdir()  # lexical/ held nothing else: no empty folder in the run
    return dataclasses.replace(hierarchy, lexical_features=None)


def _with_weights(run_dir: Path, hierarchy: Hierarchy, fitted: dict[str, LexicalModel], tax_weight: float,
                  sub_weight: float) -> Hierarchy:
    """Save the models whose weight is above 0 and record folder and weight per level."""
    def attach(name: str, level: Level, weight: float, slug: str) -> Level:
        if weight <= 0 or name not in fitted:
            return level
        folder = f"{LEXICAL_DIR}/{slug}"
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
