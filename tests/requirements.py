"""What a test needs from outside the core install: skipped locally, a failure under CI=true.

README promises that CI runs everything; there a missing extra, browser or tool must fail
with the command that installs it, not skip silently.
"""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType

import pytest

EXTRAS = "scripts/setup.sh --extras (requirements-extras.txt)"
# KServe's model server has an environment of its own: its tests run with .venv-kserve/bin/python.
KSERVE = "scripts/setup.sh --kserve (requirements-kserve.txt), then .venv-kserve/bin/python -m pytest"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str, install: str) -> None:
    """Fail under CI=true, skip elsewhere; works at module level and inside tests (``what`` ends in is/are)."""
    if in_ci():
        pytest.fail(f"{what} required in CI: {install}", pytrace=False)
    pytest.skip(f"{what} missing ({install})", allow_module_level=True)


def need(module: str, install: str = EXTRAS) -> ModuleType:
    """Import ``module``, or skip (fail under CI=true) naming the install command."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing(f"the Python module {module} is", install)
        raise  # not reached: missing() raises


def need_program(*names: str, install: str) -> list[str]:
    """Paths of the programs, or skip (fail under CI=true) naming the install command."""
    paths = [shutil.which(name) for name in names]
    if not all(paths):
        absent = [n for n, p in zip(names, paths) if not p]
        missing(" and ".join(absent) + (" are" if len(absent) > 1 else " is"), install)
    return paths  # type: ignore[return-value]
