"""The KServe server's image, built and run for real: scripts/image.sh build --server kserve, then run.

The same layout, wheel cache, base image and checks as tests/test_image.py (its helpers), on
the image whose entrypoint starts KServe's Python model server (serving/kserve_server.py)
instead of TorchServe: no Java and no TorchServe in it, on the same port 8085, so
`scripts/image.sh run --tag TAG` runs it unchanged. It answers /predictions, KServe v1 and
the Open Inference Protocol v2 (plain HTTP with v2's JSON shapes) as the cascade does in
process, its own health and metadata routes, and it drains on SIGTERM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from serving.container import ROOT, Container
from tests.protocol_calls import call, metric, v1
from tests.test_deploy import pins
from tests.test_image import (assert_non_root_and_read_only, assert_three_protocols_answer_like_the_cascade,
                              build_image, running, sigterm_during_requests)

TAG = "localhost/event-taxonomy-kserve:test"



def image_test(test):
    """tests/test_image.py's marks on a test that builds or runs the image (the pin check needs none)."""
    for mark in (pytest.mark.slow, pytest.mark.image, pytest.mark.e2e):
        test = mark(test)
    return test


def test_the_serve_set_is_pinned_as_the_kserve_environment() -> None:
    """requirements-kserve-serve.txt: .venv-kserve's versions (requirements.txt, with
    requirements-kserve.txt's pins over it), the server and no TorchServe, no training stack."""
    serve = pins(ROOT / "requirements-kserve-serve.txt")
    environment = {**pins(ROOT / "requirements.txt"), **pins(ROOT / "requirements-kserve.txt")}
    assert serve.items() <= environment.items()
    assert {"kserve", "fastapi", "prometheus-client", "torch", "transformers", "scipy", "pyyaml"} <= serve.keys()
    assert not {"torchserve", "torch-model-archiver", "datasets", "pyarrow", "scikit-learn", "matplotlib",
                "accelerate", "onnx", "tritonclient"} & serve.keys()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, model_store: Path) -> str:
    return build_image(tmp_path_factory, model_store, TAG, "--server", "kserve")


@pytest.fixture(scope="module")
def container(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    yield from running(image, tmp_path_factory)


@image_test
def test_non_root_read_only_and_no_torchserve(container: Container) -> None:
    assert_non_root_and_read_only(container)
    assert container.exec("printenv", "SERVER").stdout.strip() == "kserve"
    for absent in ("java", "torchserve"):
        assert container.exec("sh", "-c", f"command -v {absent}").returncode != 0, f"{absent} is in the image"
    assert container.exec("python3", "-c", "import ts").returncode != 0, "TorchServe's package is in the image"
    # deploy/kserve/inferenceservice-kserve-server.yaml's command, from any working directory.
    usage = container.exec("python", "-m", "serving.kserve_server", "--help")
    assert usage.returncode == 0 and "--model-dir" in usage.stdout, usage.stderr


@image_test
def test_three_protocols_answer_like_the_cascade(container: Container, tiny_run: Path) -> None:
    assert_three_protocols_answer_like_the_cascade(container, tiny_run, output="answers")  # its metadata's name
    code, answer = v1(container.url, "events", [1] * 8000)  # refused as the TorchServe image refuses it
    assert code == 413 and "the limit is 64 events per request" in answer["message"]


@image_test
def test_v2_health_and_metadata(container: Container) -> None:
    url = container.url
    assert call(f"{url}/v2/health/live") == (200, {"live": True})
    assert call(f"{url}/v2/health/ready") == (200, {"ready": True})
    assert call(f"{url}/v2/models/events/ready") == (200, {"name": "events", "ready": True})
    code, server = call(f"{url}/v2")
    assert code == 200 and server["name"] == "kserve" and server["version"]
    code, model = call(f"{url}/v2/models/events")
    assert code == 200 and model["name"] == "events"
    assert model["inputs"] == [{"name": "events", "datatype": "BYTES", "shape": [-1]}]
    assert model["outputs"] == [{"name": "answers", "datatype": "BYTES", "shape": [-1]}]
    code, absent = call(f"{url}/v2/models/nosuch/ready")
    assert code == 404, absent
    assert call(f"{url}/v1/models/events") == (200, {"name": "events", "ready": True})
    assert call(f"{url}/ping") == (200, {"status": "Healthy"})
    for mode in ("live", "ready"):
        probe = container.exec("healthcheck.py", mode)
        assert probe.returncode == 0, probe.stdout + probe.stderr
    assert metric(url, "HandlerRequests") > 0


@image_test
def test_sigterm_answers_the_requests_in_flight_then_exits(container: Container) -> None:
    """SIGTERM once the model is at work on the 48 requests: every one is answered 200, exit 0."""
    batches, requests = metric(container.url, "HandlerBatches"), metric(container.url, "HandlerRequests")

    def unanswered() -> float | None:
        if metric(container.url, "HandlerBatches") == batches:
            return None
        return 48 - (metric(container.url, "HandlerRequests") - requests)

    sigterm_during_requests(container, unanswered)
