"""Worker memory: the resident set of a process that loads a run's cascade and answers events.

    python -m benchmarks.memory --run artifacts/clinc150

Each structure is measured in a fresh Python process, as a TorchServe worker starts: after
the imports the cascade needs, after loading the run, and after answering ``--events`` test
events with default requests in calls of ``--batch`` (with the peak, VmHWM). Structures: the
run as trained and, for a run with a shared trunk, its whole-checkpoint export (what
``--top-layers all`` stores). Prints a markdown table in MB. A served worker holds a little
more (TorchServe's own Python package); ``benchmarks/soak.py`` samples a live worker.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("imports", "loaded", "answered", "peak")


def _rss_mb() -> dict[str, float]:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {key: int(status[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def child(run: str, events_file: str, batch: int, threads: int) -> dict[str, float]:
    """The measurement inside the fresh process (``--child``)."""
    import torch

    from handlers.cascade import Cascade
    from handlers.settings import HandlerSettings

    torch.set_num_threads(threads)
    out = {"imports": _rss_mb()["VmRSS"]}
    cascade = Cascade(run, max_batch=batch)
    out["loaded"] = _rss_mb()["VmRSS"]
    events = json.loads(Path(events_file).read_text(encoding="utf-8"))
    for start in range(0, len(events), batch):
        cascade.predict(events[start : start + batch], top_k=HandlerSettings().top_k)
    rss = _rss_mb()
    return {**out, "answered": rss["VmRSS"], "peak": rss["VmHWM"]}


def measure(run: Path, events: list[dict[str, Any]], batch: int, threads: int) -> dict[str, dict[str, float]]:
    """RSS stages per structure, each in its own process."""
    from handlers.hierarchy import Hierarchy
    from archives.export import export_whole_run

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        events_file = Path(tmp) / "events.json"
        events_file.write_text(json.dumps(events), encoding="utf-8")
        structures = {"as trained": run}
        if Hierarchy.load(run).trunk is not None:
            structures["whole checkpoints"] = export_whole_run(run, Path(tmp) / "whole")
        for name, folder in structures.items():
            result = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--child", str(folder),
                                     "--events-file", str(events_file), "--batch", str(batch),
                                     "--threads", str(threads)],
                                    capture_output=True, text=True, cwd=ROOT, check=False)
            if result.returncode != 0:
                raise RuntimeError(f"measuring {name} failed:\n{result.stderr[-2000:]}")
            results[name] = json.loads(result.stdout.strip().splitlines()[-1])
            print(f"{name}: " + ", ".join(f"{k} {v:.0f} MB" for k, v in results[name].items()), flush=True)
    return results


def table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| structure | after imports | loaded | after the events | peak |", "|---|---|---|---|---|"]
    for name, stages in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{stages[s]:.0f}" for s in STAGES) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="a run directory (or an extracted archive)")
    p.add_argument("--data", default=None, help="the events table (default: the one the run recorded)")
    p.add_argument("--events", type=int, default=600, help="test events to answer")
    p.add_argument("--batch", type=int, default=32, help="events per call")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--events-file", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.events_file, args.batch, args.threads)))
        return 0
    if not args.run:
        p.error("--run is required")
    from benchmarks.workload import held_out_events

    events = held_out_events(args.data, Path(args.run), args.events)
    print(table(measure(Path(args.run), events, args.batch, args.threads)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
