"""The BERT -> DistilBERT conversion behind the embedded default base model."""

from __future__ import annotations

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
