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
from handlers.hierarchy import ONNX_FILE, TOP_FILE, WEIGHTS_FILE, Hierarchy
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
    trunk_layers = hierarchy.trunk.layers if hierarchy.trunk else 0
    if trunk:
        model = DistilBertPart.from_stock(Settings.load(path), 0, trunk_layers, load_file(path / WEIGHTS_FILE),
                                          embeddings=True, head=False)
    elif hierarchy.trunk is not None:
        settings = Settings.load(path)
        model = DistilBertPart.from_stock(settings, trunk_layers, settings.n_layers, load_file(path / TOP_FILE),
                                          embeddings=False, head=True)
    elif json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type") == "distilbert":
        settings = Settings.load(path)
        model = DistilBertPart.from_stock(settings, 0, settings.n_layers, load_file(path / WEIGHTS_FILE),
                                          embeddings=True, head=True)
    else:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(str(path), use_safetensors=True)
    return model.to(device).eval()
