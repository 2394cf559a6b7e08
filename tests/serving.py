"""Helpers for the tests that talk to a real TorchServe."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def script(name: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run one of scripts/*.sh as a user would (the server fixture has set TS_CONFIG and SERVE_DIR)."""
    return subprocess.run([str(ROOT / "scripts" / name), *args], input=stdin, capture_output=True, text=True,
                          timeout=600)
