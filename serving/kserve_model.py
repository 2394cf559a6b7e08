"""The cascade as a ``kserve.Model``: KServe v1 and Open Inference Protocol v2, batched across requests.

Every protocol ends in the same place: a request body handed to the TorchServe handler's
own code (serving/handler_adapter.py) inside a batch that ``RequestBatcher`` gathers from
concurrent requests, so admission, the cost cap, per-request errors and the answer-size
limit are those of TorchServe's ``/predictions``, message for message. A refused request
raises ``Refused``; serving/kserve_server.py turns it into the same JSON error body
(``code``, ``type``, ``message``; v1/v2 also carry ``error``, as KServe clients read it).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from handlers.event_handler import REASONS
from handlers.parsing import RequestError
from handlers.protocols import TooLarge, bound
from serving.handler_adapter import answer_batch, load_handler
from serving.model_source import ModelSource
from serving.oip_tensors import INPUT_TYPES, OUTPUT, OUTPUT_TYPES, answer_elements, request_events
from serving.request_batcher import QueueFull, RequestBatcher

TYPES = {**{code: reason.replace(" ", "") for code, reason in REASONS.items()}, 503: "ServiceUnavailable"}


class Refused(InvalidInput):
    """One request's refusal: its status and the handler's message (gRPC reads it as INVALID_ARGUMENT)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "type": TYPES.get(self.code, "Error"), "message": self.message}


class EventModel(Model):
    def __init__(self, name: str, source: ModelSource, gpu_id: int | None = None, max_waiting: int = 256) -> None:
        super().__init__(name)
        self.source, self.gpu_id, self.max_waiting = source, gpu_id, max_waiting
        self.handler: Any = None
        self.batcher: RequestBatcher | None = None

    def load(self) -> bool:
        self.batcher = RequestBatcher(lambda bodies: answer_batch(self.handler, bodies), self.source.batch_size,
                                      self.source.max_batch_delay_ms / 1000, self.max_waiting)
        # Loaded on the thread its batches run on: one OpenMP pool (serving/request_batcher.py).
        self.handler = self.batcher.on_model_thread(load_handler, self.source.model_dir, self.source.settings,
                                                    self.gpu_id)
        self.ready = True
        return self.ready

    def stop(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        super().stop()

    async def answer(self, body: Any) -> tuple[int, str]:
        """(status, JSON text) for one request body, as TorchServe's ``/predictions`` answers it."""
        try:
            return await self.batcher.submit(body)
        except QueueFull as exc:
            return 503, json.dumps(Refused(503, str(exc)).body())

    async def answer_or_raise(self, body: Any) -> Any:
        code, text = await self.answer(body)
        answer = json.loads(text)
        if code != 200:
            raise Refused(code, answer["message"])
        return answer

    def get_input_types(self) -> list[dict[str, Any]]:
        return INPUT_TYPES

    def get_output_types(self) -> list[dict[str, Any]]:
        return OUTPUT_TYPES

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if isinstance(payload, InferRequest):
            return await self._infer(payload)
        if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
            raise Refused(400, 'send {"instances": [event, ...]}: each event a JSON object with '
                               "title/description or text, or plain text")
        try:  # counted before any work, with the message and status TorchServe's KServe path gives
            bound(len(payload["instances"]), "instances", self.source.settings)
        except TooLarge as exc:
            raise Refused(413, str(exc)) from None
        return {"predictions": await self.answer_or_raise(payload["instances"])}

    async def _infer(self, request: InferRequest) -> InferResponse:
        try:
            events = request_events(request.inputs, self.source.settings)
        except TooLarge as exc:
            raise Refused(413, str(exc)) from None
        except RequestError as exc:
            raise Refused(400, str(exc)) from None
        answers = await self.answer_or_raise(events)
        elements = answer_elements(answers)
        # Binary outputs where the request asks for them (REST) or sent raw tensors itself (gRPC).
        return InferResponse(response_id=request.id or str(uuid.uuid4()), model_name=self.name,
                             infer_outputs=[InferOutput(OUTPUT, [len(elements)], "BYTES", elements)],
                             use_binary_outputs=request.use_binary_outputs, requested_outputs=request.request_outputs)
