#!/usr/bin/env python3
"""Serving speed, measured: in-process ceiling, served through TorchServe, naive handler.

    python -m benchmarks.bench --run artifacts/clinc150 --data ../shared/data/clinc150.csv

Five measurements on the same events, in one run:
  ceiling  the cascade in-process at batch 1, 8 and 32 (events/s, latency per call), with
           default requests (the handler's top_k) and the default archive's precision;
  served   our archive through a real TorchServe on loopback at concurrency 1, 8 and 32,
           one event per HTTP request with default request fields, as the ceiling
           (events/s, p50/p95/p99 latency, errors);
  naive    benchmarks/naive_handler.py served the same way: one request per forward pass,
           padded to max_length, the two levels as separate calls.
  floor    benchmarks/empty_handler.py (no model) served with the main layout: what TorchServe
           itself adds to a request, batch delay included.
  structures  (runs with a shared trunk) the same weights as trunk + tops, as whole
           checkpoints, and as one flat model: benchmarks/structures.py.
It prints a markdown table with the ratios and writes it with the raw figures (JSON) to
--output. Every loop is bounded by --requests and --max-seconds; traffic stays on 127.0.0.1.
``--configs`` compares server layouts (workers x threads, batchSize, maxBatchDelay).
``--rounds N`` serves the main layout and the naive handler N times, alternately, and gives
the served/naive ratio of each round and their median: on a shared machine the naive
handler's rate alone moves by a quarter between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from benchmarks.served import WARMUP_REQUESTS, WARMUP_SECONDS, WRK_SECONDS, Served, percentile
from benchmarks.structures import compare_structures
from benchmarks.structures import table as structures_table
from benchmarks.workload import held_out_events
from handlers.hierarchy import Hierarchy
from handlers.settings import HandlerSettings
from archives.export import export_whole_run


# -- in-process ceiling -------------------------------------------------------------------
def ceiling(run: Path, events: list[dict], batch_sizes: list[int], threads: int, quantize: str | None,
            max_seconds: float, precision: str = HandlerSettings().precision) -> list[dict[str, Any]]:
    import torch

    from handlers.cascade import Cascade

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        source = run
        if quantize:  # the same int8 ONNX exports an int8 archive carries
            from archives.int8 import export_run_int8
            from handlers.run_dir import check_run_dir

            source = Path(tmp) / "run"
            export_run_int8(run, check_run_dir(run), source)
        cascade = Cascade(source, max_batch=max(batch_sizes), quantize=quantize, precision=precision)
    top_k = HandlerSettings().top_k  # what a request that does not say gets
    print(f"ceiling: {quantize or cascade.precision}, decoding {cascade.decoding}, top_k {top_k}", flush=True)
    cascade.predict(events[:8])  # warm-up
    results = []
    for b in batch_sizes:
        latencies, done, started = [], 0, time.perf_counter()
        while done < len(events) and time.perf_counter() - started < max_seconds:
            chunk = events[done : done + b]
            t0 = time.perf_counter()
            cascade.predict(chunk, top_k=top_k)
            latencies.append((time.perf_counter() - t0) * 1000)
            done += len(chunk)
        seconds = time.perf_counter() - started
        results.append({"batch": b, "events": done, "events_per_s": done / seconds,
                        "latency_ms_p50": percentile(latencies, 50), "latency_ms_mean": statistics.mean(latencies)})
        print(f"ceiling batch {b:>3}: {done / seconds:8.1f} events/s, {percentile(latencies, 50):7.1f} ms per call",
              flush=True)
    return results


# -- served --------------------------------------------------------------------------------
def build(run: Path, store: Path, name: str, layout: dict[str, int], quantize: str | None,
          handler: Path | None = None, precision: str = HandlerSettings().precision) -> str:
    command = [sys.executable, "-m", "archives.build", "--run", str(run), "--name", name,
               "--model-store", str(store), "--force", "--workers", str(layout["workers"]),
               "--threads", str(layout["threads"]), "--batch-size", str(layout["batch"]),
               "--max-batch-delay", str(layout["delay"]), "--precision", precision]
    if quantize:
        command += ["--quantize", quantize, "--max-drop", "100"]  # the gate is the builder's job
    if handler:
        command += ["--handler", str(handler)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"archive build failed:\n{result.stderr}")
    return f"{name}.mar"


def served(run: Path, events: list[dict], concurrencies: list[int], layout: dict[str, int], quantize: str | None,
           max_seconds: float, label: str, handler: Path | None = None, client: str = "python",
           precision: str = HandlerSettings().precision, warmup: int = WARMUP_REQUESTS,
           server: type = Served) -> list[dict[str, Any]]:
    """``server``: Served (TorchServe) or benchmarks/kserve_served.py's KServeServed, on the same archive."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "store").mkdir()
        archive = build(run, tmp / "store", "bench", layout, quantize, handler, precision)
        with server(tmp / "store", archive, tmp) as srv:
            srv.load([events[i % len(events)] for i in range(warmup)], 8, min(max_seconds, WARMUP_SECONDS))
            results = []
            for c in concurrencies:
                if client == "wrk":
                    r = srv.load_wrk(events, c, min(max_seconds, WRK_SECONDS))
                else:
                    r = srv.load(events, c, max_seconds)
                results.append({**r, "worker_rss_mb": srv.worker_rss_mb()})
                print(f"{label} concurrency {c:>3}: {r['events_per_s']:8.1f} events/s, p50 {r['p50_ms']:7.1f} ms, "
                      f"p95 {r['p95_ms']:7.1f}, p99 {r['p99_ms']:7.1f}, errors {r['errors']}", flush=True)
            return results


def ratios(ceiling_rows: list[dict], served_rows: list[dict], naive_rows: list[dict],
           floor_rows: list[dict] = ()) -> dict[str, float]:
    """Served against the in-process ceiling (largest concurrency vs largest batch, and the
    latency added at concurrency 1), against the naive handler, and what of the added
    latency the server floor does not explain, where measured."""
    ceil = {r["batch"]: r for r in ceiling_rows}
    serv = {r["concurrency"]: r for r in served_rows}
    naive = {r["concurrency"]: r for r in naive_rows}
    floor = {r["concurrency"]: r for r in floor_rows}
    out: dict[str, float] = {}
    top_c, top_b = max(serv, default=None), max(ceil, default=None)
    if top_c is not None and top_b is not None:
        out[f"served c{top_c} / ceiling b{top_b} (events/s)"] = serv[top_c]["events_per_s"] / ceil[top_b]["events_per_s"]
    if 1 in serv and 1 in ceil:
        out["served c1 p50 - ceiling b1 latency (ms)"] = serv[1]["p50_ms"] - ceil[1]["latency_ms_p50"]
    if 1 in serv and 1 in ceil and 1 in floor:
        out["served c1 p50 - ceiling b1 - floor c1 p50 (ms): the handler's own share"] = (
            serv[1]["p50_ms"] - ceil[1]["latency_ms_p50"] - floor[1]["p50_ms"])
    if top_c in naive:
        out[f"served / naive at c{top_c} (events/s)"] = serv[top_c]["events_per_s"] / naive[top_c]["events_per_s"]
    return out


def kserve_ratios(torchserve_rows: list[dict], kserve_rows: list[dict]) -> dict[str, float]:
    """The KServe server against TorchServe on the same archive: rate at the largest concurrency, latency at 1."""
    ts = {r["concurrency"]: r for r in torchserve_rows}
    ks = {r["concurrency"]: r for r in kserve_rows}
    out: dict[str, float] = {}
    top = max(ts.keys() & ks.keys(), default=None)
    if top is not None:
        out[f"KServe / TorchServe at c{top} (events/s)"] = ks[top]["events_per_s"] / ts[top]["events_per_s"]
    if 1 in ts and 1 in ks:
        out["KServe c1 p50 - TorchServe c1 p50 (ms)"] = ks[1]["p50_ms"] - ts[1]["p50_ms"]
    return out


def paired_rounds(rounds: list[tuple[list[dict], list[dict]]]) -> list[dict[str, float]]:
    """Per round (served rows, naive rows measured one after the other), both rates at the
    largest concurrency the two share, and their ratio."""
    out = []
    for number, (served_rows, naive_rows) in enumerate(rounds, start=1):
        serv = {r["concurrency"]: r for r in served_rows}
        naive = {r["concurrency"]: r for r in naive_rows}
        top = max(serv.keys() & naive.keys())
        out.append({"round": number, "concurrency": top, "served_events_per_s": serv[top]["events_per_s"],
                    "naive_events_per_s": naive[top]["events_per_s"],
                    "ratio": serv[top]["events_per_s"] / naive[top]["events_per_s"]})
    return out


def parse_layout(text: str) -> dict[str, int]:
    """'1x2:b8:d10' -> 1 worker, 2 threads, batchSize 8, maxBatchDelay 10 ms."""
    match = re.fullmatch(r"(\d+)x(\d+):b(\d+):d(\d+)", text.strip())
    if match is None:
        raise ValueError(f"server layout {text!r} is not WORKERSxTHREADS:bBATCH:dDELAY (e.g. 1x2:b32:d5)")
    workers, threads, batch, delay = (int(g) for g in match.groups())
    return {"workers": workers, "threads": threads, "batch": batch, "delay": delay}


def layout_name(layout: dict[str, int]) -> str:
    return f"{layout['workers']}x{layout['threads']}:b{layout['batch']}:d{layout['delay']}"


def markdown(report: dict[str, Any]) -> str:
    client = " (wrk client)" if report.get("client") == "wrk" else ""
    lines = [f"### {report['run']}{' int8' if report['quantize'] else ''}{client} ({report['events']} events, "
             f"{report['device']}; default requests"
             + (f"; each server warmed by {report['warmup_requests']} requests" if "warmup_requests" in report else "")
             + ")", ""]
    lines += ["| mode | setting | events/s | p50 ms | p95 ms | p99 ms | errors |", "|---|---|---|---|---|---|---|"]
    for r in report["ceiling"]:
        lines.append(f"| ceiling (in-process) | batch {r['batch']} | {r['events_per_s']:.1f} | "
                     f"{r['latency_ms_p50']:.1f} | | | |")
    for key, title in (("served", f"served {report['layout']}"), ("kserve", f"KServe server {report['layout']}"),
                       ("floor", "server floor (empty handler)"), ("naive", "naive handler")):
        for r in report.get(key, []):
            lines.append(f"| {title} | concurrency {r['concurrency']} | {r['events_per_s']:.1f} | {r['p50_ms']:.1f} | "
                         f"{r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |")
    lines.append("")
    ratios = report.get("ratios", {})
    if ratios:
        lines += ["| ratio | value |", "|---|---|"] + [f"| {k} | {v:.2f} |" for k, v in ratios.items()] + [""]
    for ts_row, ks_row in zip(report["served"], report.get("kserve", [])):
        lines.append(f"- worker memory after concurrency {ts_row['concurrency']}: TorchServe's worker "
                     f"{ts_row['worker_rss_mb']:.0f} MB (the JVM not counted), the KServe server "
                     f"{ks_row['worker_rss_mb']:.0f} MB (its one process)")
    for r in report.get("rounds", []):
        lines.append(f"- round {r['round']}: served {r['served_events_per_s']:.1f}, naive {r['naive_events_per_s']:.1f} "
                     f"events/s at concurrency {r['concurrency']}: {r['ratio']:.2f} x")
    for layout, rows in report.get("layouts", {}).items():
        if layout == report["layout"]:
            continue
        for r in rows:
            lines.append(f"- layout {layout}, concurrency {r['concurrency']}: {r['events_per_s']:.1f} events/s, "
                         f"p50 {r['p50_ms']:.1f} ms")
    if report.get("structures"):
        lines += ["", "In-process, the same weights several ways (events/s; x: of the flat model's):", "",
                  structures_table(report["structures"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--data", help="events table (default: the one the run was trained on)")
    p.add_argument("--requests", type=int, default=512, help="events per measurement")
    p.add_argument("--batch-sizes", default="1,8,32", help="in-process batch sizes")
    p.add_argument("--concurrency", default="1,8,32", help="concurrent HTTP clients")
    p.add_argument("--configs", default="1x2:b32:d5",
                   help="server layouts WORKERSxTHREADS:bBATCH:dDELAY, comma-separated; the first is the main one")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the in-process ceiling")
    p.add_argument("--quantize", choices=["int8"], help="measure the int8 cascade (ceiling and served)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=HandlerSettings().precision,
                   help="torch arithmetic of the ceiling and the served archive (default: the archive's default)")
    p.add_argument("--client", choices=["python", "wrk"], default="python",
                   help=f"load generator: Python keep-alive threads, counted; or wrk ({WRK_SECONDS:.0f} s per "
                        "concurrency; Debian package wrk), which leaves more CPU to the server")
    p.add_argument("--kserve", action="store_true",
                   help="also serve the main layout's archive with the KServe server (serving/kserve_server.py), "
                        "right after TorchServe, with the same load")
    p.add_argument("--skip-naive", action="store_true", help="leave out the naive handler")
    p.add_argument("--skip-floor", action="store_true",
                   help="leave out the server floor (benchmarks/empty_handler.py with the main layout)")
    p.add_argument("--skip-structures", action="store_true",
                   help="leave out the trunk / whole checkpoints / flat comparison (benchmarks/structures.py)")
    p.add_argument("--naive-requests", type=int, default=128, help="events for the naive handler (it is slow)")
    p.add_argument("--rounds", type=int, default=1,
                   help="serve the main layout and the naive handler this many times, alternately, and report the "
                        "median served/naive ratio (default 1)")
    p.add_argument("--max-seconds", type=float, default=120, help="time cap per measurement")
    p.add_argument("--warmup-requests", type=int, default=WARMUP_REQUESTS,
                   help=f"requests each server answers before it is measured, {WARMUP_SECONDS:.0f} s at most "
                        f"(default {WARMUP_REQUESTS}: the frontend's JIT warm; a few, to see a just-started server)")
    p.add_argument("--output", default=str(ROOT / "bench_results"), help="folder for JSON and markdown")
    args = p.parse_args(argv)

    try:
        layouts = [parse_layout(x) for x in args.configs.split(",")]
    except ValueError as exc:
        p.error(str(exc))
    if args.rounds < 1 or (args.rounds > 1 and args.skip_naive):
        p.error("--rounds must be 1 or more, and more than 1 needs the naive handler (no --skip-naive)")
    names = [layout_name(x) for x in layouts]
    if len(set(names)) < len(names):  # the report keys each layout's rows by its name
        p.error(f"--configs names a layout twice: {args.configs}")
    run = Path(args.run)
    events = held_out_events(args.data, run, args.requests)
    batch_sizes = [int(x) for x in args.batch_sizes.split(",")]
    concurrencies = [int(x) for x in args.concurrency.split(",")]
    import torch

    if args.client == "wrk" and shutil.which("wrk") is None:
        print("error: --client wrk needs wrk (Debian/Ubuntu: apt-get install wrk)", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"run": run.name, "events": len(events), "quantize": args.quantize, "client": args.client,
                              "device": f"{os.cpu_count()} CPU cores, torch {torch.__version__}",
                              "layout": layout_name(layouts[0]), "warmup_requests": args.warmup_requests}
    report["ceiling"] = ceiling(run, events, batch_sizes, args.threads, args.quantize, args.max_seconds, args.precision)

    def ours(layout: dict[str, int], label: str) -> list[dict]:
        return served(run, events, concurrencies, layout, args.quantize, args.max_seconds, label,
                      client=args.client, precision=args.precision, warmup=args.warmup_requests)

    report["layouts"] = {layout_name(layout): ours(layout, f"served {layout_name(layout)}") for layout in layouts}
    report["served"] = report["layouts"][report["layout"]]
    if args.kserve:
        from benchmarks.kserve_served import KServeServed

        report["kserve"] = served(run, events, concurrencies, layouts[0], args.quantize, args.max_seconds,
                                  f"kserve {report['layout']}", client=args.client, precision=args.precision,
                                  warmup=args.warmup_requests, server=KServeServed)
    if not args.skip_floor:
        report["floor"] = served(run, events, concurrencies, layouts[0], None, args.max_seconds, "floor",
                                 ROOT / "benchmarks" / "empty_handler.py", args.client, warmup=args.warmup_requests)
    if not args.skip_naive:
        naive_layout = {"workers": 1, "threads": args.threads, "batch": 1, "delay": 0}
        with tempfile.TemporaryDirectory(prefix="bench-whole-") as tmp:
            # The hand-rolled way serves one whole checkpoint per level: a trunk run exported so.
            whole = export_whole_run(run, Path(tmp) / run.name)

            def naive(label: str) -> list[dict]:
                return served(whole, events[: args.naive_requests], concurrencies, naive_layout, None,
                              args.max_seconds, label, ROOT / "benchmarks" / "naive_handler.py", args.client,
                              warmup=args.warmup_requests)

            report["naive"] = naive("naive")
            rounds = [(report["served"], report["naive"])]
            for number in range(2, args.rounds + 1):
                again = ours(layouts[0], f"served {report['layout']} (round {number})")
                rounds.append((again, naive(f"naive (round {number})")))
    report["ratios"] = ratios(report["ceiling"], report["served"], report.get("naive", []), report.get("floor", []))
    if args.kserve:
        report["ratios"].update(kserve_ratios(report["served"], report["kserve"]))
    if args.rounds > 1:
        report["rounds"] = paired_rounds(rounds)
        top = report["rounds"][0]["concurrency"]
        report["ratios"][f"served / naive at c{top}, median of {args.rounds} rounds (events/s)"] = statistics.median(
            r["ratio"] for r in report["rounds"])
    if not args.skip_structures and not args.quantize and Hierarchy.load(run).trunk is not None:
        report["structures"] = compare_structures(run, events, batch_sizes, args.threads, min(args.max_seconds, 20))
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{run.name}{'-int8' if args.quantize else ''}{'-wrk' if args.client == 'wrk' else ''}"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (out / f"{stem}.md").write_text(table)
    print()
    print(table)
    print(f"wrote {out / (stem + '.json')} and {out / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
