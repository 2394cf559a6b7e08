"""Generated bodies in-process: the parser answers a ParsedRequest or a RequestError, nothing else;
and hostile Unicode text costs the lexical transform no more than plain text of the same cap.

The same properties are checked over HTTP in test_robustness.py and test_batch_isolation.py;
here they run fast and can reach sizes (huge integers, deep nesting, lone surrogates, texts
at the character cap) that would dominate an HTTP run.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.lexical import FAMILIES
from handlers.parsing import RequestError, parse_request
from handlers.text import TextFormat
from handlers.tfidf import TermVectorizer

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


# Characters that grow under NFKD or lower-casing, or that a reader does not see.
HOSTILE_TEXT = {
    "U+FDFA (18 letters under NFKD)": "\ufdfa",
    "U+FDFA between spaces": "\ufdfa ",
    "U+3300 squared katakana": "\u3300",
    "U+FB03 ffi ligature": "\ufb03",
    "combining-mark flood": "a" + "\u0301" * 40,
    "dotted capital I (2 characters lower-cased)": "\u0130",
    "RTL override and zero-width": "\u202e\u200b\u200d\u2067ab",
    "fullwidth and circled": "\uff21\u2474\u3392 ",
}
MAX_CHARS = 8192  # the text format training writes for the default 128 tokens x 2 windows (training/reading.py)
PLAIN_WORST = {"one long word": "a" * MAX_CHARS, "one accented word": "\u00e9" * MAX_CHARS, "short words": ("abcdefg " * MAX_CHARS)[:MAX_CHARS],
               "two-letter words": ("ab " * MAX_CHARS)[:MAX_CHARS],
               "hyphenated (one word to split, many to regex)": ("ab-" * MAX_CHARS)[:MAX_CHARS]}


def lexical_costs(texts: list[str], vectorizers: list[TermVectorizer], rounds: int = 7) -> list[tuple[int, float]]:
    """Per formatted text, the terms read and the fastest of ``rounds`` transforms' CPU seconds
    (this thread's: time the machine gives other processes is not counted), the texts taken in
    turn each round, so what remains of a busy machine slows them all alike."""
    seconds = [[] for _ in texts]
    for _ in range(rounds):
        for i, text in enumerate(texts):
            started = time.thread_time()
            sum(len(v.terms(text)) for v in vectorizers)
            seconds[i].append(time.thread_time() - started)
    return [(sum(len(v.terms(text)) for v in vectorizers), min(s)) for text, s in zip(texts, seconds)]


def run_vectorizers(max_chars: int = MAX_CHARS) -> list[TermVectorizer]:
    return [TermVectorizer(family, {}, np.ones(1), max_chars) for family in FAMILIES]


@pytest.mark.parametrize("case", list(HOSTILE_TEXT))
def test_hostile_unicode_costs_the_lexical_transform_no_more_than_plain_text(case: str) -> None:
    """The bound is the cap's: the worst plain text of MAX_CHARS characters, measured here."""
    fmt, vectorizers = TextFormat(max_chars=MAX_CHARS), run_vectorizers()
    text = fmt.format({"text": HOSTILE_TEXT[case] * MAX_CHARS})
    assert all(len(v.normalise(text)) <= MAX_CHARS for v in vectorizers)
    *plain, (terms, seconds) = lexical_costs([fmt.format({"text": t}) for t in PLAIN_WORST.values()] + [text],
                                             vectorizers)
    worst_terms, worst_seconds = max(t for t, _ in plain), max(s for _, s in plain)
    assert terms <= worst_terms, f"{terms} terms, the worst plain text of {MAX_CHARS} characters makes {worst_terms}"
    assert seconds <= 3 * worst_seconds, f"{seconds * 1e3:.1f} ms, the worst plain text takes {worst_seconds * 1e3:.1f}"


hostile_texts = st.text(alphabet=st.sampled_from([*"".join(HOSTILE_TEXT.values()), "a", "Z", " ", "-", "\u00e9"]),
                        min_size=1, max_size=600)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(hostile_texts, st.integers(16, 600))
def test_the_terms_of_any_text_are_bounded_by_the_cap(text: str, max_chars: int) -> None:
    """At most 3 character n-grams and 2/3 of a word n-gram per character: 4 per character of the cap."""
    vectorizers = run_vectorizers(max_chars)
    formatted = TextFormat(max_chars=max_chars).format({"text": text * 20})
    assert all(len(v.normalise(formatted)) <= max_chars for v in vectorizers)
    assert sum(len(v.terms(formatted)) for v in vectorizers) <= 4 * max_chars
