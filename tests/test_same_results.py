"""A run trained now, with the tiny session run's flags and seed, decides, scores and answers
exactly as the recorded run did (tests/same_results.py says what is compared and how the
record was made): reorganising the code must not change what training produces or what
its archive serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.same_results import RECORD, ROOT


def test_training_and_serving_give_the_recorded_results(tmp_path: Path) -> None:
    out = tmp_path / "found.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "tests.same_results", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(out.read_text())
    recorded = json.loads(RECORD.read_text())
    for part in ("hierarchy", "run_files", "archive_files", "metrics", "answers", "served"):
        assert found[part] == recorded[part], part
