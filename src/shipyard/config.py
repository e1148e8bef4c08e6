"""Typed, frozen configuration: :class:`ServerConfig` and :class:`ModelConfig`.

Server settings resolve as defaults < config file < environment (``SHIPYARD_*``) < CLI flags.
A model's settings come from ``<repo>/<name>/model.toml`` (every field is documented in
``docs/model-config.md``); anything the file leaves out is inferred from the model itself.
Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shipyard.errors import ConfigError
from shipyard.types import DataType, TensorSpec

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "DynamicBatchingConfig",
    "ModelConfig",
    "OnnxRuntimeConfig",
    "PostprocessConfig",
    "PreprocessConfig",
    "ServerConfig",
    "StepConfig",
    "VersionPolicy",
    "parse_model_config",
]

#: ``max_batch_size`` given to a model whose first dimension is dynamic and whose
#: ``model.toml`` does not say otherwise.
DEFAULT_MAX_BATCH_SIZE = 32

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

#: Values of model.toml's ``backend`` (``auto``: chosen from the version folder's model file).
BACKENDS = ("auto", "onnxruntime", "tflite")

ExecutionMode = Literal["sequential", "parallel"]
GraphOptimizationLevel = Literal["disable", "basic", "extended", "all"]


@dataclass(frozen=True, slots=True)
class DynamicBatchingConfig:
    """How concurrent requests are merged into one model execution."""

    #: How long the oldest queued request may wait for more to arrive (0: never wait; a
    #: request runs as soon as an instance is free, taking whatever queued meanwhile).
    max_queue_delay_us: int = 0
    #: Batch sizes to dispatch at once when reached, without waiting for the delay.
    preferred_batch_sizes: tuple[int, ...] = ()
    #: Requests that may wait; one more is refused at once with 503.
    max_queue_size: int = 1024
    #: Deadline in microseconds for requests that do not send a ``timeout`` parameter (0: none).
    default_timeout_us: int = 0


@dataclass(frozen=True, slots=True)
class OnnxRuntimeConfig:
    """ONNX Runtime session options."""

    #: Threads used inside one operator (0: ONNX Runtime's default, one per core).
    intra_op_threads: int = 1
    #: Threads used across independent operators (0: ONNX Runtime's default); ONNX Runtime
    #: uses them only when ``execution_mode`` is "parallel".
    inter_op_threads: int = 1
    graph_optimization_level: GraphOptimizationLevel = "all"
    #: Whether idle intra-op threads spin; spinning burns the CPU the HTTP side needs.
    allow_spinning: bool = False
    #: Execution providers in order of preference; empty: the best available on this machine.
    providers: tuple[str, ...] = ()
    #: "sequential" runs one operator at a time; "parallel" runs independent branches of the
    #: graph at once on the inter-op threads.
    execution_mode: ExecutionMode = "sequential"


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    """Which versions of a model are served: the latest N, all, or specific ones."""

    kind: Literal["latest", "all", "specific"] = "latest"
    latest: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: list[int]) -> list[int]:
        """Return the versions to serve out of ``available``, newest first."""
        ordered = sorted(available, reverse=True)
        if self.kind == "all":
            return ordered
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered[: self.latest]


@dataclass(frozen=True, slots=True)
class StepConfig:
    """One processing step as written in model.toml: ``{op = "resize", size = [28, 28]}``.

    Only the shape is checked here; :mod:`shipyard.processing` checks the op and its options
    when the model loads.
    """

    op: str
    #: The step's other keys, in file order (arrays become tuples, so the config stays frozen).
    options: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        """The option ``key``, or ``default`` when the step does not set it."""
        return dict(self.options).get(key, default)


@dataclass(frozen=True, slots=True)
class PreprocessConfig:
    """``[[preprocess]]``: turn the client-facing BYTES input ``input`` into model tensors."""

    input: str
    #: The model input the steps feed (``None`` for ``tokenize``, whose targets are named
    #: ``input_ids``, ``attention_mask`` and ``token_type_ids``).
    target: str | None
    steps: tuple[StepConfig, ...]


@dataclass(frozen=True, slots=True)
class PostprocessConfig:
    """``[[postprocess]]``: transform the model output ``output`` before it is returned."""

    output: str
    steps: tuple[StepConfig, ...] = ()
    #: A labels file (one label per line, relative to the model folder) for ``topk``, the
    #: ``classification`` parameter and ``/predict``.
    labels: str | None = None


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """A model's serving configuration, as read from ``model.toml`` (the tuner writes the same)."""

    name: str
    #: ``onnxruntime``, ``tflite``, or ``auto`` (model.toml names none): ``tflite`` for a version
    #: folder with model.tflite and no model.onnx, else ``onnxruntime``.
    backend: str = "auto"
    #: Largest batch the model runs; 0 turns batching off (inputs then carry no batch dim
    #: of Shipyard's own). ``None``: inferred (dynamic dim 0 → DEFAULT_MAX_BATCH_SIZE, else 0).
    max_batch_size: int | None = None
    #: ``None`` turns dynamic batching off; the default is on whenever max_batch_size > 0.
    dynamic_batching: DynamicBatchingConfig | None = field(default_factory=DynamicBatchingConfig)
    instance_count: int = 1
    onnxruntime: OnnxRuntimeConfig = field(default_factory=OnnxRuntimeConfig)
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    #: Overrides of the signature read from the model file (full shapes, -1 for variable).
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    #: Pre- and post-processing run in the server around the model (docs/processing.md).
    preprocess: tuple[PreprocessConfig, ...] = ()
    postprocess: tuple[PostprocessConfig, ...] = ()


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def _int(value: Any, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table, got {value!r}")
    return value


def _tensor_specs(value: Any, where: str) -> tuple[TensorSpec, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be an array of tables ([[{where}]])")
    specs = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        table = _table(item, at)
        _check_keys(table, {"name", "datatype", "shape"}, at)
        if not isinstance(table.get("name"), str) or not table["name"]:
            raise ConfigError(f"{at}.name must be a non-empty string")
        try:
            datatype = DataType.parse(str(table.get("datatype")))
        except ValueError as exc:
            raise ConfigError(f"{at}.datatype: {exc}") from exc
        shape = table.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape
        ):
            raise ConfigError(f"{at}.shape must be an array of integers >= -1, got {shape!r}")
        specs.append(TensorSpec(table["name"], datatype, tuple(shape)))
    return tuple(specs)


def _frozen(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, Mapping):
        return tuple((k, _frozen(v)) for k, v in value.items())
    return value


def _steps(value: Any, where: str) -> tuple[StepConfig, ...]:
    if not isinstance(value, list):
        raise ConfigError(f'{where} must be an array of steps, e.g. [{{op = "softmax"}}]')
    steps = []
    for i, item in enumerate(value):
        table = _table(item, f"{where}[{i}]")
        op = table.get("op")
        if not isinstance(op, str) or not op:
            raise ConfigError(f"{where}[{i}] needs an 'op' string, e.g. op = \"resize\"")
        options = tuple((k, _frozen(v)) for k, v in table.items() if k != "op")
        steps.append(StepConfig(op, options))
    return tuple(steps)


def _name(table: Mapping[str, Any], key: str, where: str, required: bool = True) -> str | None:
    value = table.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key} must be a non-empty string")
    return value


def _preprocess(value: Any) -> tuple[PreprocessConfig, ...]:
    if not isinstance(value, list):
        raise ConfigError("preprocess must be an array of tables ([[preprocess]])")
    entries = []
    for i, item in enumerate(value):
        at = f"preprocess[{i}]"
        table = _table(item, at)
        _check_keys(table, {"input", "target", "steps"}, at)
        entries.append(
            PreprocessConfig(
                input=str(_name(table, "input", at)),
                target=_name(table, "target", at, required=False),
                steps=_steps(table.get("steps", []), f"{at}.steps"),
            )
        )
    return tuple(entries)


def _postprocess(value: Any) -> tuple[PostprocessConfig, ...]:
    if not isinstance(value, list):
        raise ConfigError("postprocess must be an array of tables ([[postprocess]])")
    entries = []
    for i, item in enumerate(value):
        at = f"postprocess[{i}]"
        table = _table(item, at)
        _check_keys(table, {"output", "steps", "labels"}, at)
        entries.append(
            PostprocessConfig(
                output=str(_name(table, "output", at)),
                steps=_steps(table.get("steps", []), f"{at}.steps"),
                labels=_name(table, "labels", at, required=False),
            )
        )
    return tuple(entries)


def _batching(value: Any) -> DynamicBatchingConfig | None:
    if value is False:
        return None
    if value is True:
        return DynamicBatchingConfig()
    table = _table(value, "dynamic_batching")
    fields = {f.name for f in dataclasses.fields(DynamicBatchingConfig)}
    _check_keys(table, fields | {"enabled"}, "dynamic_batching")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"dynamic_batching.enabled must be true or false, got {enabled!r}")
    preferred = table.get("preferred_batch_sizes", [])
    if not isinstance(preferred, list):
        raise ConfigError("dynamic_batching.preferred_batch_sizes must be an array of integers")
    config = DynamicBatchingConfig(
        max_queue_delay_us=_int(
            table.get("max_queue_delay_us", 0), "dynamic_batching.max_queue_delay_us"
        ),
        preferred_batch_sizes=tuple(
            sorted({_int(v, "dynamic_batching.preferred_batch_sizes[]", 1) for v in preferred})
        ),
        max_queue_size=_int(
            table.get("max_queue_size", 1024), "dynamic_batching.max_queue_size", 1
        ),
        default_timeout_us=_int(
            table.get("default_timeout_us", 0), "dynamic_batching.default_timeout_us"
        ),
    )
    # Validated even when disabled, so turning batching back on never reveals a typo.
    return config if enabled else None


def _onnxruntime(value: Any) -> OnnxRuntimeConfig:
    table = _table(value, "onnxruntime")
    _check_keys(table, {f.name for f in dataclasses.fields(OnnxRuntimeConfig)}, "onnxruntime")
    default = OnnxRuntimeConfig()
    level = table.get("graph_optimization_level", default.graph_optimization_level)
    if level not in ("disable", "basic", "extended", "all"):
        raise ConfigError(
            "onnxruntime.graph_optimization_level must be one of disable, basic, extended, all;"
            f" got {level!r}"
        )
    spinning = table.get("allow_spinning", default.allow_spinning)
    if not isinstance(spinning, bool):
        raise ConfigError(f"onnxruntime.allow_spinning must be true or false, got {spinning!r}")
    providers = table.get("providers", [])
    if not isinstance(providers, list) or not all(isinstance(p, str) for p in providers):
        raise ConfigError("onnxruntime.providers must be an array of provider names")
    mode = table.get("execution_mode", default.execution_mode)
    if mode not in ("sequential", "parallel"):
        raise ConfigError(
            f"onnxruntime.execution_mode must be sequential or parallel, got {mode!r}"
        )
    return OnnxRuntimeConfig(
        intra_op_threads=_int(
            table.get("intra_op_threads", default.intra_op_threads), "onnxruntime.intra_op_threads"
        ),
        inter_op_threads=_int(
            table.get("inter_op_threads", default.inter_op_threads), "onnxruntime.inter_op_threads"
        ),
        execution_mode=mode,
        graph_optimization_level=level,
        allow_spinning=spinning,
        providers=tuple(providers),
    )


def _version_policy(value: Any) -> VersionPolicy:
    table = _table(value, "version_policy")
    _check_keys(table, {"latest", "all", "specific"}, "version_policy")
    if len(table) != 1:
        raise ConfigError(
            "version_policy takes exactly one of: latest = N, all = true, specific = [1, 2]"
        )
    if "latest" in table:
        return VersionPolicy("latest", latest=_int(table["latest"], "version_policy.latest", 1))
    if "all" in table:
        if table["all"] is not True:
            raise ConfigError("version_policy.all must be true")
        return VersionPolicy("all")
    versions = table["specific"]
    if not isinstance(versions, list) or not versions:
        raise ConfigError("version_policy.specific must be a non-empty array of versions")
    return VersionPolicy(
        "specific", versions=tuple(_int(v, "version_policy.specific[]", 1) for v in versions)
    )


_TOP_LEVEL_KEYS = {
    "name",
    "backend",
    "max_batch_size",
    "dynamic_batching",
    "instance_count",
    "onnxruntime",
    "version_policy",
    "inputs",
    "outputs",
    "preprocess",
    "postprocess",
}


def parse_model_config(name: str, table: Mapping[str, Any]) -> ModelConfig:
    """Build a :class:`ModelConfig` from a parsed ``model.toml`` table; raise ConfigError."""
    _check_keys(table, _TOP_LEVEL_KEYS, "model.toml")
    if "name" in table and table["name"] != name:
        raise ConfigError(
            f"model.toml: name {table['name']!r} differs from the folder name {name!r}; "
            "remove the key or rename the folder"
        )
    backend = table.get("backend", "auto")
    if backend not in BACKENDS:
        raise ConfigError(
            f"model.toml: unknown backend {backend!r}; available: {', '.join(BACKENDS)}"
        )
    max_batch = table.get("max_batch_size")
    return ModelConfig(
        name=name,
        backend=backend,
        max_batch_size=None if max_batch is None else _int(max_batch, "max_batch_size"),
        dynamic_batching=_batching(table.get("dynamic_batching", {})),
        instance_count=_int(table.get("instance_count", 1), "instance_count", 1),
        onnxruntime=_onnxruntime(table.get("onnxruntime", {})),
        version_policy=_version_policy(table.get("version_policy", {"latest": 1})),
        inputs=_tensor_specs(table.get("inputs", []), "inputs"),
        outputs=_tensor_specs(table.get("outputs", []), "outputs"),
        preprocess=_preprocess(table.get("preprocess", [])),
        postprocess=_postprocess(table.get("postprocess", [])),
    )


def load_model_config(name: str, path: Path) -> ModelConfig:
    """Read ``path`` (a model.toml) if it exists, else return the defaults for ``name``."""
    if not path.exists():
        return ModelConfig(name=name)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    try:
        return parse_model_config(name, table)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.message}") from exc


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Settings of one server process. See ``docs/configuration.md``."""

    repository: Path = Path("model-repository")
    host: str = "127.0.0.1"
    http_port: int = 8000
    #: gRPC port (``inference.GRPCInferenceService``); 0 turns gRPC off.
    grpc_port: int = 8001
    #: Largest gRPC message received or sent (RESOURCE_EXHAUSTED above it).
    grpc_max_message_bytes: int = 64 * 1024 * 1024
    #: Calls one gRPC connection may have open at once (more are refused: REFUSED_STREAM).
    grpc_max_concurrent_streams: int = 1000
    #: Models to load at start; empty: every model in the repository.
    models: tuple[str, ...] = ()
    #: Largest request body accepted (413 above it).
    max_request_bytes: int = 64 * 1024 * 1024
    #: Largest element count of one tensor (400 above it), checked before any allocation.
    max_tensor_elements: int = 64 * 1024 * 1024
    #: Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    drain_timeout_s: float = 30.0
    log_level: str = "info"

    @classmethod
    def resolve(
        cls,
        file: Path | None = None,
        env: Mapping[str, str] | None = None,
        flags: Mapping[str, Any] | None = None,
    ) -> ServerConfig:
        """Merge defaults < ``file`` ([server] table) < ``SHIPYARD_*`` env < ``flags``."""
        values: dict[str, Any] = {}
        if file is not None:
            try:
                table = tomllib.loads(file.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{file}: cannot read server config: {exc}") from exc
            server = _table(table.get("server", {}), f"{file}: [server]")
            values.update(server)
        environ = os.environ if env is None else env
        for f in dataclasses.fields(cls):
            key = f"SHIPYARD_{f.name.upper()}"
            if key in environ:
                values[f.name] = environ[key]
        values.update({k: v for k, v in (flags or {}).items() if v is not None})
        return cls._coerce(values)

    @classmethod
    def _coerce(cls, values: Mapping[str, Any]) -> ServerConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        _check_keys(values, names, "server config")
        out: dict[str, Any] = {}
        for key, value in values.items():
            try:
                if key == "repository":
                    out[key] = Path(value)
                elif key == "models":
                    items = value.split(",") if isinstance(value, str) else value
                    out[key] = tuple(str(v).strip() for v in items if str(v).strip())
                elif key in (
                    "http_port",
                    "grpc_port",
                    "grpc_max_message_bytes",
                    "grpc_max_concurrent_streams",
                    "max_request_bytes",
                    "max_tensor_elements",
                ):
                    if isinstance(value, bool | float):  # int() would truncate or accept true
                        raise TypeError(f"{key} must be an integer")
                    out[key] = int(value)
                elif key == "drain_timeout_s":
                    out[key] = float(value)
                else:
                    out[key] = str(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"server config: invalid {key} {value!r}: {exc}") from exc
        config = cls(**out)
        if not 0 <= config.http_port <= 65535:
            raise ConfigError(f"http_port must be in 0..65535, got {config.http_port}")
        if not 0 <= config.grpc_port <= 65535:
            raise ConfigError(f"grpc_port must be in 0..65535 (0: off), got {config.grpc_port}")
        if not 1024 <= config.grpc_max_message_bytes <= 2**31 - 1:
            raise ConfigError(
                "grpc_max_message_bytes must be in 1024..2147483647 (gRPC's limit), got "
                f"{config.grpc_max_message_bytes}"
            )
        if not 1 <= config.grpc_max_concurrent_streams <= 2**31 - 1:
            raise ConfigError(
                "grpc_max_concurrent_streams must be in 1..2147483647, got "
                f"{config.grpc_max_concurrent_streams}"
            )
        if config.max_request_bytes < 1024 or config.max_tensor_elements < 1:
            raise ConfigError("max_request_bytes must be >= 1024 and max_tensor_elements >= 1")
        if not config.drain_timeout_s >= 0:  # also refuses NaN
            raise ConfigError("drain_timeout_s must be >= 0")
        if config.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(
                f"log_level must be one of {', '.join(LOG_LEVELS)}, got {config.log_level!r}"
            )
        return config
