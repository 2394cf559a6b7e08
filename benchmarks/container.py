#!/usr/bin/env python3
"""Served throughput of one layout inside the serving image against the same layout outside it.

    python -m benchmarks.container --layout DIR [--tag localhost/event-taxonomy:1.0] [--run RUN]
        [--concurrency 8] [--seconds 30] [--rounds 3]

DIR is a layout written by ``scripts/build.sh --kserve-layout DIR`` and baked into TAG by
``scripts/image.sh build --layout DIR``. Outside: TorchServe from this checkout's
environment on the layout's config with its listeners moved to free loopback ports
(serving/replicas.py, as tests/test_kserve.py runs it). Inside: ``scripts/image.sh run``
(read-only root, published on 127.0.0.1). Both get the same load, alternately, ``--rounds``
times: one event per request, from ``--concurrency`` keep-alive clients, for ``--seconds``
(benchmarks/bench.py's client), after a warm-up. Events come from the run's data when
--run is given, else from tests/tiny.py's generator. One server runs at a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.served import Served, TokenlessServer
from benchmarks.workload import held_out_events
from serving.container import Container
from serving.replica import Replica
from table.events import event_dicts


class _Target:
    def __init__(self, url: str, name: str) -> None:
        self.server, self.name = TokenlessServer(url), name


def measure(url: str, name: str, events: list[dict], concurrency: int, seconds: float) -> dict[str, Any]:
    target = _Target(url, name)
    Served.load(target, events[:64], concurrency, 10)  # warm-up
    many = [events[i % len(events)] for i in range(100_000)]
    return Served.load(target, many, concurrency, seconds)


def request_events(run: str | None) -> list[dict]:
    """The run's held-out events, or the tiny generated ones without a run."""
    if run:
        return held_out_events(None, Path(run), 512)
    from tests.tiny import tiny_events

    return event_dicts(pd.DataFrame(tiny_events(rows_per_class=20)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layout", required=True, type=Path)
    p.add_argument("--tag", default="localhost/event-taxonomy:1.0")
    p.add_argument("--run", help="run directory whose data gives the events")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    events = request_events(args.run)
    name = next((args.layout / "model-store").glob("*.mar")).stem
    rows: dict[str, list[dict[str, Any]]] = {"outside": [], "container": []}
    with tempfile.TemporaryDirectory(prefix="bench-container-") as tmp:
        for round_ in range(args.rounds):
            replica = Replica(args.layout, Path(tmp) / f"outside{round_}")
            container = Container(args.tag, Path(tmp) / f"container{round_}.log", start=False)
            for where, server, start in (("outside", replica, replica.start), ("container", container, container.run)):
                try:
                    start()
                    rows[where].append(measure(server.url, name, events, args.concurrency, args.seconds))
                finally:
                    server.stop()
            for where in rows:
                r = rows[where][-1]
                print(f"round {round_ + 1} {where:>9}: {r['events_per_s']:7.1f} events/s, p50 {r['p50_ms']:6.1f} ms, "
                      f"p95 {r['p95_ms']:6.1f} ms, errors {r['errors']}", flush=True)
    median = {where: statistics.median(r["events_per_s"] for r in found) for where, found in rows.items()}
    print(f"median over {args.rounds} rounds at concurrency {args.concurrency}: outside {median['outside']:.1f} "
          f"events/s, container {median['container']:.1f} events/s, container/outside "
          f"{median['container'] / median['outside']:.3f}")
    print(json.dumps({"median_events_per_s": median, "rounds": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
