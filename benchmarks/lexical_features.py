"""Which TF-IDF features the lexical models read: flat leaf accuracy of each feature set on a
``benchmarks.long_text`` sample (its val rows, and the held-out val rows when it has them).

    python -m benchmarks.lexical_features --table bench_results/long_text/sample.csv

Rows: TF-IDF + LinearSVC (the long-text baseline); then the project's lexical model
(handlers/lexical.py: logistic regression, C 10) over the leaves with word 1-2 grams alone,
with word and character 3-5 grams side by side (``FAMILIES``, the default), and with both in
one vocabulary normalised together. No transformer runs: a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks.long_text import _heldout, baseline
from handlers.lexical import FAMILIES, LexicalFeatures
from training.lexical_fit import fit_features, fit_model


def _texts(frame: Any) -> list[str]:
    return (frame.title + ". " + frame.description).tolist()


def _leaves(frame: Any) -> list[str]:
    return (frame.taxonomy + " / " + frame.subtaxonomy).tolist()


class _OneVocabulary(LexicalFeatures):
    """Words and character grams in one vocabulary, one idf and one norm (for comparison only)."""

    @classmethod
    def fit(cls, texts, families=FAMILIES):  # type: ignore[override]
        from sklearn.feature_extraction.text import TfidfVectorizer

        analyzers = [TfidfVectorizer(**{**f, "ngram_range": tuple(f["ngram_range"])}).build_analyzer() for f in families]
        vectorizer = TfidfVectorizer(analyzer=lambda doc: [g for a in analyzers for g in a(doc)], sublinear_tf=True,
                                     min_df=2, max_features=300_000, dtype=np.float32).fit(texts)
        return cls([vectorizer], [{}])


VARIANTS: dict[str, Callable[[list[str]], LexicalFeatures]] = {
    "word 1-2 grams": lambda texts: fit_features(texts, FAMILIES[:1]),
    "word 1-2 + character 3-5 grams, side by side (default)": lambda texts: fit_features(texts),
    "word 1-2 + character 3-5 grams, one vocabulary": lambda texts: _OneVocabulary.fit(texts),
}


def compare(table: Path) -> dict[str, dict[str, float]]:
    import pandas as pd

    frame = pd.read_csv(table, keep_default_na=False)
    train = frame[frame.split == "train"]
    scored = {"val": frame[frame.split == "val"], "heldout": _heldout(table)}
    results = {"TF-IDF + LinearSVC": baseline(table)}
    order = tuple(sorted(set(_leaves(train))))
    for name, make in VARIANTS.items():
        started = time.perf_counter()
        features = make(_texts(train))
        model = fit_model(features, features.transform(_texts(train)), _leaves(train), order)
        results[name] = {split: float(np.mean(np.array(order)[model.predict_proba(_texts(rows)).argmax(axis=1)]
                                              == np.array(_leaves(rows))))
                         for split, rows in scored.items() if rows is not None}
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", required=True, help="a sample written by benchmarks.long_text (train and val rows)")
    args = p.parse_args(argv)
    results = compare(Path(args.table))
    print("| features | val leaf | held-out val leaf |\n|---|---|---|")
    for name, scores in results.items():
        cells = [f"{100 * scores[s]:.2f}" if s in scores else "-" for s in ("val", "heldout")]
        print(f"| {name} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
