"""KServe's two inference protocols, spoken by the handler itself.

TorchServe routes ``POST /v1/models/NAME:predict`` (KServe v1) and ``POST
/v2/models/NAME/infer`` (Open Inference Protocol v2) to the handler with the body as sent
when no service envelope is set. Unwrapping here, rather than in TorchServe's envelopes,
keeps each HTTP request one item of TorchServe's batch, so KServe requests are batched like
``/predictions`` ones, and it bounds a request before any work is done: TorchServe's
envelopes turn every instance into a batch item of its own and read only the first request
of a batch.

    v1:  {"instances": [EVENT, ...]}  or  {"instances": [{"data": EVENT or [EVENT, ...]}, ...]}
         -> {"predictions": [ANSWER, ...]}              (JSON objects, or arrays for arrays)
    v2:  {"id": ..., "inputs": [{"name": N, "datatype": "BYTES", "shape": [n], "data": [TEXT, ...]}]}
         -> {"id", "model_name", "model_version", "outputs": [{"name": N, "datatype": "BYTES",
             "shape": [n], "data": [ANSWER-AS-JSON-TEXT, ...]}]}

Any other body is /predictions' own (handlers/parsing.py). No TorchServe import.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from handlers.parsing import TEXT_FIELDS, RequestError
from handlers.settings import HandlerSettings

V1, V2 = "v1", "v2"


class TooLarge(RequestError):
    """A request over a bound that must be checked before any work (answered 413)."""


@dataclass
class Envelope:
    """One HTTP request's bodies in /predictions' own form, and how to wrap their answers."""

    protocol: str | None  # None: a /predictions body
    bodies: list[Any]
    labels: list[str]  # where each body sits in the request, for messages
    inputs: list[tuple[str, int]] = field(default_factory=list)  # v2: (name, elements) per input
    request_id: str | None = None


def unwrap(body: Any, limits: HandlerSettings) -> Envelope:
    """The request's bodies; ``TooLarge`` past ``max_items`` events, ``RequestError`` when malformed."""
    body = _json_object(body, limits)
    if not isinstance(body, dict) or not ({"instances", "inputs"} & body.keys()) or set(TEXT_FIELDS) & body.keys():
        return Envelope(None, [body], [""])
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise RequestError("'instances' must be a non-empty array of events")
        bound(len(instances), "instances", limits)
        bodies = [_instance(item) for item in instances]
        bound(sum(len(b) if isinstance(b, list) else 1 for b in bodies), "events", limits)
        return Envelope(V1, bodies, [f"instance {i}: " for i in range(len(bodies))])
    inputs = body["inputs"]
    if not isinstance(inputs, list) or not inputs:
        raise RequestError("'inputs' must be a non-empty array of BYTES tensors")
    bodies, labels, shapes = [], [], []
    for index, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("data"), list):
            raise RequestError(f"input {index}: expected an object with a 'data' array")
        name, data = tensor.get("name"), tensor["data"]
        if not isinstance(name, str) or not name or len(name) > limits.max_id_chars:
            raise RequestError(f"input {index}: 'name' must be a string of 1 to {limits.max_id_chars} characters")
        if tensor.get("datatype") != "BYTES":
            raise RequestError(f"input {name}: 'datatype' must be BYTES (events as JSON text)")
        bound(len(data) + sum(n for _, n in shapes), "elements", limits)
        if tensor.get("shape", [len(data)]) != [len(data)]:
            raise RequestError(f"input {name}: 'shape' must be [{len(data)}], the length of 'data'")
        if not data:
            raise RequestError(f"input {name}: 'data' is empty")
        shapes.append((name, len(data)))
        bodies += data
        labels += [f"input {name} element {j}: " for j in range(len(data))]
    request_id = body.get("id")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > limits.max_id_chars):
        raise RequestError(f"'id' must be a string of at most {limits.max_id_chars} characters")
    return Envelope(V2, bodies, labels, shapes, request_id)


def wrap(envelope: Envelope, answers: list[Any], model: tuple[str, str], request_id: str) -> str:
    """The JSON text of a KServe answer: ``answers`` are objects (or arrays), one per body."""
    if envelope.protocol == V1:
        return json.dumps({"predictions": answers})
    outputs, start = [], 0
    for name, count in envelope.inputs:
        data = [json.dumps(a) for a in answers[start : start + count]]
        outputs.append({"name": name, "datatype": "BYTES", "shape": [count], "data": data})
        start += count
    return json.dumps({"id": envelope.request_id or request_id, "model_name": model[0], "model_version": model[1],
                       "outputs": outputs})


def _json_object(body: Any, limits: HandlerSettings) -> Any:
    """A body TorchServe left as bytes (decode_input_request=false) that holds a JSON object, parsed;
    anything else as it came, for handlers/parsing.py to read or to explain."""
    if isinstance(body, (bytes, bytearray)) and len(body) <= limits.max_body_chars:
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return body
    if isinstance(body, str) and len(body) <= limits.max_body_chars and body.lstrip().startswith("{"):
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            return body
    return body


def _instance(item: Any) -> Any:
    """A v1 instance: an event, or {"data": EVENT or [EVENT, ...]} as TorchServe's envelope took it."""
    if isinstance(item, dict) and "data" in item and not set(TEXT_FIELDS) & item.keys():
        return item["data"]
    return item


def bound(count: int, what: str, limits: HandlerSettings) -> None:
    """``TooLarge`` when a request holds more than ``max_items`` instances, elements or events."""
    if count > limits.max_items:
        raise TooLarge(f"this request has {count} {what}; the limit is {limits.max_items} events per request: "
                       "split it into several requests")
