"""The load and fault script on a tiny model (slow: CI runs it; locally add -m "slow or not slow").

The only coverage of worker SIGKILL recovery, memory growth and heavy-input starvation, at
a reduced but real size: 6,000 requests of events of 1 to 44 words (so batches come in
hundreds of shapes, as real traffic does), the worker's RSS sampled every 500, a kill under
400 requests, 20 s of heavy input.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny import COMMON, VOCAB, write_csv

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
# RSS growth from request 3,000 to 6,000, in percent: a bf16 worker's kernels for every new row count
# must stop growing it (handlers/precision.py row_bucket, handlers/kernel_caches.py). Measured on
# 2 cores: 2.2% with the rounding; 4.3% and 4.9% with it removed, and once under 4%.
MAX_GROWTH_PCT = 3.0


def varied_events(path: Path, n: int = 600, seed: int = 0) -> Path:
    """Events of 1 to 44 words, from the tiny model's vocabulary."""
    rng = random.Random(seed)
    words = COMMON + [w for subs in VOCAB.values() for ws in subs.values() for w in ws]
    rows = [{"title": " ".join(rng.choices(words, k=rng.randint(1, 4))),
             "description": " ".join(rng.choices(words, k=rng.randint(0, 40))),
             "taxonomy": "music", "subtaxonomy": "jazz"} for _ in range(n)]
    return write_csv(path, rows)


def test_soak_script_reports_every_check(tiny_run: Path, tmp_path: Path) -> None:
    data = varied_events(tmp_path / "varied.csv")
    # Caches far larger than the kernels any traffic needs: the growth bound then holds only if
    # the rows' rounding keeps the kernels few (handlers/precision.py row_bucket).
    env = {**os.environ, "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "100000", "LRU_CACHE_CAPACITY": "100000"}
    result = subprocess.run([sys.executable, "-m", "benchmarks.soak", "--run", str(tiny_run), "--data", str(data),
                             "--requests", "6000", "--warmup", "3000", "--rss-every", "500",
                             "--kill-requests", "400", "--slow-seconds", "20", "--output", str(tmp_path)],
                            capture_output=True, text=True, timeout=1200, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "soak-tiny.json").read_text())
    load = report["load"]
    assert load["errors"] == 0 and load["worker_restarts"] == 0 and load["requests"] == 6000
    marks = [n for n, _ in load["rss_mb"]]
    assert marks == list(range(0, 6001, 500)), marks  # a sample every 500 requests
    assert load["warmup_requests"] == 3000
    assert load["rss_growth_pct"] < MAX_GROWTH_PCT, (load["rss_growth_pct"], load["rss_mb"])
    assert (tmp_path / "soak-tiny-rss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["kill"]["new_worker_pid"] and report["restart"]["model_back"]
    assert report["kill"]["seconds_to_first_200_after_kill"] < 120  # recovered with nobody acting
    assert report["kill"]["requests"] == 400
    assert report["token"]["answered"] and report["token"]["key_regenerated"]
    assert report["slow"]["normal_errors"] == 0 and report["slow"]["normal_requests"] > 0
    assert report["slow"]["heavy_requests"] > 0
