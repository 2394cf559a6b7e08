"""The scope score: how much an answer looks like the answers of the run's val split, 0 to 1.

Abstention (handlers/abstention.py) reads it on a run whose rule is ``scope``. Three signals,
each higher when the event is more like the train split:
  path_score   the answer's own;
  taxonomy     minus the smallest Mahalanobis distance of the taxonomy top's [CLS] state (the
               first position's last hidden state, which the head reads) to a path's centroid,
               one covariance shared by every path;
  subtaxonomy  minus the smallest Mahalanobis distance of the [CLS] state of the answer's
               taxonomy's own subtaxonomy top to that taxonomy's leaf centroids, a covariance
               per taxonomy (a taxonomy with no subtaxonomy model: the taxonomy top's state).
Each signal becomes its rank among the val answers' (the share of them at or below it), and
the scope score is the mean of the three ranks. Training fits the centroids and whitening on
the train split and keeps the val signals (training/scope_fit.py); the run stores them in one
file. No TorchServe import here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from handlers.abstention import SCOPE_SCORE
from handlers.answers import round_score
from handlers.encoded import PathScores

SCOPE_FILE = "scope.safetensors"
SIGNALS = ("path_score", "taxonomy", "subtaxonomy")
TIE_MARGIN = 1e-5  # relative: signals this close to a val answer's rank with it (``_lifted``)


class Distances:
    """Class centroids and a whitening matrix W (precision = W Wᵀ), stored in float32 and used
    in float64: ``score`` is minus the smallest squared Mahalanobis distance to a centroid."""

    def __init__(self, whiten: torch.Tensor, centroids: torch.Tensor) -> None:
        self.whiten = whiten.float().double()  # as stored, so training scores val as serving will
        self.centroids = centroids.float().double()  # already whitened: means @ whiten
        self.norms = (self.centroids**2).sum(dim=1)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        z = features.double() @ self.whiten
        distances = (z**2).sum(dim=1, keepdim=True) - 2 * z @ self.centroids.T + self.norms
        return -distances.min(dim=1).values


class ScopeModel:
    """The fitted distances and the val signals the ranks are read against (each sorted)."""

    def __init__(self, taxonomy: Distances, subtaxonomies: Mapping[str, Distances],
                 val: Mapping[str, torch.Tensor] | None = None) -> None:
        self.taxonomy = taxonomy
        self.subtaxonomies = dict(subtaxonomies)
        self.val = {name: torch.sort(values.double()).values for name, values in (val or {}).items()}

    def signals(self, path_scores: Sequence[float], taxonomy_cls: torch.Tensor, subtaxonomy_cls: torch.Tensor,
                taxonomies: Sequence[str]) -> dict[str, torch.Tensor]:
        """Per answer, the three signals; ``subtaxonomy_cls[i]`` is the state of answer i's
        taxonomy's own top, ``taxonomies[i]`` that taxonomy."""
        sub = torch.full((len(taxonomies),), float("-inf"), dtype=torch.float64)
        members: dict[str, list[int]] = {}
        for i, taxonomy in enumerate(taxonomies):
            members.setdefault(taxonomy, []).append(i)
        for taxonomy, rows in members.items():
            if taxonomy in self.subtaxonomies:
                sub[rows] = self.subtaxonomies[taxonomy].score(subtaxonomy_cls[rows])
        return {"path_score": torch.tensor(list(path_scores), dtype=torch.float64),
                "taxonomy": self.taxonomy.score(taxonomy_cls), "subtaxonomy": sub}

    def answer_signals(self, answers: Sequence[Mapping[str, Any]], scores: PathScores,
                       taxonomy_labels: Sequence[str]) -> dict[str, torch.Tensor]:
        """``signals`` of a cascade's answers from the scores they were made of (computed with
        the [CLS] states: ``Cascade.with_first``)."""
        if scores.taxonomy_first is None or scores.subtaxonomy_first is None:
            raise ValueError("the scope score needs the taxonomy model's [CLS] states: this run's taxonomy "
                             "level has no model, or the cascade did not compute them")
        index = {label: t for t, label in enumerate(taxonomy_labels)}
        taxonomies = [answer["path"][0] for answer in answers]
        own = [scores.subtaxonomy_first[i].get(index[taxonomy], scores.taxonomy_first[i])
               for i, taxonomy in enumerate(taxonomies)]
        path_scores = [float(answer["path_score"]) for answer in answers]
        return self.signals(path_scores, scores.taxonomy_first, torch.stack(own), taxonomies)

    def add_scores(self, answers: Sequence[dict[str, Any]], scores: PathScores,
                   taxonomy_labels: Sequence[str]) -> None:
        """Give each answer its ``scope_score`` from the scores it was made of."""
        self.assign(answers, self.answer_signals(answers, scores, taxonomy_labels))

    def assign(self, answers: Sequence[dict[str, Any]], signals: Mapping[str, torch.Tensor]) -> None:
        """Give each answer its ``scope_score`` from its signals (rounded as the answers' scores are)."""
        for answer, value in zip(answers, self.scores(signals).tolist()):
            answer[SCOPE_SCORE] = round_score(value)

    def scores(self, signals: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The scope score of each answer: the mean of its signals' ranks among val's."""
        if set(self.val) != set(SIGNALS):
            raise ValueError("the scope model has no val signals to rank against")
        ranks = [torch.searchsorted(self.val[name], _lifted(signals[name].double()), right=True).double()
                 / len(self.val[name]) for name in SIGNALS]
        return torch.stack(ranks).mean(dim=0)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        names = list(self.subtaxonomies)
        tensors = {"taxonomy.whiten": self.taxonomy.whiten.float(), "taxonomy.centroids": self.taxonomy.centroids.float()}
        for j, name in enumerate(names):
            tensors[f"subtaxonomy.{j}.whiten"] = self.subtaxonomies[name].whiten.float()
            tensors[f"subtaxonomy.{j}.centroids"] = self.subtaxonomies[name].centroids.float()
        tensors.update({f"val.{name}": values for name, values in self.val.items()})
        path = folder / SCOPE_FILE
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path),
                  metadata={"subtaxonomies": json.dumps(names, ensure_ascii=False)})
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "ScopeModel":
        path = Path(folder) / SCOPE_FILE
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as handle:
            names = json.loads((handle.metadata() or {}).get("subtaxonomies", "[]"))
        taxonomy = Distances(tensors["taxonomy.whiten"], tensors["taxonomy.centroids"])
        subtaxonomies = {name: Distances(tensors[f"subtaxonomy.{j}.whiten"], tensors[f"subtaxonomy.{j}.centroids"])
                         for j, name in enumerate(names)}
        val = {name: tensors[f"val.{name}"] for name in SIGNALS if f"val.{name}" in tensors}
        return cls(taxonomy, subtaxonomies, val)


def _lifted(values: torch.Tensor) -> torch.Tensor:
    """Each signal raised by ``TIE_MARGIN`` of its size (at least 1): a val answer served again
    computes its signals in another batch, a few float32 roundings apart, and must still rank at
    or above its own val entry, as training ranked it."""
    margin = torch.nan_to_num(TIE_MARGIN * values.abs().clamp(min=1.0), posinf=0.0)
    return (values + margin).contiguous()


def check_scope(folder: Path, width: int | None = None) -> str | None:
    """Why the run's scope model cannot be read, or does not fit states ``width`` wide, or None."""
    path = folder / SCOPE_FILE
    if not path.is_file():
        return f"{path} not found"
    try:
        model = ScopeModel.load(folder)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported by name
        return f"{path} is not readable: {type(exc).__name__}: {exc}"
    if set(model.val) != set(SIGNALS):
        return f"{path} has no val signals"
    widths = {d.whiten.shape[0] for d in [model.taxonomy, *model.subtaxonomies.values()]}
    if width is not None and widths != {width}:
        return f"{path} measures states {sorted(widths)} wide, but the run's models are {width} wide"
    return None
