"""The TorchServe handler in-process, with a hand-built Context (no Java)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import ts
from ts.context import Context, RequestProcessor
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl
from ts.metrics.metric_type_enum import MetricTypes

from handlers.cascade import Cascade
from handlers.event_handler import EventTaxonomyHandler

SETTINGS = {"handler": {"threads": 1, "top_k": 2, "max_items": 4}}


def make_context(model_dir: Path, n: int) -> Context:
    metrics = MetricsCacheYamlImpl(os.path.join(ts.__path__[0], "configs", "metrics.yaml"))
    metrics.initialize_cache()
    context = Context("events", str(model_dir), {"model": {"modelName": "events"}}, 8, None, "0.12.0",
                      metrics=metrics, model_yaml_config=SETTINGS)
    context.request_processor = [RequestProcessor({}) for _ in range(n)]
    return context


@pytest.fixture(scope="module")
def handler(tiny_run: Path) -> EventTaxonomyHandler:
    h = EventTaxonomyHandler()
    h.initialize(make_context(tiny_run, 1))
    return h


def run(handler: EventTaxonomyHandler, model_dir: Path, bodies: list) -> tuple[list, list[int], Context]:
    context = make_context(model_dir, len(bodies))
    answers = handler.handle([{"body": b} for b in bodies], context)
    codes = [context.get_response_status(i)[0] or 200 for i in range(len(bodies))]
    return [json.loads(a) for a in answers], codes, context


def test_batch_mixing_good_and_bad_requests(handler: EventTaxonomyHandler, tiny_run: Path) -> None:
    bodies = [
        {"title": "saxophone trio", "description": "swing"},
        b'{"title": ',
        "marathon runners",
        [{"text": "dj club"}, {"title": "bike", "top_k": 1}],
        {"title": 3},
        [{"text": "a"}] * 5,
        bytearray(b'{"description": "yoga mat breathing"}'),
    ]
    answers, codes, _ = run(handler, tiny_run, bodies)
    assert codes == [200, 400, 200, 200, 400, 400, 200]
    assert "malformed JSON" in answers[1]["message"] and answers[1]["code"] == 400
    assert "must be a string" in answers[4]["message"]
    assert "limit is 4" in answers[5]["message"]
    assert isinstance(answers[3], list) and len(answers[3]) == 2
    assert len(answers[3][1]["top_k"]) == 1 and len(answers[0]["top_k"]) == 2


def test_answers_equal_the_cascade_run_alone(handler: EventTaxonomyHandler, tiny_run: Path) -> None:
    events = [{"title": "saxophone", "description": "trio"}, {"text": "peloton road bike"}]
    answers, codes, _ = run(handler, tiny_run, [events[0], [events[1]]])
    expected = Cascade(tiny_run).predict(events, top_k=2)
    assert codes == [200, 200]
    assert answers[0]["path"] == expected[0]["path"]
    assert answers[1][0]["path"] == expected[1]["path"]
    assert answers[0]["path_score"] == pytest.approx(expected[0]["path_score"], abs=1e-4)


def test_ids_are_echoed_and_all_bad_batches_do_not_crash(handler: EventTaxonomyHandler, tiny_run: Path) -> None:
    answers, codes, _ = run(handler, tiny_run, [[{"text": "dj", "id": "e1"}, {"text": "run", "id": 2}]])
    assert [a["id"] for a in answers[0]] == ["e1", 2]
    answers, codes, _ = run(handler, tiny_run, [None, "", b"\xff"])
    assert codes == [400, 400, 400]


def test_metrics_recorded(handler: EventTaxonomyHandler, tiny_run: Path) -> None:
    _, _, context = run(handler, tiny_run, [{"text": "saxophone swing"}, {"text": "marathon"}])
    assert context.metrics.get_metric("TaxonomyInferenceTime", MetricTypes.GAUGE) is not None
    assert context.metrics.get_metric("PredictionsPerTaxonomy", MetricTypes.COUNTER) is not None
