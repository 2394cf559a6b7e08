"""The hierarchical predictor: taxonomy first, then the subtaxonomy model of that taxonomy.

Used by the TorchServe handler and by ``training.evaluate`` alike, so offline metrics and
served answers come from the same code. No TorchServe import here.

Batching: every event of a call goes through one taxonomy pass; events are then grouped
by taxonomy and each group goes through its subtaxonomy model once. Within a pass, events
are sorted by length and padded only to the longest of their chunk. On a run with a shared
trunk (handlers/trunk.py) the trunk runs once per event, in ``encode``, and each level pass
runs only that level's top layers on the trunk's hidden states.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from transformers import AutoTokenizer

from handlers import abstention, ranking, routing
from handlers.answers import LevelAnswer, PathAnswer, level_answer
from handlers.precision import bf16_linears, resolve_precision
from handlers.checkpoints import load_model
from handlers.encoded import Encoded, PathScores
from handlers.hierarchy import Hierarchy, Level
from handlers.level_pass import LevelPass, run_level, trunk_states
from handlers.scope import ScopeModel
from handlers.run_layout import TOKENIZER_DIR
from handlers.lexical import LexicalFeatures, LexicalModel
from handlers.ranking import PathColumns
from handlers.run_dir import check_run_dir

Event = Mapping[str, Any]


class Cascade:
    """Loads a run directory (or an extracted archive) and predicts full paths; ``hierarchy``,
    when given, stands for its hierarchy.json (checked against the run's files all the same).

    ``beam_min_prob``: with ``top_k`` > 1, other taxonomies at least this likely also get their
    subtaxonomy model run, so the top-k paths can span taxonomies. ``decoding`` (hierarchy.json's,
    unless given): ``greedy`` predicts the best taxonomy, then its best subtaxonomy; ``joint`` runs
    the subtaxonomy models of the ``beam_width`` likeliest taxonomies (those at least
    ``beam_min_prob`` likely) and predicts the path with the highest product, so a confident second
    level can overrule an unsure first one; training picks the better on val. Either way the
    prediction does not depend on ``top_k``.

    ``quantize="int8"`` runs each checkpoint's ``model.int8.onnx`` (handlers/onnx_int8.py) with
    ONNX Runtime instead of the fp32 safetensors with torch.

    ``precision="bf16"`` runs the torch models under bfloat16 autocast, their Linear weights stored
    in bf16 once (``precision.bf16_linears``): two to three times faster on CPUs with native bf16
    (avx512_bf16, AMX), slower on others; ``"auto"`` picks bf16 on such a CPU and fp32 elsewhere (and
    on GPUs), as a default archive serves: offline scores match served answers (``self.precision``).

    ``routing=False`` runs every candidate taxonomy's subtaxonomy model, not only those an answer
    can need (handlers/routing.py): the same answers, more passes; for benchmarks.
    """

    def __init__(
        self,
        run_dir: str | Path,
        device: str | torch.device = "cpu",
        max_batch: int = 64,
        beam_min_prob: float = 0.05,
        decoding: str | None = None,
        beam_width: int = 3,
        quantize: str | None = None,
        precision: str = "auto",
        routing: bool = True,
        hierarchy: Hierarchy | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.hierarchy: Hierarchy = check_run_dir(self.run_dir, hierarchy)
        self.device = torch.device(device)
        self.max_batch = max(1, int(max_batch))
        self.beam_min_prob = float(beam_min_prob)
        self.decoding = decoding or self.hierarchy.decoding
        if self.decoding not in ("greedy", "joint"):
            raise ValueError(f"decoding must be 'greedy' or 'joint', not {self.decoding!r}")
        self.beam_width, self.routing = max(1, int(beam_width)), routing
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.run_dir / TOKENIZER_DIR))
        self.pad_id = self.tokenizer.pad_token_id or 0
        if quantize not in (None, "", "int8"):
            raise ValueError(f"quantize must be 'int8' or empty, not {quantize!r}")
        self.precision = resolve_precision(precision, self.device, quantize)
        self.trunk = load_model(self.run_dir, self.hierarchy, self.hierarchy.trunk.folder, self.device, quantize,
                                trunk=True) if self.hierarchy.trunk else None
        self.models: dict[str, Any] = {folder: load_model(self.run_dir, self.hierarchy, folder, self.device, quantize)
                                       for folder in self.hierarchy.checkpoints()}
        if self.precision == "bf16":
            for model in [self.trunk, *self.models.values()]:
                bf16_linears(model)
        self.paths_weight = self.hierarchy.paths_weight if self.hierarchy.paths is not None else 0.0
        self.columns: PathColumns | None = None  # where each path sits among the paths level's labels
        if self.hierarchy.paths is not None:
            self.index_paths(self.hierarchy.paths.labels)
        features = self.hierarchy.lexical_features
        max_chars = self.hierarchy.text.max_chars  # the lexical transform's cap too (handlers/tfidf.py)
        self.lexical_features = LexicalFeatures.load(self.run_dir / features, max_chars) if features else None
        # Lexical models whose weight is 0 are not loaded: they would cost time and change nothing.
        levels = self.hierarchy.levels() + ([self.hierarchy.paths] if self.hierarchy.paths is not None else [])
        self.lexical = {level.lexical: LexicalModel.load(self.run_dir / level.lexical, self.lexical_features,
                                                          max_chars)
                        for level in levels if level.lexical and level.lexical_weight > 0}
        self.scope = ScopeModel.load(self.run_dir / folder) if (folder := self.hierarchy.abstention.folder) else None
        self.with_first = self.scope is not None  # the levels' [CLS] states, which the scope score reads

    def index_paths(self, labels: Sequence[str]) -> None:
        """Read path scores against these paths level labels (handlers/ranking.py)."""
        self.columns = PathColumns(self.hierarchy, labels)

    # -- text -> model inputs ------------------------------------------------------------
    def window_counts(self, events: Sequence[Event]) -> list[int]:
        """Windows per event as ``encode`` will cut them (1 each unless the format reads windows)."""
        fmt = self.hierarchy.text
        return fmt.window_counts(self.tokenizer, [fmt.format(event) for event in events])

    def encode(self, events: Sequence[Event]) -> Encoded:
        """Texts, token id windows (one per event unless the text format reads windows), on a
        shared trunk the trunk's hidden states of every window, and the run's TF-IDF features
        when a lexical model reads them."""
        fmt = self.hierarchy.text
        texts = [fmt.format(event) for event in events]
        windows = fmt.token_windows(self.tokenizer, texts)
        ids = [w for per_event in windows for w in per_event]
        owner = [i for i, per_event in enumerate(windows) for _ in per_event]
        features = self.lexical_features
        lexical = features.transform(texts) if features is not None and any(
            model.features is features for model in self.lexical.values()) else None
        states = None if self.trunk is None else trunk_states(self.trunk, ids, self.max_batch, self.pad_id,
                                                              self.device, self.precision)
        return Encoded(ids, texts, states, owner, lexical)

    # -- one level -----------------------------------------------------------------------
    def level_probs(self, level: Level, inputs: Encoded) -> torch.Tensor:
        """Class probabilities of one level; with a lexical model, the mix chosen on val
        (at weight 1 the lexical model's alone: no model pass)."""
        return self.level_pass(level, inputs, with_first=False).probs

    def level_pass(self, level: Level, inputs: Encoded, with_first: bool | None = None) -> LevelPass:
        """``level_probs`` and, with ``with_first`` (default: when the scope score needs them),
        the model's [CLS] states (None at lexical weight 1, or with no model)."""
        with_first = self.with_first if with_first is None else with_first
        if level.lexical not in self.lexical:
            return self._model_pass(level, inputs, with_first)
        lexical = torch.from_numpy(self.lexical_probs(self.lexical[level.lexical], inputs))
        if level.lexical_weight >= 1.0:
            return LevelPass(lexical, None)
        model = self._model_pass(level, inputs, with_first)
        return LevelPass((1 - level.lexical_weight) * model.probs + level.lexical_weight * lexical, model.first)

    def lexical_probs(self, model: LexicalModel, inputs: Encoded) -> Any:
        """A lexical model's probabilities, from the batch's features when it reads the run's."""
        shared = inputs.lexical is not None and model.features is self.lexical_features
        return model.predict_proba(inputs.texts, inputs.lexical if shared else None)

    def _model_probs(self, level: Level, inputs: Encoded) -> torch.Tensor:
        """Per event, the model's probabilities: the mean over the event's windows."""
        return self._model_pass(level, inputs, False).probs

    def _model_pass(self, level: Level, inputs: Encoded, with_first: bool) -> LevelPass:
        return run_level(self.models.get(level.checkpoint), len(level.labels), inputs, self.max_batch, self.pad_id,
                         self.device, self.precision, with_first)

    def passes(self, top_k: int, windows: int | None = None) -> int:
        """The most model passes one event with this ``top_k`` can cost, for the handler's cap
        (``routing.max_passes``); ``windows``: the event's, as ``window_counts`` counts them."""
        return routing.max_passes(self.hierarchy, self.decoding, self.beam_width, self.paths_weight, top_k, windows)

    # -- the cascade ---------------------------------------------------------------------
    def predict(
        self,
        events: Sequence[Event],
        top_k: int | Sequence[int] = 1,
        timings: dict[str, float] | None = None,
        min_score: float | Sequence[float | None] | None = None,
    ) -> list[PathAnswer] | list[LevelAnswer]:
        """JSON-ready answers, one per event, in order: a ``PathAnswer`` each for a cascade, a
        ``LevelAnswer`` each for a single-level archive; each says whether it abstains, and on a
        run whose rule reads it a path answer carries its ``scope_score`` (handlers/scope.py).

        ``top_k`` is one number for all events or one per event; ``min_score`` likewise, the
        caller's abstention threshold (None: hierarchy.json's rule, handlers/abstention.py).
        ``timings``, when given, receives the milliseconds per level (``TAXONOMY_MS``, ``SUBTAXONOMY_MS``).
        """
        n = len(events)
        if n == 0:
            return []
        ks = [int(top_k)] * n if isinstance(top_k, int) else [int(k) for k in top_k]
        if len(ks) != n:
            raise ValueError(f"{len(ks)} top_k values for {n} events")
        if self.hierarchy.single_level:
            tax_probs = self.level_probs(self.hierarchy.taxonomy, self.encode(events))
            answers = [level_answer(self.hierarchy.taxonomy.labels, tax_probs[i], ks[i]) for i in range(n)]
        else:
            answers, scores = self.path_answers(events, ks, timings)
            if self.scope is not None:
                self.scope.add_scores(answers, scores, self.hierarchy.taxonomy.labels)
        return abstention.mark(answers, self.hierarchy.abstention, min_score)

    def path_answers(self, events: Sequence[Event], ks: Sequence[int],
                     timings: dict[str, float] | None = None) -> tuple[list[PathAnswer], PathScores]:
        """A cascade's answers before abstention, and the scores they were made of."""
        scores = self.path_scores(events, ks, timings)
        return [self.path_answer(*scores.of(i), ks[i]) for i in range(len(events))], scores

    def path_scores(self, events: Sequence[Event], ks: Sequence[int],
                    timings: dict[str, float] | None = None) -> PathScores:
        """Every probability the answers are made of: the taxonomy level's, the subtaxonomy
        levels' of the taxonomies each answer needs (handlers/routing.py), and the paths
        level's when it is mixed in."""
        clock, inputs = time.perf_counter(), self.encode(events)
        tax = self.level_pass(self.hierarchy.taxonomy, inputs)
        paths = self.level_probs(self.hierarchy.paths, inputs) if self.paths_weight > 0 else None
        _add(timings, TAXONOMY_MS, clock)
        clock = time.perf_counter()
        firsts: list[dict[int, torch.Tensor]] | None = [{} for _ in events] if self.with_first else None
        sub_probs = self.routed_passes(inputs, tax.probs, paths, ks, firsts)
        _add(timings, SUBTAXONOMY_MS, clock)
        return PathScores(tax.probs, sub_probs, paths, tax.first, firsts)

    def candidate_taxonomies(self, tax_probs: torch.Tensor, ks: Sequence[int],
                             paths: torch.Tensor | None = None) -> list[set[int]]:
        """Per event, the taxonomies whose subtaxonomy model may run (``routing.candidate_taxonomies``)."""
        return routing.candidate_taxonomies(tax_probs, ks, self._best_path_taxonomy(paths), self.decoding,
                                            self.beam_width, self.beam_min_prob)

    def _best_path_taxonomy(self, paths: torch.Tensor | None) -> list[int] | None:
        return None if paths is None or self.columns is None else self.columns.best_taxonomies(paths)

    def routed_passes(self, inputs: Encoded, tax_probs: torch.Tensor, paths: torch.Tensor | None,
                      ks: Sequence[int], firsts: list[dict[int, torch.Tensor]] | None = None
                      ) -> list[dict[int, torch.Tensor]]:
        """Per event, subtaxonomy probabilities of the candidate taxonomies its answer needs:
        first the sure ones, then the other candidates whose paths could still score into its
        top k. The answers are those of running every candidate (see handlers/routing.py).
        ``firsts``, when given, receives each pass's [CLS] states likewise."""
        best_path = self._best_path_taxonomy(paths)
        candidates = self.candidate_taxonomies(tax_probs, ks, paths)
        if not self.routing:
            return [dict(sorted(f.items())) for f in self.subtaxonomy_passes(inputs, candidates, firsts)]
        found = self.subtaxonomy_passes(inputs, routing.sure_taxonomies(tax_probs, best_path), firsts)
        rest: list[set[int]] = [chosen - got.keys() for chosen, got in zip(candidates, found)]
        if not any(rest):
            return [dict(sorted(f.items())) for f in found]
        weight = self.paths_weight if paths is not None else 0.0
        bounds = routing.score_bounds(tax_probs, paths, weight, self.columns.taxonomy if self.columns else None)
        for i, k in enumerate(ks):
            if rest[i]:
                ranked = self.ranked_paths(tax_probs[i], found[i], None if paths is None else paths[i])
                floor = routing.kth_best([score for score, _, _ in ranked], k)
                rest[i] = {t for t in rest[i] if float(bounds[i, t]) >= floor}
        if any(rest):
            for i, more in enumerate(self.subtaxonomy_passes(inputs, rest, firsts)):
                found[i].update(more)
        return [dict(sorted(f.items())) for f in found]

    def subtaxonomy_passes(self, inputs: Encoded, candidates: Sequence[set[int]],
                           firsts: list[dict[int, torch.Tensor]] | None = None) -> list[dict[int, torch.Tensor]]:
        """Per event, subtaxonomy probabilities by taxonomy index: one pass per taxonomy model
        (``firsts``, when given, receives the [CLS] states of the passes that have them)."""
        members_of: dict[int, list[int]] = {}
        for i, chosen in enumerate(candidates):
            for t in chosen:
                members_of.setdefault(t, []).append(i)
        found: list[dict[int, torch.Tensor]] = [{} for _ in candidates]
        for t, members in members_of.items():
            level = self.hierarchy.subtaxonomies[self.hierarchy.taxonomy.labels[t]]
            probs, first = self.level_pass(level, inputs.take(members), with_first=firsts is not None)
            for row, i in enumerate(members):
                found[i][t] = probs[row]
                if firsts is not None and first is not None:
                    firsts[i][t] = first[row]
        return found

    def path_answer(self, tax_probs: torch.Tensor, sub_probs: dict[int, torch.Tensor], paths: torch.Tensor | None,
                    k: int) -> PathAnswer:
        """The predicted path and the k likeliest paths among those computed (handlers/ranking.py):
        greedy decoding keeps the likeliest taxonomy; joint decoding, or any mix with the
        paths level, the best-scoring path."""
        best_scored = self.decoding == "joint" or (paths is not None and self.paths_weight > 0)
        return ranking.path_answer(self.hierarchy, tax_probs, sub_probs,
                                   self.ranked_paths(tax_probs, sub_probs, paths), best_scored, k)

    def ranked_paths(self, tax_probs: torch.Tensor, sub_probs: dict[int, torch.Tensor],
                     paths: torch.Tensor | None) -> ranking.Ranked:
        """(score, taxonomy index, subtaxonomy index) of every computed path, best first."""
        weight = self.paths_weight if paths is not None else 0.0
        return ranking.ranked_paths(tax_probs, sub_probs, paths, weight, self.columns)


TAXONOMY_MS, SUBTAXONOMY_MS = "taxonomy_ms", "subtaxonomy_ms"


def _add(timings: dict[str, float] | None, key: str, since: float) -> None:
    if timings is not None:
        timings[key] = timings.get(key, 0.0) + (time.perf_counter() - since) * 1000
