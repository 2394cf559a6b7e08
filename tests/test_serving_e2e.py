"""End to end: a real TorchServe (Java) on loopback, the project's config and scripts."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.live_server import SESSION, counter, in_one_batch, register, script, send_together
from table.events import load_events, split_events, event_dicts
from table.scoring import evaluate_frame

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


def held_out(events_csv: Path):
    frame, _ = split_events(load_events(events_csv), seed=42)
    return frame[frame.split == "test"]


def assert_same_answers(served: list[dict], expected: list[dict], tolerance: float = 1e-4) -> None:
    """The same path and scores, and every path of the top_k list with its score, in order."""
    assert len(served) == len(expected)
    for s, e in zip(served, expected):
        assert s["path"] == e["path"] and s["abstain"] is e["abstain"]
        assert s["path_score"] == pytest.approx(e["path_score"], abs=tolerance)
        for level in ("taxonomy", "subtaxonomy"):
            assert s[level]["label"] == e[level]["label"]
            assert s[level]["score"] == pytest.approx(e[level]["score"], abs=tolerance)
        assert [(p["taxonomy"], p["subtaxonomy"]) for p in s["top_k"]] == \
            [(p["taxonomy"], p["subtaxonomy"]) for p in e["top_k"]]
        assert [p["score"] for p in s["top_k"]] == pytest.approx([p["score"] for p in e["top_k"]], abs=tolerance)


def served_one_by_one(server, model: str, events: list[dict]) -> list[dict]:
    """Each event as its own request, all at once (so TorchServe batches them as it likes)."""
    results = send_together(server, model, [json.dumps(e).encode() for e in events])
    assert [code for code, _ in results] == [200] * len(events), results[:3]
    return [json.loads(body) for _, body in results]


def test_served_answers_equal_offline_evaluation(registered, tiny_run: Path, events_csv: Path) -> None:
    from handlers.cascade import Cascade

    rows = held_out(events_csv)
    offline = evaluate_frame(Cascade(tiny_run), rows).answers
    events = [{**e, "top_k": 1} for e in event_dicts(rows)]
    code, body = predict(registered, json.dumps(events))
    assert code == 200
    assert_same_answers(json.loads(body), offline)
    assert_same_answers(served_one_by_one(registered, "events", events), offline)


def test_served_abstentions_equal_offline_evaluation(registered, tiny_run: Path, events_csv: Path) -> None:
    """The recorded rule and a per-request min_score set between the answers' scores: the
    server abstains on exactly the events the in-process cascade abstains on."""
    from handlers.cascade import Cascade

    rows = held_out(events_csv)
    cascade = Cascade(tiny_run)
    offline = evaluate_frame(cascade, rows).answers
    ranked = sorted(a["path_score"] for a in offline)
    floor = round((ranked[len(ranked) // 2 - 1] + ranked[len(ranked) // 2]) / 2, 6)  # half abstain
    events = event_dicts(rows)
    expected = cascade.predict(events, min_score=floor)
    assert 0 < sum(a["abstain"] for a in expected) < len(expected)
    before = counter(registered, "AbstentionsPerTaxonomy", "events")
    code, body = predict(registered, json.dumps([{**e, "top_k": 1, "min_score": floor} for e in events]))
    assert code == 200
    assert_same_answers(json.loads(body), expected)
    assert counter(registered, "AbstentionsPerTaxonomy", "events") - before == sum(a["abstain"] for a in expected)
    assert_same_answers(served_one_by_one(registered, "events", [{**e, "top_k": 1} for e in events]), offline)
    code, body = predict(registered, json.dumps({"text": "dj", "min_score": 3}))
    assert code == 400 and "'min_score' must be a number from 0 to 1, got 3" in body


def test_served_top_k_lists_equal_the_cascades(registered, tiny_run: Path, events_csv: Path) -> None:
    """top_k from 2 to 10, one per event: every path of every list, and its score."""
    from handlers.cascade import Cascade

    events = event_dicts(held_out(events_csv))
    ks = [2 + i % 9 for i in range(len(events))]
    expected = Cascade(tiny_run).predict(events, top_k=ks)
    assert max(len(e["top_k"]) for e in expected) > 3  # lists long enough to span taxonomies
    requests = [{**e, "top_k": k} for e, k in zip(events, ks)]
    code, body = predict(registered, json.dumps(requests))
    assert code == 200, body
    assert_same_answers(json.loads(body), expected)
    assert_same_answers(served_one_by_one(registered, "events", requests), expected)


@pytest.fixture(scope="module")
def int8_model(registered, tiny_run: Path, model_store: Path, tmp_path_factory: pytest.TempPathFactory):
    """events-int8.mar registered, and its own files unpacked (what the worker loads)."""
    import subprocess
    import sys
    import zipfile

    built = subprocess.run([sys.executable, "-m", "archives.build", "--run", str(tiny_run),
                            "--name", "events-int8", "--model-store", str(model_store), "--quantize", "int8",
                            "--max-drop", "100", "--workers", "1", "--force"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    unpacked = tmp_path_factory.mktemp("int8-archive")
    with zipfile.ZipFile(model_store / "events-int8.mar") as archive:
        archive.extractall(unpacked)
    code, body = register(registered, "events-int8.mar", fresh=True)
    assert code == 200, body
    yield unpacked
    registered.call("management", "DELETE", "/models/events-int8")


def test_served_int8_answers_equal_the_int8_cascade(registered, int8_model: Path, events_csv: Path) -> None:
    from handlers.cascade import Cascade

    events = event_dicts(held_out(events_csv))
    cascade = Cascade(int8_model, quantize="int8")
    expected = cascade.predict(events, top_k=1)
    code, body = registered.call("inference", "POST", "/predictions/events-int8",
                                 json.dumps([{**e, "top_k": 1} for e in events]).encode(),
                                 {"Content-Type": "application/json"})
    assert code == 200, body
    assert_same_answers(json.loads(body), expected)  # the same batch as the cascade's: the same numbers
    # Dynamic int8 quantizes activations with one scale per batch, so a score depends on its
    # batch mates (by up to about 5e-3 on this barely trained model). One request at a time
    # is a batch of one on the server: it must equal the cascade on that event alone.
    for event in events[:8]:
        code, body = registered.call("inference", "POST", "/predictions/events-int8",
                                     json.dumps({**event, "top_k": 1}).encode(), {"Content-Type": "application/json"})
        assert code == 200, body
        assert_same_answers([json.loads(body)], cascade.predict([event], top_k=1))


def test_concurrent_requests_are_batched_and_all_answered(registered) -> None:
    predict(registered, json.dumps({"title": "warm up"}))
    batches, requests = counter(registered, "HandlerBatches", "events"), counter(registered, "HandlerRequests", "events")
    bodies = [json.dumps({"title": f"marathon {i}", "description": "runners on the track"}) for i in range(24)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda b: predict(registered, b), bodies))
    assert [code for code, _ in results] == [200] * 24
    first = json.loads(results[0][1])["path"]
    assert all(json.loads(body)["path"] == first for _, body in results)
    assert counter(registered, "HandlerRequests", "events") - requests == 24
    assert counter(registered, "HandlerBatches", "events") - batches < 24  # TorchServe grouped requests


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


def test_workers_start_with_the_server_environment(registered) -> None:
    """The kernel caches' capacities and glibc's mmap threshold reach TorchServe's workers."""
    import os

    import psutil

    from handlers.kernel_caches import CACHE_ENV
    from serving.server_env import ALLOCATOR_ENV, apply

    code, body = registered.call("management", "GET", "/models/events")
    pids = [w["pid"] for w in json.loads(body)[0]["workers"] if w.get("pid")]
    expected = {k: v for k, v in apply(dict(os.environ)).items() if k in {**CACHE_ENV, **ALLOCATOR_ENV}}
    assert code == 200 and pids and len(expected) == 4
    assert expected.items() <= psutil.Process(pids[0]).environ().items()


def test_bad_request_in_a_batch_does_not_fail_its_neighbours(registered) -> None:
    good = [json.dumps({"title": f"saxophone {i}", "id": i}).encode() for i in range(6)]
    bodies = [good[0], b'{"oops"', *good[1:4], b'{"title": 7}', *good[4:]]  # 8: events.mar's batch size
    refused = counter(registered, "HandlerRefused", "events")
    results = in_one_batch(registered, "events", bodies)  # the handler counted one batch of all eight
    assert counter(registered, "HandlerRefused", "events") - refused == 2
    assert [code for code, _ in results] == [200, 400, 200, 200, 200, 400, 200, 200]
    assert "malformed JSON" in json.loads(results[1][1])["message"]
    assert "must be a string" in json.loads(results[5][1])["message"]
    assert [json.loads(body)["id"] for code, body in results if code == 200] == list(range(6))


def test_requests_without_a_valid_token_are_refused(registered) -> None:
    code, body = predict(registered, json.dumps({"title": "jazz"}), key=None)
    assert code in (400, 401) and "Token" in body
    mgmt = registered.address("management")
    assert registered._http("GET", mgmt + "/models", None, {})[0] in (400, 401)
    inference_key = registered.key("inference")
    code, _ = registered._http("GET", mgmt + "/models", None, {"Authorization": f"Bearer {inference_key}"})
    assert code in (400, 401)


@pytest.fixture
def archive_on_http(tmp_path: Path):
    """A real archive served over HTTP on a free loopback port, and the paths requested from it."""
    import functools
    import http.server
    import threading

    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            requested.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(tmp_path)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{httpd.server_address[1]}", requested
    httpd.shutdown()


def refused_registration(server, url: str) -> str:
    query = urllib.parse.urlencode({"url": url, "model_name": "intruder", "synchronous": "true"})
    code, body = server.call("management", "POST", f"/models?{query}", timeout=300)
    if code < 400:
        server.call("management", "DELETE", "/models/intruder")
        pytest.fail(f"registered from {url}: {body[:300]}")
    assert '"intruder"' not in server.call("management", "GET", "/models")[1]
    return json.loads(body)["message"]


@pytest.mark.parametrize("scheme", ["file", "http"])
def test_allowed_urls_refuses_a_real_archive_outside_the_store(registered, archive_on_http, scheme: str) -> None:
    """Without allowed_urls TorchServe would register both (a valid .mar, reachable)."""
    folder, base, requested = archive_on_http
    (folder / "outside.mar").write_bytes((registered.model_store / "events-taxonomy.mar").read_bytes())
    url = f"file://{folder / 'outside.mar'}" if scheme == "file" else f"{base}/outside.mar"
    assert refused_registration(registered, url) == f"Given URL {url} does not match any allowed URL(s)"
    assert requested == []  # nothing was fetched


def test_a_relative_path_out_of_the_store_is_refused(registered) -> None:
    """Not allowed_urls: TorchServe's own check on '..' in a model-store path."""
    message = refused_registration(registered, "../outside.mar")
    assert message == "Relative path is not allowed in url: ../outside.mar"


def test_custom_metrics_reach_prometheus(registered) -> None:
    predict(registered, json.dumps({"title": "saxophone trio"}))
    code, text = registered._http("GET", registered.address("metrics") + "/metrics", None, {})
    assert code == 200
    assert "TaxonomyInferenceTime" in text and "SubtaxonomyInferenceTime" in text
    assert 'PredictionsPerTaxonomy{ModelName="events"' in text


@pytest.fixture
def sports(registered):
    """events-sports.mar (a single-level archive) registered for one test, then removed."""
    code, body = register(registered, "events-sports.mar", fresh=True)
    assert code == 200, body
    yield registered
    registered.call("management", "DELETE", "/models/events-sports")


def test_manage_registers_a_per_level_archive_that_answers(registered) -> None:
    try:
        result = script("manage.sh", "register", "events-sports.mar")
        assert result.returncode == 0 and "registered" in result.stdout, result.stderr
        code, body = registered.call("inference", "POST", "/predictions/events-sports", b"marathon runners",
                                     {"Content-Type": "text/plain"})
        assert code == 200 and json.loads(body)["label"] in ("cycling", "running", "yoga")
    finally:
        registered.call("management", "DELETE", "/models/events-sports")


def test_manage_scale_is_what_describe_shows(sports) -> None:
    assert script("manage.sh", "scale", "events-sports", "2").returncode == 0
    described = json.loads(script("manage.sh", "describe", "events-sports").stdout)
    assert len(described[0]["workers"]) == 2


def test_manage_unregister_removes_the_model_from_the_list(sports) -> None:
    assert '"events-sports"' in script("manage.sh", "list").stdout
    assert script("manage.sh", "unregister", "events-sports").returncode == 0
    assert "events-sports" not in script("manage.sh", "list").stdout


def test_manage_refuses_an_archive_outside_the_store(registered) -> None:
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
    import shutil

    bin_dir = tmp_path / "bin"  # a PATH with the shell tools but no java
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "python3"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    no_java = subprocess.run([str(ROOT / "scripts" / "serve.sh"), "start"], capture_output=True, text=True,
                             env=SESSION(PATH=str(bin_dir), SERVE_DIR=str(tmp_path / "a")), timeout=60)
    assert no_java.returncode == 2 and "Java is not installed" in no_java.stderr
    # The running test server holds these ports: a second server must refuse to start.
    taken = subprocess.run([str(ROOT / "scripts" / "serve.sh"), "start"], capture_output=True, text=True,
                           env=SESSION(SERVE_DIR=str(tmp_path / "b")), timeout=60)
    assert taken.returncode == 2 and "already in use" in taken.stderr


def test_every_port_listens_on_loopback_only(registered) -> None:
    import psutil

    from serving.ts_config import read_properties

    props = read_properties(ROOT / "config.properties")
    for api in ("inference", "management", "metrics"):
        assert props[f"{api}_address"].startswith("http://127.0.0.1:")
    pid = int((registered.serve_dir / "tmp" / ".model_server.pid").read_text())
    listening = [c.laddr for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert len(listening) >= 3
    assert all(addr.ip in ("127.0.0.1", "::ffff:127.0.0.1") for addr in listening), listening
