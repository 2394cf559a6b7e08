"""The load and fault script on a tiny model (slow: CI runs it; locally add -m "slow or not slow").

The only coverage of worker SIGKILL recovery, memory growth and heavy-input starvation, at
a reduced but real size: 1,100 requests (memory is sampled at 1,000 and at the end), a kill
under 400 requests, 20 s of heavy input.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent


def test_soak_script_reports_every_check(tiny_run: Path, events_csv: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "benchmarks.soak", "--run", str(tiny_run), "--data",
                             str(events_csv), "--requests", "1100", "--kill-requests", "400", "--slow-seconds", "20",
                             "--output", str(tmp_path)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "soak-tiny.json").read_text())
    assert report["load"]["errors"] == 0 and report["load"]["worker_restarts"] == 0
    assert report["load"]["requests"] == 1100 and report["load"]["rss_mb_at_1000"] > 0
    assert report["kill"]["new_worker_pid"] and report["restart"]["model_back"]
    assert report["kill"]["seconds_to_first_200_after_kill"] < 120  # recovered with nobody acting
    assert report["kill"]["requests"] == 400
    assert report["token"]["answered"] and report["token"]["key_regenerated"]
    assert report["slow"]["normal_errors"] == 0 and report["slow"]["normal_requests"] > 0
    assert report["slow"]["heavy_requests"] > 0
