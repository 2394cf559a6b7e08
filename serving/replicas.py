#!/usr/bin/env python3
"""Run TorchServe replicas from a cluster layout, behind nginx, and kill one under load.

    python -m serving.replicas --layout OUT [--replicas 2] [--requests 600] [--seconds 60]

OUT is a layout written by ``archives/build.py --kserve-layout OUT`` (the same
files KServe's TorchServe runtime and deploy/docker use). Each replica is a TorchServe
started the way the runtime container starts it (``torchserve --start --model-store=...
--ts-config=...``), on a copy of the layout's config whose listeners alone are moved to
free loopback ports, with its own serve directory. nginx (the Debian package) balances
them with upstream retries. The load loop sends events through nginx; part way, one
replica is killed (its JVM, SIGKILL), then started again and must rejoin. The report
counts requests answered and failed and the throughput before, during and after.

Only loopback addresses are used, every loop is bounded by count and time, and every
process started here is stopped before the script returns.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from serving import loopback
from serving.nginx import Nginx
from serving.replica import Replica, ReplicaError
from serving.ts_client import CtlError


EVENTS = [{"title": "saxophone trio", "description": "late night swing set"},
          {"title": "marathon runners", "description": "city road race"},
          {"title": "dj club night", "description": "house music till dawn"},
          {"title": "yoga in the park", "description": "breathing and stretching"}]


def post(url: str, body: bytes, timeout: float = 30) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with loopback.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, OSError):
        return 0


def drive(url: str, stop_at: float, max_requests: int, clients: int, log: list[tuple[float, float, int]],
          stop: threading.Event) -> None:
    """``clients`` threads posting events until ``max_requests``, ``stop_at`` or ``stop``; log (start, end, status)."""
    lock = threading.Lock()
    counter = iter(range(max_requests))

    def loop() -> None:
        while time.time() < stop_at and not stop.is_set():
            with lock:
                i = next(counter, None)
            if i is None:
                return
            started = time.time()
            code = post(url, json.dumps(EVENTS[i % len(EVENTS)]).encode())
            with lock:
                log.append((started, time.time(), code))

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(1.0, stop_at - time.time() + 60))


def phase(log: list[tuple[float, float, int]], start: float, end: float) -> dict[str, Any]:
    done = [entry for entry in log if start <= entry[1] < end]
    ok = sum(1 for entry in done if entry[2] == 200)
    seconds = max(1e-6, end - start)
    return {"answered": ok, "failed": len(done) - ok, "seconds": round(seconds, 1),
            "throughput_rps": round(ok / seconds, 1)}


def upstream_counts(access_log: Path, since: float) -> dict[str, int]:
    """Requests nginx passed to each replica since a time (from its access log)."""
    counts: dict[str, int] = {}
    for line in access_log.read_text().splitlines() if access_log.is_file() else []:
        parts = line.split()
        if len(parts) >= 2 and float(parts[0]) >= since:
            for upstream in parts[1].replace(",", " ").split():
                counts[upstream] = counts.get(upstream, 0) + 1
    return counts


def failover(layout: Path, base: Path, replicas: int = 2, requests: int = 20000, seconds: float = 120,
             clients: int = 4, model: str | None = None, phase_seconds: float = 8) -> dict[str, Any]:
    """Start replicas and nginx, load, kill one, bring it back; a report dict. Stops everything.

    Load runs ``phase_seconds`` on all replicas, ``phase_seconds`` with one killed, through
    its restart, and ``phase_seconds`` after it rejoined; bounded by ``requests`` and ``seconds``.
    """
    name = model or json.loads(
        (layout / "config" / "config.properties").read_text().split("model_snapshot=", 1)[1].splitlines()[0]
    )["models"].popitem()[0]
    servers = [Replica(layout, base / f"replica{i}") for i in range(replicas)]
    nginx = Nginx(base / "nginx", [s.url for s in servers])
    try:
        for server in servers:
            server.start()
        nginx.start()
        url = f"{nginx.url}/predictions/{name}"
        if post(url, json.dumps(EVENTS[0]).encode()) != 200:
            raise ReplicaError("nginx does not answer a prediction before the load starts")
        victim = servers[-1]
        log, marks = kill_under_load(url, victim, requests, seconds, clients, phase_seconds)
        after = upstream_counts(nginx.base / "access.log", marks["rejoined"] + 5.5)  # past fail_timeout
        # The restarted replica serves again: nginx sends it its share once fail_timeout passes.
        direct = post(f"{victim.url}/predictions/{name}", json.dumps(EVENTS[1]).encode())
        return {"replicas": replicas, "clients": clients, **summarize(log, marks),
                "rejoined_replica_answers": direct,
                "after_rejoin_per_replica": {u: after.get(u.split("://", 1)[-1], 0) for u in (s.url for s in servers)}}
    finally:
        nginx.stop()
        for server in servers:
            server.stop()


def kill_under_load(url: str, victim: Replica, requests: int, seconds: float, clients: int,
                    phase_seconds: float) -> tuple[list[tuple[float, float, int]], dict[str, float]]:
    """Load ``url``, kill ``victim`` and start it again part way; the request log and when each phase began."""
    log: list[tuple[float, float, int]] = []
    marks = {"start": time.time()}
    stop = threading.Event()
    loader = threading.Thread(target=drive, args=(url, marks["start"] + seconds, requests, clients, log, stop),
                              daemon=True)
    loader.start()
    time.sleep(phase_seconds)
    marks["kill"] = time.time()
    victim.kill()
    time.sleep(phase_seconds)
    marks["restart"] = time.time()
    victim.start()
    marks["rejoined"] = time.time()
    time.sleep(phase_seconds)
    stop.set()
    loader.join(timeout=120)
    marks["end"] = time.time()
    return log, marks


def summarize(log: list[tuple[float, float, int]], marks: dict[str, float]) -> dict[str, Any]:
    """Requests answered and failed, overall and per phase; failures not explained by the kill."""
    in_flight = [e for e in log if e[0] <= marks["kill"] + 0.05 and e[1] >= marks["kill"]]
    failed = [e for e in log if e[2] != 200]
    return {
        "requests_sent": len(log), "answered": sum(1 for e in log if e[2] == 200), "failed": len(failed),
        "failed_statuses": sorted({e[2] for e in failed}),
        "in_flight_at_kill": len(in_flight),
        "failed_not_in_flight": sum(1 for e in failed if e not in in_flight),
        "before_kill": phase(log, marks["start"], marks["kill"]),
        "one_replica": phase(log, marks["kill"], marks["restart"]),
        "restarting": phase(log, marks["restart"], marks["rejoined"]),
        "after_rejoin": phase(log, marks["rejoined"], marks["end"]),
        "restart_seconds": round(marks["rejoined"] - marks["restart"], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", required=True, help="layout from scripts/build.sh --kserve-layout")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--requests", type=int, default=20000, help="most requests to send")
    parser.add_argument("--seconds", type=float, default=120, help="most seconds of load")
    parser.add_argument("--phase-seconds", type=float, default=8,
                        help="seconds of load before the kill, with one replica down, and after the rejoin")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--work-dir", help="where replicas and nginx keep their files (default: a temp dir)")
    args = parser.parse_args(argv)
    base = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="replicas-"))
    try:
        report = failover(Path(args.layout).resolve(), base.resolve(), args.replicas, args.requests, args.seconds,
                          args.clients, phase_seconds=args.phase_seconds)
    except (ReplicaError, subprocess.CalledProcessError, CtlError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    rejoined = list(report["after_rejoin_per_replica"].values())[-1] > 0
    ok = report["failed_not_in_flight"] == 0 and report["rejoined_replica_answers"] == 200 and rejoined
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
