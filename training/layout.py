"""The hierarchy a table of events implies: labels sorted, one checkpoint folder per model.

Training builds it once; from then on hierarchy.json (handlers/hierarchy.py) is the record.
"""

from __future__ import annotations

import re
from typing import Any

from handlers.hierarchy import SUBTAXONOMY_DIR, TAXONOMY_DIR, Hierarchy, Level
from handlers.text import TextFormat


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
