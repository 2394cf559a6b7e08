"""The serving image run as `scripts/image.sh run` runs it, on free loopback ports.

Used by tests/test_image.py and benchmarks/container.py. The container runs in the
foreground of a child process of its own session; ``stop`` removes it (and that process).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from serving import loopback
from serving.ts_config import free_ports

ROOT = Path(__file__).resolve().parent.parent
IMAGE_SH = ROOT / "scripts" / "image.sh"


def engine() -> list[str]:
    """The engine and flags scripts/image.sh picks, for inspect/exec/kill."""
    if os.environ.get("ENGINE", "podman" if shutil.which("podman") else "docker") == "docker":
        return ["docker"]
    runtime = os.environ.get("OCI_RUNTIME") or ("runc" if shutil.which("runc") else "")
    return ["podman", *(["--runtime", runtime] if runtime else [])]


class Container:
    """One `scripts/image.sh run TAG` on free loopback ports (inference and metrics)."""

    def __init__(self, tag: str, log: Path, start: bool = True) -> None:
        self.tag = tag
        self.port, self.metrics_port = free_ports(2)
        self.name = f"event-taxonomy-{os.getpid()}-{self.port}"
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics = f"http://127.0.0.1:{self.metrics_port}"
        self.log = log
        self.process: subprocess.Popen | None = None
        if start:
            self.start()

    def start(self) -> None:
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [str(IMAGE_SH), "run", "--tag", self.tag, "--port", str(self.port), "--metrics-port",
                 str(self.metrics_port), "--name", self.name], stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

    def run(self, timeout: float = 300) -> None:
        """Start and wait until ready."""
        self.start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 300) -> None:
        """Until /ping answers Healthy; RuntimeError if the container exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the container exited ({self.process.returncode}):\n"
                                   f"{self.log.read_text()[-3000:]}")
            try:
                with loopback.urlopen(self.url + "/ping", timeout=5) as response:
                    if json.loads(response.read()).get("status") == "Healthy":
                        return
            except (OSError, ValueError):
                pass
            time.sleep(1)
        raise RuntimeError(f"the container did not answer /ping within {timeout:.0f} s")

    def exec(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run([*engine(), "exec", self.name, *command], capture_output=True, text=True, timeout=60)

    def signal(self, name: str) -> None:
        subprocess.run([*engine(), "kill", "--signal", name, self.name], check=True, capture_output=True, timeout=60)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            subprocess.run([*engine(), "rm", "--force", self.name], capture_output=True, timeout=120)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
