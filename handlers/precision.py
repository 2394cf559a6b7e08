"""The torch arithmetic a cascade (and CPU training) runs: fp32, or bf16 where the CPU computes
it natively. No TorchServe import: it ships in the archive with the cascade.
"""

from __future__ import annotations

import contextlib
import types
from pathlib import Path
from typing import Any

import torch

from handlers import kernel_caches
from handlers.settings import PRECISIONS


def bf16_is_native() -> bool:
    """Whether this CPU computes bfloat16 natively (avx512_bf16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(precision: str, device: torch.device, quantize: str | None = None) -> str:
    """The torch arithmetic a cascade runs (and CPU training): ``auto`` is bf16 on a CPU that computes it natively,
    fp32 elsewhere (and on GPUs); int8 archives run ONNX Runtime's own graph, reported as fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', not {precision!r}")
    if quantize:
        return "fp32"
    if precision == "auto":
        return "bf16" if device.type == "cpu" and bf16_is_native() else "fp32"
    return precision


def bf16_linears(model: Any) -> Any:
    """Store a torch model's Linear layers in bfloat16, once, for running under ``autocast``.

    Autocast casts an fp32 weight to bf16 on every call that reads it (its cache keeps only
    casts of weights that require grad, and only within one autocast region), so a call pays
    for converting every matrix it touches however few events it carries: on a 2-layer top
    called for three events, a quarter to a third of the call. Casting once gives the same answers to
    the bit (autocast runs a Linear in bf16 either way; embeddings and layer norms stay fp32)
    in half the weights' memory. Other models (ONNX Runtime sessions) pass unchanged.

    bf16 Linears run through oneDNN, whose kernel caches grow with every input shape unless
    bounded: ``kernel_caches.apply`` bounds them, before the first one runs.
    """
    if isinstance(model, torch.nn.Module):
        kernel_caches.apply()
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.to(torch.bfloat16)
                module.forward = types.MethodType(_bucketed_linear, module)
    return model


# Row counts per doubling (a power of two): 8 compiles about half the kernels 16 did, for at
# most 1/8 of a call's rows as padding; CLINC150 served 20% more events/s with it, in 16% less
# memory (docs/results.md, "Worker memory under traffic").
ROW_STEPS = 8


def row_bucket(rows: int) -> int:
    """The row count a bf16 Linear runs with: ``rows`` rounded up to one of ``ROW_STEPS`` counts
    per doubling (exact up to ``ROW_STEPS``), so at most 1/``ROW_STEPS`` of a call is padding.

    oneDNN compiles a kernel per input shape and a Linear's input is (events x tokens) rows:
    served batches bring new row counts for as long as traffic lasts, each a kernel compiled
    and cached (handlers/kernel_caches.py), about 0.55 MB each for MiniLM's sizes. Rounded, a
    weight meets at most ``ROW_STEPS`` row counts per doubling, so the caches hold every kernel
    traffic needs and stop growing (docs/results.md, "Worker memory under traffic").
    """
    if rows <= ROW_STEPS:
        return rows
    step = 1 << (rows.bit_length() - ROW_STEPS.bit_length())
    return -(-rows // step) * step


def _bucketed_linear(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``Linear.forward`` on ``row_bucket`` rows: zero rows added, their outputs dropped; every
    real row's output is computed as before (a row's output depends on that row alone)."""
    rows = x.numel() // self.in_features if x.numel() else 0
    bucket = row_bucket(rows)
    if bucket == rows:
        return torch.nn.functional.linear(x, self.weight, self.bias)
    padded = torch.nn.functional.pad(x.reshape(rows, self.in_features), (0, 0, 0, bucket - rows))
    out = torch.nn.functional.linear(padded, self.weight, self.bias)[:rows]
    return out.reshape(*x.shape[:-1], self.out_features)


def autocast(precision: str, device: torch.device) -> Any:
    """bfloat16 autocast for ``precision == "bf16"``, nothing otherwise."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
