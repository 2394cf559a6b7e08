"""One hostile request inside a real TorchServe batch: it gets its own 4xx, its neighbours 200.

The archive here batches up to 8 requests and waits 200 ms to fill a batch, so each hostile
body is sent at the same moment as seven good ones; the handler's own counters prove they
shared one batch, and the worker's pid proves nothing was restarted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
NAME = "events-b8"
JSON = "application/json"

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
        [sys.executable, str(ROOT / "scripts" / "build_archives.py"), "--run", str(tiny_run), "--name", NAME,
         "--model-store", str(model_store), "--batch-size", "8", "--max-batch-delay", "200", "--threads", "1",
         "--max-batch-cost", "200", "--force"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    code, body = server.call("management", "POST", f"/models?url={NAME}.mar&synchronous=true", timeout=600)
    assert code == 200, body
    yield server
    server.call("management", "DELETE", f"/models/{NAME}")


def worker_pid(server) -> int:
    code, body = server.call("management", "GET", f"/models/{NAME}")
    (worker,) = json.loads(body)[0]["workers"]
    assert worker["status"] == "READY"
    return worker["pid"]


def counter(server, name: str) -> float:
    _, text = server._http("GET", server.address("metrics") + "/metrics", None, {})
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and f'ModelName="{NAME}"' in line)


def send_together(server, bodies: list[bytes]) -> list[tuple[int, str]]:
    """All bodies at once from their own threads (released together by a barrier)."""
    key = server.key("inference")
    url = server.address("inference") + f"/predictions/{NAME}"
    results: list[tuple[int, str]] = [(0, "")] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def send(i: int) -> None:
        barrier.wait()
        results[i] = server._http("POST", url, bodies[i], {"Content-Type": JSON, "Authorization": f"Bearer {key}"})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_request_fails_alone_in_its_batch(batched, case: str) -> None:
    body, status, message = HOSTILE[case]
    pid = worker_pid(batched)
    good = [json.dumps({"title": f"saxophone trio {i}", "id": i}).encode() for i in range(7)]
    for _ in range(3):  # until the eight requests land in one batch (they nearly always do at once)
        batches, requests = counter(batched, "HandlerBatches"), counter(batched, "HandlerRequests")
        results = send_together(batched, [body, *good])
        if counter(batched, "HandlerBatches") - batches == 1 and counter(batched, "HandlerRequests") - requests == 8:
            break
    else:
        pytest.fail("the eight requests never shared one batch")
    code, text = results[0]
    assert code == status, text[:300]
    assert message in json.loads(text)["message"]
    for i, (code, text) in enumerate(results[1:]):
        assert code == 200, text[:300]
        assert json.loads(text)["id"] == i
    assert len(text.encode()) < 2000
    assert worker_pid(batched) == pid
