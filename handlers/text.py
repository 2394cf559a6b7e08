"""How an event becomes the text and the tokens a model reads: one place, for training and serving.

Nothing here imports torch or TorchServe; the format itself is stored in hierarchy.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


class TextFormatError(ValueError):
    """A text format that cannot be used."""


TRUNCATIONS = ("head", "head_tail", "windows")
# Two windows read head and tail as two passes: on long posts within 0.3 points of four
# windows, at 1.6x instead of 2.7x the cost of one 128-token pass (docs/results.md).
DEFAULT_MAX_WINDOWS = 2


@dataclass(frozen=True)
class TextFormat:
    """How title and description are joined, and how much of them a model sees.

    ``max_chars`` caps characters before tokenizing: a tokenizer spends seconds on a
    multi-megabyte string even when it truncates to a few hundred tokens afterwards.
    ``truncation`` says which tokens a text longer than ``max_length`` keeps: its ``head``,
    or ``head_tail`` (the first half and the last half of the budget), so the end of a long
    description, where places, dates and prices often sit, is read too; or ``windows``: up to
    ``max_windows`` windows of ``max_length`` tokens spread evenly from the first token to the
    last, each read on its own, their probabilities averaged per event (handlers/cascade.py)
    and each labelled with its event's label in training. A text of up to ``max_windows``
    windows is read whole, with overlaps; a longer one is sampled, its head and tail always.
    """

    fields: tuple[str, ...] = ("title", "description")
    separator: str = ". "
    max_length: int = 128
    max_chars: int = 2048
    truncation: str = "head"
    max_windows: int = DEFAULT_MAX_WINDOWS

    def __post_init__(self) -> None:
        if self.truncation not in TRUNCATIONS:
            raise TextFormatError(f"truncation must be one of {list(TRUNCATIONS)}, not {self.truncation!r}")
        if self.max_length < 8:
            raise TextFormatError(f"max_length must be at least 8 tokens, not {self.max_length}")
        if self.max_windows < 1:
            raise TextFormatError(f"max_windows must be at least 1, not {self.max_windows}")

    def token_windows(self, tokenizer: Any, texts: list[str]) -> list[list[list[int]]]:
        """Per text, the token id windows a model reads: one, or several under ``windows``.

        Training and serving both call this, so a model never sees text cut differently
        from how it was trained.
        """
        if self.truncation != "windows":
            return [[ids] for ids in self.token_ids(tokenizer, texts)]
        body = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        prefix, suffix, room = self._frame(tokenizer)
        out = []
        for ids in body:
            count = self._count(len(ids), room)
            if count == 1:
                starts = [0]
            else:  # evenly spread: the first window starts the text, the last one ends it
                starts = [round(i * (len(ids) - room) / (count - 1)) for i in range(count)]
            out.append([prefix + ids[s : s + room] + suffix for s in starts])
        return out

    def window_counts(self, tokenizer: Any, texts: list[str]) -> list[int]:
        """Per text, how many windows ``token_windows`` makes of it (1 unless ``windows``):
        what the handler's cost cap charges, so a short text is not billed as a long one."""
        if self.truncation != "windows":
            return [1] * len(texts)
        room = self._frame(tokenizer)[2]
        body = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        return [self._count(len(ids), room) for ids in body]

    def _count(self, tokens: int, room: int) -> int:
        return min(self.max_windows, max(1, -(-tokens // room)))

    def _frame(self, tokenizer: Any) -> tuple[list[int], list[int], int]:
        """The special tokens around one text ([CLS] ... [SEP] for the BERT family) and the room left."""
        specials = tokenizer("")["input_ids"]
        return specials[:1], specials[1:], self.max_length - len(specials)

    def token_ids(self, tokenizer: Any, texts: list[str]) -> list[list[int]]:
        """One window of token ids per text, cut to ``max_length`` by ``head`` or ``head_tail``
        (``windows`` reads its first window here: see ``token_windows``)."""
        if self.truncation == "windows":
            return [windows[0] for windows in self.token_windows(tokenizer, texts)]
        if self.truncation == "head":
            return tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        body = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        prefix, suffix, room = self._frame(tokenizer)
        head = room // 2
        cut = [ids if len(ids) <= room else ids[:head] + ids[len(ids) - (room - head):] for ids in body]
        return [prefix + ids + suffix for ids in cut]

    def format(self, event: Mapping[str, Any]) -> str:
        """One string per event, the same in training, evaluation and serving.

        A ready-made ``text`` wins over the fields, so callers that already have one
        string (plain-text requests) need no fields.
        """
        text = event.get("text")
        if text is None:
            parts = []
            for name in self.fields:
                value = event.get(name)
                if value is None:
                    continue
                value = str(value).strip()
                if value:
                    parts.append(value)
            text = self.separator.join(parts)
        return " ".join(str(text)[: self.max_chars].split())
