"""The shared trunk: the lower layers every classifier of a run shares, run once per event.

After the path warm-up fine-tunes the whole encoder, its embeddings and lower layers are
frozen; the taxonomy model and each subtaxonomy model train only their top layers and
head (``--top-layers``). Every level's lower layers are then the same tensors, so the run
stores them once (``trunk/model.safetensors``) and each level's folder only its top
(``top.safetensors``), both under stock DistilBERT parameter names. Serving computes the
trunk's hidden states once per event and runs each level's top on them: greedy decoding
costs L + k layers instead of 2L, and every extra taxonomy visited k layers instead of L;
less, since a top's last layer computes only the position its head reads
(``FirstPositionBlock``).

Serving runs trunk and tops with handlers/distilbert.py (plain torch), and so does training
when it computes the trunk's states. ``TrunkEncoder`` and ``TopClassifier`` here are the
same parts built from transformers' classes: the Trainer trains a ``TopClassifier``, and the
ONNX export reads both (ONNX Runtime fuses the attention of transformers' eager layers).
training/layout.py's ``split_run`` and archives/export.py (any level back to a stock checkpoint folder that
``AutoModelForSequenceClassification`` loads with no code of ours) convert between the two
layouts. No TorchServe import here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertModel

from handlers.distilbert import STOCK_EMBEDDINGS, STOCK_LAYER, FirstPositionBlock
from handlers.hierarchy import HierarchyError
from handlers.run_layout import TOP_FILE, WEIGHTS_FILE


def in_trunk(key: str, trunk_layers: int) -> bool:
    """Whether a stock DistilBERT parameter belongs to a trunk of ``trunk_layers`` layers."""
    match = STOCK_LAYER.match(key)
    return key.startswith(STOCK_EMBEDDINGS) or (match is not None and int(match[1]) < trunk_layers)


def _config(folder: Path) -> DistilBertConfig:
    data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if data.get("model_type") != "distilbert":
        raise HierarchyError(f"{folder}: a shared trunk needs a DistilBERT checkpoint, not "
                             f"{data.get('model_type')!r}")
    return DistilBertConfig.from_dict(data)


class TrunkEncoder(torch.nn.Module):
    """Embeddings and the lower ``layers`` layers: token ids to hidden states."""

    def __init__(self, config: DistilBertConfig, layers: int) -> None:
        super().__init__()
        config = DistilBertConfig.from_dict({**config.to_dict(), "n_layers": layers})
        self.encoder = DistilBertModel(config)

    @classmethod
    def load(cls, folder: str | Path, layers: int) -> "TrunkEncoder":
        folder = Path(folder)
        return cls.from_state(_config(folder), layers, load_file(str(folder / WEIGHTS_FILE)))

    @classmethod
    def from_state(cls, config: DistilBertConfig, layers: int, state: dict[str, torch.Tensor]) -> "TrunkEncoder":
        """The trunk from a state dict under stock names (a whole model's: its top is left out)."""
        trunk = cls(config, layers)
        trunk.encoder.load_state_dict({key.removeprefix("distilbert."): value for key, value in state.items()
                                       if in_trunk(key, layers)}, strict=True)
        return trunk.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class _HiddenStatesIn(torch.nn.Module):
    """Stands in for the embeddings of a top: its input already is the trunk's hidden states."""

    def forward(self, input_ids: Any = None, inputs_embeds: torch.Tensor | None = None, position_ids: Any = None):
        return inputs_embeds


def read_first_position(model: torch.nn.Module) -> torch.nn.Module:
    """A DistilBERT classifier's last layer swapped for a ``FirstPositionBlock`` with its weights.

    Any other architecture is returned as it is. The parameter names do not change, so the
    model saves and loads as the stock checkpoint it was.
    """
    return swap_last_layer(model, FirstPositionBlock)


def swap_last_layer(model: torch.nn.Module, block_class: type[torch.nn.Module]) -> torch.nn.Module:
    """A DistilBERT classifier with its last layer rebuilt as ``block_class``, same weights."""
    if getattr(model.config, "model_type", None) != "distilbert" or not hasattr(model, "distilbert"):
        return model
    layers = model.distilbert.transformer.layer
    if len(layers) and type(layers[-1]) is not block_class:
        block = block_class(model.config)
        block.load_state_dict(layers[-1].state_dict())
        layers[-1] = block.to(next(layers[-1].parameters())).train(layers[-1].training)  # its device, dtype, mode
    return model


class TopClassifier(torch.nn.Module):
    """One level's top layers and head, on the trunk's hidden states.

    A stock DistilBertForSequenceClassification with only the top layers, whose embedding
    module passes the hidden states through and whose last layer computes the one position
    the head reads (``FirstPositionBlock``): what training trains and the ONNX export reads.
    Serving runs the same tensors as a ``handlers.distilbert.DistilBertPart``.
    """

    def __init__(self, config: DistilBertConfig, trunk_layers: int, first_position: bool = True) -> None:
        super().__init__()
        self.trunk_layers = trunk_layers
        # vocab_size 1: the embeddings are replaced below, so do not allocate a vocabulary's worth.
        top = DistilBertConfig.from_dict({**config.to_dict(), "n_layers": config.n_layers - trunk_layers,
                                          "vocab_size": 1})
        self.model = DistilBertForSequenceClassification(top)
        self.model.distilbert.embeddings = _HiddenStatesIn()
        if first_position:  # off for the ONNX export: ONNX Runtime fuses only the stock layer's attention
            read_first_position(self.model)

    @classmethod
    def load(cls, folder: str | Path, trunk_layers: int, first_position: bool = True) -> "TopClassifier":
        folder = Path(folder)
        return cls.from_state(_config(folder), trunk_layers, load_file(str(folder / TOP_FILE)), first_position)

    @classmethod
    def from_state(cls, config: DistilBertConfig, trunk_layers: int,
                   state: dict[str, torch.Tensor], first_position: bool = True) -> "TopClassifier":
        """The top from a state dict under stock names (a whole model's: its trunk is left out)."""
        top = cls(config, trunk_layers, first_position)
        mine = {key: value for key, value in state.items() if not in_trunk(key, trunk_layers)}
        top.model.load_state_dict(top.renumber(mine, -trunk_layers), strict=True)
        return top.eval()

    def stock_state(self) -> dict[str, torch.Tensor]:
        """This top's tensors under the whole model's names (layers numbered above the trunk)."""
        return self.renumber(self.model.state_dict(), self.trunk_layers)

    @staticmethod
    def renumber(state: dict[str, torch.Tensor], shift: int) -> dict[str, torch.Tensor]:
        """Layer i of the stored top (stock numbering) is layer i + shift of this module, and back."""
        out = {}
        for key, value in state.items():
            match = STOCK_LAYER.match(key)
            out[f"distilbert.transformer.layer.{int(match[1]) + shift}.{match[2]}" if match else key] = value
        return out

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(inputs_embeds=hidden_states, attention_mask=attention_mask).logits
