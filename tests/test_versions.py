"""Model versions on one TorchServe: a second version beside the first, set-default,
/predictions/NAME/VERSION, rolling back, restore keeping every version, and
``manage.sh register --workers N`` taking effect over the archive's minWorkers.

The model is registered under its own name (``ev``) so the other modules' ``events``
is left alone, and everything registered or built here is removed at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live_server import script

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


def top_k_len(server, path: str) -> int:
    """Paths in the answer: 1 from the version built with --top-k 1; from the default top_k 3, at
    least the two subtaxonomies of music (more when another taxonomy is likely enough)."""
    code, body = server.call("inference", "POST", path, json.dumps({"title": "saxophone trio"}).encode(),
                             {"Content-Type": "application/json"})
    assert code == 200, body
    return len(json.loads(body)["top_k"])


def describe(name: str, version: str = "all") -> list[dict]:
    result = script("manage.sh", "describe", name, version)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_versions_set_default_rollback_and_restore(server, tiny_run: Path, model_store: Path) -> None:
    v2 = model_store / "events-2.0.mar"
    try:
        # Version 2.0 of the same run, answering one path by default instead of three.
        built = subprocess.run([sys.executable, "-m", "archives.build", "--run", str(tiny_run),
                                "--name", "events", "--model-store", str(model_store), "--version", "2.0",
                                "--versioned", "--top-k", "1", "--threads", "1", "--workers", "2"],
                               capture_output=True, text=True, timeout=600)
        assert built.returncode == 0, built.stderr
        assert v2.is_file()

        # The archive says minWorkers 1; --workers 2 must win.
        result = script("manage.sh", "register", "events.mar", "--name", "ev", "--workers", "2")
        assert result.returncode == 0, result.stderr
        (first,) = describe("ev", "1.0")
        assert first["minWorkers"] == 2 and len(first["workers"]) == 2
        result = script("manage.sh", "register", "events-2.0.mar", "--name", "ev")  # the archive's 2 workers
        assert result.returncode == 0, result.stderr
        versions = {m["modelVersion"]: m for m in describe("ev")}
        assert sorted(versions) == ["1.0", "2.0"] and len(versions["2.0"]["workers"]) == 2

        assert top_k_len(server, "/predictions/ev") > 1  # the first version registered stays the default
        assert top_k_len(server, "/predictions/ev/1.0") > 1
        assert top_k_len(server, "/predictions/ev/2.0") == 1
        answer = script("predict.sh", "ev", "-", "--version", "2.0", stdin='{"title": "marathon"}')
        assert answer.returncode == 0 and len(json.loads(answer.stdout)["top_k"]) == 1

        assert script("manage.sh", "set-default", "ev", "2.0").returncode == 0  # roll out
        assert top_k_len(server, "/predictions/ev") == 1
        assert script("manage.sh", "set-default", "ev", "1.0").returncode == 0  # roll back
        assert top_k_len(server, "/predictions/ev") > 1
        assert script("manage.sh", "set-default", "ev", "2.0").returncode == 0

        # A restart registers every version again, with its workers and the same default.
        assert script("serve.sh", "stop").returncode == 0
        started = script("serve.sh", "start")
        assert started.returncode == 0, started.stderr
        assert "model ev (events.mar, 2 worker(s)) restored as version 1.0" in started.stdout
        assert "model ev (events-2.0.mar, 2 worker(s)) restored as version 2.0" in started.stdout
        versions = {m["modelVersion"]: m for m in describe("ev")}
        assert sorted(versions) == ["1.0", "2.0"] and len(versions["1.0"]["workers"]) == 2
        assert top_k_len(server, "/predictions/ev") == 1  # 2.0 is still the default
    finally:
        for version in ("1.0", "2.0"):  # the non-default one first: TorchServe keeps a default to the last
            script("manage.sh", "unregister", "ev", version)
        script("manage.sh", "unregister", "ev", "1.0")
        script("manage.sh", "unregister", "ev", "2.0")
        v2.unlink(missing_ok=True)
    assert '"ev"' not in script("manage.sh", "list").stdout
