"""Long descriptions: head+tail truncation and the lexical (TF-IDF) model mixed into a level."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from handlers.hierarchy import Hierarchy, HierarchyError, check_run_dir
from handlers.text import TextFormat, TextFormatError
from handlers.lexical import LEXICAL_WEIGHTS, LexicalModel
from tests.tiny import tiny_events


@pytest.fixture(scope="module")
def tokenizer(tiny_run: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_run / "tokenizer"))


def test_head_keeps_the_start_and_head_tail_keeps_both_ends(tokenizer) -> None:
    words = ["jazz"] * 5 + ["the"] * 40 + ["marathon"] * 5
    text = " ".join(words)
    head = TextFormat(max_length=16).token_ids(tokenizer, [text])[0]
    both = TextFormat(max_length=16, truncation="head_tail").token_ids(tokenizer, [text])[0]
    jazz, marathon = tokenizer.convert_tokens_to_ids(["jazz", "marathon"])
    assert len(head) == len(both) == 16
    assert both[0] == head[0] == tokenizer.cls_token_id and both[-1] == head[-1] == tokenizer.sep_token_id
    assert marathon not in head and both[1:6] == [jazz] * 5 and both[-6:-1] == [marathon] * 5


def test_short_texts_are_the_same_either_way(tokenizer) -> None:
    texts = ["jazz trio tonight", "marathon runners on the track"]
    assert TextFormat(max_length=16).token_ids(tokenizer, texts) == \
        TextFormat(max_length=16, truncation="head_tail").token_ids(tokenizer, texts)


def test_an_unknown_truncation_is_refused() -> None:
    with pytest.raises(TextFormatError, match="truncation must be one of"):
        TextFormat(truncation="middle")


def test_a_stored_lexical_model_predicts_what_it_predicted_when_fitted(tmp_path: Path) -> None:
    rows = tiny_events(rows_per_class=10)
    texts = [f"{r['title']}. {r['description']}" for r in rows]
    labels = [r["taxonomy"] for r in rows]
    order = ("music", "nightlife", "sports", "unseen")
    model = LexicalModel.fit(texts, labels, order)
    model.save(tmp_path / "lex")
    loaded = LexicalModel.load(tmp_path / "lex")
    probe = ["saxophone swing trio", "peloton road bike", "words it never saw"]
    assert np.allclose(model.predict_proba(probe), loaded.predict_proba(probe), atol=1e-6)
    probs = loaded.predict_proba(probe)
    assert probs.shape == (3, 4) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert [order[i] for i in probs[:2].argmax(axis=1)] == ["music", "sports"]
    assert probs[:, 3].max() < 1e-6  # a label with no training rows is never chosen
    assert not list((tmp_path / "lex").glob("*.pkl")) and not list((tmp_path / "lex").glob("*.pickle"))


def with_lexical(tiny_run: Path, dest: Path, weight: float) -> Path:
    """A copy of the tiny run whose taxonomy level mixes in a TF-IDF model."""
    shutil.copytree(tiny_run, dest)
    hierarchy = Hierarchy.load(dest)
    rows = tiny_events(rows_per_class=10, seed=3)
    model = LexicalModel.fit([hierarchy.text.format(r) for r in rows], [r["taxonomy"] for r in rows],
                             hierarchy.taxonomy.labels)
    model.save(dest / "lexical" / "taxonomy")
    level = dataclasses.replace(hierarchy.taxonomy, lexical="lexical/taxonomy", lexical_weight=weight)
    dataclasses.replace(hierarchy, taxonomy=level).save(dest)
    return dest


def test_the_cascade_mixes_the_lexical_probabilities_with_the_stored_weight(tiny_run: Path, tmp_path: Path) -> None:
    from handlers.cascade import Cascade

    run = with_lexical(tiny_run, tmp_path / "run", weight=0.25)
    stored = json.loads((run / "hierarchy.json").read_text())["taxonomy"]["lexical"]
    assert stored == {"folder": "lexical/taxonomy", "weight": 0.25}
    events = [{"title": "saxophone trio", "description": "swing"}, {"text": "peloton road"}]
    mixed, plain = Cascade(run), Cascade(tiny_run)
    level = mixed.hierarchy.taxonomy
    inputs = mixed.encode(events)
    lexical = LexicalModel.load(run / "lexical" / "taxonomy").predict_proba(inputs.texts)
    expected = 0.75 * plain.level_probs(plain.hierarchy.taxonomy, plain.encode(events)).numpy() + 0.25 * lexical
    assert np.allclose(mixed.level_probs(level, inputs).numpy(), expected, atol=1e-5)


def test_a_missing_lexical_file_is_named_at_check_time(tiny_run: Path, tmp_path: Path) -> None:
    run = with_lexical(tiny_run, tmp_path / "run", weight=0.5)
    (run / "lexical" / "taxonomy" / LEXICAL_WEIGHTS).unlink()
    with pytest.raises(HierarchyError, match="lexical model for 'taxonomy'.*lexical.safetensors not found"):
        check_run_dir(run)


def test_old_hierarchy_files_load_with_head_truncation_and_no_lexical(tiny_run: Path) -> None:
    data = json.loads((tiny_run / "hierarchy.json").read_text())
    data["text"].pop("truncation", None)
    for level in [data["taxonomy"], *data["subtaxonomies"].values()]:
        level.pop("lexical", None)
    hierarchy = Hierarchy.from_json(data)
    assert hierarchy.text.truncation == "head"
    assert all(level.lexical is None for level in hierarchy.levels())
