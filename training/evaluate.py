"""Score a run directory on a split of an events table, through the serving cascade.

    python -m training.evaluate --run artifacts/demo --data events.csv --split test

Predictions come from ``handlers.cascade.Cascade``, the module the TorchServe handler
wraps, so these figures are the figures of the served model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from handlers.cascade import Cascade
from handlers.hierarchy import HierarchyError
from table.events import COLUMN_FIELDS, Columns, DataError
from table.scoring import evaluate_frame, summary_line
from table.record import split_frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run directory written by training.train")
    parser.add_argument("--data", help="events table (default: the one the run was trained on, with its split)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                        help="which rows to score (default: test)")
    parser.add_argument("--output", help="where to write the metrics JSON (default: RUN/eval-SPLIT.json)")
    parser.add_argument("--batch-size", type=int, default=64, help="events per cascade call")
    parser.add_argument("--decoding", choices=["greedy", "joint"], default=None,
                        help="override the run's decoding (default: hierarchy.json's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="torch arithmetic, as the archive's setting of that name (default auto: bf16 where "
                             "this CPU computes it natively, as a default archive serves here)")
    for field in COLUMN_FIELDS:
        parser.add_argument(f"--{field}-column", help=f"column holding {field} (default: the run's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    given = {f: getattr(args, f"{f}_column") for f in COLUMN_FIELDS}
    columns = Columns(**{f: c or f for f, c in given.items()}) if any(given.values()) else None
    try:
        frame = split_frame(Path(args.run), args.data, columns)
        if args.split != "all":
            frame = frame[frame.split == args.split]
        if frame.empty:
            raise DataError(f"no rows in split {args.split!r}")
        cascade = Cascade(args.run, max_batch=args.batch_size, decoding=args.decoding, precision=args.precision)
        started = time.perf_counter()
        scores = evaluate_frame(cascade, frame).scores
        seconds = time.perf_counter() - started
    except (DataError, HierarchyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scores.update(seconds=round(seconds, 2), precision=cascade.precision)
    output = Path(args.output) if args.output else Path(args.run) / f"eval-{args.split}.json"
    output.write_text(json.dumps(scores, indent=2) + "\n")
    print(summary_line(args.split, scores) + f" ({cascade.precision})")
    kept, rule = scores["abstention"], cascade.hierarchy.abstention
    print(f"abstention: {rule.score} below {rule.min_score:.6f}: coverage {kept['coverage']:.4f}, path acc "
          f"counting abstentions wrong {kept['accuracy_abstain_wrong']:.4f}, when answered "
          f"{kept['accuracy_when_answered'] or 0:.4f}")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
