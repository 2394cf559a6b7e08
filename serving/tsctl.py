#!/usr/bin/env python3
"""Start, stop and talk to the TorchServe that serves this bundle's archives.

serve.sh, manage.sh and predict.sh are thin wrappers around this file. Standard library
only, so it runs with any Python 3.9+.

Everything the server writes (pid file, extracted archives, logs, key_file.json) lives
in one serve directory (default ``.serve/``, or $SERVE_DIR), so several servers can run
side by side with their own config ($TS_CONFIG) and serve directory. Keys are read from
that key_file.json, and an expired inference or management key is regenerated through
TorchServe's token API before the call is retried.

TorchServe opens five listeners (REST inference, management, metrics; gRPC inference and
management); all five are read from the config and checked before a start. The serve
directory is private (0700, files 0600): it holds the keys, and the management key runs
code as the server's user.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from handlers import kernel_caches
from serving import loopback

ROOT = Path(__file__).resolve().parent.parent


class CtlError(RuntimeError):
    """A failure to report in one line, without a traceback."""


# -- settings ----------------------------------------------------------------------------
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


class Server:
    def __init__(self, config: Path | None = None, serve_dir: Path | None = None,
                 model_store: Path | None = None) -> None:
        self.config = Path(config or os.environ.get("TS_CONFIG") or ROOT / "config.properties").resolve()
        if not self.config.is_file():
            raise CtlError(f"config file {self.config} not found")
        self.props = read_properties(self.config)
        self.serve_dir = Path(serve_dir or os.environ.get("SERVE_DIR") or ROOT / ".serve").resolve()
        store = model_store or os.environ.get("MODEL_STORE") or self.props.get("model_store", "model_store")
        store = Path(store)
        self.model_store = (store if store.is_absolute() else ROOT / store).resolve()

    def address(self, api: str) -> str:
        if api.startswith("grpc_"):
            default_host, default_port = LISTENERS[api].rsplit(":", 1)
            host = self.props.get(f"{api}_address", default_host)
            return f"{host}:{self.props.get(f'{api}_port', default_port)}"
        return self.props.get(f"{api}_address", LISTENERS[api]).rstrip("/")

    def header_file(self, kind: str) -> Path:
        """A 0600 file holding "Authorization: Bearer <key>", for ``curl -H @FILE``.

        Keys never go on a command line, where every local user can read them with ``ps``.
        """
        return self.serve_dir / f"{kind}.header"

    def write_headers(self) -> None:
        for kind in ("inference", "management"):
            if kind in self.keys():
                _write_private(self.header_file(kind), f"Authorization: Bearer {self.keys()[kind]['key']}\n")

    @property
    def key_file(self) -> Path:
        return self.serve_dir / "key_file.json"

    def make_serve_dir(self) -> None:
        """The serve directory and its tmp/ and logs/, readable by this user alone."""
        for folder in (self.serve_dir, self.serve_dir / "tmp", self.serve_dir / "logs"):
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o700)

    def env(self) -> dict[str, str]:
        tmp = self.serve_dir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # TorchServe reads TS_CONFIG_FILE before --ts-config: a stray one in the caller's
        # environment would silently serve another configuration.
        env.pop("TS_CONFIG_FILE", None)
        # TorchServe keeps its pid file in $TMPDIR and unpacks archives under $TEMP: one
        # server per serve directory keeps two servers from fighting over them.
        env.update(TMPDIR=str(tmp), TEMP=str(tmp), LOG_LOCATION=str(self.serve_dir / "logs"),
                   METRICS_LOCATION=str(self.serve_dir / "logs"))
        kernel_caches.apply(env)  # workers' per-shape kernel caches bounded (handlers/kernel_caches.py)
        return env

    # -- keys ----------------------------------------------------------------------------
    def keys(self) -> dict[str, Any]:
        if not self.key_file.is_file():
            raise CtlError(f"no {self.key_file}: is the server running? (scripts/serve.sh start)")
        return json.loads(self.key_file.read_text())

    def key(self, kind: str) -> str:
        entry = self.keys()[kind]
        if kind != "API" and _expired(entry):
            self.refresh(kind)
            entry = self.keys()[kind]
        return entry["key"]

    def refresh(self, kind: str) -> None:
        """Ask TorchServe for a new key of this kind; it rewrites key_file.json."""
        api_key = self.keys()["API"]["key"]
        status, body = self._http("POST", f"{self.address('management')}/token?type={kind}", None,
                                  {"Authorization": f"Bearer {api_key}"})
        if status != 200:
            raise CtlError(f"could not regenerate the {kind} key: {status} {body[:200]!r}")
        # TorchServe writes the file right after answering; wait until it shows the new key.
        for _ in range(50):
            if not _expired(self.keys()[kind]):
                break
            time.sleep(0.1)
        self.write_headers()

    # -- HTTP ----------------------------------------------------------------------------
    @staticmethod
    def _http(method: str, url: str, data: bytes | None, headers: dict[str, str],
              timeout: float = 120) -> tuple[int, str]:
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with loopback.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")
        except (urllib.error.URLError, ConnectionError, socket.timeout) as exc:
            raise CtlError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}; is the server running?") from None

    def call(self, api: str, method: str, path: str, data: bytes | None = None,
             headers: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str]:
        """An authorised call; on a token refusal the key is regenerated and the call retried."""
        kind = "management" if api == "management" else "inference"
        url = self.address(api) + path
        hdrs = dict(headers or {})
        if api != "metrics":
            hdrs["Authorization"] = f"Bearer {self.key(kind)}"
        status, body = self._http(method, url, data, hdrs, timeout)
        if api != "metrics" and _token_refused(status, body):
            self.refresh(kind)
            hdrs["Authorization"] = f"Bearer {self.key(kind)}"
            status, body = self._http(method, url, data, hdrs, timeout)
        return status, body

    def ping(self) -> bool:
        try:
            status, _ = self.call("inference", "GET", "/ping", timeout=5)
        except (CtlError, OSError, ValueError, KeyError):
            return False
        return status == 200


def _token_refused(status: int, body: str) -> bool:
    """TorchServe's own answer to a missing, wrong or expired key (400 InvalidKeyException).

    Only that renews a key: a model's own 400 that happens to mention "token" must not
    rotate every client's key.
    """
    if status not in (400, 401):
        return False
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("type") == "InvalidKeyException"


def _write_private(path: Path, text: str) -> None:
    """Write a file that only this user can read, created so (never briefly world-readable)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _expired(entry: dict[str, Any]) -> bool:
    """Keys carry an ISO-8601 'expiration time' (nanoseconds, UTC); 30 s of margin avoids races."""
    stamp = entry.get("expiration time")
    if not stamp:
        return False
    stamp = re.sub(r"(\.\d{6})\d+", r"\1", str(stamp)).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp() - 30 < time.time()


def _port_in_use(address: str) -> bool:
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


def _torchserve() -> str:
    local = Path(sys.executable).parent / "torchserve"
    found = str(local) if local.exists() else shutil.which("torchserve")
    if not found:
        raise CtlError("torchserve is not installed: run scripts/setup.sh (or pip install -r requirements.txt)")
    return found


# -- commands ----------------------------------------------------------------------------
def registered_models(server: Server) -> list[dict[str, Any]]:
    """Every registered version of every model: name, version, archive, workers, default or not.

    Enough to register them all again after a restart, with the same default version.
    """
    code, body = server.call("management", "GET", "/models")
    if code != 200:
        return []
    saved = []
    for entry in json.loads(body).get("models", []):
        name = urllib.parse.quote(entry["modelName"])
        code, detail = server.call("management", "GET", f"/models/{name}")
        default = json.loads(detail)[0].get("modelVersion") if code == 200 else None
        code, detail = server.call("management", "GET", f"/models/{name}/all")
        if code != 200:
            continue
        for model in json.loads(detail):
            saved.append({"name": model["modelName"], "version": model.get("modelVersion"),
                          "url": model["modelUrl"], "workers": max(1, int(model.get("minWorkers", 1))),
                          "default": model.get("modelVersion") == default})
    return saved


def restore(server: Server) -> None:
    """Register again every version registered when the server was last stopped by this script."""
    path = server.serve_dir / "models.json"
    if not path.is_file():
        return
    defaults = []
    for model in json.loads(path.read_text()):
        url = str(model.get("url", ""))
        if "/" in url or "\\" in url or not url.endswith(".mar") or not (server.model_store / url).is_file():
            # Only archives in the model store are restored, as register only takes those.
            print(f"model {model.get('name')} not restored: {url!r} is not an archive in {server.model_store}")
            continue
        query = urllib.parse.urlencode({"url": model["url"], "model_name": model["name"],
                                        "initial_workers": model["workers"], "synchronous": "true"})
        code, body = server.call("management", "POST", f"/models?{query}", timeout=600)
        if code == 200 and model.get("version"):
            code, body = scale(server, model["name"], model["workers"], model["version"])
        state = "restored" if code == 200 else f"could not be restored ({code}: {body.strip()[:200]})"
        version = f" as version {model['version']}" if code == 200 and model.get("version") else ""
        print(f"model {model['name']} ({model['url']}, {model['workers']} worker(s)) {state}{version}")
        if code == 200 and model.get("default"):
            defaults.append(model)
    for model in defaults:  # the default version as it was, whatever order the versions came back in
        code, body = server.call("management", "PUT", f"/models/{urllib.parse.quote(model['name'])}/"
                                 f"{urllib.parse.quote(model['version'])}/set-default")
        if code != 200:
            print(f"model {model['name']}: default version {model['version']} not set again ({code})")


def scale(server: Server, name: str, workers: int, version: str | None = None) -> tuple[int, str]:
    """Set one version's (or the default version's) worker count, waiting until the workers are up."""
    query = urllib.parse.urlencode({"min_worker": workers, "max_worker": workers, "synchronous": "true"})
    path = f"/models/{urllib.parse.quote(name)}" + (f"/{urllib.parse.quote(version)}" if version else "")
    return server.call("management", "PUT", f"{path}?{query}", timeout=600)


def archive_manifest(path: Path) -> dict[str, Any]:
    """The model name and version an archive registers as (its MAR-INF/MANIFEST.json)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return json.loads(zf.read("MAR-INF/MANIFEST.json")).get("model", {})
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}


def start(server: Server, models: list[str], timeout: float, restore_models: bool = True) -> None:
    if shutil.which("java") is None:
        raise CtlError("Java is not installed; TorchServe needs Java 11 or newer. "
                       "On Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless")
    if server.key_file.is_file() and server.ping():
        print(f"TorchServe already running ({server.address('inference')}, serve dir {server.serve_dir})")
        return
    for api in LISTENERS:
        if _port_in_use(server.address(api)):
            setting = f"{api}_port" if api.startswith("grpc_") else f"{api}_address"
            raise CtlError(f"port of the {api.replace('_', ' ')} API ({server.address(api)}) is already in use: "
                           f"stop what holds it (ss -ltnp) or change {setting} in {server.config}")
    server.make_serve_dir()
    server.key_file.unlink(missing_ok=True)
    command = [_torchserve(), "--start", "--ncs", "--ts-config", str(server.config),
               "--model-store", str(server.model_store)]
    if models:
        command += ["--models", *models]
    log = server.serve_dir / "logs" / "launcher.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        # umask 077: key_file.json, logs and unpacked archives are created readable by this user only.
        subprocess.run(command, cwd=server.serve_dir, env=server.env(), stdout=out, stderr=subprocess.STDOUT,
                       check=False, umask=0o077)
    deadline = time.time() + timeout
    pid_file = server.serve_dir / "tmp" / ".model_server.pid"
    while time.time() < deadline:
        if pid_file.is_file() and not _alive(pid_file):
            raise CtlError(f"TorchServe exited while starting; see {server.serve_dir / 'logs' / 'ts_log.log'} "
                           f"and {log}")
        if server.key_file.is_file() and server.ping():
            os.chmod(server.key_file, 0o600)
            server.write_headers()
            print(f"TorchServe is up: inference {server.address('inference')}, management "
                  f"{server.address('management')}, metrics {server.address('metrics')}")
            print(f"keys: {server.key_file}; logs: {server.serve_dir / 'logs'}")
            if restore_models:
                restore(server)
            return
        time.sleep(0.5)
    raise CtlError(f"TorchServe did not answer /ping within {timeout:.0f}s; "
                   f"see {server.serve_dir / 'logs' / 'ts_log.log'} and {log}")


def _alive(pid_file: Path) -> bool:
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
    pid_file = server.serve_dir / "tmp" / ".model_server.pid"
    if not pid_file.is_file():
        print("TorchServe is not running (no pid file)")
        return
    pid = int(pid_file.read_text().strip() or 0)
    if server.key_file.is_file() and server.ping():
        # Remember what is registered, so the next start brings it back.
        _write_private(server.serve_dir / "models.json", json.dumps(registered_models(server), indent=2) + "\n")
    subprocess.run([_torchserve(), "--stop"], cwd=server.serve_dir, env=server.env(), check=False,
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


def _print(code: int, body: str) -> int:
    print(body.strip())
    if code >= 400:
        print(f"HTTP {code}", file=sys.stderr)
        return 1
    return 0


def register(server: Server, archive: str, workers: int | None, name: str | None, timeout: int) -> int:
    path = Path(archive)
    if path.parent != Path(".") and path.resolve().parent != server.model_store:
        raise CtlError(f"{archive} is not in the model store {server.model_store}: only archives there can be "
                       "registered (build it with archives/build.py or copy it there)")
    file_name = path.name if path.suffix == ".mar" else f"{path.name}.mar"
    if not (server.model_store / file_name).is_file():
        raise CtlError(f"{server.model_store / file_name} not found")
    query: dict[str, Any] = {"url": file_name, "synchronous": "true", "response_timeout": timeout}
    if workers is not None:
        query["initial_workers"] = workers
    if name:
        query["model_name"] = name
    code, body = server.call("management", "POST", "/models?" + urllib.parse.urlencode(query), timeout=600)
    if code != 200 or workers is None:
        return _print(code, body)
    # The archive's model-config.yaml minWorkers/maxWorkers win over initial_workers at
    # registration: set the count asked for on the version just registered.
    manifest = archive_manifest(server.model_store / file_name)
    model = name or manifest.get("modelName") or Path(file_name).stem
    version = manifest.get("modelVersion")
    print(body.strip())
    scaled, scale_body = scale(server, model, workers, version)
    if scaled != 200:
        return _print(scaled, scale_body)
    print(f"{model} {version or ''}: {workers} worker(s)".replace("  ", " "))
    return 0


def predict_path(name: str, version: str | None = None) -> str:
    return f"/predictions/{urllib.parse.quote(name)}" + (f"/{urllib.parse.quote(version)}" if version else "")


def predict(server: Server, name: str, source: str, content_type: str | None, version: str | None = None) -> int:
    data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    if content_type is None:
        stripped = data.lstrip()
        content_type = "application/json" if stripped[:1] in (b"{", b"[") else "text/plain"
    code, body = server.call("inference", "POST", predict_path(name, version), data, {"Content-Type": content_type})
    return _print(code, body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="TorchServe config (default: $TS_CONFIG or config.properties)")
    parser.add_argument("--serve-dir", help="where pid, logs and keys go (default: $SERVE_DIR or .serve)")
    parser.add_argument("--model-store", help="archive folder (default: the config's model_store)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("start", help="start TorchServe and wait until /ping answers")
    p.add_argument("--models", default="", help="comma-separated NAME.mar to register at start")
    p.add_argument("--timeout", type=float, default=120, help="seconds to wait for /ping")
    p.add_argument("--no-restore", action="store_true",
                   help="do not register again the models registered when the server was last stopped")
    sub.add_parser("stop", help="stop TorchServe (remembering the registered models)")
    sub.add_parser("status", help="say whether TorchServe runs and which models it serves")
    p = sub.add_parser("register", help="register an archive from the model store")
    p.add_argument("archive", help="NAME.mar in the model store")
    p.add_argument("--workers", type=int, default=None,
                   help="workers for the version registered, over the archive's minWorkers/maxWorkers "
                        "(default: the archive's)")
    p.add_argument("--name", help="model name (default: the archive's)")
    p.add_argument("--timeout", type=int, default=120, help="response timeout in seconds")
    p = sub.add_parser("unregister", help="unregister a model (its default version, or the version given)")
    p.add_argument("name")
    p.add_argument("version", nargs="?")
    p = sub.add_parser("scale", help="set a model's worker count")
    p.add_argument("name")
    p.add_argument("workers", type=int)
    p.add_argument("--version", help="the version to scale (default: the default version)")
    p = sub.add_parser("set-default", help="make a registered version the one /predictions/NAME serves")
    p.add_argument("name")
    p.add_argument("version")
    sub.add_parser("list", help="list registered models")
    p = sub.add_parser("describe", help="describe a model and its workers")
    p.add_argument("name")
    p.add_argument("version", nargs="?", help="a version, or all (default: the default version)")
    p = sub.add_parser("predict", help="send a request body from a file or stdin")
    p.add_argument("name")
    p.add_argument("source", nargs="?", default="-", help="file with the body, or - for stdin")
    p.add_argument("--content-type", help="default: application/json for JSON, text/plain otherwise")
    p.add_argument("--version", help="a registered version (default: the model's default version)")
    p = sub.add_parser("key", help="print a current key (for programs; curl reads the header file instead)")
    p.add_argument("kind", choices=["inference", "management"])
    p = sub.add_parser("address", help="print an API's address from the config (for curl)")
    p.add_argument("api", choices=["inference", "management", "metrics"])
    p = sub.add_parser("header", help="print the path of a 0600 file with a current Authorization header, "
                                      "for curl -H @FILE (keeps the key off the command line)")
    p.add_argument("kind", choices=["inference", "management"])
    args = parser.parse_args(argv)
    try:
        server = Server(args.config, args.serve_dir, args.model_store)
        if args.command == "start":
            start(server, [m for m in args.models.split(",") if m], args.timeout, not args.no_restore)
            return 0
        if args.command == "stop":
            stop(server)
            return 0
        if args.command == "status":
            return status(server)
        if args.command == "register":
            return register(server, args.archive, args.workers, args.name, args.timeout)
        if args.command == "unregister":
            version = f"/{urllib.parse.quote(args.version)}" if args.version else ""
            return _print(*server.call("management", "DELETE", f"/models/{urllib.parse.quote(args.name)}{version}"))
        if args.command == "scale":
            return _print(*scale(server, args.name, args.workers, args.version))
        if args.command == "set-default":
            return _print(*server.call("management", "PUT", f"/models/{urllib.parse.quote(args.name)}/"
                                       f"{urllib.parse.quote(args.version)}/set-default"))
        if args.command == "list":
            return _print(*server.call("management", "GET", "/models"))
        if args.command == "describe":
            version = f"/{urllib.parse.quote(args.version)}" if args.version else ""
            return _print(*server.call("management", "GET", f"/models/{urllib.parse.quote(args.name)}{version}"))
        if args.command == "predict":
            return predict(server, args.name, args.source, args.content_type, args.version)
        if args.command == "key":
            print(server.key(args.kind))
            return 0
        if args.command == "address":
            print(server.address(args.api))
            return 0
        if args.command == "header":
            server.key(args.kind)  # renews an expired key first
            server.write_headers()
            print(server.header_file(args.kind))
            return 0
    except CtlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
