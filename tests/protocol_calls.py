"""The three ways to ask a served model (/predictions, KServe v1, Open Inference Protocol v2),
and the in-process cascade's answers they must equal. Shared by tests/test_kserve.py
(TorchServe on loopback) and tests/test_image.py (the container).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from serving import loopback

EVENTS = [{"title": "saxophone trio", "description": "late night swing", "top_k": 2},
          {"title": "marathon runners", "description": "city road race"},
          {"text": "house music till dawn in the club"}]


def call(url: str, body: object = None, method: str = "POST", timeout: float = 120) -> tuple[int, Any]:
    """(status, JSON answer or text) of one request; no body means GET."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method if data else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with loopback.urlopen(request, timeout=timeout) as response:
            code, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        code, text = exc.code, exc.read().decode()
    try:
        return code, json.loads(text)
    except ValueError:
        return code, text


def metric(url: str, name: str) -> float:
    """A Prometheus metric of TorchServe's metrics listener at ``url``, summed over its labels."""
    code, text = call(url + "/metrics")
    assert code == 200, text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def v1(url: str, name: str, instances: list[Any]) -> tuple[int, Any]:
    return call(f"{url}/v1/models/{name}:predict", {"instances": instances})


def v2(url: str, name: str, inputs: dict[str, list[Any]], request_id: str | None = None) -> tuple[int, Any]:
    """inputs: name -> events (or arrays of events), each sent as one BYTES element of JSON text."""
    body: dict[str, Any] = {"inputs": [{"name": n, "shape": [len(d)], "datatype": "BYTES",
                                        "data": [json.dumps(e) for e in d]} for n, d in inputs.items()]}
    if request_id:
        body["id"] = request_id
    return call(f"{url}/v2/models/{name}/infer", body)


def v2_answers(answer: dict[str, Any]) -> dict[str, list[Any]]:
    """An OIP v2 answer's outputs, name -> the answers decoded from their JSON text."""
    found = {}
    for output in answer["outputs"]:
        assert output["datatype"] == "BYTES" and output["shape"] == [len(output["data"])]
        found[output["name"]] = [json.loads(text) for text in output["data"]]
    return found


def in_process(run: Path, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cascade's answers, run in this process on the run the archive was built from."""
    from handlers.cascade import Cascade
    from handlers.settings import HandlerSettings

    top_k = [e.get("top_k", HandlerSettings().top_k) for e in events]
    return Cascade(run).predict([{k: v for k, v in e.items() if k != "top_k"} for e in events], top_k)


def assert_same(served: Any, expected: Any) -> None:
    """Served answers equal the cascade's: labels and paths exactly, scores to 1e-4."""
    if isinstance(expected, list):
        assert isinstance(served, list) and len(served) == len(expected)
        for s, e in zip(served, expected):
            assert_same(s, e)
        return
    assert isinstance(served, dict), f"not a JSON object: {served!r}"
    assert served["path"] == expected["path"]
    assert served["path_score"] == pytest.approx(expected["path_score"], abs=1e-4)
    assert [(t["taxonomy"], t["subtaxonomy"]) for t in served["top_k"]] == \
        [(t["taxonomy"], t["subtaxonomy"]) for t in expected["top_k"]]
    assert [t["score"] for t in served["top_k"]] == pytest.approx([t["score"] for t in expected["top_k"]], abs=1e-4)
