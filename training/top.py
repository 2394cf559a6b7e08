"""Training one level's top on the shared trunk's hidden states, computed once per row.

With a shared trunk (``--top-layers K``) the trunk is frozen, so a row's hidden states never
change: they are computed once per job instead of once per epoch, and the Trainer trains
only the top (K layers and the head), a stock DistilBertForSequenceClassification whose
input is those states (handlers/trunk.py's TopClassifier). The states come from the trunk
module serving runs (handlers/distilbert.py), so a top trains on what it will read. The
trained top then goes back on the trunk as a whole checkpoint, which
``training.layout.split_run`` splits again, checking that no trunk tensor moved.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from handlers.batching import padded_chunks
from handlers.distilbert import DistilBertPart, Settings
from handlers.trunk import TopClassifier


class StatesDataset(torch.utils.data.Dataset):
    """Rows as the top reads them: the trunk's hidden states over the row's tokens, and its label.

    Each row also carries its token ids, which the top does not read: the Trainer's
    length-grouped sampler measures rows by them, so a batch of short rows is not padded
    to the length of one long row (random batches of the sample events padded most of
    their rows to 128 positions).
    """

    def __init__(self, states: list[torch.Tensor], labels: Sequence[int], input_ids: Sequence[Sequence[int]]) -> None:
        self.states, self.labels, self.input_ids = states, list(labels), input_ids

    def __len__(self) -> int:
        return len(self.states)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"inputs_embeds": self.states[i], "labels": self.labels[i], "input_ids": self.input_ids[i]}


def pad_states(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """A batch padded to its longest row; padded positions are masked out of attention (token ids are dropped)."""
    lengths = torch.tensor([len(r["inputs_embeds"]) for r in rows])
    hidden = torch.nn.utils.rnn.pad_sequence([r["inputs_embeds"] for r in rows], batch_first=True)
    mask = (torch.arange(hidden.shape[1])[None, :] < lengths[:, None]).long()
    return {"inputs_embeds": hidden, "attention_mask": mask, "labels": torch.tensor([r["labels"] for r in rows])}


class TopOnTrunk:
    """A whole starting model split into its frozen trunk and the top the Trainer trains."""

    def __init__(self, model: Any, top_layers: int) -> None:
        config = model.config
        self.trunk_layers = max(0, config.n_layers - top_layers)
        state = model.state_dict()
        self.trunk = DistilBertPart.from_stock(Settings.of(config), 0, self.trunk_layers, state,
                                               embeddings=True, head=False)
        self.top = TopClassifier.from_state(config, self.trunk_layers, state)

    @torch.no_grad()  # not inference_mode: these tensors are the inputs of a training graph
    def dataset(self, tokenized: Any, pad_id: int, bf16: bool, batch: int = 64) -> StatesDataset:
        """The trunk's hidden states of every row of a tokenized dataset, longest rows batched together."""
        device = "cuda" if torch.cuda.is_available() else "cpu"
        trunk = self.trunk.to(device).eval()
        # Sliced into plain lists once: each row read from a datasets Column costs about 0.1 ms,
        # and the rows are read here, by the Trainer's length-grouped sampler and every epoch.
        ids: list[list[int]] = tokenized["input_ids"][:]
        states: list[torch.Tensor] = [torch.empty(0)] * len(ids)
        for chunk, input_ids, mask in padded_chunks(ids, batch, pad_id):
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                hidden = trunk(input_ids.to(device), mask.to(device))
            for row, i in enumerate(chunk):
                states[i] = hidden[row, : len(ids[i])].float().cpu().clone()
        return StatesDataset(states, tokenized["labels"][:], ids)

    def put_back(self, model: Any) -> Any:
        """The whole model with the trained top on the trunk (its own lower layers, untouched)."""
        result = model.load_state_dict(self.top.stock_state(), strict=False)
        if result.unexpected_keys:
            raise RuntimeError(f"the trained top has tensors the model lacks: {result.unexpected_keys[:3]}")
        return model
