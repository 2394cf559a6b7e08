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
from serving.ts_client import Server
from serving.ts_config import config_on_free_ports

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.33.0"
KSERVE_SCHEMA = DEPLOY / "schemas" / "kserve-0.15.2-inferenceservice.schema.json"


def isvc() -> dict:
    return yaml.safe_load((DEPLOY / "kserve" / "inferenceservice.yaml").read_text())


def runtime() -> dict:
    return yaml.safe_load((DEPLOY / "kserve" / "servingruntime.yaml").read_text())


def k8s_docs() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "events.yaml").read_text())}


def kserve_schema(kind: str = "InferenceService") -> dict:
    """The vendored schema, rooted at the InferenceService or at the ServingRuntime."""
    schema = json.loads(KSERVE_SCHEMA.read_text())
    if kind == "InferenceService":
        return schema
    root = copy.deepcopy(schema["definitions"]["V1alpha1ServingRuntime"])
    root["properties"].update({"apiVersion": {"const": "serving.kserve.io/v1alpha1"}, "kind": {"const": kind}})
    root["required"] = ["apiVersion", "kind", "metadata", "spec"]
    schema["definitions"]["V1alpha1ServingRuntimeSpec"]["required"] = ["containers"]
    return {"$schema": schema["$schema"], **root, "definitions": schema["definitions"]}


# -- schemas -------------------------------------------------------------------------------------
def test_inferenceservice_matches_the_kserve_schema() -> None:
    schema = kserve_schema()
    assert "kserve==0.15.2" in schema["description"]
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(isvc(), schema)
    for broken in ("typo", "string_replicas", "no_predictor", "model_typo"):  # the schema does reject mistakes
        doc = isvc()
        if broken == "typo":
            doc["spec"]["predictor"]["minReplica"] = 1
        elif broken == "string_replicas":
            doc["spec"]["predictor"]["maxReplicas"] = "six"
        elif broken == "model_typo":
            doc["spec"]["predictor"]["model"]["runtimeName"] = "x"
        else:
            del doc["spec"]["predictor"]
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, schema)


def test_servingruntime_matches_the_kserve_schema() -> None:
    schema = kserve_schema("ServingRuntime")
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(runtime(), schema)
    broken = runtime()
    broken["spec"]["protocolVersion"] = ["v1"]  # the field is protocolVersions
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_kserve_kubernetes_parts_match_the_kubernetes_schemas() -> None:
    """The runtime's containers and volumes as a Pod, the predictor's pod fields, the NetworkPolicy."""
    spec = runtime()["spec"]
    predictor = {k: v for k, v in isvc()["spec"]["predictor"].items()
                 if k in ("automountServiceAccountToken", "terminationGracePeriodSeconds")}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "events-predictor"},
           "spec": {"containers": spec["containers"], "volumes": spec["volumes"], **predictor}}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    for doc in (isvc(), runtime()):
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc["metadata"]},
                                     K8S_VERSION, strict=True)
    policy = yaml.safe_load((DEPLOY / "kserve" / "networkpolicy.yaml").read_text())
    kubernetes_validate.validate(policy, K8S_VERSION, strict=True)


def test_plain_kubernetes_manifests_match_the_kubernetes_schemas() -> None:
    docs = k8s_docs()
    assert set(docs) == {"Deployment", "PodDisruptionBudget", "Service", "HorizontalPodAutoscaler", "NetworkPolicy"}
    for doc in docs.values():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    broken = copy.deepcopy(docs["Deployment"])
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8085"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


# -- agreement with the layout and what test_kserve.py ran --------------------------------------------
def cluster_props() -> dict[str, str]:
    config = kserve.cluster_config("events", "1.0", "events.mar", {})
    return dict(line.split("=", 1) for line in config.splitlines() if "=" in line and not line.startswith("#"))


def port(props: dict[str, str], api: str) -> int:
    return int(props[f"{api}_address"].rsplit(":", 1)[1])


def test_kserve_runtime_service_and_layout_agree() -> None:
    props = cluster_props()
    inference_port, metrics_port, management_port = (port(props, a) for a in ("inference", "metrics", "management"))
    assert (inference_port, metrics_port) == (kserve.KSERVE_PORTS["inference"], 8082)
    assert management_port not in (8080, 8081) and props["management_address"].startswith("http://127.0.0.1:")
    assert props["model_store"] == "/mnt/models/model-store" and props["disable_token_authorization"] == "true"
    assert props["enable_envvars_config"] == "false"  # no TS_SERVICE_ENVELOPE can turn an envelope on

    service, spec = isvc(), runtime()["spec"]
    assert service["metadata"]["name"] == "events"  # the model name in the layout's model_snapshot
    predictor = service["spec"]["predictor"]
    model = predictor["model"]
    assert model["runtime"] == runtime()["metadata"]["name"]
    assert {"name": model["modelFormat"]["name"], "version": model["modelFormat"]["version"], "autoSelect": True} \
        in spec["supportedModelFormats"]
    assert model["protocolVersion"] in spec["protocolVersions"] == ["v1", "v2"]
    assert model["storageUri"].endswith("/events/1.0")
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"] and predictor["scaleTarget"] > 0
    assert predictor["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"
    assert [p["containerPort"] for p in container["ports"]] == [inference_port]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ping", "port": inference_port}
    assert container["livenessProbe"] != container["readinessProbe"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODEL_BASE"] == "/mnt/models" and env["SERVER"] == "torchserve" and "TS_SERVICE_ENVELOPE" not in env
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"] and env["SERVE_DIR"].startswith("/tmp/")
    assert int(env["DRAIN_SECONDS"]) < predictor["terminationGracePeriodSeconds"]
    header = (DEPLOY / "kserve" / "inferenceservice.yaml").read_text()
    assert " ".join(kserve.KSERVE_ARGS).replace("--start", "") in header.replace("--start", "")
    assert "--kserve-layout" in header and "config/config.properties" in header and "model-store/events.mar" in header

    policy = yaml.safe_load((DEPLOY / "kserve" / "networkpolicy.yaml").read_text())
    assert policy["spec"]["podSelector"]["matchLabels"] == {"serving.kserve.io/inferenceservice": "events"}
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert {inference_port, metrics_port, 8012} <= allowed and management_port not in allowed


def test_plain_kubernetes_deployment_and_layout_agree() -> None:
    props = cluster_props()
    inference_port, metrics_port = port(props, "inference"), port(props, "metrics")
    docs = k8s_docs()
    deployment, svc, hpa, policy, budget = (docs[k] for k in ("Deployment", "Service", "HorizontalPodAutoscaler",
                                                              "NetworkPolicy", "PodDisruptionBudget"))
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    for selector in (deployment["spec"]["selector"]["matchLabels"], svc["spec"]["selector"],
                     policy["spec"]["podSelector"]["matchLabels"], budget["spec"]["selector"]["matchLabels"],
                     *(c["labelSelector"]["matchLabels"] for c in pod["spec"]["topologySpreadConstraints"])):
        assert selector.items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": inference_port, "metrics": metrics_port}
    assert {p["targetPort"] for p in svc["spec"]["ports"]} == {"http", "metrics"}
    assert {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]} == {inference_port, metrics_port}
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(metrics_port)
    # The HPA owns the scale: an apply must not reset it.
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2 and "replicas" not in deployment["spec"]
    assert budget["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    assert {c["topologyKey"] for c in pod["spec"]["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert pod["spec"]["automountServiceAccountToken"] is False
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODEL_BASE"] == "/mnt/models" and "TS_SERVICE_ENVELOPE" not in env
    # Probes fork nothing; liveness asks something other than readiness.
    assert container["readinessProbe"]["httpGet"] == container["startupProbe"]["httpGet"] == \
        {"path": "/ping", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    assert not any("exec" in container[p] for p in ("startupProbe", "readinessProbe", "livenessProbe"))
    # Read-only root, a writable /tmp, a drain inside the grace period.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"] and env["SERVE_DIR"].startswith("/tmp/")
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop + int(env["DRAIN_SECONDS"]) < pod["spec"]["terminationGracePeriodSeconds"]

    entrypoint = (DEPLOY / "docker" / "entrypoint.sh").read_text()
    # The runtime's paths: --model-store=/mnt/models/model-store --ts-config=/mnt/models/config/config.properties
    assert 'MODEL_BASE="${MODEL_BASE:-/mnt/models}"' in entrypoint
    assert 'CONFIG_PATH="${CONFIG_PATH:-$MODEL_BASE/config/config.properties}"' in entrypoint
    assert 'MODEL_STORE="${MODEL_STORE:-$MODEL_BASE/model-store}"' in entrypoint
    assert '--foreground --model-store="$MODEL_STORE" --ts-config="$CONFIG_PATH"' in entrypoint


def pins(path: Path) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", path.read_text(), re.M)
    return {name.lower(): version for name, version in found}


def test_dockerfile_recipe() -> None:
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert re.fullmatch(r"ARG BASE=docker\.io/library/python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", lines[0])
    assert lines[1] == "FROM ${BASE}"
    assert "openjdk-17-jre-headless" in text and "download.pytorch.org" not in text
    assert "--no-index --find-links /tmp/wheels -r /opt/requirements-serve.txt" in text
    # The serve-only set: pinned as requirements.txt pins them, and no training stack.
    serve, full = pins(ROOT / "requirements-serve.txt"), pins(ROOT / "requirements.txt")
    assert serve.items() <= full.items() and {"torch", "torchserve", "transformers", "scipy"} <= serve.keys()
    assert not {"datasets", "pandas", "pyarrow", "scikit-learn", "matplotlib", "accelerate", "onnx",
                "torch-model-archiver"} & serve.keys()
    assert "COPY deploy/layout/ /mnt/models/" in text
    assert "USER 1000:1000" in text and "useradd --uid 1000" in text
    assert 'ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]' in text
    assert "EXPOSE 8085 8082" in text and "SERVE_DIR=/tmp/serve" in text
    ignore = (ROOT / ".dockerignore").read_text()
    assert "!deploy/layout/" in ignore and "!requirements-serve.txt" in ignore and "!deploy/wheels/" in ignore


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
    config = config_on_free_ports(layout / "config" / "config.properties", tmp_path / "config.properties")
    server = Server(config, tmp_path / "serve", layout / "model-store")
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
