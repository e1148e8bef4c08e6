"""The accuracy guard compares what clients get: outputs after the model's ``[[postprocess]]``.

Each test writes a model whose version 2 differs from version 1 in a way the post-processing
hides (a scale, a logit shift, noise at padding positions) or does not hide (other weights).
Version 2's ``report.json`` names version 1 as its unoptimized baseline, so optimizing version 2
(graph optimization only) guards it against version 1, through ``shipyard optimize`` and through
the tuner's variant maker, which share the guard.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shipyard.optimize import optimize
from shipyard.repository.layout import find_model
from shipyard.testing import write_model
from shipyard.tuning.variants import VariantMaker
from tests.optimize.conftest import FAST

WEIGHTS = np.random.default_rng(3).normal(size=(4, 4)).astype(np.float32)
L2 = """\
[[postprocess]]
output = "y"
steps = [{op = "l2_normalize"}]
"""
POOL = """\
[[postprocess]]
output = "y"
steps = [{op = "mean_pool", mask = "attention_mask"}, {op = "l2_normalize"}]
"""
TOPK = """\
[[postprocess]]
output = "y"
labels = "labels.txt"
steps = [{op = "softmax"}, {op = "topk", k = 2}]
"""


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _linear(weights: np.ndarray, scale: float = 1.0, shift: float = 0.0) -> onnx.ModelProto:
    """``y = (x @ weights) * scale + shift``: x and y FP32 [batch, 4]."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Mul", ["xw", "scale"], ["scaled"]),
            helper.make_node("Add", ["scaled", "shift"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[
            numpy_helper.from_array(weights, "w"),
            numpy_helper.from_array(np.array(scale, np.float32), "scale"),
            numpy_helper.from_array(np.array(shift, np.float32), "shift"),
        ],
    )
    return _model(graph)


def _tokens(padding_noise: float) -> onnx.ModelProto:
    """``y = x + (1 - attention_mask) * padding_noise``: token vectors, changed at padding."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
            helper.make_node("Sub", ["one", "maskf"], ["pad"]),
            helper.make_node("Unsqueeze", ["pad", "last"], ["pad3"]),
            helper.make_node("Mul", ["pad3", "noise"], ["noisy"]),
            helper.make_node("Add", ["x", "noisy"], ["y"]),
        ],
        "tokens",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "tokens", 4]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "tokens", 4])],
        initializer=[
            numpy_helper.from_array(np.array(1.0, np.float32), "one"),
            numpy_helper.from_array(np.array([-1], np.int64), "last"),
            numpy_helper.from_array(np.array([1, -2, 3, -4], np.float32) * padding_noise, "noise"),
        ],
    )
    return _model(graph)


def _repo(
    tmp_path: Path, baseline: onnx.ModelProto, candidate: onnx.ModelProto, config: str
) -> Path:
    """``m`` v1 = ``baseline``, v2 = ``candidate`` whose report names v1 as its baseline."""
    repo = tmp_path / "repo"
    write_model(repo, "m", baseline, version=1, config=config)
    write_model(repo, "m", candidate, version=2)
    report = {"optimization": {"source_version": 1, "baseline_version": 1}}
    (repo / "m" / "2" / "report.json").write_text(json.dumps(report), encoding="utf-8")
    return repo


def _linear_data(tmp_path: Path) -> Path:
    path = tmp_path / "validation.npz"
    np.savez(path, x=np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32))
    return path


def _token_data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 7, size=24)
    mask = (np.arange(6)[None, :] < lengths[:, None]).astype(np.int64)
    path = tmp_path / "tokens.npz"
    np.savez(path, x=rng.normal(size=(24, 6, 4)).astype(np.float32), attention_mask=mask)
    return path


def test_l2_normalize_makes_a_scale_change_pass(tmp_path: Path) -> None:
    """Outputs 3x larger but equal after l2_normalize pass max-abs; the raw figures are kept."""
    repo = _repo(tmp_path, _linear(WEIGHTS), _linear(WEIGHTS, scale=3.0), L2)
    result = optimize(
        repo,
        "m",
        version=2,
        validation=_linear_data(tmp_path),
        metric="max-abs",
        max_drop=1e-4,
        force=True,
        benchmark=FAST,
    )
    accuracy = result.report["accuracy"]
    assert accuracy["compared"] == "after post-processing: l2_normalize"
    assert accuracy["postprocess"] == {"y": ["l2_normalize"]}
    assert accuracy["passed"]
    assert accuracy["max_abs_error"] < 1e-5
    assert accuracy["raw_outputs"]["max_abs_error"] > 0.5
    assert accuracy["raw_outputs"]["drop"] == accuracy["raw_outputs"]["max_abs_error"]
    assert result.published
    assert result.version == 3


def test_postprocessed_outputs_that_disagree_are_rejected(tmp_path: Path) -> None:
    """Other weights still differ after l2_normalize: rejected on cosine, the default here."""
    repo = _repo(tmp_path, _linear(WEIGHTS), _linear(WEIGHTS[:, ::-1].copy()), L2)
    result = optimize(
        repo, "m", version=2, validation=_linear_data(tmp_path), force=True, benchmark=FAST
    )
    accuracy = result.report["accuracy"]
    assert accuracy["metric"] == "cosine"  # an embedding, not top-1 classes
    assert accuracy["compared"] == "after post-processing: l2_normalize"
    assert not accuracy["passed"]
    assert accuracy["cosine"] < 0.9
    assert not result.published
    assert find_model(repo, "m").versions() == [1, 2]


def test_without_postprocess_the_raw_outputs_are_compared(tmp_path: Path) -> None:
    """The same scale change without [[postprocess]] is judged on raw outputs, as before."""
    repo = _repo(tmp_path, _linear(WEIGHTS), _linear(WEIGHTS, scale=3.0), "")
    result = optimize(
        repo,
        "m",
        version=2,
        validation=_linear_data(tmp_path),
        metric="max-abs",
        max_drop=1e-4,
        force=True,
        benchmark=FAST,
    )
    accuracy = result.report["accuracy"]
    assert "compared" not in accuracy
    assert "raw_outputs" not in accuracy
    assert accuracy["max_abs_error"] > 0.5
    assert not accuracy["passed"]
    assert not result.published


def test_mean_pool_takes_its_mask_from_the_validation_data(tmp_path: Path) -> None:
    """Noise at padding positions is invisible after mean_pool: the tuner's variant passes."""
    repo = _repo(tmp_path, _tokens(0.0), _tokens(5.0), POOL)
    model_dir = repo / "m"
    maker = VariantMaker(
        model_dir / "2" / "model.onnx",
        model_dir / "1" / "model.onnx",
        find_model(repo, "m").config(),
        tmp_path / "work",
        validation=_token_data(tmp_path),
        metric="cosine",
        max_drop=1e-6,
        model_dir=model_dir,
    )
    try:
        variant = maker.make("optimized", ("CPUExecutionProvider",))
    finally:
        maker.close()
    assert variant.status == "ready", variant.reason
    accuracy = variant.accuracy
    assert accuracy is not None
    assert accuracy["compared"] == "after post-processing: mean_pool, l2_normalize"
    assert accuracy["cosine"] > 1 - 1e-6
    assert accuracy["raw_outputs"]["cosine"] < 0.99


def test_tuner_variant_without_postprocess_is_rejected(tmp_path: Path) -> None:
    """The tuner's guard without [[postprocess]] compares raw token vectors and rejects."""
    repo = _repo(tmp_path, _tokens(0.0), _tokens(5.0), "")
    model_dir = repo / "m"
    maker = VariantMaker(
        model_dir / "2" / "model.onnx",
        model_dir / "1" / "model.onnx",
        find_model(repo, "m").config(),
        tmp_path / "work",
        validation=_token_data(tmp_path),
        metric="cosine",
        max_drop=1e-6,
        model_dir=model_dir,
    )
    try:
        variant = maker.make("optimized", ("CPUExecutionProvider",))
    finally:
        maker.close()
    assert variant.status == "rejected"
    assert variant.accuracy is not None
    assert "compared" not in variant.accuracy


def test_topk_is_compared_on_the_scores_it_ranks(tmp_path: Path) -> None:
    """Logits shifted by 5 give the same softmax: top-k labels are judged on those scores."""
    repo = _repo(tmp_path, _linear(WEIGHTS), _linear(WEIGHTS, shift=5.0), TOPK)
    (repo / "m" / "labels.txt").write_text("a\nb\nc\nd\n", encoding="utf-8")
    result = optimize(
        repo,
        "m",
        version=2,
        validation=_linear_data(tmp_path),
        metric="max-abs",
        max_drop=1e-5,
        force=True,
        benchmark=FAST,
    )
    accuracy = result.report["accuracy"]
    assert accuracy["compared"] == (
        "after post-processing: softmax, topk (compared on the scores before topk)"
    )
    assert accuracy["passed"]
    assert accuracy["max_abs_error"] < 1e-5
    assert accuracy["raw_outputs"]["max_abs_error"] > 4.9
    assert result.published
