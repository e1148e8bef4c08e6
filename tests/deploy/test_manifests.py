"""deploy/: every manifest is valid offline, and every port, path and flag it uses exists.

Kubernetes objects are validated against the Kubernetes OpenAPI schemas shipped by the
``kubernetes-validate`` package (pinned in constraints.txt), strict mode (unknown fields are
errors); KServe objects against ``kserve_schema.py``, their containers against core/v1
Container. No Docker engine runs here: the Dockerfile is parsed and checked statically.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from shipyard.cli.serve import serve
from shipyard.testing import identity_model, running_server, write_model
from tests.deploy.kserve_schema import CLUSTER_SERVING_RUNTIME, INFERENCE_SERVICE

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
#: The Kubernetes version the manifests are written for (kubernetes-validate has its schema).
K8S_VERSION = "1.35"
_SERVE_FLAGS = {opt for param in serve.params for opt in getattr(param, "opts", [])}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _all(folder: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.name}#{i}", doc)
        for path in sorted((DEPLOY / folder).glob("*.yaml"))
        for i, doc in enumerate(_documents(path))
    ]


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]
    if doc["kind"] == "Deployment":
        return list(spec["template"]["spec"]["containers"])
    return list(spec.get("containers", []))


def _flags(args: list[str]) -> dict[str, str]:
    """``--flag value`` pairs of a ``shipyard serve`` argument list (after REPOSITORY)."""
    rest = args[1:]
    return dict(zip(rest[::2], rest[1::2], strict=True))


def _probe_paths(container: dict[str, Any]) -> list[str]:
    return [
        probe["httpGet"]["path"]
        for key in ("startupProbe", "livenessProbe", "readinessProbe")
        if "httpGet" in (probe := container.get(key, {}))
    ]


@pytest.mark.parametrize(("name", "doc"), _all("k8s"))
def test_kubernetes_manifests_match_the_openapi_schema(name: str, doc: dict[str, Any]) -> None:
    """Each plain manifest is valid against the Kubernetes OpenAPI schema (strict)."""
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kserve_manifests_match_their_schemas() -> None:
    """The ClusterServingRuntime and InferenceService match KServe's API; containers are
    valid core/v1 Containers."""
    runtime = _documents(DEPLOY / "kserve" / "cluster-serving-runtime.yaml")[0]
    service = _documents(DEPLOY / "kserve" / "inference-service.yaml")[0]
    jsonschema.validate(runtime, CLUSTER_SERVING_RUNTIME)
    jsonschema.validate(service, INFERENCE_SERVICE)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "check"},
        "spec": {"containers": runtime["spec"]["containers"]},
    }
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert formats == {"onnx", "tflite"}
    assert "v2" in runtime["spec"]["protocolVersions"]
    assert service["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]
    assert service["spec"]["predictor"]["model"]["modelFormat"]["name"] in formats


def test_a_misspelt_field_is_caught() -> None:
    """The validation can fail: a typo in a Deployment and in the runtime is refused."""
    deployment = _documents(DEPLOY / "k8s" / "deployment.yaml")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    runtime = _documents(DEPLOY / "kserve" / "cluster-serving-runtime.yaml")[0]
    runtime["spec"]["supportedModelFormat"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(runtime, CLUSTER_SERVING_RUNTIME)


def _server_containers() -> list[tuple[str, dict[str, Any]]]:
    found = [(n, c) for n, d in _all("k8s") if d["kind"] == "Deployment" for c in _containers(d)]
    runtime = _documents(DEPLOY / "kserve" / "cluster-serving-runtime.yaml")[0]
    return found + [("cluster-serving-runtime.yaml", c) for c in _containers(runtime)]


@pytest.mark.parametrize(("name", "container"), _server_containers())
def test_container_flags_and_ports_exist_in_the_cli(name: str, container: dict[str, Any]) -> None:
    """Every flag in a container's args is a `shipyard serve` option, and the ports it
    declares are the ones those flags set."""
    flags = _flags(container["args"])
    assert set(flags) <= _SERVE_FLAGS, set(flags) - _SERVE_FLAGS
    declared = {p["containerPort"] for p in container["ports"]}
    assert int(flags["--http-port"]) in declared
    named = {p.get("name") for p in container["ports"]}
    for key in ("startupProbe", "livenessProbe", "readinessProbe"):
        port = container.get(key, {}).get("httpGet", {}).get("port")
        if port is not None:
            assert port in named | {int(flags["--http-port"])}, (key, port)


def test_dockerfile_is_slim_non_root_and_uses_real_flags() -> None:
    """The Dockerfile parses, runs as a non-root user, checks /v2/health/ready, exposes the
    ports its CMD sets, and every CMD flag is a `shipyard serve` option."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = re.sub(r"\\\n", " ", text).splitlines()
    instructions = [line.strip().split(None, 1) for line in lines if line.strip()]
    instructions = [i for i in instructions if not i[0].startswith("#")]
    known = {"FROM", "WORKDIR", "COPY", "RUN", "ENV", "USER", "EXPOSE", "HEALTHCHECK"}
    known |= {"ENTRYPOINT", "CMD", "ARG", "LABEL"}
    assert {i[0] for i in instructions} <= known
    by_name: dict[str, list[str]] = {}
    for instruction in instructions:
        by_name.setdefault(instruction[0], []).append(instruction[1])
    assert all("-slim" in image for image in by_name["FROM"])
    assert by_name["USER"][-1] not in ("0", "root")
    assert "/v2/health/ready" in by_name["HEALTHCHECK"][-1]
    entrypoint = json.loads(by_name["ENTRYPOINT"][-1])
    cmd = json.loads(by_name["CMD"][-1])
    assert entrypoint == ["shipyard", "serve"]
    flags = _flags(cmd)
    assert set(flags) <= _SERVE_FLAGS
    exposed = {int(p) for p in by_name["EXPOSE"][-1].split()}
    assert exposed == {int(flags["--http-port"]), int(flags["--grpc-port"])}
    assert f":{flags['--http-port']}/" in by_name["HEALTHCHECK"][-1]


def test_probe_paths_and_hpa_metric_exist_on_a_real_server(tmp_path: Path) -> None:
    """Every probe path answers 200 on a real server, and the HPA's custom metric is one
    that /metrics exports."""
    paths = {path for _name, c in _server_containers() for path in _probe_paths(c)}
    paths.add("/v2/health/ready")  # the Dockerfile's HEALTHCHECK
    hpa = next(d for _n, d in _all("k8s") if d["kind"] == "HorizontalPodAutoscaler")
    metrics = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    write_model(tmp_path, "m", identity_model())
    with running_server(tmp_path, grpc=False) as running:
        for path in sorted(paths):
            assert httpx.get(f"{running.url}{path}").status_code == 200, path
        exported = httpx.get(f"{running.url}/metrics").text
    for metric in metrics:
        assert re.search(rf"^{metric}\{{", exported, re.MULTILINE), metric
