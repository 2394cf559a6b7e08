"""One classifier of the cascade and its fine-tuning with the Trainer.

A ``LevelJob`` is one model to train (training/jobs.py plans them: path warm-up, taxonomy,
one per taxonomy with two or more subtaxonomies); ``train_level`` trains one of them, alone
or as a rank of a torchrun job, and saves it as a stock checkpoint folder.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import (AutoModelForSequenceClassification, DataCollatorWithPadding, EarlyStoppingCallback, Trainer,
                          TrainingArguments)

from handlers.hierarchy import Level, path_label
from handlers.precision import resolve_precision
from handlers.run_layout import TRAINER_DIR, WEIGHTS_FILE
from handlers.text import TextFormat
from handlers.trunk import read_first_position
from table.events import event_dicts
from training import distributed, rank_weights
from training.base_model import quiet_load_report
from training.config import TrainingConfig
from training.top import TopOnTrunk, pad_states


# A job's role in the cascade.
WARMUP_ROLE, TAXONOMY_ROLE, SUBTAXONOMY_ROLE = "warmup", "taxonomy", "subtaxonomy"


@dataclass
class LevelJob:
    """One classifier to train, planned once: what it is, on which rows, for how long, from which weights."""

    role: str
    name: str
    folder: str
    level: Level
    train: pd.DataFrame
    val: pd.DataFrame
    label_column: str
    epochs: float
    learning_rate: float
    from_warmup: bool = False  # start from the path warm-up checkpoint (its rows of the head) instead of the base
    taxonomy: str | None = None  # set for a subtaxonomy model


def _tokenized(frame: pd.DataFrame, labels: tuple[str, ...], column: str, tokenizer: Any, text: TextFormat):
    index = {label: i for i, label in enumerate(labels)}
    data = Dataset.from_dict({
        "text": [text.format(r) for r in event_dicts(frame)],
        "labels": [index[v] for v in frame[column]],
    })
    def encode(batch: dict[str, list]) -> dict[str, list]:
        # Cut exactly as the serving cascade cuts; under ``windows`` every window is a row
        # labelled with its event's label (the cascade averages the windows' probabilities).
        windows = text.token_windows(tokenizer, batch["text"])
        ids = [w for per_event in windows for w in per_event]
        labels = [label for per_event, label in zip(windows, batch["labels"]) for _ in per_event]
        return {"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids], "labels": labels}

    return data.map(encode, batched=True, remove_columns=["text", "labels"], desc="tokenizing")


def _init_head(model: Any, warmup: Path, paths: list[str] | None) -> None:
    """The output layer of a model started from the path warm-up checkpoint.

    A subtaxonomy model takes the warm-up classifier's rows for its own paths, so it
    starts as the all-data path classifier restricted to its taxonomy and fine-tuning only
    refines it; the taxonomy model gets a fresh layer.
    """
    head = model.classifier
    with torch.no_grad():
        if paths:
            config = json.loads((warmup / "config.json").read_text())
            index = {label: int(i) for i, label in config["id2label"].items()}
            weights = load_file(str(warmup / WEIGHTS_FILE))
            rows = torch.tensor([index[p] for p in paths])
            head.weight.copy_(weights["classifier.weight"][rows])
            head.bias.copy_(weights["classifier.bias"][rows])
        else:
            torch.nn.init.normal_(head.weight, std=model.config.initializer_range)
            torch.nn.init.zeros_(head.bias)


HEAD_PREFIXES = ("pre_classifier.", "classifier.")  # a sequence-classification head (DistilBERT's, BERT's)


def _start_model(start: str, labels: tuple[str, ...]) -> Any:
    """The checkpoint a level starts from, with a new head for its labels.

    A new head is the point (the base has none, the warm-up's predicts paths), so transformers'
    load report, a table per level that calls it MISSING or MISMATCH, says nothing a reader
    needs. It is read here instead: only weights outside the head that were not loaded are
    worth a line.
    """
    with quiet_load_report():
        model, info = AutoModelForSequenceClassification.from_pretrained(
            start, id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
            ignore_mismatched_sizes=True, output_loading_info=True)
    fresh = [*info["missing_keys"], *(key for key, *_ in info["mismatched_keys"])]
    odd = sorted(key for key in fresh if not key.startswith(HEAD_PREFIXES))
    if odd:
        print(f"warning: {len(odd)} weights outside the classification head are not in {start} and start "
              f"from random values: {', '.join(odd[:6])}{', ...' if len(odd) > 6 else ''}", flush=True)
    return model


def _training_args(job: LevelJob, config: TrainingConfig, work: Path, train_rows: int,
                   has_val: bool) -> TrainingArguments:
    """The Trainer's arguments for one classifier; under torchrun the Trainer runs DDP with them.

    Steps per epoch count the whole job's batch (per-device batch x world size), so the
    warm-up share is the same fraction of training whatever the number of ranks. Rank 0
    saves the epoch checkpoints into ``work`` (node-local); ranks on other machines get
    the best epoch's weights from rank 0 afterwards (rank_weights.adopt_main_weights).
    """
    epochs, lr = job.epochs, job.learning_rate
    steps_per_epoch = math.ceil(train_rows / (config.batch_size * distributed.current_size()))
    cuda = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(work / TRAINER_DIR / job.folder.replace("/", "_")),
        num_train_epochs=epochs,
        learning_rate=lr,
        lr_scheduler_type="linear",
        warmup_steps=int(config.warmup_ratio * steps_per_epoch * epochs),
        weight_decay=config.weight_decay,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        eval_strategy="epoch" if has_val else "no",
        save_strategy="epoch" if has_val else "no",
        save_only_model=True,
        save_total_limit=1,
        load_best_model_at_end=has_val,
        metric_for_best_model="accuracy",
        greater_is_better=True,
        logging_strategy="steps",
        logging_steps=max(1, steps_per_epoch // 10),
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=not cuda,
        fp16=cuda,
        bf16=not cuda and config.bf16,
        report_to=[],
        disable_tqdm=config.quiet,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        train_sampling_strategy="group_by_length",  # batches of rows of about one length: less padding
    )


def cpu_precision(precision: str) -> str:
    """The arithmetic of CPU training: bf16 autocast when asked for, or ``auto`` on a CPU with
    native bf16; else fp32."""
    return resolve_precision(precision, torch.device("cpu"))


def _weighted_loss(train_labels: Any, n_labels: int) -> Any:
    """Cross-entropy weighted by inverse class frequency (``--class-weights balanced``)."""
    counts = np.bincount(np.asarray(train_labels), minlength=n_labels).astype(float)
    weights = torch.tensor(len(train_labels) / (n_labels * np.maximum(counts, 1)), dtype=torch.float)

    def loss_func(outputs: Any, target: Any, num_items_in_batch: Any = None) -> Any:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        return torch.nn.functional.cross_entropy(logits.float(), target, weight=weights.to(logits.device))

    return loss_func


def _accuracy(pred: Any) -> dict[str, float]:
    return {"accuracy": float((np.argmax(pred.predictions, axis=-1) == pred.label_ids).mean())}


def train_level(job: LevelJob, base: str, warmup: str, tokenizer: Any, text: TextFormat, config: TrainingConfig,
                run_tmp: Path, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Fine-tune one classifier with the Trainer and save it as a stock checkpoint.

    ``base``, ``warmup``: the base model, and the path warm-up checkpoint that jobs with
    ``from_warmup`` start from (their head taken from the warm-up classifier's rows).
    ``run_tmp``: the folder the checkpoint is saved into (under torchrun: the node-local
    scratch folder, written by each node's local rank 0 once every rank holds the same
    best-epoch weights).
    ``callbacks``: extra TrainerCallbacks (experiment tracking).
    """
    started = time.perf_counter()
    labels = job.level.labels
    train_ds = _tokenized(job.train, labels, job.label_column, tokenizer, text)
    val_ds = _tokenized(job.val, labels, job.label_column, tokenizer, text) if len(job.val) else None
    model = _start_model(warmup if job.from_warmup else base, labels)
    if job.from_warmup:
        paths = [path_label(job.taxonomy, sub) for sub in labels] if job.taxonomy else None
        _init_head(model, Path(warmup), paths)
    collator, trained = DataCollatorWithPadding(tokenizer), read_first_position(model)  # same gradients, less work
    top = None
    if config.top_layers and job.role != WARMUP_ROLE:  # the warm-up trains the whole encoder: it becomes the trunk
        top = TopOnTrunk(model, config.top_layers)
        train_ds = top.dataset(train_ds, tokenizer.pad_token_id or 0, config.bf16)
        val_ds = top.dataset(val_ds, tokenizer.pad_token_id or 0, config.bf16) if val_ds is not None else None
        collator, trained = pad_states, top.top.model

    training_args = _training_args(job, config, run_tmp, len(train_ds), val_ds is not None)
    digests: dict[float, str] = {}
    extra = [EarlyStoppingCallback(early_stopping_patience=config.patience)] if val_ds is not None else []
    if distributed.current_size() > 1:
        extra.append(rank_weights.epoch_digests_callback(digests))
    trainer = Trainer(
        model=trained, args=training_args, train_dataset=train_ds, eval_dataset=val_ds,
        data_collator=collator, compute_metrics=_accuracy,
        compute_loss_func=_weighted_loss(train_ds["labels"] if top is None else train_ds.labels, len(labels))
        if config.class_weights == "balanced" else None,
        callbacks=extra + list(callbacks or []),
    )
    trainer.train()
    rank_weights.adopt_main_weights(trainer.model)  # rank 0 holds the best epoch; now every rank does
    digest = rank_weights.check_ranks_agree(trainer.model, job.name)  # also: every rank is done loading
    if trainer.is_local_process_zero():
        rank_weights.save_node_copy(model if top is None else top.put_back(model), run_tmp / job.folder)
        shutil.rmtree(training_args.output_dir, ignore_errors=True)
    distributed.barrier()  # the saved checkpoint exists on every node before anyone reads it
    summary = _summary(job, trainer.state, len(train_ds), time.perf_counter() - started)
    if digests:
        summary.update(epoch_digests=digests, weights_digest=digest, ranks=distributed.current_size())
    best = "n/a (no val rows)" if summary["best_val_accuracy"] is None else f"{summary['best_val_accuracy']:.4f}"
    print(f"[{job.name}] {summary['train_rows']} examples, {summary['epochs_run']} epochs, "
          f"best val acc {best} (epoch {summary['best_epoch']}), {summary['seconds']:.0f}s", flush=True)
    return summary


def _summary(job: LevelJob, state: Any, train_rows: int, seconds: float) -> dict[str, Any]:
    """What metrics.json and the report say about one trained model."""
    history = state.log_history
    evals = [(h["eval_accuracy"], h.get("epoch")) for h in history if "eval_accuracy" in h]
    best = max(evals, key=lambda e: e[0]) if evals else (None, None)  # the first of equals, as the Trainer keeps
    epochs = float(state.epoch or 0)
    return {
        "name": job.name,
        "folder": job.folder,
        "labels": len(job.level.labels),
        "train_rows": train_rows,
        "val_rows": len(job.val),
        "epochs_run": round(epochs, 2),
        "optimizer_steps": int(state.global_step),
        "best_val_accuracy": best[0],
        "best_epoch": None if best[1] is None else round(float(best[1]), 2),
        "seconds": round(seconds, 1),
        "train_samples_per_second": round(train_rows * epochs / max(seconds, 1e-9), 1),
        "history": history,
    }
