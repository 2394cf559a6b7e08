"""TF-IDF features of texts, as scikit-learn's TfidfVectorizer transforms them, without scikit-learn.

Training fits each feature family's vocabulary and idf with scikit-learn
(handlers/lexical.py); every transform, in training and in serving, is ``TermVectorizer``'s,
so the two read text alike by construction, and a serving worker never imports
scikit-learn and the scipy modules it pulls in (about 100 MB). A test checks it against
scikit-learn's transform (tests/test_long_text.py). No TorchServe import here.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from itertools import islice
from typing import Any, Sequence

import numpy as np


class TermVectorizer:
    """One feature family's transform, as scikit-learn's TfidfVectorizer computes it for a
    fixed vocabulary and idf: lowercase, accents stripped (NFKD, combining marks dropped),
    word n-grams of ``\\b\\w\\w+\\b`` tokens or character n-grams within space-padded words
    (``char_wb``), counts (1 + log with ``sublinear_tf``) times idf, each row L2-normalised.
    Terms outside the vocabulary are dropped. ``vocabulary_`` and ``idf_`` are named as
    scikit-learn names them.

    ``max_chars`` (the run's text format's) caps the text once it is normalised, as well as
    before: NFKD makes up to 18 characters of one (U+FDFA), so a text cut to ``max_chars``
    before normalising could still make 18 times the n-grams of any plain text of that
    length. Capped after, no event costs more than a plain text of ``max_chars`` characters;
    a text changes only if normalising took it past ``max_chars``."""

    # min_df and max_features shaped the fitted vocabulary: they change nothing here.
    _SETTINGS = {"analyzer", "ngram_range", "sublinear_tf", "lowercase", "strip_accents", "min_df", "max_features"}

    def __init__(self, settings: dict[str, Any], vocabulary: dict[str, int], idf: np.ndarray,
                 max_chars: int | None = None) -> None:
        unknown = set(settings) - self._SETTINGS
        if unknown or settings.get("analyzer", "word") not in ("word", "char_wb") \
                or settings.get("strip_accents") not in (None, "unicode"):
            raise ValueError(f"a lexical feature family this code cannot transform: {settings}")
        self.analyzer = settings.get("analyzer", "word")
        self.ngram_range = tuple(settings.get("ngram_range", (1, 1)))
        self.sublinear_tf = bool(settings.get("sublinear_tf", False))
        self.lowercase = settings.get("lowercase", True)
        self.strip_accents = settings.get("strip_accents") == "unicode"
        self.vocabulary_ = vocabulary
        self.idf_ = np.asarray(idf, dtype=np.float32)
        self.max_chars = max_chars

    def transform(self, texts: Sequence[str]) -> Any:
        """A CSR matrix (rows: texts, columns: the vocabulary's indices), float32."""
        from scipy.sparse import csr_matrix

        indices: list[int] = []
        counts: list[int] = []
        indptr = [0]
        lookup = self.vocabulary_.get
        for text in texts:
            found = Counter(map(lookup, self.terms(text)))
            found.pop(None, None)  # terms outside the vocabulary
            indices.extend(found.keys())
            counts.extend(found.values())
            indptr.append(len(indices))
        matrix = csr_matrix((np.asarray(counts, dtype=np.float32), np.asarray(indices, dtype=np.int32), indptr),
                            shape=(len(texts), len(self.idf_)))
        matrix.sort_indices()
        if self.sublinear_tf:
            np.log(matrix.data, out=matrix.data)
            matrix.data += 1.0
        matrix.data *= self.idf_[matrix.indices]
        row_of = np.repeat(np.arange(len(texts)), np.diff(matrix.indptr))
        norms = np.sqrt(np.bincount(row_of, weights=matrix.data.astype(np.float64) ** 2, minlength=len(texts)))
        matrix.data /= np.where(norms > 0, norms, 1.0)[row_of].astype(np.float32)
        return matrix

    def terms(self, text: str) -> list[str]:
        """The n-grams of one text, in order, repeats kept."""
        text = self.normalise(text)
        low, high = self.ngram_range
        if self.analyzer == "char_wb":
            grams = []
            for word in text.split():  # str.split: any run of whitespace, as the n-grams' padding sees it
                word = f" {word} "
                for n in range(low, high + 1):
                    if len(word) <= n:  # a short word counts once, whole
                        grams.append(word)
                        break
                    grams.extend(word[i : i + n] for i in range(len(word) - n + 1))
            return grams
        tokens = _TOKEN.findall(text)
        grams = list(tokens) if low == 1 else []
        for n in range(max(low, 2), min(high, len(tokens)) + 1):
            grams.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        return grams


    def normalise(self, text: str) -> str:
        """The text the n-grams are read from: lower-cased, accents stripped, at most ``max_chars``."""
        limit = self.max_chars
        if self.lowercase:
            text = text.lower()
        if self.strip_accents:
            text = _strip_accents(text, limit)
        return text if limit is None else text[:limit]


_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern


def _strip_accents(text: str, limit: int | None) -> str:
    """NFKD, combining marks dropped; stops once ``limit`` characters are kept."""
    if text.isascii():
        return text
    kept = (c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return "".join(islice(kept, limit))
