"""How model inputs are batched: shared by the cascade and training (the arithmetic: handlers/precision.py).

No TorchServe import: it ships in the archive with the cascade.
"""

from __future__ import annotations

from typing import Sequence

import torch

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
