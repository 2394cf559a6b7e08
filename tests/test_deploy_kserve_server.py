"""deploy/kserve/inferenceservice-kserve-server.yaml: KServe's and Kubernetes' schemas, and agreement
with the server's own arguments (serving/kserve_server.py) and KServe's storage layout."""

from __future__ import annotations

import copy
import json

import jsonschema
import kubernetes_validate
import pytest
import yaml

from archives import kserve
from serving.kserve_server import parse_args
from tests.test_deploy import DEPLOY, K8S_VERSION, KSERVE_SCHEMA

MANIFEST = DEPLOY / "kserve" / "inferenceservice-kserve-server.yaml"


def isvc() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def container() -> dict:
    (c,) = isvc()["spec"]["predictor"]["containers"]
    return c


def test_matches_the_kserve_schema_which_rejects_mistakes() -> None:
    schema = json.loads(KSERVE_SCHEMA.read_text())
    jsonschema.validate(isvc(), schema)
    for broken in ("typo", "string_replicas", "no_predictor"):
        doc = isvc()
        if broken == "typo":
            doc["spec"]["predictor"]["minReplica"] = 1
        elif broken == "string_replicas":
            doc["spec"]["predictor"]["maxReplicas"] = "six"
        else:
            del doc["spec"]["predictor"]
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, schema)


def test_the_container_is_a_valid_kubernetes_container() -> None:
    """KServe's schema leaves containers to Kubernetes' (deploy/schemas/make_kserve_schema.py)."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "events-kserve-predictor"},
           "spec": {"containers": [container()]}}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    broken = copy.deepcopy(pod)
    broken["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_arguments_port_probe_and_storage_agree() -> None:
    c = container()
    assert c["command"] == ["python", "-m", "serving.kserve_server"]
    args = parse_args(c["args"])  # the server's own parser accepts them
    assert args.model_dir == kserve.KSERVE_MOUNT and args.host == "0.0.0.0"
    (port,) = c["ports"]
    assert port["name"] == "http1" and port["containerPort"] == args.http_port == c["readinessProbe"]["httpGet"]["port"]
    assert c["readinessProbe"]["httpGet"]["path"] == f"/v2/models/{args.name}/ready"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["STORAGE_URI"].endswith(f"/{args.name}/1.0")  # the layout inferenceservice.yaml also serves
    assert " ".join(c["command"] + c["args"]) in MANIFEST.read_text()
    predictor = isvc()["spec"]["predictor"]
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"] and predictor["scaleTarget"] > 0
