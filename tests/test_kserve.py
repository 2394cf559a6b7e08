"""KServe's protocols on a real TorchServe started from the cluster layout, as the image runs it.

TorchServe is started from the layout written by scripts/build.sh --kserve-layout exactly
as the project's ServingRuntime starts it (torchserve --start --model-store=...
--ts-config=...). The only change is in a copy of the layout's config: its five listeners
are moved to free loopback ports. One server answers /predictions, KServe v1 and Open
Inference Protocol v2; the handler unwraps both KServe protocols (handlers/protocols.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from archives import kserve
from serving.ts_client import Server
from serving.ts_config import read_properties
from serving.replica import Replica
from tests.protocol_calls import EVENTS, assert_same, call, in_process, metric, v1, v2, v2_answers

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
LIMIT = 64  # HandlerSettings.max_items: events per request


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
    props = read_properties(layout / "config" / "config.properties")
    assert props["enable_envvars_config"] == "false" and props["disable_token_authorization"] == "true"
    assert props["enable_model_api"] == "false" and props["model_store"] == "/mnt/models/model-store"
    assert props["inference_address"] == "http://0.0.0.0:8085"
    assert props["management_address"] == "http://127.0.0.1:8086"  # clear of 8080/8081
    assert "service_envelope" not in props  # the handler reads KServe bodies itself
    assert props["decode_input_request"] == "false"  # from bytes, one request at a time
    snapshot = json.loads(props["model_snapshot"])
    version = snapshot["models"]["events"]["1.0"]
    assert snapshot["modelCount"] == 1 and version["marName"] == "events.mar" and version["defaultVersion"]
    assert version["batchSize"] == 8 and version["maxBatchDelay"] == 50  # the archive's (tests/conftest.py)
    assert kserve.KSERVE_ARGS == ["torchserve", "--start", "--model-store=/mnt/models/model-store",
                                  "--ts-config=/mnt/models/config/config.properties"]


def worker_pid(replica: Replica) -> int:
    code, body = call(replica.server.address("management") + "/models/events")
    assert code == 200
    return body[0]["workers"][0]["pid"]


@pytest.fixture(scope="module")
def answers(layout: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One server from the layout, every protocol's answers (2 cores: one server)."""
    found: dict[str, object] = {}
    many = [{"title": f"jazz quartet {i}", "description": "swing night"} if i % 2 else {"text": f"road race {i}"}
            for i in range(LIMIT)]
    found["many_events"] = many
    replica = Replica(layout, tmp_path_factory.mktemp("ts-kserve"))
    try:
        replica.start()
        url, metrics = replica.url, replica.server.address("metrics")
        found["plain"] = [call(f"{url}/predictions/events", e) for e in EVENTS]
        found["plain_array"] = call(f"{url}/predictions/events", EVENTS)
        found["no_key"] = Server._http("GET", url + "/ping", None, {})
        found["register"] = Server._http(
            "POST", replica.server.address("management") + "/models?url=events.mar", None, {})
        found["describe"] = call(replica.server.address("management") + "/models/events")[1]
        found["v1_each"] = [v1(url, "events", [e]) for e in EVENTS]
        found["v1_data"] = [v1(url, "events", [{"data": e}]) for e in EVENTS]
        found["v1_data_array"] = v1(url, "events", [{"data": EVENTS}])
        found["v1_many"] = v1(url, "events", many)
        found["v2"] = v2(url, "events", {"events": [EVENTS]}, request_id="req-1")
        found["v2_many"] = v2(url, "events", {"first": many[:40], "second": many[40:]})
        pid = worker_pid(replica)
        found["v1_over"] = v1(url, "events", many + [{"text": "one too many"}])
        found["v1_ones"] = v1(url, "events", [1] * 8000)  # 16 KB: once 500 "Worker died"
        found["v2_over"] = v2(url, "events", {"a": many, "b": [{"text": "one too many"}]})
        found["v1_bad_instance"] = v1(url, "events", [EVENTS[0], {"title": 3}])
        found["after_over"] = v1(url, "events", [EVENTS[1]])
        found["pid_kept"] = (pid, worker_pid(replica))
        # Concurrent KServe requests, each its own: batched together like /predictions.
        batches, requests = metric(metrics, "HandlerBatches"), metric(metrics, "HandlerRequests")
        with ThreadPoolExecutor(12) as pool:
            found["v1_concurrent"] = list(pool.map(lambda e: v1(url, "events", [e]), EVENTS * 8))
            found["v2_concurrent"] = list(pool.map(lambda e: v2(url, "events", {"e": [e]}), EVENTS * 8))
        found["batching"] = (metric(metrics, "HandlerBatches") - batches, metric(metrics, "HandlerRequests") - requests)
    finally:
        replica.stop()
    return found


@pytest.fixture(scope="module")
def expected(tiny_run: Path, answers) -> dict[str, list]:
    return {"events": in_process(tiny_run, EVENTS), "many": in_process(tiny_run, answers["many_events"])}


def test_plain_protocol_and_cluster_config(answers, expected) -> None:
    assert [code for code, _ in answers["plain"]] == [200] * 3
    assert_same([a for _, a in answers["plain"]], expected["events"])
    assert answers["plain_array"][0] == 200 and answers["plain_array"][1] == [a for _, a in answers["plain"]]
    assert answers["no_key"][0] == 200  # token authorization off in the cluster config
    assert answers["register"][0] == 405  # and no registering through the management API
    describe = answers["describe"][0]
    assert describe["batchSize"] == 8 and describe["minWorkers"] == 1 and describe["workers"][0]["status"] == "READY"


def test_kserve_v1_predictions_are_objects_equal_to_the_cascade(answers, expected) -> None:
    for key in ("v1_each", "v1_data"):  # {"instances": [EVENT]} and {"instances": [{"data": EVENT}]}
        for (code, answer), want in zip(answers[key], expected["events"]):
            assert code == 200 and list(answer) == ["predictions"] and len(answer["predictions"]) == 1
            assert isinstance(answer["predictions"][0], dict)
            assert_same(answer["predictions"][0], want)
    code, answer = answers["v1_data_array"]  # one instance holding an array: one array prediction
    assert code == 200 and len(answer["predictions"]) == 1
    assert_same(answer["predictions"][0], expected["events"])
    code, answer = answers["v1_many"]  # the limit's worth of instances in one request
    assert code == 200 and len(answer["predictions"]) == LIMIT
    assert_same(answer["predictions"], expected["many"])


def test_kserve_v2_answers_equal_the_cascade(answers, expected) -> None:
    code, answer = answers["v2"]
    assert code == 200
    assert answer["id"] == "req-1" and answer["model_name"] == "events" and answer["model_version"] == "1.0"
    outputs = v2_answers(answer)
    assert list(outputs) == ["events"] and len(outputs["events"]) == 1
    assert_same(outputs["events"][0], expected["events"])
    code, answer = answers["v2_many"]  # two inputs, 64 elements in all
    assert code == 200 and answer["id"]  # TorchServe's request id when the request gives none
    outputs = v2_answers(answer)
    assert list(outputs) == ["first", "second"]
    assert_same(outputs["first"] + outputs["second"], expected["many"])


def test_a_request_over_the_bound_gets_its_own_413_and_the_worker_lives(answers) -> None:
    for key, count in (("v1_over", LIMIT + 1), ("v1_ones", 8000), ("v2_over", LIMIT + 1)):
        code, answer = answers[key]
        assert code == 413, (key, code, answer)
        assert answer["code"] == 413 and f"has {count} " in answer["message"]
        assert f"the limit is {LIMIT} events per request" in answer["message"]
    code, answer = answers["v1_bad_instance"]
    assert code == 400 and answer["message"].startswith("instance 1: field 'title' must be a string")
    assert answers["after_over"][0] == 200
    before, after = answers["pid_kept"]
    assert before == after  # no worker restart


def test_concurrent_kserve_requests_are_batched_and_each_gets_its_own_answer(answers, expected) -> None:
    want = expected["events"] * 8
    for (code, answer), e in zip(answers["v1_concurrent"], want):
        assert code == 200
        assert_same(answer["predictions"][0], e)
    for (code, answer), e in zip(answers["v2_concurrent"], want):
        assert code == 200
        assert_same(v2_answers(answer)["e"][0], e)
    batches, requests = answers["batching"]
    assert requests == 48 and batches < requests  # some batches held several KServe requests
