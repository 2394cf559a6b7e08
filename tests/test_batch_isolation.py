"""One hostile request inside a real TorchServe batch: it gets its own 4xx, its neighbours 200.

The archive here batches up to 8 requests and waits 200 ms to fill a batch, so each hostile
body is sent at the same moment as seven good ones; the handler's own counters prove they
shared one batch, and the worker's pid proves nothing was restarted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live_server import in_one_batch, register

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
NAME = "events-b8"

HOSTILE = {
    "echo blow-up": (json.dumps({"title": "jazz", "id": "\u00e9" * 400_000}, ensure_ascii=False).encode(), 400,
                     "'id' has 400000 characters"),
    "huge integer": (b'{"title": "jazz", "top_k": 1' + b"1" * 5000 + b"}", 400, "unusable JSON"),
    "deep top_k": (b'{"title": "jazz", "top_k": ' + b"[" * 900 + b"]" * 900 + b"}", 400, "'top_k' must be"),
    "lone surrogate": (b'{"title": "\\ud800 jazz"}', 400, "unpaired UTF-16 surrogate"),
    "too costly": (json.dumps([{"text": "marathon", "top_k": 10}] * 64).encode(), 413,
                   "over the limit of 200 per batch"),
    "malformed": (b'{"title": ', 400, "malformed JSON"),
}


@pytest.fixture(scope="module")
def batched(server, tiny_run: Path, model_store: Path):
    """events-b8.mar: batches of 8, 200 ms to fill one, at most 200 model passes per batch."""
    built = subprocess.run(
        [sys.executable, "-m", "archives.build", "--run", str(tiny_run), "--name", NAME,
         "--model-store", str(model_store), "--batch-size", "8", "--max-batch-delay", "200", "--threads", "1",
         "--max-batch-cost", "200", "--force"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    code, body = register(server, f"{NAME}.mar", fresh=True)
    assert code == 200, body
    yield server
    server.call("management", "DELETE", f"/models/{NAME}")


def worker_pid(server) -> int:
    code, body = server.call("management", "GET", f"/models/{NAME}")
    (worker,) = json.loads(body)[0]["workers"]
    assert worker["status"] == "READY"
    return worker["pid"]


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_request_fails_alone_in_its_batch(batched, case: str) -> None:
    body, status, message = HOSTILE[case]
    pid = worker_pid(batched)
    good = [json.dumps({"title": f"saxophone trio {i}", "id": i}).encode() for i in range(7)]
    results = in_one_batch(batched, NAME, [body, *good])  # they nearly always do at the first try
    code, text = results[0]
    assert code == status, text[:300]
    assert message in json.loads(text)["message"]
    for i, (code, text) in enumerate(results[1:]):
        assert code == 200, text[:300]
        assert json.loads(text)["id"] == i
    assert len(text.encode()) < 2000
    assert worker_pid(batched) == pid
