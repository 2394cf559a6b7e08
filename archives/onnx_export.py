"""Export one checkpoint folder to an int8 ONNX graph for ONNX Runtime (``handlers.onnx_int8.OnnxGraph`` runs it).

archives/int8.py calls ``export_int8`` once per checkpoint (and once for the shared trunk)
when an archive is built with ``--quantize int8``; nothing here ships in the archive.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers import optimizer
from transformers import AutoModelForSequenceClassification

from handlers.trunk import TopClassifier, TrunkEncoder

CLASSIFIER_OUTPUTS = ["logits", "first"]


def export_int8(folder: str | Path, out: str | Path, trunk_layers: int | None = None, trunk: bool = False) -> Path:
    """Export one checkpoint folder to ONNX, fuse it for ONNX Runtime, quantize it to int8.

    Without ``trunk_layers`` the folder is a whole sequence classifier (ids -> logits). On a
    shared trunk of ``trunk_layers`` layers it is either the trunk (``trunk=True``: ids ->
    hidden states) or a level's top (hidden states -> logits), as handlers/trunk.py runs them.
    """
    model, example, inputs, outputs = _exportable(Path(folder), trunk_layers, trunk)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="onnx-export-") as tmp:
        fp32, fused = Path(tmp) / "model.onnx", Path(tmp) / "fused.onnx"
        axes = {name: {0: "batch", 1: "tokens"} for name in inputs}
        axes.update({name: {0: "batch", 1: "tokens"} if name == "hidden_states" else {0: "batch"} for name in outputs})
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, example, str(fp32), input_names=inputs, output_names=outputs,
                              dynamic_axes=axes, opset_version=17, dynamo=False)
        # The attention fusion needs the head count and width: it cannot read them off this graph.
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
        heads = config.get("n_heads") or config["num_attention_heads"]
        width = config.get("dim") or config["hidden_size"]
        logging.disable(logging.WARNING)  # ONNX Runtime's tools warn about steps that do not apply here
        try:
            optimizer.optimize_model(str(fp32), model_type="bert", num_heads=heads, hidden_size=width,
                                     opt_level=1).save_model_to_file(str(fused))
            quantize_dynamic(str(fused), str(out), weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        finally:
            logging.disable(logging.NOTSET)
    return out


class _WithFirst(torch.nn.Module):
    """A transformers sequence classifier that also returns its first position's last hidden
    state: the [CLS] state the scope score reads (handlers/scope.py)."""

    def __init__(self, model: torch.nn.Module, key: str) -> None:
        super().__init__()
        self.model, self.key = model, key

    def forward(self, first: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(**{self.key: first}, attention_mask=attention_mask, output_hidden_states=True)
        return out.logits, out.hidden_states[-1][:, 0]


def _exportable(folder: Path, trunk_layers: int | None, trunk: bool) -> tuple[Any, tuple, list[str], list[str]]:
    """The module to export with eager attention, an example input, input names and output names
    (a classifier's: its logits and its first position's last hidden state).

    Eager attention exports as plain MatMul/Softmax, which ONNX Runtime fuses into its
    Attention kernel; the SDPA export does not fuse and runs slower. A top is exported with
    its stock last layer, not the first-position one the torch cascade runs: that layer's
    attention (one query) does not fuse.
    """
    ids = torch.ones((2, 8), dtype=torch.long)
    if trunk_layers is None:
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), use_safetensors=True,
                                                                   attn_implementation="eager")
        return (_WithFirst(model.eval(), "input_ids"), (ids, torch.ones_like(ids)), ["input_ids", "attention_mask"],
                CLASSIFIER_OUTPUTS)
    if trunk:
        model = TrunkEncoder.load(folder, trunk_layers)
        model.encoder.set_attn_implementation("eager")
        return model.eval(), (ids, torch.ones_like(ids)), ["input_ids", "attention_mask"], ["hidden_states"]
    model = TopClassifier.load(folder, trunk_layers, first_position=False)
    model.model.set_attn_implementation("eager")
    hidden = torch.randn((2, 8, model.model.config.dim))
    return (_WithFirst(model.model.eval(), "inputs_embeds"), (hidden, torch.ones_like(ids)),
            ["hidden_states", "attention_mask"], CLASSIFIER_OUTPUTS)
