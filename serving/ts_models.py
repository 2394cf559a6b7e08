"""The management calls: register an archive, scale, restore what was registered, predict.

Each command prints TorchServe's answer and returns the exit status (``print_answer``).
"""

from __future__ import annotations

import json
import sys
import urllib.parse
import zipfile
from pathlib import Path
from typing import Any

from serving.ts_client import CtlError, Server


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
    try:
        with zipfile.ZipFile(path) as zf:
            return json.loads(zf.read("MAR-INF/MANIFEST.json")).get("model", {})
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}


def print_answer(code: int, body: str) -> int:
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
        return print_answer(code, body)
    # The archive's model-config.yaml minWorkers/maxWorkers win over initial_workers at
    # registration: set the count asked for on the version just registered.
    manifest = archive_manifest(server.model_store / file_name)
    model = name or manifest.get("modelName") or Path(file_name).stem
    version = manifest.get("modelVersion")
    print(body.strip())
    scaled, scale_body = scale(server, model, workers, version)
    if scaled != 200:
        return print_answer(scaled, scale_body)
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
    return print_answer(code, body)
