"""The shared trunk: the run layout, the one-pass trunk at inference, and the stock export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification

from archives.export import export_level, export_whole_run
from handlers.cascade import Cascade
from handlers.hierarchy import Hierarchy, HierarchyError
from handlers.run_layout import TOP_FILE, WEIGHTS_FILE
from handlers.run_dir import check_run_dir
from handlers.trunk import in_trunk
from training.layout import split_run
from tests.tiny import tiny_events

EVENTS = tiny_events(rows_per_class=2, seed=5)


def test_run_stores_the_trunk_once_and_a_top_per_level(tiny_run: Path) -> None:
    hierarchy = check_run_dir(tiny_run)
    assert hierarchy.trunk is not None and hierarchy.trunk.layers == 1  # tiny base: 2 layers, --top-layers 1
    trunk = load_file(str(tiny_run / hierarchy.trunk.folder / WEIGHTS_FILE))
    assert trunk and all(in_trunk(key, 1) for key in trunk)
    for folder in hierarchy.checkpoints():
        assert not (tiny_run / folder / WEIGHTS_FILE).exists()
        top = load_file(str(tiny_run / folder / TOP_FILE))
        assert not any(in_trunk(key, 1) for key in top)
        assert "classifier.weight" in top and "distilbert.transformer.layer.1.ffn.lin1.weight" in top


def _level_probs(cascade: Cascade, folder: str, events: list[dict]) -> torch.Tensor:
    level = next(lvl for lvl in cascade.hierarchy.levels() if lvl.checkpoint == folder)
    return cascade._model_probs(level, cascade.encode(events))


def test_exported_level_is_a_stock_checkpoint_with_the_cascade_probabilities(tiny_run: Path, tmp_path: Path) -> None:
    cascade = Cascade(tiny_run, max_batch=3, precision="fp32")  # small chunks: padding differs between calls
    for folder in cascade.hierarchy.checkpoints():
        out = export_level(tiny_run, folder, tmp_path / folder)
        model = AutoModelForSequenceClassification.from_pretrained(out).eval()  # no code of ours
        texts = [cascade.hierarchy.text.format(e) for e in EVENTS]
        ids = cascade.hierarchy.text.token_ids(cascade.tokenizer, texts)
        expected = []
        with torch.inference_mode():
            for row in ids:  # one at a time: no padding at all
                logits = model(input_ids=torch.tensor([row])).logits
                expected.append(torch.softmax(logits, dim=-1)[0])
        got = _level_probs(cascade, folder, EVENTS)
        assert torch.allclose(got, torch.stack(expected), atol=1e-5), folder
        assert json.loads((out / "config.json").read_text())["id2label"]


def test_bf16_keeps_linear_weights_in_bf16_with_the_answers_of_autocast(tiny_run: Path) -> None:
    """Casting the Linear weights once at load gives what autocast gives casting them per call."""
    cascade = Cascade(tiny_run, precision="bf16")
    per_call = Cascade(tiny_run, precision="fp32")
    per_call.precision = "bf16"  # autocast over the fp32 weights
    modules = [m for model in [cascade.trunk, *cascade.models.values()] for m in model.modules()]
    assert all(m.weight.dtype == torch.bfloat16 for m in modules if isinstance(m, torch.nn.Linear))
    assert all(m.weight.dtype == torch.float32 for m in modules if isinstance(m, (torch.nn.Embedding, torch.nn.LayerNorm)))
    for folder in cascade.hierarchy.checkpoints():
        assert torch.equal(_level_probs(cascade, folder, EVENTS), _level_probs(per_call, folder, EVENTS)), folder


def test_trunk_runs_once_per_event(tiny_run: Path) -> None:
    cascade = Cascade(tiny_run, decoding="joint", beam_width=3, beam_min_prob=0.0)
    calls = []
    cascade.trunk.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    answers = cascade.predict(EVENTS, top_k=3)
    assert len(answers) == len(EVENTS)
    assert sum(calls) == len(EVENTS)  # every subtaxonomy model visited read the same hidden states


def test_whole_checkpoint_runs_still_load(tiny_run: Path, tmp_path: Path) -> None:
    """A version-1 run (one whole checkpoint per level) answers as its trunk form does."""
    legacy = export_whole_run(tiny_run, tmp_path / "legacy")
    data = json.loads((legacy / "hierarchy.json").read_text())
    assert data["trunk"] is None and not (legacy / "trunk").exists()
    data.update(schema_version=1)
    data.pop("trunk")
    (legacy / "hierarchy.json").write_text(json.dumps(data))
    for folder in Hierarchy.load(legacy).checkpoints():
        assert sorted(p.name for p in (legacy / folder).iterdir()) == ["config.json", WEIGHTS_FILE]
    old = Cascade(legacy, precision="fp32").predict(EVENTS, top_k=2)
    new = Cascade(tiny_run, precision="fp32").predict(EVENTS, top_k=2)
    assert [a["path"] for a in old] == [a["path"] for a in new]
    assert all(abs(a["path_score"] - b["path_score"]) < 1e-5 for a, b in zip(old, new))


def test_a_level_whose_lower_layers_moved_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    run = export_whole_run(tiny_run, tmp_path / "run")  # whole checkpoints, as training leaves them
    hierarchy = Hierarchy.load(tiny_run)
    moved = hierarchy.checkpoints()[-1]
    state = load_file(str(run / moved / WEIGHTS_FILE))
    state["distilbert.transformer.layer.0.ffn.lin1.bias"] += 1e-3
    save_file(state, str(run / moved / WEIGHTS_FILE))
    with pytest.raises(HierarchyError, match=f"{moved}: 1 tensors below the top 1 layers differ"):
        split_run(run, hierarchy, 1)
    assert not (run / "trunk").exists() and (run / moved / WEIGHTS_FILE).is_file()  # nothing half-split


def test_missing_trunk_is_named(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "trunk" / WEIGHTS_FILE).unlink()
    with pytest.raises(HierarchyError, match="the shared trunk has no model.safetensors"):
        check_run_dir(run)


def test_export_command(tiny_run: Path, tmp_path: Path) -> None:
    from archives.export import main

    assert main(["--run", str(tiny_run), "--level", "music", "--output", str(tmp_path / "music")]) == 0
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "music")
    assert list(model.config.id2label.values()) == ["jazz", "rock"]
    assert (tmp_path / "music" / "tokenizer.json").is_file()
    assert main(["--run", str(tiny_run), "--level", "nightlife", "--output", str(tmp_path / "x")]) == 2
    assert main(["--run", str(tiny_run), "--all", "--output", str(tmp_path / "whole")]) == 0
    assert check_run_dir(tmp_path / "whole").trunk is None


def test_structures_benchmark_compares_the_same_weights(tiny_run: Path) -> None:
    from benchmarks.structures import compare_structures, table

    rows = compare_structures(tiny_run, EVENTS * 2, [1, 4], threads=1, max_seconds=0.5)
    structures = {(r["structure"], r["decoding"]) for r in rows}
    assert {("flat", "-"), ("flat, stock last layer", "-"), ("whole", "greedy, top_k 1"),
            ("trunk", "greedy, top_k 1")} <= structures
    assert all(r["events_per_s"] > 0 for r in rows)
    text = table(rows)
    assert text.count("| trunk |") == len({(r["decoding"], r["precision"]) for r in rows if r["structure"] == "trunk"})
    assert "x) |" in text


def test_structures_benchmark_repeats_report_the_median_of_every_round(tiny_run: Path) -> None:
    import statistics

    from benchmarks.structures import compare_structures

    rows = compare_structures(tiny_run, EVENTS, [2], threads=1, max_seconds=0.2, repeats=3)
    assert len({(r["structure"], r["decoding"], r["precision"]) for r in rows}) == len(rows)  # one row per cell
    for row in rows:
        assert len(row["events_per_s_runs"]) == 3
        assert row["events_per_s"] == round(statistics.median(row["events_per_s_runs"]), 1)


def test_a_base_that_is_not_distilbert_needs_top_layers_all(tiny_base: Path, events_csv: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    from transformers import BertConfig, BertModel

    from training.train import main

    bert = tmp_path / "bert"
    BertModel(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(bert)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (tiny_base / name).is_file():
            shutil.copy2(tiny_base / name, bert / name)
    code = main(["--data", str(events_csv), "--output", str(tmp_path / "run"), "--base-model", str(bert), "--quiet"])
    assert code == 2 and "pass --top-layers all" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_the_last_layer_computes_the_first_position_as_the_stock_layer_does(attention: str) -> None:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    from handlers.trunk import FirstPositionBlock, read_first_position

    torch.manual_seed(3)
    config = DistilBertConfig(vocab_size=50, dim=32, hidden_dim=64, n_layers=2, n_heads=4, num_labels=5,
                              attn_implementation=attention)
    stock = DistilBertForSequenceClassification(config).train()  # dropout 0 below; train: gradients too
    stock.config.dropout = stock.config.attention_dropout = 0.0
    for module in stock.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    ours = DistilBertForSequenceClassification(config)
    ours.load_state_dict(stock.state_dict())
    ours = read_first_position(ours).train()
    for module in ours.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    assert isinstance(ours.distilbert.transformer.layer[-1], FirstPositionBlock)
    assert set(ours.state_dict()) == set(stock.state_dict())  # saves as the stock checkpoint
    ids = torch.randint(5, 50, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0  # padded rows: the first position must not attend to padding either
    mask[2, 7:] = 0
    labels = torch.tensor([0, 3, 4])
    outputs = [model(input_ids=ids, attention_mask=mask, labels=labels) for model in (stock, ours)]
    assert torch.allclose(outputs[0].logits, outputs[1].logits, atol=1e-5)
    for out in outputs:
        out.loss.backward()
    for (name, a), b in zip(stock.named_parameters(), ours.parameters()):
        assert a.grad is not None and b.grad is not None, name
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_the_served_layers_give_transformers_logits_whole_or_split(activation: str) -> None:
    """Serving runs stock DistilBERT tensors with handlers/distilbert.py, not transformers' classes."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    from handlers.distilbert import DistilBertPart, Settings

    torch.manual_seed(4)
    config = DistilBertConfig(vocab_size=60, dim=32, hidden_dim=64, n_layers=3, n_heads=4, num_labels=5,
                              activation=activation)
    stock = DistilBertForSequenceClassification(config).eval()
    state, settings = stock.state_dict(), Settings.of(config.to_dict())
    ids = torch.randint(5, 60, (4, 11))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    mask[3, 2:] = 0
    with torch.inference_mode():
        expected = stock(input_ids=ids, attention_mask=mask).logits
        whole = DistilBertPart.from_stock(settings, 0, 3, state, embeddings=True, head=True)(ids, mask)
        for trunk_layers in (2, 0):  # a trunk of 0 layers: the embeddings alone
            trunk = DistilBertPart.from_stock(settings, 0, trunk_layers, state, embeddings=True, head=False)
            top = DistilBertPart.from_stock(settings, trunk_layers, 3, state, embeddings=False, head=True)
            assert torch.allclose(top(trunk(ids, mask), mask), expected, atol=1e-5), trunk_layers
    assert torch.allclose(whole, expected, atol=1e-5)
    with pytest.raises(RuntimeError, match="Missing key"):  # a part needs every tensor it covers
        DistilBertPart.from_stock(settings, 2, 3, {k: v for k, v in state.items() if k != "classifier.bias"},
                                  embeddings=False, head=True)
