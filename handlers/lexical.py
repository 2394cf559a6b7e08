"""A lexical classifier per level: TF-IDF over the whole text plus multinomial logistic regression.

Why: a transformer reads the first ``max_length`` tokens of an event; TF-IDF reads every word
of it for almost no cost. On long descriptions the two make different mistakes, so the
cascade mixes their probabilities with a weight chosen on the validation split (0 when the
lexical model does not help, as on short texts).

The features are the run's, shared by every level (``LexicalFeatures``): two families, each
TF-IDF weighted and L2-normalised on its own, side by side: word 1-2 grams (topics) and
character 3-5 grams within words (spellings, inflections, names and codes that a word
vocabulary splits or misses). On 20 Newsgroups posts the pair scored 1.1 to 2.9 points above
words alone (docs/results.md); one vocabulary over both, normalised together, was as good on
one sample and no better than words alone on the other. Shared, an event's text is read once
per batch whatever the number of levels; each level keeps only its coefficients
(``LexicalModel``).

Stored without pickle, so loading an archive never runs code from it: the features as
``features.json`` (each family's settings and vocabulary) and ``features.safetensors`` (each
family's idf), a level as ``lexical.json`` (labels) and ``lexical.safetensors``
(coefficients, intercepts, and which feature columns they cover when not all).

Training fits the vocabularies, idf and regressions with scikit-learn (training/lexical_fit.py);
every transform of text into features, in training and in serving, is handlers/tfidf.py's, so
serving never imports scikit-learn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from handlers.tfidf import TermVectorizer
from handlers.run_layout import FEATURES_JSON, FEATURES_WEIGHTS, LEXICAL_JSON, LEXICAL_WEIGHTS

# Each family's TfidfVectorizer settings; min_df and max_features only shape the fitted vocabulary.
FAMILIES = (
    {"analyzer": "word", "ngram_range": [1, 2], "sublinear_tf": True, "min_df": 2, "max_features": 200_000,
     "lowercase": True, "strip_accents": "unicode"},
    {"analyzer": "char_wb", "ngram_range": [3, 5], "sublinear_tf": True, "min_df": 2, "max_features": 100_000,
     "lowercase": True, "strip_accents": "unicode"},
)


class LexicalFeatures:
    """The TF-IDF feature families every lexical model of a run reads; ``max_chars`` (the run's
    text format's) caps each text after normalisation too (handlers/tfidf.py)."""

    def __init__(self, vectorizers: Sequence[Any], settings: Sequence[dict[str, Any]]) -> None:
        self.vectorizers = list(vectorizers)
        self.settings = [dict(s) for s in settings]

    @property
    def size(self) -> int:
        return sum(len(v.vocabulary_) for v in self.vectorizers)

    def transform(self, texts: Sequence[str]) -> Any:
        """A sparse matrix, one row per text, the families side by side."""
        from scipy.sparse import hstack

        blocks = [v.transform(texts) for v in self.vectorizers]
        return blocks[0] if len(blocks) == 1 else hstack(blocks, format="csr")

    def save(self, folder: str | Path) -> None:
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        vocabularies = [{term: int(i) for term, i in v.vocabulary_.items()} for v in self.vectorizers]
        meta = {"families": self.settings, "vocabularies": vocabularies}
        (folder / FEATURES_JSON).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        save_file({f"idf_{i}": v.idf_.astype(np.float32) for i, v in enumerate(self.vectorizers)},
                  str(folder / FEATURES_WEIGHTS))

    @classmethod
    def load(cls, folder: str | Path, max_chars: int | None = None) -> "LexicalFeatures":
        from safetensors.numpy import load_file

        folder = Path(folder)
        meta = json.loads((folder / FEATURES_JSON).read_text(encoding="utf-8"))
        arrays = load_file(str(folder / FEATURES_WEIGHTS))
        return cls._rebuilt(meta["families"], meta["vocabularies"],
                            [arrays[f"idf_{i}"] for i in range(len(meta["families"]))], max_chars)

    @classmethod
    def _rebuilt(cls, families: Sequence[dict[str, Any]], vocabularies: Sequence[dict[str, int]],
                 idfs: Sequence[np.ndarray], max_chars: int | None) -> "LexicalFeatures":
        return cls([TermVectorizer(settings, vocabulary, idf, max_chars)
                    for settings, vocabulary, idf in zip(families, vocabularies, idfs)], families)


class LexicalModel:
    """Logistic regression on the run's TF-IDF features over one level's labels, in the level's order."""

    def __init__(self, features: LexicalFeatures, coef: np.ndarray, intercept: np.ndarray,
                 labels: Sequence[str], columns: np.ndarray | None = None) -> None:
        self.features = features
        # Held as (features, labels) in C order: ``sparse @ weights`` then reads it in place.
        # ``sparse @ coef.T`` made scipy copy the whole matrix on every call (CLINC150's paths
        # model: 19 MB, a third of a single query's time).
        self.weights = np.ascontiguousarray(np.asarray(coef, dtype=np.float32).T)
        self.intercept = intercept.astype(np.float32)
        self.labels = tuple(labels)
        # The feature columns ``coef`` covers (None: all). A subtaxonomy level's model sees only
        # its taxonomy's rows, so most of the run's features never occur in them and their
        # coefficients are exactly 0 (the L2 penalty alone acts on them): they are not kept.
        self.columns = columns

    @property
    def coef(self) -> np.ndarray:
        """(labels, features), C order: as scikit-learn and the stored file hold it."""
        return np.ascontiguousarray(self.weights.T)

    def predict_proba(self, texts: Sequence[str], matrix: Any = None) -> np.ndarray:
        """Probabilities (rows: texts, columns: labels in level order); ``matrix``, when given,
        is the features' transform of ``texts``, computed once for every level."""
        if matrix is None:
            matrix = self.features.transform(texts)
        if self.columns is not None:
            matrix = matrix[:, self.columns]
        logits = np.asarray(matrix @ self.weights + self.intercept, dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)

    def save(self, folder: str | Path) -> None:
        """The level's own part only: the features are saved once for the run."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"labels": list(self.labels), "features": self.features.size}
        (folder / LEXICAL_JSON).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        arrays = {"coef": self.coef, "intercept": self.intercept}
        save_file({**arrays, "columns": self.columns} if self.columns is not None else arrays,
                  str(folder / LEXICAL_WEIGHTS))

    @classmethod
    def load(cls, folder: str | Path, features: LexicalFeatures | None,
             max_chars: int | None = None) -> "LexicalModel":
        """A level's model on the run's ``features``; a model stored with a word vectorizer
        of its own (``vectorizer`` / ``vocabulary`` / ``idf``, runs without shared features)
        reads with that one, capped at ``max_chars``."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        meta = json.loads((folder / LEXICAL_JSON).read_text(encoding="utf-8"))
        arrays = load_file(str(folder / LEXICAL_WEIGHTS))
        if "vocabulary" in meta:
            features = LexicalFeatures._rebuilt([meta["vectorizer"]], [meta["vocabulary"]], [arrays["idf"]],
                                                max_chars)
        elif features is None:
            raise ValueError(f"{folder} needs the run's lexical features (hierarchy.json names none)")
        columns = arrays.get("columns")
        if columns is not None and (columns.ndim != 1 or len(columns) != arrays["coef"].shape[1]
                                    or (len(columns) and not 0 <= columns.min() <= columns.max() < features.size)):
            raise ValueError(f"{folder / LEXICAL_WEIGHTS}: its columns do not fit its coefficients and the features")
        return cls(features, arrays["coef"], arrays["intercept"], meta["labels"], columns)


def check_lexical(folder: Path, labels: Sequence[str], features: int | None) -> str | None:
    """What is wrong with a stored lexical model, or None (for the run-directory check).
    ``features``: the run's feature count (None: the run has no shared features)."""
    problem, meta = _read(folder, LEXICAL_JSON, LEXICAL_WEIGHTS)
    if problem:
        return problem
    if tuple(meta.get("labels", ())) != tuple(labels):
        return f"{folder / LEXICAL_JSON} labels differ from hierarchy.json's {list(labels)}"
    if "vocabulary" in meta:  # a model with its own word vectorizer
        return None if isinstance(meta["vocabulary"], dict) else f"{folder / LEXICAL_JSON} has no vocabulary"
    if features is None:
        return f"{folder} needs the run's lexical features, and hierarchy.json names none"
    if meta.get("features") != features:
        return f"{folder / LEXICAL_JSON} was fitted on {meta.get('features')} features, the run's have {features}"
    return None


def check_features(folder: Path) -> tuple[str | None, int]:
    """What is wrong with a run's stored features (or None) and their count."""
    problem, meta = _read(folder, FEATURES_JSON, FEATURES_WEIGHTS)
    if problem:
        return problem, 0
    families, vocabularies = meta.get("families"), meta.get("vocabularies")
    if not isinstance(families, list) or not isinstance(vocabularies, list) or not families \
            or len(families) != len(vocabularies) or not all(isinstance(v, dict) for v in vocabularies):
        return f"{folder / FEATURES_JSON} needs as many vocabularies as feature families", 0
    return None, sum(len(v) for v in vocabularies)


def _read(folder: Path, json_name: str, weights_name: str) -> tuple[str | None, dict[str, Any]]:
    for name in (json_name, weights_name):
        if not (folder / name).is_file():
            return f"{folder / name} not found", {}
    try:
        meta = json.loads((folder / json_name).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{folder / json_name} is not readable JSON: {exc}", {}
    if not isinstance(meta, dict):
        return f"{folder / json_name} is not a JSON object", {}
    return None, meta
