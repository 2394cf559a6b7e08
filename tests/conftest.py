"""Shared fixtures: a tiny trained run, its archive, and a real TorchServe around it.

The run is trained once per session from a tiny random DistilBERT (tests/tiny.py) with
the real training entry point, so every later test works on a genuine run directory.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from serving.ts_client import Server
from serving.ts_config import config_on_free_ports
from tests.live_server import SESSION, register
from tests.tiny import make_tiny_base, tiny_events, write_csv

ROOT = Path(__file__).resolve().parent.parent

# KServe's model server has an environment of its own, .venv-kserve (requirements-kserve.txt
# says why): these tests are collected there and every other test in .venv. scripts/test.sh
# runs pytest in both.
KSERVE_ENV_TESTS = {"test_kserve_predictor.py", "test_kserve_server.py"}


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    in_kserve_env = importlib.util.find_spec("kserve") is not None
    return True if (collection_path.name in KSERVE_ENV_TESTS) != in_kserve_env else None

# Tests run on 2-core CI machines; keep every torch in this process to its share.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


# The tiny session run's training flags (tests/same_results.py trains the same run).
TINY_RUN_FLAGS = ["--epochs", "10", "--patience", "4", "--path-warmup-epochs", "5", "--subtaxonomy-epochs", "10",
                  "--subtaxonomy-learning-rate", "1e-2", "--learning-rate", "1e-2", "--batch-size", "8",
                  "--max-length", "32", "--quiet", "--threads", "2", "--top-layers", "1"]


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_base(tmp_path_factory.mktemp("base") / "tiny-distilbert")


@pytest.fixture(scope="session")
def events_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "events.csv", tiny_events(rows_per_class=14))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, events_csv: Path) -> Path:
    from training.train import main

    out = tmp_path_factory.mktemp("runs") / "tiny"
    code = main(["--data", str(events_csv), "--output", str(out), "--base-model", str(tiny_base), *TINY_RUN_FLAGS])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Path:
    store = tmp_path_factory.mktemp("model_store")
    result = subprocess.run(
        [sys.executable, "-m", "archives.build", "--run", str(tiny_run), "--name", "events",
         "--model-store", str(store), "--per-level", "--batch-size", "8", "--max-batch-delay", "50",
         "--threads", "1"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    return store


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, model_store: Path):
    """A real TorchServe with the project's config.properties on free loopback ports.

    Scripts reach it through tests.live_server.SESSION (their own environment), never through
    this process's os.environ.
    """
    base = tmp_path_factory.mktemp("torchserve")
    config = config_on_free_ports(ROOT / "config.properties", base / "config.properties")
    SESSION.vars = {"TS_CONFIG": str(config), "SERVE_DIR": str(base / "serve"), "MODEL_STORE": str(model_store)}
    srv = Server(config, base / "serve", model_store)
    started = subprocess.run([str(ROOT / "scripts" / "serve.sh"), "start"], capture_output=True, text=True,
                             env=SESSION(), timeout=300)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield srv
    finally:
        subprocess.run([str(ROOT / "scripts" / "serve.sh"), "stop"], env=SESSION(), timeout=120)
        SESSION.vars = {}


@pytest.fixture(scope="module")
def registered(server):
    """The server with events.mar registered afresh (one worker) for this test module."""
    code, body = register(server, "events.mar", fresh=True)
    assert code == 200, body
    return server
