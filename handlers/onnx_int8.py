"""int8 serving through ONNX Runtime: exported at archive build time, run by the cascade.

Why ONNX Runtime rather than torch's dynamic quantization of the Linear layers: it fuses
attention and quantizes more of the graph, so it measured faster at every batch size, and
the archive carries int8 weights instead of fp32 (figures: docs/results.md, Serving speed).
The export runs once per checkpoint in archives/build.py; the archive then holds
``model.int8.onnx`` in place of the fp32 safetensors.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch


def export_int8(checkpoint: str | Path, out: str | Path) -> Path:
    """Export one sequence classifier to ONNX, fuse it for ONNX Runtime, quantize it to int8."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from transformers import AutoModelForSequenceClassification

    # Eager attention exports as plain MatMul/Softmax, which ONNX Runtime fuses into its
    # Attention kernel; the SDPA export does not fuse and runs slower.
    model = AutoModelForSequenceClassification.from_pretrained(
        str(checkpoint), use_safetensors=True, attn_implementation="eager"
    ).eval()
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="onnx-export-") as tmp:
        fp32, fused = Path(tmp) / "model.onnx", Path(tmp) / "fused.onnx"
        ids = torch.ones((2, 8), dtype=torch.long)
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (ids, torch.ones_like(ids)), str(fp32),
                input_names=["input_ids", "attention_mask"], output_names=["logits"],
                dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                              "logits": {0: "batch"}},
                opset_version=17, dynamo=False,
            )
        # The attention fusion needs the head count and width: it cannot read them off this graph.
        config = model.config
        heads = getattr(config, "n_heads", None) or config.num_attention_heads
        width = getattr(config, "dim", None) or config.hidden_size
        logging.disable(logging.WARNING)  # ONNX Runtime's tools warn about steps that do not apply here
        try:
            optimizer.optimize_model(str(fp32), model_type="bert", num_heads=heads, hidden_size=width,
                                     opt_level=1).save_model_to_file(str(fused))
            quantize_dynamic(str(fused), str(out), weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        finally:
            logging.disable(logging.NOTSET)
    return out


class OnnxClassifier:
    """An ONNX Runtime session that answers like a transformers classifier: ``model(ids, mask).logits``."""

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

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        (logits,) = self.session.run(["logits"], {"input_ids": input_ids.cpu().numpy(),
                                                  "attention_mask": attention_mask.cpu().numpy()})
        return SimpleNamespace(logits=torch.from_numpy(logits))

