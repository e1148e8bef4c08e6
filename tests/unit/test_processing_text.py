"""Text pre-processing: the tokenize step with a tokenizer trained in the test (no downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shipyard.config import parse_model_config
from shipyard.errors import ConfigError, InvalidInputError
from shipyard.processing.text import TextChain, build_text_chain
from shipyard.testing.processing import train_tokenizer
from shipyard.types import DataType, TensorSpec

SENTENCES = ["the cat sat on the mat", "a dog ran fast", "the dog sat"]
INPUTS = {
    "input_ids": TensorSpec("input_ids", DataType.INT64, (-1, -1)),
    "attention_mask": TensorSpec("attention_mask", DataType.INT64, (-1, -1)),
}


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model folder holding tokenizer.json."""
    train_tokenizer(tmp_path / "tokenizer.json", SENTENCES)
    return tmp_path


def chain(
    model_dir: Path, inputs: dict[str, TensorSpec] | None = None, **options: Any
) -> TextChain:
    """A checked tokenize chain with ``options``."""
    step = {"op": "tokenize", **options}
    config = parse_model_config("m", {"preprocess": [{"input": "text", "steps": [step]}]})
    return build_text_chain(config.preprocess[0], "preprocess[0]", model_dir, inputs or INPUTS)


def texts(*values: str | bytes) -> np.ndarray[Any, Any]:
    """A BYTES batch."""
    out = np.empty(len(values), dtype=object)
    out[:] = [v.encode() if isinstance(v, str) else v for v in values]
    return out


def test_tokenize_pads_to_the_longest_with_a_mask(model_dir: Path) -> None:
    """Two texts become INT64 ids and masks, padded with [PAD] (0) to the longer one."""
    out = chain(model_dir).run(texts("the cat sat", "dog"))
    assert out["input_ids"].dtype == np.int64
    assert out["input_ids"].shape == (2, 5)
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert out["input_ids"][1, 3:].tolist() == [0, 0]
    assert out["input_ids"][0, 0] == 2  # [CLS]


def test_padding_max_length(model_dir: Path) -> None:
    """padding = "max_length" pads every text to max_length."""
    out = chain(model_dir, padding="max_length", max_length=8).run(texts("dog"))
    assert out["input_ids"].shape == (1, 8)


def test_truncation_cuts_long_texts(model_dir: Path) -> None:
    """truncation = true cuts a text to max_length tokens."""
    out = chain(model_dir, max_length=4).run(texts("the cat sat on the mat"))
    assert out["input_ids"].shape == (1, 4)


def test_reject_refuses_long_texts(model_dir: Path) -> None:
    """truncation = "reject" refuses a text over max_length with 400, naming the counts."""
    with pytest.raises(InvalidInputError, match="8 tokens, over the limit of 4"):
        chain(model_dir, max_length=4, truncation="reject").run(texts("the cat sat on the mat"))
    ok = chain(model_dir, max_length=4, truncation="reject").run(texts("a dog"))
    assert ok["input_ids"].shape == (1, 4)


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_empty_text_is_400(model_dir: Path, value: str) -> None:
    """Empty or blank text is refused."""
    with pytest.raises(InvalidInputError, match="element 0: text is empty"):
        chain(model_dir).run(texts(value))


def test_non_utf8_text_is_400(model_dir: Path) -> None:
    """Bytes that are not UTF-8 are refused."""
    with pytest.raises(InvalidInputError, match="UTF-8"):
        chain(model_dir).run(texts(b"\xff\xfe"))


def test_token_type_ids_are_fed_when_the_model_takes_them(model_dir: Path) -> None:
    """A model with token_type_ids gets them (INT32 here, converted)."""
    inputs = {**INPUTS, "token_type_ids": TensorSpec("token_type_ids", DataType.INT32, (-1, -1))}
    out = chain(model_dir, inputs).run(texts("dog"))
    assert out["token_type_ids"].dtype == np.int32
    assert set(out) == set(inputs)


def test_missing_tokenizer_file(tmp_path: Path) -> None:
    """A tokenizer file that is not there fails the load, naming it."""
    with pytest.raises(ConfigError, match=r"tokenizer 'tokenizer\.json' not found"):
        chain(tmp_path)


def test_invalid_tokenizer_file(tmp_path: Path) -> None:
    """A file that is no tokenizer.json fails the load."""
    (tmp_path / "tokenizer.json").write_text('{"not": "a tokenizer"}')
    with pytest.raises(ConfigError, match=r"not a valid tokenizer\.json"):
        chain(tmp_path)


def test_tokenizer_outside_the_model_folder_is_refused(model_dir: Path) -> None:
    """A tokenizer path may not leave the model folder."""
    with pytest.raises(ConfigError, match="inside the model folder"):
        chain(model_dir, tokenizer="../tokenizer.json")


@pytest.mark.parametrize(
    ("options", "inputs", "message"),
    [
        ({"truncation": False}, INPUTS, "truncation must be one of"),
        ({"padding": "left"}, INPUTS, "padding must be one of"),
        ({"max_length": 0}, INPUTS, "max_length must be an integer >= 1"),
        ({"lowercase": True}, INPUTS, "unknown option"),
        ({"pad_token": "[NOPE]"}, INPUTS, "not in the tokenizer's vocabulary"),
        ({}, {"ids": INPUTS["input_ids"]}, "no such input"),
        ({}, {"input_ids": TensorSpec("input_ids", DataType.FP32, (-1, -1))}, "2-D integer"),
        ({}, {"input_ids": TensorSpec("input_ids", DataType.INT64, (-1, 16))}, "exactly 16"),
    ],
)
def test_config_mistakes(
    model_dir: Path, options: dict[str, Any], inputs: dict[str, TensorSpec], message: str
) -> None:
    """Each mistake in a tokenize entry fails with a ConfigError that names it."""
    with pytest.raises(ConfigError, match=message):
        chain(model_dir, inputs, **options)


def test_target_is_refused_for_tokenize(model_dir: Path) -> None:
    """tokenize feeds its inputs by name; a target is a mistake."""
    config = parse_model_config(
        "m",
        {"preprocess": [{"input": "t", "target": "input_ids", "steps": [{"op": "tokenize"}]}]},
    )
    with pytest.raises(ConfigError, match="remove 'target'"):
        build_text_chain(config.preprocess[0], "p", model_dir, INPUTS)
