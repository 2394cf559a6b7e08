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


def autocast(precision: str, device: torch.device) -> Any:
    """bfloat16 autocast for ``precision == "bf16"``, nothing otherwise."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
