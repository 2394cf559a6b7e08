"""Train the cascade's subtaxonomy models side by side.

Once the path warm-up (and the taxonomy model) are trained, the subtaxonomy models are
independent: each starts from the same checkpoint and sees only its taxonomy's rows. So
they are spread over worker processes (``--parallel-models N``, each with its share of
the cores) and, under torchrun, over ranks: rank r trains jobs r, r+N, ... (largest
first), each a whole model in a worker process of its own that is not part of the DDP
job. The finished checkpoints then travel to global rank 0, which writes the run folder;
nodes need not share a file system.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, set_seed

from handlers.text import TextFormat
from training import distributed, lifetime
from training.config import TrainingConfig
from training.distributed import World
from training.level import SUBTAXONOMY_ROLE, TAXONOMY_ROLE, LevelJob, train_level


def my_share(jobs: list[Any], world: World) -> list[Any]:
    """This rank's jobs: largest first, dealt round-robin, so ranks get similar work."""
    ordered = sorted(jobs, key=lambda job: len(job.train), reverse=True)
    return ordered[world.rank::world.size]


def worker_threads(total: int, workers: int) -> int:
    """Torch threads per worker: the cores this process was given, split evenly (at least 1)."""
    return max(1, total // max(workers, 1))


def worker_gpu(world: World) -> str | None:
    """The GPU this rank's workers use: the rank's own, as torchrun's one-GPU-per-process
    layout gives it (None without CUDA)."""
    if not torch.cuda.is_available():
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    return devices[world.local_rank % len(devices)]


def _init_worker(threads: int, gpu: str | None, parent: int) -> None:
    # A worker trains one whole model alone: it dies with the process that started it (a
    # SIGKILLed rank cannot stop it), it must not join the torchrun job, it keeps to its
    # share of the cores (torch's default would oversubscribe them), and it uses its rank's
    # GPU, not GPU 0 (CUDA reads the variable when first used, after this: importing torch
    # does not).
    lifetime.die_with_parent(parent=parent)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    distributed.strip_launcher_env()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def _train_one(job: LevelJob, start: str, base: str, text: TextFormat, config: TrainingConfig, out: Path,
               tag: str) -> dict[str, Any]:
    set_seed(config.seed)
    print(f"== [{tag}] {job.name}: {len(job.level.labels)} labels, {len(job.train)} train / "
          f"{len(job.val)} val rows, pid {os.getpid()}, {torch.get_num_threads()} threads", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(base)
    summary = train_level(job, base, start, tokenizer, text, config, out)
    summary["trained_by"] = tag
    return summary


def train_jobs(jobs: list[LevelJob], start: str, base: str, text: TextFormat, config: TrainingConfig, out: Path,
               world: World, threads: int) -> list[dict[str, Any]]:
    """Train ``jobs`` (this rank's share) in ``--parallel-models`` spawned workers into ``out``.

    Spawn, not fork: a forked child would inherit torch's thread pools and, under
    torchrun, the process group's sockets.
    """
    if not jobs:
        return []
    workers = min(config.parallel_models, len(jobs))
    per_worker = worker_threads(threads, workers)
    where = f"rank {world.rank}/{world.size}" if world.distributed else "local"
    print(f"training {len(jobs)} subtaxonomy models ({where}) in {workers} worker process(es), "
          f"{per_worker} thread(s) each", flush=True)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(per_worker, worker_gpu(world), os.getpid())) as pool:
        futures = [pool.submit(_train_one, job, start, base, text, config, out,
                               f"{where}, model {i}/{len(jobs)}") for i, job in enumerate(jobs, start=1)]
        try:
            return [future.result() for future in futures]
        except BaseException:
            # A failed model, SIGTERM or Ctrl-C ends the phase now: start no more models and
            # stop the ones training, rather than wait for them on the way out.
            for future in futures:
                future.cancel()
            for process in list(pool._processes.values()):  # no public way before Python 3.14
                process.kill()
            raise


def _read_folder(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def collect_on_main(mine: list[Any], work: Path, run_tmp: Path | None, rounds: int) -> None:
    """Ship every rank's finished checkpoints to global rank 0, which writes them into ``run_tmp``.

    One model per rank per round (an object gather over gloo), so rank 0 holds at most
    world-size checkpoints in memory at once, whatever the number of models.
    """
    for i in range(rounds):
        job = mine[i] if i < len(mine) else None
        payload = (job.folder, _read_folder(work / job.folder)) if job is not None else None
        received = distributed.gather_to_main(payload)
        if run_tmp is None or received is None:
            continue
        for item in received:
            if item is None:
                continue
            folder, files = item
            target = run_tmp / folder
            shutil.rmtree(target, ignore_errors=True)
            for name, data in files.items():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                (target / name).write_bytes(data)


def assemble_on_main(jobs: list[Any], world: World, work: Path, run_tmp: Path | None) -> None:
    """Bring every model of a torchrun job into rank 0's run folder: the taxonomy model from
    rank 0's node scratch folder, the subtaxonomy models from whichever rank trained them."""
    if world.main and run_tmp is not None:
        for job in jobs:
            if job.role == TAXONOMY_ROLE:
                shutil.copytree(work / job.folder, run_tmp / job.folder)
    rest = [job for job in jobs if job.role == SUBTAXONOMY_ROLE]
    rounds = max(len(my_share(rest, World(rank=r, size=world.size))) for r in range(world.size))
    collect_on_main(my_share(rest, world), work, run_tmp, rounds)
