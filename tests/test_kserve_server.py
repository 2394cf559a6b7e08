"""The KServe server for real: scripts/serve.sh start --server kserve on loopback, real HTTP.

One server for the module, serving a built archive (batches of 8, 100 ms to fill one, at
most 200 model passes per batch, as tests/test_batch_isolation.py's TorchServe archive).
tritonclient's HTTP and gRPC clients, which no one here wrote, call every health and metadata
function and infer; their answers equal training.evaluate's. The fuzz corpus of
tests/test_robustness.py and the hostile requests of tests/test_batch_isolation.py run
against it too, imported from those files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.requirements import KSERVE, need

need("kserve", KSERVE)
need("tritonclient.http", KSERVE)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tritonclient.http as triton  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402

from handlers.cascade import Cascade  # noqa: E402
from serving.ts_client import Server  # noqa: E402
from serving.ts_config import free_ports  # noqa: E402
from serving.ts_process import wait_for_exit  # noqa: E402
from tests.live_server import in_one_batch  # noqa: E402
from tests.test_batch_isolation import HOSTILE  # noqa: E402
from tests.test_robustness import CORPUS, bodies, check  # noqa: E402
from tests.tiny import tiny_events  # noqa: E402
from table.scoring import evaluate_frame  # noqa: E402

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
NAME = "events"


class Live:
    """The running server, shaped as the TorchServe helpers (tests/live_server.py) expect it."""

    _http = staticmethod(Server._http)

    def __init__(self, url: str, grpc: str, serve_dir: Path) -> None:
        self.url, self.grpc, self.serve_dir = url, grpc, serve_dir

    def address(self, api: str) -> str:
        return self.url  # inference, metrics: one port

    def key(self, kind: str) -> str:
        return "unused"  # no token on this server: loopback only (README, When to pick which server)

    def call(self, api: str, method: str, path: str, data: bytes | None = None,
             headers: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str]:
        return self._http(method, self.url + path, data, headers or {}, timeout)

    def pid(self) -> int:
        return json.loads((self.serve_dir / "kserve.json").read_text())["pid"]


def serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "scripts" / "serve.sh"), *args], capture_output=True, text=True,
                          env=env, timeout=400)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path):
    store = tmp_path_factory.mktemp("kserve-store")
    built = subprocess.run(
        [sys.executable, "-m", "archives.build", "--run", str(tiny_run), "--name", NAME, "--model-store", str(store),
         "--batch-size", "8", "--max-batch-delay", "100", "--threads", "1", "--max-batch-cost", "200"],
        capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    serve_dir = tmp_path_factory.mktemp("kserve-serve")
    env = {**os.environ, "SERVE_DIR": str(serve_dir)}
    port, grpc_port = free_ports(2)
    started = serve("start", "--server", "kserve", "--run", str(store / f"{NAME}.mar"), "--name", NAME,
                    "--port", str(port), "--grpc-port", str(grpc_port), env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    server = Live(f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", serve_dir)
    pid = server.pid()
    try:
        yield server
        assert server.pid() == pid and serve("status", "--server", "kserve", env=env).returncode == 0
    finally:
        stopped = serve("stop", env=env)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert wait_for_exit(pid, 1)  # stop waited for the process; no orphan is left
        assert not (serve_dir / "kserve.json").exists()


@pytest.fixture(scope="module")
def client(live: Live):
    c = triton.InferenceServerClient(url=live.url.removeprefix("http://"))
    yield c
    c.close()


def test_every_listener_is_on_loopback(live: Live) -> None:
    import psutil

    listening = [c.laddr for c in psutil.Process(live.pid()).connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert {port for _, port in listening} == {int(live.url.rsplit(":", 1)[1]), int(live.grpc.rsplit(":", 1)[1])}
    assert all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for ip, _ in listening), listening


def test_tritonclient_health_and_metadata(client) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["name"] == "kserve"
    assert client.is_model_ready(NAME)
    metadata = client.get_model_metadata(NAME)
    assert metadata["name"] == NAME
    assert metadata["inputs"] == [{"name": "events", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"] == [{"name": "answers", "datatype": "BYTES", "shape": [-1]}]
    assert not client.is_model_ready("no-such-model")


@pytest.mark.parametrize("binary", [True, False], ids=["binary tensors", "JSON tensors"])
def test_tritonclient_infer_equals_training_evaluate(client, tiny_run: Path, binary: bool) -> None:
    rows = tiny_events(rows_per_class=2, seed=7)
    frame = pd.DataFrame(rows)
    expected = evaluate_frame(Cascade(tiny_run), frame).answers
    events = [json.dumps({"title": r["title"], "description": r["description"], "top_k": 1}) for r in rows]
    tensor = triton.InferInput("events", [len(events)], "BYTES")
    tensor.set_data_from_numpy(np.array([e.encode() for e in events], dtype=np.object_), binary_data=binary)
    result = client.infer(NAME, [tensor], outputs=[triton.InferRequestedOutput("answers", binary_data=binary)])
    answers = [json.loads(a) for a in result.as_numpy("answers")]
    assert answers == expected


# tritonclient.grpc and kserve register the same protobuf names: the gRPC client runs in a process of its own.
GRPC_CLIENT = """
import json, sys
import numpy as np
import tritonclient.grpc as triton
address, name, events = sys.argv[1], sys.argv[2], json.loads(sys.stdin.read())
client = triton.InferenceServerClient(address)
out = {"health": [client.is_server_live(), client.is_server_ready(), client.is_model_ready(name)],
       "metadata": client.get_model_metadata(name, as_json=True)}
tensor = triton.InferInput("events", [len(events)], "BYTES")
tensor.set_data_from_numpy(np.array([e.encode() for e in events], dtype=np.object_))
out["answers"] = [json.loads(a) for a in client.infer(name, [tensor]).as_numpy("answers")]
tensor = triton.InferInput("events", [1], "BYTES")
tensor.set_data_from_numpy(np.array([b'{"title": 7}'], dtype=np.object_))
try:
    client.infer(name, [tensor])
except triton.InferenceServerException as exc:
    out["refused"] = [str(exc.status()), exc.message()]
print(json.dumps(out))
"""


def test_tritonclient_over_grpc(live: Live, tiny_run: Path) -> None:
    rows = tiny_events(rows_per_class=2, seed=11)
    expected = evaluate_frame(Cascade(tiny_run), pd.DataFrame(rows)).answers
    events = [json.dumps({"title": r["title"], "description": r["description"], "top_k": 1}) for r in rows]
    result = subprocess.run([sys.executable, "-c", GRPC_CLIENT, live.grpc, NAME], input=json.dumps(events),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert out["health"] == [True, True, True]
    assert [(t["name"], t["datatype"]) for t in out["metadata"]["inputs"] + out["metadata"]["outputs"]] == [
        ("events", "BYTES"), ("answers", "BYTES")]
    assert out["answers"] == expected
    assert out["refused"][0] == "StatusCode.INVALID_ARGUMENT"
    assert "element 0: field 'title' must be a string" in out["refused"][1]


def test_tritonclient_sees_a_refusal_with_its_message(client) -> None:
    tensor = triton.InferInput("events", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b'{"title": 7}'], dtype=np.object_))
    with pytest.raises(triton.InferenceServerException, match="element 0: field 'title' must be a string"):
        client.infer(NAME, [tensor])


def test_v1_routes(live: Live, tiny_run: Path) -> None:
    code, body = live.call("inference", "GET", f"/v1/models/{NAME}")
    assert code == 200 and json.loads(body) == {"name": NAME, "ready": True}
    events = [{"title": "saxophone trio", "description": "late night swing"}, "marathon runners"]
    code, body = live.call("inference", "POST", f"/v1/models/{NAME}:predict", json.dumps({"instances": events}).encode(),
                           {"Content-Type": "application/json"})
    assert code == 200, body
    expected = Cascade(tiny_run).predict([events[0], {"text": events[1]}], top_k=3)
    assert [a["path"] for a in json.loads(body)["predictions"]] == [e["path"] for e in expected]
    code, body = live.call("inference", "POST", f"/v1/models/{NAME}:predict",
                           json.dumps({"instances": [{"text": "a", "top_k": 10}] * 64}).encode(),
                           {"Content-Type": "application/json"})
    answer = json.loads(body)
    assert code == 413 and "(max_batch_cost)" in answer["message"] and answer["error"] == answer["message"]


def test_predictions_as_torchserve_answers(live: Live, tiny_run: Path) -> None:
    event = {"title": "saxophone trio", "description": "late night swing", "id": 12, "top_k": 2}
    code, body = live.call("inference", "POST", f"/predictions/{NAME}", json.dumps(event).encode(),
                           {"Content-Type": "application/json"})
    assert code == 200, body
    answer, expected = json.loads(body), Cascade(tiny_run).predict([event], top_k=2)[0]
    assert answer["id"] == 12 and answer["path"] == expected["path"] and len(answer["top_k"]) == 2
    code, body = live.call("inference", "POST", f"/predictions/{NAME}", b"jazz quartet tonight", {"Content-Type": "text/plain"})
    assert code == 200 and len(json.loads(body)["path"]) == 2
    code, body = live.call("inference", "POST", "/predictions/nothing", b"{}", {"Content-Type": "application/json"})
    assert code == 404
    assert live.call("inference", "GET", "/ping") == (200, '{"status":"Healthy"}')


@pytest.mark.parametrize("declared", [True, False], ids=["Content-Length", "chunked"])
def test_a_body_over_max_request_size_is_a_413_before_the_handler(live: Live, declared: bool) -> None:
    import http.client

    body = b"x" * (1_048_576 + 1)
    host, port = live.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    if declared:
        connection.request("POST", f"/predictions/{NAME}", body, {"Content-Type": "text/plain"})
    else:
        connection.request("POST", f"/predictions/{NAME}", iter([body[:500_000], body[500_000:]]),
                           {"Content-Type": "text/plain"}, encode_chunked=True)
    response = connection.getresponse()
    answer = json.loads(response.read())
    assert response.status == 413 and "over the limit of 1048576 bytes" in answer["message"]
    connection.close()


# -- the fuzz corpus and the batch-isolation cases, from their own files --------------------------
@pytest.mark.parametrize("index", range(len(CORPUS)))
def test_fixed_corpus(live: Live, index: int) -> None:
    check(live, *CORPUS[index])


@settings(max_examples=180, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(bodies)
def test_generated_bodies(live: Live, case: tuple[bytes, str]) -> None:
    check(live, *case)


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_request_fails_alone_in_its_batch(live: Live, case: str) -> None:
    body, status, message = HOSTILE[case]
    pid = live.pid()
    good = [json.dumps({"title": f"saxophone trio {i}", "id": i}).encode() for i in range(7)]
    results = in_one_batch(live, NAME, [body, *good])
    code, text = results[0]
    assert code == status, text[:300]
    assert message in json.loads(text)["message"]
    for i, (code, text) in enumerate(results[1:]):
        assert code == 200, text[:300]
        assert json.loads(text)["id"] == i
    assert live.pid() == pid
