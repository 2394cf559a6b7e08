"""Long descriptions: head+tail truncation and the lexical (TF-IDF) model mixed into a level."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from handlers.hierarchy import Hierarchy, HierarchyError, Level
from handlers.run_dir import check_run_dir
from handlers.text import TextFormat, TextFormatError
from handlers.lexical import (FAMILIES, LEXICAL_JSON, LEXICAL_WEIGHTS, LexicalFeatures, LexicalModel,
                              check_lexical)
from handlers.tfidf import TermVectorizer
from tests.tiny import add_lexical, tiny_events
from training.lexical_fit import fit_features, fit_model

ROOT = Path(__file__).resolve().parent.parent


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


def fitted(texts: list[str], labels: list[str], order: tuple[str, ...], families=FAMILIES) -> LexicalModel:
    features = fit_features(texts, families)
    return fit_model(features, features.transform(texts), labels, order)


def tiny_texts(**kwargs) -> tuple[list[str], list[str]]:
    rows = tiny_events(rows_per_class=10, **kwargs)
    return [f"{r['title']}. {r['description']}" for r in rows], [r["taxonomy"] for r in rows]


def test_given_top_layers_are_kept_whatever_the_texts_length() -> None:
    from training.config import parse_config
    from training.reading import choose_top_layers

    def given(flag: str, long: bool) -> tuple[int, str]:
        return choose_top_layers(parse_config(["--data", "x", "--output", "y", "--top-layers", flag]).top_layers, long)

    assert given("3", True) == (3, "3 (given)") and given("1", False) == (1, "1 (given)")
    assert given("all", True) == (0, "all (given)")
    assert given("auto", True)[0] == 1 and given("auto", False)[0] == 2
    assert parse_config(["--data", "x", "--output", "y"]).top_layers == "auto"


def test_a_stored_lexical_model_predicts_what_it_predicted_when_fitted(tmp_path: Path) -> None:
    texts, labels = tiny_texts()
    order = ("music", "nightlife", "sports", "unseen")
    model = fitted(texts, labels, order)
    model.features.save(tmp_path / "features")
    model.save(tmp_path / "lex")
    loaded = LexicalModel.load(tmp_path / "lex", LexicalFeatures.load(tmp_path / "features"))
    probe = ["saxophone swing trio", "peloton road bike", "words it never saw"]
    assert np.allclose(model.predict_proba(probe), loaded.predict_proba(probe), atol=1e-6)
    probs = loaded.predict_proba(probe)
    assert probs.shape == (3, 4) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert [order[i] for i in probs[:2].argmax(axis=1)] == ["music", "sports"]
    assert probs[:, 3].max() < 1e-6  # a label with no training rows is never chosen
    assert not list(tmp_path.glob("*/*.pkl")) and not list(tmp_path.glob("*/*.pickle"))
    with pytest.raises(ValueError, match="needs the run's lexical features"):
        LexicalModel.load(tmp_path / "lex", None)


def test_a_level_that_sees_a_few_rows_keeps_only_the_feature_columns_they_hold(tmp_path: Path) -> None:
    rows = tiny_events(rows_per_class=10)
    texts = [f"{r['title']}. {r['description']}" for r in rows]
    features = fit_features(texts)
    matrix = features.transform(texts)
    music = [i for i, r in enumerate(rows) if r["taxonomy"] == "music"]
    model = fit_model(features, matrix[music], [rows[i]["subtaxonomy"] for i in music], ("jazz", "rock"))
    assert model.columns is not None and len(model.columns) < features.size
    assert set(model.columns) == set(np.flatnonzero(matrix[music].getnnz(axis=0)))
    dense = np.zeros((2, features.size), dtype=np.float32)
    dense[:, model.columns] = model.coef
    probe = ["saxophone bebop", "guitar riff", "peloton marathon"]
    logits = features.transform(probe) @ dense.T + model.intercept
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    assert np.allclose(model.predict_proba(probe), expected / expected.sum(axis=1, keepdims=True), atol=1e-6)
    features.save(tmp_path / "features")
    model.save(tmp_path / "music")
    loaded = LexicalModel.load(tmp_path / "music", LexicalFeatures.load(tmp_path / "features"))
    assert np.array_equal(loaded.columns, model.columns)
    assert np.allclose(loaded.predict_proba(probe), model.predict_proba(probe), atol=1e-6)


def test_character_grams_read_a_word_form_the_training_texts_never_had() -> None:
    texts, labels = tiny_texts()
    order = ("music", "nightlife", "sports")
    probe = ["saxophonists", "marathoners"]  # neither word occurs in training; their stems do
    words_alone = fitted(texts, labels, order, families=FAMILIES[:1]).predict_proba(probe)
    both = fitted(texts, labels, order).predict_proba(probe)
    assert np.allclose(words_alone[0], words_alone[1], atol=1e-6)  # nothing to tell them apart
    assert [order[i] for i in both.argmax(axis=1)] == ["music", "sports"]


def test_a_lexical_model_with_its_own_word_vectorizer_still_loads(tmp_path: Path) -> None:
    """A level stored with a vectorizer of its own (no shared features) reads as it did."""
    from safetensors.numpy import save_file

    texts, labels = tiny_texts()
    model = fitted(texts, labels, ("music", "nightlife", "sports"), families=FAMILIES[:1])
    vectorizer = model.features.vectorizers[0]
    (tmp_path / LEXICAL_JSON).write_text(json.dumps({
        "vectorizer": FAMILIES[0], "labels": list(model.labels),
        "vocabulary": {t: int(i) for t, i in vectorizer.vocabulary_.items()}}))
    save_file({"idf": vectorizer.idf_, "coef": model.coef, "intercept": model.intercept}, str(tmp_path / LEXICAL_WEIGHTS))
    assert check_lexical(tmp_path, model.labels, None) is None
    probe = ["saxophone swing trio", "peloton road bike"]
    assert np.allclose(LexicalModel.load(tmp_path, None).predict_proba(probe), model.predict_proba(probe), atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES, ids=[f["analyzer"] for f in FAMILIES])
def test_the_transform_is_scikit_learns_for_the_same_vocabulary_and_idf(family: dict) -> None:
    """Training fits with scikit-learn; every transform (training's and serving's) is TermVectorizer's."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts, _ = tiny_texts()
    fitted = TfidfVectorizer(**{**family, "min_df": 1, "ngram_range": tuple(family["ngram_range"])},
                             dtype=np.float32).fit(texts + ["Déjà vu au café naïf", "Straße ﬁne ½"])
    ours = TermVectorizer(family, fitted.vocabulary_, fitted.idf_)
    probe = texts[:20] + ["", "   ", "x", "a b", "DÉJÀ VU au Café", "Straße  ﬁne\t½\nlines", "never seen words",
                          "don't stop-believing 4x4 at 9pm", "日本語 café"]
    expected, got = fitted.transform(probe), ours.transform(probe)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.array_equal(got.indptr, expected.indptr) and np.array_equal(got.indices, expected.indices)
    assert np.allclose(got.data, expected.data, atol=1e-6)
    assert got[20].nnz == 0 and got[24].nnz > 0  # "" has no term; "DÉJÀ VU au Café" reads as "deja vu au cafe"


@pytest.mark.parametrize("family", FAMILIES, ids=[f["analyzer"] for f in FAMILIES])
def test_the_cap_after_normalising_changes_only_texts_that_normalising_takes_past_it(family: dict) -> None:
    """Serving and training read through the same cap (the run's max_chars); a text changes
    only when NFKD or lower-casing makes it longer than the cap."""
    texts, _ = tiny_texts()
    vocabulary = {term: i for i, term in enumerate(dict.fromkeys(
        t for text in texts + ["Straße ﬁne ½ café…"] for t in TermVectorizer(family, {}, np.ones(1)).terms(text)))}
    capped, uncapped = (TermVectorizer(family, vocabulary, np.ones(len(vocabulary)), m) for m in (64, None))
    fmt = TextFormat(max_chars=64)
    ordinary = [fmt.format({"text": t}) for t in texts + ["DÉJÀ VU au Café", "Straße ﬁne ½ café…"]]
    assert (capped.transform(ordinary) != uncapped.transform(ordinary)).nnz == 0
    at_the_cap = fmt.format({"text": "x" * 60 + " ½ café…"})  # 64 characters, 66 once normalised
    assert capped.normalise(at_the_cap) == uncapped.normalise(at_the_cap)[:64] != uncapped.normalise(at_the_cap)


def test_a_feature_family_this_code_cannot_transform_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot transform"):
        TermVectorizer({**FAMILIES[0], "analyzer": "char"}, {"ab": 0}, np.ones(1))
    with pytest.raises(ValueError, match="cannot transform"):
        TermVectorizer({**FAMILIES[0], "stop_words": "english"}, {"ab": 0}, np.ones(1))


def test_serving_imports_neither_scikit_learn_nor_transformers_model_code(tiny_run: Path, tmp_path: Path) -> None:
    """Each is about 100 MB of a worker's memory; serving needs neither (handlers/lexical.py,
    handlers/distilbert.py). Checked in a fresh interpreter, as a worker starts."""
    run = with_lexical(tiny_run, tmp_path / "run", weight=0.5)
    script = (f"import sys; from handlers.cascade import Cascade; c = Cascade({str(run)!r}); "
              "assert c.lexical and c.trunk is not None; "
              "print(c.predict([{'title': 'jazz night', 'description': 'a saxophone trio'}], top_k=3)[0]['path']); "
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'sympy') "
              "or m.startswith(('transformers.models.distilbert.modeling', 'transformers.modeling_utils'))))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    path, imported = result.stdout.strip().splitlines()[-2:]
    assert path.startswith("[") and imported == "[]", imported


def with_lexical(tiny_run: Path, dest: Path, weight: float) -> Path:
    """A copy of the tiny run whose taxonomy level mixes in a TF-IDF model."""
    shutil.copytree(tiny_run, dest)
    hierarchy = Hierarchy.load(dest)
    rows = tiny_events(rows_per_class=10, seed=3)
    hierarchy = add_lexical(dest, hierarchy, "lexical/taxonomy", [hierarchy.text.format(r) for r in rows],
                            [r["taxonomy"] for r in rows], hierarchy.taxonomy.labels)
    level = dataclasses.replace(hierarchy.taxonomy, lexical="lexical/taxonomy", lexical_weight=weight)
    dataclasses.replace(hierarchy, taxonomy=level).save(dest)
    return dest


def test_the_cascade_mixes_the_lexical_probabilities_with_the_stored_weight(tiny_run: Path, tmp_path: Path) -> None:
    from handlers.cascade import Cascade

    run = with_lexical(tiny_run, tmp_path / "run", weight=0.25)
    stored = json.loads((run / "hierarchy.json").read_text())["taxonomy"]["lexical"]
    assert stored == {"folder": "lexical/taxonomy", "weight": 0.25}
    events = [{"title": "saxophone trio", "description": "swing"}, {"text": "peloton road"}]
    mixed = Cascade(run)
    level = mixed.hierarchy.taxonomy
    inputs = mixed.encode(events)
    assert inputs.lexical is not None and inputs.lexical.shape[0] == 2  # the features, read once for every level
    features = LexicalFeatures.load(run / mixed.hierarchy.lexical_features)
    lexical = LexicalModel.load(run / "lexical" / "taxonomy", features).predict_proba(inputs.texts)
    # The transformer alone (tiny_run may keep a lexical model of its own, at another weight).
    model = mixed._model_probs(level, inputs).numpy()
    expected = 0.75 * model + 0.25 * lexical
    assert np.allclose(mixed.level_probs(level, inputs).numpy(), expected, atol=1e-5)
    picked = inputs.take([1])
    assert np.allclose(mixed.level_probs(level, picked).numpy(), expected[1:], atol=1e-5)


def test_a_missing_lexical_file_is_named_at_check_time(tiny_run: Path, tmp_path: Path) -> None:
    run = with_lexical(tiny_run, tmp_path / "run", weight=0.5)
    (run / "lexical" / "taxonomy" / LEXICAL_WEIGHTS).unlink()
    with pytest.raises(HierarchyError, match="lexical model for 'taxonomy'.*lexical.safetensors not found"):
        check_run_dir(run)


def test_lexical_features_that_are_missing_or_not_the_models_are_named_at_check_time(tiny_run: Path,
                                                                                      tmp_path: Path) -> None:
    run = with_lexical(tiny_run, tmp_path / "run", weight=0.5)
    meta = json.loads((run / "lexical" / "taxonomy" / LEXICAL_JSON).read_text())
    meta["features"] += 1
    (run / "lexical" / "taxonomy" / LEXICAL_JSON).write_text(json.dumps(meta))
    with pytest.raises(HierarchyError, match="lexical model for 'taxonomy'.*fitted on \\d+ features, the run's have"):
        check_run_dir(run)
    shutil.rmtree(run / Hierarchy.load(run).lexical_features)
    with pytest.raises(HierarchyError, match="the lexical features: .*features.json not found"):
        check_run_dir(run)


def test_features_no_lexical_model_reads_are_dropped_from_the_run(tiny_run: Path, tmp_path: Path) -> None:
    from training.choices import write_run
    from training.decoding import without_unused_features

    run = with_lexical(tiny_run, tmp_path / "run", weight=0.5)
    hierarchy = Hierarchy.load(run)
    assert without_unused_features(hierarchy) == hierarchy  # still read by the taxonomy level
    def strip(level: Level) -> Level:
        return dataclasses.replace(level, lexical=None, lexical_weight=0.0)

    unused = dataclasses.replace(hierarchy, taxonomy=strip(hierarchy.taxonomy),
                                 subtaxonomies={t: strip(level) for t, level in hierarchy.subtaxonomies.items()})
    for level in hierarchy.levels():  # as training leaves it: no model saved for a weight of 0
        if level.lexical:
            shutil.rmtree(run / level.lexical)
    settled = without_unused_features(unused)
    assert settled.lexical_features is None
    write_run(run, settled)
    assert not (run / "lexical").exists()  # nor the folder that held them
    assert Hierarchy.load(run) == settled


def test_old_hierarchy_files_load_with_head_truncation_and_no_lexical(tiny_run: Path) -> None:
    data = json.loads((tiny_run / "hierarchy.json").read_text())
    data["text"].pop("truncation", None)
    for level in [data["taxonomy"], *data["subtaxonomies"].values()]:
        level.pop("lexical", None)
    hierarchy = Hierarchy.from_json(data)
    assert hierarchy.text.truncation == "head"
    assert all(level.lexical is None for level in hierarchy.levels())


def test_windows_cover_a_long_text_from_its_first_token_to_its_last(tokenizer) -> None:
    one_token = {t: ids[0] for t in sorted(tokenizer.get_vocab()) if t.isalpha()
                 for ids in [tokenizer(t, add_special_tokens=False)["input_ids"]]
                 if len(ids) == 1 and ids[0] != tokenizer.unk_token_id}
    words = sorted(one_token, key=one_token.get)[:50]  # 50 different tokens: positions are unambiguous
    fmt = TextFormat(max_length=16, truncation="windows", max_windows=4)
    (windows,) = fmt.token_windows(tokenizer, [" ".join(words)])
    body = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]
    assert len(body) == 50 and len(windows) == 4 and all(len(w) == 16 for w in windows)
    assert all(w[0] == tokenizer.cls_token_id and w[-1] == tokenizer.sep_token_id for w in windows)
    assert windows[0][1:-1] == body[:14] and windows[-1][1:-1] == body[-14:]
    read = set()  # 4 windows of 14 tokens hold these 50 tokens whole: every position is read
    for w in windows:
        start = next(s for s in range(len(body)) if body[s : s + 14] == w[1:-1])
        read |= set(range(start, start + 14))
    assert read == set(range(len(body)))
    # Longer than max_windows windows: sampled, still from the first token to the last.
    (sampled,) = TextFormat(max_length=16, truncation="windows", max_windows=2).token_windows(tokenizer, [" ".join(words)])
    assert [w[1:-1] for w in sampled] == [body[:14], body[-14:]]


def test_a_short_text_is_one_window_the_same_as_its_head(tokenizer) -> None:
    texts = ["jazz trio tonight", "marathon runners on the track"]
    windows = TextFormat(max_length=16, truncation="windows").token_windows(tokenizer, texts)
    assert windows == [[ids] for ids in TextFormat(max_length=16).token_ids(tokenizer, texts)]
    with pytest.raises(TextFormatError, match="max_windows must be at least 1"):
        TextFormat(truncation="windows", max_windows=0)


def with_windows(tiny_run: Path, dest: Path, max_length: int = 16) -> Path:
    """A copy of the tiny run that reads texts as windows of ``max_length`` tokens."""
    shutil.copytree(tiny_run, dest)
    hierarchy = Hierarchy.load(dest)
    text = dataclasses.replace(hierarchy.text, truncation="windows", max_length=max_length, max_windows=3)
    dataclasses.replace(hierarchy, text=text).save(dest)
    return dest


def test_the_cascade_averages_each_events_window_probabilities(tiny_run: Path, tmp_path: Path) -> None:
    from handlers.cascade import Cascade
    from handlers.encoded import Encoded

    cascade = Cascade(with_windows(tiny_run, tmp_path / "run"))
    assert json.loads((tmp_path / "run" / "hierarchy.json").read_text())["text"]["max_windows"] == 3
    long = {"title": "saxophone trio", "description": "swing " * 10 + "the evening crowd " * 8 + "bebop quartet"}
    events = [long, {"text": "peloton road"}, {**long, "title": "marathon"}]
    inputs = cascade.encode(events)
    assert inputs.owner[:3] == [0, 0, 0] and inputs.owner.count(1) == 1 and len(inputs.ids) == 7
    for level in (cascade.hierarchy.taxonomy, cascade.hierarchy.subtaxonomies["music"]):
        pooled = cascade.level_probs(level, inputs)
        for event in range(len(events)):
            alone = [cascade.level_probs(level, Encoded([inputs.ids[w]], [inputs.texts[event]],
                                                        [inputs.states[w]], [0]))
                     for w, owner in enumerate(inputs.owner) if owner == event]
            assert torch_allclose(pooled[event], sum(alone) / len(alone))
        # Picking events keeps their windows: the same numbers as in the whole batch.
        assert torch_allclose(cascade.level_probs(level, inputs.take([2, 1])), pooled[[2, 1]])
    assert cascade.passes(1) == 3 * 2  # at most: every event as max_windows windows
    assert cascade.window_counts(events) == [inputs.owner.count(i) for i in range(len(events))]
    assert cascade.passes(1, 1) == 2


def test_the_cost_cap_charges_each_event_its_own_windows(tiny_run: Path, tmp_path: Path) -> None:
    """A short text is one window: billing it as max_windows would refuse requests that fit."""
    from tests.test_handler import handler_with, run

    windowed = with_windows(tiny_run, tmp_path / "run")
    h = handler_with(windowed, max_batch_cost=12)  # top_k 2 here: 3 passes per window
    short = {"text": "saxophone"}
    long = {"text": "swing " * 10 + "the evening crowd " * 8 + "bebop quartet"}  # 3 windows of 16 tokens
    assert h.cascade.window_counts([short, long]) == [1, 3]
    # Billed at max_windows, the first request alone (4 x 9 passes) would be refused.
    answers, codes, _ = run(h, windowed, [[short] * 4, [long, short], [long, long]])
    assert codes == [200, 429, 413]
    assert "batch is full (12 of 12 model passes" in answers[1]["message"]
    assert "this one needs 12)" in answers[1]["message"]
    assert answers[2]["message"].startswith("this request costs 18 model passes")


def torch_allclose(a, b) -> bool:
    import torch

    return bool(torch.allclose(a, b, atol=1e-5))


def test_the_benchmark_holds_out_the_val_rows_it_does_not_sample(tmp_path: Path) -> None:
    """Weights are chosen on the sampled val rows; the rest score the runs free of that choice."""
    import pandas as pd

    from benchmarks.long_text import baseline, sample

    rows = tiny_events(rows_per_class=10)
    frame = pd.DataFrame(rows).assign(split=["val" if i % 2 else "train" for i in range(len(rows))])
    frame.to_csv(tmp_path / "all.csv", index=False)
    table = sample(tmp_path / "all.csv", per_class=3, val_per_class=2, seed=0, out=tmp_path / "sample.csv")
    picked, held = pd.read_csv(table), pd.read_csv(tmp_path / "heldout.csv")
    val = frame[frame.split == "val"]
    assert (held.split == "val").all() and len(picked[picked.split == "val"]) + len(held) == len(val)
    key = ["title", "description"]
    assert picked.merge(held, on=key).empty
    assert set(map(tuple, pd.concat([picked[picked.split == "val"], held])[key].values)) == \
        set(map(tuple, val[key].values))
    assert set(baseline(table)) == {"val", "heldout"}
    sample(tmp_path / "all.csv", per_class=3, val_per_class=None, seed=0, out=table)  # every val row: none held out
    assert not (tmp_path / "heldout.csv").exists() and set(baseline(table)) == {"val"}


def test_the_feature_comparison_scores_every_feature_set_on_both_val_parts(tmp_path: Path) -> None:
    import pandas as pd

    from benchmarks.lexical_features import VARIANTS, compare
    from benchmarks.long_text import sample

    rows = tiny_events(rows_per_class=12)
    frame = pd.DataFrame(rows).assign(split=["val" if i % 3 == 0 else "train" for i in range(len(rows))])
    frame.to_csv(tmp_path / "all.csv", index=False)
    table = sample(tmp_path / "all.csv", per_class=8, val_per_class=2, seed=0, out=tmp_path / "sample.csv")
    results = compare(table)
    assert list(results) == ["TF-IDF + LinearSVC", *VARIANTS]
    for scores in results.values():  # the tiny events' words give their leaves away
        assert set(scores) == {"val", "heldout"} and min(scores.values()) > 0.6


def test_the_serving_cost_reads_the_run_as_served_as_before_and_by_whole_checkpoints(tiny_run: Path,
                                                                                      tmp_path: Path) -> None:
    import pandas as pd

    from benchmarks.long_text import serving_cost

    rows = tiny_events(rows_per_class=4)
    pd.DataFrame(rows).assign(split="val").to_csv(tmp_path / "val.csv", index=False)
    costs = serving_cost(tiny_run, tmp_path / "val.csv")  # tiny events are all under max_length: no long group
    assert set(costs) == {"served_short_events_per_s", "head_only_short_events_per_s",
                          "whole_head_only_short_events_per_s"}
    assert all(rate > 0 for rate in costs.values())
