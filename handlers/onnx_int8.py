"""int8 serving through ONNX Runtime: exported at archive build time, run by the cascade.

Why ONNX Runtime rather than torch's dynamic quantization of the Linear layers: it fuses
attention and quantizes more of the graph, so it measured faster at every batch size, and
the archive carries int8 weights instead of fp32 (figures: docs/results.md, Serving speed).
The export runs once per checkpoint in archives/build.py; the archive then holds
``model.int8.onnx`` in place of the fp32 safetensors.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch


def export_int8(folder: str | Path, out: str | Path, trunk_layers: int | None = None, trunk: bool = False) -> Path:
    """Export one checkpoint folder to ONNX, fuse it for ONNX Runtime, quantize it to int8.

    Without ``trunk_layers`` the folder is a whole sequence classifier (ids -> logits). On a
    shared trunk of ``trunk_layers`` layers it is either the trunk (``trunk=True``: ids ->
    hidden states) or a level's top (hidden states -> logits), as handlers/trunk.py runs them.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    model, example, inputs, output = _exportable(Path(folder), trunk_layers, trunk)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="onnx-export-") as tmp:
        fp32, fused = Path(tmp) / "model.onnx", Path(tmp) / "fused.onnx"
        axes = {name: {0: "batch", 1: "tokens"} for name in inputs}
        axes[output] = {0: "batch", 1: "tokens"} if output == "hidden_states" else {0: "batch"}
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, example, str(fp32), input_names=inputs, output_names=[output],
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


def _exportable(folder: Path, trunk_layers: int | None, trunk: bool) -> tuple[Any, tuple, list[str], str]:
    """The module to export with eager attention, an example input, input names and the output name.

    Eager attention exports as plain MatMul/Softmax, which ONNX Runtime fuses into its
    Attention kernel; the SDPA export does not fuse and runs slower. A top is exported with
    its stock last layer, not the first-position one the torch cascade runs: that layer's
    attention (one query) does not fuse.
    """
    from transformers import AutoModelForSequenceClassification

    from handlers.trunk import TopClassifier, TrunkEncoder

    ids = torch.ones((2, 8), dtype=torch.long)
    if trunk_layers is None:
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), use_safetensors=True,
                                                                   attn_implementation="eager")
        return model.eval(), (ids, torch.ones_like(ids)), ["input_ids", "attention_mask"], "logits"
    if trunk:
        model = TrunkEncoder.load(folder, trunk_layers)
        model.encoder.set_attn_implementation("eager")
        return model.eval(), (ids, torch.ones_like(ids)), ["input_ids", "attention_mask"], "hidden_states"
    model = TopClassifier.load(folder, trunk_layers, first_position=False)
    model.model.set_attn_implementation("eager")
    hidden = torch.randn((2, 8, model.model.config.dim))
    return model.eval(), (hidden, torch.ones_like(ids)), ["hidden_states", "attention_mask"], "logits"


class OnnxGraph:
    """An ONNX Runtime session called like the torch module it was exported from:
    ``graph(ids_or_hidden_states, attention_mask)`` -> its one output (logits or hidden states)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Each session has its own thread pool whose threads by default spin after a run;
        # with one session per checkpoint, idle sessions' spinning threads took the cores
        # from the busy one, and the int8 cascade ran slower than fp32. A process-wide
        # pool (spinning) measured faster at batch 1 but slower at batch 8 and 32.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, first: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        first = first.float() if self.inputs[0] == "hidden_states" else first
        (output,) = self.session.run(None, {self.inputs[0]: first.cpu().numpy(),
                                            self.inputs[1]: attention_mask.cpu().numpy()})
        return torch.from_numpy(output)

