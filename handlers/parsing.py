"""Turning one HTTP request body into events, or into a message saying what is wrong.

TorchServe hands the handler a body that is already-parsed JSON (``application/json``),
a str (``text/*``) or bytes (anything else, e.g. ``curl -T``). All three forms land here,
and every way a body can be wrong raises ``RequestError`` with a sentence a user can act
on; nothing else escapes, so a bad request can never take the worker down.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

TEXT_FIELDS = ("title", "description", "text")


class RequestError(ValueError):
    """A request the caller must fix (answered 400)."""


@dataclass(frozen=True)
class Limits:
    """Caps on one request, set from the archive's model-config.yaml ``handler:`` section."""

    max_items: int = 64
    max_top_k: int = 10
    default_top_k: int = 3
    max_body_chars: int = 1_000_000


@dataclass
class ParsedRequest:
    events: list[dict[str, Any]]
    top_k: list[int]
    is_array: bool


def parse_request(body: Any, limits: Limits = Limits()) -> ParsedRequest:
    """Events and their top_k from one request body; ``RequestError`` when unusable."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError(f"body is not valid UTF-8 (byte {exc.start})") from None
    if isinstance(body, str):
        if len(body) > limits.max_body_chars:
            raise RequestError(f"body has {len(body)} characters; the limit is {limits.max_body_chars}")
        stripped = body.strip()
        if not stripped:
            raise RequestError("body is empty: send a JSON object with title/description, or plain text")
        if stripped[0] in "{[":
            try:
                body = json.loads(stripped)
            except (json.JSONDecodeError, RecursionError) as exc:
                message = getattr(exc, "msg", "nesting too deep")
                where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
                raise RequestError(f"malformed JSON{where}: {message}") from None
        else:
            body = {"text": stripped}
    if body is None:
        raise RequestError("body is empty: send a JSON object with title/description, or plain text")

    if isinstance(body, list):
        if not body:
            raise RequestError("the array is empty: send at least one event")
        if len(body) > limits.max_items:
            raise RequestError(f"the array has {len(body)} events; the limit is {limits.max_items} per request")
        events, ks = [], []
        for index, item in enumerate(body):
            event, k = _parse_event(item, limits, f"item {index}: ")
            events.append(event)
            ks.append(k)
        return ParsedRequest(events, ks, True)
    event, k = _parse_event(body, limits, "")
    return ParsedRequest([event], [k], False)


def _parse_event(item: Any, limits: Limits, where: str) -> tuple[dict[str, Any], int]:
    if isinstance(item, str):
        item = {"text": item}
    if not isinstance(item, dict):
        raise RequestError(
            f"{where}expected a JSON object with title/description or text, got {_json_type(item)}"
        )
    event: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        value = item.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise RequestError(f"{where}field {name!r} must be a string, got {_json_type(value)}")
        event[name] = value
    if "text" in event and ("title" in event or "description" in event):
        raise RequestError(f"{where}send either 'text' or 'title'/'description', not both")
    if not any(v.strip() for v in event.values()):
        present = [n for n in TEXT_FIELDS if n in item]
        if present:
            raise RequestError(f"{where}{' and '.join(present)} {'is' if len(present) == 1 else 'are'} empty")
        raise RequestError(f"{where}no text: give 'title' and/or 'description', or 'text'")
    if "id" in item:
        if not isinstance(item["id"], (str, int)) or isinstance(item["id"], bool):
            raise RequestError(f"{where}'id' must be a string or an integer")
        event["id"] = item["id"]
    k = item.get("top_k", limits.default_top_k)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= limits.max_top_k:
        raise RequestError(f"{where}'top_k' must be an integer from 1 to {limits.max_top_k}, got {json.dumps(k)[:40]}")
    return event, k


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
