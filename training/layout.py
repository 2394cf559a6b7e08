"""The hierarchy a table of events implies (labels sorted, one checkpoint folder per model),
and the run's final layout on a shared trunk (one trunk, a top per level, the paths head).

Training builds the hierarchy once; from then on hierarchy.json (handlers/hierarchy.py) is
the record.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path
from typing import Any

from handlers.hierarchy import Hierarchy, Level

from handlers.run_layout import PATHS_DIR, SUBTAXONOMY_DIR, TAXONOMY_DIR
from handlers.text import TextFormat
from handlers.trunk import split_run


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


def store_trunk(run_tmp: Path, hierarchy: Hierarchy, warmup: Path, top_layers: int, paths_head: bool) -> None:
    """The trained run as it is stored on a shared trunk: the warm-up kept as the paths head
    (``paths_head``), then every level split into the one trunk and its top."""
    if paths_head:
        hierarchy = keep_paths_head(hierarchy, warmup, run_tmp)
    split_run(run_tmp, hierarchy, top_layers).save(run_tmp)


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
