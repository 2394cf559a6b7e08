"""Time the subtaxonomy phase of training one model at a time against N at once.

    .venv/bin/python -m benchmarks.parallel --data events.csv --workers 2 --epochs 1 --max-length 64

Trains every subtaxonomy model of the table from the base model twice: one after the
other in this process with all its threads (what ``--parallel-models 1`` does), then in
N worker processes with 1/N of the threads each (``--parallel-models N``), and prints
both wall times. Texts are read as training reads them (``training.reading.text_format``),
their head only. The taxonomy model and the warm-up are left out: they are trained the
same way in both modes. Checkpoints go to a temporary folder that is removed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

from table.events import load_events, split_events
from training import parallel
from training.base_model import prepare_base_model
from training.config import parse_config
from training.distributed import World
from training.jobs import plan_jobs
from training.layout import build_hierarchy
from training.level import cpu_precision, train_level
from training.reading import choose_top_layers, text_format

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--workers", type=int, default=2, help="worker processes of the parallel run (default 2)")
    p.add_argument("--threads", type=int, default=None, help="threads in all (default: torch's)")
    p.add_argument("--train-args", default="", help="more training.train flags, e.g. '--epochs 1 --max-length 64'")
    args, rest = p.parse_known_args(argv)

    config = parse_config(["--data", args.data, "--output", "unused", "--quiet", "--path-warmup-epochs", "0",
                           *rest, *args.train_args.split()])
    top_layers, _ = choose_top_layers(config.top_layers, long=False)  # the texts are read head-only here
    config = dataclasses.replace(config, parallel_models=args.workers, top_layers=top_layers, truncation="head",
                                 precision=cpu_precision(config.precision))
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    frame, _ = split_events(load_events(args.data, config.columns), seed=config.seed)
    base, record = prepare_base_model(config.base_model)
    text = text_format(config)  # the format training reads with, character cap included
    hierarchy = build_hierarchy(list(zip(frame.taxonomy, frame.subtaxonomy)), text, record)
    jobs = [job for job in plan_jobs(hierarchy, frame, config) if job.taxonomy]
    tokenizer = AutoTokenizer.from_pretrained(base)
    result = {"models": len(jobs), "train_rows": sum(len(j.train) for j in jobs), "threads": threads,
              "workers": args.workers}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        for job in jobs:
            train_level(job, base, base, tokenizer, text, config, Path(tmp) / "one")
        result["one_at_a_time_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        parallel.train_jobs(jobs, base, base, text, config, Path(tmp) / "many", World(), threads)
        result["parallel_s"] = round(time.perf_counter() - started, 1)
    result["speedup"] = round(result["one_at_a_time_s"] / result["parallel_s"], 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
