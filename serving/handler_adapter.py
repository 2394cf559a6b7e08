"""The TorchServe handler's own code, driven without TorchServe: load a model folder, answer a batch.

``handlers.event_handler.EventTaxonomyHandler`` reads a context for its model folder and
settings, and writes each request's status into it. The two small classes here are those
contexts, so another server (serving/kserve_server.py) runs the very same admission, cost
cap, per-request isolation and answer-size check as TorchServe's worker does, with no
TorchServe import and no copy of that logic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from handlers.event_handler import EventTaxonomyHandler
from handlers.settings import HandlerSettings


class LoadContext:
    """What ``initialize`` reads: the model folder, the device and the ``handler:`` settings."""

    def __init__(self, model_dir: Path, settings: HandlerSettings, gpu_id: int | None = None) -> None:
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": gpu_id}
        self.model_yaml_config = {"handler": settings.to_mapping()}


class BatchContext:
    """What ``handle`` writes: each request's status (200 unless set). No metrics: the caller counts."""

    metrics = None

    def __init__(self) -> None:
        self.status: dict[int, int] = {}

    def set_response_status(self, code: int, phrase: str = "", idx: int = 0) -> None:
        self.status[idx] = code

    def set_response_content_type(self, idx: int, content_type: str) -> None:
        pass  # every answer is JSON


def load_handler(model_dir: Path, settings: HandlerSettings, gpu_id: int | None = None) -> EventTaxonomyHandler:
    handler = EventTaxonomyHandler()
    handler.initialize(LoadContext(model_dir, settings, gpu_id))
    return handler


def answer_batch(handler: EventTaxonomyHandler, bodies: list[Any]) -> list[tuple[int, str]]:
    """(status, JSON text) per body, in order: one handler call for the whole batch.

    A body is what TorchServe would hand over: bytes, a str, or JSON already parsed.
    """
    context = BatchContext()
    answers = handler.handle([{"body": body} for body in bodies], context)
    return [(context.status.get(i, 200), answer) for i, answer in enumerate(answers)]


def torchserve_body(content_type: str, raw: bytes) -> Any:
    """A body as TorchServe's worker hands it to the handler (ts/protocol/otf_message_handler.py):
    parsed JSON for exactly ``application/json``, text for ``text/*``, bytes otherwise, and the
    bytes unchanged whenever that decoding fails."""
    if content_type == "application/json":
        try:
            return json.loads(raw.decode("utf-8"))
        except Exception:  # noqa: BLE001 - TorchServe forwards the bytes; the parser names the fault
            return raw
    if content_type.startswith("text"):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw
    return raw
