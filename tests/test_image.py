"""The serving image, built and run for real: scripts/image.sh build, then run on loopback.

The image is built from the session's tiny archive with podman (docker where a daemon
answers), from the serve-only wheelhouse, on the Dockerfile's pinned base or, where no
registry answers, on a Debian bookworm base made here with mmdebstrap. The wheelhouse and
the base are cached (IMAGE_CACHE, the engine's own image store), so a second run rebuilds
only the layers after the layout. The container runs as `scripts/image.sh run` starts it:
non-root, read-only root filesystem, a tmpfs at /tmp, published on 127.0.0.1 only.
tests/test_image_kserve.py runs the same checks (the helpers below) on the KServe server's image.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import pytest

from archives import kserve
from serving.container import IMAGE_SH, Container, engine
from tests.protocol_calls import EVENTS, assert_same, call, in_process, metric, v1, v2, v2_answers
from tests.requirements import missing

pytestmark = [pytest.mark.slow, pytest.mark.image, pytest.mark.e2e]
TAG = "localhost/event-taxonomy:test"

if not (shutil.which("podman") or shutil.which("docker")):
    missing("podman (or docker) is", "apt-get install podman runc mmdebstrap")


def build_image(tmp_path_factory: pytest.TempPathFactory, model_store: Path, tag: str, *args: str) -> str:
    """scripts/image.sh build ARGS on the tiny archive's layout; the tag."""
    layout = kserve.write_kserve_layout(model_store / "events.mar", tmp_path_factory.mktemp("image") / "layout")
    started = time.monotonic()
    built = subprocess.run([str(IMAGE_SH), "build", *args, "--layout", str(layout), "--tag", tag],
                           capture_output=True, text=True, timeout=1500)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    print(f"\nimage built in {time.monotonic() - started:.0f} s: {built.stdout.strip().splitlines()[-1]}")
    return tag


def running(tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    """The image run as scripts/image.sh runs it, once ready; removed afterwards."""
    started = Container(tag, tmp_path_factory.mktemp("container") / "run.log")
    try:
        started.wait_ready()  # RuntimeError with the container's log if it exits or never answers
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, model_store: Path) -> str:
    return build_image(tmp_path_factory, model_store, TAG)


@pytest.fixture(scope="module")
def container(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    yield from running(image, tmp_path_factory)


def assert_non_root_and_read_only(container: Container) -> None:
    assert container.exec("id", "-u").stdout.strip() == "1000"
    denied = container.exec("touch", "/opt/venv/written")
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    assert container.exec("touch", "/tmp/serve/written").returncode == 0  # the tmpfs
    inspect = subprocess.run([*engine(), "inspect", container.name], capture_output=True, text=True, timeout=60)
    (state,) = json.loads(inspect.stdout)
    assert state["HostConfig"]["ReadonlyRootfs"] is True
    ports = state["HostConfig"]["PortBindings"]
    assert {b["HostIp"] for bindings in ports.values() for b in bindings} == {"127.0.0.1"}


def test_non_root_and_read_only(container: Container) -> None:
    assert_non_root_and_read_only(container)


def assert_three_protocols_answer_like_the_cascade(container: Container, tiny_run: Path,
                                                 output: str = "events") -> None:
    """/predictions, KServe v1 and v2 (its answers in the tensor named ``output``) equal the cascade."""
    expected = in_process(tiny_run, EVENTS)
    plain = [call(f"{container.url}/predictions/events", e) for e in EVENTS]
    assert [code for code, _ in plain] == [200] * 3
    assert_same([a for _, a in plain], expected)
    code, answer = v1(container.url, "events", EVENTS)
    assert code == 200
    assert_same(answer["predictions"], expected)
    code, answer = v2(container.url, "events", {"events": EVENTS}, request_id="r1")
    assert code == 200 and answer["id"] == "r1" and answer["model_name"] == "events"
    assert_same(v2_answers(answer)[output], expected)


def test_three_protocols_answer_like_the_cascade(container: Container, tiny_run: Path) -> None:
    assert_three_protocols_answer_like_the_cascade(container, tiny_run)
    code, answer = v1(container.url, "events", [1] * 8000)
    assert code == 413 and "the limit is 64 events per request" in answer["message"]


def test_health_and_metrics_answer(container: Container) -> None:
    assert call(container.url + "/ping") == (200, {"status": "Healthy"})
    for mode in ("live", "ready"):
        probe = container.exec("healthcheck.py", mode)
        assert probe.returncode == 0, probe.stdout + probe.stderr
    assert metric(container.metrics, "ts_inference_requests_total") > 0


def sigterm_during_requests(container: Container, unanswered: Callable[[], float | None]) -> None:
    """48 requests, then SIGTERM once ``unanswered()`` (None: not all taken yet) says how many the
    server holds unanswered; every one must be answered 200 and the container must exit 0."""
    # 48 requests of 16 events: a few seconds of work, in batches inside max_batch_cost.
    body = [{"title": f"jazz night {i}", "description": "late swing " * 30, "top_k": 1} for i in range(16)]
    with ThreadPoolExecutor(48) as pool:
        futures = [pool.submit(call, f"{container.url}/predictions/events", body) for _ in range(48)]
        deadline = time.monotonic() + 60
        while (in_flight := unanswered()) is None:
            assert time.monotonic() < deadline, "the requests did not reach the server"
            time.sleep(0.05)
        container.signal("TERM")
        codes = [f.result()[0] for f in futures]
    assert in_flight > 1, "all answered before SIGTERM: the test proves nothing"
    assert codes == [200] * 48
    assert container.process.wait(timeout=120) == 0


def test_sigterm_answers_the_requests_in_flight_then_exits(container: Container) -> None:
    """SIGTERM while requests are queued: every one is answered 200, then the container exits 0."""
    taken = metric(container.metrics, "ts_inference_requests_total")

    def unanswered() -> float | None:
        if metric(container.metrics, "ts_inference_requests_total") < taken + 48:
            return None
        return metric(container.metrics, "ts_inference_requests_total") - metric(container.metrics, "HandlerRequests")

    sigterm_during_requests(container, unanswered)
    assert "requests taken, all answered" in container.log.read_text()
