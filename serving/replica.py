"""One TorchServe started from a cluster layout as KServe's TorchServe runtime starts it,
on loopback ports of its own.

serving/replicas.py runs several behind nginx; tests and benchmarks/container.py run one
beside a container to compare.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from serving.ts_client import CtlError, Server
from serving.ts_config import config_on_free_ports
from serving.ts_process import pid_alive, torchserve_executable, wait_for_exit


class ReplicaError(RuntimeError):
    """A replica that did not become ready, worded for the report."""


@dataclass
class Replica:
    """One TorchServe from a cluster layout, on loopback ports of its own."""

    layout: Path
    base: Path
    config: Path = field(init=False)
    server: Server = field(init=False)

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        # The layout's config as the runtime reads it, with only the five listeners moved.
        self.config = config_on_free_ports(self.layout / "config" / "config.properties",
                                                 self.base / "config.properties")
        self.server = Server(self.config, self.base / "serve", self.layout / "model-store")

    @property
    def url(self) -> str:
        return self.server.address("inference")

    def command(self) -> list[str]:
        # KServe's runtime: torchserve --start --model-store=/mnt/models/model-store --ts-config=...
        return [torchserve_executable(), "--start", f"--model-store={self.server.model_store}",
                f"--ts-config={self.config}"]

    def env(self) -> dict[str, str]:
        env = self.server.env()
        # None of the caller's TS_* variables, as in a fresh container (the cluster config
        # reads none, but TorchServe's launcher itself reads TS_CONFIG_FILE).
        for key in [k for k in env if k.startswith("TS_")]:
            env.pop(key)
        return env

    def start(self, timeout: float = 240) -> None:
        self.server.make_serve_dir()
        log = self.server.serve_dir / "logs" / "launcher.log"
        with log.open("a") as out:
            subprocess.run(self.command(), cwd=self.server.serve_dir, env=self.env(), stdout=out,
                           stderr=subprocess.STDOUT, check=False, umask=0o077)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.ready():
                return
            if self.server.pid_file.is_file() and not pid_alive(self.server.pid_file):
                break
            time.sleep(0.5)
        raise ReplicaError(f"replica {self.base} not ready within {timeout:.0f}s; see {self.server.serve_dir}/logs")

    def pid(self) -> int | None:
        try:
            return int(self.server.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def ready(self) -> bool:
        """/ping healthy and the model's worker up (no key: the cluster config has tokens off)."""
        try:
            code, body = self.server._http("GET", self.url + "/ping", None, {}, timeout=5)
        except CtlError:
            return False
        if code != 200 or json.loads(body).get("status") != "Healthy":
            return False
        code, body = self.server._http("GET", self.server.address("management") + "/models", None, {}, timeout=5)
        if code != 200 or not json.loads(body).get("models"):
            return False
        name = json.loads(body)["models"][0]["modelName"]
        code, body = self.server._http("GET", f"{self.server.address('management')}/models/{name}", None, {},
                                       timeout=5)
        return code == 200 and any(w.get("status") == "READY" for w in json.loads(body)[0].get("workers", []))

    def kill(self) -> None:
        """A crash: SIGKILL to the frontend JVM and its workers, no clean shutdown."""
        pid = self.pid()
        if pid:
            children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
            for target in [pid, *map(int, children)]:
                try:
                    os.kill(target, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.server.pid_file.unlink(missing_ok=True)

    def stop(self) -> None:
        if self.server.pid_file.is_file():
            subprocess.run([torchserve_executable(), "--stop"], cwd=self.server.serve_dir, env=self.env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=120)
            if not wait_for_exit(self.pid(), 60):
                self.kill()
            self.server.pid_file.unlink(missing_ok=True)
