"""How model inputs are batched and in what arithmetic: shared by the cascade and training.

No TorchServe import: it ships in the archive with the cascade.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Sequence

import torch


def padded_chunks(ids: Sequence[Sequence[int]], size: int, pad_id: int):
    """Rows sorted by length in chunks of ``size``: (row indices, ids padded to the chunk's
    longest, attention mask). Training's cached trunk states use the same batching."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    for start in range(0, len(ids), size):
        chunk = order[start : start + size]
        width = max(len(ids[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            input_ids[row, : len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
            mask[row, : len(ids[i])] = 1
        yield chunk, input_ids, mask


def bf16_is_native() -> bool:
    """Whether this CPU computes bfloat16 natively (avx512_bf16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def bf16_linears(model: Any) -> Any:
    """Store a torch model's Linear layers in bfloat16, once, for running under ``autocast``.

    Autocast casts an fp32 weight to bf16 on every call that reads it (its cache keeps only
    casts of weights that require grad, and only within one autocast region), so a call pays
    for converting every matrix it touches however few events it carries: on a 2-layer top
    called for three events, about a third of the call. Casting once gives the same answers to
    the bit (autocast runs a Linear in bf16 either way; embeddings and layer norms stay fp32)
    in half the weights' memory. Other models (ONNX Runtime sessions) pass unchanged.
    """
    if isinstance(model, torch.nn.Module):
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.to(torch.bfloat16)
    return model


def autocast(precision: str, device: torch.device) -> Any:
    """bfloat16 autocast for ``precision == "bf16"``, nothing otherwise."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
