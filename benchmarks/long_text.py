#!/usr/bin/env python3
"""Long descriptions: accuracy and cost of the ways a run can read them, on one table.

    python -m benchmarks.long_text --data ../shared/data/20ng-bydate-train.csv --per-class 150

Takes a seeded sample of the table's train rows (``--per-class`` per subtaxonomy; every
val row, or ``--val-per-class``), then on exactly those rows:
  baseline  TF-IDF (word 1-2 grams, sublinear tf) + LinearSVC, flat over the leaves;
  variants  python -m training.train once per variant (default: all of them: the defaults,
            which choose truncation and the lexical weight from the data; head-only and
            head+tail without lexical models; head+tail with them; 256 tokens head+tail;
            four windows instead of two; one or two top layers over the shared trunk),
            each with the same flags;
and for each run: val leaf and path accuracy, training minutes, and the in-process cost per
event at batch 32 for the val texts over and under max_length tokens. With --val-per-class,
the val rows outside the sample score the baseline and every run too: every weight a run
chooses is chosen on the sampled val rows, so only the held-out figure is free of that
choice. Prints a markdown table and writes it with the raw figures to --output.

    python -m benchmarks.long_text --data ... --costs RUN

trains nothing and compares the serving cost of every way of reading long text (head at
128 tokens, head+tail at 128 / 256 / 512, 2 or 4 windows) on one run's checkpoints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from table.events import event_dicts

if TYPE_CHECKING:
    import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "defaults": [],
    "head, no lexical": ["--truncation", "head", "--lexical", "off"],
    "head+tail, no lexical": ["--truncation", "head_tail", "--lexical", "off"],
    "head+tail": ["--truncation", "head_tail"],
    "256 tokens": ["--max-length", "256", "--truncation", "head_tail"],
    "4 windows": ["--max-windows", "4"],
    "top 1": ["--top-layers", "1"],
    "top 2": ["--top-layers", "2"],
}


def sample(data: Path, per_class: int, val_per_class: int | None, seed: int, out: Path) -> Path:
    """The seeded rows every run trains and is chosen on (``out``); with ``--val-per-class``, the val
    rows left out go to ``heldout.csv`` beside it: nothing is chosen on them, so they show how
    much of a val figure is selection."""
    import pandas as pd

    frame = pd.read_csv(data, keep_default_na=False)
    if "split" not in frame or not (frame.split == "val").any():
        raise SystemExit(f"error: {data} needs a split column with train and val rows")

    def take(rows: "pd.DataFrame", n: int | None) -> "pd.DataFrame":
        if n is None:
            return rows
        picked = [g.sample(min(n, len(g)), random_state=seed) for _, g in rows.groupby(["taxonomy", "subtaxonomy"])]
        return pd.concat(picked)

    val = frame[frame.split == "val"]
    chosen = take(val, val_per_class)
    subset = pd.concat([take(frame[frame.split == "train"], per_class), chosen])
    subset.to_csv(out, index=False)
    heldout = out.with_name("heldout.csv")
    heldout.unlink(missing_ok=True)
    if len(chosen) < len(val):
        val.drop(index=chosen.index).to_csv(heldout, index=False)
    return out


def baseline(table: Path) -> dict[str, float]:
    """Flat leaf accuracy of TF-IDF + LinearSVC on the val rows (and on the held-out rows, if any)."""
    import pandas as pd
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    def texts(frame: "pd.DataFrame") -> list[str]:
        return (frame.title + ". " + frame.description).tolist()

    def leaves(frame: "pd.DataFrame") -> list[str]:
        return (frame.taxonomy + " / " + frame.subtaxonomy).tolist()

    frame = pd.read_csv(table, keep_default_na=False)
    train = frame[frame.split == "train"]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    model = LinearSVC().fit(vectorizer.fit_transform(texts(train)), leaves(train))
    out = {}
    for name, rows in (("val", frame[frame.split == "val"]), ("heldout", _heldout(table))):
        if rows is not None:
            pred = model.predict(vectorizer.transform(texts(rows)))
            out[name] = float(sum(p == t for p, t in zip(pred, leaves(rows))) / len(rows))
    return out


def _heldout(table: Path) -> "pd.DataFrame | None":
    """The val rows ``sample`` left out, if it left any."""
    import pandas as pd

    path = table.with_name("heldout.csv")
    return pd.read_csv(path, keep_default_na=False) if path.is_file() else None


def heldout_leaf(run: Path, table: Path) -> float | None:
    """The run's leaf (path) accuracy on the held-out val rows, as it serves them."""
    import torch

    from handlers.cascade import Cascade
    from table.scoring import evaluate_frame

    rows = _heldout(table)
    if rows is None:
        return None
    torch.set_num_threads(2)
    return evaluate_frame(Cascade(run, max_batch=64), rows).scores["path_accuracy"]


def _val_groups(cascade: Any, table: Path, limit: int, per_group: int = 192) -> dict[str, list[dict]]:
    """A seeded sample of the val events over and under ``limit`` tokens, each sorted by
    length, as length-bucketed batches would group them."""
    import pandas as pd

    frame = pd.read_csv(table, keep_default_na=False)
    events = event_dicts(frame[frame.split == "val"])
    fmt = dataclasses.replace(cascade.hierarchy.text, max_chars=16384)
    lengths = [len(ids) for ids in cascade.tokenizer([fmt.format(e) for e in events], truncation=False,
                                                     verbose=False)["input_ids"]]
    rng = random.Random(0)
    groups = {}
    for group, keep in (("long", lambda n: n > limit), ("short", lambda n: n <= limit)):
        picked = [i for i, n in enumerate(lengths) if keep(n)]
        picked = rng.sample(picked, min(per_group, len(picked)))
        groups[group] = [events[i] for i in sorted(picked, key=lambda i: lengths[i])]
    return groups


def _rates(cascade: Any, groups: dict[str, list[dict]]) -> dict[str, float]:
    """Events/s per group at batch 32 with default requests (the handler's top_k, the run's decoding)."""
    from handlers.settings import HandlerSettings

    top_k = HandlerSettings().top_k
    out = {}
    for group, rows in groups.items():
        if not rows:
            continue
        for _ in range(2):  # an untimed pass first: kernels are prepared per shape
            started = time.perf_counter()
            for start in range(0, len(rows), 32):
                cascade.predict(rows[start : start + 32], top_k=top_k)
        out[group] = len(rows) / (time.perf_counter() - started)
    return out


def serving_cost(run: Path, table: Path) -> dict[str, float]:
    """Events/s in-process for val texts over and under max_length tokens: as the run serves
    them; read as before long text was read whole (``_as_before``: the same checkpoints, head
    truncation, no lexical model, no paths level); and, on a shared-trunk run, read so by
    whole checkpoints (``export_whole_run``: the cascade's structure when long text was first
    measured, a full pass per level)."""
    import tempfile

    import torch

    from handlers.cascade import Cascade
    from archives.export import export_whole_run

    torch.set_num_threads(2)
    cascade = Cascade(run, max_batch=32)
    groups = _val_groups(cascade, table, cascade.hierarchy.text.max_length)
    out = {f"served_{g}_events_per_s": r for g, r in _rates(cascade, groups).items()}
    _as_before(cascade)
    out.update({f"head_only_{g}_events_per_s": r for g, r in _rates(cascade, groups).items()})
    if cascade.hierarchy.trunk is not None:
        with tempfile.TemporaryDirectory() as tmp:
            whole = Cascade(export_whole_run(run, Path(tmp) / "whole"), max_batch=32)
            _as_before(whole)
            out.update({f"whole_head_only_{g}_events_per_s": r for g, r in _rates(whole, groups).items()})
    return out


def _as_before(cascade: Any) -> None:
    """Make ``cascade`` read the first max_length tokens with its transformers alone."""
    text = dataclasses.replace(cascade.hierarchy.text, truncation="head")
    cascade.hierarchy = dataclasses.replace(cascade.hierarchy, text=text, paths=None, paths_weight=0.0)
    cascade.lexical, cascade.paths_weight = {}, 0.0


# How a run can read its texts, for the cost table: (truncation, max_length, max_windows, lexical).
READINGS = {
    "head 128, no lexical": ("head", 128, 1, False),
    "head_tail 128 + lexical": ("head_tail", 128, 1, True),
    "head_tail 256 + lexical": ("head_tail", 256, 1, True),
    "head_tail 512 + lexical": ("head_tail", 512, 1, True),
    "windows 2 x 128 + lexical": ("windows", 128, 2, True),
    "windows 4 x 128 + lexical": ("windows", 128, 4, True),
}


def reading_costs(run: Path, table: Path) -> dict[str, dict[str, float]]:
    """Events/s in-process (``_rates``) for val texts over and under 128 tokens (``_val_groups``),
    under each way of reading them in ``READINGS``.

    Cost does not depend on the weights, so one run's checkpoints serve for every reading
    (a run trained at 128 tokens still has position embeddings up to 512); the accuracy of
    each reading comes from the variant trained for it.
    """
    import torch

    from handlers.cascade import Cascade

    torch.set_num_threads(2)
    cascade = Cascade(run, max_batch=32)
    lexical = cascade.lexical
    fmt = dataclasses.replace(cascade.hierarchy.text, max_chars=16384)
    groups = _val_groups(cascade, table, 128)
    out: dict[str, dict[str, float]] = {}
    for name, (truncation, max_length, windows, use_lexical) in READINGS.items():
        text = dataclasses.replace(fmt, truncation=truncation, max_length=max_length, max_windows=windows)
        cascade.hierarchy = dataclasses.replace(cascade.hierarchy, text=text)
        cascade.lexical = lexical if use_lexical else {}
        out[name] = _rates(cascade, groups)
        print(f"  {name}: " + ", ".join(f"{g} {r:.1f} events/s" for g, r in out[name].items()), flush=True)
    return out


def cost_table(costs: dict[str, dict[str, float]]) -> list[str]:
    """Markdown rows: events/s and cost per event relative to the first reading."""
    base = next(iter(costs.values()))
    lines = ["| reading | events/s over 128 tokens | cost per event (x) | events/s under 128 | cost (x) |",
             "|---|---|---|---|---|"]
    for name, rates in costs.items():
        cells = [f"{rates[g]:.1f} | {base[g] / rates[g]:.2f}" if g in rates else "- | -" for g in ("long", "short")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="events table with a split column (train and val rows)")
    p.add_argument("--per-class", type=int, default=150, help="train rows per subtaxonomy (default 150)")
    p.add_argument("--val-per-class", type=int, default=None, help="val rows per subtaxonomy (default: all)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--train-args", default="--threads 2 --quiet", help="extra flags for every training run")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--output", default=str(ROOT / "bench_results" / "long_text"), help="folder for runs and results")
    p.add_argument("--costs", metavar="RUN", default=None,
                   help="train nothing: measure the serving cost of each way of reading long text on this "
                        "run's checkpoints (cost does not depend on the weights) and write costs.md/json")
    args = p.parse_args(argv)
    if args.costs:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        table = sample(Path(args.data), args.per_class, args.val_per_class, args.seed, out / "sample.csv")
        costs = reading_costs(Path(args.costs), table)
        (out / "costs.json").write_text(json.dumps(costs, indent=2) + "\n")
        lines = cost_table(costs)
        (out / "costs.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return 0
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    table = sample(Path(args.data), args.per_class, args.val_per_class, args.seed, out / "sample.csv")
    base = baseline(table)
    results: dict[str, Any] = {"data": args.data, "per_class": args.per_class, "baseline_leaf": base["val"],
                               "baseline_heldout_leaf": base.get("heldout")}
    print("TF-IDF + LinearSVC leaf accuracy: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in base.items()), flush=True)
    for number, name in enumerate(names, start=1):
        run = out / name.replace(" ", "_").replace(",", "").replace("+", "-")
        print(f"[{number}/{len(names)}] training {name!r} into {run}", flush=True)
        started = time.perf_counter()
        command = [sys.executable, "-m", "training.train", "--data", str(table), "--output", str(run),
                   "--overwrite", *args.train_args.split(), *VARIANTS[name]]
        subprocess.run(command, cwd=ROOT, check=True)
        minutes = (time.perf_counter() - started) / 60
        val = json.loads((run / "metrics.json").read_text())["splits"]["val"]
        hierarchy = json.loads((run / "hierarchy.json").read_text())
        results[name] = {"val_leaf": val["subtaxonomy"]["accuracy"], "val_taxonomy": val["taxonomy"]["accuracy"],
                         "train_minutes": minutes, "truncation": hierarchy["text"].get("truncation", "head"),
                         "lexical_weight": (hierarchy["taxonomy"].get("lexical") or {}).get("weight", 0.0),
                         "heldout_leaf": heldout_leaf(run, table), **serving_cost(run, table)}
        print(json.dumps({name: results[name]}), flush=True)

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}"

    lines = [f"Val on {args.data} ({args.per_class} train rows per subtaxonomy); TF-IDF + LinearSVC leaf "
             f"{pct(results['baseline_leaf'])} (held-out val rows: {pct(results['baseline_heldout_leaf'])})", "",
             "| variant | truncation | lexical weight (taxonomy) | val taxonomy | val leaf | held-out leaf | train min | "
             "events/s long (head only; whole checkpoints) | events/s short (head only; whole checkpoints) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        r = results[name]
        lines.append(f"| {name} | {r['truncation']} | {r['lexical_weight']} | {pct(r['val_taxonomy'])} | "
                     f"{pct(r['val_leaf'])} | {pct(r['heldout_leaf'])} | {r['train_minutes']:.1f} | "
                     f"{_rates_cell(r, 'long')} | {_rates_cell(r, 'short')} |")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _rates_cell(result: dict[str, Any], group: str) -> str:
    """Served events/s, then in brackets the head-only readings (``serving_cost``)."""
    before = [f"{result[key]:.1f}" for key in (f"head_only_{group}_events_per_s", f"whole_head_only_{group}_events_per_s")
              if key in result]
    return f"{result.get(f'served_{group}_events_per_s', 0):.1f} ({'; '.join(before)})"


if __name__ == "__main__":
    sys.exit(main())
