"""What a server outside TorchServe serves: a run directory, a built .mar, or KServe's storage layout.

A run directory is served as it is, with the default settings and batching (handlers/settings.py).
An archive is unpacked once, at start, into a private folder removed on exit, and keeps the
settings and batching its model-config.yaml was built with. KServe's storage layout
(archives/kserve.py: config/, model-store/NAME.mar, what KServe mounts at /mnt/models) serves
its one archive.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import yaml

from handlers.run_layout import HIERARCHY_FILE
from handlers.settings import LAYOUTS, HandlerSettings


class SourceError(ValueError):
    """A path that is neither a run directory, an archive nor a KServe layout."""


@dataclass(frozen=True)
class ModelSource:
    model_dir: Path  # the folder the cascade loads
    settings: HandlerSettings
    batch_size: int
    max_batch_delay_ms: int
    origin: str  # what was given: "run directory", "archive NAME.mar"


@contextlib.contextmanager
def open_source(path: str | Path) -> Iterator[ModelSource]:
    """The model folder and its settings; an archive's unpacked copy lives as long as the context."""
    path = Path(path)
    if path.is_dir() and (path / HIERARCHY_FILE).is_file():
        fp32 = LAYOUTS["fp32"]
        yield ModelSource(path, HandlerSettings(), fp32.batch_size, fp32.max_batch_delay_ms, "run directory")
        return
    mar = _archive_in(path)
    work = Path(tempfile.mkdtemp(prefix="served-archive-"))
    try:
        with zipfile.ZipFile(mar) as zf:
            zf.extractall(work)  # zipfile drops absolute paths and '..' components
        config = yaml.safe_load((work / "model-config.yaml").read_text()) if (work / "model-config.yaml").is_file() else {}
        config = config or {}
        fp32 = LAYOUTS["fp32"]
        yield ModelSource(work, HandlerSettings.from_mapping(config.get("handler")),
                          int(config.get("batchSize", fp32.batch_size)),
                          int(config.get("maxBatchDelay", fp32.max_batch_delay_ms)), f"archive {mar.name}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _archive_in(path: Path) -> Path:
    if path.is_file() and path.suffix == ".mar":
        return path
    if path.is_dir() and (path / "model-store").is_dir():
        archives = sorted((path / "model-store").glob("*.mar"))
        if len(archives) == 1:
            return archives[0]
        raise SourceError(f"{path / 'model-store'} holds {len(archives)} archives; serve one: "
                          f"{', '.join(a.name for a in archives) or 'none found'}")
    raise SourceError(f"{path} is not a run directory (no {HIERARCHY_FILE}), a .mar archive "
                      "or KServe's storage layout (model-store/NAME.mar)")
