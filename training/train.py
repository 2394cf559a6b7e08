"""Train the taxonomy classifier and one subtaxonomy classifier per taxonomy.

    python -m training.train --data training/sample_events.csv --output artifacts/demo

Writes a run directory (hierarchy.json, tokenizer/, taxonomy/, subtaxonomy/<slug>/,
metrics.json, report.md, plots) that ``archives/build.py`` packages for TorchServe.
The run is assembled in a temporary folder beside RUN_DIR and renamed into place at the
end, so a failed or interrupted run leaves nothing half-written and never touches an
existing run unless ``--overwrite`` is given.

Under ``torchrun`` every rank runs this same entry point: the Trainer trains the warm-up
and taxonomy models with DDP, the subtaxonomy models are spread over the ranks
(training.parallel), and global rank 0 alone writes the run directory
(training.distributed says who does what).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from handlers.hierarchy import Hierarchy

from handlers.run_layout import TOKENIZER_DIR
from training.layout import build_hierarchy, store_trunk
from handlers.text import TextFormat
from training import distributed, lifetime, parallel
from table.events import Columns, DataError, load_events, split_events
from training.level import SUBTAXONOMY_ROLE, LevelJob, cpu_bf16, plan_jobs, train_level
from handlers.run_layout import WARMUP_DIR
from training.long_text import add_lexical_models, choose_reading
from table.record import TrainingRecord, save_split, sha256_of
from training.options import parse_args
from training.tracking import EnergyMeter, ExtraMissing, MlflowTracker

logger = logging.getLogger("training")


def _load_inputs(args: argparse.Namespace, output: Path, world: distributed.World) -> tuple[Any, Any] | int:
    """The split table, or exit code 2 with the reason printed (nothing written either way)."""
    if world.main and output.exists() and not args.overwrite:
        print(f"error: {output} already exists; choose another --output or pass --overwrite", file=sys.stderr)
        return 2
    columns = Columns(args.title_column, args.description_column, args.taxonomy_column,
                      args.subtaxonomy_column, args.split_column)
    try:
        frame, split_report = split_events(load_events(args.data, columns), seed=args.seed)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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


def _open_extras(args: argparse.Namespace, output: Path, world: distributed.World) -> tuple[Any, Any] | int:
    """The energy meter and MLflow run, on global rank 0 only: one of each per training run."""
    if not world.main:
        return None, None
    try:  # the energy meter first: a bad country must not leave an MLflow run open
        meter = EnergyMeter(args.energy_country) if args.energy else None
        tracker = MlflowTracker(args.tracking_uri, args.experiment, output.name) if args.tracking_uri else None
    except (ExtraMissing, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if tracker is not None:
        tracker.log_params(vars(args))
    return meter, tracker


def _train_cascade(jobs: list[LevelJob], base: str, tokenizer: Any, text: TextFormat, args: argparse.Namespace,
                   world: distributed.World, work: Path, tracker: Any) -> list[dict[str, Any]]:
    """Train every model into ``work``: warm-up and taxonomy with all ranks (DDP under
    torchrun), then the subtaxonomy models in this process, or spread over worker
    processes and ranks (training.parallel)."""
    import torch

    spread = world.distributed or args.parallel_models > 1
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
        summaries.append(train_level(job, base, warmup, tokenizer, text, args, work, callbacks))
    if spread:
        mine = parallel.my_share(subtaxonomy, world)
        phase = time.perf_counter()
        done = parallel.train_jobs(mine, warmup, base, text, args, work, world, torch.get_num_threads())
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    world = distributed.world_from_env()
    with distributed.sigterm_as_exit():
        distributed.init(world)
        try:
            return _run(args, world)
        finally:
            distributed.shutdown()


def _run(args: argparse.Namespace, world: distributed.World) -> int:
    output = Path(args.output)
    loaded = _load_inputs(args, output, world)
    if distributed.agree_exit_code(loaded if isinstance(loaded, int) else 0):
        return 2
    frame, split_report = loaded

    from transformers import AutoTokenizer

    base, base_record = _prepare(args, world)
    if base is None:
        return 2
    tokenizer = AutoTokenizer.from_pretrained(base)
    text, reading = choose_reading(args, tokenizer, frame)
    if world.main:
        for choice, note in reading.items():
            print(f"{choice.replace('_', ' ')}: {note}", flush=True)
    hierarchy = build_hierarchy(list(zip(frame.taxonomy, frame.subtaxonomy)), text, base_record)
    extras = _open_extras(args, output, world)
    if distributed.agree_exit_code(extras if isinstance(extras, int) else 0):
        return 2
    meter, tracker = extras

    run_tmp, work, lock = _run_folders(output, world)
    started = time.perf_counter()
    summaries: list[dict[str, Any]] = []
    metrics = None
    try:
        if run_tmp is not None:
            tokenizer.save_pretrained(run_tmp / TOKENIZER_DIR)
            hierarchy.save(run_tmp)
        jobs = plan_jobs(hierarchy, frame, args)
        if meter is not None:
            meter.start()
        summaries = _train_cascade(jobs, base, tokenizer, text, args, world, work, tracker)
        energy = meter.stop() if meter is not None else None
        meter = None
        if world.distributed:
            parallel.assemble_on_main(jobs, world, work, run_tmp)
        if run_tmp is not None:
            if args.top_layers:
                store_trunk(run_tmp, hierarchy, work / WARMUP_DIR, args.top_layers, args.paths_weight != "off")
            metrics, info = _finish_on_main(args, frame, split_report, base_record, summaries, energy, tracker,
                                            run_tmp, started, world, reading)
        distributed.barrier()  # every rank returns once the run folder is in place
    except BaseException:
        _abandon(run_tmp, meter, tracker, summaries)
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
        print(f"run directory: {output} ({info['total_seconds']:.0f}s); report: {output / 'report.md'}", flush=True)
    return 0


def _abandon(run_tmp: Path | None, meter: Any, tracker: Any, summaries: list[dict[str, Any]]) -> None:
    """A failed or interrupted run: no half-written run folder, the energy meter stopped, the
    tracked run closed as failed; shielded from the launcher's SIGTERM, so it runs to its end."""
    with distributed.shielded():
        if run_tmp is not None:
            shutil.rmtree(run_tmp, ignore_errors=True)
        if meter is not None:
            meter.stop()
        if tracker is not None:
            tracker.finish(None, None, summaries)


def _prepare(args: argparse.Namespace, world: distributed.World) -> tuple[str | None, dict[str, Any]]:
    """Threads, precision (recorded as resolved), seed and the base model; no base when it
    cannot carry a shared trunk (the message printed)."""
    from transformers import AutoConfig, set_seed

    from training.base_model import prepare_base_model

    threads = distributed.configure_threads(args.threads)
    args.precision = "bf16" if cpu_bf16(args.precision) else "fp32"
    if world.distributed:
        print(f"rank {world.rank}/{world.size} (node {world.node}): {threads} torch threads", flush=True)
    set_seed(args.seed)
    base, base_record = prepare_base_model(args.base_model)
    model_type = AutoConfig.from_pretrained(base).model_type
    if args.top_layers and model_type != "distilbert":
        if world.main:
            print(f"error: the shared trunk (--top-layers) needs a DistilBERT base, and {base} is "
                  f"{model_type}; pass --top-layers all", file=sys.stderr)
        return None, base_record
    return base, base_record


def _run_folders(output: Path, world: distributed.World) -> tuple[Path | None, Path, int | None]:
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


def _finish_on_main(args: argparse.Namespace, frame: Any, split_report: Any, base_record: dict[str, Any],
                    summaries: list[dict[str, Any]], energy: dict[str, Any] | None, tracker: Any, run_tmp: Path,
                    started: float, world: distributed.World,
                    reading: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Lexical models, evaluation, report, record; then rename the run into place (global rank 0 only)."""
    import torch

    from training.report import evaluate_and_report

    output = Path(args.output)
    shutil.rmtree(run_tmp / "_trainer", ignore_errors=True)
    shutil.rmtree(run_tmp / WARMUP_DIR, ignore_errors=True)
    train_seconds = round(time.perf_counter() - started, 1)
    long_text: dict[str, Any] = dict(reading)
    if args.lexical == "auto":
        hierarchy, long_text["lexical"] = add_lexical_models(
            run_tmp, Hierarchy.load(run_tmp), frame[frame.split == "train"], frame[frame.split == "val"], args.seed)
        hierarchy.save(run_tmp)
    columns = Columns(args.title_column, args.description_column, args.taxonomy_column,
                      args.subtaxonomy_column, args.split_column)
    record = TrainingRecord(
        data=str(Path(args.data).resolve()), columns=columns, seed=args.seed, data_sha256=sha256_of(args.data),
        args={k: v for k, v in vars(args).items()},
        split={"source": split_report.source, "counts": split_report.counts,
               "rare_in_train": split_report.rare_in_train},
        base_model=base_record,
        extra={"run_name": output.name, "train_seconds": train_seconds, "torch": torch.__version__,
               "world_size": world.size, "long_text": long_text},
    )
    if tracker is not None:
        record.extra["tracking"] = {"uri": tracker.uri, "experiment": args.experiment, "run_id": tracker.run_id}
    info = record.to_info()
    metrics = evaluate_and_report(run_tmp, frame, summaries, info, args.eval_batch_size, energy, long_text)
    record.extra["total_seconds"] = info["total_seconds"] = round(time.perf_counter() - started, 1)
    record.save(run_tmp)
    save_split(run_tmp, frame)
    _replace(run_tmp, output)
    return metrics, info


def _replace(new: Path, target: Path) -> None:
    """Move the finished run into place; an old run is removed only after that worked."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
