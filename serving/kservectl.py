"""Start, stop or check the KServe model server (serving/kserve_server.py) in the background.

  python -m serving.kservectl start --run RUN_OR_MAR_OR_LAYOUT --name NAME [--port 8085] [--timeout 300]
  python -m serving.kservectl stop | status

State (pid, address, model) lives in the serve directory ($SERVE_DIR or .serve/) as
kserve.json, the log as logs/kserve.log. The server runs in a session of its own; stop
ends that whole process group (SIGTERM, then SIGKILL after 30 s) and waits for it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from serving import server_env
from serving.ts_client import ROOT, CtlError
from serving.ts_config import port_in_use

# TorchServe's loopback config takes 8080-8082 and 7070-7071: both servers can run at once.
HTTP_PORT = 8085


def serve_dir() -> Path:
    return Path(os.environ.get("SERVE_DIR") or ROOT / ".serve").resolve()


def state_file(directory: Path | None = None) -> Path:
    return (directory or serve_dir()) / "kserve.json"


def read_state(directory: Path | None = None) -> dict | None:
    try:
        state = json.loads(state_file(directory).read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return state


def ready(url: str, name: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/models/{name}/ready", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def start(model_dir: str, name: str, port: int, timeout: float, extra: list[str], directory: Path | None = None,
          python: str = sys.executable) -> int:
    """Start the server and wait until its model is ready; its pid. ``directory``: the serve directory."""
    directory = directory or serve_dir()
    state = read_state(directory)
    if state:
        print(f"the KServe server is already running: {state['url']} serves {state['name']} (pid {state['pid']})")
        return int(state["pid"])
    url = f"http://127.0.0.1:{port}"
    if port_in_use(url):
        raise CtlError(f"port {port} is already in use: stop what holds it (ss -ltnp) or pass --port")
    log = directory / "logs" / "kserve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [python, "-m", "serving.kserve_server", "--model-dir", str(Path(model_dir).resolve()),
               "--name", name, "--host", "127.0.0.1", "--http-port", str(port), *extra]
    env = server_env.apply({**os.environ, "PYTHONPATH": str(ROOT)})
    with log.open("a") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True, umask=0o077)
    state_file(directory).write_text(json.dumps({"pid": process.pid, "url": url, "name": name, "model_dir": model_dir}) + "\n")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            state_file(directory).unlink(missing_ok=True)
            raise CtlError(f"the KServe server exited while starting (code {process.returncode}); see {log}")
        if ready(url, name):
            print(f"the KServe server is up: {url} serves {name} from {model_dir} (pid {process.pid}); log: {log}")
            return process.pid
        time.sleep(0.5)
    stop(directory)
    raise CtlError(f"the KServe server was not ready within {timeout:.0f}s; see {log}")


def stop(directory: Path | None = None) -> None:
    state = read_state(directory)
    if state is None:
        state_file(directory).unlink(missing_ok=True)
        print("the KServe server is not running")
        return
    pid = int(state["pid"])
    for sig, seconds in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        if gone(pid, seconds):
            break
    else:
        raise CtlError(f"the KServe server (pid {pid}) is still running after SIGKILL")
    state_file(directory).unlink(missing_ok=True)
    print("the KServe server stopped")


def gone(pid: int, seconds: float) -> bool:
    """Whether ``pid`` has ended within ``seconds``; reaped when it is this process's own child."""
    deadline = time.time() + seconds
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:  # not ours: scripts/serve.sh start returned long ago
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if time.time() > deadline:
            return False
        time.sleep(0.1)


def status() -> int:
    state = read_state()
    if state and ready(state["url"], state["name"]):
        print(f"running: {state['url']} serves {state['name']} (pid {state['pid']})")
        return 0
    print("not running")
    return 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the KServe model server in the background", allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("start")
    p.add_argument("--run", required=True, help="a run directory, a built .mar, or KServe's storage layout")
    p.add_argument("--name", required=True, help="the model's name in every route")
    p.add_argument("--port", type=int, default=HTTP_PORT, help=f"HTTP port on 127.0.0.1 (default {HTTP_PORT})")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait until the model is ready")
    sub.add_parser("stop")
    sub.add_parser("status")
    args, extra = parser.parse_known_args(argv)
    if args.command != "start" and extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "start":
            start(args.run, args.name, args.port, args.timeout, extra)
        elif args.command == "stop":
            stop()
        else:
            return status()
    except CtlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
