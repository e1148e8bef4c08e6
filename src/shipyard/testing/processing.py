"""Tiny models and inputs for processing tests and examples: images, a tokenizer, text models.

Pillow and ``tokenizers`` (the ``processing`` extra) are imported inside the helpers that need
them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from shipyard.types import Array

if TYPE_CHECKING:  # the "processing" extra, imported by the helper that needs it
    from tokenizers import Tokenizer

__all__ = [
    "digit_image",
    "embedding_model",
    "image_bytes",
    "mean_bucket_model",
    "train_tokenizer",
]


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def mean_bucket_model(classes: int = 10, size: int = 28, output: str = "logits") -> onnx.ModelProto:
    """A classifier whose answer is predictable: the bucket of the image's mean intensity.

    Input ``input`` FP32 [-1, 1, size, size] (values in 0..1); output ``output`` FP32
    [-1, classes] with logits ``-(mean * classes - (k + 0.5))**2``, so class ``k`` wins for a
    mean in ``[k / classes, (k + 1) / classes)``.
    """
    centers = np.arange(classes, dtype=np.float32) + np.float32(0.5)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1, 2, 3], keepdims=0),
            helper.make_node("Unsqueeze", ["mean", "axis1"], ["mean2"]),
            helper.make_node("Mul", ["mean2", "classes"], ["scaled"]),
            helper.make_node("Sub", ["scaled", "centers"], ["diff"]),
            helper.make_node("Mul", ["diff", "diff"], ["square"]),
            helper.make_node("Neg", ["square"], [output]),
        ],
        "mean_bucket",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, size, size])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", classes])],
        initializer=[
            numpy_helper.from_array(np.array([1], np.int64), "axis1"),
            numpy_helper.from_array(np.array(classes, np.float32), "classes"),
            numpy_helper.from_array(centers, "centers"),
        ],
    )
    return _model(graph)


def embedding_model(
    vocab_size: int, dims: int = 8, seed: int = 0, token_type_ids: bool = False
) -> tuple[onnx.ModelProto, npt.NDArray[np.float32]]:
    """A text model: ``last_hidden_state = table[input_ids] * attention_mask``.

    Inputs ``input_ids`` and ``attention_mask`` (and ``token_type_ids``, unused but taken)
    INT64 [-1, -1]; output ``last_hidden_state`` FP32 [-1, -1, dims]. Returns the model and
    its embedding table, so a test can compute the expected pooled vector.
    """
    table = np.random.default_rng(seed).normal(size=(vocab_size, dims)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["embedded"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "last"], ["mask3"]),
        helper.make_node("Mul", ["embedded", "mask3"], ["last_hidden_state"]),
    ]
    names = ["input_ids", "attention_mask"]
    if token_type_ids:
        names.append("token_type_ids")
        nodes.append(helper.make_node("Identity", ["token_type_ids"], ["types_seen"]))
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "tokens"]) for n in names
    ]
    graph = helper.make_graph(
        nodes,
        "token_embeddings",
        inputs,
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", "tokens", dims]
            )
        ],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([-1], np.int64), "last"),
        ],
    )
    return _model(graph), table


def digit_image(mean: float, size: int = 28) -> npt.NDArray[np.uint8]:
    """A grayscale ``size`` x ``size`` image whose mean intensity is ``mean`` (0..1)."""
    return np.full((size, size), round(mean * 255), dtype=np.uint8)


def image_bytes(pixels: Array, fmt: str = "PNG") -> bytes:
    """Encode a uint8 array (H x W or H x W x C) as an image file with Pillow."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def train_tokenizer(path: Path, sentences: Sequence[str]) -> Tokenizer:
    """Train a small lower-casing WordLevel tokenizer on ``sentences``; save it as ``path``.

    Special tokens: ``[PAD]`` (0), ``[UNK]`` (1), ``[CLS]`` (2), ``[SEP]`` (3); every text is
    wrapped as ``[CLS] ... [SEP]``. Returns the trained ``tokenizers.Tokenizer``.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tokenizer.train_from_iterator(sentences, trainers.WordLevelTrainer(special_tokens=special))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer.save(str(path))
    return tokenizer
