"""The configuration of one training run: typed, frozen, resolved once.

training/options.py declares the flags (defaults and help); ``parse_config`` turns them into
a ``TrainingConfig``. What depends on the CPU or the data (``precision``, ``truncation``,
``top_layers`` given as ``auto``) is resolved once, early, into a new config
(``dataclasses.replace``); nothing changes a config afterwards, and training.json records
the resolved one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from table.events import Columns
from training.options import parse_args


class UsageError(Exception):
    """A run that cannot start (bad data, a taken output, a missing extra): the message is
    printed as ``error: ...`` and the run exits with status 2, having written nothing."""


@dataclass(frozen=True)
class TrainingConfig:
    """Every option of ``python -m training.train`` (see training/options.py for each one's help)."""

    data: str
    output: str
    overwrite: bool
    title_column: str
    description_column: str
    taxonomy_column: str
    subtaxonomy_column: str
    split_column: str
    separator: str
    seed: int
    base_model: str | None
    max_length: int
    truncation: str  # auto until resolved from the training texts (training/reading.py)
    max_windows: int
    lexical: str
    path_warmup_epochs: float
    top_layers: int | str  # K (0: no shared trunk); auto until resolved from the texts
    epochs: float
    subtaxonomy_epochs: float | None
    learning_rate: float
    subtaxonomy_learning_rate: float | None
    batch_size: int
    eval_batch_size: int
    warmup_ratio: float
    weight_decay: float
    patience: int
    class_weights: str
    decoding: str
    paths_weight: str | float
    abstain_coverage: float | None
    abstain_score: str
    precision: str  # auto until resolved by the CPU: then bf16 or fp32
    threads: int | None
    parallel_models: int
    quiet: bool
    tracking_uri: str | None
    experiment: str
    energy: bool
    energy_country: str

    @property
    def columns(self) -> Columns:
        return Columns(self.title_column, self.description_column, self.taxonomy_column,
                       self.subtaxonomy_column, self.split_column)

    @property
    def paths_head(self) -> bool:
        """Whether the path warm-up may be kept as a paths head (its weight chosen on val)."""
        return self.paths_weight != "off"

    @property
    def bf16(self) -> bool:
        """CPU training under bf16 autocast (``precision`` resolved)."""
        return self.precision == "bf16"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_config(argv: list[str] | None = None, description: str | None = None) -> TrainingConfig:
    """The command line as a config, nothing resolved yet."""
    return TrainingConfig(**vars(parse_args(argv, description)))
