#!/usr/bin/env python3
"""Load and fault runs against a real TorchServe on loopback, with a summary table.

    python -m benchmarks.soak --run artifacts/demo

  load      N requests (default 50,000) at concurrency 32: errors, worker restarts, and the
            worker's RSS every --rss-every requests, plotted (soak-RUN-rss.png), with its
            growth from request --warmup to the end (--load-only: this check alone);
  kill      SIGKILL the worker under load: which requests fail, and how long until answers
            are 200 again with nobody acting;
  restart   scripts' stop and start: the registered model comes back;
  token     an expired inference key: the scripts regenerate it and the call succeeds;
  slow      the heaviest input the handler accepts (64 long events per request) sent
            alongside normal requests: the normal ones keep being answered.
Every loop is bounded in count and time; all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

import psutil

from serving import ts_process
from benchmarks.bench import build
from benchmarks.served import Served, percentile
from benchmarks.workload import held_out_events


def worker(served: Served) -> psutil.Process:
    code, body = served.server.call("management", "GET", f"/models/{served.name}")
    pids = [w["pid"] for w in json.loads(body)[0]["workers"] if w.get("pid")]
    return psutil.Process(pids[0])


def load_run(served: Served, events: list[dict], total: int, concurrency: int, max_seconds: float,
             every: int = 1000, warmup: int = 5000) -> dict[str, Any]:
    """``total`` requests at ``concurrency``: the summary, worker restarts, and the worker's RSS
    each time the count of answered requests passes a multiple of ``every`` (and at the end);
    growth is measured from request ``warmup`` (the first sample at or past it) to the end."""
    proc = worker(served)
    log: list[tuple[float, float, int]] = []
    memory: dict[int, float] = {0: proc.memory_info().rss / 2**20}
    stop = threading.Event()

    def sample() -> None:  # RSS each time the request count passes a mark, printed as progress
        mark, started = every, time.perf_counter()
        while mark < total and not stop.is_set():
            if len(log) >= mark:
                memory[mark] = proc.memory_info().rss / 2**20
                print(f"  {mark:>7,} / {total:,} requests  {mark / (time.perf_counter() - started):6.1f} /s  "
                      f"worker RSS {memory[mark]:7.1f} MB", flush=True)
                mark += every
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    batch = [events[i % len(events)] for i in range(total)]
    summary = served.load(batch, concurrency, max_seconds, log)
    stop.set()
    sampler.join(timeout=2)
    memory[len(log)] = proc.memory_info().rss / 2**20
    frontend = proc.parent()  # TorchServe's Java frontend, the worker's parent
    restarted = worker(served).pid != proc.pid
    start = min((n for n in memory if n >= warmup), default=None)
    end = max(memory)
    return {**summary, "worker_restarts": int(restarted), "rss_mb": sorted(memory.items()),
            "warmup_requests": start, "rss_mb_at_warmup": memory.get(start), "rss_mb_at_end": memory[end],
            "frontend_rss_mb_at_end": frontend.memory_info().rss / 2**20 if frontend else None,
            "rss_growth_pct": growth_pct(memory, start, end) if start is not None and start < end else float("nan")}


def plot_rss(load: dict[str, Any], title: str, path: Path) -> Path:
    """The worker's RSS over requests, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    requests, rss = zip(*load["rss_mb"])
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(requests, rss, marker=".")
    if load["warmup_requests"] is not None:
        ax.axvline(load["warmup_requests"], color="grey", linestyle=":", label="growth measured from here")
        ax.legend(loc="lower right")
    ax.set_xlabel("requests answered")
    ax.set_ylabel("worker RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{title}: {load['rss_growth_pct']:+.1f}% after request {load['warmup_requests']}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def kill_run(served: Served, events: list[dict], concurrency: int, max_seconds: float,
             requests: int = 1500) -> dict[str, Any]:
    proc = worker(served)
    log: list[tuple[float, float, int]] = []
    killed_at: list[float] = []

    def killer() -> None:
        while len(log) < 50:
            time.sleep(0.01)
        killed_at.append(time.perf_counter())
        os.kill(proc.pid, signal.SIGKILL)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    batch = [events[i % len(events)] for i in range(requests)]
    served.load(batch, concurrency, max_seconds, log)
    thread.join(timeout=5)
    return {**kill_summary(log, killed_at[0]), "new_worker_pid": worker(served).pid != proc.pid}


def growth_pct(memory: dict[int, float], first: int, last: int) -> float:
    """RSS growth from request ``first`` to request ``last``, in percent (NaN when ``first`` was never sampled)."""
    return (memory[last] / memory[first] - 1) * 100 if first in memory else float("nan")


def kill_summary(log: list[tuple[float, float, int]], t_kill: float) -> dict[str, Any]:
    """From (start, end, status) per request: what failed around a kill at ``t_kill``, and the
    time from the kill to the first 200 of a request sent after it."""
    failed = [r for r in log if r[2] != 200]
    in_flight = [r for r in log if r[0] <= t_kill <= r[1]]
    after = sorted((r for r in log if r[0] > t_kill and r[2] == 200), key=lambda r: r[1])
    recovered = after[0][1] - t_kill if after else float("nan")
    return {"requests": len(log), "failed": len(failed), "in_flight_at_kill": len(in_flight),
            "failed_started_after_kill": sum(1 for r in failed if r[0] > t_kill),
            "seconds_to_first_200_after_kill": recovered}


def restart_run(served: Served) -> dict[str, Any]:
    started = time.perf_counter()
    ts_process.stop(served.server)
    ts_process.start(served.server, [], timeout=180)
    code, body = served.server.call("inference", "POST", f"/predictions/{served.name}",
                                    json.dumps({"title": "after restart"}).encode(), {"Content-Type": "application/json"})
    return {"model_back": code == 200, "seconds": time.perf_counter() - started}


def token_run(served: Served) -> dict[str, Any]:
    keys = json.loads(served.server.key_file.read_text())
    old = keys["inference"]["key"]
    keys["inference"]["expiration time"] = "2000-01-01T00:00:00.000000000Z"
    served.server.key_file.write_text(json.dumps(keys))
    code, _ = served.server.call("inference", "POST", f"/predictions/{served.name}", b"jazz night",
                                 {"Content-Type": "text/plain"})
    new = json.loads(served.server.key_file.read_text())["inference"]["key"]
    return {"answered": code == 200, "key_regenerated": new != old}


def slow_run(served: Served, events: list[dict], seconds: float, timeout: float) -> dict[str, Any]:
    heavy = json.dumps([{"title": "x" * 200, "description": ("long description " * 400)[:4000]}] * 64).encode()
    stop = threading.Event()
    heavy_times: list[float] = []

    def hammer() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            served.server.call("inference", "POST", f"/predictions/{served.name}", heavy,
                               {"Content-Type": "application/json"}, timeout=timeout + 30)
            heavy_times.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    log: list[tuple[float, float, int]] = []
    served.load([events[i % len(events)] for i in range(400)], 4, seconds, log)
    stop.set()
    for t in threads:
        t.join(timeout=timeout + 30)
    latencies = [(r[1] - r[0]) * 1000 for r in log]
    return {"normal_requests": len(log), "normal_errors": sum(r[2] != 200 for r in log),
            "normal_p50_ms": percentile(latencies, 50), "normal_p99_ms": percentile(latencies, 99),
            "heavy_requests": len(heavy_times), "heavy_p50_s": percentile(heavy_times, 50),
            "response_timeout_s": timeout}


def table(report: dict[str, Any]) -> str:
    load, kill, slow = report["load"], report["kill"], report["slow"]
    rows = [
        ("load", f"{load['requests']} requests at concurrency {report['concurrency']}",
         f"{load['errors']} errors, {load['worker_restarts']} worker restarts, {load['events_per_s']:.1f} events/s, "
         f"p99 {load['p99_ms']:.0f} ms; worker RSS {load['rss_mb_at_warmup'] or float('nan'):.0f} MB at request "
         f"{load['warmup_requests']} -> {load['rss_mb_at_end']:.0f} MB at the end ({load['rss_growth_pct']:+.1f}%)"),
        ("kill worker", f"SIGKILL under load ({kill['requests']} requests)",
         f"{kill['failed']} failed ({kill['in_flight_at_kill']} in flight at the kill, "
         f"{kill['failed_started_after_kill']} sent after it); first 200 again after "
         f"{kill['seconds_to_first_200_after_kill']:.1f} s; new worker: {kill['new_worker_pid']}"),
        ("restart", "serve stop + start", f"model back: {report['restart']['model_back']} "
                                          f"({report['restart']['seconds']:.1f} s)"),
        ("expired token", "inference key expired", f"answered: {report['token']['answered']}, "
                                                   f"key regenerated: {report['token']['key_regenerated']}"),
        ("slow input", f"{slow['heavy_requests']} requests of 64 long events alongside normal ones",
         f"normal: {slow['normal_requests']} answered, {slow['normal_errors']} errors, p50 {slow['normal_p50_ms']:.0f} ms, "
         f"p99 {slow['normal_p99_ms']:.0f} ms (responseTimeout {slow['response_timeout_s']} s); "
         f"heavy p50 {slow['heavy_p50_s']:.1f} s"),
    ]
    lines = ["| check | what | result |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--data", help="events table (default: the one the run was trained on)")
    p.add_argument("--requests", type=int, default=50000, help="requests in the load run")
    p.add_argument("--concurrency", type=int, default=32, help="clients in the load run")
    p.add_argument("--rss-every", type=int, default=1000, help="requests between samples of the worker's RSS")
    p.add_argument("--warmup", type=int, default=5000, help="requests before RSS growth is measured")
    p.add_argument("--load-only", action="store_true", help="the load run alone (no kill, restart, token, slow)")
    p.add_argument("--config", default="1x2:b32:d5", help="server layout WORKERSxTHREADS:bBATCH:dDELAY")
    p.add_argument("--max-seconds", type=float, default=1800, help="time cap per load loop")
    p.add_argument("--kill-requests", type=int, default=1500, help="requests in the kill run")
    p.add_argument("--slow-seconds", type=float, default=60, help="seconds of heavy input alongside normal requests")
    p.add_argument("--output", default=str(ROOT / "bench_results"), help="folder for JSON and markdown")
    args = p.parse_args(argv)

    from benchmarks.bench import parse_layout

    run = Path(args.run)
    events = held_out_events(args.data, run, 512)
    layout = parse_layout(args.config)
    report: dict[str, Any] = {"run": run.name, "concurrency": args.concurrency, "layout": args.config,
                              "rss_every": args.rss_every}
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        tmp = Path(tmp)
        (tmp / "store").mkdir()
        archive = build(run, tmp / "store", "soak", layout, None)
        with Served(tmp / "store", archive, tmp) as served:
            print("load ...", flush=True)
            report["load"] = load_run(served, events, args.requests, args.concurrency, args.max_seconds,
                                      args.rss_every, args.warmup)
            if args.load_only:
                return finish(report, Path(args.output), run.name)
            print("kill ...", flush=True)
            report["kill"] = kill_run(served, events, 8, args.max_seconds, args.kill_requests)
            print("restart ...", flush=True)
            report["restart"] = restart_run(served)
            print("token ...", flush=True)
            report["token"] = token_run(served)
            print("slow ...", flush=True)
            report["slow"] = slow_run(served, events, args.slow_seconds, int(served.model.get("responseTimeout", 60)))
    return finish(report, Path(args.output), run.name)


def finish(report: dict[str, Any], out: Path, name: str) -> int:
    """The report as JSON, the plot of RSS over requests and (all checks run) the markdown table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"soak-{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot = plot_rss(report["load"], f"{name}, concurrency {report['concurrency']}", out / f"soak-{name}-rss.png")
    load = report["load"]
    print(f"worker RSS every {report['rss_every']} requests: " + ", ".join(f"{mb:.0f}" for _, mb in load["rss_mb"])
          + f" MB ({plot})")
    if "slow" in report:
        text = table(report)
        (out / f"soak-{name}.md").write_text(text)
        print()
        print(text)
    else:
        print(f"load: {load['errors']} errors, {load['worker_restarts']} worker restarts, "
              f"{load['events_per_s']:.1f} events/s, p99 {load['p99_ms']:.0f} ms; RSS growth after request "
              f"{load['warmup_requests']}: {load['rss_growth_pct']:+.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
