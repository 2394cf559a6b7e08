"""Private build folders, and torch-model-archiver run inside them.

Each build has one folder of its own, ``MODEL_STORE/.NAME.*.building`` (0700), holding the
builder's pid, start time and host. A folder whose owner is gone (a killed build) is
removed by the next build into that store; SIGTERM and SIGHUP unwind like Ctrl-C so a
build that is asked to stop removes its own.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml


BUILDING_SUFFIX = ".building"
OWNER_FILE = "owner.pid"  # "PID START HOST": the building process, when it started, where
YOUNG_SECONDS = 60  # a folder without an owner file this young may be starting up


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _young(folder: Path) -> bool:
    try:
        return time.time() - folder.stat().st_mtime < YOUNG_SECONDS
    except FileNotFoundError:
        return False


def _owner_alive(folder: Path) -> bool:
    try:
        pid_text, start, host = ((folder / OWNER_FILE).read_text().split() + ["", ""])[:3]
        pid = int(pid_text)
    except (FileNotFoundError, ValueError):
        # No owner file yet (its builder is starting), or one empty or unreadable (written by
        # an older builder, or cut short by a crash): judged by the folder's age alone.
        return _young(folder)
    except OSError:
        return False
    if host and host != socket.gethostname():  # a store shared with another machine or container:
        return True  # its pids mean nothing here, so never judge its builds
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    now = _process_start(pid)
    return not (start != "-" and now and now != start)  # else the pid now names another process


def remove_stale_builds(store: Path) -> list[Path]:
    """Delete the ``.NAME.*.building`` folders whose builder is gone (killed, crashed)."""
    removed = []
    for folder in sorted(store.glob(f".*{BUILDING_SUFFIX}")):
        if folder.is_dir() and not folder.is_symlink() and not _owner_alive(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            print(f"removed {folder}, left by an interrupted build", flush=True)
    return removed


def make_build_dir(store: Path, name: str) -> Path:
    """This build's private folder in the store (0700, like every mkdtemp), owner recorded.

    The owner file is written under another name and renamed into place, so a concurrent
    build's remove_stale_builds sees no owner file (a young folder: kept) or the whole of it,
    never a part.
    """
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=BUILDING_SUFFIX, dir=store))
    pid = os.getpid()
    partial = work / f".{OWNER_FILE}.partial"
    partial.write_text(f"{pid} {_process_start(pid) or '-'} {socket.gethostname()}\n")
    os.replace(partial, work / OWNER_FILE)
    return work


def _die_with_parent_hook() -> Any:
    """For the archiver's child process: be killed when the builder dies, even by SIGKILL,
    so no orphan keeps writing into a folder a later build is removing (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded here, not after fork
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def archive(name: str, staged: Path, config: dict[str, Any], store: Path, version: str, force: bool,
            handler: Path, work: Path | None = None, file_name: str | None = None) -> Path:
    """Run torch-model-archiver inside ``work`` (a private build folder in the store), then
    rename the archive into the store (as ``file_name``, default NAME.mar)."""
    target = store / (file_name or f"{name}.mar")
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; pass --force to replace it")
    if work is None:
        with build_dir(store, name) as own:
            return archive(name, staged, config, store, version, force, handler, own, file_name)
    out = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=work))
    tmp = out / "tmp"
    tmp.mkdir(mode=0o700)
    config_file = out / "model-config.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [
        sys.executable, "-m", "model_archiver.model_packaging",
        "--model-name", name, "--version", version,
        "--handler", str(handler), "--extra-files", str(staged),
        "--config-file", str(config_file), "--export-path", str(out), "--force",
    ]
    # The archiver deletes and refills tempfile.gettempdir()/<name>: a private TMPDIR keeps a
    # concurrent build of the same name out of it, and the weights out of a shared /tmp.
    env = {**os.environ, "TMPDIR": str(tmp), "TEMP": str(tmp), "TMP": str(tmp)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, preexec_fn=_die_with_parent_hook())
    if result.returncode != 0:
        raise RuntimeError(f"torch-model-archiver failed for {name}:\n{result.stderr or result.stdout}")
    (out / f"{name}.mar").replace(target)
    shutil.rmtree(out, ignore_errors=True)
    return target


class build_dir:  # noqa: N801 - used as a context manager, like tempfile.TemporaryDirectory
    """A private build folder in the store, removed on leaving, however the build ends."""

    def __init__(self, store: Path, name: str) -> None:
        self.path = make_build_dir(store, name)

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signum)
