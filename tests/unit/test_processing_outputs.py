"""Output post-processing steps, labels files, and Triton's classification strings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shipyard.config import parse_model_config
from shipyard.errors import ConfigError, InvalidInputError
from shipyard.processing.outputs import OutputChain, build_output_chain, classify, top_k
from shipyard.types import DataType, TensorSpec

LOGITS = TensorSpec("logits", DataType.FP32, (-1, 4))
HIDDEN = TensorSpec("hidden", DataType.FP32, (-1, -1, 3))
MASK = {"attention_mask": TensorSpec("attention_mask", DataType.INT64, (-1, -1))}


def chain(
    tmp_path: Path, *steps: dict[str, Any], source: TensorSpec = LOGITS, labels: str | None = None
) -> OutputChain:
    """A checked [[postprocess]] chain over ``source``."""
    table: dict[str, Any] = {"output": source.name, "steps": list(steps)}
    if labels is not None:
        table["labels"] = labels
    config = parse_model_config("m", {"postprocess": [table]})
    return build_output_chain(config.postprocess[0], "postprocess[0]", tmp_path, source, MASK)


def test_softmax(tmp_path: Path) -> None:
    """softmax makes each row a probability distribution that keeps the order."""
    out = chain(tmp_path, {"op": "softmax"}).run(np.array([[1.0, 2.0, 3.0, 0.0]], np.float32), {})
    assert out["logits"].sum() == pytest.approx(1.0)
    assert out["logits"].argmax() == 2


def test_argmax(tmp_path: Path) -> None:
    """argmax gives INT64 class indices, one per row."""
    built = chain(tmp_path, {"op": "argmax"})
    assert built.spec == TensorSpec("logits", DataType.INT64, (-1,))
    out = built.run(np.array([[0, 5, 1, 2], [9, 0, 0, 0]], np.float32), {})
    assert out["logits"].tolist() == [1, 0]


def test_topk_with_labels(tmp_path: Path) -> None:
    """topk gives labels (BYTES) and scores (FP32) outputs, best first."""
    (tmp_path / "labels.txt").write_text("zero\none\ntwo\nthree\n\n")
    built = chain(tmp_path, {"op": "softmax"}, {"op": "topk", "k": 2}, labels="labels.txt")
    assert [s.name for s in built.client_specs()] == ["labels", "scores"]
    assert built.client_specs()[0] == TensorSpec("labels", DataType.BYTES, (-1, 2))
    out = built.run(np.array([[0.0, 3.0, 1.0, 2.0]], np.float32), {})
    assert out["labels"].tolist() == [[b"one", b"three"]]
    assert out["scores"][0, 0] > out["scores"][0, 1]


def test_topk_without_labels_uses_indices(tmp_path: Path) -> None:
    """Without a labels file, topk's labels are the class indices as text."""
    out = chain(tmp_path, {"op": "topk", "k": 1, "labels_output": "cls"}).run(
        np.array([[0.0, 0.0, 7.0, 1.0]], np.float32), {}
    )
    assert out["cls"].tolist() == [[b"2"]]


def test_mean_pool_and_l2_normalize(tmp_path: Path) -> None:
    """mean_pool averages unmasked tokens; l2_normalize makes unit vectors."""
    built = chain(tmp_path, {"op": "mean_pool"}, {"op": "l2_normalize"}, source=HIDDEN)
    assert built.spec.shape == (-1, 3)
    hidden = np.array([[[3, 0, 0], [1, 0, 0], [100, 100, 100]]], np.float32)
    out = built.run(hidden, {"attention_mask": np.array([[1, 1, 0]])})["hidden"]
    assert out.tolist() == [[1.0, 0.0, 0.0]]


def test_labels_file_missing(tmp_path: Path) -> None:
    """A labels file that does not exist fails the load, naming it."""
    with pytest.raises(ConfigError, match=r"labels file 'labels\.txt' not found"):
        chain(tmp_path, labels="labels.txt")


def test_label_count_must_match_the_output(tmp_path: Path) -> None:
    """A labels file with a different count than the output's classes fails the load."""
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    with pytest.raises(ConfigError, match="has 3 labels but output 'logits' \\[-1, 4\\] has 4"):
        chain(tmp_path, labels="labels.txt")


@pytest.mark.parametrize(
    ("steps", "source", "message"),
    [
        (({"op": "sigmoid"},), LOGITS, "unknown step 'sigmoid'"),
        (({"op": "resize", "size": [1, 1]},), LOGITS, "belongs in \\[\\[preprocess\\]\\]"),
        (({"op": "topk", "k": 5},), LOGITS, "k = 5 is more than the 4 classes"),
        (({"op": "topk"},), LOGITS, "needs k"),
        (({"op": "argmax"}, {"op": "softmax"}), LOGITS, "nothing may follow argmax"),
        (({"op": "topk", "k": 1}, {"op": "softmax"}), LOGITS, "nothing may follow topk"),
        (({"op": "mean_pool"},), LOGITS, "needs a \\[batch, tokens, dims\\]"),
        (({"op": "mean_pool", "mask": "m"},), HIDDEN, "mask 'm' is not a model input"),
        (({"op": "softmax", "axis": 0},), LOGITS, "unknown option"),
        (
            ({"op": "topk", "k": 1, "labels_output": "x", "scores_output": "x"},),
            LOGITS,
            "must differ",
        ),
    ],
)
def test_config_mistakes(
    tmp_path: Path, steps: tuple[dict[str, Any], ...], source: TensorSpec, message: str
) -> None:
    """Each mistake in a postprocess entry fails with a ConfigError that names it."""
    with pytest.raises(ConfigError, match=message):
        chain(tmp_path, *steps, source=source)


def test_top_k_orders_best_first() -> None:
    """top_k returns indices and values of the largest entries, largest first."""
    indices, values = top_k(np.array([[1, 5, 10, 4]]), 3)
    assert indices.tolist() == [[2, 1, 3]]
    assert values.tolist() == [[10, 5, 4]]


def test_classify_uses_tritons_format() -> None:
    """Floats print as %f, then the index, then the label when there are labels."""
    out = classify("y", np.array([[0.1, 0.7, 0.2]], np.float32), 2, ("a", "b", "c"), True)
    assert out.tolist() == [[b"0.700000:1:b", b"0.200000:2:c"]]
    ints = classify("y", np.array([1, 5, 10, 4], np.int32), 2, None, False)
    assert ints.tolist() == [b"10:2", b"5:1"]


def test_classify_clamps_the_count_to_the_classes() -> None:
    """Asking for more classes than there are returns them all."""
    assert classify("y", np.zeros((2, 3), np.float32), 10, None, True).shape == (2, 3)


@pytest.mark.parametrize("count", [0, -2, "2", True, 2.0])
def test_classify_refuses_bad_counts(count: Any) -> None:
    """The classification count must be an integer >= 1."""
    with pytest.raises(InvalidInputError, match="must be an integer >= 1"):
        classify("y", np.zeros((1, 3), np.float32), count, None, True)


def test_classify_refuses_strings() -> None:
    """Classification of a BYTES output is refused."""
    with pytest.raises(InvalidInputError, match="numeric output"):
        classify("y", np.array([b"a"], dtype=object), 1, None, False)
