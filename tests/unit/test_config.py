"""Tests for shipyard.config: model.toml parsing and ServerConfig resolution."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest

from shipyard.config import (
    DEFAULT_MAX_BATCH_SIZE,
    DynamicBatchingConfig,
    ModelConfig,
    OnnxRuntimeConfig,
    ServerConfig,
    VersionPolicy,
    load_model_config,
    parse_model_config,
)
from shipyard.errors import ConfigError
from shipyard.types import DataType, TensorSpec

FULL_TOML = """
name = "resnet"
backend = "onnxruntime"
max_batch_size = 8
instance_count = 2

[dynamic_batching]
max_queue_delay_us = 500
preferred_batch_sizes = [8, 4]
max_queue_size = 16
default_timeout_us = 100000

[onnxruntime]
intra_op_threads = 4
inter_op_threads = 2
graph_optimization_level = "basic"
allow_spinning = true
providers = ["CPUExecutionProvider"]

[version_policy]
specific = [3, 1]

[[inputs]]
name = "input"
datatype = "FP32"
shape = [-1, 3, 224, 224]

[[outputs]]
name = "probs"
datatype = "FP16"
shape = [-1, 1000]
"""


def parse(text: str, name: str = "resnet") -> ModelConfig:
    """Parse model.toml text as the folder ``name``."""
    return parse_model_config(name, tomllib.loads(text))


# -- model.toml: values ------------------------------------------------------------------------


def test_every_field_is_read() -> None:
    """A model.toml that sets every key produces exactly those values."""
    config = parse(FULL_TOML)
    assert config == ModelConfig(
        name="resnet",
        backend="onnxruntime",
        max_batch_size=8,
        dynamic_batching=DynamicBatchingConfig(
            max_queue_delay_us=500,
            preferred_batch_sizes=(4, 8),
            max_queue_size=16,
            default_timeout_us=100000,
        ),
        instance_count=2,
        onnxruntime=OnnxRuntimeConfig(
            intra_op_threads=4,
            inter_op_threads=2,
            graph_optimization_level="basic",
            allow_spinning=True,
            providers=("CPUExecutionProvider",),
        ),
        version_policy=VersionPolicy("specific", versions=(3, 1)),
        inputs=(TensorSpec("input", DataType.FP32, (-1, 3, 224, 224)),),
        outputs=(TensorSpec("probs", DataType.FP16, (-1, 1000)),),
    )


def test_empty_file_gives_the_defaults() -> None:
    """An empty model.toml equals the dataclass defaults: batching inferred, latest version."""
    config = parse("", "m")
    assert config == ModelConfig(name="m")
    assert config.max_batch_size is None
    assert config.dynamic_batching == DynamicBatchingConfig()
    assert config.dynamic_batching.max_queue_size == 1024
    assert config.instance_count == 1
    assert config.onnxruntime == OnnxRuntimeConfig("auto", 1, "all", False, ())
    assert config.version_policy == VersionPolicy("latest", latest=1)
    assert config.inputs == config.outputs == ()
    assert DEFAULT_MAX_BATCH_SIZE == 32


def test_name_equal_to_folder_is_accepted() -> None:
    """A name key that repeats the folder name is allowed."""
    assert parse('name = "m"', "m").name == "m"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dynamic_batching = false", None),
        ("dynamic_batching = true", DynamicBatchingConfig()),
        ("[dynamic_batching]\nenabled = false\nmax_queue_size = 3", None),
        ("[dynamic_batching]\nenabled = true", DynamicBatchingConfig()),
        ("[dynamic_batching]\nmax_queue_delay_us = 0", DynamicBatchingConfig()),
    ],
)
def test_dynamic_batching_switches(text: str, expected: DynamicBatchingConfig | None) -> None:
    """dynamic_batching may be a bool, or a table with an 'enabled' switch."""
    assert parse(text).dynamic_batching == expected


def test_max_batch_size_zero_is_allowed() -> None:
    """max_batch_size = 0 turns batching off explicitly (distinct from unset)."""
    assert parse("max_batch_size = 0").max_batch_size == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[version_policy]\nlatest = 3", VersionPolicy("latest", latest=3)),
        ("[version_policy]\nall = true", VersionPolicy("all")),
        ("[version_policy]\nspecific = [2]", VersionPolicy("specific", versions=(2,))),
    ],
)
def test_version_policy_forms(text: str, expected: VersionPolicy) -> None:
    """Each of the three version_policy forms parses."""
    assert parse(text).version_policy == expected


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (VersionPolicy("latest", latest=1), [5]),
        (VersionPolicy("latest", latest=2), [5, 3]),
        (VersionPolicy("latest", latest=10), [5, 3, 1]),
        (VersionPolicy("all"), [5, 3, 1]),
        (VersionPolicy("specific", versions=(1, 3, 9)), [3, 1]),
        (VersionPolicy("specific", versions=(9,)), []),
    ],
)
def test_version_policy_select(policy: VersionPolicy, expected: list[int]) -> None:
    """select() picks versions out of those available, newest first."""
    assert policy.select([3, 1, 5]) == expected


@pytest.mark.parametrize("level", ["disable", "basic", "extended", "all"])
def test_every_graph_optimization_level(level: str) -> None:
    """Each documented ONNX Runtime optimization level is accepted."""
    text = f'[onnxruntime]\ngraph_optimization_level = "{level}"'
    assert parse(text).onnxruntime.graph_optimization_level == level


def test_scalar_tensor_override() -> None:
    """An input override may declare a scalar (empty shape)."""
    text = '[[inputs]]\nname = "x"\ndatatype = "BYTES"\nshape = []'
    assert parse(text).inputs == (TensorSpec("x", DataType.BYTES, ()),)


# -- model.toml: errors ------------------------------------------------------------------------

BAD_MODEL_TOML = [
    ("colour = 1", r"model.toml: unknown key\(s\) colour; allowed: backend,"),
    ('name = "other"', "name 'other' differs from the folder name 'resnet'"),
    ('backend = "tensorrt"', "unknown backend 'tensorrt'; available: auto, onnxruntime, tflite"),
    ("max_batch_size = -1", r"max_batch_size must be an integer >= 0, got -1"),
    ("max_batch_size = 1.5", r"max_batch_size must be an integer >= 0, got 1.5"),
    ("max_batch_size = true", r"max_batch_size must be an integer >= 0, got True"),
    ('max_batch_size = "8"', r"max_batch_size must be an integer >= 0, got '8'"),
    ("instance_count = 0", r"instance_count must be an integer >= 1, got 0"),
    ("dynamic_batching = 3", "dynamic_batching must be a table, got 3"),
    ("[dynamic_batching]\nmax_delay = 1", r"dynamic_batching: unknown key\(s\) max_delay"),
    ('[dynamic_batching]\nenabled = "no"', "dynamic_batching.enabled must be true or false"),
    (
        "[dynamic_batching]\nenabled = false\nmax_queue_size = 0",
        "max_queue_size must be an integer >= 1, got 0",
    ),
    ("[dynamic_batching]\nmax_queue_delay_us = -5", "max_queue_delay_us must be an integer >= 0"),
    ("[dynamic_batching]\nmax_queue_size = 0", "max_queue_size must be an integer >= 1, got 0"),
    ("[dynamic_batching]\ndefault_timeout_us = 0.5", "default_timeout_us must be an integer >= 0"),
    ("[dynamic_batching]\npreferred_batch_sizes = 4", "preferred_batch_sizes must be an array"),
    (
        "[dynamic_batching]\npreferred_batch_sizes = [4, 0]",
        r"preferred_batch_sizes\[\] must be an integer >= 1, got 0",
    ),
    ("onnxruntime = 1", "onnxruntime must be a table"),
    ("[onnxruntime]\nthreads = 1", r"onnxruntime: unknown key\(s\) threads"),
    ("[onnxruntime]\nintra_op_threads = -1", "intra_op_threads must be an integer >= 0"),
    (
        '[onnxruntime]\nintra_op_threads = "many"',
        'intra_op_threads must be "auto" or an integer >= 0',
    ),
    ('[onnxruntime]\ninter_op_threads = "2"', "inter_op_threads must be an integer >= 0"),
    (
        '[onnxruntime]\ngraph_optimization_level = "max"',
        "graph_optimization_level must be one of disable, basic, extended, all; got 'max'",
    ),
    ("[onnxruntime]\nallow_spinning = 1", "allow_spinning must be true or false, got 1"),
    ('[onnxruntime]\nproviders = "CPU"', "providers must be an array of provider names"),
    ("[onnxruntime]\nproviders = [1]", "providers must be an array of provider names"),
    ("version_policy = 1", "version_policy must be a table"),
    ("[version_policy]", "version_policy takes exactly one of"),
    ("[version_policy]\nlatest = 1\nall = true", "version_policy takes exactly one of"),
    ("[version_policy]\nnewest = 1", r"version_policy: unknown key\(s\) newest"),
    ("[version_policy]\nlatest = 0", "version_policy.latest must be an integer >= 1, got 0"),
    ("[version_policy]\nall = false", "version_policy.all must be true"),
    ("[version_policy]\nspecific = []", "specific must be a non-empty array"),
    ("[version_policy]\nspecific = 2", "specific must be a non-empty array"),
    ("[version_policy]\nspecific = [0]", r"specific\[\] must be an integer >= 1, got 0"),
    ("inputs = 1", r"inputs must be an array of tables \(\[\[inputs\]\]\)"),
    ("inputs = [1]", r"inputs\[0\] must be a table, got 1"),
    ('[[inputs]]\nname = "x"\ndatatype = "FP32"\nshape = [1]\ndims = [1]', "unknown key"),
    ('[[outputs]]\nname = ""\ndatatype = "FP32"\nshape = [1]', r"outputs\[0\].name must be"),
    ('[[inputs]]\ndatatype = "FP32"\nshape = [1]', r"inputs\[0\].name must be a non-empty"),
    ('[[inputs]]\nname = "x"\ndatatype = "FLOAT"\nshape = [1]', "unknown datatype 'FLOAT'"),
    ('[[inputs]]\nname = "x"\nshape = [1]', r"inputs\[0\].datatype: unknown datatype"),
    ('[[inputs]]\nname = "x"\ndatatype = "FP32"', r"inputs\[0\].shape must be an array"),
    ('[[inputs]]\nname = "x"\ndatatype = "FP32"\nshape = [-2]', "integers >= -1, got \\[-2\\]"),
    ('[[inputs]]\nname = "x"\ndatatype = "FP32"\nshape = [1.0]', "integers >= -1"),
    ('[[inputs]]\nname = "x"\ndatatype = "FP32"\nshape = [true]', "integers >= -1"),
]


@pytest.mark.parametrize(("text", "message"), BAD_MODEL_TOML)
def test_bad_model_toml_raises_config_error(text: str, message: str) -> None:
    """Every unknown key and bad value is a ConfigError that names the key and the value."""
    with pytest.raises(ConfigError, match=message):
        parse(text)


def test_load_model_config_without_file_gives_defaults(tmp_path: Path) -> None:
    """A missing model.toml means all defaults, named after the folder."""
    assert load_model_config("m", tmp_path / "model.toml") == ModelConfig(name="m")


def test_load_model_config_reads_the_file(tmp_path: Path) -> None:
    """load_model_config parses the TOML file it is given."""
    path = tmp_path / "model.toml"
    path.write_text("max_batch_size = 4\ninstance_count = 3\n", encoding="utf-8")
    config = load_model_config("m", path)
    assert (config.max_batch_size, config.instance_count) == (4, 3)


def test_load_model_config_invalid_toml_names_the_file(tmp_path: Path) -> None:
    """A syntax error becomes a ConfigError naming the file."""
    path = tmp_path / "model.toml"
    path.write_text("max_batch_size = = 4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"model.toml: not valid TOML"):
        load_model_config("m", path)


def test_load_model_config_invalid_utf8_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not UTF-8 is a ConfigError, not a UnicodeDecodeError."""
    path = tmp_path / "model.toml"
    path.write_bytes(b"name = '\xff'\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_model_config("m", path)


def test_load_model_config_bad_value_names_the_file(tmp_path: Path) -> None:
    """A bad value in the file is reported with the file's path in front."""
    path = tmp_path / "model.toml"
    path.write_text("instance_count = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"model\.toml: instance_count must be") as info:
        load_model_config("m", path)
    assert str(path) in info.value.message


def test_configs_are_frozen() -> None:
    """ModelConfig and ServerConfig cannot be mutated after construction."""
    config = ModelConfig(name="m")
    with pytest.raises(AttributeError):
        config.instance_count = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ServerConfig().http_port = 1  # type: ignore[misc]


# -- ServerConfig.resolve ----------------------------------------------------------------------


def test_resolve_defaults() -> None:
    """With no file, env or flags, resolve() returns the documented defaults."""
    config = ServerConfig.resolve(env={})
    assert config == ServerConfig()
    assert config.repository == Path("model-repository")
    assert (config.host, config.http_port, config.models) == ("127.0.0.1", 8000, ())
    assert config.max_request_bytes == config.max_tensor_elements == 64 * 1024 * 1024
    assert (config.drain_timeout_s, config.log_level) == (30.0, "info")


def test_resolve_ignores_the_process_environment_when_env_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An explicit env mapping replaces os.environ; env=None reads os.environ."""
    monkeypatch.setenv("SHIPYARD_HTTP_PORT", "9999")
    assert ServerConfig.resolve(env={}).http_port == 8000
    assert ServerConfig.resolve().http_port == 9999


def _server_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "shipyard.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_resolve_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    """Each layer overrides the one below it, key by key: defaults < file < env < flags."""
    file = _server_file(
        tmp_path,
        '[server]\nhttp_port = 1111\nhost = "0.0.0.0"\nlog_level = "debug"\n'
        'models = ["a", "b"]\ndrain_timeout_s = 5\n',
    )
    env = {"SHIPYARD_HTTP_PORT": "2222", "SHIPYARD_LOG_LEVEL": "warning", "OTHER": "x"}
    flags: dict[str, Any] = {"http_port": 3333, "host": None}
    config = ServerConfig.resolve(file, env, flags)
    assert config.http_port == 3333  # flag beats env and file
    assert config.log_level == "warning"  # env beats file
    assert config.host == "0.0.0.0"  # file beats default; a None flag is "not given"
    assert config.models == ("a", "b")
    assert config.drain_timeout_s == 5.0
    assert config.max_request_bytes == ServerConfig().max_request_bytes  # default


def test_resolve_coerces_env_strings(tmp_path: Path) -> None:
    """Environment strings are converted to each field's type."""
    env = {
        "SHIPYARD_REPOSITORY": str(tmp_path),
        "SHIPYARD_MODELS": " a, b ,,c ",
        "SHIPYARD_MAX_REQUEST_BYTES": "2048",
        "SHIPYARD_MAX_TENSOR_ELEMENTS": "10",
        "SHIPYARD_DRAIN_TIMEOUT_S": "0.5",
        "SHIPYARD_HTTP_PORT": "0",
    }
    config = ServerConfig.resolve(env=env)
    assert config.repository == tmp_path
    assert config.models == ("a", "b", "c")
    assert (config.max_request_bytes, config.max_tensor_elements) == (2048, 10)
    assert config.drain_timeout_s == 0.5
    assert config.http_port == 0


def test_resolve_file_without_server_table(tmp_path: Path) -> None:
    """A config file without a [server] table leaves the defaults."""
    file = _server_file(tmp_path, "[other]\nx = 1\n")
    assert ServerConfig.resolve(file, env={}) == ServerConfig()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SHIPYARD_HTTP_PORT": "eighty"}, "invalid http_port 'eighty'"),
        ({"SHIPYARD_HTTP_PORT": "8000.5"}, "invalid http_port '8000.5'"),
        ({"SHIPYARD_HTTP_PORT": "70000"}, "http_port must be in 0..65535, got 70000"),
        ({"SHIPYARD_HTTP_PORT": "-1"}, "http_port must be in 0..65535, got -1"),
        ({"SHIPYARD_MAX_REQUEST_BYTES": "1023"}, "max_request_bytes must be >= 1024"),
        ({"SHIPYARD_MAX_TENSOR_ELEMENTS": "0"}, "max_tensor_elements >= 1"),
        ({"SHIPYARD_DRAIN_TIMEOUT_S": "soon"}, "invalid drain_timeout_s 'soon'"),
        ({"SHIPYARD_DRAIN_TIMEOUT_S": "-1"}, "drain_timeout_s must be >= 0"),
        ({"SHIPYARD_DRAIN_TIMEOUT_S": "nan"}, "drain_timeout_s must be >= 0"),
        ({"SHIPYARD_LOG_LEVEL": "verbose"}, "log_level must be one of critical, error"),
        ({"SHIPYARD_GRPC_MAX_MESSAGE_BYTES": "100"}, "grpc_max_message_bytes must be in 1024"),
        (
            {"SHIPYARD_GRPC_MAX_CONCURRENT_STREAMS": "0"},
            "grpc_max_concurrent_streams must be in 1..2147483647, got 0",
        ),
        ({"SHIPYARD_WORKERS": "0"}, r"invalid workers '0': expected 1..1024 or 'auto'"),
        ({"SHIPYARD_WORKERS": "many"}, r"invalid workers 'many': expected an integer or 'auto'"),
        ({"SHIPYARD_WORKERS": "1025"}, r"invalid workers '1025'"),
    ],
)
def test_resolve_bad_env_values(env: dict[str, str], message: str) -> None:
    """A bad environment value is a ConfigError naming the setting and the value."""
    with pytest.raises(ConfigError, match=message):
        ServerConfig.resolve(env=env)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[server]\nport = 1\n", r"server config: unknown key\(s\) port; allowed:"),
        ("[server]\nhttp_port = true\n", "invalid http_port True"),
        ("[server]\nhttp_port = 80.5\n", "invalid http_port 80.5"),
        ("[server]\nmax_request_bytes = 2e6\n", "invalid max_request_bytes"),
        ("[server]\nrepository = 5\n", "invalid repository 5"),
        ("[server]\nhttp_port = [1]\n", "invalid http_port"),
        ("server = 1\n", r"\[server\] must be a table"),
        ("[server\n", "cannot read server config"),
    ],
)
def test_resolve_bad_file_values(tmp_path: Path, body: str, message: str) -> None:
    """Unknown keys, wrong types and bad TOML in the config file are ConfigErrors."""
    with pytest.raises(ConfigError, match=message):
        ServerConfig.resolve(_server_file(tmp_path, body), env={})


def test_resolve_missing_file(tmp_path: Path) -> None:
    """A config file that does not exist is a ConfigError naming it."""
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read server config"):
        ServerConfig.resolve(missing, env={})


def test_resolve_bad_flag() -> None:
    """Unknown and invalid flags are ConfigErrors too."""
    with pytest.raises(ConfigError, match=r"unknown key\(s\) colour"):
        ServerConfig.resolve(env={}, flags={"colour": "red"})
    with pytest.raises(ConfigError, match=r"http_port must be in 0\.\.65535"):
        ServerConfig.resolve(env={}, flags={"http_port": 99999})


def test_log_level_is_case_insensitive() -> None:
    """Log levels are accepted in any case."""
    assert ServerConfig.resolve(env={"SHIPYARD_LOG_LEVEL": "DEBUG"}).log_level.lower() == "debug"


def test_preferred_batch_sizes_are_sorted_and_deduplicated() -> None:
    """[8, 4, 8] becomes (4, 8): the batcher compares totals against a set of sizes."""
    config = parse_model_config("m", {"dynamic_batching": {"preferred_batch_sizes": [8, 4, 8]}})
    assert config.dynamic_batching is not None
    assert config.dynamic_batching.preferred_batch_sizes == (4, 8)


def test_execution_mode_is_sequential_by_default_and_validated() -> None:
    """[onnxruntime] execution_mode: "sequential" unless "parallel" is asked; others refused."""
    assert parse_model_config("m", {}).onnxruntime.execution_mode == "sequential"
    parallel = parse_model_config("m", {"onnxruntime": {"execution_mode": "parallel"}})
    assert parallel.onnxruntime.execution_mode == "parallel"
    with pytest.raises(ConfigError, match="execution_mode must be sequential or parallel"):
        parse_model_config("m", {"onnxruntime": {"execution_mode": "fast"}})


def test_grpc_connection_limits_resolve_from_file_env_and_flags(tmp_path: Path) -> None:
    """Each gRPC connection limit is a [server] key, a SHIPYARD_* variable and (some) a flag."""
    body = "[server]\ngrpc_max_connections = 7\ngrpc_max_pings = 3\ngrpc_flood_window_s = 2\n"
    config = ServerConfig.resolve(
        _server_file(tmp_path, body),
        env={"SHIPYARD_GRPC_IDLE_TIMEOUT_S": "0", "SHIPYARD_GRPC_MAX_RESETS": "9"},
        flags={"grpc_handshake_timeout_s": 1.5},
    )
    assert config.grpc_max_connections == 7
    assert config.grpc_max_pings == 3
    assert config.grpc_flood_window_s == 2.0
    assert config.grpc_idle_timeout_s == 0.0  # 0: never
    assert config.grpc_max_resets == 9
    assert config.grpc_handshake_timeout_s == 1.5
    assert ServerConfig().grpc_max_header_list_bytes == 16 * 1024


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SHIPYARD_GRPC_MAX_CONNECTIONS": "0"}, "grpc_max_connections must be in 1.."),
        ({"SHIPYARD_GRPC_MAX_HEADER_LIST_BYTES": "100"}, "grpc_max_header_list_bytes must be in"),
        ({"SHIPYARD_GRPC_MAX_RESETS": "1.5"}, "invalid grpc_max_resets"),
        ({"SHIPYARD_GRPC_FLOOD_WINDOW_S": "0"}, "grpc_flood_window_s must be a finite number"),
        ({"SHIPYARD_GRPC_HANDSHAKE_TIMEOUT_S": "-1"}, "grpc_handshake_timeout_s must be"),
        (
            {"SHIPYARD_GRPC_IDLE_TIMEOUT_S": "nan"},
            r"grpc_idle_timeout_s must be .* >= 0 \(0: off\)",
        ),
        ({"SHIPYARD_GRPC_KEEPALIVE_INTERVAL_S": "inf"}, "grpc_keepalive_interval_s must be"),
        ({"SHIPYARD_GRPC_KEEPALIVE_TIMEOUT_S": "0"}, "grpc_keepalive_timeout_s must be"),
    ],
)
def test_bad_grpc_connection_limits_are_refused(env: dict[str, str], message: str) -> None:
    """An out-of-range gRPC connection limit is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=message):
        ServerConfig.resolve(env=env)


def test_every_serve_flag_is_a_server_setting() -> None:
    """Each `shipyard serve` option lands on a ServerConfig field of the same name."""
    from shipyard.cli.serve import serve

    fields = {f.name for f in dataclasses.fields(ServerConfig)}
    names = {p.name for p in serve.params} - {"repository", "config_file"}
    assert {"grpc_max_connections", "grpc_idle_timeout_s"} <= names
    assert names <= fields, names - fields


def test_ui_is_on_by_default_and_every_layer_can_turn_it_off(tmp_path: Path) -> None:
    """``ui`` defaults to on; the file (a TOML bool), SHIPYARD_UI and the flag set it."""
    assert ServerConfig.resolve(env={}).ui is True
    file = _server_file(tmp_path, "[server]\nui = false\n")
    assert ServerConfig.resolve(file, env={}).ui is False
    for text, value in (("0", False), ("off", False), ("No", False), ("1", True), ("TRUE", True)):
        assert ServerConfig.resolve(env={"SHIPYARD_UI": text}).ui is value, text
    assert ServerConfig.resolve(file, env={"SHIPYARD_UI": "yes"}, flags={"ui": False}).ui is False
    assert ServerConfig.resolve(file, env={}, flags={"ui": True}).ui is True


@pytest.mark.parametrize("value", ["maybe", "", 1, "2"])
def test_ui_refuses_anything_but_a_switch(tmp_path: Path, value: Any) -> None:
    """A ``ui`` value that is not a bool or an on/off word is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="server config: ui must be true or false"):
        ServerConfig.resolve(env={}, flags={"ui": value})


@pytest.mark.parametrize(
    ("value", "workers"), [("auto", "auto"), ("AUTO", "auto"), ("3", 3), (2, 2), (1024, 1024)]
)
def test_workers_is_a_count_or_auto(value: object, workers: object) -> None:
    """--workers / SHIPYARD_WORKERS / [server] workers take a count in 1..1024 or "auto"."""
    assert ServerConfig.resolve(env={}, flags={"workers": value}).workers == workers
    assert ServerConfig.resolve(env={"SHIPYARD_WORKERS": str(value)}).workers == workers


@pytest.mark.parametrize("value", [True, 2.0, 0, -1])
def test_workers_refuses_other_types_in_the_file(tmp_path: Path, value: object) -> None:
    """A boolean, a float or a count below 1 in the [server] table is a ConfigError."""
    body = f"[server]\nworkers = {str(value).lower()}\n"
    with pytest.raises(ConfigError, match="invalid workers"):
        ServerConfig.resolve(_server_file(tmp_path, body), env={})
