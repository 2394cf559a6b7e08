"""One level model's pass over a batch: its probabilities and, when asked, its [CLS] states;
and the shared trunk's pass that the levels' tops read.

The cascade (handlers/cascade.py) runs the trunk and every level through here. Windows are batched by
length (handlers/batching.py); an event's probabilities and state are the means over its
windows. The [CLS] state is the first position's last hidden state, which the head reads:
the feature the scope score measures (handlers/scope.py). No TorchServe import here.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch

from handlers.batching import IDS_CALL_COST, STATES_CALL_COST, padded_chunks
from handlers.encoded import Encoded
from handlers.precision import autocast


class LevelPass(NamedTuple):
    probs: torch.Tensor  # events x labels
    first: torch.Tensor | None  # events x width: the [CLS] states (None: not asked for, or no model)


def logits_and_first(model: Any, first: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A classifier's logits and [CLS] state: our DistilBERT parts and int8 graphs return both;
    a transformers model of another architecture, from its hidden states."""
    if hasattr(model, "logits_and_first"):
        return model.logits_and_first(first, mask)
    out = model(first, attention_mask=mask, output_hidden_states=True)
    return out.logits, out.hidden_states[-1][:, 0]


@torch.inference_mode()
def run_level(model: Any, labels: int, inputs: Encoded, max_batch: int, pad_id: int, device: torch.device,
              precision: str, with_first: bool = False) -> LevelPass:
    """Per event, the model's probabilities (and [CLS] states with ``with_first``); with no model
    (a taxonomy of one subtaxonomy), probability 1 for its one label."""
    n, windows = len(inputs.texts), len(inputs.ids)
    if model is None:
        return LevelPass(torch.ones((n, 1)), None)
    out = torch.empty((windows, labels))
    states: torch.Tensor | None = None
    call_cost = IDS_CALL_COST if inputs.states is None else STATES_CALL_COST
    for chunk, input_ids, mask in padded_chunks(inputs.ids, max_batch, pad_id, call_cost):
        if inputs.states is None:
            first = input_ids.to(device)
        else:  # the trunk's hidden states, padded like the ids (masked positions are never attended to)
            first = torch.nn.utils.rnn.pad_sequence([inputs.states[i] for i in chunk], batch_first=True)
        rows = torch.tensor(chunk)
        with autocast(precision, device):
            if with_first:
                logits, cls = logits_and_first(model, first, mask.to(device))
                if states is None:
                    states = torch.empty((windows, cls.shape[-1]))
                states[rows] = cls.float().cpu()
            else:
                logits = model(first, mask.to(device))
        logits = getattr(logits, "logits", logits)
        out[rows] = torch.softmax(logits.float(), dim=-1).cpu()
    if windows == n:  # one window per event
        return LevelPass(out, states)
    return LevelPass(_mean_by_event(out, inputs.owner, n), None if states is None else
                     _mean_by_event(states, inputs.owner, n))


@torch.inference_mode()
def trunk_states(trunk: Any, ids: Sequence[Sequence[int]], max_batch: int, pad_id: int, device: torch.device,
                 precision: str) -> list[torch.Tensor]:
    """Per window, the shared trunk's hidden states over its own tokens (no padding)."""
    states: list[torch.Tensor] = [torch.empty(0)] * len(ids)
    for chunk, input_ids, mask in padded_chunks(ids, max_batch, pad_id, IDS_CALL_COST):
        with autocast(precision, device):
            hidden = trunk(input_ids.to(device), mask.to(device))
        for row, i in enumerate(chunk):
            states[i] = hidden[row, : len(ids[i])]
    return states


def _mean_by_event(rows: torch.Tensor, owner: list[int], n: int) -> torch.Tensor:
    index = torch.tensor(owner)
    pooled = torch.zeros((n, rows.shape[1])).index_add_(0, index, rows)
    return pooled / torch.bincount(index, minlength=n).unsqueeze(1)
