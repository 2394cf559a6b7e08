"""KServe's storage layout for a built archive: config/config.properties and model-store/NAME.mar.

The layout is what KServe's TorchServe runtime mounts at /mnt/models; the cluster config
it carries turns token authorization off (authentication belongs to the gateway in a
cluster; README, Deploying beyond one machine) and registers the model at start.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml


# KServe mounts the storage URI at /mnt/models; the project's ServingRuntime
# (deploy/kserve/servingruntime.yaml, the image of deploy/docker) starts TorchServe on it as
#   torchserve --start --model-store=/mnt/models/model-store --ts-config=/mnt/models/config/config.properties
# (the entrypoint runs the same in the foreground). The handler speaks KServe v1 and v2
# itself (handlers/protocols.py): no TorchServe service envelope.
KSERVE_MOUNT = "/mnt/models"
KSERVE_ARGS = ["torchserve", "--start", f"--model-store={KSERVE_MOUNT}/model-store",
               f"--ts-config={KSERVE_MOUNT}/config/config.properties"]
# Inference on 8085 and metrics on 8082, as TorchServe's kubernetes/kserve config.properties;
# the management API on the pod's loopback at 8086, clear of 8080/8081 (the ports KServe's
# stock TorchServe wrapper binds) and of Knative's queue-proxy (8012, 8022, 9090, 9091).
KSERVE_PORTS = {"inference": 8085, "management": 8086, "metrics": 8082, "grpc_inference": 7070,
                "grpc_management": 7071}


def archive_settings(mar: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The MANIFEST.json and model-config.yaml inside a built archive."""
    import zipfile

    with zipfile.ZipFile(mar) as zf:
        manifest = json.loads(zf.read("MAR-INF/MANIFEST.json"))
        names = zf.namelist()
        config = yaml.safe_load(zf.read("model-config.yaml")) if "model-config.yaml" in names else {}
    return manifest, config or {}


def cluster_config(name: str, version: str, mar_name: str, settings: dict[str, Any],
                   workers: int | None = None) -> str:
    """config.properties for a replica in a cluster (KServe, plain Kubernetes, Docker).

    Differs from the loopback config.properties on purpose (README, Keys across replicas):
    token authorization is off, because every replica would mint its own random keys and no
    client could hold them all; authentication happens at the gateway in front. What makes
    that safe: the management API listens on the pod's loopback only and cannot register or
    unregister (enable_model_api=false); the model comes from model_snapshot at start.
    Requests are batched as the archive says (batchSize, maxBatchDelay), KServe's included:
    the handler unwraps KServe bodies itself. TorchServe's own envelopes (TS_SERVICE_ENVELOPE)
    read only the first request of a batch, so environment overrides are off: the file is
    the whole configuration.
    """
    workers = int(workers or settings.get("minWorkers") or 1)
    snapshot = {"name": "startup.cfg", "modelCount": 1, "models": {name: {version: {
        "defaultVersion": True, "marName": mar_name, "minWorkers": workers, "maxWorkers": workers,
        "batchSize": int(settings.get("batchSize", 1)), "maxBatchDelay": int(settings.get("maxBatchDelay", 5)),
        "responseTimeout": int(settings.get("responseTimeout", 60)),
        "startupTimeout": int(settings.get("startupTimeout", 180)),
    }}}}
    p = KSERVE_PORTS
    return f"""# Cluster config for {name} {version}, written by archives/build.py --kserve-layout.
# KServe's TorchServe runtime reads it from <storageUri>/config/config.properties; the Docker
# image and the plain-Kubernetes Deployment use the same file. Not for a shared machine: the
# loopback config.properties at the repository root keeps token authorization on.
inference_address=http://0.0.0.0:{p['inference']}
management_address=http://127.0.0.1:{p['management']}
metrics_address=http://0.0.0.0:{p['metrics']}
grpc_inference_address=0.0.0.0
grpc_inference_port={p['grpc_inference']}
grpc_management_address=127.0.0.1
grpc_management_port={p['grpc_management']}
model_store={KSERVE_MOUNT}/model-store
# One listener answers /predictions/{name}, KServe v1 (/v1/models/{name}:predict) and v2
# (/v2/models/{name}/infer): the handler reads each protocol itself, with no service envelope.
# No TS_* variable overrides this file (TS_SERVICE_ENVELOPE would break batching).
enable_envvars_config=false
# Replicas cannot share TorchServe's per-process random keys: authenticate at the gateway.
disable_token_authorization=true
# No registering or unregistering through the management API; the model below loads at start.
enable_model_api=false
allowed_urls=^model-store-only$
install_py_dep_per_model=false
metrics_mode=prometheus
model_metrics_auto_detect=true
job_queue_size=256
max_request_size=1048576
max_response_size=1048576
# Bodies reach the handler as bytes, parsed one request at a time (config.properties says why).
decode_input_request=false
default_response_timeout={int(settings.get('responseTimeout', 60))}
default_startup_timeout={int(settings.get('startupTimeout', 180))}
model_snapshot={json.dumps(snapshot, separators=(',', ':'))}
"""


def write_kserve_layout(mar: Path, out: Path, workers: int | None = None) -> Path:
    """KServe's storage layout for a built archive: config/config.properties, model-store/NAME.mar."""
    manifest, settings = archive_settings(mar)
    name = manifest["model"]["modelName"]
    version = manifest["model"]["modelVersion"]
    (out / "config").mkdir(parents=True, exist_ok=True)
    (out / "model-store").mkdir(parents=True, exist_ok=True)
    mar_name = f"{name}.mar"
    shutil.copy2(mar, out / "model-store" / mar_name)
    (out / "config" / "config.properties").write_text(cluster_config(name, version, mar_name, settings, workers))
    return out
