"""The events table: reading it, checking it, splitting it.

Every problem a user can fix in their file becomes one ``DataError`` whose message names
the rows (by line for CSV and JSON Lines, by row for Parquet), so ``training.train`` can
print it and exit without a traceback.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}
FIELDS = ("title", "description", "taxonomy", "subtaxonomy")
TEXT_FIELDS = ("title", "description")  # what the cascade reads of an event


class DataError(ValueError):
    """A problem in the user's table, worded for the user."""


@dataclass(frozen=True)
class Columns:
    """Which columns of the user's table hold each field (``--*-column`` flags)."""

    title: str = "title"
    description: str = "description"
    taxonomy: str = "taxonomy"
    subtaxonomy: str = "subtaxonomy"
    split: str = "split"


COLUMN_FIELDS = tuple(f.name for f in dataclasses.fields(Columns))  # one --FIELD-column flag each


def add_column_flags(parser: argparse.ArgumentParser, fields: tuple[str, ...] = COLUMN_FIELDS) -> None:
    """One ``--FIELD-column`` flag per field of ``Columns`` (or of ``fields``) on a parser or argument group."""
    for field in fields:
        default = getattr(Columns, field)
        parser.add_argument(f"--{field}-column", default=default, help=f"column holding {field} (default: {default})")


def event_dicts(frame: pd.DataFrame) -> list[dict[str, str]]:
    """The rows of an events table as the cascade reads them: title and description."""
    return frame[list(TEXT_FIELDS)].to_dict("records")


def _where(refs: list[str], limit: int = 10) -> str:
    shown = ", ".join(refs[:limit])
    return shown + (f" and {len(refs) - limit} more" if len(refs) > limit else "")


def _read_csv(path: Path) -> tuple[list[dict[str, str]], list[str], list[str]]:
    rows, refs, bad = [], [], []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        try:
            header = next(reader, None)
            if not header:
                raise DataError(f"{path} is empty: expected a header row with {', '.join(FIELDS)}")
            header = [h.strip() for h in header]
            start = reader.line_num + 1
            for values in reader:
                ref = f"line {start}"
                start = reader.line_num + 1
                if not any(v.strip() for v in values):
                    continue
                if len(values) != len(header):
                    bad.append(f"{ref} ({len(values)} fields, header has {len(header)})")
                    continue
                rows.append(dict(zip(header, values)))
                refs.append(ref)
        except csv.Error as exc:
            raise DataError(f"{path}: unreadable CSV at line {reader.line_num}: {exc}") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return rows, refs, bad


def _read_jsonl(path: Path) -> tuple[list[dict[str, str]], list[str], list[str]]:
    rows, refs, bad = [], [], []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(f"line {number} ({exc.msg})")
            continue
        if not isinstance(record, dict):
            bad.append(f"line {number} (not a JSON object)")
            continue
        rows.append({k: "" if v is None else str(v) for k, v in record.items()})
        refs.append(f"line {number}")
    return rows, refs, bad


def _read_parquet(path: Path) -> tuple[list[dict[str, str]], list[str], list[str]]:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a bad file
        raise DataError(f"{path} is not a readable Parquet file: {exc}") from None
    frame = frame.astype(object).where(frame.notna(), "")
    rows = [{str(k): str(v) for k, v in rec.items()} for rec in frame.to_dict("records")]
    return rows, [f"row {i + 1}" for i in range(len(rows))], []


READERS = {".csv": _read_csv, ".tsv": _read_csv, ".jsonl": _read_jsonl, ".ndjson": _read_jsonl,
           ".json": _read_jsonl, ".parquet": _read_parquet, ".pq": _read_parquet}


def read_rows(path: str | Path) -> tuple[list[dict[str, str]], list[str]]:
    """Every row of a .csv, .tsv, .jsonl or .parquet table as text by column name, and each
    row's place in the file ("line 12"); a ``DataError`` naming the rows it cannot read."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} not found")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unknown format {path.suffix!r}; use .csv, .tsv, .jsonl or .parquet")
    rows, refs, bad = reader(path)
    if bad:
        raise DataError(f"{path}: {len(bad)} unreadable rows: {_where(bad)}")
    if not rows:
        raise DataError(f"{path} has no data rows")
    return rows, refs


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a frame as the table format its extension names, whole or not at all."""
    path = Path(path)
    suffix = path.suffix.lower()
    if READERS.get(suffix) is None:
        raise DataError(f"{path}: unknown output format {suffix!r}; use .csv, .tsv, .jsonl or .parquet")
    tmp = path.with_name(f".{path.name}.partial")
    if suffix in (".csv", ".tsv"):
        frame.to_csv(tmp, sep="\t" if suffix == ".tsv" else ",", index=False)
    elif suffix in (".parquet", ".pq"):
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
    tmp.replace(path)


def _row_problems(frame: pd.DataFrame, has_split: bool) -> list[str]:
    """Every kind of bad row, each with the rows it concerns, so one run of the loader names them all."""
    problems = []
    empty = frame[(frame.title == "") & (frame.description == "")]
    if len(empty):
        problems.append(f"{len(empty)} rows with empty text (no title and no description): {_where(list(empty.ref))}")
    for field in ("taxonomy", "subtaxonomy"):
        unlabeled = frame[frame[field] == ""]
        if len(unlabeled):
            problems.append(f"{len(unlabeled)} rows without a {field} label: {_where(list(unlabeled.ref))}")
    if has_split:
        unknown = frame[~frame.split.isin(SPLIT_ALIASES)]
        if len(unknown):
            values = sorted(set(unknown.split))
            problems.append(
                f"{len(unknown)} rows with a split other than train/val/test ({', '.join(map(repr, values[:5]))}): "
                f"{_where(list(unknown.ref))}"
            )
    return problems


def load_events(path: str | Path, columns: Columns = Columns()) -> pd.DataFrame:
    """The table as a frame with title, description, taxonomy, subtaxonomy, split, ref.

    ``split`` is empty when the file has no split column; ``ref`` is each row's place in
    the file ("line 12"), carried along so later checks can name rows too.
    """
    path = Path(path)
    rows, refs = read_rows(path)

    found = sorted({k for row in rows for k in row})
    required = {"description": columns.description, "taxonomy": columns.taxonomy,
                "subtaxonomy": columns.subtaxonomy}
    missing = [f"{col!r} (for {field})" for field, col in required.items() if col not in found]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; the file has {', '.join(map(repr, found))}. "
            "Map other names with --title-column/--description-column/--taxonomy-column/--subtaxonomy-column."
        )
    has_split = columns.split in found

    def get(row: dict[str, str], col: str) -> str:
        return (row.get(col) or "").strip()

    frame = pd.DataFrame(
        {
            "title": [get(r, columns.title) for r in rows],
            "description": [get(r, columns.description) for r in rows],
            "taxonomy": [get(r, columns.taxonomy) for r in rows],
            "subtaxonomy": [get(r, columns.subtaxonomy) for r in rows],
            "split": [get(r, columns.split).lower() for r in rows] if has_split else [""] * len(rows),
            "ref": refs,
        }
    )
    problems = _row_problems(frame, has_split)
    if problems:
        raise DataError(f"{path}: " + "; ".join(problems))
    frame["split"] = frame.split.map(lambda s: SPLIT_ALIASES.get(s, ""))
    return frame


@dataclass
class SplitReport:
    source: str  # "column" or "stratified"
    counts: dict[str, int]
    rare_in_train: list[str]


def split_events(frame: pd.DataFrame, seed: int = 42, val_size: float = 0.15,
                 test_size: float = 0.15) -> tuple[pd.DataFrame, SplitReport]:
    """Honour the file's split column, or make a seeded stratified 70/15/15 split.

    Stratification is by full path (taxonomy/subtaxonomy). Paths with too few rows to
    reach every split stay wholly in train, and are reported rather than dropped.
    """
    frame = frame.copy()
    if (frame.split != "").all():
        if not (frame.split == "train").any():
            raise DataError("the split column has no 'train' rows")
        if not (frame.split == "val").any():
            raise DataError("the split column has no 'val' rows: early stopping and model selection need them")
        counts = {s: int((frame.split == s).sum()) for s in SPLITS}
        return frame, SplitReport("column", counts, [])

    path = frame.taxonomy + " / " + frame.subtaxonomy
    sizes = Counter(path)
    min_rows = max(3, math.ceil(2 / (val_size + test_size)) + 1)
    rare = sorted(p for p, c in sizes.items() if c < min_rows)
    frame["split"] = "train"
    common = frame.index[~path.isin(rare)]
    if len(common):
        held = val_size + test_size
        train_idx, rest_idx = train_test_split(common, test_size=held, random_state=seed,
                                               stratify=path[common])
        val_idx, test_idx = train_test_split(rest_idx, test_size=test_size / held, random_state=seed,
                                             stratify=path[rest_idx])
        frame.loc[val_idx, "split"] = "val"
        frame.loc[test_idx, "split"] = "test"
    counts = {s: int((frame.split == s).sum()) for s in SPLITS}
    if counts["val"] == 0:
        raise DataError(
            f"too few rows to split: every path has fewer than {min_rows} rows; add rows or a split column"
        )
    return frame, SplitReport("stratified", counts, rare)
