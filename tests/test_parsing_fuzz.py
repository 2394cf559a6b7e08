"""Generated bodies in-process: the parser answers a ParsedRequest or a RequestError, nothing else.

The same property is checked over HTTP in test_robustness.py; here it runs fast and can
reach sizes (huge integers, deep nesting, lone surrogates) that would dominate an HTTP run.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.parsing import RequestError, parse_request

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                      max_leaves=15)
huge_ints = st.integers(4000, 6000).map(lambda n: '{"title": "a", "top_k": ' + "9" * n + "}")
deep = st.integers(500, 3000).map(lambda d: '{"title": "a", "top_k": ' + "[" * d + "]" * d + "}")
deep_objects = st.integers(500, 3000).map(lambda d: '{"a":' * d + "1" + "}" * d)
surrogates = st.sampled_from(["title", "description", "text", "id"]).flatmap(
    lambda f: st.integers(0xD800, 0xDFFF).map(lambda c: '{"%s": "x\\u%04x"}' % (f, c)))
events = st.fixed_dictionaries({}, optional={
    "title": st.text(max_size=40) | st.integers(), "description": st.text(max_size=40) | values,
    "text": st.text(max_size=20), "top_k": st.integers(-2, 12) | values, "id": values | st.text(max_size=300),
})


def accepts_or_explains(body) -> None:
    try:
        parsed = parse_request(body)
    except RequestError as exc:
        assert str(exc)
        return
    json.dumps([parsed.events, parsed.top_k])  # whatever is accepted can be answered
    for event in parsed.events:
        for value in event.values():
            if isinstance(value, str):
                value.encode("utf-8")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.one_of(huge_ints, deep, deep_objects, surrogates))
def test_hostile_json_text(body: str) -> None:
    accepts_or_explains(body)
    accepts_or_explains(body.encode("utf-8"))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.one_of(values, events, st.lists(events, max_size=70), st.binary(max_size=200),
                 st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass"))))
def test_generated_values(body) -> None:
    accepts_or_explains(body)
