"""The KServe predictor in process: TorchServe's answers and refusals, v1 and v2, batched across requests."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.requirements import KSERVE, need

need("kserve", KSERVE)

from kserve.protocol.infer_type import InferInput, InferRequest  # noqa: E402

from handlers.cascade import Cascade  # noqa: E402
from handlers.settings import HandlerSettings  # noqa: E402
from serving.handler_adapter import torchserve_body  # noqa: E402
from serving.kserve_model import EventModel, Refused  # noqa: E402
from serving.model_source import ModelSource, SourceError, open_source  # noqa: E402
from tests.test_handler import torch_threads  # noqa: E402,F401 - autouse: the handler sets torch's threads

SETTINGS = HandlerSettings(threads=1, top_k=2, max_items=4, max_batch_cost=14)  # the tiny run: 2 passes at top_k 1, 3 at 2, 4 at 3 or more
EVENTS = [{"title": "saxophone trio", "description": "late night swing", "top_k": 3},
          {"title": "marathon runners", "description": "city road race"},
          {"text": "house music till dawn in the club", "id": "x-1"}]


@pytest.fixture(scope="module")
def model(tiny_run: Path) -> EventModel:
    m = EventModel("events", ModelSource(tiny_run, SETTINGS, batch_size=16, max_batch_delay_ms=2000, origin="test"))
    assert m.load() and m.ready
    return m


@pytest.fixture(scope="module")
def cascade(tiny_run: Path) -> Cascade:
    return Cascade(tiny_run)


def together(model: EventModel, bodies: list) -> tuple[list[tuple[int, object]], int]:
    """Every body submitted at once; their answers and how many model batches they took."""
    async def main():
        before = model.batcher.batches
        answers = await asyncio.gather(*(model.answer(b) for b in bodies))
        return answers, model.batcher.batches - before

    answers, batches = asyncio.run(main())
    return [(code, json.loads(text)) for code, text in answers], batches


def test_concurrent_requests_share_one_pass_and_each_gets_its_own_answer(model: EventModel, cascade: Cascade) -> None:
    bodies = [EVENTS[0], b'{"title": ', EVENTS[1:], {"title": 3}, [{"text": "a"}] * 5,
              [{"text": "run", "top_k": 10}] * 4, "jazz club tonight", b"\xff\xfe"]
    answers, batches = together(model, bodies)
    assert batches == 1  # eight requests, one model pass (the delay is 2 s, the batch size 16)
    codes = [code for code, _ in answers]
    assert codes == [200, 400, 200, 400, 400, 413, 200, 400]
    messages = [a["message"] for code, a in answers if code != 200]
    assert "malformed JSON" in messages[0] and "must be a string" in messages[1] and "limit is 4" in messages[2]
    assert "over the limit of 14 per batch (max_batch_cost)" in messages[3] and "not valid UTF-8" in messages[4]
    assert all(a["code"] == code and a["type"] for code, a in answers if code != 200)
    expected = cascade.predict(EVENTS, top_k=[3, 2, 2])
    assert answers[0][1]["path"] == expected[0]["path"] and len(answers[0][1]["top_k"]) == 3
    assert [a["path"] for a in answers[2][1]] == [e["path"] for e in expected[1:]]
    assert answers[2][1][1]["id"] == "x-1"


def test_the_batch_budget_is_shared_first_come_and_a_late_request_gets_429(model: EventModel) -> None:
    bodies = [[{"text": "run", "top_k": 3}] * 3] * 4  # 12 passes each: one fits the budget of 14, not all together
    answers, batches = together(model, bodies)
    codes = [code for code, _ in answers]
    assert batches == 1 and 200 in codes and 429 in codes, codes
    assert all("the server's batch is full" in a["message"] for code, a in answers if code == 429)


def test_v1_predict_answers_like_the_cascade(model: EventModel, cascade: Cascade) -> None:
    async def main():
        return await model.predict({"instances": EVENTS})

    answer = asyncio.run(main())
    expected = cascade.predict(EVENTS, top_k=[3, 2, 2])
    assert [a["path"] for a in answer["predictions"]] == [e["path"] for e in expected]
    for body, message in (({"inputs": []}, 'send {"instances"'), ({"instances": [{"title": 1}]}, "item 0: field")):
        with pytest.raises(Refused, match=message) as refused:
            asyncio.run(model.predict(body))
        assert refused.value.code == 400


def infer(model: EventModel, elements: list, name: str = "events", datatype: str = "BYTES"):
    async def main():
        request = InferRequest("events", [InferInput(name, [len(elements)], datatype, elements)], request_id="r1")
        return await model.predict(request)

    return asyncio.run(main())


def test_v2_infer_takes_a_bytes_tensor_of_json_events(model: EventModel, cascade: Cascade) -> None:
    response = infer(model, [json.dumps(e) for e in EVENTS] + ["plain text about a jazz quartet"])
    (output,) = response.outputs
    assert (output.name, output.datatype, output.shape) == ("answers", "BYTES", [4])
    answers = [json.loads(a) for a in output.data]
    expected = cascade.predict(EVENTS + [{"text": "plain text about a jazz quartet"}], top_k=[3, 2, 2, 2])
    assert [a["path"] for a in answers] == [e["path"] for e in expected]
    assert answers[2]["id"] == "x-1" and response.id == "r1"


@pytest.mark.parametrize("elements, name, datatype, message", [
    (["{}"], "text", "BYTES", "send one input named 'events'"),
    ([1, 2], "events", "INT32", "must be BYTES"),
    ([json.dumps({"title": "ok"}), '{"title": '], "events", "BYTES", "element 1: malformed JSON"),
    ([json.dumps([{"title": "a"}])], "events", "BYTES", "element 0: one event per element"),
    ([json.dumps({"title": "x", "top_k": 99})], "events", "BYTES", "element 0: 'top_k' must be an integer"),
])
def test_v2_refusals_name_the_fault(model: EventModel, elements, name, datatype, message) -> None:
    with pytest.raises(Refused, match=message) as refused:
        infer(model, elements, name, datatype)
    assert refused.value.code == 400


def test_a_request_over_max_items_is_a_413_before_any_work(model: EventModel) -> None:
    # The status and message TorchServe's KServe path gives (handlers/protocols.bound).
    with pytest.raises(Refused, match="this request has 5 elements in input 'events'; the limit is 4 events") as v2:
        infer(model, ["a"] * 5)
    with pytest.raises(Refused, match="this request has 5 instances; the limit is 4 events") as v1:
        asyncio.run(model.predict({"instances": [{"text": "a"}] * 5}))
    assert v2.value.code == v1.value.code == 413


def test_the_handler_loads_on_the_batch_thread(tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real load, watched: it runs where the batches run, never on the caller's thread."""
    import threading

    from serving import kserve_model

    threads: list[int] = []

    def watched(*args, **kwargs):
        threads.append(threading.get_ident())
        return load_handler(*args, **kwargs)

    load_handler = kserve_model.load_handler
    monkeypatch.setattr(kserve_model, "load_handler", watched)
    m = EventModel("events", ModelSource(tiny_run, SETTINGS, batch_size=4, max_batch_delay_ms=1, origin="test"))
    try:
        assert m.load()
        assert threads == [m.batcher.on_model_thread(threading.get_ident)] and threads[0] != threading.get_ident()
    finally:
        m.stop()


def test_bodies_reach_the_handler_as_torchserve_hands_them_over() -> None:
    assert torchserve_body("application/json", b'{"a": 1}') == {"a": 1}
    assert torchserve_body("application/json", b'{"a": ') == b'{"a": '
    assert torchserve_body("application/json; charset=utf-8", b"{}") == b"{}"  # TorchServe compares exactly
    assert torchserve_body("text/plain", "jazz".encode()) == "jazz"
    assert torchserve_body("text/plain", b"\xff") == b"\xff"
    assert torchserve_body("application/octet-stream", b"x") == b"x"


def test_sources_a_run_an_archive_and_a_layout(tiny_run: Path, model_store: Path, tmp_path: Path) -> None:
    with open_source(tiny_run) as run:
        assert run.model_dir == tiny_run and run.settings == HandlerSettings() and run.batch_size == 32
    with open_source(model_store / "events.mar") as archive:
        unpacked = archive.model_dir
        assert (unpacked / "hierarchy.json").is_file() and archive.origin == "archive events.mar"
    assert not unpacked.exists()  # removed on exit
    layout = tmp_path / "layout" / "model-store"
    layout.mkdir(parents=True)
    with pytest.raises(SourceError, match="holds 0 archives"):
        with open_source(layout.parent):
            pass
    (layout / "events.mar").write_bytes((model_store / "events.mar").read_bytes())
    with open_source(layout.parent) as served:
        assert served.origin == "archive events.mar"
    with pytest.raises(SourceError, match="is not a run directory"):
        with open_source(tmp_path):
            pass
