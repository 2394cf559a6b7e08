"""Loading, validating and splitting events tables."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.tiny import tiny_events, write_csv
from table.events import Columns, DataError, load_events, split_events

ROOT = Path(__file__).resolve().parent.parent


def test_csv_jsonl_and_parquet_load_the_same(tmp_path: Path) -> None:
    rows = tiny_events(rows_per_class=3)
    csv_frame = load_events(write_csv(tmp_path / "e.csv", rows))
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    jsonl_frame = load_events(tmp_path / "e.jsonl")
    pd.DataFrame(rows).to_parquet(tmp_path / "e.parquet")
    parquet_frame = load_events(tmp_path / "e.parquet")
    cols = ["title", "description", "taxonomy", "subtaxonomy"]
    assert len(csv_frame) == len(rows)
    pd.testing.assert_frame_equal(csv_frame[cols], jsonl_frame[cols])
    pd.testing.assert_frame_equal(csv_frame[cols], parquet_frame[cols])
    assert csv_frame.ref.iloc[0] == "line 2" and parquet_frame.ref.iloc[0] == "row 1"


def test_column_mapping_and_optional_title(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("text,cat,subcat\nJazz trio tonight,music,jazz\nBike ride,sports,cycling\n")
    frame = load_events(path, Columns(description="text", taxonomy="cat", subtaxonomy="subcat"))
    assert list(frame.description) == ["Jazz trio tonight", "Bike ride"]
    assert list(frame.title) == ["", ""]


def test_bundled_sample_events_are_valid() -> None:
    frame = load_events(ROOT / "training" / "sample_events.csv")
    assert 1000 <= len(frame) <= 3000
    children = frame.groupby("taxonomy").subtaxonomy.nunique()
    assert len(children) == 8
    assert (children == 1).any() and children.max() <= 6


@pytest.mark.parametrize(
    "content, expected",
    [
        ("title,text,category\na,b,c\n", "missing column(s) 'description' (for description), 'taxonomy'"),
        ("title,description,taxonomy,subtaxonomy\nA,,music,jazz\n,,music,jazz\n", "empty text"),
        ("title,description,taxonomy,subtaxonomy\nA,b,,jazz\nA,b,music,jazz\n", "without a taxonomy label: line 2"),
        ("title,description,taxonomy,subtaxonomy\nA,b,music,\n", "without a subtaxonomy label: line 2"),
        ("title,description,taxonomy,subtaxonomy\nA,b,music,jazz\nA,b,music\n", "unreadable rows: line 3"),
        ("title,description,taxonomy,subtaxonomy,split\nA,b,music,jazz,holdout\n", "other than train/val/test"),
        ("", "is empty"),
        ("title,description,taxonomy,subtaxonomy\n", "no data rows"),
    ],
)
def test_user_errors_name_the_problem_and_rows(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=None) as info:
        load_events(path)
    assert expected in str(info.value)


def test_missing_columns_list_what_was_found(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("name,body,kind\na,b,c\n")
    with pytest.raises(DataError) as info:
        load_events(path)
    assert "'body', 'kind', 'name'" in str(info.value)


def test_empty_text_rows_are_named_by_line_even_after_multiline_fields(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('title,description,taxonomy,subtaxonomy\nA,"two\nlines",music,jazz\n,,music,jazz\n')
    with pytest.raises(DataError, match="line 4"):
        load_events(path)


def test_missing_file_unknown_format_and_bad_jsonl(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_events(tmp_path / "nope.csv")
    (tmp_path / "e.xlsx").write_text("x")
    with pytest.raises(DataError, match="unknown format"):
        load_events(tmp_path / "e.xlsx")
    (tmp_path / "e.jsonl").write_text('{"description": "a", "taxonomy": "t", "subtaxonomy": "s"}\n{broken\n[1]\n')
    with pytest.raises(DataError, match=r"line 2 \(.*\), line 3 \(not a JSON object\)"):
        load_events(tmp_path / "e.jsonl")
    (tmp_path / "e.csv").write_bytes(b"title,description,taxonomy,subtaxonomy\n\xff\xfe,b,c,d\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_events(tmp_path / "e.csv")


def test_split_column_is_honoured(tmp_path: Path) -> None:
    rows = tiny_events(rows_per_class=4)
    for i, row in enumerate(rows):
        row["split"] = ["train", "train", "validation", "test"][i % 4]
    frame, report = split_events(load_events(write_csv(tmp_path / "e.csv", rows)))
    assert report.source == "column"
    assert report.counts == {"train": 12, "val": 6, "test": 6}


def test_stratified_split_is_seeded_and_keeps_rare_paths_in_train(tmp_path: Path) -> None:
    rows = tiny_events(rows_per_class=20)
    rows += [{"title": "odd", "description": "rare one", "taxonomy": "music", "subtaxonomy": "polka"}] * 3
    frame = load_events(write_csv(tmp_path / "e.csv", rows))
    first, report = split_events(frame, seed=7)
    again, _ = split_events(frame, seed=7)
    other, _ = split_events(frame, seed=8)
    assert list(first.split) == list(again.split)
    assert list(first.split) != list(other.split)
    assert report.source == "stratified"
    assert report.rare_in_train == ["music / polka"]
    assert set(first[first.subtaxonomy == "polka"].split) == {"train"}
    common = first[first.subtaxonomy != "polka"]
    per_path = common.groupby(["subtaxonomy", "split"]).size().unstack()
    assert (per_path["train"] == 14).all() and (per_path["val"] == 3).all() and (per_path["test"] == 3).all()
