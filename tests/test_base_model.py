"""The BERT -> DistilBERT conversion behind the embedded default base model."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertConfig, BertModel

from training.base_model import convert_bert


def test_converted_distilbert_matches_bert_hidden_states() -> None:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=120, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=96, max_position_embeddings=64, hidden_act="gelu")
    bert = BertModel(config, add_pooling_layer=False).eval()
    # Random token-type embeddings: the conversion must fold row 0 into the positions.
    torch.nn.init.normal_(bert.embeddings.token_type_embeddings.weight, std=0.5)
    distil = convert_bert(bert)
    ids = torch.randint(5, 120, (3, 17))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, 4:] = 0
    with torch.no_grad():
        expected = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        got = distil(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    assert torch.allclose(expected[real], got[real], atol=1e-4)
    # Dropping the fold would make them differ: the check can fail.
    distil.embeddings.position_embeddings.weight.data -= bert.embeddings.token_type_embeddings.weight[0]
    with torch.no_grad():
        broken = distil(input_ids=ids, attention_mask=mask).last_hidden_state
    assert not torch.allclose(expected[real], broken[real], atol=1e-4)


def test_embedded_default_base_is_converted_once_and_cached(tmp_path, monkeypatch) -> None:
    from transformers import AutoTokenizer, DistilBertModel

    from training.base_model import embedded_source, prepare_base_model

    monkeypatch.setenv("EVENT_TAXONOMY_CACHE", str(tmp_path))
    path, record = prepare_base_model(None)
    assert record["source"] == "embedded" and path.startswith(str(tmp_path))
    stamp = (Path(path) / "model.safetensors").stat().st_mtime_ns
    assert prepare_base_model(None)[0] == path
    assert (Path(path) / "model.safetensors").stat().st_mtime_ns == stamp  # not converted twice
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = tokenizer(["a jazz trio plays tonight", "hello"], padding=True, return_tensors="pt")
    bert = BertModel.from_pretrained(str(embedded_source()), add_pooling_layer=False).eval()
    distil = DistilBertModel.from_pretrained(path).eval()
    with torch.no_grad():
        expected = bert(**batch).last_hidden_state
        got = distil(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    real = batch.attention_mask.bool()
    assert torch.allclose(expected[real], got[real], atol=1e-4)


def test_cold_cache_is_converted_once_by_concurrent_callers(tmp_path: Path, monkeypatch) -> None:
    import threading
    import time

    from training import base_model

    source = tmp_path / "pkg"
    source.mkdir()
    (source / "model.safetensors").write_bytes(b"x")
    calls = []

    def slow_convert(src: Path, target: Path) -> None:
        calls.append(target)
        time.sleep(0.3)  # long enough for the second caller to arrive while the first converts
        target.mkdir()
        (target / "model.safetensors").write_bytes(b"converted")

    monkeypatch.setenv("EVENT_TAXONOMY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(base_model, "embedded_source", lambda: source)
    monkeypatch.setattr(base_model, "_convert_into", slow_convert)
    results = []
    threads = [threading.Thread(target=lambda: results.append(base_model.prepare_base_model()[0])) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(results)) == 1
