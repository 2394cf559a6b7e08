"""The hierarchy a table of events implies (labels sorted, one checkpoint folder per model),
and the run's layout on a shared trunk (one trunk, a top per level, the paths head).

Training builds the hierarchy once and carries it in memory as the run takes shape; it is
written to hierarchy.json once, when the choices on val are made (training/choices.py).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from handlers.hierarchy import Hierarchy, HierarchyError, Level, Trunk
from handlers.run_layout import PATHS_DIR, SUBTAXONOMY_DIR, TAXONOMY_DIR, TOP_FILE, TRUNK_DIR, WEIGHTS_FILE
from handlers.text import TextFormat
from handlers.trunk import in_trunk


def slugify(label: str, taken: set[str] | None = None) -> str:
    """A folder name for a label: lowercase ASCII, unique among ``taken``."""
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "label"
    if taken is not None:
        base, n = slug, 2
        while slug in taken:
            slug, n = f"{base}-{n}", n + 1
        taken.add(slug)
    return slug


def build_hierarchy(
    pairs: list[tuple[str, str]],
    text: TextFormat,
    base_model: dict[str, Any] | None = None,
) -> Hierarchy:
    """The hierarchy implied by (taxonomy, subtaxonomy) pairs, labels sorted."""
    children: dict[str, set[str]] = {}
    for tax, sub in pairs:
        children.setdefault(tax, set()).add(sub)
    taken: set[str] = {TAXONOMY_DIR}  # lexical models are stored by slug beside the taxonomy level's
    subtaxonomies = {}
    for tax in sorted(children):
        labels = tuple(sorted(children[tax]))
        folder = f"{SUBTAXONOMY_DIR}/{slugify(tax, taken)}" if len(labels) > 1 else None
        subtaxonomies[tax] = Level(labels, folder)
    return Hierarchy(
        text=text,
        taxonomy=Level(tuple(sorted(children)), TAXONOMY_DIR if len(children) > 1 else None),
        subtaxonomies=subtaxonomies,
        base_model=dict(base_model or {}),
    )


def store_trunk(run_tmp: Path, hierarchy: Hierarchy, warmup: Path, top_layers: int, paths_head: bool) -> Hierarchy:
    """The trained run as it is stored on a shared trunk: the warm-up kept as the paths head
    (``paths_head``), then every level split into the one trunk and its top."""
    if paths_head:
        hierarchy = keep_paths_head(hierarchy, warmup, run_tmp)
    return split_run(run_tmp, hierarchy, top_layers)


def keep_paths_head(hierarchy: Hierarchy, warmup: Path, run_tmp: Path) -> Hierarchy:
    """The path warm-up, kept in the run as the paths head (its weight is chosen on val later).

    Its lower layers are the trunk, so on the trunk it costs one top pass per event.
    """
    if hierarchy.single_level or not (warmup / "config.json").is_file():
        return hierarchy
    shutil.copytree(warmup, run_tmp / PATHS_DIR)
    config = json.loads((warmup / "config.json").read_text(encoding="utf-8"))
    labels = tuple(config["id2label"][str(i)] for i in range(len(config["id2label"])))
    return dataclasses.replace(hierarchy, paths=Level(labels, PATHS_DIR))


def split_run(run_dir: str | Path, hierarchy: Hierarchy, top_layers: int) -> Hierarchy:
    """Turn a run of whole checkpoints, trained with the lower layers frozen, into trunk + tops.

    Every level must hold exactly the trunk's tensors below its top: that is checked, so a
    level whose lower layers moved in training is an error here, not a silent accuracy loss
    at serving. Returns the hierarchy that records the trunk (the caller saves it).
    """
    run_dir = Path(run_dir)
    folders = hierarchy.checkpoints()
    if not folders:
        return hierarchy
    config = json.loads((run_dir / folders[0] / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "distilbert":
        raise HierarchyError(f"{folders[0]}: a shared trunk needs a DistilBERT checkpoint, not "
                             f"{config.get('model_type')!r}")
    trunk_layers = max(0, config["n_layers"] - top_layers)
    first = load_file(str(run_dir / folders[0] / WEIGHTS_FILE))
    trunk = {key: value for key, value in first.items() if in_trunk(key, trunk_layers)}
    tops = {}
    for folder in folders:
        state = first if folder == folders[0] else load_file(str(run_dir / folder / WEIGHTS_FILE))
        moved = [key for key in trunk if key not in state or not torch.equal(state[key], trunk[key])]
        if moved:
            raise HierarchyError(f"{folder}: {len(moved)} tensors below the top {trunk_layers} layers differ from "
                                 f"{folders[0]}'s (e.g. {moved[0]}): the levels do not share a trunk")
        tops[folder] = {key: value for key, value in state.items() if not in_trunk(key, trunk_layers)}
    (run_dir / TRUNK_DIR).mkdir()
    for key in ("id2label", "label2id", "architectures", "problem_type"):
        config.pop(key, None)
    (run_dir / TRUNK_DIR / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_file(trunk, str(run_dir / TRUNK_DIR / WEIGHTS_FILE), metadata={"format": "pt"})
    for folder, top in tops.items():
        save_file(top, str(run_dir / folder / TOP_FILE), metadata={"format": "pt"})
        (run_dir / folder / WEIGHTS_FILE).unlink()
    return dataclasses.replace(hierarchy, trunk=Trunk(TRUNK_DIR, trunk_layers))
