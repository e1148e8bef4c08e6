"""Rewriting serving settings in model.toml (repository/settings.py), as the tuner does."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from shipyard.config import parse_model_config
from shipyard.errors import ConfigError
from shipyard.repository.settings import update_settings, write_settings

HAND_WRITTEN = """\
# Tuned by hand; keep this comment.
instance_count = 2  # two sessions

[onnxruntime]
intra_op_threads = 1
graph_optimization_level = "all"

[[inputs]]
name = "input"
datatype = "FP32"
shape = [-1, 1, 28, 28]
"""


def test_changes_are_written_and_everything_else_is_kept() -> None:
    """Keys are replaced in place or added to their (new) table; comments and tables stay."""
    text = update_settings(
        HAND_WRITTEN,
        "cnn",
        {
            "instance_count": 3,
            "max_batch_size": 16,
            "onnxruntime.intra_op_threads": 2,
            "dynamic_batching.max_queue_delay_us": 500,
            "dynamic_batching.preferred_batch_sizes": [4, 8],
        },
    )
    assert "# Tuned by hand; keep this comment." in text
    assert "instance_count = 3  # two sessions" in text
    assert 'graph_optimization_level = "all"' in text
    assert text.index("[dynamic_batching]") < text.index("[[inputs]]")
    config = parse_model_config("cnn", tomllib.loads(text))
    assert config.instance_count == 3
    assert config.max_batch_size == 16
    assert config.onnxruntime.intra_op_threads == 2
    assert config.dynamic_batching is not None
    assert config.dynamic_batching.max_queue_delay_us == 500
    assert config.dynamic_batching.preferred_batch_sizes == (4, 8)
    assert [s.name for s in config.inputs] == ["input"]


def test_inline_and_dotted_forms_are_rewritten() -> None:
    """``dynamic_batching = false`` becomes a table; dotted onnxruntime keys stay dotted."""
    text = update_settings(
        "max_batch_size = 8\ndynamic_batching = false\nonnxruntime.intra_op_threads = 1\n",
        "m",
        {"dynamic_batching.enabled": True, "onnxruntime.intra_op_threads": 2},
    )
    config = parse_model_config("m", tomllib.loads(text))
    assert config.dynamic_batching is not None
    assert config.onnxruntime.intra_op_threads == 2
    assert "onnxruntime.intra_op_threads = 2" in text


def test_multi_line_arrays_are_replaced_whole() -> None:
    """A preferred_batch_sizes array spread over lines (with comments) is replaced entirely."""
    text = update_settings(
        "[dynamic_batching]\npreferred_batch_sizes = [\n  4, # four\n  8,\n]\nmax_queue_size = 9\n",
        "m",
        {"dynamic_batching.preferred_batch_sizes": [2]},
    )
    table = tomllib.loads(text)["dynamic_batching"]
    assert table == {"preferred_batch_sizes": [2], "max_queue_size": 9}


def test_an_inline_table_is_refused_not_mangled() -> None:
    """An inline ``onnxruntime = {...}`` cannot be edited safely: a ConfigError says so."""
    with pytest.raises(ConfigError, match=r"as a \[onnxruntime\] table"):
        update_settings(
            "onnxruntime = { intra_op_threads = 1 }\n", "m", {"onnxruntime.intra_op_threads": 2}
        )


def test_a_value_the_server_rejects_is_never_written(tmp_path: Path) -> None:
    """A change that makes model.toml invalid raises and leaves the file as it was."""
    path = tmp_path / "model.toml"
    path.write_text(HAND_WRITTEN, encoding="utf-8")
    with pytest.raises(ConfigError, match="instance_count"):
        write_settings(path, "cnn", {"instance_count": 0})
    assert path.read_text(encoding="utf-8") == HAND_WRITTEN
    old = write_settings(path, "cnn", {"instance_count": 4}, note="# Serving settings tuned by x")
    assert old == HAND_WRITTEN
    assert path.read_text(encoding="utf-8").startswith("# Serving settings tuned by x\n")
