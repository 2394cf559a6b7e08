"""Build folders in a model store: which ones a concurrent build's clean-up removes, and when."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from archives import staging
from archives.staging import BUILDING_SUFFIX, OWNER_FILE, YOUNG_SECONDS, make_build_dir, remove_stale_builds


def build_folder(store: Path, label: str, owner: str | None, age: float = 0) -> Path:
    """A build folder as a builder leaves it: ``owner`` is the owner file's text (None: no file)."""
    folder = store / f".m.{label}{BUILDING_SUFFIX}"
    folder.mkdir(mode=0o700)
    if owner is not None:
        (folder / OWNER_FILE).write_text(owner)
    if age:
        os.utime(folder, (time.time() - age, time.time() - age))
    return folder


def test_a_concurrent_clean_up_never_removes_a_build_folder_being_created(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Another build's remove_stale_builds runs at each step of make_build_dir: after the folder
    exists but before its owner file is written, and just before the owner file appears."""
    removed: list[list[Path]] = []
    start = staging._process_start

    def clean_then_start(pid: int) -> str | None:  # runs between mkdtemp and the owner file
        removed.append(remove_stale_builds(tmp_path))
        return start(pid)

    replace = os.replace
    owners: list[str] = []

    def clean_then_replace(src: os.PathLike, dst: os.PathLike) -> None:
        if Path(dst).name == OWNER_FILE:
            owners.append(Path(src).read_text())
            removed.append(remove_stale_builds(tmp_path))
        replace(src, dst)

    monkeypatch.setattr(staging, "_process_start", clean_then_start)
    monkeypatch.setattr(staging.os, "replace", clean_then_replace)
    work = make_build_dir(tmp_path, "m")
    # The owner file came into place by a rename, whole: a reader never sees part of it.
    assert len(owners) == 1, "the owner file was written in place, not renamed into it"
    assert owners[0].split()[0] == str(os.getpid())
    assert removed == [[], []], "a clean-up removed the folder being created"
    assert sorted(p.name for p in work.iterdir()) == [OWNER_FILE]
    assert (work / OWNER_FILE).read_text() == owners[0]


def test_a_young_folder_without_a_readable_owner_is_kept_and_an_old_one_removed(tmp_path: Path) -> None:
    exited = subprocess.Popen(["true"])
    exited.wait()  # its pid names no process now
    here = socket.gethostname()
    kept = [build_folder(tmp_path, "no-owner-yet", None),
            build_folder(tmp_path, "owner-being-written", ""),
            build_folder(tmp_path, "owner-alive", f"{os.getpid()} - {here}", age=10 * YOUNG_SECONDS)]
    removed = [build_folder(tmp_path, "no-owner-old", None, age=2 * YOUNG_SECONDS),
               build_folder(tmp_path, "empty-owner-old", "", age=2 * YOUNG_SECONDS),
               build_folder(tmp_path, "owner-gone", f"{exited.pid} - {here}")]
    assert sorted(remove_stale_builds(tmp_path)) == sorted(removed)
    assert all(folder.is_dir() for folder in kept) and not any(folder.exists() for folder in removed)
