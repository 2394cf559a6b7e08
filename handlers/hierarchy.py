"""The run directory's contract: hierarchy.json, label maps, and the files a run must hold.

Training writes ``hierarchy.json`` and serving reads it, so the order of every label list
and the text format (handlers/text.py) are recorded once. Nothing in this module imports
torch or TorchServe: it is cheap to import anywhere.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Mapping

from handlers.abstention import Abstention
from handlers.run_layout import HIERARCHY_FILE
from handlers.text import DEFAULT_MAX_WINDOWS, TextFormat

# 2 added the shared trunk, 3 the lexical features every TF-IDF model reads; runs of version 1
# (one whole checkpoint per level) and 2 (a word vectorizer per TF-IDF model) still load.
SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)


def path_label(taxonomy: str, subtaxonomy: str) -> str:
    """A full path as one class name (the path warm-up's and the paths head's labels)."""
    return f"{taxonomy} / {subtaxonomy}"


class HierarchyError(ValueError):
    """A hierarchy.json that is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class Level:
    """One classifier: its labels in id order and the folder holding its checkpoint.

    ``checkpoint`` is None for a taxonomy with a single subtaxonomy: the answer is
    known without a model. ``lexical`` is the folder of a TF-IDF model over the same labels
    (handlers/lexical.py) whose probabilities are mixed in with ``lexical_weight``; at weight
    1 the lexical model alone reads the level and it needs no checkpoint.
    """

    labels: tuple[str, ...]
    checkpoint: str | None
    lexical: str | None = None
    lexical_weight: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"labels": list(self.labels), "checkpoint": self.checkpoint}
        if self.lexical is not None:
            data["lexical"] = {"folder": self.lexical, "weight": self.lexical_weight}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Level":
        lexical = data.get("lexical") or {}
        return cls(tuple(data["labels"]), data["checkpoint"], lexical.get("folder"),
                   float(lexical.get("weight", 0.0)))

    def __post_init__(self) -> None:
        if not self.labels:
            raise HierarchyError("a level has no labels")
        if len(set(self.labels)) != len(self.labels):
            raise HierarchyError(f"duplicate labels in {list(self.labels)}")
        if self.checkpoint is None and len(self.labels) > 1 and not (self.lexical and self.lexical_weight == 1.0):
            raise HierarchyError(f"labels {list(self.labels)} need a checkpoint (or a lexical model at weight 1)")
        if self.checkpoint is not None:
            check_checkpoint_path(self.checkpoint)
        if self.lexical is not None:
            check_checkpoint_path(self.lexical)
        if not 0.0 <= self.lexical_weight <= 1.0 or (self.lexical_weight and self.lexical is None):
            raise HierarchyError(f"lexical weight {self.lexical_weight} needs a lexical folder and must be from 0 to 1")


def check_checkpoint_path(checkpoint: object) -> None:
    """A checkpoint folder is a relative path inside the run directory: packaging copies it
    into the archive and serving loads from it, so ``/etc`` or ``../x`` would reach outside."""
    if not isinstance(checkpoint, str) or not checkpoint.strip():
        raise HierarchyError(f"checkpoint {checkpoint!r} is not a folder name")
    if "\\" in checkpoint or "\0" in checkpoint:
        raise HierarchyError(f"checkpoint path {checkpoint!r} holds a backslash or NUL: separate folders with '/'")
    if PurePosixPath(checkpoint).is_absolute() or PureWindowsPath(checkpoint).drive:
        raise HierarchyError(f"checkpoint path {checkpoint!r} is absolute: it must be relative to the run directory")
    if ".." in PurePosixPath(checkpoint).parts:
        raise HierarchyError(f"checkpoint path {checkpoint!r} contains '..': it must stay inside the run directory")


@dataclass(frozen=True)
class Trunk:
    """The embeddings and lower ``layers`` transformer layers that every level shares.

    Stored once in ``folder``; each level's folder then holds only its top layers and head
    (``TOP_FILE``), trained on the trunk's frozen hidden states, so serving runs the trunk
    once per event (handlers/trunk.py).
    """

    folder: str
    layers: int

    def __post_init__(self) -> None:
        check_checkpoint_path(self.folder)
        if self.layers < 0:
            raise HierarchyError(f"trunk layers must be 0 or more, not {self.layers}")


@dataclass(frozen=True)
class Hierarchy:
    """Taxonomy level plus one subtaxonomy level per taxonomy.

    A single-level archive (one checkpoint served on its own) has an empty
    ``subtaxonomies`` mapping and ``name`` saying which classifier it is.
    """

    text: TextFormat
    taxonomy: Level
    subtaxonomies: dict[str, Level]
    base_model: dict[str, Any] = field(default_factory=dict)
    name: str = "cascade"
    decoding: str = "greedy"
    trunk: Trunk | None = None
    # The paths level: a flat classifier over every full path whose probabilities are mixed
    # into the cascade's path scores with ``paths_weight`` (chosen on val; at weight 0 a run
    # keeps none). Its checkpoint is the paths head, the path warm-up's own top on the shared
    # trunk; its lexical model a TF-IDF classifier over the paths, mixed in with the level's
    # ``lexical_weight`` (at 1 alone: no head, no pass).
    paths: Level | None = None
    paths_weight: float = 0.0
    # The TF-IDF features every level's lexical model reads (handlers/lexical.py), stored once.
    lexical_features: str | None = None
    # When no path fits (handlers/abstention.py): chosen on val; a run recorded without one never abstains.
    abstention: Abstention = field(default_factory=Abstention)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.lexical_features is not None:
            check_checkpoint_path(self.lexical_features)
        if self.abstention.folder is not None:
            check_checkpoint_path(self.abstention.folder)
            if self.single_level:
                raise HierarchyError("a single-level hierarchy has no scope score to abstain on: use path_score")
        if self.paths is None:
            return
        if not 0.0 <= self.paths_weight <= 1.0:
            raise HierarchyError(f"paths weight {self.paths_weight} must be from 0 to 1")
        known = {path_label(t, s) for t, level in self.subtaxonomies.items() for s in level.labels}
        unknown = sorted(set(self.paths.labels) - known)
        if unknown:
            raise HierarchyError(f"the paths head has labels that are no taxonomy / subtaxonomy pair: {unknown[:3]}")

    @property
    def single_level(self) -> bool:
        return not self.subtaxonomies

    def levels(self) -> list[Level]:
        """Every classifier, taxonomy first."""
        return [self.taxonomy, *self.subtaxonomies.values()]

    def lexical_folders(self) -> list[str]:
        """The lexical features' folder, then every lexical model's (the paths level's too), each once."""
        levels = self.levels() + ([self.paths] if self.paths is not None else [])
        folders = [self.lexical_features] + [lvl.lexical for lvl in levels]
        return list(dict.fromkeys(f for f in folders if f is not None))

    def data_folders(self) -> list[str]:
        """The folders an archive takes from the run besides the tokenizer and the checkpoints:
        the lexical ones, then the scope model's (handlers/scope.py)."""
        scope = [self.abstention.folder] if self.abstention.folder is not None else []
        return list(dict.fromkeys(self.lexical_folders() + scope))

    def checkpoints(self) -> list[str]:
        """Every checkpoint folder, taxonomy first, each once."""
        folders = [self.taxonomy.checkpoint]
        folders += [lvl.checkpoint for lvl in self.subtaxonomies.values()]
        folders += [self.paths.checkpoint] if self.paths is not None else []
        return list(dict.fromkeys(f for f in folders if f is not None))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "decoding": self.decoding,
            "text": {**asdict(self.text), "fields": list(self.text.fields)},
            "base_model": self.base_model,
            "taxonomy": self.taxonomy.to_json(),
            "subtaxonomies": {tax: lvl.to_json() for tax, lvl in self.subtaxonomies.items()},
            "trunk": asdict(self.trunk) if self.trunk else None,
            **({"paths": {**self.paths.to_json(), "weight": self.paths_weight}} if self.paths else {}),
            **({"lexical_features": self.lexical_features} if self.lexical_features else {}),
            **({"abstention": self.abstention.to_json()} if self.abstention != Abstention() else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Hierarchy":
        try:
            version = int(data["schema_version"])
            if version not in READABLE_VERSIONS:
                raise HierarchyError(f"schema_version {version} is not supported "
                                     f"(this code reads {', '.join(map(str, READABLE_VERSIONS))})")
            trunk = data.get("trunk")
            text = data["text"]
            hierarchy = cls(
                text=TextFormat(
                    fields=tuple(text["fields"]),
                    separator=str(text["separator"]),
                    max_length=int(text["max_length"]),
                    max_chars=int(text["max_chars"]),
                    truncation=str(text.get("truncation", "head")),
                    max_windows=int(text.get("max_windows", DEFAULT_MAX_WINDOWS)),
                ),
                taxonomy=Level.from_json(data["taxonomy"]),
                subtaxonomies={tax: Level.from_json(lvl) for tax, lvl in data["subtaxonomies"].items()},
                base_model=dict(data.get("base_model") or {}),
                name=str(data.get("name", "cascade")),
                decoding=str(data.get("decoding", "greedy")),
                trunk=Trunk(str(trunk["folder"]), int(trunk["layers"])) if trunk else None,
                paths=Level.from_json(data["paths"]) if data.get("paths") else None,
                paths_weight=float((data.get("paths") or {}).get("weight", 0.0)),
                lexical_features=str(data["lexical_features"]) if data.get("lexical_features") else None,
                abstention=Abstention.from_json(data.get("abstention")),
                schema_version=SCHEMA_VERSION,
            )
        except HierarchyError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise HierarchyError(f"hierarchy.json is malformed: {type(exc).__name__}: {exc}") from exc
        if hierarchy.taxonomy.checkpoint is None and len(hierarchy.taxonomy.labels) > 1:
            raise HierarchyError("the taxonomy level has no checkpoint")
        missing = set(hierarchy.subtaxonomies) - set(hierarchy.taxonomy.labels)
        extra = set(hierarchy.taxonomy.labels) - set(hierarchy.subtaxonomies)
        if hierarchy.subtaxonomies and (missing or extra):
            raise HierarchyError(
                "taxonomy labels and subtaxonomy entries disagree: "
                f"without an entry {sorted(extra)}, unknown {sorted(missing)}"
            )
        return hierarchy

    def save(self, run_dir: str | Path) -> Path:
        """Write hierarchy.json atomically: a reader sees the old file or the new one, never half."""
        path = Path(run_dir) / HIERARCHY_FILE
        partial = path.with_name(f".{HIERARCHY_FILE}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(partial, path)
        return path

    @classmethod
    def load(cls, run_dir: str | Path) -> "Hierarchy":
        path = Path(run_dir) / HIERARCHY_FILE
        if not path.is_file():
            raise HierarchyError(f"{path} not found: is {run_dir} a run directory?")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HierarchyError(f"{path} is not readable JSON: {exc}") from exc
        return cls.from_json(data)
