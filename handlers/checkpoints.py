"""Loading a run's models: the shared trunk and each level's checkpoint, as the cascade runs them.

A DistilBERT checkpoint (a trunk, a level's top, or a whole level) becomes plain torch
modules (handlers/distilbert.py) built from its stored tensors; under ``quantize="int8"``, the
ONNX Runtime session of its int8 export (handlers/onnx_int8.py). A whole checkpoint of another
architecture loads with transformers' AutoModelForSequenceClassification, imported only then:
importing it costs a worker about 110 MB. No TorchServe import here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from handlers.distilbert import DistilBertPart, Settings
from handlers.hierarchy import Hierarchy
from handlers.run_layout import ONNX_FILE, TOP_FILE, WEIGHTS_FILE
from handlers.onnx_int8 import OnnxGraph


def load_model(run_dir: Path, hierarchy: Hierarchy, folder: str, device: torch.device, quantize: str | None = None,
               trunk: bool = False) -> Any:
    """One checkpoint folder of the run (``trunk``: the run's trunk), ready for inference.

    Called as ``model(ids_or_hidden_states, attention_mask)``; returns logits, hidden states
    (the trunk), or an output with ``.logits`` (another architecture).
    """
    path = run_dir / folder
    if quantize == "int8":
        # The int8 ONNX export that scripts/build.sh --quantize int8 made (CPU only).
        if not (path / ONNX_FILE).is_file():
            raise ValueError(f"{path / ONNX_FILE} not found: int8 archives are built with "
                             "scripts/build.sh --quantize int8")
        return OnnxGraph(path / ONNX_FILE)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    if hierarchy.trunk is None and config.get("model_type") != "distilbert":
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(str(path), use_safetensors=True).to(device).eval()
    settings = Settings.of(config)
    trunk_layers = hierarchy.trunk.layers if hierarchy.trunk else 0
    if trunk:  # embeddings and the lower layers
        first, last, file, embeddings, head = 0, trunk_layers, WEIGHTS_FILE, True, False
    elif hierarchy.trunk is not None:  # a level's top: the upper layers and the head
        first, last, file, embeddings, head = trunk_layers, settings.n_layers, TOP_FILE, False, True
    else:  # a whole checkpoint
        first, last, file, embeddings, head = 0, settings.n_layers, WEIGHTS_FILE, True, True
    model = DistilBertPart.from_stock(settings, first, last, load_file(path / file), embeddings=embeddings, head=head)
    return model.to(device).eval()
