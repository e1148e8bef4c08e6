"""Write the recommender into a model repository, from the towers ``train.py`` learned.

Usage::

    python examples/recommender/build_repository.py DEST [--build examples/recommender/build]

``DEST/recommender/1/`` holds ``model.onnx`` (the scoring model: the user and item towers as
embedding tables and their dot product, built with ``onnx.helper``), ``catalog.npz`` (ids,
titles, popularity, each user's seen movies) and ``recommend.py`` (the Python steps);
``DEST/recommender/model.toml`` wires the steps around the model. Serve it with
``shipyard serve DEST --allow-python-models``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent

MODEL_TOML = """\
# The recommender (examples/recommender): Python steps around an ONNX two-tower scorer.
# Every key is documented in docs/model-config.md and docs/python-models.md.
max_batch_size = 64

[dynamic_batching]
max_queue_delay_us = 0

[python]
workers = 1

[python.settings]
candidates = {candidates}
k = {k}

# user_id → the user's row and the candidate movies (recommend.py: Candidates)
[[preprocess]]
kind = "python"
function = "recommend:Candidates"
targets = ["user_index", "candidates"]
[[preprocess.inputs]]
name = "user_id"
datatype = "INT64"
shape = [-1, 1]

# the candidates' scores → the top k with ids and titles (recommend.py: TopK)
[[postprocess]]
kind = "python"
function = "recommend:TopK"
sources = ["scores", "candidates"]
[[postprocess.outputs]]
name = "item_ids"
datatype = "INT64"
shape = [-1, {k}]
[[postprocess.outputs]]
name = "scores"
datatype = "FP32"
shape = [-1, {k}]
[[postprocess.outputs]]
name = "titles"
datatype = "BYTES"
shape = [-1, {k}]
"""


def scoring_model(users: np.ndarray, items: np.ndarray, candidates: int) -> onnx.ModelProto:
    """``scores[b, c] = users[user_index[b]] · items[candidates[b, c]]``.

    Inputs ``user_index`` INT64 [-1, 1] and ``candidates`` INT64 [-1, candidates]; output
    ``scores`` FP32 [-1, candidates].
    """
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["user_table", "user_index"], ["user"]),  # [B, 1, d]
            helper.make_node("Gather", ["item_table", "candidates"], ["movies"]),  # [B, C, d]
            helper.make_node("Transpose", ["movies"], ["movies_t"], perm=[0, 2, 1]),
            helper.make_node("MatMul", ["user", "movies_t"], ["dots"]),  # [B, 1, C]
            helper.make_node("Squeeze", ["dots", "axis1"], ["scores"]),
        ],
        "two_tower_scorer",
        [
            helper.make_tensor_value_info("user_index", TensorProto.INT64, ["batch", 1]),
            helper.make_tensor_value_info("candidates", TensorProto.INT64, ["batch", candidates]),
        ],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", candidates])],
        initializer=[
            numpy_helper.from_array(users.astype(np.float32), "user_table"),
            numpy_helper.from_array(items.astype(np.float32), "item_table"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build(dest: Path, build_dir: Path, candidates: int = 300, k: int = 10) -> Path:
    """Write the repository's ``recommender`` model; return its version folder."""
    factors = np.load(build_dir / "factors.npz")
    version = dest / "recommender" / "1"
    version.mkdir(parents=True, exist_ok=True)
    model = scoring_model(factors["user_vectors"], factors["item_vectors"], candidates)
    (version / "model.onnx").write_bytes(model.SerializeToString())
    np.savez(
        version / "catalog.npz",
        user_ids=factors["user_ids"],
        item_ids=factors["item_ids"],
        titles=factors["titles"],
        popular=factors["popular"],
        seen_indptr=factors["seen_indptr"],
        seen_indices=factors["seen_indices"],
    )
    shutil.copyfile(HERE / "recommend.py", version / "recommend.py")
    text = MODEL_TOML.format(candidates=candidates, k=k)
    (dest / "recommender" / "model.toml").write_text(text, encoding="utf-8")
    return version


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and write the repository."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--build", type=Path, default=HERE / "build")
    args = parser.parse_args(argv)
    if not (args.build / "factors.npz").is_file():
        sys.exit(f"no {args.build / 'factors.npz'}: run examples/recommender/train.py first")
    version = build(args.dest, args.build)
    print(
        f"wrote {version.parent} (serve it with: shipyard serve {args.dest} --allow-python-models)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
