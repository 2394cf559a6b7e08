"""Start and stop the TorchServe process of a serve directory, and say whether it runs.

A stop remembers the registered models (models.json in the serve directory) and the next
start registers them again. TorchServe opens five listeners (REST inference, management,
metrics; gRPC inference and management); all five are checked before a start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from serving.ts_client import CtlError, Server, write_private
from serving.ts_config import LISTENERS, port_in_use
from serving.ts_models import registered_models, restore


def torchserve_executable() -> str:
    local = Path(sys.executable).parent / "torchserve"
    found = str(local) if local.exists() else shutil.which("torchserve")
    if not found:
        raise CtlError("torchserve is not installed: run scripts/setup.sh (or pip install -r requirements.txt)")
    return found


def start(server: Server, models: list[str], timeout: float, restore_models: bool = True) -> None:
    """Start TorchServe on the server's config and serve directory, wait for /ping, register the saved models."""
    if shutil.which("java") is None:
        raise CtlError("Java is not installed; TorchServe needs Java 11 or newer. "
                       "On Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless")
    if server.key_file.is_file() and server.ping():
        print(f"TorchServe already running ({server.address('inference')}, serve dir {server.serve_dir})")
        return
    check_ports(server)
    log = _launch(server, models)
    _wait_until_up(server, timeout, log)
    os.chmod(server.key_file, 0o600)
    server.write_headers()
    print(f"TorchServe is up: inference {server.address('inference')}, management "
          f"{server.address('management')}, metrics {server.address('metrics')}")
    print(f"keys: {server.key_file}; logs: {server.serve_dir / 'logs'}")
    if restore_models:
        restore(server)


def check_ports(server: Server) -> None:
    """Refuse to start when any of the five listeners' ports is taken, naming the setting to change."""
    for api in LISTENERS:
        if port_in_use(server.address(api)):
            setting = f"{api}_port" if api.startswith("grpc_") else f"{api}_address"
            raise CtlError(f"port of the {api.replace('_', ' ')} API ({server.address(api)}) is already in use: "
                           f"stop what holds it (ss -ltnp) or change {setting} in {server.config}")


def _launch(server: Server, models: list[str]) -> Path:
    """Run ``torchserve --start`` (it returns at once, the server running on); the launcher's log."""
    server.make_serve_dir()
    server.key_file.unlink(missing_ok=True)
    command = [torchserve_executable(), "--start", "--ncs", "--ts-config", str(server.config),
               "--model-store", str(server.model_store)]
    if models:
        command += ["--models", *models]
    log = server.serve_dir / "logs" / "launcher.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        # umask 077: key_file.json, logs and unpacked archives are created readable by this user only.
        subprocess.run(command, cwd=server.serve_dir, env=server.env(), stdout=out, stderr=subprocess.STDOUT,
                       check=False, umask=0o077)
    return log


def _wait_until_up(server: Server, timeout: float, log: Path) -> None:
    """Until the server has written its keys and answers /ping; an error once it exits or ``timeout`` passes."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.pid_file.is_file() and not pid_alive(server.pid_file):
            raise CtlError(f"TorchServe exited while starting; see {server.serve_dir / 'logs' / 'ts_log.log'} "
                           f"and {log}")
        if server.key_file.is_file() and server.ping():
            return
        time.sleep(0.5)
    raise CtlError(f"TorchServe did not answer /ping within {timeout:.0f}s; "
                   f"see {server.serve_dir / 'logs' / 'ts_log.log'} and {log}")


def pid_alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().strip() or 0)
        os.kill(pid, 0)
    except (OSError, ValueError):
        return not pid_file.is_file()  # a pid file written after the read is a server starting
    return True


def wait_for_exit(pid: int, seconds: float) -> bool:
    """Whether the process ``pid`` (0: none) is gone within ``seconds``."""
    deadline = time.time() + seconds
    while pid and time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return not pid


def stop(server: Server) -> None:
    pid_file = server.pid_file
    if not pid_file.is_file():
        print("TorchServe is not running (no pid file)")
        return
    pid = int(pid_file.read_text().strip() or 0)
    if server.key_file.is_file() and server.ping():
        # Remember what is registered, so the next start brings it back.
        write_private(server.serve_dir / "models.json", json.dumps(registered_models(server), indent=2) + "\n")
    subprocess.run([torchserve_executable(), "--stop"], cwd=server.serve_dir, env=server.env(), check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_for_exit(pid, 60):
        raise CtlError(f"TorchServe (pid {pid}) is still running 60 s after --stop")
    pid_file.unlink(missing_ok=True)
    server.key_file.unlink(missing_ok=True)
    for kind in ("inference", "management"):
        server.header_file(kind).unlink(missing_ok=True)
    print("TorchServe stopped")


def status(server: Server) -> int:
    if server.key_file.is_file() and server.ping():
        code, body = server.call("management", "GET", "/models")
        models = [m["modelName"] for m in json.loads(body).get("models", [])] if code == 200 else []
        print(f"running: inference {server.address('inference')}; models: {', '.join(models) or 'none'}")
        return 0
    print("not running")
    return 3
