"""Time the subtaxonomy phase of training one model at a time against N at once.

    .venv/bin/python -m benchmarks.parallel --data events.csv --workers 2 --epochs 1 --max-length 64

Trains every subtaxonomy model of the table from the base model twice: one after the
other in this process with all its threads (what ``--parallel-models 1`` does), then in
N worker processes with 1/N of the threads each (``--parallel-models N``), and prints
both wall times. The taxonomy model and the warm-up are left out: they are trained the
same way in both modes. Checkpoints go to a temporary folder that is removed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--workers", type=int, default=2, help="worker processes of the parallel run (default 2)")
    p.add_argument("--threads", type=int, default=None, help="threads in all (default: torch's)")
    p.add_argument("--train-args", default="", help="more training.train flags, e.g. '--epochs 1 --max-length 64'")
    args, rest = p.parse_known_args(argv)

    import torch
    from transformers import AutoTokenizer

    from training.layout import build_hierarchy
    from handlers.text import TextFormat
    from training import parallel
    from training.base_model import prepare_base_model
    from table.events import Columns, load_events, split_events
    from training.distributed import World
    from training.level import plan_jobs, train_level
    from training.long_text import choose_top_layers
    from training.options import parse_args

    targs = parse_args(["--data", args.data, "--output", "unused", "--quiet", *rest, *args.train_args.split()])
    targs.parallel_models = args.workers
    targs.top_layers, _ = choose_top_layers(targs.top_layers, long=False)  # the texts are read head-only here
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    frame, _ = split_events(load_events(args.data, Columns()), seed=targs.seed)
    base, record = prepare_base_model(targs.base_model)
    text = TextFormat(separator=targs.separator, max_length=targs.max_length, max_chars=max(256, targs.max_length * 16))
    hierarchy = build_hierarchy(list(zip(frame.taxonomy, frame.subtaxonomy)), text, record)
    jobs = [job for job in plan_jobs(hierarchy, frame) if job.taxonomy]
    tokenizer = AutoTokenizer.from_pretrained(base)
    result = {"models": len(jobs), "train_rows": sum(len(j.train) for j in jobs), "threads": threads,
              "workers": args.workers}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        for job in jobs:
            train_level(job, base, tokenizer, text, targs, Path(tmp) / "one", sub=True)
        result["one_at_a_time_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        parallel.train_jobs(jobs, base, base, text, targs, Path(tmp) / "many", World(), threads)
        result["parallel_s"] = round(time.perf_counter() - started, 1)
    result["speedup"] = round(result["one_at_a_time_s"] / result["parallel_s"], 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
