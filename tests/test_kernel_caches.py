"""bf16's per-shape kernel caches: their capacities in force where a worker starts
(handlers/kernel_caches.py), a Linear's rows rounded to a few counts so that traffic stops
bringing new shapes (handlers/precision.py), and what that bounds, measured in a fresh process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from handlers import kernel_caches
from handlers.precision import autocast, bf16_is_native, bf16_linears, row_bucket
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
def test_new_row_counts_stop_costing_memory() -> None:
    """Each row count a bf16 Linear meets keeps a compiled kernel in two caches (about 1.2 MB
    here for two weights): 200 new row counts cost about 250 MB. Rounded to 8 counts per
    doubling, rows 201-400 fall in about 10 counts: the heap stays nearly flat."""
    env = {k: v for k, v in os.environ.items() if k not in kernel_caches.CACHE_ENV}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT,
                            env={**env, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    heap = json.loads(result.stdout.strip().splitlines()[-1])
    assert heap["400"] - heap["200"] < 40, heap  # MB of glibc heap in use


def test_row_buckets_are_few_and_waste_at_most_an_eighth() -> None:
    buckets = {row_bucket(rows) for rows in range(1, 4097)}
    assert len(buckets) == 8 + 8 * 9  # exact to 8, then 8 per doubling up to 4,096
    for rows in range(1, 4097):
        assert rows <= row_bucket(rows) <= rows * 9 / 8


def test_a_bucketed_linear_gives_every_row_what_it_gave_alone() -> None:
    torch.manual_seed(0)
    plain = torch.nn.Linear(48, 20)
    bucketed = bf16_linears(torch.nn.Sequential(torch.nn.Linear(48, 20)))[0]
    bucketed.load_state_dict({k: v.to(torch.bfloat16) for k, v in plain.state_dict().items()})
    x = torch.randn(3, 37, 48)  # 111 rows: run as 112
    with torch.inference_mode(), autocast("bf16", torch.device("cpu")):
        got = bucketed(x)
        want = torch.nn.functional.linear(x, bucketed.weight, bucketed.bias)
    assert row_bucket(111) == 112 and got.shape == (3, 37, 20)
    assert torch.allclose(got.float(), want.float(), atol=1e-2, rtol=1e-2)
