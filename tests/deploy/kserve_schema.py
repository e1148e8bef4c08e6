"""JSON schemas of the KServe resources that deploy/kserve/ uses, for offline validation.

No package ships KServe's CRD schemas in a form we can install beside Shipyard (the ``kserve``
SDK pins pandas < 3 and psutil < 6), so these are written from KServe's API types: the field
names and types of ``v1alpha1.ServingRuntimeSpec`` / ``ClusterServingRuntime`` and
``v1beta1.InferenceService`` / ``PredictorSpec`` / ``ModelSpec`` as the kserve 0.21 SDK and the
KServe API reference define them (Apache-2.0). Only what the examples may use is listed, and
``additionalProperties: false`` makes a misspelt field an error. Containers are checked
separately against the Kubernetes schema of ``core/v1 Container`` (kubernetes-validate).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CLUSTER_SERVING_RUNTIME", "INFERENCE_SERVICE"]

_METADATA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}
_PROTOCOL = {"enum": ["v1", "v2", "grpc-v1", "grpc-v2"]}
_CONTAINER = {"type": "object", "required": ["name"]}  # checked against core/v1 Container

CLUSTER_SERVING_RUNTIME: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "serving.kserve.io/v1alpha1"},
        "kind": {"const": "ClusterServingRuntime"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["containers", "supportedModelFormats"],
            "properties": {
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "disabled": {"type": "boolean"},
                "multiModel": {"type": "boolean"},
                "protocolVersions": {"type": "array", "items": _PROTOCOL},
                "supportedModelFormats": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "version": {"type": "string"},
                            "autoSelect": {"type": "boolean"},
                            "priority": {"type": "integer", "minimum": 1},
                        },
                        "additionalProperties": False,
                    },
                },
                "containers": {"type": "array", "minItems": 1, "items": _CONTAINER},
                "nodeSelector": {"type": "object"},
                "tolerations": {"type": "array"},
                "affinity": {"type": "object"},
                "volumes": {"type": "array"},
                "imagePullSecrets": {"type": "array"},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}

INFERENCE_SERVICE: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "serving.kserve.io/v1beta1"},
        "kind": {"const": "InferenceService"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["predictor"],
            "properties": {
                "predictor": {
                    "type": "object",
                    "properties": {
                        "minReplicas": {"type": "integer", "minimum": 0},
                        "maxReplicas": {"type": "integer", "minimum": 0},
                        "scaleMetric": {"enum": ["cpu", "memory", "concurrency", "rps"]},
                        "scaleTarget": {"type": "integer"},
                        "serviceAccountName": {"type": "string"},
                        "model": {
                            "type": "object",
                            "required": ["modelFormat"],
                            "properties": {
                                "modelFormat": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {
                                        "name": {"type": "string"},
                                        "version": {"type": "string"},
                                    },
                                    "additionalProperties": False,
                                },
                                "protocolVersion": _PROTOCOL,
                                "runtime": {"type": "string"},
                                "storageUri": {"type": "string"},
                                "resources": {"type": "object"},
                                "env": {"type": "array"},
                                "args": {"type": "array", "items": {"type": "string"}},
                            },
                            "additionalProperties": False,
                        },
                    },
                    "additionalProperties": False,
                }
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
