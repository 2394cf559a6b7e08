"""A server under load, as the benchmarks measure it: its own TorchServe on free loopback ports,
keep-alive clients (Python threads, or wrk) sending one event per request, and the latency summary.

benchmarks/bench.py, soak.py and container.py measure through ``Served``; kserve_served.py
runs KServe's model server behind the same clients.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from serving import ts_process
from serving.ts_client import Server
from serving.ts_config import config_on_free_ports

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


WRK_SECONDS = 20.0
# Before measuring, a server answers this many requests (or for WARMUP_SECONDS): TorchServe's
# Java frontend runs its request path interpreted until the JIT has compiled it, which on
# 2 cores added about 15 ms to each of the first few hundred requests.
WARMUP_REQUESTS, WARMUP_SECONDS = 1000, 15.0


class TokenlessServer:
    """What Served.load and Served.load_wrk read of a server that checks no token (a container
    with tokens off, KServe's model server): its inference address, and a key no one checks."""

    def __init__(self, url: str) -> None:
        self.url = url

    def address(self, api: str) -> str:
        return self.url

    def key(self, api: str) -> str:
        return "unused"


class Served:
    """A TorchServe of its own (free loopback ports, temp serve dir) with one archive registered."""

    def __init__(self, store: Path, archive: str, workdir: Path) -> None:
        config = config_on_free_ports(ROOT / "config.properties", workdir / "config.properties",
                                            extra="job_queue_size=1000\n")
        self.server = Server(config, workdir / "serve", store)
        self.archive = archive
        self.name = archive.removesuffix(".mar")

    def __enter__(self) -> "Served":
        ts_process.start(self.server, [], timeout=180)
        code, body = self.server.call("management", "POST",
                                      f"/models?url={self.archive}&synchronous=true&initial_workers=1", timeout=600)
        if code != 200:
            log = self.server.serve_dir / "logs" / "model_log.log"
            tail = log.read_text(errors="replace")[-3000:] if log.is_file() else "(no model_log.log)"
            ts_process.stop(self.server)  # a failed registration must not leave the server running
            raise RuntimeError(f"register failed: {code} {body}\nlast of {log}:\n{tail}")
        code, body = self.server.call("management", "GET", f"/models/{self.name}")
        self.model = json.loads(body)[0]
        return self

    def __exit__(self, *exc: Any) -> None:
        ts_process.stop(self.server)

    def worker_rss_mb(self) -> float:
        """The model worker's resident memory (the Java frontend not counted)."""
        import psutil

        code, body = self.server.call("management", "GET", f"/models/{self.name}")
        return psutil.Process(json.loads(body)[0]["workers"][0]["pid"]).memory_info().rss / 2**20

    def load(self, events: list[dict], concurrency: int, max_seconds: float,
             log: list[tuple[float, float, int]] | None = None) -> dict[str, Any]:
        """Send every event as its own request from ``concurrency`` keep-alive clients.

        ``log``, when given, receives (start, end, HTTP status or 0 for a broken connection)
        per request, for callers that need more than the summary.
        """
        host, port = self.server.address("inference").removeprefix("http://").split(":")
        key = self.server.key("inference")
        path = f"/predictions/{self.name}"
        bodies = [json.dumps(e).encode() for e in events]  # default request fields, as the ceiling
        latencies: list[float] = []
        errors = [0]
        lock = threading.Lock()
        next_index = [0]
        deadline = time.perf_counter() + max_seconds

        def client() -> None:
            conn = http.client.HTTPConnection(host, int(port), timeout=120)
            while True:
                with lock:
                    i = next_index[0]
                    next_index[0] += 1
                if i >= len(bodies) or time.perf_counter() > deadline:
                    break
                t0 = time.perf_counter()
                try:
                    conn.request("POST", path, bodies[i], {"Content-Type": "application/json",
                                                          "Authorization": f"Bearer {key}"})
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                except (OSError, http.client.HTTPException):
                    status = 0
                    conn.close()
                    conn = http.client.HTTPConnection(host, int(port), timeout=120)
                t1 = time.perf_counter()
                with lock:
                    latencies.append((t1 - t0) * 1000)
                    errors[0] += 0 if status == 200 else 1
                    if log is not None:
                        log.append((t0, t1, status))
            conn.close()

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for _ in range(concurrency):
                pool.submit(client)
        seconds = time.perf_counter() - started
        done = len(latencies)
        return {"concurrency": concurrency, "requests": done, "errors": errors[0],
                "events_per_s": (done - errors[0]) / seconds, "p50_ms": percentile(latencies, 50),
                "p95_ms": percentile(latencies, 95), "p99_ms": percentile(latencies, 99)}


    def load_wrk(self, events: list[dict], concurrency: int, seconds: float) -> dict[str, Any]:
        """The same load from wrk (C, event loop): far less client CPU than Python threads.

        On a 2-core machine the Python client competes with TorchServe for the cores; wrk
        shows how much of the gap to the ceiling is the client's. Time-bounded, not counted.
        """
        host, port = self.server.address("inference").removeprefix("http://").split(":")
        bodies = ",\n".join(json.dumps(json.dumps(e)) for e in events)  # default request fields
        script = WRK_SCRIPT.replace("BODIES", bodies).replace("KEY", self.server.key("inference"))
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
            handle.write(script)
        try:
            result = subprocess.run(
                ["wrk", f"-t{min(2, concurrency)}", f"-c{concurrency}", f"-d{max(1, int(seconds))}s",
                 "--timeout", "60s", "-s", handle.name, f"http://{host}:{port}/predictions/{self.name}"],
                capture_output=True, text=True, timeout=seconds + 120,
            )
        finally:
            os.unlink(handle.name)
        line = next((x for x in result.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk failed: {result.stderr or result.stdout}")
        r = json.loads(line.removeprefix("WRK_JSON "))
        errors = r["errors"] + r["non2xx"]
        return {"concurrency": concurrency, "requests": r["requests"], "errors": errors,
                "events_per_s": (r["requests"] - errors) / r["seconds"], "p50_ms": r["p50"],
                "p95_ms": r["p95"], "p99_ms": r["p99"]}


# Bodies are JSON strings written as JSON string literals, which Lua reads as they are.
WRK_SCRIPT = """
local bodies = {
BODIES
}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer KEY"
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests": %d, "errors": %d, "non2xx": %d, "seconds": %f, '
    .. '"p50": %f, "p95": %f, "p99": %f}\\n', summary.requests, e.connect + e.read + e.write + e.timeout,
    e.status, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000))
end
"""
