"""int8 serving through ONNX Runtime: exported at archive build time, run by the cascade.

Why ONNX Runtime rather than torch's dynamic quantization of the Linear layers: it fuses
attention and quantizes more of the graph, so it measured faster at every batch size, and
the archive carries int8 weights instead of fp32 (figures: docs/results.md, Serving speed).
The export (archives/onnx_export.py) runs once per checkpoint at build time; the archive then
holds ``model.int8.onnx`` in place of the fp32 safetensors, which ``OnnxGraph`` runs.
"""

from __future__ import annotations

from pathlib import Path

import torch


class OnnxGraph:
    """An ONNX Runtime session called like the torch module it was exported from:
    ``graph(ids_or_hidden_states, attention_mask)`` -> its first output (logits or hidden states);
    a classifier's second output is its first position's last hidden state (``logits_and_first``)."""

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
        return self._run(first, attention_mask)[0]

    def logits_and_first(self, first: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A classifier's logits and its first position's last hidden state (the export's second output)."""
        outputs = self._run(first, attention_mask)
        if len(outputs) < 2:
            raise ValueError("this int8 graph has no first-position output: rebuild the archive")
        return outputs[0], outputs[1]

    def _run(self, first: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        first = first.float() if self.inputs[0] == "hidden_states" else first
        outputs = self.session.run(None, {self.inputs[0]: first.cpu().numpy(),
                                          self.inputs[1]: attention_mask.cpu().numpy()})
        return [torch.from_numpy(output) for output in outputs]

