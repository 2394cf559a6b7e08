"""deploy/: the manifests against their schemas and against what tests/test_kserve.py ran,
the container recipe read closely, and its entrypoint and probe run outside a container.

No Docker daemon, image registry or cluster is reachable where these tests run: the
manifests are validated (KServe's schema vendored from kserve 0.15.2, Kubernetes schemas
from kubernetes-validate at Kubernetes 1.33), and the image's entrypoint is run directly.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml


from archives import kserve
from serving import tsctl

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.33.0"
KSERVE_SCHEMA = DEPLOY / "schemas" / "kserve-0.15.2-inferenceservice.schema.json"


def isvc() -> dict:
    return yaml.safe_load((DEPLOY / "kserve" / "inferenceservice.yaml").read_text())


def k8s_docs() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "events.yaml").read_text())}


# -- schemas -------------------------------------------------------------------------------------
def test_inferenceservice_matches_the_kserve_schema() -> None:
    schema = json.loads(KSERVE_SCHEMA.read_text())
    assert "kserve==0.15.2" in schema["description"]
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(isvc(), schema)
    for broken in ("typo", "string_replicas", "no_predictor"):  # the schema does reject mistakes
        doc = isvc()
        if broken == "typo":
            doc["spec"]["predictor"]["minReplica"] = 1
        elif broken == "string_replicas":
            doc["spec"]["predictor"]["maxReplicas"] = "six"
        else:
            del doc["spec"]["predictor"]
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, schema)


def test_inferenceservice_kubernetes_parts_match_the_kubernetes_schemas() -> None:
    """The pytorch predictor is a Kubernetes container plus KServe's fields: check the container part."""
    predictor = isvc()["spec"]["predictor"]["pytorch"]
    container = {k: v for k, v in predictor.items() if k not in ("protocolVersion", "storageUri", "runtimeVersion",
                                                                 "storage")}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "events-predictor"},
           "spec": {"containers": [{"name": "kserve-container", "image": "kserve-torchserve", **container}]}}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    metadata = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": isvc()["metadata"]}
    kubernetes_validate.validate(metadata, K8S_VERSION, strict=True)


def test_plain_kubernetes_manifests_match_the_kubernetes_schemas() -> None:
    docs = k8s_docs()
    assert set(docs) == {"Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy"}
    for doc in docs.values():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    broken = copy.deepcopy(docs["Deployment"])
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8085"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


# -- agreement with the layout and what test_kserve.py ran --------------------------------------------
def test_names_ports_layout_and_arguments_agree() -> None:
    config = kserve.cluster_config("events", "1.0", "events.mar", {})
    props = dict(line.split("=", 1) for line in config.splitlines() if "=" in line and not line.startswith("#"))
    inference_port = int(props["inference_address"].rsplit(":", 1)[1])
    metrics_port = int(props["metrics_address"].rsplit(":", 1)[1])
    assert (inference_port, metrics_port) == (kserve.KSERVE_PORTS["inference"], 8082)
    assert props["model_store"] == "/mnt/models/model-store" and props["disable_token_authorization"] == "true"

    service = isvc()
    assert service["metadata"]["name"] == "events"  # the model name in the layout's model_snapshot
    predictor = service["spec"]["predictor"]
    assert predictor["pytorch"]["protocolVersion"] in ("v1", "v2")
    assert predictor["pytorch"]["storageUri"].endswith("/events/1.0")
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"] and predictor["scaleTarget"] > 0
    header = (DEPLOY / "kserve" / "inferenceservice.yaml").read_text()
    assert " ".join(kserve.KSERVE_ARGS) in header
    assert "--kserve-layout" in header and "config/config.properties" in header and "model-store/events.mar" in header

    docs = k8s_docs()
    deployment, svc, hpa, policy = (docs[k] for k in ("Deployment", "Service", "HorizontalPodAutoscaler",
                                                      "NetworkPolicy"))
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": inference_port, "metrics": metrics_port}
    assert {p["targetPort"] for p in svc["spec"]["ports"]} == {"http", "metrics"}
    assert {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]} == {inference_port, metrics_port}
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(metrics_port)
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2 and deployment["spec"]["replicas"] == hpa["spec"]["minReplicas"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODEL_BASE"] == "/mnt/models" and "TS_SERVICE_ENVELOPE" not in env
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"][0] == "healthcheck.py"

    entrypoint = (DEPLOY / "docker" / "entrypoint.sh").read_text()
    # The runtime's paths: --model-store=/mnt/models/model-store --ts-config=/mnt/models/config/config.properties
    assert 'MODEL_BASE="${MODEL_BASE:-/mnt/models}"' in entrypoint
    assert 'CONFIG_PATH="${CONFIG_PATH:-$MODEL_BASE/config/config.properties}"' in entrypoint
    assert 'MODEL_STORE="${MODEL_STORE:-$MODEL_BASE/model-store}"' in entrypoint
    assert '--foreground --model-store="$MODEL_STORE" --ts-config="$CONFIG_PATH"' in entrypoint


def test_dockerfile_recipe() -> None:
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    assert "openjdk-17-jre-headless" in text and "--index-url https://download.pytorch.org/whl/cpu" in text
    torch_pin = re.search(r"^torch==(\S+)", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert f"torch=={torch_pin}" in text and "-r /tmp/serve-requirements.txt" in text
    assert "COPY deploy/layout/ /mnt/models/" in text
    assert "USER model-server" in text and "useradd" in text
    assert 'ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]' in text
    assert "EXPOSE 8085 8082" in text
    ignore = (ROOT / ".dockerignore").read_text()
    assert "!deploy/layout/" in ignore and "!requirements.txt" in ignore


# -- the entrypoint and the probe, run for real ------------------------------------------------------
@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, model_store: Path) -> Path:
    return kserve.write_kserve_layout(model_store / "events.mar", tmp_path_factory.mktemp("docker") / "mnt")


def probe(mode: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DEPLOY / "docker" / "healthcheck.py"), mode], env=env,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.e2e
def test_entrypoint_runs_torchserve_in_the_foreground_and_stops_cleanly(layout: Path, tmp_path: Path) -> None:
    # The layout's config as the image holds it, with only its listeners moved to free loopback ports.
    config = tsctl.config_on_free_ports(layout / "config" / "config.properties", tmp_path / "config.properties")
    server = tsctl.Server(config, tmp_path / "serve", layout / "model-store")
    env = {**os.environ, "MODEL_BASE": str(layout), "CONFIG_PATH": str(config), "SERVE_DIR": str(server.serve_dir),
           "TORCHSERVE": str(Path(sys.executable).parent / "torchserve"), "PATH": f"{Path(sys.executable).parent}:"
           f"{os.environ['PATH']}"}
    for key in [k for k in env if k.startswith("TS_")]:
        env.pop(key)  # a fresh container has none; the config lets TS_* variables override it
    missing = subprocess.run([str(DEPLOY / "docker" / "entrypoint.sh")], env={**env, "MODEL_STORE": str(tmp_path)},
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2 and "no archive" in missing.stderr
    process = subprocess.Popen([str(DEPLOY / "docker" / "entrypoint.sh")], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    java = None
    try:
        deadline = time.time() + 240
        while time.time() < deadline and probe("ready", env).returncode != 0:
            assert process.poll() is None, process.stdout.read().decode()[-3000:]
            time.sleep(1)
        assert probe("live", env).returncode == 0 and probe("ready", env).returncode == 0
        java = int((server.serve_dir / "tmp" / ".model_server.pid").read_text())
        code, body = server._http("POST", server.address("inference") + "/predictions/events",
                                  json.dumps({"title": "saxophone trio"}).encode(),
                                  {"Content-Type": "application/json"})
        assert code == 200 and "path" in json.loads(body)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) == 0
        time.sleep(0.5)
        with pytest.raises(ProcessLookupError):
            os.kill(java, 0)  # the JVM went with it
        assert probe("live", env).returncode == 1
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        if java:
            try:
                os.kill(java, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.e2e
def test_probe_works_with_token_authorization_on(server) -> None:
    env = {**os.environ, "CONFIG_PATH": str(server.config), "SERVE_DIR": str(server.serve_dir)}
    assert probe("live", env).returncode == 0
    code, _ = server._http("GET", server.address("inference") + "/ping", None, {})
    assert code == 400  # without the key, /ping itself is refused: an httpGet probe would fail
    assert probe("live", {**env, "SERVE_DIR": str(server.serve_dir / "elsewhere")}).returncode == 1
