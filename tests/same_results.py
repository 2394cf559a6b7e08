"""What a trained run and its archive must keep when the code around them is reorganised.

``record(run, archive)`` reads what training decided and produced (hierarchy.json, the
metrics, the run's and the archive's model files) and what the run answers, in process
and through the archive's TorchServe handler; tests/test_same_results.py compares it with
tests/data/same_results.json, written by this module from the tiny session run:

    python -m tests.same_results --out FILE     # what this code gives
    python -m tests.same_results --out tests/data/same_results.json   # a new record

Volatile parts (timings, paths on disk, the code files an archive carries) are left out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "tests" / "data" / "same_results.json"
VOLATILE = {"seconds", "train_samples_per_second", "history", "total_seconds", "train_seconds", "energy"}
MODEL_SUFFIXES = (".json", ".safetensors", ".txt", ".npz", ".onnx", ".yaml")


def questions() -> list[dict[str, str]]:
    """Events the answers are recorded for: fresh ones of every path, and two that fit none."""
    from tests.tiny import tiny_events

    rows = tiny_events(rows_per_class=2, seed=11)
    return [{"title": r["title"], "description": r["description"]} for r in rows] + [
        {"title": "quarterly tax filing", "description": "spreadsheet audit"},
        {"title": "", "description": "jazz marathon"}]


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    return value


def _model_files(folder: Path) -> dict[str, int]:
    """Relative path -> size of every model file (not code, not reports) under ``folder``."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix in MODEL_SUFFIXES and "MAR-INF" not in p.parts
            and p.name not in ("metrics.json", "training.json", "hierarchy.json")}  # hierarchy.json: read whole


def _answers(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_stable({k: v for k, v in a.items() if k not in ("id",)}) for a in answers]


def record(run: Path, archive: Path) -> dict[str, Any]:
    from handlers.cascade import Cascade
    from tests.test_handler import make_context
    from handlers.event_handler import EventTaxonomyHandler

    events = questions()
    metrics = json.loads((run / "metrics.json").read_text())
    with tempfile.TemporaryDirectory() as unpacked:
        with zipfile.ZipFile(archive) as mar:
            mar.extractall(unpacked)
        handler = EventTaxonomyHandler()
        handler.initialize(make_context(Path(unpacked), 1, {"handler": {"threads": 1, "top_k": 3, "max_items": 32}}))
        context = make_context(Path(unpacked), 1)
        served = json.loads(handler.handle([{"body": events}], context)[0])
        archive_files = _model_files(Path(unpacked))
    hierarchy = json.loads((run / "hierarchy.json").read_text())
    hierarchy["base_model"].pop("path", None)  # a temporary folder
    return {
        "hierarchy": _stable(hierarchy),
        "metrics": _stable({k: v for k, v in metrics.items()}),
        "run_files": _model_files(run),
        "archive_files": archive_files,
        "answers": _answers(Cascade(run).predict(events, top_k=3)),
        "served": _answers(served),
    }


def tiny_run_and_archive(folder: Path) -> tuple[Path, Path]:
    """The tiny session run and its one-file archive, made as tests/conftest.py makes them."""
    from tests.conftest import TINY_RUN_FLAGS
    from tests.tiny import make_tiny_base, tiny_events, write_csv
    from training.train import main

    base = make_tiny_base(folder / "tiny-distilbert")
    data = write_csv(folder / "events.csv", tiny_events(rows_per_class=14))
    run = folder / "tiny"
    assert main(["--data", str(data), "--output", str(run), "--base-model", str(base), *TINY_RUN_FLAGS]) == 0
    return run, build_archive(run, folder / "store")


def build_archive(run: Path, store: Path) -> Path:
    store.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "archives.build", "--run", str(run), "--name", "same",
                    "--model-store", str(store), "--threads", "1"], check=True, capture_output=True)
    return store / "same.mar"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help=f"where to write the record (the test's: {RECORD.relative_to(ROOT)})")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    try:
        found = record(*tiny_run_and_archive(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Path(options.out).write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
