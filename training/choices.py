"""The run's choices on the validation split, made in one place, and hierarchy.json written once.

``settle_on_val`` takes the levels as trained (the run folder and its hierarchy, in memory)
and the val rows, and makes each choice on the cascade the run will serve, in this order:
1. lexical weights: a TF-IDF model per level, mixed in where it helps (training/lexical_fit.py);
2. decoding: greedy or joint (training/decoding.py);
3. the paths level: its weight, and the paths head's and the TF-IDF paths model's shares;
4. abstention: the scope model fitted on train (or none, for a rule on path_score alone) and
   the threshold that keeps the target share of val answers (training/abstain.py).
Then it writes the final hierarchy once, atomically, and removes from the run what that
hierarchy does not read (the paths head, the TF-IDF paths model, unused features).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from handlers.cascade import Cascade
from handlers.hierarchy import Hierarchy
from handlers.run_layout import LEXICAL_DIR, LEXICAL_FEATURES, PATHS_DIR, PATHS_LEXICAL, SCOPE_DIR
from table.scoring import Evaluation, evaluate_frame
from training.abstain import choose_abstention
from training.config import TrainingConfig
from training.decoding import choose_decoding, choose_paths_weight
from training.lexical_fit import add_lexical_models


@dataclass
class Settled:
    """The run as val settled it: its final hierarchy, the cascade that serves it, val's
    evaluation under every choice (None without val rows), and what each choice saw."""

    hierarchy: Hierarchy
    cascade: Cascade
    val: Evaluation | None
    choices: dict[str, Any] = field(default_factory=dict)  # metrics.json: decoding, paths_head, abstention
    lexical: dict[str, Any] | None = None  # the lexical models' weights and features (metrics.json's long_text)


def settle_on_val(run_dir: Path, hierarchy: Hierarchy, frame: pd.DataFrame, config: TrainingConfig) -> Settled:
    """Make the run's val choices in order, then write hierarchy.json (the only time a run does)."""
    train, val = frame[frame.split == "train"], frame[frame.split == "val"]
    lexical = None
    if config.lexical == "auto":
        hierarchy, lexical = add_lexical_models(run_dir, hierarchy, train, val, config.seed)
    # precision auto: scored as a default archive serves on this machine
    cascade = Cascade(run_dir, max_batch=config.eval_batch_size, hierarchy=hierarchy)
    choices: dict[str, Any] = {}
    tried = choose_decoding(cascade, val, config.decoding, choices)
    val_given = next(iter(tried.values())).given if tried else None
    if choose_paths_weight(cascade, val, choices, config.paths_weight) > 0:
        tried = {}  # the paths level changes the answers: val is scored again (not its taxonomy-given part)
    result = None
    if not val.empty:
        result = tried.get(cascade.decoding) or evaluate_frame(cascade, val, given=val_given)
        choose_abstention(cascade, run_dir, train, val, result, config.abstain_coverage, config.abstain_score,
                          choices)
    write_run(run_dir, cascade.hierarchy)
    return Settled(cascade.hierarchy, cascade, result, choices, lexical)


def write_run(run_dir: Path, hierarchy: Hierarchy) -> None:
    """Remove what ``hierarchy`` does not read of what training left for the choices, then
    write hierarchy.json."""
    paths = hierarchy.paths
    if paths is None or paths.checkpoint != PATHS_DIR:
        shutil.rmtree(run_dir / PATHS_DIR, ignore_errors=True)
    if paths is None or paths.lexical != PATHS_LEXICAL:
        shutil.rmtree(run_dir / PATHS_LEXICAL, ignore_errors=True)
    if hierarchy.lexical_features != LEXICAL_FEATURES:
        shutil.rmtree(run_dir / LEXICAL_FEATURES, ignore_errors=True)
    if hierarchy.abstention.folder != SCOPE_DIR:
        shutil.rmtree(run_dir / SCOPE_DIR, ignore_errors=True)
    lexical = run_dir / LEXICAL_DIR
    if lexical.is_dir() and not any(lexical.iterdir()):
        lexical.rmdir()  # no empty folder in the run
    hierarchy.save(run_dir)
