"""No training process outlives the process that started it.

A rank that torchrun started, and a worker process that trains one subtaxonomy model,
ask the kernel to signal them when their parent dies (``PR_SET_PDEATHSIG``), SIGKILL
included: a SIGKILLed parent cannot clean up after itself, and an orphaned worker would
keep training, hold the launcher's output pipe open and write into a folder that is gone.
Linux only; elsewhere a no-op.

The run folder being written is locked (``flock`` on the folder itself) for as long as the
process that writes it lives, so a later run can tell a folder left by a killed run from
one still being written, and remove it.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

PR_SET_PDEATHSIG = 1
PARTIAL_SUFFIX = ".partial"


def die_with_parent(signum: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Be sent ``signum`` when the parent dies; if it already died, end now.

    The kernel signals on the death of the parent *thread* that started this process:
    call it in processes started from their parent's main thread (ours are).
    ``parent`` is the pid the parent had when it started this process; the check after
    setting the signal closes the gap in which the parent could die unnoticed.
    """
    if not sys.platform.startswith("linux"):
        return
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signum)) != 0:
        return
    if os.getppid() != (parent if parent is not None else os.getppid()) or os.getppid() == 1:
        os.kill(os.getpid(), signum)


def make_run_folder(parent: Path, name: str) -> tuple[Path, int]:
    """A private ``.NAME.*.partial`` folder in ``parent``, locked by this process for its
    lifetime (the descriptor is not inherited by child processes). It gets its final name
    only once locked, so :func:`remove_abandoned` never sees it unlocked."""
    new = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".new", dir=parent))
    fd = os.open(new, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    folder = new.with_name(new.name.removesuffix(".new") + PARTIAL_SUFFIX)
    new.rename(folder)
    return folder, fd


def remove_abandoned(parent: Path, name: str) -> list[Path]:
    """Delete the ``.NAME.*.partial`` run folders in ``parent`` that no living process holds."""
    removed = []
    for folder in sorted(parent.glob(f".{name}.*{PARTIAL_SUFFIX}")):
        if folder.is_symlink() or not folder.is_dir():
            continue
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: a run is writing it
            os.close(fd)
            continue
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)
        removed.append(folder)
        print(f"removed {folder}, left by an interrupted run", flush=True)
    return removed


def move_into_place(new: Path, target: Path) -> None:
    """Move the finished run into place; an old run is removed only after that worked."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
