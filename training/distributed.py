"""What a training process needs to know and do when it is one rank of several.

``torchrun`` (or ``accelerate launch``) starts one copy of ``training.train`` per rank and
describes the job in environment variables. The Trainer runs DDP by itself once a process
group exists; this module holds what the Trainer does not: which rank writes the run
folder, where each node keeps its scratch files (nodes need not share a file system),
and small object collectives on a CPU (gloo) group that works beside NCCL. That every rank
ends a model with the same weights is training/rank_weights.py's job.

Outside torchrun every function here is a cheap no-op, so single-process code paths call
them unconditionally.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from training import lifetime

# Set by torchrun / torch.distributed.run for every worker; a worker process we spawn must
# not see them, or its Trainer would try to join the job's process group.
LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT",
                "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS",
                "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_ERROR_FILE", "TORCH_NCCL_ASYNC_ERROR_HANDLING")
# Our own collectives wait for sibling ranks to finish whole models (a cascade's
# subtaxonomy models can take hours on big tables), far longer than a DDP step may.
CONTROL_TIMEOUT = timedelta(hours=12)

_control: Any = None  # the gloo group for object collectives, once init() ran


@dataclass(frozen=True)
class World:
    """This process's place in the job: global rank, local rank on its node, node index."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    node: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1
    @property
    def main(self) -> bool:
        """Global rank 0: the only process that writes the run folder, MLflow and energy."""
        return self.rank == 0
    @property
    def local_main(self) -> bool:
        """Local rank 0: the process that writes this node's scratch files."""
        return self.local_rank == 0


def world_from_env() -> World:
    """The job as torchrun describes it; a plain ``python -m`` run is a world of one."""
    env = os.environ
    size = int(env.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    local_size = int(env.get("LOCAL_WORLD_SIZE", "1"))
    rank = int(env.get("RANK", "0"))
    return World(rank=rank, size=size, local_rank=int(env.get("LOCAL_RANK", "0")), local_size=local_size,
                 node=int(env.get("GROUP_RANK", rank // max(local_size, 1))))


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_WORLD_SIZE" in os.environ


def init(world: World) -> None:
    """Join the job's process group before the Trainer does, so ranks can talk early.

    gloo on CPU, NCCL with one GPU per local rank; accelerate (under the Trainer) reuses
    an existing group. Object collectives go through a separate gloo group: NCCL moves
    only GPU tensors, and our waits need a longer timeout than DDP's.
    """
    global _control
    if not world.distributed or _control is not None:
        return
    # A rank whose launcher is killed ends as if the launcher had stopped it: SIGTERM,
    # which sigterm_as_exit turns into the usual cleanup.
    lifetime.die_with_parent(signal.SIGTERM)

    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    _control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit for the block, so ``except``/``finally`` cleanups run.

    torchrun sends SIGTERM to the surviving ranks when one fails (a batch scheduler does
    the same to a cancelled job); by default that kills Python on the spot and leaves
    the temporary run folder behind.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def shielded() -> Iterator[None]:
    """Run a cleanup to its end even if the launcher's SIGTERM arrives meanwhile.

    When a rank dies, the others often fail on a closed connection first and start
    cleaning up; torchrun's SIGTERM would then interrupt the cleanup half-way. It kills
    with SIGKILL only after a grace period, far longer than removing a folder takes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def shutdown() -> None:
    """Leave the process group (avoids torch's warning about an undestroyed group at exit)."""
    global _control
    if _control is None:
        return
    _control = None
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if _control is not None:
        dist.barrier(group=_control)


def broadcast(value: Any, src: int = 0) -> Any:
    """``value`` as rank ``src`` holds it, on every rank (picklable objects)."""
    if _control is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src, group=_control)
    return box[0]


def all_gather(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if _control is None:
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value, group=_control)
    return out


def gather_to_main(value: Any) -> list[Any] | None:
    """Every rank's ``value`` in rank order on global rank 0; None elsewhere."""
    if _control is None:
        return [value]
    rank = dist.get_rank()
    out: list[Any] | None = [None] * dist.get_world_size() if rank == 0 else None
    dist.gather_object(value, out, dst=0, group=_control)
    return out


def agree_exit_code(code: int) -> int:
    """The worst exit code of all ranks, on every rank: one rank's bad input stops them all
    cleanly, instead of leaving the others blocked in their next collective."""
    return max(all_gather(code))


def scratch_dir(world: World, run_id: str) -> Path:
    """A node-local folder for checkpoints that ranks of one node share.

    Under TMPDIR, so it is local to each machine; the node index is in the name so that
    nodes whose TMPDIR happens to be shared still never write the same files.
    """
    return Path(tempfile.gettempdir()) / f"event-taxonomy-{run_id}-node{world.node}"


def joined() -> bool:
    """Whether this process joined a torchrun job's process group (``init`` ran)."""
    return _control is not None


def strip_launcher_env() -> None:
    """Forget the torchrun job in this process (a spawned worker training a whole model alone)."""
    for name in LAUNCHER_ENV:
        os.environ.pop(name, None)


def current_size() -> int:
    """How many processes train the current model together (1 in a spawned worker)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def configure_threads(requested: int | None) -> int:
    """Set torch's CPU threads only when ``--threads`` was given, and return the count in use.

    Otherwise torch follows OMP_NUM_THREADS, which torchrun sets per worker (to 1 unless
    the user set it): the launcher knows how many processes share the machine.
    """
    if requested:
        launcher = os.environ.get("OMP_NUM_THREADS")
        if launched_by_torchrun() and launcher and int(launcher) != requested:
            print(f"note: --threads {requested} overrides OMP_NUM_THREADS={launcher} from the launcher", flush=True)
        torch.set_num_threads(requested)
    return torch.get_num_threads()
