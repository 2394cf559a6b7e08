"""What the cascade computes between text and answers: events as the models read them, and
the probabilities a batch's answers are made of. No TorchServe import here."""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch


class PathScores(NamedTuple):
    """The probabilities of a batch's answers (``Cascade.path_scores``)."""

    taxonomy: torch.Tensor
    subtaxonomy: list[dict[int, torch.Tensor]]  # per event, by candidate taxonomy index
    paths: torch.Tensor | None
    # The [CLS] states the scope score reads (handlers/scope.py), when the cascade computes them:
    taxonomy_first: torch.Tensor | None = None  # events x width
    subtaxonomy_first: list[dict[int, torch.Tensor]] | None = None  # per event, by taxonomy index

    def of(self, i: int) -> tuple[torch.Tensor, dict[int, torch.Tensor], torch.Tensor | None]:
        return self.taxonomy[i], self.subtaxonomy[i], None if self.paths is None else self.paths[i]


class Encoded(NamedTuple):
    """Events as the models read them: token id windows for the transformers (one per event
    unless the text format reads windows; ``owner`` says whose each is), texts for TF-IDF,
    on a shared trunk its hidden states per window, and the run's TF-IDF features per event
    (each computed once, read by every level)."""

    ids: list[list[int]]
    texts: list[str]
    states: list[torch.Tensor] | None = None
    owner: list[int] | None = None
    lexical: Any = None  # a scipy sparse matrix, one row per event

    def take(self, rows: Sequence[int]) -> "Encoded":
        """The events ``rows`` (in that order) with their windows."""
        owner = self.owner if self.owner is not None else list(range(len(self.ids)))
        windows: dict[int, list[int]] = {}
        for w, event in enumerate(owner):
            windows.setdefault(event, []).append(w)
        picked = [(new, w) for new, event in enumerate(rows) for w in windows[event]]
        states = None if self.states is None else [self.states[w] for _, w in picked]
        return Encoded([self.ids[w] for _, w in picked], [self.texts[i] for i in rows], states,
                       [new for new, _ in picked], None if self.lexical is None else self.lexical[list(rows)])
