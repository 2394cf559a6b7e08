"""Train the taxonomy classifier and one subtaxonomy classifier per taxonomy.

    python -m training.train --data training/sample_events.csv --output artifacts/demo

Writes a run directory (its tree: handlers/run_layout.py) that ``archives/build.py``
packages for TorchServe. The run is assembled in a temporary folder beside RUN_DIR and
renamed into place at the end, so a failed or interrupted run leaves nothing half-written
and never touches an existing run unless ``--overwrite`` is given.

``run`` reads as the recipe: the config resolved once (training/config.py), the split
table, the base model, how texts are read (training/reading.py), every classifier trained
by the Trainer (training/level.py), the run stored on its shared trunk
(training/layout.py), the choices made on val and hierarchy.json written once
(training/choices.py), then test scored and reported (training/report.py).

Under ``torchrun`` every rank runs this same entry point: the Trainer trains the warm-up
and taxonomy models with DDP, the subtaxonomy models are spread over the ranks
(training.parallel), and global rank 0 alone writes the run directory
(training.distributed says who does what).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import pandas as pd
import torch
from transformers import AutoConfig, AutoTokenizer, set_seed

from handlers.run_layout import REPORT_FILE, TOKENIZER_DIR, TRAINER_DIR, WARMUP_DIR
from table.events import DataError, SplitReport, load_events, split_events
from table.record import TrainingRecord, save_split, sha256_of
from training import distributed, lifetime, parallel
from training.base_model import prepare_base_model
from training.choices import settle_on_val
from training.config import TrainingConfig, UsageError, parse_config
from training.jobs import plan_jobs, train_cascade
from training.layout import build_hierarchy, store_trunk
from training.level import cpu_precision
from training.reading import choose_reading
from training.report import evaluate_and_report
from training.tracking import EnergyMeter, ExtraMissing, MlflowTracker

logger = logging.getLogger("training")
T = TypeVar("T")


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv, __doc__)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    world = distributed.world_from_env()
    with distributed.sigterm_as_exit():
        distributed.init(world)
        try:
            return run(config, world)
        except UsageError as exc:
            if str(exc):  # empty: another rank said why
                print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:
            distributed.shutdown()


def run(config: TrainingConfig, world: distributed.World) -> int:
    output = Path(config.output)
    frame, split_report = on_every_rank(lambda: load_inputs(config, output, world))
    config, base, base_record = prepare(config, world)
    tokenizer = AutoTokenizer.from_pretrained(base)
    config, text, reading = choose_reading(config, tokenizer, frame)
    if world.main:
        for choice, note in reading.items():
            print(f"{choice.replace('_', ' ')}: {note}", flush=True)
    hierarchy = build_hierarchy(list(zip(frame.taxonomy, frame.subtaxonomy)), text, base_record)
    meter, tracker = on_every_rank(lambda: open_extras(config, output, world))

    run_tmp, work, lock = run_folders(output, world)
    started = time.perf_counter()
    summaries: list[dict[str, Any]] = []
    metrics = None
    try:
        if run_tmp is not None:
            tokenizer.save_pretrained(run_tmp / TOKENIZER_DIR)
        jobs = plan_jobs(hierarchy, frame, config)
        if meter is not None:
            meter.start()
        summaries = train_cascade(jobs, base, tokenizer, text, config, world, work, tracker)
        energy = meter.stop() if meter is not None else None
        meter = None
        if world.distributed:
            parallel.assemble_on_main(jobs, world, work, run_tmp)
        if run_tmp is not None:
            if config.top_layers:
                hierarchy = store_trunk(run_tmp, hierarchy, work / WARMUP_DIR, config.top_layers, config.paths_head)
            metrics, info = finish_on_main(config, hierarchy, frame, split_report, summaries, energy, tracker,
                                           run_tmp, started, world, reading)
        distributed.barrier()  # every rank returns once the run folder is in place
    except BaseException:
        abandon(run_tmp, meter, tracker, summaries)
        raise
    finally:
        if world.distributed and world.local_main and work is not None:
            with distributed.shielded():
                shutil.rmtree(work, ignore_errors=True)
        if lock is not None:
            os.close(lock)
    if tracker is not None:
        tracker.finish(output, metrics, summaries)
    if world.main:
        print(f"run directory: {output} ({info['total_seconds']:.0f}s); report: {output / REPORT_FILE}", flush=True)
    return 0


def on_every_rank(step: Callable[[], T]) -> T:
    """Run ``step`` on every rank; when it fails on one (a UsageError), every rank stops with
    exit code 2, instead of leaving the others blocked in their next collective."""
    try:
        value, problem = step(), None
    except UsageError as exc:
        value, problem = None, exc
    if distributed.agree_exit_code(2 if problem is not None else 0):
        raise problem or UsageError("")
    return value


def load_inputs(config: TrainingConfig, output: Path, world: distributed.World) -> tuple[pd.DataFrame, SplitReport]:
    """The split table (nothing written either way)."""
    if world.main and output.exists() and not config.overwrite:
        raise UsageError(f"{output} already exists; choose another --output or pass --overwrite")
    try:
        frame, split_report = split_events(load_events(config.data, config.columns), seed=config.seed)
    except DataError as exc:
        raise UsageError(str(exc)) from exc
    if not world.main:
        return frame, split_report
    print(f"data: {len(frame)} rows, {split_report.source} split "
          + ", ".join(f"{k} {v}" for k, v in split_report.counts.items()), flush=True)
    if split_report.rare_in_train:
        print(f"note: {len(split_report.rare_in_train)} paths too rare to stratify stay in train only: "
              + ", ".join(split_report.rare_in_train[:10]), flush=True)
    unseen = sorted(set(frame[frame.split != "train"].subtaxonomy) - set(frame[frame.split == "train"].subtaxonomy))
    if unseen:
        print(f"warning: subtaxonomies with no training rows (cannot be predicted): {', '.join(unseen[:10])}", flush=True)
    return frame, split_report


def prepare(config: TrainingConfig, world: distributed.World) -> tuple[TrainingConfig, str, dict[str, Any]]:
    """Threads, the precision resolved by this CPU, the seed and the base model, which must
    be a DistilBERT to carry a shared trunk."""
    threads = distributed.configure_threads(config.threads)
    config = dataclasses.replace(config, precision=cpu_precision(config.precision))
    if world.distributed:
        print(f"rank {world.rank}/{world.size} (node {world.node}): {threads} torch threads", flush=True)
    set_seed(config.seed)
    base, base_record = prepare_base_model(config.base_model)
    model_type = AutoConfig.from_pretrained(base).model_type
    if config.top_layers and model_type != "distilbert":
        raise UsageError(f"the shared trunk (--top-layers) needs a DistilBERT base, and {base} is "
                         f"{model_type}; pass --top-layers all" if world.main else "")
    return config, base, base_record


def open_extras(config: TrainingConfig, output: Path, world: distributed.World) -> tuple[Any, Any]:
    """The energy meter and MLflow run, on global rank 0 only: one of each per training run."""
    if not world.main:
        return None, None
    try:  # the energy meter first: a bad country must not leave an MLflow run open
        meter = EnergyMeter(config.energy_country) if config.energy else None
        tracker = MlflowTracker(config.tracking_uri, config.experiment, output.name) if config.tracking_uri else None
    except (ExtraMissing, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    if tracker is not None:
        tracker.log_params(config.as_dict())
    return meter, tracker


def run_folders(output: Path, world: distributed.World) -> tuple[Path | None, Path, int | None]:
    """Rank 0's temporary run folder beside the output (None on other ranks), the folder
    checkpoints are trained into (that run folder, or a node-local scratch folder under
    torchrun), and the lock that marks the run folder as being written (training/lifetime.py);
    folders that earlier, killed runs left beside the output are removed first."""
    run_tmp, lock = None, None
    if world.main:
        output.parent.mkdir(parents=True, exist_ok=True)
        lifetime.remove_abandoned(output.parent, output.name)
        run_tmp, lock = lifetime.make_run_folder(output.parent, output.name)
    run_id = distributed.broadcast(run_tmp.name.split(".")[-2] if run_tmp is not None else None)
    return run_tmp, distributed.scratch_dir(world, run_id) if world.distributed else run_tmp, lock


def abandon(run_tmp: Path | None, meter: Any, tracker: Any, summaries: list[dict[str, Any]]) -> None:
    """A failed or interrupted run: no half-written run folder, the energy meter stopped, the
    tracked run closed as failed; shielded from the launcher's SIGTERM, so it runs to its end."""
    with distributed.shielded():
        if run_tmp is not None:
            shutil.rmtree(run_tmp, ignore_errors=True)
        if meter is not None:
            meter.stop()
        if tracker is not None:
            tracker.finish(None, None, summaries)


def finish_on_main(config: TrainingConfig, hierarchy: Any, frame: pd.DataFrame, split_report: SplitReport,
                   summaries: list[dict[str, Any]], energy: dict[str, Any] | None, tracker: Any, run_tmp: Path,
                   started: float, world: distributed.World,
                   reading: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The choices on val, evaluation, report, record; then rename the run into place (global rank 0 only)."""
    output = Path(config.output)
    shutil.rmtree(run_tmp / TRAINER_DIR, ignore_errors=True)
    shutil.rmtree(run_tmp / WARMUP_DIR, ignore_errors=True)
    train_seconds = round(time.perf_counter() - started, 1)
    settled = settle_on_val(run_tmp, hierarchy, frame, config)
    long_text: dict[str, Any] = {**reading, **({"lexical": settled.lexical} if settled.lexical is not None else {})}
    record = TrainingRecord(
        data=str(Path(config.data).resolve()), columns=config.columns, seed=config.seed,
        data_sha256=sha256_of(config.data), args=config.as_dict(),
        split={"source": split_report.source, "counts": split_report.counts,
               "rare_in_train": split_report.rare_in_train},
        base_model=dict(hierarchy.base_model),
        extra={"run_name": output.name, "train_seconds": train_seconds, "torch": torch.__version__,
               "world_size": world.size, "long_text": long_text},
    )
    if tracker is not None:
        record.extra["tracking"] = {"uri": tracker.uri, "experiment": config.experiment, "run_id": tracker.run_id}
    info = record.to_info()
    metrics = evaluate_and_report(run_tmp, settled, frame, summaries, info, energy, long_text)
    record.extra["total_seconds"] = info["total_seconds"] = round(time.perf_counter() - started, 1)
    record.save(run_tmp)
    save_split(run_tmp, frame)
    lifetime.move_into_place(run_tmp, output)
    return metrics, info


if __name__ == "__main__":
    sys.exit(main())
