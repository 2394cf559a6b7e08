"""The KServe server (serving/kserve_server.py) as benchmarks/bench.py measures a server: the same
archive, the same load and clients as its TorchServe, side by side (``bench --kserve``).

The server runs from .venv-kserve when there is one (its own environment: requirements-kserve.txt),
so bench itself keeps running in .venv with TorchServe.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import psutil

from benchmarks.served import ROOT, Served, TokenlessServer
from serving import kservectl
from serving.ts_config import free_ports


class KServeServed(Served):
    def __init__(self, store: Path, archive: str, workdir: Path) -> None:
        self.archive, self.name, self.store, self.workdir = archive, archive.removesuffix(".mar"), store, workdir / "kserve"
        (self.port,) = free_ports(1)
        self.server = TokenlessServer(f"http://127.0.0.1:{self.port}")
        self.pid = 0

    def __enter__(self) -> "KServeServed":
        own = ROOT / ".venv-kserve" / "bin" / "python"
        python = str(own) if own.is_file() else sys.executable
        self.pid = kservectl.start(str(self.store / self.archive), self.name, self.port, 300, ["--max-waiting", "1000"],
                                   directory=self.workdir, python=python)
        return self

    def __exit__(self, *exc: Any) -> None:
        kservectl.stop(self.workdir)

    def worker_rss_mb(self) -> float:
        """The server's one process: HTTP, batching and the cascade."""
        return psutil.Process(self.pid).memory_info().rss / 2**20
