"""One TorchServe as its callers see it: its addresses, its keys, and authorised HTTP calls to it.

Everything the server writes (pid file, extracted archives, logs, key_file.json) lives
in one serve directory (default ``.serve/``, or $SERVE_DIR), so several servers can run
side by side with their own config ($TS_CONFIG) and serve directory. Keys are read from
that key_file.json, and an expired inference or management key is regenerated through
TorchServe's token API before the call is retried. The serve directory is private (0700,
files 0600): it holds the keys, and the management key runs code as the server's user.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from serving import loopback, server_env
from serving.ts_config import LISTENERS, read_properties

ROOT = Path(__file__).resolve().parent.parent


class CtlError(RuntimeError):
    """A failure to report in one line, without a traceback."""


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
                write_private(self.header_file(kind), f"Authorization: Bearer {self.keys()[kind]['key']}\n")

    @property
    def key_file(self) -> Path:
        return self.serve_dir / "key_file.json"

    @property
    def pid_file(self) -> Path:
        """Where TorchServe writes its pid ($TMPDIR, which ``env`` puts in the serve directory)."""
        return self.serve_dir / "tmp" / ".model_server.pid"

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
        server_env.apply(env)  # workers' kernel caches and allocator (serving/server_env.py)
        return env

    # -- keys ----------------------------------------------------------------------------
    def keys(self) -> dict[str, Any]:
        if not self.key_file.is_file():
            raise CtlError(f"no {self.key_file}: is the server running? (scripts/serve.sh start)")
        return json.loads(self.key_file.read_text())

    def key(self, kind: str) -> str:
        entry = self.keys()[kind]
        if kind != "API" and expired(entry):
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
            if not expired(self.keys()[kind]):
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
        if api != "metrics" and token_refused(status, body):
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


def token_refused(status: int, body: str) -> bool:
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


def write_private(path: Path, text: str) -> None:
    """Write a file that only this user can read, created so (never briefly world-readable)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def expired(entry: dict[str, Any]) -> bool:
    """Keys carry an ISO-8601 'expiration time' (nanoseconds, UTC); 30 s of margin avoids races."""
    stamp = entry.get("expiration time")
    if not stamp:
        return False
    stamp = re.sub(r"(\.\d{6})\d+", r"\1", str(stamp)).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp() - 30 < time.time()
