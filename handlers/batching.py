"""How model inputs are batched and in what arithmetic: shared by the cascade and training.

No TorchServe import: it ships in the archive with the cascade.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Sequence

import torch

from handlers import kernel_caches
from handlers.settings import PRECISIONS


# What one model call costs beyond its tokens, in tokens' worth, chosen by measurement on 2 cores
# (docs/results.md, "bf16 weights stored once, chunks cut by length"): a call from token ids
# (embeddings and lower layers), and a top's call on the trunk's hidden states, whose tokens
# cost about a quarter as much for the same fixed cost.
IDS_CALL_COST = 128
STATES_CALL_COST = 512


def padded_chunks(ids: Sequence[Sequence[int]], size: int, pad_id: int, call_cost: int = IDS_CALL_COST):
    """Rows sorted by length in chunks of at most ``size``: (row indices, ids padded to the
    chunk's longest, attention mask). Training's cached trunk states use the same batching.

    Where the chunks are cut is ``length_cuts``'s choice: a chunk pads every row to its
    longest, and padding costs as much compute as real tokens.
    """
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    for start, end in length_cuts([len(ids[i]) for i in order], size, call_cost):
        chunk = order[start:end]
        width = max(len(ids[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            input_ids[row, : len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
            mask[row, : len(ids[i])] = 1
        yield chunk, input_ids, mask


def length_cuts(lengths: Sequence[int], size: int, call_cost: int) -> list[tuple[int, int]]:
    """(start, end) of contiguous chunks of ascending ``lengths``, at most ``size`` rows each,
    that minimise the total of ``call_cost + rows x longest row`` over the chunks.

    Cutting a batch of long texts only by count pads a 40-token row to 128 beside its longer
    neighbours; cutting at every length change pays a call's fixed cost (kernel setup, reading
    the weights) many times over. Exact by dynamic programming: O(rows x size).
    """
    n = len(lengths)
    best, cut = [0] + [float("inf")] * n, [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(max(0, end - size), end):
            cost = best[start] + call_cost + (end - start) * lengths[end - 1]
            if cost < best[end]:
                best[end], cut[end] = cost, start
    cuts, end = [], n
    while end > 0:
        cuts.append((cut[end], end))
        end = cut[end]
    return cuts[::-1]


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
    return model


def autocast(precision: str, device: torch.device) -> Any:
    """bfloat16 autocast for ``precision == "bf16"``, nothing otherwise."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
