"""hierarchy.json: text formatting, label maps and run-directory checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from handlers.hierarchy import Hierarchy, HierarchyError
from handlers.run_dir import check_run_dir
from training.layout import build_hierarchy, slugify
from handlers.text import TextFormat


def test_text_format_joins_fields_caps_characters_and_prefers_text() -> None:
    fmt = TextFormat(separator=". ", max_chars=20)
    assert TextFormat().format({"title": " Jazz  night ", "description": "Trio\nlive"}) == "Jazz night. Trio live"
    assert fmt.format({"description": "only this"}) == "only this"
    assert fmt.format({"title": "", "description": None}) == ""
    assert fmt.format({"text": "given", "title": "ignored"}) == "given"
    assert len(fmt.format({"text": "x" * 10_000})) == 20


def test_build_hierarchy_sorts_labels_and_skips_models_for_single_children() -> None:
    h = build_hierarchy([("music", "rock"), ("music", "jazz"), ("Night Life", "club"), ("music", "jazz")],
                        TextFormat())
    assert h.taxonomy.labels == ("Night Life", "music")
    assert h.subtaxonomies["music"].labels == ("jazz", "rock")
    assert h.subtaxonomies["music"].checkpoint == "subtaxonomy/music"
    assert h.subtaxonomies["Night Life"].checkpoint is None
    assert Hierarchy.from_json(json.loads(json.dumps(h.to_json()))) == h


def test_slugs_are_unique() -> None:
    taken: set[str] = set()
    assert [slugify(x, taken) for x in ["Food & Drink", "food drink", "???"]] == ["food-drink", "food-drink-2", "label"]


def test_check_run_dir_names_what_is_wrong(tiny_run: Path, tmp_path: Path) -> None:
    assert check_run_dir(tiny_run).taxonomy.labels == ("music", "nightlife", "sports")
    broken = tmp_path / "run"
    shutil.copytree(tiny_run, broken)
    (broken / "subtaxonomy" / "music" / "top.safetensors").unlink()
    with pytest.raises(HierarchyError, match="subtaxonomy/music"):
        check_run_dir(broken)
    shutil.rmtree(broken)
    shutil.copytree(tiny_run, broken)
    config = json.loads((broken / "taxonomy" / "config.json").read_text())
    config["id2label"] = {"0": "a", "1": "b", "2": "c"}
    (broken / "taxonomy" / "config.json").write_text(json.dumps(config))
    with pytest.raises(HierarchyError, match="differ from hierarchy.json"):
        check_run_dir(broken)
    (broken / "hierarchy.json").write_text("{not json")
    with pytest.raises(HierarchyError, match="not readable JSON"):
        check_run_dir(broken)
    with pytest.raises(HierarchyError, match="does not exist"):
        check_run_dir(tmp_path / "missing")


def test_pickle_checkpoints_are_refused(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    weights = run / "taxonomy" / "top.safetensors"
    weights.rename(run / "taxonomy" / "pytorch_model.bin")
    with pytest.raises(HierarchyError, match="no top.safetensors"):
        check_run_dir(run)
