"""A lexical classifier per level: TF-IDF over the whole text plus multinomial logistic regression.

Why: a transformer reads the first ``max_length`` tokens of an event; TF-IDF reads every word
of it for almost no cost. On long descriptions the two make different mistakes, so the
cascade mixes their probabilities with a weight chosen on the validation split (0 when the
lexical model does not help, as on short texts).

Stored without pickle: ``lexical.json`` (vectorizer settings, vocabulary, labels) and
``lexical.safetensors`` (idf, coefficients, intercepts), so loading an archive never runs
code from it. Training fits it with scikit-learn; serving rebuilds the same vectorizer from
the stored vocabulary and idf, so the two transform text identically by construction.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

LEXICAL_JSON = "lexical.json"
LEXICAL_WEIGHTS = "lexical.safetensors"
# Word 1-2 grams with sublinear term frequency: the usual strong TF-IDF setting for topics.
VECTORIZER = {"ngram_range": [1, 2], "sublinear_tf": True, "min_df": 2, "max_features": 200_000,
              "lowercase": True, "strip_accents": "unicode"}


class LexicalModel:
    """TF-IDF + logistic regression over one level's labels, in the level's label order."""

    def __init__(self, vectorizer: object, coef: np.ndarray, intercept: np.ndarray, labels: Sequence[str]) -> None:
        self.vectorizer = vectorizer
        self.coef = coef.astype(np.float32)
        self.intercept = intercept.astype(np.float32)
        self.labels = tuple(labels)

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[str], order: Sequence[str], c: float = 10.0,
            seed: int = 0) -> "LexicalModel":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        settings = {**VECTORIZER, "ngram_range": tuple(VECTORIZER["ngram_range"])}
        if len(texts) < 50:  # tiny tables: keep words seen once
            settings["min_df"] = 1
        vectorizer = TfidfVectorizer(**settings, dtype=np.float32)
        features = vectorizer.fit_transform(texts)
        index = {label: i for i, label in enumerate(order)}
        target = np.array([index[label] for label in labels])
        classifier = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(features, target)
        coef = np.zeros((len(order), features.shape[1]), dtype=np.float32)
        intercept = np.full(len(order), -1e4, dtype=np.float32)  # a label absent from training is never chosen
        if len(classifier.classes_) == 2 and classifier.coef_.shape[0] == 1:  # binary: one row for class 1
            rows, biases = np.vstack([-classifier.coef_[0], classifier.coef_[0]]) / 2, \
                np.array([-classifier.intercept_[0], classifier.intercept_[0]]) / 2
        else:
            rows, biases = classifier.coef_, classifier.intercept_
        coef[classifier.classes_] = rows
        intercept[classifier.classes_] = biases
        return cls(vectorizer, coef, intercept, order)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities (rows: texts, columns: labels in level order)."""
        logits = self.vectorizer.transform(texts) @ self.coef.T + self.intercept
        logits = np.asarray(logits, dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)

    def save(self, folder: str | Path) -> None:
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        vocabulary = {term: int(i) for term, i in self.vectorizer.vocabulary_.items()}
        meta = {"vectorizer": VECTORIZER, "labels": list(self.labels), "vocabulary": vocabulary}
        (folder / LEXICAL_JSON).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        save_file({"idf": self.vectorizer.idf_.astype(np.float32), "coef": self.coef, "intercept": self.intercept},
                  str(folder / LEXICAL_WEIGHTS))

    @classmethod
    def load(cls, folder: str | Path) -> "LexicalModel":
        from safetensors.numpy import load_file
        from sklearn.feature_extraction.text import TfidfVectorizer

        folder = Path(folder)
        meta = json.loads((folder / LEXICAL_JSON).read_text(encoding="utf-8"))
        arrays = load_file(str(folder / LEXICAL_WEIGHTS))
        settings = {k: v for k, v in meta["vectorizer"].items() if k not in ("min_df", "max_features")}
        settings["ngram_range"] = tuple(settings["ngram_range"])
        vectorizer = TfidfVectorizer(**settings, vocabulary=meta["vocabulary"], dtype=np.float32)
        vectorizer.idf_ = arrays["idf"]
        return cls(vectorizer, arrays["coef"], arrays["intercept"], meta["labels"])


def check_lexical(folder: Path, labels: Sequence[str]) -> str | None:
    """What is wrong with a stored lexical model, or None (for the run-directory check)."""
    for name in (LEXICAL_JSON, LEXICAL_WEIGHTS):
        if not (folder / name).is_file():
            return f"{folder / name} not found"
    try:
        meta = json.loads((folder / LEXICAL_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{folder / LEXICAL_JSON} is not readable JSON: {exc}"
    if not isinstance(meta, dict) or tuple(meta.get("labels", ())) != tuple(labels):
        return f"{folder / LEXICAL_JSON} labels differ from hierarchy.json's {list(labels)}"
    if not isinstance(meta.get("vocabulary"), dict):
        return f"{folder / LEXICAL_JSON} has no vocabulary"
    return None
