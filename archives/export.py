"""Export levels of a run as stock Hugging Face checkpoints, with no code of ours needed to load them.

    python -m archives.export --run artifacts/demo --level taxonomy --output exported/taxonomy
    python -m archives.export --run artifacts/demo --level Music --output exported/music   # a taxonomy's subtaxonomy model
    python -m archives.export --run artifacts/demo --all --output exported/demo-whole

A run trained with a shared trunk stores the trunk once and each level's top layers; an
exported level is the whole DistilBertForSequenceClassification (trunk + top) that
``AutoModelForSequenceClassification.from_pretrained`` loads, with the tokenizer beside it.
``--paths`` exports the paths head, ``--all`` writes a copy of the run with one whole checkpoint per level and no trunk.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file
from transformers import DistilBertForSequenceClassification

from handlers.hierarchy import Hierarchy, HierarchyError
from handlers.run_dir import check_run_dir
from handlers.run_layout import TOKENIZER_DIR, TOP_FILE, WEIGHTS_FILE
from handlers.trunk import _config


def _whole_model(run_dir: Path, hierarchy: Hierarchy, folder: str) -> DistilBertForSequenceClassification:
    """One level as a whole stock model: the trunk's tensors and the level's top in one state dict."""
    model = DistilBertForSequenceClassification(_config(run_dir / folder))
    if hierarchy.trunk is None:
        state = load_file(str(run_dir / folder / WEIGHTS_FILE))
    else:
        state = {**load_file(str(run_dir / hierarchy.trunk.folder / WEIGHTS_FILE)),
                 **load_file(str(run_dir / folder / TOP_FILE))}
    model.load_state_dict(state, strict=True)
    return model


def export_level(run_dir: str | Path, folder: str, out: str | Path) -> Path:
    """Write one level as a stock checkpoint folder (config.json, model.safetensors, tokenizer).

    The result loads with ``AutoModelForSequenceClassification.from_pretrained`` and gives
    the probabilities the cascade gives for that level (before any lexical mix).
    """
    run_dir, out = Path(run_dir), Path(out)
    hierarchy = Hierarchy.load(run_dir)
    if folder not in hierarchy.checkpoints():
        raise HierarchyError(f"{folder!r} is not a checkpoint of {run_dir}: one of {hierarchy.checkpoints()}")
    model = _whole_model(run_dir, hierarchy, folder)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    shutil.copytree(run_dir / TOKENIZER_DIR, out, dirs_exist_ok=True)
    return out


def export_whole_run(run_dir: str | Path, out: str | Path) -> Path:
    """A copy of a run with every level a stock checkpoint folder and no trunk.

    What ``--top-layers all`` would have stored for the same weights: it answers exactly as
    the trunk run does, at the cost of a full pass per level (benchmarks compare the two).
    """
    run_dir, out = Path(run_dir), Path(out)
    hierarchy = Hierarchy.load(run_dir)
    if hierarchy.trunk is None:
        shutil.copytree(run_dir, out)
        return out
    skip = {hierarchy.trunk.folder.split("/")[0]}
    shutil.copytree(run_dir, out, ignore=lambda folder, names: skip if Path(folder) == run_dir else set())
    for folder in hierarchy.checkpoints():
        model = _whole_model(run_dir, hierarchy, folder)
        (out / folder / TOP_FILE).unlink()
        model.save_pretrained(out / folder, safe_serialization=True)
    dataclasses.replace(hierarchy, trunk=None).save(out)
    return out



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run directory (training/train.py's --output)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--level", help="'taxonomy', or a taxonomy label for the model of its subtaxonomies")
    which.add_argument("--all", action="store_true", help="the whole run, one stock checkpoint per level")
    which.add_argument("--paths", action="store_true",
                       help="the paths head (a flat classifier over every 'taxonomy / subtaxonomy' pair), if the run has one")
    p.add_argument("--output", required=True, help="folder to write (must not exist)")
    args = p.parse_args(argv)
    out = Path(args.output)
    if out.exists():
        print(f"error: {out} exists; choose another --output", file=sys.stderr)
        return 2
    try:
        hierarchy = check_run_dir(args.run)
        if args.all:
            export_whole_run(args.run, out)
            print(f"exported {len(hierarchy.checkpoints())} levels as stock checkpoints into {out}")
            return 0
        if args.paths:
            args.level, level = "the paths head", hierarchy.paths
            if level is None or level.checkpoint is None:
                print(f"error: {args.run} has no paths head (its val-chosen weight was 0, its TF-IDF "
                      "paths model reads the paths alone, or it was trained without one)", file=sys.stderr)
                return 2
        else:
            level = hierarchy.taxonomy if args.level == "taxonomy" else hierarchy.subtaxonomies.get(args.level)
        if level is None or level.checkpoint is None:
            choices = ["taxonomy"] + [t for t, lvl in hierarchy.subtaxonomies.items() if lvl.checkpoint]
            print(f"error: no model for level {args.level!r}; one of: {', '.join(choices)}", file=sys.stderr)
            return 2
        export_level(args.run, level.checkpoint, out)
    except HierarchyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"exported {args.level} ({len(level.labels)} labels) into {out}: "
          "AutoModelForSequenceClassification.from_pretrained loads it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
