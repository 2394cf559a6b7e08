"""DistilBERT in plain torch: the layers the cascade runs, under stock parameter names.

Why not transformers' own classes at serving: importing its DistilBERT model code pulls in
much of transformers and, through it, sympy, torch.distributed, torch._dynamo and
accelerate: about 110 MB of every worker's memory, for code whose inference is an embedding
table, six attention blocks and a two-layer head. Training and the ONNX export keep
transformers' classes (the Trainer and ONNX Runtime's fusions read them); the weights are the
same stock tensors either way, and tests check that this module gives transformers'
probabilities for them (tests/test_trunk.py).

``DistilBertPart`` holds any contiguous part of a DistilBERT sequence classifier: the shared
trunk (embeddings and the lower layers: token ids to hidden states), a level's top (the upper
layers and the head: hidden states to logits), or a whole classifier. Its last layer, when a
head follows, computes the first position only (``Block(first_only=True)``): the head reads
nothing else. No TorchServe or transformers import here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

STOCK_LAYER = re.compile(r"^distilbert\.transformer\.layer\.(\d+)\.(.+)$")  # a layer's parameter: (index, name)
STOCK_EMBEDDINGS = "distilbert.embeddings."
_HEAD = ("pre_classifier.", "classifier.")
_EPS = 1e-12  # DistilBERT's layer norms


@dataclass(frozen=True)
class Settings:
    """What the layers' shapes and dropouts need, from a checkpoint's config.json (or a
    transformers ``DistilBertConfig``: the attribute names are the same)."""

    dim: int
    n_heads: int
    hidden_dim: int
    n_layers: int
    vocab_size: int
    max_position_embeddings: int
    activation: str = "gelu"
    dropout: float = 0.1
    attention_dropout: float = 0.1
    seq_classif_dropout: float = 0.2
    pad_token_id: int = 0

    @classmethod
    def of(cls, config: Any) -> "Settings":
        """From a config.json mapping or a transformers config object."""
        get = config.get if isinstance(config, Mapping) else lambda key, default=None: getattr(config, key, default)
        if get("model_type", "distilbert") != "distilbert":
            raise ValueError(f"a DistilBERT checkpoint is needed, not {get('model_type')!r}")
        if get("activation", "gelu") not in _ACTIVATIONS:
            raise ValueError(f"unknown DistilBERT activation {get('activation')!r}: one of {sorted(_ACTIVATIONS)}")
        values = {name: get(name) for name in cls.__dataclass_fields__ if get(name) is not None}
        return cls(**values)


_ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}


class Embeddings(nn.Module):
    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(settings.vocab_size, settings.dim, padding_idx=settings.pad_token_id)
        self.position_embeddings = nn.Embedding(settings.max_position_embeddings, settings.dim)
        self.LayerNorm = nn.LayerNorm(settings.dim, eps=_EPS)
        self.dropout = nn.Dropout(settings.dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.dropout(self.LayerNorm(self.word_embeddings(input_ids) + self.position_embeddings(positions)))


class Attention(nn.Module):
    def __init__(self, settings: Settings) -> None:
        super().__init__()
        if settings.dim % settings.n_heads:
            raise ValueError(f"n_heads {settings.n_heads} must divide dim {settings.dim}")
        self.n_heads, self.dropout_p = settings.n_heads, settings.attention_dropout
        self.q_lin, self.k_lin, self.v_lin, self.out_lin = (nn.Linear(settings.dim, settings.dim) for _ in range(4))

    def forward(self, queries: torch.Tensor, states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``queries`` attend to ``states``; ``mask``: (batch, 1, queries or 1, keys), True where
        attended, or an additive float mask (as transformers passes its layers)."""
        batch, length, dim = queries.shape

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, x.shape[1], self.n_heads, dim // self.n_heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q_lin(queries)), heads(self.k_lin(states)),
                                             heads(self.v_lin(states)), attn_mask=mask,
                                             dropout_p=self.dropout_p if self.training else 0.0)
        return self.out_lin(out.transpose(1, 2).reshape(batch, length, dim))


class FFN(nn.Module):
    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.lin1 = nn.Linear(settings.dim, settings.hidden_dim)
        self.lin2 = nn.Linear(settings.hidden_dim, settings.dim)
        self.dropout = nn.Dropout(settings.dropout)
        self.activation = _ACTIVATIONS[settings.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.lin2(self.activation(self.lin1(x))))


class Block(nn.Module):
    """One DistilBERT layer; with ``first_only``, the first position alone.

    The classification head reads the last layer's output at the first position (``[CLS]``)
    and nothing else, so that layer needs every position's keys and values but the query,
    attention output and feed-forward of one position: about a sixth of a whole layer's work
    on a batch of 30-token texts, less on longer ones. Called as transformers calls its layers
    (``block(hidden_states, attention_mask)``), so it also replaces the last layer of a
    transformers model in training (``read_first_position``): the gradient of a loss on the
    head is the same. Returns (batch, 1, dim) when ``first_only``.
    """

    def __init__(self, settings: Any, first_only: bool = False) -> None:
        super().__init__()
        settings = settings if isinstance(settings, Settings) else Settings.of(settings)
        self.first_only = first_only
        self.attention = Attention(settings)
        self.sa_layer_norm = nn.LayerNorm(settings.dim, eps=_EPS)
        self.ffn = FFN(settings)
        self.output_layer_norm = nn.LayerNorm(settings.dim, eps=_EPS)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **kwargs: Any) -> torch.Tensor:
        queries = hidden_states[:, :1] if self.first_only else hidden_states
        if self.first_only and attention_mask is not None and attention_mask.shape[2] > 1:
            attention_mask = attention_mask[:, :, :1]  # transformers' (batch, 1, queries, keys): query 0's row
        out = self.sa_layer_norm(self.attention(queries, hidden_states, attention_mask) + queries)
        return self.output_layer_norm(self.ffn(out) + out)


class FirstPositionBlock(Block):
    """``Block(first_only=True)`` built as transformers builds a layer: from the model's config."""

    def __init__(self, config: Any) -> None:
        super().__init__(config, first_only=True)


class Head(nn.Module):
    def __init__(self, settings: Settings, labels: int) -> None:
        super().__init__()
        self.pre_classifier = nn.Linear(settings.dim, settings.dim)
        self.dropout = nn.Dropout(settings.seq_classif_dropout)
        self.classifier = nn.Linear(settings.dim, labels)

    def forward(self, first: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(F.relu(self.pre_classifier(first))))


class DistilBertPart(nn.Module):
    """Layers ``first`` to ``last`` (exclusive) of a DistilBERT classifier, with its embeddings
    when ``embeddings`` (a trunk, a whole model) and its head when ``labels`` is given (a top, a
    whole model). A trunk of 0 layers is the embeddings alone; its top, every layer.

    ``forward(inputs, attention_mask)``: token ids (with embeddings) or hidden states (without),
    and the (batch, tokens) mask; returns logits (with a head) or hidden states.
    """

    def __init__(self, settings: Settings, first: int, last: int, embeddings: bool, labels: int | None = None) -> None:
        super().__init__()
        self.first, self.last = first, last
        self.embeddings = Embeddings(settings) if embeddings else None
        self.layers = nn.ModuleList(Block(settings, first_only=labels is not None and i == last - 1)
                                    for i in range(first, last))
        self.head = Head(settings, labels) if labels is not None else None

    def forward(self, inputs: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self._hidden(inputs, attention_mask)
        return self.head(hidden[:, 0]) if self.head is not None else hidden

    def logits_and_first(self, inputs: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """With a head: the logits and the first position's last hidden state, which the head reads."""
        first = self._hidden(inputs, attention_mask)[:, 0]
        return self.head(first), first

    def _hidden(self, inputs: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(inputs) if self.embeddings is not None else inputs
        mask = attention_mask.bool()[:, None, None, :]  # broadcast over heads and queries
        for layer in self.layers:
            hidden = layer(hidden, mask)
        return hidden

    @classmethod
    def from_stock(cls, settings: Settings, first: int, last: int, state: Mapping[str, torch.Tensor],
                   embeddings: bool, head: bool) -> "DistilBertPart":
        """The part of a stock state dict (a whole model's, or the part's own) it covers; every
        tensor the part needs must be there."""
        labels = state["classifier.weight"].shape[0] if head else None
        part = cls(settings, first, last, embeddings, labels)
        ours = {}
        for key, value in state.items():
            name = part._name(key)
            if name is not None:
                ours[name] = value
        part.load_state_dict(ours, strict=True)
        return part.eval()

    def _name(self, stock: str) -> str | None:
        """This module's name of a stock parameter, or None when it is not in this part."""
        if stock.startswith(STOCK_EMBEDDINGS):
            return "embeddings." + stock[len(STOCK_EMBEDDINGS):] if self.embeddings is not None else None
        if stock.startswith(_HEAD):
            return "head." + stock if self.head is not None else None
        match = STOCK_LAYER.match(stock)
        if match and self.first <= int(match[1]) < self.last:
            return f"layers.{int(match[1]) - self.first}.{match[2]}"
        return None
