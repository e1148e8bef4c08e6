"""model.toml's Python and composition keys ([python], Python steps, [[step]],
execution_timeout_s) and the server's allow_python_models setting."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from shipyard.backends.base import resolve_backend
from shipyard.config import (
    EnsembleStepConfig,
    ModelConfig,
    PythonConfig,
    PythonPostprocessConfig,
    PythonPreprocessConfig,
    ServerConfig,
    parse_model_config,
)
from shipyard.errors import ConfigError
from shipyard.types import DataType, TensorSpec

PYTHON_TOML = """
backend = "python"
execution_timeout_s = 2.5

[python]
workers = 3
start_timeout_s = 30
shared_memory_bytes = 0

[python.settings]
k = 10
names = ["a", "b"]

[[preprocess]]
kind = "python"
function = "features:lookup"
targets = ["user", "items"]
[[preprocess.inputs]]
name = "user_id"
datatype = "INT64"
shape = [-1, 1]

[[postprocess]]
kind = "python"
function = "rank:top_k"
sources = ["scores", "items"]
[[postprocess.outputs]]
name = "top"
datatype = "INT64"
shape = [-1, 5]
"""


def parse(text: str, name: str = "m") -> ModelConfig:
    """parse_model_config over TOML text."""
    return parse_model_config(name, tomllib.loads(text))


def test_python_keys_are_read() -> None:
    """[python], its settings, Python steps and execution_timeout_s land in ModelConfig."""
    config = parse(PYTHON_TOML)
    assert config.backend == "python"
    assert config.execution_timeout_s == 2.5
    assert config.python == PythonConfig(
        workers=3,
        settings=(("k", 10), ("names", ("a", "b"))),
        start_timeout_s=30.0,
        shared_memory_bytes=0,
    )
    assert config.python_preprocess == (
        PythonPreprocessConfig(
            "features:lookup",
            (TensorSpec("user_id", DataType.INT64, (-1, 1)),),
            ("user", "items"),
        ),
    )
    assert config.python_postprocess == (
        PythonPostprocessConfig(
            "rank:top_k", ("scores", "items"), (TensorSpec("top", DataType.INT64, (-1, 5)),)
        ),
    )
    assert config.preprocess == ()
    assert config.runs_python


def test_declarative_steps_do_not_run_python() -> None:
    """An ONNX model without Python steps does not need the flag; the defaults are safe."""
    config = parse('[[postprocess]]\noutput = "y"\nsteps = [{op = "softmax"}]\n')
    assert not config.runs_python
    assert config.execution_timeout_s == 0.0
    assert config.python == PythonConfig()


def test_ensemble_steps_are_read() -> None:
    """[[step]] tables become EnsembleStepConfig in file order."""
    config = parse(
        'backend = "ensemble"\n'
        '[[step]]\nmodel = "a"\ninput_map = {x = "in"}\noutput_map = {y = "mid"}\n'
        '[[step]]\nmodel = "b"\nversion = 2\ninput_map = {x = "mid"}\noutput_map = {y = "out"}\n',
        name="ens",
    )
    assert config.steps == (
        EnsembleStepConfig("a", None, (("x", "in"),), (("y", "mid"),)),
        EnsembleStepConfig("b", 2, (("x", "mid"),), (("y", "out"),)),
    )
    assert not config.runs_python


BAD = [
    ("execution_timeout_s = -1", "execution_timeout_s must be a number >= 0"),
    ("execution_timeout_s = true", "execution_timeout_s must be a number"),
    ("[python]\nworkers = 0", "python.workers must be an integer >= 1"),
    ("[python]\nthreads = 2", "python: unknown key(s) threads"),
    ("[python.settings]\nt = {a = 1}", "python.settings.t: a setting is a number"),
    ('[[preprocess]]\nkind = "lua"', 'kind must be "steps"'),
    (
        '[[preprocess]]\nkind = "python"\nfunction = "no_colon"\ntargets = ["x"]',
        'function must be "module:name"',
    ),
    (
        '[[preprocess]]\nkind = "python"\nfunction = "../up:f"\ntargets = ["x"]',
        'function must be "module:name"',
    ),
    (
        '[[preprocess]]\nkind = "python"\nfunction = "m:f"\ntargets = []',
        "declares its inputs as [[preprocess.inputs]] tables",
    ),
    (
        '[[preprocess]]\nkind = "python"\nfunction = "m:f"\ntargets = []\n'
        '[[preprocess.inputs]]\nname = "a"\ndatatype = "FP32"\nshape = [-1]',
        "targets must be a non-empty array",
    ),
    (
        '[[preprocess]]\nkind = "python"\nfunction = "m:f"\ntargets = ["x"]\ninput = "y"',
        "unknown key(s) input",
    ),
    (
        '[[postprocess]]\nkind = "python"\nfunction = "m:f"\nsources = ["a", "a"]\n'
        '[[postprocess.outputs]]\nname = "a"\ndatatype = "FP32"\nshape = [-1]',
        "names a tensor twice",
    ),
    (
        '[[postprocess]]\nkind = "python"\nfunction = "m:f"\nsources = ["a"]',
        "declares its outputs as [[postprocess.outputs]] tables",
    ),
    ('backend = "ensemble"', 'backend = "ensemble" needs a [[step]] list'),
    ('[[step]]\nmodel = "a"\ninput_map = {x = "i"}\noutput_map = {y = "o"}', "needs a [[step]]"),
    (
        'backend = "ensemble"\n[[step]]\nmodel = "m"\n'
        'input_map = {x = "i"}\noutput_map = {y = "o"}',
        "cannot run itself",
    ),
    (
        'backend = "ensemble"\n[[step]]\nmodel = "a"\ninput_map = {}\noutput_map = {y = "o"}',
        "input_map must map at least one tensor",
    ),
    (
        'backend = "ensemble"\n[[step]]\nmodel = "a"\ninput_map = {x = 1}\noutput_map = {y = "o"}',
        "input_map.x must be the name of an ensemble tensor",
    ),
    (
        'backend = "ensemble"\n[[step]]\nmodel = "a"\ninput_map = {x = "i"}\n'
        'output_map = {y = "o"}\n[[postprocess]]\noutput = "o"',
        "an ensemble has no [[preprocess]] or [[postprocess]]",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_python_and_ensemble_keys(text: str, message: str) -> None:
    """Each mistake is a ConfigError that names the key."""
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["model.py"], "python"),
        (["model.onnx", "model.py"], "onnxruntime"),
        (["model.tflite", "model.py"], "tflite"),
        ([], "onnxruntime"),
    ],
)
def test_auto_backend_detects_model_py(tmp_path: Path, files: list[str], expected: str) -> None:
    """A version folder with only model.py is a Python model; a model file wins over it."""
    for name in files:
        (tmp_path / name).write_bytes(b"")
    assert resolve_backend(tmp_path, ModelConfig("m")) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("false", False)],
)
def test_allow_python_models_from_the_environment(value: str, expected: bool) -> None:
    """SHIPYARD_ALLOW_PYTHON_MODELS takes the usual words for true and false."""
    config = ServerConfig.resolve(env={"SHIPYARD_ALLOW_PYTHON_MODELS": value})
    assert config.allow_python_models is expected


def test_allow_python_models_is_off_by_default_and_checked() -> None:
    """The default refuses Python models; a word that is not a boolean is a ConfigError."""
    assert ServerConfig.resolve(env={}).allow_python_models is False
    with pytest.raises(ConfigError, match="allow_python_models"):
        ServerConfig.resolve(env={"SHIPYARD_ALLOW_PYTHON_MODELS": "maybe"})
