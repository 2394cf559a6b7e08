"""Every rank of a torchrun job ends each model with the same weights, and each node saves them.

The Trainer restores the best epoch from a checkpoint that transformers writes on global
rank 0 only, so ranks on other machines would keep their last epoch; here rank 0's weights
are broadcast, compared by digest, and saved by each node's local rank 0. Outside torchrun
every function is a cheap no-op or a plain save.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import save_model
from transformers import TrainerCallback

from handlers.run_layout import WEIGHTS_FILE
from training import distributed


def weights_digest(model: Any) -> str:
    """SHA-256 of a model's parameters (names, shapes, dtypes, values), short.

    Two ranks of one DDP model must end with equal digests; a saved checkpoint's digest
    says which epoch's weights it holds.
    """
    h = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        tensor = param.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype, bf16 included
    return h.hexdigest()[:16]


def adopt_main_weights(model: Any) -> None:
    """Give every rank global rank 0's weights (in place), after the Trainer's end of training.

    The Trainer loads the best epoch from its checkpoint on every rank, but transformers
    5.23 writes checkpoint weights only on global rank 0 (``save_pretrained`` ignores
    ``save_on_each_node``), so a rank on another machine finds no weights there and keeps
    its last epoch. Rank 0 always holds the best epoch; broadcasting its tensors makes
    that true everywhere, whatever the file systems.
    """
    if not distributed.joined():
        return
    with torch.no_grad():
        for _, tensor in sorted(model.state_dict().items()):
            dist.broadcast(tensor, src=0)


def save_node_copy(model: Any, folder: Path) -> None:
    """Save a stock checkpoint folder (config.json + model.safetensors) on this node.

    ``save_pretrained`` writes nothing on a rank other than global rank 0 once a process
    group exists, so the local rank 0 of another node writes the same two files itself.
    """
    if not distributed.joined() or dist.get_rank() == 0:
        model.save_pretrained(folder, safe_serialization=True)
        return
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    save_model(model, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})


def check_ranks_agree(model: Any, what: str) -> str:
    """The digest of ``model``'s weights, after checking that every rank holds the same.

    Under DDP every rank must hold identical weights once training ended; a rank that
    silently kept its last epoch would differ. Raises rather than let the ranks go on
    from different weights.
    """
    digest = weights_digest(model)
    digests = distributed.all_gather(digest)
    if len(set(digests)) != 1:
        raise RuntimeError(f"ranks ended {what} with different weights: {digests}")
    return digest


def epoch_digests_callback(record: dict[float, str]) -> Any:
    """A TrainerCallback recording the weights' digest at every evaluation, keyed by epoch.

    Evaluation precedes the checkpoint of the same epoch, so the digest recorded at the
    best epoch is the digest of the weights ``load_best_model_at_end`` restores.
    """
    class _Digests(TrainerCallback):
        def on_evaluate(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            if model is not None:
                record[round(float(state.epoch or 0), 2)] = weights_digest(model)

    return _Digests()
