"""TorchServe handler: a thin adapter around ``handlers.cascade.Cascade``.

It parses each request of a TorchServe batch (``handlers.parsing``), admits requests while
the batch's work stays under ``max_batch_cost``, runs every admitted event through the
cascade together, and answers each request on its own: whatever goes wrong with one
request (a bad body, a failing forward pass, an answer too large) is that request's own
4xx, while the rest of the batch gets its 200. An exception escaping ``handle`` would fail
the whole batch with 503, and an answer over max_response_size would make TorchServe
restart the worker: neither can happen here. TorchServe refuses a handler module with two
classes: this file holds exactly one.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import torch

from handlers.cascade import SUBTAXONOMY_MS, TAXONOMY_MS, Cascade
from handlers.parsing import ParsedRequest, RequestError, parse_request, request_body
from handlers.protocols import Envelope, TooLarge, bound, unwrap, wrap
from handlers.settings import HandlerSettings

logger = logging.getLogger(__name__)

REASONS = {400: "Bad Request", 413: "Payload Too Large", 422: "Unprocessable Entity", 429: "Too Many Requests"}


class EventTaxonomyHandler:
    """Entry point named by ``torch-model-archiver --handler``."""

    def __init__(self) -> None:
        self.initialized = False
        self.cascade: Cascade | None = None
        self.settings = HandlerSettings()

    def initialize(self, context: Any) -> None:
        props = context.system_properties
        model_dir = props.get("model_dir")
        section = (getattr(context, "model_yaml_config", None) or {}).get("handler", {}) or {}
        self.settings = HandlerSettings.from_mapping(section)
        # torch's default (every core in every worker) oversubscribes the CPU badly when
        # TorchServe runs several workers, so the archive's thread count is always applied.
        threads = self.settings.threads
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set in this process
            pass
        gpu_id = props.get("gpu_id")
        device = f"cuda:{gpu_id}" if torch.cuda.is_available() and gpu_id is not None else "cpu"
        if self.settings.quantize:
            device = "cpu"  # int8 archives run on ONNX Runtime's CPU provider
        self.cascade = Cascade(model_dir, device=device, max_batch=self.settings.max_batch,
                               beam_min_prob=self.settings.beam_min_prob, quantize=self.settings.quantize or None,
                               precision=self.settings.precision)
        logger.info("loaded %s from %s on %s with %d threads, %s", self.cascade.hierarchy.name, model_dir, device,
                    threads, self.settings.quantize or self.cascade.precision)
        self.initialized = True

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        """One answer per request of the batch, in order."""
        answers: list[Any] = [None] * len(data)
        refused: list[int] = []

        def refuse(idx: int, code: int, message: str) -> None:
            refused.append(idx)
            answers[idx] = json.dumps({"code": code, "type": REASONS[code].replace(" ", ""), "message": message})
            if _own_request(context, idx):
                context.set_response_status(code, REASONS[code], idx)
                context.set_response_content_type(idx, "application/json")

        if _exploded(data, context, self.settings.max_items):
            refuse(0, 413, f"{len(data)} instances in one request; the limit is {self.settings.max_items} events "
                           "per request: split it into several requests")
            return [answers[0]]
        admitted = self._admit(data, refuse)
        timings: dict[str, float] = {}
        results = self._predict(admitted, refuse, timings)
        answered: list[dict[str, Any]] = []
        for idx, (envelope, parsed) in admitted:
            if idx not in results:
                continue
            text = _answer_text(envelope, parsed, results[idx], context, idx)
            size = len(text.encode("utf-8"))
            if size > self.settings.max_response_bytes:
                refuse(idx, 413, f"the answer would be {size} bytes, over the limit of "
                                 f"{self.settings.max_response_bytes}: send fewer events or a smaller top_k")
                continue
            answers[idx] = text
            if _own_request(context, idx):
                context.set_response_content_type(idx, "application/json")
            answered += [r for found in results[idx] for r in found]
        self._report(context, timings, answered, len(data), len(refused))
        return answers

    def _admit(self, data: list[Any], refuse: Any) -> list[tuple[int, Admitted]]:
        """Parse every request; keep those that fit the batch's cost budget, in arrival order."""
        admitted: list[tuple[int, Admitted]] = []
        budget, used = self.settings.max_batch_cost, 0
        for idx, request in enumerate(data):
            try:
                envelope = unwrap(request_body(request), self.settings)
                parsed = [_parse(body, label, self.settings) for body, label in zip(envelope.bodies, envelope.labels)]
                events = [event for p in parsed for event in p.events]
                if envelope.protocol:  # v2 elements may each hold an array of events
                    bound(len(events), "events", self.settings)
                cost = sum(self.cascade.passes(k, windows) for k, windows in zip(
                    [k for p in parsed for k in p.top_k], self.cascade.window_counts(events)))
            except TooLarge as exc:
                refuse(idx, 413, str(exc))
                continue
            except RequestError as exc:
                refuse(idx, 400, str(exc))
                continue
            except Exception as exc:  # anything unforeseen stays this request's problem
                logger.warning("request %d of the batch could not be read", idx, exc_info=True)
                refuse(idx, 400, f"the request could not be read ({type(exc).__name__})")
                continue
            if cost > budget:
                refuse(idx, 413, f"this request costs {cost} model passes, over the limit of {budget} per batch "
                                 "(max_batch_cost): send fewer events per request or a smaller top_k")
            elif used + cost > budget:
                refuse(idx, 429, f"the server's batch is full ({used} of {budget} model passes taken by other "
                                 f"requests; this one needs {cost}): retry shortly, or send fewer events per request")
            else:
                used += cost
                admitted.append((idx, (envelope, parsed)))
        return admitted

    def _predict(self, admitted: list[tuple[int, Admitted]], refuse: Any,
                 timings: dict[str, float]) -> dict[int, list[list[dict[str, Any]]]]:
        """Answers per request index, per body: the whole batch in one go, or request by request if that fails."""
        requests = [(idx, [e for p in parsed for e in p.events], [k for p in parsed for k in p.top_k], parsed)
                    for idx, (_, parsed) in admitted]
        events = [event for _, found, _, _ in requests for event in found]
        if not events:
            return {}
        try:
            flat = self.cascade.predict(events, [k for _, _, ks, _ in requests for k in ks], timings,
                                        [f for _, _, _, parsed in requests for f in _floors(parsed)])
        except Exception:
            logger.warning("batch of %d requests failed; retrying them one by one", len(admitted), exc_info=True)
        else:
            results, start = {}, 0
            for idx, found, _, parsed in requests:
                results[idx] = _split(flat[start : start + len(found)], parsed)
                start += len(found)
            return results
        results = {}
        for idx, found, ks, parsed in requests:  # isolate the request that made the batch fail
            try:
                results[idx] = _split(self.cascade.predict(found, ks, timings, _floors(parsed)), parsed)
            except Exception as exc:
                logger.warning("request %d failed on its own", idx, exc_info=True)
                refuse(idx, 422, f"the events of this request could not be classified ({type(exc).__name__})")
        return results

    def _report(self, context: Any, timings: dict[str, float], results: list[dict[str, Any]], requests: int,
                refused: int) -> None:
        metrics = getattr(context, "metrics", None)
        if metrics is None:
            return
        try:
            from ts.metrics.dimension import Dimension

            def dims(*extra: Any) -> list[Any]:
                # Fresh list each call: TorchServe's metric methods append to the list given.
                return [Dimension("ModelName", context.model_name), Dimension("Level", "Model"), *extra]

            # Requests over batches is the batch size TorchServe actually achieved.
            metrics.add_counter("HandlerBatches", 1, None, dims())
            metrics.add_counter("HandlerRequests", requests, None, dims())
            metrics.add_counter("HandlerRefused", refused, None, dims())
            for level, ms in timings.items():
                metrics.add_time(METRIC_NAMES[level], ms, None, "ms", dims())
            counts: dict[str, int] = {}
            abstained: dict[str, int] = {}
            for result in results:
                label = result["label"] if self.cascade.hierarchy.single_level else result["taxonomy"]["label"]
                counts[label] = counts.get(label, 0) + 1
                if result.get("abstain"):  # no path fits: counted under the best path's taxonomy
                    abstained[label] = abstained.get(label, 0) + 1
            for label, count in counts.items():
                metrics.add_counter("PredictionsPerTaxonomy", count, None, dims(Dimension("Taxonomy", label)))
            for label, count in abstained.items():
                metrics.add_counter("AbstentionsPerTaxonomy", count, None, dims(Dimension("Taxonomy", label)))
        except Exception:  # metrics must never fail a prediction
            logger.warning("could not record metrics", exc_info=True)


METRIC_NAMES = {TAXONOMY_MS: "TaxonomyInferenceTime", SUBTAXONOMY_MS: "SubtaxonomyInferenceTime"}


def _own_request(context: Any, idx: int) -> bool:
    """Whether item ``idx`` is a request of its own, whose status and content type can be set.

    Under KServe's envelopes, several instances (v1) or inputs (v2) of one HTTP request
    reach ``handle`` as several items, while TorchServe keeps headers per HTTP request only;
    such items share their request's status and answer inside the envelope's body.
    """
    processors = getattr(context, "request_processor", None)
    return processors is None or idx < len(processors)


Admitted = tuple[Envelope, list[ParsedRequest]]


def _parse(body: Any, label: str, settings: HandlerSettings) -> ParsedRequest:
    try:
        return parse_request(body, settings)
    except RequestError as exc:
        raise RequestError(f"{label}{exc}") from None


def _floors(parsed: list[ParsedRequest]) -> list[float | None]:
    """Per event of a request's bodies, the caller's min_score (None: the run's abstention rule)."""
    return [f for p in parsed for f in (p.min_score or [None] * len(p.events))]


def _split(flat: list[dict[str, Any]], parsed: list[ParsedRequest]) -> list[list[dict[str, Any]]]:
    """A request's answers, one list per body."""
    found, start = [], 0
    for p in parsed:
        found.append(flat[start : start + len(p.events)])
        start += len(p.events)
    return found


def _exploded(data: list[Any], context: Any, limit: int) -> bool:
    """TorchServe's own KServe envelope (TS_SERVICE_ENVELOPE) made one request into more items than the limit."""
    processors = getattr(context, "request_processor", None)
    return processors is not None and len(data) > max(limit, len(processors))


def _answer(parsed: ParsedRequest, results: list[dict[str, Any]]) -> Any:
    """One body's answer: ids echoed, one object or an array like the body."""
    for event, result in zip(parsed.events, results):
        if "id" in event:
            result["id"] = event["id"]
    return results if parsed.is_array else results[0]


def _answer_text(envelope: Envelope, parsed: list[ParsedRequest], results: list[list[dict[str, Any]]],
                 context: Any, idx: int) -> str:
    """The JSON answer of one request, in its protocol."""
    answers = [_answer(p, r) for p, r in zip(parsed, results)]
    if envelope.protocol is None:
        return json.dumps(answers[0])
    model = (getattr(context, "manifest", None) or {}).get("model", {})
    request_id = context.get_request_id(idx) if hasattr(context, "get_request_id") else ""
    return wrap(envelope, answers, (model.get("modelName", ""), model.get("modelVersion", "")), request_id or "")
