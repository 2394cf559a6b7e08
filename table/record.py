"""The training record of a run directory: what was trained on, how, and which row went where.

Beside ``hierarchy.json`` (what serving needs), a run holds ``training.json`` (this record)
and ``split.csv`` (each row of the events table and the split it was in). Evaluation, the
int8 accuracy gate and the benchmarks read the split from there instead of recomputing it
from a seed, and the table's sha256 tells them when the table has changed since.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from handlers.run_layout import RECORD_FILE, SPLIT_FILE
from table.events import COLUMN_FIELDS, Columns, DataError, load_events, split_events

RECORD_VERSION = 1


@dataclass(frozen=True)
class TrainingRecord:
    """training.json, typed. ``extra`` holds what only reports read (timings, tracking, energy)."""

    data: str
    columns: Columns
    seed: int = 42
    data_sha256: str | None = None  # None in runs made before the record had it
    args: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    base_model: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    record_version: int = RECORD_VERSION

    def to_info(self) -> dict[str, Any]:
        """The record as one flat mapping, as training.json holds it (reports read this)."""
        data = dataclasses.asdict(self)
        data.update(data.pop("extra"))
        return data

    def save(self, run_dir: str | Path) -> Path:
        data = self.to_info()
        path = Path(run_dir) / RECORD_FILE
        path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, run_dir: str | Path) -> "TrainingRecord":
        path = Path(run_dir) / RECORD_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{path} is missing or unreadable ({exc}); this run cannot say what it was trained "
                            "on: pass --data, or train it again with python -m training.train") from None
        args = data.get("args", {})
        columns = data.get("columns") or {f: args.get(f"{f}_column", f) for f in COLUMN_FIELDS}
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "columns"}
        return cls(columns=Columns(**columns), seed=int(data.get("seed", args.get("seed", 42))),
                   **{k: data[k] for k in known if k in data and k != "seed"},
                   extra={k: v for k, v in data.items() if k not in known | {"columns", "seed"}})


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_split(run_dir: str | Path, frame: pd.DataFrame) -> Path:
    """split.csv: the row number of each event in the table, and its split."""
    path = Path(run_dir) / SPLIT_FILE
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["row", "split"])
        writer.writerows(zip(frame.index.tolist(), frame.split.tolist()))
    return path


def split_frame(run_dir: str | Path, data: str | None = None, columns: Columns | None = None) -> pd.DataFrame:
    """The events table with the very split the run was trained with.

    ``data`` defaults to the table the record names; for that table the split comes from
    split.csv (and a changed table is refused). Another table, or a run made before
    split.csv existed, gets the split its own split column or the recorded seed gives.
    """
    try:
        record = TrainingRecord.load(run_dir)
    except DataError:
        if data is None:
            raise
        record = TrainingRecord(data="", columns=columns or Columns())  # a run without its record
    table = data or record.data
    if not table or not Path(table).is_file():
        raise DataError(f"the events table {table!r} is not there: pass --data with the table this run was trained on")
    frame = load_events(table, columns or record.columns)
    split_path = Path(run_dir) / SPLIT_FILE
    if Path(table).resolve() != Path(record.data).resolve() or not split_path.is_file():
        return split_events(frame, seed=record.seed)[0]
    if record.data_sha256 and sha256_of(table) != record.data_sha256:
        raise DataError(f"{table} has changed since this run was trained (its sha256 differs from training.json's): "
                        "pass the table the run was trained on, or train again")
    splits = pd.read_csv(split_path, index_col="row")["split"]
    if len(splits) != len(frame) or not splits.index.equals(frame.index):
        raise DataError(f"{split_path} has {len(splits)} rows but {table} has {len(frame)}: not the same table")
    frame = frame.copy()
    frame["split"] = splits.astype(str).values
    return frame
