"""Events in and answers out as Open Inference Protocol (v2) tensors.

Input ``events``: BYTES, shape [N] (any shape of N elements is read flat), one event per
element, each a JSON object as ``/predictions`` takes it ({"title", "description"} or
{"text"}, with "top_k" and "id" optional) or plain text. Output ``answers``: BYTES, shape
[N], each element the JSON answer ``/predictions`` gives for that event. Every element is
read by handlers/parsing.py, so its errors and limits are those of ``/predictions``.
"""

from __future__ import annotations

import json
from typing import Any

from handlers.parsing import RequestError, parse_request
from handlers.protocols import bound
from handlers.settings import HandlerSettings

INPUT, OUTPUT = "events", "answers"
INPUT_TYPES = [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}]
OUTPUT_TYPES = [{"name": OUTPUT, "datatype": "BYTES", "shape": [-1]}]


def request_events(inputs: list[Any], limits: HandlerSettings) -> list[dict[str, Any]]:
    """The events of a v2 request's inputs (kserve InferInput objects), each with its top_k;
    ``RequestError`` naming the element at fault."""
    names = [tensor.name for tensor in inputs]
    if names != [INPUT]:
        raise RequestError(f"send one input named {INPUT!r} (BYTES, shape [N], one JSON event per element), "
                           f"not {names}")
    tensor = inputs[0]
    if tensor.datatype != "BYTES":
        raise RequestError(f"input {INPUT!r} must be BYTES (one JSON event per element), not {tensor.datatype}")
    try:
        elements = tensor.as_numpy().reshape(-1).tolist()
    except (ValueError, TypeError) as exc:
        raise RequestError(f"input {INPUT!r} does not match its shape {tensor.shape}: {str(exc)[:120]}") from None
    if not elements:
        raise RequestError(f"input {INPUT!r} is empty: send at least one event")
    bound(len(elements), f"elements in input {INPUT!r}", limits)
    events = []
    for index, element in enumerate(elements):
        if not isinstance(element, (str, bytes)):
            raise RequestError(f"element {index}: expected a JSON event as text, got {type(element).__name__}")
        try:
            parsed = parse_request(element, limits)
        except RequestError as exc:
            raise RequestError(f"element {index}: {exc}") from None
        if parsed.is_array:
            raise RequestError(f"element {index}: one event per element, not an array")
        events.append({**parsed.events[0], "top_k": parsed.top_k[0]})
    return events


def answer_elements(answers: list[Any]) -> list[str]:
    """The ``answers`` tensor's elements: one JSON text per event."""
    return [json.dumps(answer) for answer in answers]
