"""The pipeline's client-facing signature and the /predict body and answer formats."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shipyard.config import parse_model_config
from shipyard.errors import ConfigError, InvalidInputError
from shipyard.processing import Pipeline, build_pipeline
from shipyard.processing.predict import decode_instances, predictions
from shipyard.types import DataType, TensorSpec

INPUTS = (TensorSpec("input", DataType.FP32, (-1, 1, 28, 28)),)
OUTPUTS = (
    TensorSpec("logits", DataType.FP32, (-1, 3)),
    TensorSpec("other", DataType.FP32, (-1, 2)),
)
IMAGE = {
    "input": "image",
    "target": "input",
    "steps": [
        {"op": "decode_image", "mode": "L"},
        {"op": "resize", "size": [28, 28]},
        {"op": "layout", "order": "NCHW"},
    ],
}


def pipeline(tmp_path: Path, **table: Any) -> Pipeline | None:
    """build_pipeline for a model.toml ``table`` over INPUTS/OUTPUTS."""
    config = parse_model_config("m", table)
    return build_pipeline(config, tmp_path, INPUTS, OUTPUTS)


def test_no_processing_means_no_pipeline(tmp_path: Path) -> None:
    """A model without [[preprocess]]/[[postprocess]] has no pipeline (no overhead)."""
    assert pipeline(tmp_path) is None


def test_signature_replaces_processed_tensors(tmp_path: Path) -> None:
    """The image input replaces the model input; topk's outputs replace the model output."""
    built = pipeline(
        tmp_path,
        preprocess=[IMAGE],
        postprocess=[{"output": "logits", "steps": [{"op": "topk", "k": 2}]}],
    )
    assert built is not None
    assert built.inputs == (TensorSpec("image", DataType.BYTES, (-1,)),)
    assert [s.name for s in built.outputs] == ["labels", "scores", "other"]
    assert built.model_outputs(["scores", "labels"]) == ["logits"]
    assert built.kind == "classifier"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"preprocess": [{**IMAGE, "target": "nope"}]}, "target 'nope' is not a model input"),
        (
            {"preprocess": [{k: v for k, v in IMAGE.items() if k != "target"}]},
            "needs target",
        ),
        ({"preprocess": [IMAGE, {**IMAGE, "input": "b"}]}, "already fed"),
        ({"preprocess": [{**IMAGE, "steps": []}]}, "steps is empty"),
        ({"preprocess": [{**IMAGE, "steps": [{"op": "blur"}]}]}, "unknown step 'blur'"),
        ({"preprocess": [{**IMAGE, "steps": [{"size": 1}]}]}, "needs an 'op' string"),
        ({"postprocess": [{"output": "nope"}]}, "the model has no output 'nope'"),
        (
            {"postprocess": [{"output": "logits", "steps": [{"op": "topk", "k": 1}]}] * 2},
            "processed twice",
        ),
        (
            {
                "postprocess": [
                    {
                        "output": "logits",
                        "steps": [{"op": "topk", "k": 1, "labels_output": "other"}],
                    }
                ]
            },
            "two outputs are named 'other'",
        ),
    ],
)
def test_config_mistakes(tmp_path: Path, table: dict[str, Any], message: str) -> None:
    """Each mistake in the processing tables fails with a ConfigError that names it."""
    with pytest.raises(ConfigError, match=message):
        pipeline(tmp_path, **table)


def test_unknown_key_in_an_entry(tmp_path: Path) -> None:
    """A misspelt key in a [[preprocess]] entry is refused when model.toml is parsed."""
    with pytest.raises(ConfigError, match=r"preprocess\[0\]: unknown key\(s\) targte"):
        parse_model_config("m", {"preprocess": [{**IMAGE, "targte": "input"}]})


@pytest.mark.parametrize(
    ("content_type", "kind", "body", "expected"),
    [
        ("image/png", "image", b"PNG", [b"PNG"]),
        ("text/plain; charset=utf-8", "text", b"one\n\ntwo\n", [b"one", b"two"]),
        ("application/json", "text", b'{"instances": ["a", "b"]}', [b"a", b"b"]),
        (
            "application/json",
            "image",
            b'{"instances": [{"b64": "'
            + base64.b64encode(b"img")
            + b'"}, "'
            + base64.b64encode(b"x")
            + b'"]}',
            [b"img", b"x"],
        ),
        ("application/octet-stream", "image", b"raw", [b"raw"]),
        ("", "text", b"raw", [b"raw"]),
    ],
)
def test_decode_instances(content_type: str, kind: Any, body: bytes, expected: list[bytes]) -> None:
    """Each body kind becomes the documented instances."""
    assert decode_instances(body, content_type, kind, "m") == expected


@pytest.mark.parametrize(
    ("content_type", "kind", "body", "message"),
    [
        ("image/png", "image", b"", "body is empty"),
        ("text/plain", "text", b"\n \n", "text is empty"),
        ("text/plain", "image", b"hello", "takes images"),
        ("image/jpeg", "text", b"x", "takes text"),
        ("application/json", "text", b'{"instances": [1]}', "must be a string"),
        ("application/json", "image", b'{"instances": ["@@"]}', "not valid base64"),
        ("application/json", "text", b'{"inputs": []}', "instances"),
        ("application/json", "text", b"{", "not valid JSON"),
        ("application/xml", "text", b"<a/>", "unsupported Content-Type"),
    ],
)
def test_decode_instances_refuses(content_type: str, kind: Any, body: bytes, message: str) -> None:
    """Bad /predict bodies are refused with a clear 400."""
    with pytest.raises(InvalidInputError, match=message):
        decode_instances(body, content_type, kind, "m")


def test_predictions_for_a_classifier_with_labels(tmp_path: Path) -> None:
    """A classifier answers label, score and the top-k list per instance."""
    (tmp_path / "labels.txt").write_text("cat\ndog\nbird\n")
    built = pipeline(
        tmp_path, postprocess=[{"output": "logits", "labels": "labels.txt", "steps": []}]
    )
    assert built is not None
    probs = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]], np.float32)
    answer = predictions(built, {"logits": probs}, 2)
    assert [p["label"] for p in answer] == ["dog", "cat"]
    assert [t["label"] for t in answer[0]["top_k"]] == ["dog", "bird"]
    assert answer[0]["score"] == pytest.approx(0.7)


def test_predictions_raw_without_processing() -> None:
    """A model without post-processing answers its outputs by name."""
    answer = predictions(None, {"y": np.array([[1.0, 2.0]]), "s": np.array([b"a"], object)}, None)
    assert answer == [{"y": [1.0, 2.0], "s": "a"}]
