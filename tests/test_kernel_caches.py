"""The bound on bf16's per-shape kernel caches (handlers/kernel_caches.py): in force where a
worker starts, and what it bounds, measured in a fresh process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from handlers import kernel_caches
from handlers.precision import bf16_is_native
from serving.ts_client import Server

ROOT = Path(__file__).resolve().parent.parent


def test_every_launcher_gives_the_same_capacities(tmp_path: Path) -> None:
    entrypoint = (ROOT / "deploy" / "docker" / "entrypoint.sh").read_text()
    for name, value in kernel_caches.CACHE_ENV.items():
        assert re.search(rf'\b{name}="\${{{name}:-{value}}}"', entrypoint), name
    env = Server(serve_dir=tmp_path / "serve").env()
    assert {name: env[name] for name in kernel_caches.CACHE_ENV} == kernel_caches.CACHE_ENV


def test_a_value_already_set_wins() -> None:
    environ = {"LRU_CACHE_CAPACITY": "7"}
    assert kernel_caches.apply(environ) == {**kernel_caches.CACHE_ENV, "LRU_CACHE_CAPACITY": "7"}


PROBE = """
import json, torch
from handlers.precision import autocast, bf16_linears
from benchmarks.memory_growth import heap_mb
torch.set_num_threads(1)
model = bf16_linears(torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 256)))
heap = {}
with torch.inference_mode(), autocast("bf16", torch.device("cpu")):
    for rows in range(1, 401):  # 400 shapes, each new
        model(torch.randn(rows, 64))
        if rows in (200, 400):
            heap[rows] = heap_mb()["heap_in_use_mb"]
print(json.dumps(heap))
"""


@pytest.mark.skipif(not bf16_is_native(), reason="the cascade runs bf16 only on CPUs with native bf16")
def test_new_shapes_stop_costing_memory_once_the_caches_are_full() -> None:
    """Unbounded, each new shape keeps about 1.2 MB here (two weights' kernels in two caches):
    about 250 MB over the last 200 shapes. Bounded, the caches are full long before."""
    env = {k: v for k, v in os.environ.items() if k not in kernel_caches.CACHE_ENV}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT,
                            env={**env, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    heap = json.loads(result.stdout.strip().splitlines()[-1])
    assert heap["400"] - heap["200"] < 40, heap  # MB of glibc heap in use
