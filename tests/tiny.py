"""Tiny, randomly initialised DistilBERT bases and events for fast tests.

Nothing is downloaded: the tokenizer's vocabulary is built from the words of the events
the tests use, and the model config is small enough to train in seconds on a CPU.
"""

from __future__ import annotations

import csv
import random
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from handlers.hierarchy import Hierarchy

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# taxonomy -> subtaxonomy -> words typical of it; "nightlife" has one subtaxonomy.
VOCAB = {
    "music": {"jazz": ["saxophone", "trio", "swing", "bebop"], "rock": ["guitar", "amplifier", "band", "riff"]},
    "sports": {"running": ["marathon", "sprint", "track", "runners"], "cycling": ["bike", "pedal", "peloton", "road"],
               "yoga": ["mat", "breathing", "stretch", "pose"]},
    "nightlife": {"club night": ["dj", "dance", "midnight", "club"]},
}
COMMON = ["the", "a", "event", "tickets", "at", "in", "city", "evening", "join", "us", "for", "and", "with", "friends"]


def tiny_events(rows_per_class: int = 12, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for tax, subs in VOCAB.items():
        for sub, words in subs.items():
            for _ in range(rows_per_class):
                title = " ".join(rng.sample(words, 2) + [rng.choice(COMMON)])
                description = " ".join(rng.choices(words, k=4) + rng.choices(COMMON, k=5))
                rows.append({"title": title, "description": description, "taxonomy": tax, "subtaxonomy": sub})
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def make_tiny_base(folder: Path, extra_words: list[str] | None = None, seed: int = 0) -> Path:
    """A randomly initialised DistilBERT with a WordPiece tokenizer built on the fly."""
    import torch
    from transformers import BertTokenizer, DistilBertConfig, DistilBertModel

    folder.mkdir(parents=True, exist_ok=True)
    words = set(COMMON) | {w for subs in VOCAB.values() for ws in subs.values() for w in ws}
    words |= set(extra_words or [])
    tokens = {t for w in words for t in re.findall(r"\w+|[^\w\s]", w.lower())}
    vocab = SPECIALS + sorted(tokens) + list(".,!?'-:;()") + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = list(dict.fromkeys(vocab))
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    torch.manual_seed(seed)
    config = DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                              max_position_embeddings=128, pad_token_id=0)
    DistilBertModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def add_lexical(run: Path, hierarchy: "Hierarchy", folder: str, texts: list[str], labels: list[str],
                order: tuple[str, ...]) -> "Hierarchy":
    """Fit a lexical model over ``order`` into ``folder``, on the run's TF-IDF features (fitted
    on ``texts`` when it has none); returns the hierarchy naming the features (levels still to
    be pointed at the model)."""
    import dataclasses

    from handlers.lexical import LexicalFeatures
    from training.lexical_fit import fit_features, fit_model
    from handlers.run_layout import LEXICAL_FEATURES

    if hierarchy.lexical_features:
        features = LexicalFeatures.load(run / hierarchy.lexical_features)
    else:
        features = fit_features(texts)
        features.save(run / LEXICAL_FEATURES)
        hierarchy = dataclasses.replace(hierarchy, lexical_features=LEXICAL_FEATURES)
    fit_model(features, features.transform(texts), labels, order).save(run / folder)
    return hierarchy
