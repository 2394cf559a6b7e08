"""The paths head: the path warm-up's top kept on the shared trunk and mixed into path scores."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from handlers.cascade import Cascade
from handlers.hierarchy import Hierarchy, Level, path_label
from handlers.run_layout import PATHS_DIR, TOP_FILE
from handlers.run_dir import check_run_dir
from tests.live_server import register
from tests.tiny import add_lexical, tiny_events
from training.choices import write_run
from training.decoding import PATHS_MIN_GAIN, PATHS_WEIGHTS, choose_paths_weight
from table.events import event_dicts

ROOT = Path(__file__).resolve().parent.parent
EVENTS = tiny_events(rows_per_class=2, seed=5)


@pytest.fixture(scope="module")
def paths_run(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, events_csv: Path) -> Path:
    from training.train import main

    out = tmp_path_factory.mktemp("paths") / "run"
    code = main(["--data", str(events_csv), "--output", str(out), "--base-model", str(tiny_base),
                 "--epochs", "10", "--patience", "4", "--path-warmup-epochs", "5", "--subtaxonomy-epochs", "10",
                 "--subtaxonomy-learning-rate", "1e-2", "--learning-rate", "1e-2", "--batch-size", "8",
                 "--max-length", "32", "--quiet", "--threads", "2", "--top-layers", "1", "--paths-weight", "0.5"])
    assert code == 0
    return out


def test_the_warmups_top_is_kept_on_the_trunk_as_the_paths_head(paths_run: Path) -> None:
    hierarchy = check_run_dir(paths_run)
    assert hierarchy.paths is not None and hierarchy.paths_weight == 0.5
    assert hierarchy.paths.checkpoint == PATHS_DIR and PATHS_DIR in hierarchy.checkpoints()
    assert set(hierarchy.paths.labels) == {path_label(t, s) for t, lvl in hierarchy.subtaxonomies.items()
                                           for s in lvl.labels}
    assert sorted(p.name for p in (paths_run / PATHS_DIR).iterdir()) == ["config.json", TOP_FILE]
    metrics = json.loads((paths_run / "metrics.json").read_text())
    assert metrics["paths_head"]["weight"] == 0.5 and len(metrics["paths_head"]["val_path_accuracy_by_weight"]) == 11
    assert "Paths level: weight 0.5 (paths head" in (paths_run / "report.md").read_text()


def test_a_path_scores_the_mix_and_the_best_mix_is_predicted(paths_run: Path) -> None:
    cascade = Cascade(paths_run, precision="fp32")
    h, w = cascade.hierarchy, cascade.paths_weight
    scores = cascade.path_scores(EVENTS, [5] * len(EVENTS))
    answers = cascade.predict(EVENTS, top_k=5)
    for i, answer in enumerate(answers):
        tax, subs, paths = scores.of(i)
        assert paths is not None
        best_path = h.paths.labels[int(paths.argmax())]
        assert h.taxonomy.labels.index(best_path.split(" / ")[0]) in subs  # its taxonomy was run
        mixed = {}
        for t, probs in subs.items():
            taxonomy = h.taxonomy.labels[t]
            for s, p in enumerate(probs.tolist()):
                label = path_label(taxonomy, h.subtaxonomies[taxonomy].labels[s])
                mixed[label] = (1 - w) * float(tax[t]) * p + w * float(paths[h.paths.labels.index(label)])
        assert path_label(*answer["path"]) == max(mixed, key=mixed.get)
        assert answer["path_score"] == pytest.approx(mixed[path_label(*answer["path"])], abs=1e-5)
        assert [k["score"] for k in answer["top_k"]] == pytest.approx(sorted(mixed.values(), reverse=True)[:5], abs=1e-5)
    # One taxonomy pass, the paths head's, then the best taxonomy's and the head's best path's.
    assert cascade.passes(1) == 4


def test_the_weight_is_chosen_on_val_and_weight_zero_drops_the_head(paths_run: Path, events_csv: Path,
                                                                    tmp_path: Path) -> None:
    frame = pd.read_csv(paths_run / "split.csv")
    rows = pd.read_csv(events_csv, keep_default_na=False).iloc[frame[frame.split == "val"].row]
    run = shutil.copytree(paths_run, tmp_path / "run")
    metrics: dict = {}
    best = choose_paths_weight(Cascade(run), rows, metrics)
    by_weight = {float(w): a for w, a in metrics["paths_head"]["val_path_accuracy_by_weight"].items()}
    assert set(by_weight) == set(PATHS_WEIGHTS)
    top = max(by_weight, key=lambda w: (by_weight[w], -w))  # the best, ties to the smaller weight
    assert best == (top if by_weight[top] - by_weight[0.0] >= PATHS_MIN_GAIN - 1e-9 else 0.0)
    cascade = Cascade(run)
    assert choose_paths_weight(cascade, rows, {}, wanted=0.0) == 0.0
    write_run(run, cascade.hierarchy)
    assert not (run / PATHS_DIR).exists() and Hierarchy.load(run).paths is None and check_run_dir(run).paths is None
    # Weight 0 was scored as the run without the head serves: no head pass, no extra candidate.
    from table.scoring import evaluate_frame

    assert evaluate_frame(Cascade(run), rows).scores["path_accuracy"] == pytest.approx(by_weight[0.0])
    assert Cascade(run).passes(1) == 2 and cascade.predict(EVENTS) == Cascade(run).predict(EVENTS)


def test_choosing_the_decoding_reads_the_taxonomy_given_part_once(paths_run: Path, events_csv: Path,
                                                                  tmp_path: Path, monkeypatch) -> None:
    """Greedy and joint are both scored on val; the taxonomy-given pass is the same for both."""
    from table import scoring
    from table.scoring import evaluate_frame
    from training.decoding import choose_decoding

    frame = pd.read_csv(paths_run / "split.csv")
    rows = pd.read_csv(events_csv, keep_default_na=False).iloc[frame[frame.split == "val"].row]
    run = shutil.copytree(paths_run, tmp_path / "run")
    cascade, calls = Cascade(run), []
    given = scoring.subtaxonomy_given
    monkeypatch.setattr(scoring, "subtaxonomy_given", lambda *args: calls.append(args) or given(*args))
    tried = choose_decoding(cascade, rows, "auto", {})
    assert sorted(tried) == ["greedy", "joint"] and len(calls) == 1
    for mode, result in tried.items():  # the same as scoring each decoding on its own
        alone = evaluate_frame(Cascade(run, decoding=mode), rows)
        assert result.scores == alone.scores and result.given == alone.given and result.answers == alone.answers


def assert_served_as_the_cascade(run: Path, name: str, server) -> None:
    """Build an archive of ``run``, register it, and check its answers equal the cascade's."""
    built = subprocess.run([sys.executable, "-m", "archives.build", "--run", str(run), "--name", name,
                            "--model-store", str(server.model_store), "--threads", "1", "--force"],
                           capture_output=True, text=True, cwd=ROOT)
    assert built.returncode == 0, built.stderr
    code, body = register(server, f"{name}.mar")
    assert code == 200, body
    try:
        expected = Cascade(run).predict(EVENTS, top_k=3)
        code, body = server.call("inference", "POST", f"/predictions/{name}",
                                 json.dumps([{**e, "top_k": 3} for e in EVENTS]).encode(),
                                 {"Content-Type": "application/json"})
        assert code == 200, body
        served = json.loads(body)
        assert [a["path"] for a in served] == [a["path"] for a in expected]
        for s, e in zip(served, expected):
            assert s["path_score"] == pytest.approx(e["path_score"], abs=1e-4)
    finally:
        server.call("management", "DELETE", f"/models/{name}")


@pytest.mark.e2e
def test_served_answers_with_the_paths_head_equal_the_cascade(paths_run: Path, server) -> None:
    assert_served_as_the_cascade(paths_run, "paths", server)


def test_the_paths_head_exports_as_a_stock_checkpoint(paths_run: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "paths"
    exported = subprocess.run([sys.executable, "-m", "archives.export", "--run", str(paths_run), "--paths",
                               "--output", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert exported.returncode == 0, exported.stderr
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()  # no code of ours
    cascade = Cascade(paths_run, max_batch=1, precision="fp32")
    inputs = cascade.encode(EVENTS)
    with torch.inference_mode():
        expected = torch.stack([torch.softmax(model(input_ids=torch.tensor([ids])).logits, dim=-1)[0] for ids in inputs.ids])
    assert torch.allclose(cascade._model_probs(cascade.hierarchy.paths, inputs), expected, atol=1e-5)
    assert tuple(model.config.id2label[i] for i in range(len(model.config.id2label))) == cascade.hierarchy.paths.labels


def test_the_structures_benchmark_runs_on_a_run_with_the_paths_head(paths_run: Path) -> None:
    """The flat structure is the taxonomy model alone: it must drop the paths head too."""
    from benchmarks.structures import compare_structures

    events = [{"title": e["title"], "description": e["description"]} for e in tiny_events(rows_per_class=2)]
    rows = compare_structures(paths_run, events, [4], threads=1, max_seconds=0.2)
    assert {r["structure"] for r in rows} == {"flat", "flat, stock last layer", "whole", "trunk", "trunk, every candidate"}


def lexical_paths_run(paths_run: Path, events_csv: Path, dest: Path, weight: float = 0.4) -> Path:
    """A copy of the run whose paths level is a TF-IDF model over the paths alone (no head)."""
    from handlers.run_layout import PATHS_LEXICAL

    run = shutil.copytree(paths_run, dest)
    hierarchy = Hierarchy.load(run)
    frame = pd.read_csv(run / "split.csv")
    rows = pd.read_csv(events_csv, keep_default_na=False).iloc[frame[frame.split == "train"].row]
    texts = [hierarchy.text.format(r) for r in event_dicts(rows)]
    hierarchy = add_lexical(run, hierarchy, PATHS_LEXICAL, texts,
                            [path_label(t, s) for t, s in zip(rows.taxonomy, rows.subtaxonomy)], hierarchy.paths.labels)
    shutil.rmtree(run / PATHS_DIR)
    paths = dataclasses.replace(hierarchy.paths, checkpoint=None, lexical=PATHS_LEXICAL, lexical_weight=1.0)
    dataclasses.replace(hierarchy, paths=paths, paths_weight=weight).save(run)
    return run


def test_a_tfidf_paths_level_alone_costs_no_pass_and_is_mixed_like_the_head(paths_run: Path, events_csv: Path,
                                                                             tmp_path: Path) -> None:
    run = lexical_paths_run(paths_run, events_csv, tmp_path / "run")
    assert check_run_dir(run).paths.checkpoint is None
    cascade = Cascade(run, precision="fp32")
    # One taxonomy pass, then the best taxonomy's and the TF-IDF model's best path's: no head pass.
    assert cascade.passes(1) == 3
    lexical = cascade.lexical[cascade.hierarchy.paths.lexical].predict_proba(
        [cascade.hierarchy.text.format(e) for e in EVENTS])
    h, w = cascade.hierarchy, cascade.paths_weight
    scores = cascade.path_scores(EVENTS, [1] * len(EVENTS))
    for i, answer in enumerate(cascade.predict(EVENTS)):
        tax, subs, _ = scores.of(i)
        mixed = {path_label(h.taxonomy.labels[t], h.subtaxonomies[h.taxonomy.labels[t]].labels[s]):
                 (1 - w) * float(tax[t]) * p for t, probs in subs.items() for s, p in enumerate(probs.tolist())}
        mixed = {label: v + w * float(lexical[i][h.paths.labels.index(label)]) for label, v in mixed.items()}
        assert path_label(*answer["path"]) == max(mixed, key=mixed.get)
        assert answer["path_score"] == pytest.approx(mixed[path_label(*answer["path"])], abs=1e-5)
    refused = subprocess.run([sys.executable, "-m", "archives.export", "--run", str(run), "--paths",
                              "--output", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2 and "no paths head" in refused.stderr


def test_the_tfidf_share_is_chosen_with_the_weight_and_scored_as_served(paths_run: Path, events_csv: Path,
                                                                         tmp_path: Path) -> None:
    from table.scoring import evaluate_frame
    from handlers.run_layout import PATHS_LEXICAL

    run = lexical_paths_run(paths_run, events_csv, tmp_path / "run")
    shutil.copytree(paths_run / PATHS_DIR, run / PATHS_DIR)  # the head back, as training leaves it before the choice
    hierarchy = Hierarchy.load(run)
    dataclasses.replace(hierarchy, paths=Level(hierarchy.paths.labels, PATHS_DIR), paths_weight=0.0).save(run)
    frame = pd.read_csv(run / "split.csv")
    rows = pd.read_csv(events_csv, keep_default_na=False).iloc[frame[frame.split == "val"].row]
    metrics: dict = {}
    cascade = Cascade(run)
    weight = choose_paths_weight(cascade, rows, metrics)
    write_run(run, cascade.hierarchy)
    chosen = metrics["paths_head"]
    by_share = {float(s): a for s, a in chosen["val_path_accuracy_by_lexical_share"].items()}
    assert weight == chosen["weight"] and (weight == 0 or set(by_share) == set(PATHS_WEIGHTS))
    kept = check_run_dir(run)
    assert (run / PATHS_DIR).exists() == chosen["head"] and (run / PATHS_LEXICAL).exists() == (chosen["lexical_share"] > 0)
    assert (kept.paths is None) == (weight == 0)
    # The chosen pair's val accuracy is what the run now serves.
    served = evaluate_frame(Cascade(run), rows).scores["path_accuracy"]
    assert served == pytest.approx(chosen["val_path_accuracy_by_weight"][str(weight)])
    assert Cascade(run).predict(EVENTS) == cascade.predict(EVENTS)
    # A head asked for at a weight stays, whatever the TF-IDF share.
    again = lexical_paths_run(paths_run, events_csv, tmp_path / "again")
    shutil.copytree(paths_run / PATHS_DIR, again / PATHS_DIR)
    dataclasses.replace(hierarchy, paths=Level(hierarchy.paths.labels, PATHS_DIR), paths_weight=0.0).save(again)
    cascade = Cascade(again)
    assert choose_paths_weight(cascade, rows, {}, wanted=0.3) == 0.3
    write_run(again, cascade.hierarchy)
    assert check_run_dir(again).paths.checkpoint == PATHS_DIR and check_run_dir(again).paths.lexical_weight < 1


def test_a_paths_level_needs_a_checkpoint_unless_tfidf_reads_it_alone() -> None:
    from handlers.hierarchy import HierarchyError

    labels = ("a / x", "a / y")
    with pytest.raises(HierarchyError, match="need a checkpoint"):
        Level(labels, None)
    with pytest.raises(HierarchyError, match="need a checkpoint"):
        Level(labels, None, "lexical/_paths", 0.5)
    assert Level(labels, None, "lexical/_paths", 1.0).checkpoint is None


@pytest.mark.e2e
def test_a_served_tfidf_paths_level_answers_as_the_cascade(paths_run: Path, events_csv: Path, server,
                                                           tmp_path: Path) -> None:
    assert_served_as_the_cascade(lexical_paths_run(paths_run, events_csv, tmp_path / "run"), "tfidfpaths", server)


def test_routing_bounds_a_taxonomys_paths_with_the_paths_level(paths_run: Path) -> None:
    from tests.test_cascade import MIXED, assert_routing_is_exact, flatten_taxonomy_level

    for temperature in (1.0, 4.0):
        cascade = flatten_taxonomy_level(Cascade(paths_run, beam_min_prob=0.0, precision="fp32"), temperature)
        assert cascade.paths_weight > 0
        routed, every = assert_routing_is_exact(cascade, EVENTS + MIXED)
        assert routed < every, temperature
