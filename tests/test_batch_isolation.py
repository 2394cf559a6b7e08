"""One hostile request inside a real TorchServe batch: it gets its own 4xx, its neighbours 200.

The archive here batches up to 8 requests and waits 200 ms to fill a batch, so each hostile
body is sent at the same moment as seven good ones; the handler's own counters prove they
shared one batch, and the worker's pid proves nothing was restarted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
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
    assert len(text.encode()) < 2000  # a refusal never echoes the body
    for i, (code, text) in enumerate(results[1:]):
        assert code == 200, (i, text[:300])
        assert json.loads(text)["id"] == i
        assert len(text.encode()) < 2000
    assert worker_pid(batched) == pid


def test_requests_past_the_batch_cost_are_told_to_retry(batched, tiny_run: Path) -> None:
    """Each request fits the cap alone; together they do not: the first to fit get 200, the rest 429."""
    from handlers.cascade import Cascade

    per_event = Cascade(tiny_run).passes(3)
    events = max(1, 60 // per_event)
    cost = events * per_event
    bodies = [json.dumps([{"title": f"marathon {r}.{e}", "id": r, "top_k": 3} for e in range(events)]).encode()
              for r in range(8)]
    results = in_one_batch(batched, NAME, bodies)
    answered = [r for r, (code, _) in enumerate(results) if code == 200]
    assert len(answered) == 200 // cost, [(code, text[:200]) for code, text in results]
    for r, (code, text) in enumerate(results):
        if r in answered:
            assert [a["id"] for a in json.loads(text)] == [r] * events
        else:
            assert code == 429, text[:300]
            assert (f"the server's batch is full ({200 // cost * cost} of 200 model passes taken by other requests; "
                    f"this one needs {cost}): retry shortly") in json.loads(text)["message"]


# Each text's character repeated to the run's max_chars: NFKD expanders, a combining-mark flood,
# invisible direction and zero-width marks, and the plain texts that cost the most at that length.
HOSTILE_TEXT = ["\ufdfa", "\ufdfa ", "\u3300", "\ufb03", "a" + "\u0301" * 40, "\u202e\u200b\u200d\u2067ab",
                "\uac01 "]
PLAIN_WORST = ["ab-", "!", "\u4e00"]  # n-grams, tokens, tokens again (tests/test_parsing_fuzz.py)


def test_hostile_unicode_costs_a_batch_no_more_than_the_worst_plain_text(batched, tiny_run: Path) -> None:
    """The bound comes from the cap: the same batch of the costliest plain texts of max_chars
    characters, timed on the same worker, in turns; the hostile one may take twice as long."""
    from handlers.cascade import Cascade

    cascade = Cascade(tiny_run)
    max_chars = cascade.hierarchy.text.max_chars
    events = 200 // (8 * cascade.passes(1))  # 8 requests of as many events as the batch's cost cap allows

    def batch(units: list[str]) -> list[bytes]:
        texts = [(units[i % len(units)] * max_chars)[:max_chars] for i in range(8 * events)]
        return [json.dumps([{"text": t, "top_k": 1} for t in texts[r * events:(r + 1) * events]],
                           ensure_ascii=False).encode() for r in range(8)]

    def seconds(bodies: list[bytes]) -> float:
        started = time.perf_counter()
        results = in_one_batch(batched, NAME, bodies)
        elapsed = time.perf_counter() - started
        assert [code for code, _ in results] == [200] * 8, [text[:200] for _, text in results]
        return elapsed

    pid = worker_pid(batched)
    plain, hostile = batch(PLAIN_WORST), batch(HOSTILE_TEXT)
    times = {"plain": [], "hostile": []}
    for _ in range(2):
        times["plain"].append(seconds(plain))
        times["hostile"].append(seconds(hostile))
    print(f"8 requests of {events} events of {max_chars} characters: {times}")
    assert min(times["hostile"]) <= 2 * min(times["plain"]), times
    assert worker_pid(batched) == pid
