"""A TorchServe config.properties: its settings, its five listeners, and a copy on free ports.

Standard library only.
"""

from __future__ import annotations

import socket
import urllib.parse
from pathlib import Path


def read_properties(path: Path) -> dict[str, str]:
    props = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


# The five listeners TorchServe 0.12 opens, with its defaults (the gRPC ones always start).
LISTENERS = {
    "inference": "http://127.0.0.1:8080",
    "management": "http://127.0.0.1:8081",
    "metrics": "http://127.0.0.1:8082",
    "grpc_inference": "127.0.0.1:7070",
    "grpc_management": "127.0.0.1:7071",
}


def port_in_use(address: str) -> bool:
    parsed = urllib.parse.urlparse(address if "://" in address else f"tcp://{address}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((parsed.hostname or "127.0.0.1", parsed.port or 80))
        except OSError:
            return True
    return False


def config_on_free_ports(source: Path, dest: Path, extra: str = "") -> Path:
    """A copy of a config with all five listeners moved to free loopback ports.

    Tests and benchmarks start servers of their own with it, so they run beside a
    TorchServe on the default ports (the gRPC ones included) without a clash.
    """
    props = read_properties(source)
    ports = iter(free_ports(len(LISTENERS)))
    lines = [line for line in source.read_text().splitlines()
             if line.split("=", 1)[0].strip() not in {f"{api}_address" for api in LISTENERS}
             and line.split("=", 1)[0].strip() not in {f"{api}_port" for api in LISTENERS}]
    for api, default in LISTENERS.items():
        if api.startswith("grpc_"):
            lines += [f"{api}_address=127.0.0.1", f"{api}_port={next(ports)}"]
        else:
            scheme = urllib.parse.urlparse(props.get(f"{api}_address", default)).scheme or "http"
            lines.append(f"{api}_address={scheme}://127.0.0.1:{next(ports)}")
    dest.write_text("\n".join(lines) + "\n" + extra)
    return dest


def free_ports(n: int) -> list[int]:
    """n loopback ports free right now (for test and benchmark servers)."""
    socks = []
    for _ in range(n):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports
