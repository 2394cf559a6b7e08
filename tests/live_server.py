"""Helpers for the tests that talk to a real TorchServe."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ScriptEnv:
    """Where the session's test server lives, for scripts/*.sh: passed to each script, never
    written into this process's environment (so no later test sees it by accident)."""

    def __init__(self) -> None:
        self.vars: dict[str, str] = {}

    def __call__(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.vars, **extra}


SESSION = ScriptEnv()  # filled by conftest's session-scoped ``server`` fixture


def script(name: str, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess:
    """Run one of scripts/*.sh as a user would, against the session's test server."""
    return subprocess.run([str(ROOT / "scripts" / name), *args], input=stdin, capture_output=True, text=True,
                          timeout=600, env=env or SESSION())


def register(server, archive: str, name: str | None = None, workers: int = 1, fresh: bool = False,
             **query: str) -> tuple[int, str]:
    """Register ``archive`` (a file name in the model store) synchronously; the one way tests register.

    ``fresh`` unregisters a model of that name first; otherwise one already registered is
    kept as it is. Returns TorchServe's status and body (200 when it was already there).
    """
    name = name or archive.removesuffix(".mar")
    code, body = server.call("management", "GET", "/models")
    present = any(m["modelName"] == name for m in json.loads(body)["models"])
    if present and fresh:
        code, body = server.call("management", "DELETE", f"/models/{name}", timeout=120)
        assert code == 200, body
        present = False
    if present:
        return 200, f'{{"status": "{name} already registered"}}'
    params = {"url": archive, "model_name": name, "initial_workers": str(workers), "synchronous": "true", **query}
    return server.call("management", "POST", f"/models?{urllib.parse.urlencode(params)}", timeout=600)


def counter(server, metric: str, model: str) -> float:
    """The sum of one handler counter for ``model``, as Prometheus shows it."""
    _, text = server._http("GET", server.address("metrics") + "/metrics", None, {})
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(metric + "{") and f'ModelName="{model}"' in line)


def send_together(server, model: str, bodies: list[bytes], content_type: str = "application/json"
                  ) -> list[tuple[int, str]]:
    """All bodies at once from their own threads (released together by a barrier)."""
    import threading

    key = server.key("inference")
    url = server.address("inference") + f"/predictions/{model}"
    results: list[tuple[int, str]] = [(0, "")] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def send(i: int) -> None:
        barrier.wait()
        results[i] = server._http("POST", url, bodies[i], {"Content-Type": content_type,
                                                           "Authorization": f"Bearer {key}"})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def in_one_batch(server, model: str, bodies: list[bytes], tries: int = 3) -> list[tuple[int, str]]:
    """Send the bodies together until the handler's counters show they made exactly one batch."""
    for _ in range(tries):
        batches, requests = counter(server, "HandlerBatches", model), counter(server, "HandlerRequests", model)
        results = send_together(server, model, bodies)
        if (counter(server, "HandlerBatches", model) - batches == 1
                and counter(server, "HandlerRequests", model) - requests == len(bodies)):
            return results
    raise AssertionError(f"the {len(bodies)} requests never shared one batch in {tries} tries")


PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy")


class ProxyTrap:
    """A listener on loopback standing in for a company proxy: it records the first bytes of
    every connection made to it, then closes it. ``env()`` is an environment whose every
    proxy variable points at it (and whose no_proxy names nothing)."""

    def __init__(self) -> None:
        import socket
        import threading

        self.seen: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            with conn:
                conn.settimeout(5)
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b"(nothing read)"
                # Recorded before the close: a client that came here has not had its answer yet.
                self.seen.append(data or b"(connected)")

    def env(self, base: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in base.items() if k.lower() != "no_proxy"}
        return {**env, **{name: self.url for name in PROXY_VARIABLES}}

    def close(self) -> None:
        import socket

        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the thread
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=10)
