"""How model inputs are cut into padded chunks (handlers/batching.py)."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from handlers.batching import length_cuts, padded_chunks
from handlers.precision import bf16_is_native, resolve_precision


def _cost(lengths: list[int], cuts: list[tuple[int, int]], call_cost: int) -> int:
    return sum(call_cost + (end - start) * lengths[end - 1] for start, end in cuts)


def _all_cuts(n: int, size: int):
    """Every way to cut n sorted rows into contiguous chunks of at most size rows."""
    for mask in itertools.product((False, True), repeat=max(0, n - 1)):
        bounds = [0] + [i + 1 for i, cut in enumerate(mask) if cut] + [n]
        cuts = list(zip(bounds, bounds[1:]))
        if all(end - start <= size for start, end in cuts):
            yield cuts


def test_length_cuts_are_the_cheapest_cutting() -> None:
    rng = random.Random(3)
    for _ in range(200):
        n, size, call_cost = rng.randint(1, 9), rng.randint(1, 5), rng.choice([0, 8, 64, 500])
        lengths = sorted(rng.randint(1, 128) for _ in range(n))
        cuts = length_cuts(lengths, size, call_cost)
        assert [start for start, _ in cuts] == [0] + [end for _, end in cuts[:-1]] and cuts[-1][1] == n
        assert all(end - start <= size for start, end in cuts)
        assert _cost(lengths, cuts, call_cost) == min(_cost(lengths, c, call_cost) for c in _all_cuts(n, size))


def test_long_rows_are_not_padded_beside_short_ones_nor_short_rows_split() -> None:
    assert length_cuts([8] * 40, 64, 64) == [(0, 40)]  # one length: one call
    assert length_cuts([8] * 40, 32, 64) in ([(0, 8), (8, 40)], [(0, 32), (32, 40)])
    assert length_cuts([20] * 30 + [128] * 2, 64, 64) == [(0, 30), (30, 32)]  # not 32 rows of 128
    assert length_cuts([], 64, 64) == []


def test_padded_chunks_hold_every_row_once_with_its_mask() -> None:
    rng = random.Random(5)
    ids = [[rng.randint(1, 99) for _ in range(rng.choice([3, 4, 40, 120]))] for _ in range(50)]
    seen = []
    for chunk, input_ids, mask in padded_chunks(ids, 16, pad_id=0):
        assert len(chunk) <= 16 and input_ids.shape == mask.shape and input_ids.shape[0] == len(chunk)
        for row, i in enumerate(chunk):
            assert input_ids[row, : len(ids[i])].tolist() == ids[i] and int(mask[row].sum()) == len(ids[i])
            assert not torch.any(input_ids[row, len(ids[i]) :])
        seen += chunk
    assert sorted(seen) == list(range(50))


def test_resolve_precision_resolves_auto_by_the_cpu_and_int8_to_its_own_graph() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
    assert resolve_precision("auto", cpu, None) == ("bf16" if bf16_is_native() else "fp32")
    assert resolve_precision("auto", gpu, None) == "fp32"
    assert resolve_precision("bf16", cpu, None) == "bf16" and resolve_precision("fp32", cpu, "") == "fp32"
    assert resolve_precision("bf16", cpu, "int8") == "fp32"  # ONNX Runtime runs the int8 graph
    with pytest.raises(ValueError, match="precision must be 'auto', 'fp32' or 'bf16', not 'fp16'"):
        resolve_precision("fp16", cpu, None)
