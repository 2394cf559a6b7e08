"""The models a run trains, planned once, and where each is trained.

``plan_jobs`` lists them in training order: the path warm-up (every full path as one class),
the taxonomy model, and one model per taxonomy with two or more subtaxonomies.
``train_cascade`` trains them: the warm-up and taxonomy models with every rank (DDP under
torchrun), then the subtaxonomy models in this process, or spread over worker processes
and ranks (training/parallel.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from handlers.hierarchy import Hierarchy, Level, path_label
from handlers.run_layout import WARMUP_DIR
from handlers.text import TextFormat
from training import distributed, parallel
from training.config import TrainingConfig
from training.level import SUBTAXONOMY_ROLE, TAXONOMY_ROLE, WARMUP_ROLE, LevelJob, train_level

WARMUP = "paths (warm-up)"


def plan_jobs(hierarchy: Hierarchy, frame: pd.DataFrame, config: TrainingConfig) -> list[LevelJob]:
    """Every model of the run, in training order, with its epochs, rate and starting weights."""
    train, val = frame[frame.split == "train"], frame[frame.split == "val"]
    warm = config.path_warmup_epochs > 0
    sub_epochs = config.subtaxonomy_epochs or (3 if warm else config.epochs)
    sub_rate = config.subtaxonomy_learning_rate or (config.learning_rate / 2 if warm else config.learning_rate)
    jobs = []
    if warm:
        paths = [path_label(t, s) for t, s in zip(frame.taxonomy, frame.subtaxonomy)]
        frame = frame.assign(path=paths)
        level = Level(tuple(sorted(set(paths))), WARMUP_DIR)
        jobs.append(LevelJob(WARMUP_ROLE, WARMUP, WARMUP_DIR, level, frame[frame.split == "train"],
                             frame[frame.split == "val"], "path", config.path_warmup_epochs, config.learning_rate))
    if hierarchy.taxonomy.checkpoint:
        jobs.append(LevelJob(TAXONOMY_ROLE, "taxonomy", hierarchy.taxonomy.checkpoint, hierarchy.taxonomy, train, val,
                             "taxonomy", config.epochs, config.learning_rate, warm))
    for tax, level in hierarchy.subtaxonomies.items():
        if level.checkpoint:
            jobs.append(LevelJob(SUBTAXONOMY_ROLE, f"subtaxonomy:{tax}", level.checkpoint, level,
                                 train[train.taxonomy == tax], val[val.taxonomy == tax], "subtaxonomy", sub_epochs,
                                 sub_rate, warm, tax))
    return jobs


def train_cascade(jobs: list[LevelJob], base: str, tokenizer: Any, text: TextFormat, config: TrainingConfig,
                  world: distributed.World, work: Path, tracker: Any) -> list[dict[str, Any]]:
    """Train every model into ``work``; their summaries, in ``jobs`` order."""
    spread = world.distributed or config.parallel_models > 1
    subtaxonomy = [job for job in jobs if job.role == SUBTAXONOMY_ROLE]
    together = [job for job in jobs if not (spread and job.role == SUBTAXONOMY_ROLE)]
    warmup = str(work / WARMUP_DIR)
    summaries, phase = [], None
    for number, job in enumerate(together, start=1):
        if job.role == SUBTAXONOMY_ROLE and phase is None:
            phase = time.perf_counter()
        if world.main:
            print(f"== [{number}/{len(jobs)}] {job.name}: {len(job.level.labels)} labels, "
                  f"{len(job.train)} train / {len(job.val)} val rows"
                  + (f", DDP over {world.size} ranks" if world.distributed else ""), flush=True)
        callbacks = [tracker.callback(job.folder)] if tracker is not None else []
        summaries.append(train_level(job, base, warmup, tokenizer, text, config, work, callbacks))
    if spread:
        mine = parallel.my_share(subtaxonomy, world)
        phase = time.perf_counter()
        done = parallel.train_jobs(mine, warmup, base, text, config, work, world, torch.get_num_threads())
        gathered = distributed.gather_to_main(done) or []
        order = {job.folder: i for i, job in enumerate(jobs)}
        for summary in sorted((s for part in gathered for s in part), key=lambda s: order[s["folder"]]):
            summaries.append(summary)
            if tracker is not None:
                tracker.log_history(summary["folder"], summary["history"])
    if phase is not None and world.main:
        print(f"subtaxonomy models: {len(subtaxonomy)} trained in "
              f"{time.perf_counter() - phase:.1f}s wall", flush=True)
    return summaries
