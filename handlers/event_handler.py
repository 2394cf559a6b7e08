"""TorchServe handler: a thin adapter around ``handlers.cascade.Cascade``.

It parses each request of a TorchServe batch (``handlers.parsing``), runs every good event
of the batch through the cascade together, answers bad requests with their own 400 while
the rest of the batch gets its 200, and reports per-level timings as metrics. TorchServe
refuses a handler module with two classes: this file holds exactly one.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import torch

from handlers.cascade import Cascade
from handlers.parsing import Limits, RequestError, parse_request

logger = logging.getLogger(__name__)


class EventTaxonomyHandler:
    """Entry point named by ``torch-model-archiver --handler``."""

    def __init__(self) -> None:
        self.initialized = False
        self.cascade: Cascade | None = None
        self.limits = Limits()

    def initialize(self, context: Any) -> None:
        props = context.system_properties
        model_dir = props.get("model_dir")
        settings = (getattr(context, "model_yaml_config", None) or {}).get("handler", {}) or {}
        # One worker per core is the default layout; torch's own default (all cores in
        # every worker) oversubscribes the CPU badly, so threads are always set here.
        threads = int(settings.get("threads", os.environ.get("EVENT_TAXONOMY_THREADS", 1)))
        torch.set_num_threads(max(1, threads))
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set in this process
            pass
        gpu_id = props.get("gpu_id")
        device = f"cuda:{gpu_id}" if torch.cuda.is_available() and gpu_id is not None else "cpu"
        if settings.get("quantize"):
            device = "cpu"  # int8 archives run on ONNX Runtime's CPU provider
        self.limits = Limits(
            max_items=int(settings.get("max_items", Limits.max_items)),
            max_top_k=int(settings.get("max_top_k", Limits.max_top_k)),
            default_top_k=int(settings.get("top_k", Limits.default_top_k)),
            max_body_chars=int(settings.get("max_body_chars", Limits.max_body_chars)),
        )
        self.cascade = Cascade(
            model_dir,
            device=device,
            max_batch=int(settings.get("max_batch", 64)),
            beam_min_prob=float(settings.get("beam_min_prob", 0.05)),
            quantize=settings.get("quantize") or None,
        )
        logger.info(
            "loaded %s from %s on %s with %d threads", self.cascade.hierarchy.name, model_dir, device, threads
        )
        self.initialized = True

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        """One answer per request of the batch, in order; bad ones get their own 400."""
        answers: list[Any] = [None] * len(data)
        events: list[dict[str, Any]] = []
        top_k: list[int] = []
        owners: list[tuple[int, bool, int, int]] = []  # request index, is_array, start, stop
        for idx, request in enumerate(data):
            body = request.get("body") if isinstance(request, dict) else None
            if body is None and isinstance(request, dict):
                body = request.get("data")
            try:
                parsed = parse_request(body, self.limits)
            except RequestError as exc:
                answers[idx] = json.dumps({"code": 400, "type": "BadRequest", "message": str(exc)})
                context.set_response_status(400, "Bad Request", idx)
                context.set_response_content_type(idx, "application/json")
                continue
            owners.append((idx, parsed.is_array, len(events), len(events) + len(parsed.events)))
            events += parsed.events
            top_k += parsed.top_k

        timings: dict[str, float] = {}
        results = self.cascade.predict(events, top_k, timings) if events else []
        for idx, is_array, start, stop in owners:
            for event, result in zip(events[start:stop], results[start:stop]):
                if "id" in event:
                    result["id"] = event["id"]
            answers[idx] = json.dumps(results[start:stop] if is_array else results[start])
            context.set_response_content_type(idx, "application/json")
        self._report(context, timings, results, len(data))
        return answers

    def _report(self, context: Any, timings: dict[str, float], results: list[dict[str, Any]], requests: int) -> None:
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
            for level, ms in timings.items():
                name = f"{level[: -len('_ms')].capitalize()}InferenceTime"
                metrics.add_time(name, ms, None, "ms", dims())
            counts: dict[str, int] = {}
            for result in results:
                label = result["taxonomy"]["label"] if "taxonomy" in result else result["label"]
                counts[label] = counts.get(label, 0) + 1
            for label, count in counts.items():
                metrics.add_counter("PredictionsPerTaxonomy", count, None, dims(Dimension("Taxonomy", label)))
        except Exception:  # metrics must never fail a prediction
            logger.warning("could not record metrics", exc_info=True)

