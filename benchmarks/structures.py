"""What the shared trunk saves, in-process: trunk cascade vs whole-checkpoint cascade vs one flat model.

    python -m benchmarks.structures --run artifacts/demo --data training/sample_events.csv

The same trained weights three ways, on the same test events: greedy decoding with top_k 1
(one subtaxonomy model per event), and default requests (the handler's default top_k, the
run's decoding), which may visit more taxonomies:
  trunk  the run as trained: the shared trunk once per event, each level's top layers;
  whole  the same run exported with one whole checkpoint per level (what --top-layers all
         stores): a full pass per level and per extra taxonomy visited;
  trunk, every candidate
         the trunk run with routing off (handlers/routing.py): what routing saves;
  flat   one single-level classifier (the taxonomy model exported whole): one full pass per
         event, the floor of any two-level method. Read like every level of the cascade,
         its last layer computing the first position only (handlers/distilbert.py);
  flat, stock last layer
         the same model as transformers' AutoModelForSequenceClassification computes it:
         every position through every layer, what a single model served as it comes costs.
Also each at bf16 autocast when the CPU has native bf16. Prints a markdown table with each
structure's events/s as a fraction of flat's; ``benchmarks/bench.py`` runs it too.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.workload import held_out_events
from handlers.settings import HandlerSettings


def _rate(cascade: Any, events: list[dict], batch: int, top_k: int, max_seconds: float) -> float:
    """events/s of ``cascade.predict`` over ``events`` in calls of ``batch``, bounded by ``max_seconds``.

    One untimed pass first: oneDNN prepares kernels per tensor shape once per process, so
    without it whichever structure ran first would pay for the shapes of all the others.
    """
    for _ in ("warm-up", "timed"):
        done, started = 0, time.perf_counter()
        while done < len(events) and time.perf_counter() - started < max_seconds:
            cascade.predict(events[done : done + batch], top_k=top_k)
            done += len(events[done : done + batch])
    return done / (time.perf_counter() - started)


EVERY = "trunk, every candidate"  # the trunk run without routing: every candidate taxonomy's model runs
STOCK = "flat, stock last layer"


def _stock_model(cascade: Any) -> None:
    """Each model swapped for transformers' own AutoModelForSequenceClassification of the
    same checkpoint: every position through every layer."""
    from transformers import AutoModelForSequenceClassification

    from handlers.precision import bf16_linears

    for folder in cascade.models:
        cascade.models[folder] = AutoModelForSequenceClassification.from_pretrained(
            str(cascade.run_dir / folder), use_safetensors=True).eval()
        if cascade.precision == "bf16":  # as the cascade holds its own models
            bf16_linears(cascade.models[folder])


def compare_structures(run: Path, events: list[dict], batch_sizes: list[int], threads: int,
                       max_seconds: float = 20.0, top_k: int | None = None, repeats: int = 1) -> list[dict[str, Any]]:
    """events/s per structure, decoding, precision and batch size (see the module docstring).

    With ``repeats`` > 1 every cell is measured that many times, the structures in a rotated
    order each round, and the row holds the median (``events_per_s``) and every run
    (``events_per_s_runs``): on a 2-core machine single runs move 15-25% per cell, more than
    the differences the structures are compared for.
    """
    import dataclasses
    import statistics

    import torch

    from handlers.precision import bf16_is_native
    from handlers.cascade import Cascade
    from handlers.abstention import Abstention
    from handlers.hierarchy import Hierarchy
    from archives.export import export_whole_run

    torch.set_num_threads(threads)
    hierarchy = Hierarchy.load(run)
    precisions = ["fp32", "bf16"] if bf16_is_native() else ["fp32"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-structures-") as tmp:
        whole = export_whole_run(run, Path(tmp) / "whole")
        flat = Path(tmp) / "flat"  # the taxonomy model alone, whole: one full pass per event
        export_whole_run(run, flat)
        dataclasses.replace(Hierarchy.load(flat), subtaxonomies={}, name="flat", paths=None, paths_weight=0.0,
                            abstention=Abstention()).save(flat)
        default = (hierarchy.decoding, top_k or HandlerSettings().top_k)
        setups = [("flat", flat, ("greedy", 1)), (STOCK, flat, ("greedy", 1))]
        setups += [(name, source, mode) for mode in dict.fromkeys([("greedy", 1), default])
                   for name, source in (("whole", whole), ("trunk", run))]
        if default[1] > 1 or default[0] == "joint":  # routing matters only where other taxonomies are candidates
            setups.append((EVERY, run, default))
        runs: dict[tuple[str, str, str, int], list[float]] = {}
        for round_ in range(max(1, repeats)):
            turn = round_ % len(setups)
            for precision in precisions:
                for name, source, (decoding, k) in setups[turn:] + setups[:turn]:
                    cascade = Cascade(source, max_batch=max(batch_sizes), decoding=decoding, precision=precision,
                                      routing=name != EVERY)
                    if name == STOCK:
                        _stock_model(cascade)
                    mode = "-" if name.startswith("flat") else f"{decoding}, top_k {k}"
                    for batch in batch_sizes:
                        rate = _rate(cascade, events, batch, k, max_seconds)
                        runs.setdefault((name, mode, precision, batch), []).append(rate)
                        print(f"{name:>22} {mode:>16} {precision} batch {batch:>3}: {rate:8.1f} events/s"
                              + (f" (round {round_ + 1})" if repeats > 1 else ""), flush=True)
        order = [(name, "-" if name.startswith("flat") else f"{decoding}, top_k {k}")
                 for name, _, (decoding, k) in setups]
        for precision in precisions:
            for name, mode in order:
                for batch in batch_sizes:
                    rates = runs[name, mode, precision, batch]
                    row = {"structure": name, "decoding": mode, "precision": precision, "batch": batch,
                           "events_per_s": round(statistics.median(rates), 1)}
                    if len(rates) > 1:
                        row["events_per_s_runs"] = [round(rate, 1) for rate in rates]
                    rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: events/s (and the fraction of flat's at the same precision and batch)."""
    batches = sorted({r["batch"] for r in rows})
    flat = {(r["precision"], r["batch"]): r["events_per_s"] for r in rows if r["structure"] == "flat"}
    lines = ["| structure | decoding | precision | " + " | ".join(f"batch {b}" for b in batches) + " |",
             "|---|---|---|" + "---|" * len(batches)]
    keys = dict.fromkeys((r["structure"], r["decoding"], r["precision"]) for r in rows)
    for structure, decoding, precision in keys:
        cells = []
        for b in batches:
            rate = next(r["events_per_s"] for r in rows if (r["structure"], r["decoding"], r["precision"], r["batch"])
                        == (structure, decoding, precision, b))
            cells.append(f"{rate:.1f}" if structure == "flat" else f"{rate:.1f} ({rate / flat[precision, b]:.2f}x)")
        lines.append(f"| {structure} | {decoding} | {precision} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a run trained with a shared trunk (--top-layers K)")
    p.add_argument("--data", default=None, help="the events table (default: the one the run recorded)")
    p.add_argument("--events", type=int, default=512, help="test events per measurement")
    p.add_argument("--batch-sizes", default="1,8,32", help="comma-separated batch sizes")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the fp32 archive's default)")
    p.add_argument("--max-seconds", type=float, default=20.0, help="time limit per measurement")
    p.add_argument("--top-k", type=int, default=None, help="top_k per request (default: the handler's default)")
    p.add_argument("--repeats", type=int, default=1,
                   help="measure every cell this many times, structures in rotated order, and report the median")
    args = p.parse_args(argv)
    events = held_out_events(args.data, Path(args.run), args.events)
    rows = compare_structures(Path(args.run), events, [int(b) for b in args.batch_sizes.split(",")], args.threads,
                              args.max_seconds, args.top_k, args.repeats)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
