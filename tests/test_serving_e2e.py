"""End to end: a real TorchServe (Java) on loopback, the project's config and scripts."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.serving import script
from training.data import load_events, split_events
from training.evaluate import evaluate_frame

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


def predict(server, body: bytes | str, content_type: str = "application/json", key: str | None = "inference"):
    data = body.encode() if isinstance(body, str) else body
    if key is None:
        return server._http("POST", server.address("inference") + "/predictions/events", data,
                            {"Content-Type": content_type})
    return server.call("inference", "POST", "/predictions/events", data, {"Content-Type": content_type})


def test_json_object_array_and_plain_text(registered) -> None:
    code, body = predict(registered, json.dumps({"title": "saxophone trio", "description": "swing", "top_k": 2}))
    assert code == 200
    answer = json.loads(body)
    assert set(answer) >= {"taxonomy", "subtaxonomy", "path", "path_score", "top_k"} and len(answer["top_k"]) == 2
    code, body = predict(registered, json.dumps([{"text": "dj club"}, {"title": "marathon runners"}]))
    assert code == 200 and len(json.loads(body)) == 2
    code, body = predict(registered, "bike peloton on the road", "text/plain")
    assert code == 200 and "path" in json.loads(body)
    result = script("predict.sh", "events", "-", stdin='{"description": "yoga mat breathing"}')
    assert result.returncode == 0 and "subtaxonomy" in result.stdout


def test_served_answers_equal_offline_evaluation(registered, tiny_run: Path, events_csv: Path) -> None:
    frame, _ = split_events(load_events(events_csv), seed=42)
    rows = frame[frame.split == "test"]
    from handlers.cascade import Cascade

    offline = evaluate_frame(Cascade(tiny_run), rows).answers
    events = rows[["title", "description"]].to_dict("records")
    code, body = predict(registered, json.dumps([{**e, "top_k": 1} for e in events]))
    assert code == 200
    served = json.loads(body)
    assert [a["path"] for a in served] == [a["path"] for a in offline]
    for s, o in zip(served, offline):
        assert s["path_score"] == pytest.approx(o["path_score"], abs=1e-4)


def counter(server, name: str) -> float:
    _, text = server._http("GET", server.address("metrics") + "/metrics", None, {})
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and 'ModelName="events"' in line)


def test_concurrent_requests_are_batched_and_all_answered(registered) -> None:
    predict(registered, json.dumps({"title": "warm up"}))
    batches, requests = counter(registered, "HandlerBatches"), counter(registered, "HandlerRequests")
    bodies = [json.dumps({"title": f"marathon {i}", "description": "runners on the track"}) for i in range(24)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda b: predict(registered, b), bodies))
    assert [code for code, _ in results] == [200] * 24
    first = json.loads(results[0][1])["path"]
    assert all(json.loads(body)["path"] == first for _, body in results)
    assert counter(registered, "HandlerRequests") - requests == 24
    assert counter(registered, "HandlerBatches") - batches < 24  # TorchServe grouped requests


def test_bad_input_gets_400_and_the_worker_stays_up(registered) -> None:
    cases = [
        (b'{"title": ', "application/json", "malformed JSON"),
        (b"\xff\xfe\x00", "application/octet-stream", "UTF-8"),
        (json.dumps({"title": 12}), "application/json", "must be a string"),
        (json.dumps([]), "application/json", "array is empty"),
        (json.dumps([{"text": "a"}] * 65), "application/json", "limit is 64"),
        (json.dumps({"title": "", "description": "  "}), "application/json", "empty"),
    ]
    for body, content_type, message in cases:
        code, text = predict(registered, body, content_type)
        assert code == 400, (body, text)
        assert message in json.loads(text)["message"]
    code, _ = predict(registered, json.dumps({"title": "still alive"}))
    assert code == 200
    code, body = registered.call("management", "GET", "/models/events")
    workers = json.loads(body)[0]["workers"]
    assert workers and all(w["status"] == "READY" for w in workers)


def test_bad_request_in_a_batch_does_not_fail_its_neighbours(registered) -> None:
    bodies = [json.dumps({"title": "saxophone"}), '{"oops"', json.dumps({"title": "dj"})] * 4
    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = [c for c, _ in pool.map(lambda b: predict(registered, b), bodies)]
    assert codes == [200, 400, 200] * 4


def test_requests_without_a_valid_token_are_refused(registered) -> None:
    code, body = predict(registered, json.dumps({"title": "jazz"}), key=None)
    assert code in (400, 401) and "Token" in body
    mgmt = registered.address("management")
    assert registered._http("GET", mgmt + "/models", None, {})[0] in (400, 401)
    inference_key = registered.key("inference")
    code, _ = registered._http("GET", mgmt + "/models", None, {"Authorization": f"Bearer {inference_key}"})
    assert code in (400, 401)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/evil.mar", "https://example.com/m.mar",
                                 "file:///etc/passwd", "OUTSIDE", "../outside.mar"])
def test_registering_from_outside_the_model_store_is_refused(registered, tmp_path: Path, url: str) -> None:
    if url == "OUTSIDE":
        outside = tmp_path / "outside.mar"
        outside.write_bytes((registered.model_store / "events-taxonomy.mar").read_bytes())
        url = f"file://{outside}"
    query = urllib.parse.urlencode({"url": url, "model_name": "intruder"})
    code, body = registered.call("management", "POST", f"/models?{query}")
    assert code in (400, 403, 404), body
    code, body = registered.call("management", "GET", "/models")
    assert "intruder" not in body


def test_custom_metrics_reach_prometheus(registered) -> None:
    predict(registered, json.dumps({"title": "saxophone trio"}))
    code, text = registered._http("GET", registered.address("metrics") + "/metrics", None, {})
    assert code == 200
    assert "TaxonomyInferenceTime" in text and "SubtaxonomyInferenceTime" in text
    assert 'PredictionsPerTaxonomy{ModelName="events"' in text


def test_manage_scale_describe_per_level_and_unregister(registered) -> None:
    assert script("manage.sh", "register", "events-sports.mar").returncode == 0
    code, body = registered.call("inference", "POST", "/predictions/events-sports", b"marathon runners",
                                 {"Content-Type": "text/plain"})
    assert code == 200 and json.loads(body)["label"] in ("cycling", "running", "yoga")
    assert script("manage.sh", "scale", "events-sports", "2").returncode == 0
    described = json.loads(script("manage.sh", "describe", "events-sports").stdout)
    assert len(described[0]["workers"]) == 2
    assert script("manage.sh", "unregister", "events-sports").returncode == 0
    assert "events-sports" not in script("manage.sh", "list").stdout
    refused = script("manage.sh", "register", str(Path("/tmp") / "elsewhere.mar"))
    assert refused.returncode == 2 and "not in the model store" in refused.stderr


def test_an_expired_key_is_regenerated_by_the_scripts(registered) -> None:
    keys = json.loads(registered.key_file.read_text())
    old = keys["inference"]["key"]
    keys["inference"]["expiration time"] = "2000-01-01T00:00:00.000000000Z"
    registered.key_file.write_text(json.dumps(keys))
    result = script("predict.sh", "events", "-", stdin="dj club midnight")
    assert result.returncode == 0, result.stderr
    assert json.loads(registered.key_file.read_text())["inference"]["key"] != old
    code, _ = registered._http("POST", registered.address("inference") + "/predictions/events", b"x",
                               {"Authorization": f"Bearer {old}", "Content-Type": "text/plain"})
    assert code in (400, 401)


def test_restart_brings_the_registered_models_back(registered) -> None:
    before = json.loads(script("manage.sh", "list").stdout)["models"]
    assert script("serve.sh", "stop").returncode == 0
    assert script("serve.sh", "status").returncode == 3
    started = script("serve.sh", "start")
    assert started.returncode == 0, started.stderr
    assert "model events (events.mar, 1 worker(s)) restored" in started.stdout
    assert json.loads(script("manage.sh", "list").stdout)["models"] == before
    code, body = predict(registered, json.dumps({"title": "marathon"}))
    assert code == 200 and "path" in json.loads(body)


def test_java_missing_and_port_taken_are_reported(registered, tmp_path: Path) -> None:
    import os
    import shutil

    bin_dir = tmp_path / "bin"  # a PATH with the shell tools but no java
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "python3"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {**os.environ, "PATH": str(bin_dir)}
    no_java = subprocess.run([str(ROOT / "scripts" / "serve.sh"), "start"], capture_output=True, text=True,
                             env={**env, "SERVE_DIR": str(tmp_path / "a")}, timeout=60)
    assert no_java.returncode == 2 and "Java is not installed" in no_java.stderr
    # The running test server holds these ports: a second server must refuse to start.
    taken = subprocess.run([str(ROOT / "scripts" / "serve.sh"), "start"], capture_output=True, text=True,
                           env={**os.environ, "SERVE_DIR": str(tmp_path / "b")}, timeout=60)
    assert taken.returncode == 2 and "already in use" in taken.stderr


def test_every_port_listens_on_loopback_only(registered) -> None:
    import psutil

    from tsctl import read_properties

    props = read_properties(ROOT / "config.properties")
    for api in ("inference", "management", "metrics"):
        assert props[f"{api}_address"].startswith("http://127.0.0.1:")
    pid = int((registered.serve_dir / "tmp" / ".model_server.pid").read_text())
    listening = [c.laddr for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert len(listening) >= 3
    assert all(addr.ip in ("127.0.0.1", "::ffff:127.0.0.1") for addr in listening), listening
