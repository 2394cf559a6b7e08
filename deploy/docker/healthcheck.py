#!/usr/bin/env python3
"""Kubernetes probe for a TorchServe replica, with token authorization on or off, or for the
KServe server (SERVER=kserve).

    healthcheck.py live    /ping answers Healthy (KServe: /v2/health/live answers live)
    healthcheck.py ready   and the model's workers are READY (management API, pod loopback)
                           (KServe: /v2/health/ready answers ready: every model is loaded)

Run inside the container (exec probe), so it reaches the management API that the cluster
config keeps on loopback. With tokens on, TorchServe refuses /ping without a key (400):
the key is read from key_file.json in SERVE_DIR, so the same probe works either way.
Environment: CONFIG_PATH (or MODEL_BASE), SERVE_DIR, MODEL_NAME (default: every model);
SERVER and, for kserve, HTTP_PORT (default 8085).
Exit 0 healthy, 1 not. Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path


def props(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            found[key.strip()] = value.strip()
    return found


def local(address: str) -> str:
    return address.rstrip("/").replace("://0.0.0.0:", "://127.0.0.1:")


# No proxy, whatever http_proxy says: the probe sends keys to the pod's own loopback. (The
# image holds this file alone, so it cannot import serving.loopback, which the repository's
# clients share.)
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str, key: str | None) -> tuple[int, object]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with NO_PROXY.open(request, timeout=4) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (OSError, ValueError):
        return 0, None


def kserve(mode: str) -> int:
    """The KServe server's own Open Inference Protocol health routes, on the pod's loopback."""
    code, body = get(f"http://127.0.0.1:{os.environ.get('HTTP_PORT', '8085')}/v2/health/{mode}", None)
    if code != 200 or not isinstance(body, dict) or body.get(mode) is not True:
        print(f"/v2/health/{mode}: {code} {body}")
        return 1
    return 0


def main(argv: list[str]) -> int:
    mode = argv[1] if len(argv) > 1 else "live"
    if os.environ.get("SERVER") == "kserve":
        return kserve("ready" if mode == "ready" else "live")
    base = Path(os.environ.get("MODEL_BASE", "/mnt/models"))
    config = props(Path(os.environ.get("CONFIG_PATH", base / "config" / "config.properties")))
    serve_dir = Path(os.environ.get("SERVE_DIR", Path(os.environ.get("HOME", "/tmp")) / "serve"))
    keys = {}
    if config.get("disable_token_authorization", "false").lower() != "true":
        try:
            keys = json.loads((serve_dir / "key_file.json").read_text())
        except (OSError, ValueError):
            print("token authorization is on and key_file.json is not readable yet")
            return 1
    inference = local(config.get("inference_address", "http://127.0.0.1:8080"))
    code, body = get(inference + "/ping", keys.get("inference", {}).get("key"))
    if code != 200 or not isinstance(body, dict) or body.get("status") != "Healthy":
        print(f"/ping: {code} {body}")
        return 1
    if mode == "live":
        return 0
    management = local(config.get("management_address", "http://127.0.0.1:8081"))
    key = keys.get("management", {}).get("key")
    names = [os.environ["MODEL_NAME"]] if os.environ.get("MODEL_NAME") else None
    if names is None:
        code, body = get(management + "/models", key)
        names = [m["modelName"] for m in body.get("models", [])] if code == 200 and isinstance(body, dict) else []
    if not names:
        print("no model registered yet")
        return 1
    for name in names:
        code, body = get(f"{management}/models/{name}", key)
        workers = body[0].get("workers", []) if code == 200 and isinstance(body, list) and body else []
        if not any(w.get("status") == "READY" for w in workers):
            print(f"model {name}: no READY worker ({code})")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
