#!/usr/bin/env python3
"""Wait until TorchServe has answered every inference request it has received, then exit.

    drain.py [SECONDS]      (default: DRAIN_SECONDS, else 30)

The entrypoint runs it on SIGTERM before stopping TorchServe, whose own shutdown closes
open connections at once (requests in flight get a connection reset). In flight is read
from TorchServe's Prometheus metrics: ``ts_inference_requests_total`` counts the inference
requests the frontend has taken (frontend, on arrival) and ``HandlerRequests`` those the
handler has answered (handlers/event_handler.py, once per request of each batch). Drained
when the second has caught up with the first and stayed there for a moment (the last
answer's bytes leave the frontend just after its metric). Bounded by SECONDS; exit 0 when
drained, 1 when the time ran out or the metrics did not answer. Standard library only.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from healthcheck import NO_PROXY, local, props

SETTLE_S = 0.5  # the answers' bytes, written by the frontend after the handler's metric


def counts(metrics_url: str) -> tuple[float, float]:
    """(inference requests taken, requests the handler answered), summed over models."""
    with NO_PROXY.open(metrics_url, timeout=4) as response:
        text = response.read().decode()
    taken = answered = 0.0
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("ts_inference_requests_total{"):
            taken += float(value)
        elif name.startswith("HandlerRequests{"):
            answered += float(value)
    return taken, answered


def main(argv: list[str]) -> int:
    budget = float(argv[1] if len(argv) > 1 else os.environ.get("DRAIN_SECONDS", "30"))
    base = Path(os.environ.get("MODEL_BASE", "/mnt/models"))
    config = props(Path(os.environ.get("CONFIG_PATH", base / "config" / "config.properties")))
    metrics_url = local(config.get("metrics_address", "http://127.0.0.1:8082")) + "/metrics"
    deadline = time.monotonic() + budget
    quiet_since = None
    while time.monotonic() < deadline:
        try:
            taken, answered = counts(metrics_url)
        except (OSError, ValueError) as exc:
            print(f"drain: metrics not readable ({exc}); stopping without draining", file=sys.stderr)
            return 1
        if answered >= taken:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= SETTLE_S:
                print(f"drain: {int(taken)} requests taken, all answered", file=sys.stderr)
                return 0
        else:
            quiet_since = None
        time.sleep(0.1)
    print(f"drain: {budget:.0f} s passed with requests still in flight", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
