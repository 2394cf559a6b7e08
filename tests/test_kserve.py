"""KServe's TorchServe runtime, for real: the storage layout, both protocols, the same answers.

TorchServe is started from the layout written by scripts/build.sh --kserve-layout exactly
as the runtime container starts it (torchserve --start --model-store=... --ts-config=...,
TS_SERVICE_ENVELOPE=kserve or kservev2). The only change is in a copy of the layout's
config: its five listeners are moved to free loopback ports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest


from archives import kserve
from serving import tsctl
from serving.replicas import Replica  # noqa: E402

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
EVENTS = [{"title": "saxophone trio", "description": "late night swing", "top_k": 2},
          {"title": "marathon runners", "description": "city road race"},
          {"text": "house music till dawn in the club"}]


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path, model_store: Path) -> Path:
    out = tmp_path_factory.mktemp("kserve") / "layout"
    # events.mar is already in the session's model store: the layout reuses that archive.
    result = subprocess.run([sys.executable, "-m", "archives.build", "--run", str(tiny_run),
                             "--name", "events", "--model-store", str(model_store), "--kserve-layout", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "using the archive already built" in result.stdout
    return out


def test_layout_is_what_the_runtime_reads(layout: Path, model_store: Path) -> None:
    assert sorted(str(p.relative_to(layout)) for p in layout.rglob("*") if p.is_file()) == [
        "config/config.properties", "model-store/events.mar"]
    assert (layout / "model-store" / "events.mar").read_bytes() == (model_store / "events.mar").read_bytes()
    props = tsctl.read_properties(layout / "config" / "config.properties")
    assert props["enable_envvars_config"] == "true" and props["disable_token_authorization"] == "true"
    assert props["enable_model_api"] == "false" and props["model_store"] == "/mnt/models/model-store"
    assert props["inference_address"] == "http://0.0.0.0:8085"
    assert props["management_address"].startswith("http://127.0.0.1:")
    assert "service_envelope" not in props  # the runtime sets TS_SERVICE_ENVELOPE
    snapshot = json.loads(props["model_snapshot"])
    version = snapshot["models"]["events"]["1.0"]
    assert snapshot["modelCount"] == 1 and version["marName"] == "events.mar" and version["defaultVersion"]
    assert version["batchSize"] == 1  # the KServe envelopes read only the first request of a batch
    assert kserve.KSERVE_ARGS == ["torchserve", "--start", "--model-store=/mnt/models/model-store",
                                          "--ts-config=/mnt/models/config/config.properties"]


def call(url: str, body: object) -> tuple[int, object]:
    code, text = tsctl.Server._http("POST", url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        return code, json.loads(text)
    except ValueError:
        return code, text


@pytest.fixture(scope="module")
def answers(layout: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Each envelope's server in turn (2 cores: one at a time), its answers to EVENTS."""
    found: dict[str, object] = {}
    for envelope in (None, "kserve", "kservev2"):
        replica = Replica(layout, tmp_path_factory.mktemp(f"ts-{envelope or 'plain'}"), envelope)
        try:
            replica.start()
            url = replica.url
            if envelope is None:
                found["plain"] = [call(f"{url}/predictions/events", e) for e in EVENTS]
                found["plain_array"] = call(f"{url}/predictions/events", EVENTS)
                found["no_key"] = tsctl.Server._http("GET", url + "/ping", None, {})
                found["register"] = tsctl.Server._http(
                    "POST", replica.server.address("management") + "/models?url=events.mar", None, {})
                found["describe"] = json.loads(tsctl.Server._http(
                    "GET", replica.server.address("management") + "/models/events", None, {})[1])
            elif envelope == "kserve":
                found["v1_each"] = [call(f"{url}/v1/models/events:predict", {"instances": [{"data": e}]})
                                    for e in EVENTS]
                found["v1_array"] = call(f"{url}/v1/models/events:predict", {"instances": [{"data": EVENTS}]})
                found["v1_many"] = call(f"{url}/v1/models/events:predict",
                                        {"instances": [{"data": e} for e in EVENTS]})
                with ThreadPoolExecutor(6) as pool:  # concurrent requests, each must get its own answer
                    found["v1_concurrent"] = list(pool.map(
                        lambda e: call(f"{url}/v1/models/events:predict", {"instances": [{"data": e}]}), EVENTS * 4))
            else:
                found["v2"] = call(f"{url}/v2/models/events/infer", {"id": "req-1", "inputs": [
                    {"name": "events", "shape": [1], "datatype": "BYTES", "data": [json.dumps(EVENTS)]}]})
                found["v2_many"] = call(f"{url}/v2/models/events/infer", {"inputs": [
                    {"name": f"event{i}", "shape": [1], "datatype": "BYTES", "data": [json.dumps(e)]}
                    for i, e in enumerate(EVENTS)]})
                with ThreadPoolExecutor(6) as pool:
                    found["v2_concurrent"] = list(pool.map(lambda e: call(f"{url}/v2/models/events/infer", {
                        "inputs": [{"name": "event", "shape": [1], "datatype": "BYTES", "data": [json.dumps(e)]}]}),
                        EVENTS * 4))
        finally:
            replica.stop()
    return found


def test_plain_protocol_and_cluster_config(answers) -> None:
    assert all(code == 200 for code, _ in answers["plain"])
    assert answers["plain_array"][0] == 200
    assert [a for _, a in answers["plain"]] == answers["plain_array"][1]
    assert answers["no_key"][0] == 200  # token authorization off in the cluster config
    assert answers["register"][0] == 405  # and no registering through the management API
    describe = answers["describe"][0]
    assert describe["batchSize"] == 1 and describe["minWorkers"] == 1 and describe["workers"][0]["status"] == "READY"


def test_kserve_v1_answers_equal_predictions(answers) -> None:
    plain = [a for _, a in answers["plain"]]
    for (code, answer), expected in zip(answers["v1_each"], plain):
        assert code == 200 and list(answer) == ["predictions"] and len(answer["predictions"]) == 1
        # The handler's answer is JSON text; the envelope carries it as one prediction.
        assert json.loads(answer["predictions"][0]) == expected
    code, answer = answers["v1_array"]  # several events in one request: one instance, an array
    assert code == 200 and json.loads(answer["predictions"][0]) == plain


def test_kserve_v2_answers_equal_predictions(answers) -> None:
    plain = [a for _, a in answers["plain"]]
    code, answer = answers["v2"]
    assert code == 200
    assert answer["id"] == "req-1" and answer["model_name"] == "events" and answer["model_version"] == "1.0"
    (output,) = answer["outputs"]
    assert output["name"] == "events" and output["datatype"] == "BYTES" and output["shape"] == [1]
    assert json.loads(output["data"][0]) == plain


def test_concurrent_requests_each_get_their_own_answer(answers) -> None:
    """The envelopes read only the first request of a batch; batchSize 1 keeps every request alone."""
    plain = [a for _, a in answers["plain"]] * 4
    v1 = [(code, json.loads(a["predictions"][0])) for code, a in answers["v1_concurrent"]]
    v2 = [(code, json.loads(a["outputs"][0]["data"][0])) for code, a in answers["v2_concurrent"]]
    assert v1 == [(200, a) for a in plain]
    assert v2 == [(200, a) for a in plain]


def test_several_instances_or_inputs_in_one_request(answers) -> None:
    """Several instances (v1) or inputs (v2) reach the handler as items of one TorchServe request."""
    plain = [a for _, a in answers["plain"]]
    code, answer = answers["v1_many"]
    assert code == 200 and [json.loads(p) for p in answer["predictions"]] == plain
    code, answer = answers["v2_many"]
    assert code == 200 and [json.loads(o["data"][0]) for o in answer["outputs"]] == plain
