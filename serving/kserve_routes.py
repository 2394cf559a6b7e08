"""What the KServe server adds to KServe's FastAPI app: TorchServe's routes, refusals, limits, counters.

``/predictions/NAME`` and ``/ping`` answer as TorchServe's do; a ``Refused`` request on the v1 and
v2 routes gets its own status and TorchServe's error body (plus ``error``, which KServe's clients
read); the body limit and v2's JSON default sit in front (serving/request_guards.py); Prometheus
gets the batcher's counts under the TorchServe handler's metric names.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import Gauge

from serving.handler_adapter import torchserve_body
from serving.kserve_model import EventModel, Refused
from serving.request_guards import BodyLimit, JsonByDefault


def add_routes(app: FastAPI, model: EventModel, max_request_bytes: int) -> None:
    """TorchServe's routes, the refusals' JSON bodies and the body limit, on KServe's FastAPI app."""

    @app.post(f"/predictions/{model.name}")
    async def predictions(request: Request) -> Response:
        code, text = await model.answer(torchserve_body(request.headers.get("content-type", ""), await request.body()))
        return Response(text, status_code=code, media_type="application/json")

    @app.get("/ping")
    async def ping() -> JSONResponse:
        return JSONResponse({"status": "Healthy" if model.ready else "Unhealthy"}, 200 if model.ready else 500)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"error": exc.message, **exc.body()}, exc.code)

    app.add_middleware(JsonByDefault)
    app.add_middleware(BodyLimit, max_bytes=max_request_bytes)
    # The TorchServe handler's counter names: requests over batches is the batch size achieved.
    batches = Gauge("HandlerBatches", "model batches run so far", ["ModelName"])
    requests = Gauge("HandlerRequests", "requests those batches carried", ["ModelName"])
    batches.labels(model.name).set_function(lambda: model.batcher.batches)
    requests.labels(model.name).set_function(lambda: model.batcher.requests)
