"""A batch of the costliest request bodies in a real TorchServe worker: its memory stays bounded.

The archive keeps the default layout's batch of 32 (handlers/settings.py) and waits 2 s to fill
it, so the 32 bodies below reach one worker together. Each is as large as both the server
(max_request_size) and the handler (max_body_chars) accept, and made of 900-deep empty arrays:
the body shape that costs json.loads the most memory per byte (benchmarks/request_memory.py).
The worker's peak resident set (VmHWM, reset before the batch) may grow by at most the bound
docs/security.md states.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from handlers.settings import LAYOUTS, HandlerSettings
from serving.ts_config import read_properties
from tests.live_server import in_one_batch, register

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
NAME = "events-mem"
BOUND_MIB = 160  # docs/security.md, "Bounded memory before the handler"


@pytest.fixture(scope="module")
def default_batches(server, tiny_run: Path, model_store: Path):
    built = subprocess.run(
        [sys.executable, "-m", "archives.build", "--run", str(tiny_run), "--name", NAME,
         "--model-store", str(model_store), "--max-batch-delay", "2000", "--threads", "1", "--force"],
        capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    code, body = register(server, f"{NAME}.mar", fresh=True)
    assert code == 200, body
    yield server
    server.call("management", "DELETE", f"/models/{NAME}")


def worker(server) -> psutil.Process:
    code, body = server.call("management", "GET", f"/models/{NAME}")
    (described,) = json.loads(body)[0]["workers"]
    assert described["status"] == "READY"
    return psutil.Process(described["pid"])


def peak_mib(process: psutil.Process) -> float:
    status = Path(f"/proc/{process.pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def test_a_batch_of_the_costliest_bodies_stays_under_the_stated_bound(default_batches) -> None:
    size = min(int(read_properties(ROOT / "config.properties")["max_request_size"]), HandlerSettings().max_body_chars)
    item = b"[" * 900 + b"]" * 900
    body = b"[" + b",".join([item] * ((size - 2) // (len(item) + 1))) + b"]"
    assert size - len(item) < len(body) <= size
    process = worker(default_batches)
    in_one_batch(default_batches, NAME, [json.dumps({"title": "warm up"}).encode()] * 2)
    Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # VmHWM from here on
    before = peak_mib(process)
    results = in_one_batch(default_batches, NAME, [body] * LAYOUTS["fp32"].batch_size)
    growth = peak_mib(process) - before
    print(f"{LAYOUTS['fp32'].batch_size} bodies of {len(body)} bytes in one batch: the worker's peak grew {growth:.0f} MiB")
    assert all(code == 400 and "the limit is" in json.loads(text)["message"] for code, text in results), results[0]
    assert growth < BOUND_MIB
    assert worker(default_batches).pid == process.pid
