#!/usr/bin/env python3
"""Predict a whole table: in-process from a run directory, or through a running server.

    python -m serving.predict_batch events.csv predictions.csv --run artifacts/demo
    python -m serving.predict_batch events.jsonl out.parquet --server events

Reads CSV, JSON Lines or Parquet (same column flags as training) and writes the same
formats (chosen by OUT's extension): every input column kept (as text), plus taxonomy, subtaxonomy,
their scores, path_score, scope_score (a run whose abstention reads it), ``abstain`` (true
where no path fits: the run's rule, or ``--min-score``) and the top-k paths as JSON. Rows with no text get empty
predictions and an ``error`` column instead of stopping the run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent

from handlers.abstention import SCOPE_SCORE, fraction_argument
from table.events import TEXT_FIELDS, DataError, add_column_flags, read_rows, write_table


def chunks(items: list[Any], size: int) -> Iterator[tuple[int, list[Any]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def predictor(args: argparse.Namespace):
    """A function from a list of events to a list of answers (or error dicts)."""
    if args.run:
        from handlers.cascade import Cascade

        cascade = Cascade(args.run, max_batch=args.batch_size)
        return lambda events: cascade.predict(events, top_k=args.top_k, min_score=args.min_score)
    from serving.ts_client import Server

    server = Server()

    def remote(events: list[dict]) -> list[dict]:
        floor = {} if args.min_score is None else {"min_score": args.min_score}
        body = json.dumps([{**e, "top_k": args.top_k, **floor} for e in events]).encode()
        code, text = server.call("inference", "POST", f"/predictions/{args.server}", body,
                                 {"Content-Type": "application/json"})
        if code != 200:
            raise RuntimeError(f"server answered {code}: {text[:300]}")
        return json.loads(text)

    return remote


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="events table")
    p.add_argument("output", help="where to write predictions (.csv, .tsv, .jsonl or .parquet)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", help="predict in-process from this run directory")
    where.add_argument("--server", metavar="NAME", help="predict through the running TorchServe model NAME")
    add_column_flags(p, TEXT_FIELDS)
    p.add_argument("--top-k", type=int, default=3, help="paths per row")
    p.add_argument("--min-score", type=fraction_argument, default=None,
                   help="abstain below this score (the one the run's rule reads: scope_score, or path_score; "
                        "default: the rule's own threshold, recorded in the run's hierarchy.json)")
    p.add_argument("--batch-size", type=int, default=32, help="events per call (the server caps arrays at 64)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def table_events(frame: pd.DataFrame, cols: dict[str, str]) -> tuple[list[dict[str, str]], list[int], dict[int, str]]:
    """The events of the rows that have text, their row numbers, and why each other row has none."""
    events, rows = [], []
    errors: dict[int, str] = {}
    for i, record in enumerate(frame.to_dict("records")):
        event = {field: str(record[col]).strip() for col, field in cols.items()
                 if col in record and record[col] is not None and str(record[col]).strip() not in ("", "nan")}
        if not event:
            errors[i] = "no title or description"
            continue
        events.append(event)
        rows.append(i)
    return events, rows, errors


def with_predictions(frame: pd.DataFrame, answers: dict[int, dict], errors: dict[int, str]) -> pd.DataFrame:
    """``frame`` with the answers' columns added (empty where a row has no answer)."""
    out = frame.copy()
    rows = range(len(frame))
    out["taxonomy_pred"] = [answers[i]["taxonomy"]["label"] if i in answers else "" for i in rows]
    out["taxonomy_score"] = [answers[i]["taxonomy"]["score"] if i in answers else None for i in rows]
    out["subtaxonomy_pred"] = [answers[i]["subtaxonomy"]["label"] if i in answers else "" for i in rows]
    out["subtaxonomy_score"] = [answers[i]["subtaxonomy"]["score"] if i in answers else None for i in rows]
    out["path_score"] = [answers[i]["path_score"] if i in answers else None for i in rows]
    if any(SCOPE_SCORE in answer for answer in answers.values()):
        out[SCOPE_SCORE] = [answers[i].get(SCOPE_SCORE) if i in answers else None for i in rows]
    out["abstain"] = [bool(answers[i].get("abstain")) if i in answers else None for i in rows]
    out["top_k"] = [json.dumps(answers[i]["top_k"], ensure_ascii=False) if i in answers else "" for i in rows]
    out["error"] = [errors.get(i, "") for i in rows]
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        frame = pd.DataFrame(read_rows(args.input)[0])
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cols = {getattr(args, f"{field}_column"): field for field in TEXT_FIELDS}
    if not set(cols) & set(frame.columns):
        print(f"error: {args.input} has neither {args.title_column!r} nor {args.description_column!r}; "
              f"columns: {', '.join(map(str, frame.columns))}", file=sys.stderr)
        return 2
    events, rows, errors = table_events(frame, cols)
    predict = predictor(args)
    from tqdm.auto import tqdm

    answers: dict[int, dict] = {}
    with tqdm(total=len(events), disable=args.quiet, unit="event", desc="predicting") as bar:
        for start, batch in chunks(events, args.batch_size):
            for offset, answer in enumerate(predict(batch)):
                answers[rows[start + offset]] = answer
            bar.update(len(batch))
    try:
        write_table(with_predictions(frame, answers, errors), args.output)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(answers)} predictions ({len(errors)} rows without text) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
