"""The per-batch cost cap under the worst load, at the speed of a full-size model on long text.

A run directory with full-size DistilBERT checkpoints (the embedded base's shape: 6 layers,
width 384; random weights, since only the cost matters) and texts of 128 tokens; the
archive uses the builder's defaults. 32 clients each send the most expensive request
allowed (64 events, top_k 10) at once: without the cap that batch would need minutes, past
the 60 s response timeout, and TorchServe would restart the worker and fail all 32.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from handlers.abstention import Abstention
from handlers.hierarchy import Hierarchy

from handlers.run_layout import TOKENIZER_DIR
from handlers.settings import HandlerSettings
from tests.live_server import register

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
NAME = "fullsize"


def full_size_run(tiny_run: Path, dest: Path) -> Path:
    """The tiny run's hierarchy and tokenizer with full-size random checkpoints and 128 tokens."""
    from dataclasses import replace

    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification

    hierarchy = Hierarchy.load(tiny_run)
    # Whole checkpoints, no trunk: every pass costs a full 6-layer model, the most a run can cost.
    # Random full-size models: the tiny run's scope model (32 wide) does not fit them, so no abstention.
    hierarchy = replace(hierarchy, text=replace(hierarchy.text, max_length=128), trunk=None, abstention=Abstention())
    dest.mkdir(parents=True)
    hierarchy.save(dest)
    shutil.copytree(tiny_run / TOKENIZER_DIR, dest / TOKENIZER_DIR)
    for folder in hierarchy.data_folders():
        shutil.copytree(tiny_run / folder, dest / folder)
    vocab = len(AutoTokenizer.from_pretrained(str(tiny_run / TOKENIZER_DIR)))
    levels = [hierarchy.taxonomy, *hierarchy.subtaxonomies.values()]
    for level in levels:
        if level.checkpoint is None:
            continue
        config = DistilBertConfig(vocab_size=vocab, dim=384, n_layers=6, n_heads=12, hidden_dim=1536,
                                  id2label=dict(enumerate(level.labels)))
        DistilBertForSequenceClassification(config).save_pretrained(dest / level.checkpoint)
    return dest


def test_32_maximum_cost_requests_at_once_never_restart_the_worker(server, tiny_run: Path, model_store: Path,
                                                                     tmp_path: Path) -> None:
    run = full_size_run(tiny_run, tmp_path / "run")
    built = subprocess.run([sys.executable, "-m", "archives.build", "--run", str(run),
                            "--name", NAME, "--model-store", str(model_store), "--force"],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    code, body = register(server, f"{NAME}.mar", fresh=True)
    assert code == 200, body
    try:
        code, body = server.call("management", "GET", f"/models/{NAME}")
        (worker,) = json.loads(body)[0]["workers"]
        limits = HandlerSettings()
        text = " ".join(["saxophone trio swing bebop marathon runners track"] * 30)  # over 128 tokens
        request = json.dumps([{"text": text, "top_k": limits.max_top_k}] * limits.max_items).encode()
        key = server.key("inference")
        url = server.address("inference") + f"/predictions/{NAME}"
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=32) as pool:
            results = list(pool.map(
                lambda _: server._http("POST", url, request, {"Content-Type": "application/json",
                                                             "Authorization": f"Bearer {key}"}, timeout=300),
                range(32)))
        seconds = time.perf_counter() - started
        codes = [c for c, _ in results]
        print(f"32 maximum-cost requests: {codes.count(200)} answered, {codes.count(429)} told to retry, "
              f"in {seconds:.1f} s")
        assert set(codes) <= {200, 429}, [(c, b[:200]) for c, b in results if c not in (200, 429)]
        assert codes.count(200) >= 1
        refused = [json.loads(b)["message"] for c, b in results if c == 429]
        assert all("model passes" in m and "retry shortly" in m for m in refused)
        code, body = server.call("management", "GET", f"/models/{NAME}")
        (after,) = json.loads(body)[0]["workers"]
        assert after["pid"] == worker["pid"] and after["status"] == "READY"
    finally:
        server.call("management", "DELETE", f"/models/{NAME}")
