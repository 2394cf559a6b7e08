"""Request bodies in every form TorchServe hands them over, good and bad."""

from __future__ import annotations

import pytest

from handlers.parsing import RequestError, parse_request
from handlers.settings import HandlerSettings


@pytest.mark.parametrize(
    "body, events",
    [
        ({"title": "Jazz", "description": "Trio"}, [{"title": "Jazz", "description": "Trio"}]),
        ({"description": "Trio", "title": None}, [{"description": "Trio"}]),
        ({"text": "Jazz trio"}, [{"text": "Jazz trio"}]),
        ("Jazz trio tonight", [{"text": "Jazz trio tonight"}]),
        (b"Jazz trio tonight\n", [{"text": "Jazz trio tonight"}]),
        (b'{"title": "Jazz"}', [{"title": "Jazz"}]),
        ('  {"title": "Jazz", "id": 7}', [{"title": "Jazz", "id": 7}]),
        (bytearray("Caf\u00e9 \u266b".encode()), [{"text": "Caf\u00e9 \u266b"}]),
    ],
)
def test_single_event_forms(body, events) -> None:
    parsed = parse_request(body)
    assert parsed.events == events
    assert parsed.is_array is False
    assert parsed.top_k == [HandlerSettings().top_k]


def test_arrays_keep_order_and_per_item_top_k() -> None:
    parsed = parse_request([{"title": "a"}, "plain b", {"text": "c", "top_k": 1}])
    assert parsed.is_array
    assert parsed.events == [{"title": "a"}, {"text": "plain b"}, {"text": "c"}]
    assert parsed.top_k == [3, 3, 1]
    assert parsed.min_score == [None, None, None]
    assert parse_request([{"title": "a", "min_score": 0}, {"title": "b", "min_score": 0.25}]).min_score == [0.0, 0.25]
    assert parse_request({"text": "a", "min_score": 1}).min_score == [1.0]


@pytest.mark.parametrize(
    "body, message",
    [
        (None, "body is empty"),
        (b"", "body is empty"),
        ("   \n", "body is empty"),
        (b"\xff\xfe", "not valid UTF-8"),
        (b'{"title": ', "malformed JSON at line 1"),
        ("[1, 2", "malformed JSON"),
        ("[" * 100_000 + "]" * 100_000, "malformed JSON"),
        ([], "array is empty"),
        ([{"title": "a"}] * 65, "65 events; the limit is 64"),
        (42, "got a number"),
        ([{"title": "ok"}, 3.5], "item 1: expected a JSON object"),
        ({"title": 5}, "field 'title' must be a string, got a number"),
        ({"description": ["a"]}, "got an array"),
        ({"title": "  ", "description": ""}, "title and description are empty"),
        ({"foo": "bar"}, "no text"),
        ({"text": "a", "title": "b"}, "not both"),
        ({"title": "a", "top_k": 0}, "'top_k' must be an integer from 1 to 10"),
        ({"title": "a", "top_k": "3"}, "'top_k' must be an integer"),
        ({"title": "a", "top_k": True}, "'top_k' must be an integer"),
        ({"title": "a", "id": {"x": 1}}, "'id' must be a string or an integer"),
        ({"title": "a", "min_score": 1.5}, "'min_score' must be a number from 0 to 1, got 1.5"),
        ('{"title": "a", "min_score": NaN}', "'min_score' must be a number from 0 to 1, got nan"),
        ([{"title": "a"}, {"title": "b", "min_score": "0.5"}], "item 1: 'min_score' must be a number"),
    ],
)
def test_bad_bodies_raise_a_request_error_that_says_why(body, message) -> None:
    with pytest.raises(RequestError) as info:
        parse_request(body)
    assert message in str(info.value)


def test_body_size_cap() -> None:
    with pytest.raises(RequestError, match="the limit is 10"):
        parse_request("x" * 11, HandlerSettings(max_body_chars=10))


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


NESTED = _nested(980)  # as TorchServe's json parsing hands it over: too deep to json.dumps again


@pytest.mark.parametrize(
    "body, message",
    [
        ('{"title": "jazz", "top_k": 1' + "1" * 5000 + "}", "unusable JSON"),
        ({"title": "jazz", "top_k": 10**30}, "an integer of 31 digits"),
        ({"title": "jazz", "top_k": "x" * 10_000}, '"xxxxxxxxxxxxxxxxxxxx..."'),
        ({"title": "jazz", "top_k": NESTED}, "got an array"),
        ('{"title": "\\ud800 night"}', "field 'title' holds an unpaired UTF-16 surrogate at character 0"),
        ('{"text": "ok", "id": "a\\udfff"}', "'id' holds an unpaired UTF-16 surrogate at character 1"),
        ({"title": "jazz", "id": "\u00e9" * 400_000}, "'id' has 400000 characters; the limit is 256"),
        ({"title": "jazz", "id": 2**64}, "at most 64 bits"),
        ({"title": "jazz", "id": 1.5}, "got a number"),
    ],
)
def test_hostile_bodies_are_request_errors(body, message) -> None:
    with pytest.raises(RequestError) as info:
        parse_request(body)
    assert message in str(info.value)
    assert len(str(info.value)) < 300  # a message never echoes the hostile value whole


def test_an_id_at_the_limit_is_kept() -> None:
    assert parse_request({"title": "jazz", "id": "x" * 256}).events[0]["id"] == "x" * 256
