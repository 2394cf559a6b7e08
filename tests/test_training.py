"""The training entry point end to end on a tiny model, and its refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification

from handlers.hierarchy import Hierarchy
from training.evaluate import main as evaluate_main
from training.train import main as train_main

ROOT = Path(__file__).resolve().parent.parent


def test_run_directory_follows_the_contract(tiny_run: Path, tmp_path: Path) -> None:
    from archives.export import export_level

    h = Hierarchy.load(tiny_run)
    assert h.base_model["source"] == "local"
    assert h.taxonomy.checkpoint == "taxonomy"
    assert sorted(lvl.checkpoint for lvl in h.subtaxonomies.values() if lvl.checkpoint) == [
        "subtaxonomy/music", "subtaxonomy/sports"]
    assert (tiny_run / "tokenizer" / "tokenizer.json").is_file()
    for folder in h.checkpoints():  # each level exports as a stock checkpoint (tests/test_trunk.py: same answers)
        model = AutoModelForSequenceClassification.from_pretrained(export_level(tiny_run, folder, tmp_path / folder))
        assert type(model).__name__ == "DistilBertForSequenceClassification"
        labels = h.taxonomy.labels if folder == "taxonomy" else h.subtaxonomies[folder.split("/")[1]].labels
        assert [model.config.id2label[i] for i in range(len(labels))] == list(labels)
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    for split in ("val", "test"):
        m = metrics["splits"][split]
        assert set(m) >= {"taxonomy", "subtaxonomy", "subtaxonomy_given_taxonomy", "path_accuracy", "rows"}
        assert 0 <= m["taxonomy"]["accuracy"] <= 1 and "macro_f1" in m["taxonomy"]
        assert "per_class" in m["subtaxonomy"]
    assert [s["name"] for s in metrics["models"]][:2] == ["paths (warm-up)", "taxonomy"]
    assert metrics["decoding"] == h.decoding and set(metrics["decoding_val_path_accuracy"]) == {"greedy", "joint"}
    report = (tiny_run / "report.md").read_text()
    assert report.startswith("# Training report: tiny\n")
    assert "| test |" in report and "confusion_taxonomy.png" in report
    for png in ["confusion_taxonomy.png", "confusion_subtaxonomy_music.png", "curves_taxonomy.png",
                "curves_subtaxonomy_sports.png"]:
        assert (tiny_run / png).read_bytes()[:4] == b"\x89PNG"
    assert not list(tiny_run.parent.glob(".tiny.*"))  # no temporary folder left behind


def test_tiny_model_learns_the_taxonomy(tiny_run: Path) -> None:
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["splits"]["val"]["taxonomy"]["accuracy"] >= 0.8  # chance is 1/3


def test_evaluate_uses_the_same_split_and_writes_json(tiny_run: Path, events_csv: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "eval.json"
    assert evaluate_main(["--run", str(tiny_run), "--data", str(events_csv), "--split", "test",
                          "--output", str(out)]) == 0
    scores = json.loads(out.read_text())
    trained = json.loads((tiny_run / "metrics.json").read_text())["splits"]["test"]
    assert scores["rows"] == trained["rows"]
    assert scores["path_accuracy"] == pytest.approx(trained["path_accuracy"])
    assert "path acc" in capsys.readouterr().out


def test_existing_run_is_never_overwritten(tiny_run: Path, events_csv: Path, capsys: pytest.CaptureFixture) -> None:
    before = (tiny_run / "hierarchy.json").stat().st_mtime_ns
    assert train_main(["--data", str(events_csv), "--output", str(tiny_run)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tiny_run / "hierarchy.json").stat().st_mtime_ns == before


def test_data_errors_exit_cleanly_and_write_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("title,description,taxonomy\nA,b,music\n")
    result = subprocess.run([sys.executable, "-m", "training.train", "--data", str(bad), "--output",
                             str(tmp_path / "run")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert "missing column(s) 'subtaxonomy'" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_overwrite_replaces_only_after_success(tiny_base: Path, events_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old run")
    args = ["--data", str(events_csv), "--output", str(out), "--base-model", str(tiny_base), "--epochs", "1",
            "--path-warmup-epochs", "0", "--quiet", "--top-layers", "1", "--class-weights", "balanced", "--max-length", "16"]
    assert train_main(args + ["--overwrite"]) == 0
    assert not (out / "old.txt").exists() and (out / "hierarchy.json").is_file()
    summary = json.loads((out / "metrics.json").read_text())["models"]
    assert all(s["epochs_run"] == 1 for s in summary)


def test_top_trains_on_the_trunk_states_and_goes_back_on_the_trunk(tiny_base: Path) -> None:
    import torch

    from training.top import TopOnTrunk, pad_states

    model = AutoModelForSequenceClassification.from_pretrained(tiny_base, num_labels=3).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    split = TopOnTrunk(model, 1)
    rows = {"input_ids": [[2, 7, 9, 3], [2, 8, 3]], "labels": [0, 2]}
    data = split.dataset(rows, pad_id=0, bf16=False)
    assert [len(x) for x in data.states] == [4, 3] and data.labels == [0, 2]
    batch = pad_states([data[0], data[1]])
    with torch.no_grad():  # the top on cached states computes what the whole model computes
        whole = model(input_ids=torch.tensor([[2, 7, 9, 3], [2, 8, 3, 0]]),
                      attention_mask=torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])).logits
        top = split.top.model(inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(whole, top, atol=1e-5)
    with torch.no_grad():
        split.top.model.classifier.bias += 1.0  # as training would move it
    after = split.put_back(model).state_dict()
    assert torch.equal(after["classifier.bias"], before["classifier.bias"] + 1.0)
    assert all(torch.equal(after[k], before[k]) for k in before if not k.startswith(("classifier.", "pre_classifier.",
                                                                                     "distilbert.transformer.layer.1.")))


def test_a_tops_rows_are_batched_by_length(tiny_base: Path, tmp_path: Path) -> None:
    """With random batches, one long row padded a whole batch of short ones (the top's cost
    grows with the padded width): the Trainer, given the arguments training uses, groups them."""
    import pandas as pd
    from transformers import Trainer

    from handlers.hierarchy import Level
    from training.level import LevelJob, _training_args
    from training.config import parse_config
    from training.top import TopOnTrunk, pad_states

    model = AutoModelForSequenceClassification.from_pretrained(tiny_base, num_labels=2)
    lengths = [4, 60] * 160
    rows = {"input_ids": [[2] + [7] * (n - 2) + [3] for n in lengths], "labels": [0, 1] * 160}
    data = TopOnTrunk(model, 1).dataset(rows, pad_id=0, bf16=False)
    config = parse_config(["--data", "x.csv", "--output", str(tmp_path / "run"), "--batch-size", "8"])
    job = LevelJob("taxonomy", "taxonomy", "taxonomy", Level(("a", "b"), "taxonomy"), pd.DataFrame(),
                   pd.DataFrame(), "taxonomy", 1, 1e-4)
    trainer = Trainer(model=model, args=_training_args(job, config, tmp_path, len(data), False),
                      train_dataset=data, data_collator=pad_states)
    batches = list(trainer.get_train_dataloader())
    assert sum(len(b["labels"]) for b in batches) == len(lengths)
    padded = sum(b["attention_mask"].numel() - b["attention_mask"].sum().item() for b in batches)
    assert padded / sum(b["attention_mask"].numel() for b in batches) < 0.15  # random batches: about 0.47
    assert "input_ids" not in batches[0]  # the top reads the states only


def test_a_level_starts_quietly_unless_weights_outside_its_head_are_missing(
        tiny_base: Path, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """The new head is expected and says nothing; an encoder weight the checkpoint lacks gets one line."""
    from safetensors.torch import load_file, save_file

    from training.level import _start_model

    model = _start_model(str(tiny_base), ("a", "b", "c"))
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"} and model.classifier.out_features == 3
    out, err = capfd.readouterr()
    assert "LOAD REPORT" not in out + err and "warning" not in out + err
    model.save_pretrained(tmp_path / "holed")
    weights = load_file(tmp_path / "holed" / "model.safetensors")
    dropped = next(key for key in weights if "layer.0.ffn" in key)
    save_file({k: v for k, v in weights.items() if k != dropped}, tmp_path / "holed" / "model.safetensors",
              metadata={"format": "pt"})
    _start_model(str(tmp_path / "holed"), ("x", "y"))
    out, err = capfd.readouterr()
    assert f"warning: 1 weights outside the classification head are not in {tmp_path / 'holed'}" in out
    assert dropped in out and "LOAD REPORT" not in out + err


def test_subtaxonomy_head_starts_from_the_warmup_rows_of_its_paths(tiny_base: Path, tmp_path: Path) -> None:
    import torch

    from training.level import _init_head

    warm = AutoModelForSequenceClassification.from_pretrained(
        tiny_base, num_labels=3, id2label={0: "a / x", 1: "a / y", 2: "b / z"}, label2id={"a / x": 0, "a / y": 1, "b / z": 2})
    warm.save_pretrained(tmp_path / "warm")
    sub = AutoModelForSequenceClassification.from_pretrained(tmp_path / "warm", num_labels=2,
                                                             ignore_mismatched_sizes=True)
    _init_head(sub, tmp_path / "warm", ["a / y", "a / x"])
    assert torch.equal(sub.classifier.weight, warm.classifier.weight[[1, 0]])
    assert torch.equal(sub.classifier.bias, warm.classifier.bias[[1, 0]])
    assert torch.equal(sub.pre_classifier.weight, warm.pre_classifier.weight)


def test_path_warmup_run(tiny_base: Path, events_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train_main(["--data", str(events_csv), "--output", str(out), "--base-model", str(tiny_base),
                       "--path-warmup-epochs", "2", "--epochs", "1", "--quiet", "--max-length", "16"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    names = [s["name"] for s in metrics["models"]]
    assert names[:2] == ["paths (warm-up)", "taxonomy"]
    assert not (out / "_warmup").exists()
    assert sorted(Hierarchy.load(out).checkpoints()) == ["subtaxonomy/music", "subtaxonomy/sports", "taxonomy"]
    # Short texts: --top-layers auto keeps two layers per top, all the tiny base has.
    assert metrics["long_text"]["top_layers"] == "2 (auto: short texts -> 2)"
    assert Hierarchy.load(out).trunk.layers == 0


def test_a_run_writes_hierarchy_json_once_and_records_its_resolved_config(tiny_base: Path, events_csv: Path,
                                                                         tmp_path: Path, monkeypatch) -> None:
    """Warm-up, shared trunk, lexical models, decoding, paths level and abstention are all chosen,
    and hierarchy.json is written once, at the end, with what was chosen."""
    saved: list[Hierarchy] = []
    save = Hierarchy.save
    monkeypatch.setattr(Hierarchy, "save", lambda self, run_dir: saved.append(self) or save(self, run_dir))
    out = tmp_path / "run"
    assert train_main(["--data", str(events_csv), "--output", str(out), "--base-model", str(tiny_base),
                       "--path-warmup-epochs", "1", "--epochs", "1", "--top-layers", "1", "--quiet",
                       "--max-length", "16"]) == 0
    assert len(saved) == 1 and Hierarchy.load(out) == saved[0]
    assert saved[0].trunk is not None  # the run stored on its shared trunk
    assert not list(out.glob(".hierarchy.json*"))  # no temporary file left beside it
    args = json.loads((out / "training.json").read_text())["args"]
    assert args["precision"] in ("bf16", "fp32") and args["truncation"] in ("head", "windows") and args["top_layers"] == 1
