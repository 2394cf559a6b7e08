"""Turning one HTTP request body into events, or into a message saying what is wrong.

With config.properties' ``decode_input_request=false`` TorchServe hands the handler every
body as bytes, parsed here one request at a time (parsed by TorchServe, a whole batch of
JSON bodies is held at once: docs/security.md); with TorchServe's default, a body is
already-parsed JSON (``application/json``), a str (``text/*``) or bytes. All forms land here,
and every way a body can be wrong raises ``RequestError`` with a sentence a user can act
on. The handler still catches anything else per request (see event_handler.py), but every
case known to break a parser (huge numbers, deep nesting, lone surrogates, huge ids) is
named here, with a message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from handlers.settings import HandlerSettings

TEXT_FIELDS = ("title", "description", "text")
# An integer id must fit the 64-bit integers most JSON clients use.
MAX_ID_INT = 2**63 - 1


class RequestError(ValueError):
    """A request the caller must fix (answered 400)."""


@dataclass
class ParsedRequest:
    events: list[dict[str, Any]]
    top_k: list[int]
    is_array: bool
    min_score: list[float | None] | None = None  # per event, the caller's abstention threshold (None: the run's)


def request_body(request: Any) -> Any:
    """One request's body as TorchServe hands it over: under "body" or "data", depending on the client."""
    if not isinstance(request, dict):
        return None
    body = request.get("body")
    return request.get("data") if body is None else body


def parse_request(body: Any, limits: HandlerSettings = HandlerSettings()) -> ParsedRequest:
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
            except json.JSONDecodeError as exc:
                raise RequestError(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
            except RecursionError:
                raise RequestError("malformed JSON: nesting too deep") from None
            except ValueError as exc:  # e.g. an integer of more than 4300 digits
                raise RequestError(f"unusable JSON: {str(exc)[:120]}") from None
        else:
            body = {"text": stripped}
    if body is None:
        raise RequestError("body is empty: send a JSON object with title/description, or plain text")

    if isinstance(body, list):
        if not body:
            raise RequestError("the array is empty: send at least one event")
        if len(body) > limits.max_items:
            raise RequestError(f"the array has {len(body)} events; the limit is {limits.max_items} per request")
        events, ks, floors = [], [], []
        for index, item in enumerate(body):
            event, k = _parse_event(item, limits, f"item {index}: ")
            events.append(event)
            ks.append(k)
            floors.append(_parse_min_score(item, f"item {index}: "))
        return ParsedRequest(events, ks, True, floors)
    event, k = _parse_event(body, limits, "")
    return ParsedRequest([event], [k], False, [_parse_min_score(body, "")])


def _parse_min_score(item: Any, where: str) -> float | None:
    """The caller's abstention threshold for this event: answers scoring below it abstain."""
    value = item.get("min_score") if isinstance(item, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise RequestError(f"{where}'min_score' must be a number from 0 to 1, got {_describe(value)}")
    return float(value)


def _parse_event(item: Any, limits: HandlerSettings, where: str) -> tuple[dict[str, Any], int]:
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
        _check_encodable(value, f"{where}field {name!r}")
        event[name] = value
    if "text" in event and ("title" in event or "description" in event):
        raise RequestError(f"{where}send either 'text' or 'title'/'description', not both")
    if not any(v.strip() for v in event.values()):
        present = [n for n in TEXT_FIELDS if n in item]
        if present:
            raise RequestError(f"{where}{' and '.join(present)} {'is' if len(present) == 1 else 'are'} empty")
        raise RequestError(f"{where}no text: give 'title' and/or 'description', or 'text'")
    if "id" in item:
        event["id"] = _parse_id(item["id"], limits, where)
    k = item.get("top_k", limits.top_k)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= limits.max_top_k:
        raise RequestError(f"{where}'top_k' must be an integer from 1 to {limits.max_top_k}, got {_describe(k)}")
    return event, k


def _parse_id(value: Any, limits: HandlerSettings, where: str) -> str | int:
    """The caller's id, echoed in the answer: capped, so an answer can never outgrow its request."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RequestError(f"{where}'id' must be a string or an integer, got {_json_type(value)}")
    if isinstance(value, int) and not -MAX_ID_INT <= value <= MAX_ID_INT:
        raise RequestError(f"{where}'id' must be an integer of at most 64 bits, or a string")
    if isinstance(value, str):
        if len(value) > limits.max_id_chars:
            raise RequestError(f"{where}'id' has {len(value)} characters; the limit is {limits.max_id_chars}")
        _check_encodable(value, f"{where}'id'")
    return value


def _check_encodable(value: str, what: str) -> None:
    """JSON escapes can carry a lone UTF-16 surrogate ("\\ud800") that no UTF-8 text holds."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestError(f"{what} holds an unpaired UTF-16 surrogate at character {exc.start}: "
                           "send valid Unicode text") from None


def _describe(value: Any) -> str:
    """A short, safe rendering of a bad value for a message (never the value's whole size)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        digits = len(str(abs(value)))
        return str(value) if digits <= 20 else f"an integer of {digits} digits"
    if isinstance(value, float):
        return repr(value)[:24]
    if isinstance(value, str):
        return json.dumps(value[:20] + ("..." if len(value) > 20 else ""))
    return _json_type(value)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
