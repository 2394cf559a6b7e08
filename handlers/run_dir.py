"""Checking a run directory against its hierarchy.json: every file it promises is there and
agrees. Nothing here imports torch or TorchServe."""

from __future__ import annotations

import json
from pathlib import Path

from handlers.hierarchy import Hierarchy, HierarchyError, Level, Trunk
from handlers.run_layout import ONNX_FILE, TOKENIZER_DIR, TOP_FILE, WEIGHTS_FILE


def check_run_dir(run_dir: str | Path, hierarchy: Hierarchy | None = None) -> Hierarchy:
    """Load hierarchy.json (or take ``hierarchy``, the one training holds before it writes
    it) and check that every file it promises is there and agrees.

    Packaging and serving call this first, so a broken run directory is reported by
    name at build time instead of as a dead worker at load time.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HierarchyError(f"run directory {run_dir} does not exist")
    hierarchy = hierarchy if hierarchy is not None else Hierarchy.load(run_dir)
    tokenizer = run_dir / TOKENIZER_DIR
    if not (tokenizer / "tokenizer.json").is_file() and not (tokenizer / "vocab.txt").is_file():
        raise HierarchyError(f"{tokenizer} holds no tokenizer (tokenizer.json or vocab.txt)")
    if hierarchy.trunk is not None:
        _check_trunk(run_dir, hierarchy.trunk)
    levels = [(hierarchy.name if hierarchy.single_level else "taxonomy", hierarchy.taxonomy)]
    levels += list(hierarchy.subtaxonomies.items())
    levels += [("paths", hierarchy.paths)] if hierarchy.paths is not None else []
    features = _check_lexical_features(run_dir, hierarchy.lexical_features)
    for name, level in levels:
        if level.checkpoint is not None:
            _check_checkpoint(run_dir, name, level, hierarchy.trunk)
        if level.lexical is not None:
            from handlers.lexical import check_lexical

            problem = check_lexical(_inside(run_dir, level.lexical, name), level.labels, features)
            if problem:
                raise HierarchyError(f"lexical model for {name!r}: {problem}")
    if hierarchy.abstention.folder is not None:
        from handlers.scope import check_scope

        problem = check_scope(_inside(run_dir, hierarchy.abstention.folder, "scope model"),
                              _width(run_dir, hierarchy.taxonomy))
        if problem:
            raise HierarchyError(f"the abstention rule's scope model: {problem}")
    return hierarchy


def _width(run_dir: Path, level: Level) -> int | None:
    """The hidden width of a level's checkpoint (its config.json), or None."""
    if level.checkpoint is None:
        return None
    try:
        config = json.loads((run_dir / level.checkpoint / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    width = config.get("dim", config.get("hidden_size"))
    return width if isinstance(width, int) else None


def check_inside_run(run_dir: Path, hierarchy: Hierarchy) -> None:
    """Every file and folder an archive takes from the run (tokenizer, trunk, checkpoints,
    lexical models, scope model) resolves inside the run: a symbolic link out of it would carry a file
    from elsewhere into the archive. Links that stay inside the run are followed. Builds call
    it; a local evaluation may read a run whose tokenizer is linked from elsewhere."""
    root = run_dir.resolve()
    folders = [TOKENIZER_DIR, *([hierarchy.trunk.folder] if hierarchy.trunk else []), *hierarchy.checkpoints(),
               *hierarchy.data_folders()]
    for relative in folders:
        pending, seen = [run_dir / relative], set()
        while pending:
            path = pending.pop()
            real = path.resolve()
            if not real.is_relative_to(root):
                raise HierarchyError(f"{path} is a symbolic link to {real}, outside the run directory {run_dir}: "
                                     "an archive takes files from the run alone (copy the file into the run)")
            if path.is_dir() and real not in seen:  # seen: a link to a folder above it would loop
                seen.add(real)
                pending.extend(sorted(path.iterdir()))


def _check_lexical_features(run_dir: Path, folder: str | None) -> int | None:
    """The run's lexical feature count (None: it has none), or why its features cannot be read."""
    if folder is None:
        return None
    from handlers.lexical import check_features

    problem, size = check_features(_inside(run_dir, folder, "lexical features"))
    if problem:
        raise HierarchyError(f"the lexical features: {problem}")
    return size


def _inside(run_dir: Path, relative: str, name: str) -> Path:
    folder = run_dir / relative
    if not folder.resolve().is_relative_to(run_dir.resolve()):  # through a symbolic link
        raise HierarchyError(f"checkpoint path {relative!r} for {name!r} resolves to "
                             f"{folder.resolve()}, outside the run directory {run_dir}")
    return folder


def _check_trunk(run_dir: Path, trunk: Trunk) -> None:
    folder = _inside(run_dir, trunk.folder, "trunk")
    if not (folder / "config.json").is_file():
        raise HierarchyError(f"the shared trunk is missing: {folder / 'config.json'} not found")
    if not (folder / WEIGHTS_FILE).is_file() and not (folder / ONNX_FILE).is_file():
        raise HierarchyError(f"the shared trunk has no {WEIGHTS_FILE} in {folder}")


def _check_checkpoint(run_dir: Path, name: str, level: Level, trunk: Trunk | None = None) -> None:
    folder = _inside(run_dir, level.checkpoint, name)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise HierarchyError(f"checkpoint for {name!r} is missing: {config_path} not found")
    # fp32 safetensors (the whole model, or its top on a shared trunk), or the int8 ONNX
    # export that int8 archives carry instead.
    weights = TOP_FILE if trunk is not None else WEIGHTS_FILE
    if not (folder / weights).is_file() and not (folder / ONNX_FILE).is_file():
        raise HierarchyError(f"checkpoint for {name!r} has no {weights} in {folder}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        id2label = {int(k): v for k, v in config["id2label"].items()}
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise HierarchyError(f"{config_path} has no readable id2label: {exc}") from exc
    layers = config.get("n_layers", config.get("num_hidden_layers"))
    if trunk is not None and not (isinstance(layers, int) and layers > trunk.layers):
        raise HierarchyError(f"{config_path} has {layers} layers: a level on a trunk of "
                             f"{trunk.layers} layers needs more")
    labels = tuple(id2label[i] for i in sorted(id2label))
    if labels != level.labels:
        raise HierarchyError(f"{config_path} labels {list(labels)} differ from hierarchy.json's {list(level.labels)}")
