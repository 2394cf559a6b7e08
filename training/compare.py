"""Train and evaluate several base models on the same split, side by side.

    python -m training.compare --data events.csv --base-models embedded,path/to/other --output artifacts/compare
    python -m training.compare --data events.csv --base-models embedded,distilbert-base-uncased -- --epochs 3

Each base gets a full run directory (same seed, so the same split), then the table and
plots compare taxonomy and leaf accuracy and macro-F1, training time and in-process
inference speed on the test split. Arguments after ``--`` go to every ``training.train``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from handlers.cascade import Cascade  # noqa: E402
from handlers.run_layout import METRICS_FILE, RECORD_FILE  # noqa: E402
from table.events import event_dicts, load_events, split_events  # noqa: E402
from training.base_model import DEFAULT_BASE  # noqa: E402
from training.train import main as train  # noqa: E402


def slug(base: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(base).name if Path(base).exists() else base).strip("-") or "base"


def inference_speed(run: Path, events: list[dict], batch: int = 32) -> float:
    cascade = Cascade(run, max_batch=batch)
    cascade.predict(events[:batch])
    started = time.perf_counter()
    for start in range(0, len(events), batch):
        cascade.predict(events[start : start + batch], top_k=1)
    return len(events) / (time.perf_counter() - started)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    names = [r["base"] for r in rows]
    panels = [("accuracy (%)", ["taxonomy_acc", "leaf_acc", "path_acc"]), ("macro-F1 (%)", ["taxonomy_f1", "leaf_f1"]),
              ("training minutes", ["train_min"]), ("inference events/s", ["events_per_s"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4))
    for ax, (title, keys) in zip(axes, panels):
        width = 0.8 / len(keys)
        for k, key in enumerate(keys):
            xs = [i + k * width for i in range(len(rows))]
            ax.bar(xs, [r[key] for r in rows], width, label=key)
        ax.set_xticks([i + width * (len(keys) - 1) / 2 for i in range(len(rows))], names, rotation=20, ha="right")
        ax.set_title(title)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="events table")
    p.add_argument("--base-models", required=True,
                   help="comma-separated: 'embedded' (the default base), local folders or hub ids")
    p.add_argument("--output", default="artifacts/compare", help="folder for the runs, table and plot")
    p.add_argument("--seed", type=int, default=42, help="one seed for every base: the same split")
    args = p.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    frame, _ = split_events(load_events(args.data), seed=args.seed)
    test = frame[frame.split == "test"]
    if test.empty:
        test = frame[frame.split == "val"]
    events = event_dicts(test)
    rows = []
    for base in [b.strip() for b in args.base_models.split(",") if b.strip()]:
        name = "embedded-MiniLM-L6" if base in ("embedded", DEFAULT_BASE) else slug(base)
        run = out / name
        print(f"== {name}", flush=True)
        if not (run / METRICS_FILE).is_file():
            base_arg = [] if base in ("embedded", DEFAULT_BASE) else ["--base-model", base]
            code = train(["--data", args.data, "--output", str(run), "--seed", str(args.seed), *base_arg, *extra])
            if code != 0:
                print(f"error: training with {base} failed (exit {code}); skipped", file=sys.stderr)
                continue
        metrics = json.loads((run / METRICS_FILE).read_text())
        info = json.loads((run / RECORD_FILE).read_text())
        split = "test" if "test" in metrics["splits"] else "val"
        m = metrics["splits"][split]
        rows.append({
            "base": name, "split": split,
            "taxonomy_acc": 100 * m["taxonomy"]["accuracy"], "taxonomy_f1": 100 * m["taxonomy"]["macro_f1"],
            "leaf_acc": 100 * m["subtaxonomy"]["accuracy"], "leaf_f1": 100 * m["subtaxonomy"]["macro_f1"],
            "path_acc": 100 * m["path_accuracy"], "train_min": info["train_seconds"] / 60,
            "events_per_s": inference_speed(run, events),
        })
    if not rows:
        print("error: no base model trained", file=sys.stderr)
        return 1
    lines = ["| base | split | taxonomy acc | taxonomy macro-F1 | leaf acc | leaf macro-F1 | path acc | "
             "training min | events/s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['base']} | {r['split']} | {r['taxonomy_acc']:.2f} | {r['taxonomy_f1']:.2f} | "
                     f"{r['leaf_acc']:.2f} | {r['leaf_f1']:.2f} | {r['path_acc']:.2f} | {r['train_min']:.1f} | "
                     f"{r['events_per_s']:.1f} |")
    table = "\n".join(lines) + "\n"
    (out / "comparison.md").write_text(table + "\n![comparison](comparison.png)\n")
    (out / "comparison.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot(rows, out / "comparison.png")
    print(table)
    print(f"wrote {out / 'comparison.md'}, {out / 'comparison.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
