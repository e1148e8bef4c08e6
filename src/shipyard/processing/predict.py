"""The ``/predict`` convenience route's formats: request bodies → instances, outputs → JSON.

Bodies: a raw image (``image/*``), text (``text/plain``, one instance per non-blank line), raw
bytes (``application/octet-stream``: one instance), or JSON ``{"instances": [...]}`` whose
items are strings (text) or base64 strings / ``{"b64": "..."}`` (images).
Answers: ``{"predictions": [...]}``, one entry per instance: ``{"label", "score", "top_k"}``
for classifiers, ``{"embedding": [...]}`` for embedding models, else the outputs by name.

The HTTP transport decodes a body with :func:`decode_instances` for the input that
:meth:`InferenceService.predict_input` names; the service runs the instances and answers a
:class:`~shipyard.types.Prediction` whose entries :func:`predictions` makes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import orjson

from shipyard.errors import InvalidInputError
from shipyard.processing.outputs import top_k
from shipyard.processing.pipeline import Pipeline
from shipyard.types import Array, JSONObject, JSONValue, TensorSpec

__all__ = ["InputKind", "PredictInput", "decode_instances", "predictions"]

#: What a model's one ``/predict`` input takes: images, text, or bytes as they are.
InputKind = Literal["image", "text", "bytes"]


@dataclass(frozen=True, slots=True)
class PredictInput:
    """The one BYTES input a ``/predict`` call feeds, and what its instances must be."""

    model_name: str
    spec: TensorSpec
    kind: InputKind


def decode_instances(body: bytes, content_type: str, kind: InputKind, where: str) -> list[bytes]:
    """The instances a ``/predict`` body holds, each as the bytes of one BYTES element."""
    media = content_type.split(";")[0].strip().lower()
    if not body:
        raise InvalidInputError(f"{where}: the request body is empty")
    if media.startswith("image/"):
        if kind == "text":
            raise InvalidInputError(f"{where}: the model takes text; send text/plain or JSON")
        return [body]
    if media == "text/plain":
        if kind == "image":
            raise InvalidInputError(
                f"{where}: the model takes images; send image/png, image/jpeg or JSON"
            )
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError(f"{where}: text/plain body must be UTF-8") from None
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            raise InvalidInputError(f"{where}: text is empty")
        return [line.encode("utf-8") for line in lines]
    if media == "application/json":
        return _json_instances(body, kind, where)
    if media in ("", "application/octet-stream"):
        return [body]
    raise InvalidInputError(
        f"{where}: unsupported Content-Type {media!r}; send image/*, text/plain, "
        "application/json or application/octet-stream"
    )


def _json_instances(body: bytes, kind: InputKind, where: str) -> list[bytes]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"{where}: body is not valid JSON: {exc}") from None
    instances = value.get("instances") if isinstance(value, dict) else None
    if not isinstance(instances, list) or not instances:
        raise InvalidInputError(f'{where}: JSON body must be {{"instances": [...]}}, non-empty')
    out = []
    for i, item in enumerate(instances):
        encoded = item.get("b64") if isinstance(item, dict) and len(item) == 1 else None
        if kind != "text" and (isinstance(encoded, str) or isinstance(item, str)):
            try:
                out.append(base64.b64decode(encoded or item, validate=True))
            except (binascii.Error, ValueError):
                raise InvalidInputError(f"{where}: instances[{i}] is not valid base64") from None
        elif kind == "text" and isinstance(item, str):
            out.append(item.encode("utf-8"))
        else:
            expected = "a string" if kind == "text" else 'a base64 string or {"b64": "..."}'
            raise InvalidInputError(f"{where}: instances[{i}] must be {expected}")
    return out


def predictions(
    pipeline: Pipeline | None, outputs: Mapping[str, Array], k: int | None
) -> list[JSONObject]:
    """One JSON entry per instance, shaped by what the model's post-processing makes."""
    kind = pipeline.kind if pipeline is not None else "raw"
    if pipeline is not None and kind == "classifier":
        return _classes(pipeline, outputs, k)
    if pipeline is not None and kind == "embedding":
        chain = next(c for c in pipeline.post.values() if c.kind == "embedding")
        return [{"embedding": row.tolist()} for row in outputs[chain.spec.name]]
    rows = len(next(iter(outputs.values())))
    return [{name: _plain(array[r]) for name, array in outputs.items()} for r in range(rows)]


def _classes(pipeline: Pipeline, outputs: Mapping[str, Array], k: int | None) -> list[JSONObject]:
    chain = next(c for c in pipeline.post.values() if c.kind == "classifier")
    entries: list[list[JSONObject]] = []
    if chain.topk is not None:
        most, labels_name, scores_name = chain.topk
        count = min(k or most, most)
        for labels, scores in zip(outputs[labels_name], outputs[scores_name], strict=True):
            entries.append(
                [
                    {"label": bytes(labels[i]).decode("utf-8"), "score": float(scores[i])}
                    for i in range(count)
                ]
            )
    elif chain.keeps_classes:
        indices, scores = top_k(outputs[chain.spec.name], k or 1)
        for row_indices, row_scores in zip(indices, scores, strict=True):
            entries.append(
                [
                    {"label": _name(chain.labels, int(i)), "score": float(s)}
                    for i, s in zip(row_indices, row_scores, strict=True)
                ]
            )
    else:  # argmax: a class, no score
        return [
            {"label": _name(chain.labels, int(i))} for i in outputs[chain.spec.name].reshape(-1)
        ]
    return [{**top[0], "top_k": list(top)} for top in entries]


def _name(labels: tuple[str, ...] | None, index: int) -> str:
    if labels is None or index >= len(labels):
        return str(index)
    return labels[index]


def _plain(value: object) -> JSONValue:
    """A NumPy value (array, scalar or bytes) as JSON: arrays as nested lists, bytes as text."""
    if isinstance(value, np.ndarray):
        items: list[JSONValue] = value.tolist()
        if value.dtype == object:
            return [_plain(v) for v in items]
        return items
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        scalar: JSONValue = value.item()
        return scalar
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"{type(value).__name__} has no JSON form")
