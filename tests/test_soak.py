"""The load and fault script on a tiny model (slow: run with -m slow, not in CI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent


def test_soak_script_reports_every_check(tiny_run: Path, events_csv: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "soak.py"), "--run", str(tiny_run), "--data",
                             str(events_csv), "--requests", "1100", "--output", str(tmp_path)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "soak-tiny.json").read_text())
    assert report["load"]["errors"] == 0 and report["load"]["worker_restarts"] == 0
    assert report["kill"]["new_worker_pid"] and report["restart"]["model_back"]
    assert report["token"]["answered"] and report["token"]["key_regenerated"]
    assert report["slow"]["normal_errors"] == 0
