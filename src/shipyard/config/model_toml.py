"""Read ``model.toml`` into a :class:`~shipyard.config.model.ModelConfig`, naming any bad key.

:func:`parse_model_config` checks a parsed table (unknown keys, types, ranges) and
:func:`load_model_config` reads the file, with the defaults when there is none.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from shipyard.config.model import (
    BACKENDS,
    DynamicBatchingConfig,
    EnsembleStepConfig,
    ExplainConfig,
    ModelConfig,
    OnnxRuntimeConfig,
    OpenVinoConfig,
    PostprocessConfig,
    PreprocessConfig,
    PythonPostprocessConfig,
    PythonPreprocessConfig,
    ScaleConfig,
    StepConfig,
    VersionPolicy,
)
from shipyard.config.python_toml import frozen, python_config, python_function
from shipyard.config.resolve import check_int, check_keys, check_number, check_table
from shipyard.errors import ConfigError
from shipyard.types import DataType, TensorSpec

__all__ = ["load_model_config", "parse_model_config"]


def _tensor_specs(value: Any, where: str) -> tuple[TensorSpec, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be an array of tables ([[{where}]])")
    specs = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        table = check_table(item, at)
        check_keys(table, {"name", "datatype", "shape"}, at)
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


def _steps(value: Any, where: str) -> tuple[StepConfig, ...]:
    if not isinstance(value, list):
        raise ConfigError(f'{where} must be an array of steps, e.g. [{{op = "softmax"}}]')
    steps = []
    for i, item in enumerate(value):
        table = check_table(item, f"{where}[{i}]")
        op = table.get("op")
        if not isinstance(op, str) or not op:
            raise ConfigError(f"{where}[{i}] needs an 'op' string, e.g. op = \"resize\"")
        options = tuple((k, frozen(v)) for k, v in table.items() if k != "op")
        steps.append(StepConfig(op, options))
    return tuple(steps)


def _name(table: Mapping[str, Any], key: str, where: str, required: bool = True) -> str | None:
    value = table.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key} must be a non-empty string")
    return value


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f'{where} must be a non-empty array of tensor names, e.g. ["x"]')
    if len(set(value)) != len(value):
        raise ConfigError(f"{where} names a tensor twice: {value}")
    return tuple(value)


def _need_specs(table: Mapping[str, Any], key: str, where: str, array: str) -> None:
    if not isinstance(table.get(key), list) or not table[key]:
        raise ConfigError(
            f"{where}: a Python step declares its {key} as [[{array}.{key}]] tables with "
            "name, datatype and shape"
        )


def _kind(table: Mapping[str, Any], where: str) -> str:
    kind = table.get("kind", "steps")
    if kind not in ("steps", "python"):
        raise ConfigError(f'{where}.kind must be "steps" (the default) or "python", got {kind!r}')
    return str(kind)


def _preprocess(
    value: Any,
) -> tuple[tuple[PreprocessConfig, ...], tuple[PythonPreprocessConfig, ...]]:
    if not isinstance(value, list):
        raise ConfigError("preprocess must be an array of tables ([[preprocess]])")
    entries = []
    python = []
    for i, item in enumerate(value):
        at = f"preprocess[{i}]"
        table = check_table(item, at)
        if _kind(table, at) == "python":
            check_keys(table, {"kind", "function", "inputs", "targets"}, at)
            function = python_function(table.get("function"), f"{at}.function")
            _need_specs(table, "inputs", at, "preprocess")
            python.append(
                PythonPreprocessConfig(
                    function=function,
                    inputs=_tensor_specs(table.get("inputs"), f"{at}.inputs"),
                    targets=_names(table.get("targets"), f"{at}.targets"),
                )
            )
            continue
        check_keys(table, {"kind", "input", "target", "steps"}, at)
        entries.append(
            PreprocessConfig(
                input=str(_name(table, "input", at)),
                target=_name(table, "target", at, required=False),
                steps=_steps(table.get("steps", []), f"{at}.steps"),
            )
        )
    return tuple(entries), tuple(python)


def _postprocess(
    value: Any,
) -> tuple[tuple[PostprocessConfig, ...], tuple[PythonPostprocessConfig, ...]]:
    if not isinstance(value, list):
        raise ConfigError("postprocess must be an array of tables ([[postprocess]])")
    entries = []
    python = []
    for i, item in enumerate(value):
        at = f"postprocess[{i}]"
        table = check_table(item, at)
        if _kind(table, at) == "python":
            check_keys(table, {"kind", "function", "sources", "outputs"}, at)
            function = python_function(table.get("function"), f"{at}.function")
            _need_specs(table, "outputs", at, "postprocess")
            python.append(
                PythonPostprocessConfig(
                    function=function,
                    sources=_names(table.get("sources"), f"{at}.sources"),
                    outputs=_tensor_specs(table.get("outputs"), f"{at}.outputs"),
                )
            )
            continue
        check_keys(table, {"kind", "output", "steps", "labels"}, at)
        entries.append(
            PostprocessConfig(
                output=str(_name(table, "output", at)),
                steps=_steps(table.get("steps", []), f"{at}.steps"),
                labels=_name(table, "labels", at, required=False),
            )
        )
    return tuple(entries), tuple(python)


def _batching(value: Any) -> DynamicBatchingConfig | None:
    if value is False:
        return None
    if value is True:
        return DynamicBatchingConfig()
    table = check_table(value, "dynamic_batching")
    fields = {f.name for f in dataclasses.fields(DynamicBatchingConfig)}
    check_keys(table, fields | {"enabled"}, "dynamic_batching")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"dynamic_batching.enabled must be true or false, got {enabled!r}")
    preferred = table.get("preferred_batch_sizes", [])
    if not isinstance(preferred, list):
        raise ConfigError("dynamic_batching.preferred_batch_sizes must be an array of integers")
    config = DynamicBatchingConfig(
        max_queue_delay_us=check_int(
            table.get("max_queue_delay_us", 0), "dynamic_batching.max_queue_delay_us"
        ),
        preferred_batch_sizes=tuple(
            sorted({check_int(v, "dynamic_batching.preferred_batch_sizes[]", 1) for v in preferred})
        ),
        max_queue_size=check_int(
            table.get("max_queue_size", 1024), "dynamic_batching.max_queue_size", 1
        ),
        default_timeout_us=check_int(
            table.get("default_timeout_us", 0), "dynamic_batching.default_timeout_us"
        ),
    )
    # Validated even when disabled, so turning batching back on never reveals a typo.
    return config if enabled else None


def _onnxruntime(value: Any) -> OnnxRuntimeConfig:
    table = check_table(value, "onnxruntime")
    check_keys(table, {f.name for f in dataclasses.fields(OnnxRuntimeConfig)}, "onnxruntime")
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
    intra = table.get("intra_op_threads", default.intra_op_threads)
    binding = table.get("io_binding", default.io_binding)
    if binding != "auto" and not isinstance(binding, bool):
        raise ConfigError(f'onnxruntime.io_binding must be true, false or "auto", got {binding!r}')
    return OnnxRuntimeConfig(
        intra_op_threads=_threads(intra, "onnxruntime.intra_op_threads"),
        inter_op_threads=check_int(
            table.get("inter_op_threads", default.inter_op_threads), "onnxruntime.inter_op_threads"
        ),
        execution_mode=mode,
        graph_optimization_level=level,
        allow_spinning=spinning,
        providers=tuple(providers),
        device_id=check_int(table.get("device_id", default.device_id), "onnxruntime.device_id"),
        io_binding=binding,
    )


def _threads(value: Any, where: str) -> int | Literal["auto"]:
    if isinstance(value, str) and value != "auto":
        raise ConfigError(f'{where} must be "auto" or an integer >= 0, got {value!r}')
    return "auto" if value == "auto" else check_int(value, where)


def _openvino(value: Any) -> OpenVinoConfig:
    table = check_table(value, "openvino")
    check_keys(table, {f.name for f in dataclasses.fields(OpenVinoConfig)}, "openvino")
    default = OpenVinoConfig()
    device = table.get("device", default.device)
    if not isinstance(device, str) or not device:
        raise ConfigError(f'openvino.device must be a device name such as "CPU", got {device!r}')
    precision = table.get("inference_precision", default.inference_precision)
    if precision is not None and precision not in ("f32", "bf16", "f16"):
        raise ConfigError(
            f"openvino.inference_precision must be one of f32, bf16, f16; got {precision!r}"
        )
    return OpenVinoConfig(
        device=device,
        inference_precision=precision,
        intra_op_threads=_threads(
            table.get("intra_op_threads", default.intra_op_threads), "openvino.intra_op_threads"
        ),
    )


def _explain(value: Any) -> ExplainConfig:
    table = check_table(value, "explain")
    check_keys(table, {f.name for f in dataclasses.fields(ExplainConfig)}, "explain")
    default = ExplainConfig().max_perturbations
    limit = table.get("max_perturbations", default)
    return ExplainConfig(check_int(limit, "explain.max_perturbations", 1))


def _version_policy(value: Any) -> VersionPolicy:
    table = check_table(value, "version_policy")
    check_keys(table, {"latest", "all", "specific"}, "version_policy")
    if len(table) != 1:
        raise ConfigError(
            "version_policy takes exactly one of: latest = N, all = true, specific = [1, 2]"
        )
    if "latest" in table:
        return VersionPolicy(
            "latest", latest=check_int(table["latest"], "version_policy.latest", 1)
        )
    if "all" in table:
        if table["all"] is not True:
            raise ConfigError("version_policy.all must be true")
        return VersionPolicy("all")
    versions = table["specific"]
    if not isinstance(versions, list) or not versions:
        raise ConfigError("version_policy.specific must be a non-empty array of versions")
    return VersionPolicy(
        "specific", versions=tuple(check_int(v, "version_policy.specific[]", 1) for v in versions)
    )


def _scale(value: Any) -> ScaleConfig:
    table = check_table(value, "scale")
    check_keys(table, {f.name for f in dataclasses.fields(ScaleConfig)}, "scale")
    default = ScaleConfig()
    low = check_int(table.get("min_replicas", default.min_replicas), "scale.min_replicas", 1)
    high = check_int(
        table.get("max_replicas", max(low, default.max_replicas)), "scale.max_replicas", 1
    )
    if high < low:
        raise ConfigError(f"scale.max_replicas ({high}) is below scale.min_replicas ({low})")
    numbers = {}
    for key in ("target_ongoing_requests", "num_cpus", "upscale_delay_s", "downscale_delay_s"):
        number = table.get(key, getattr(default, key))
        positive = key in ("target_ongoing_requests", "num_cpus")
        if (
            isinstance(number, bool)
            or not isinstance(number, int | float)
            or not (number > 0 if positive else number >= 0)
        ):
            raise ConfigError(
                f"scale.{key} must be a number {'> 0' if positive else '>= 0'}, got {number!r}"
            )
        numbers[key] = float(number)
    ongoing = check_int(
        table.get("max_ongoing_requests", default.max_ongoing_requests),
        "scale.max_ongoing_requests",
        1,
    )
    return ScaleConfig(low, high, max_ongoing_requests=ongoing, **numbers)


def _tensor_map(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    table = check_table(value, where)
    if not table:
        raise ConfigError(f'{where} must map at least one tensor, e.g. {{INPUT0 = "text"}}')
    for key, item in table.items():
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{where}.{key} must be the name of an ensemble tensor")
    return tuple((str(k), str(v)) for k, v in table.items())


def _ensemble_steps(value: Any, name: str) -> tuple[EnsembleStepConfig, ...]:
    if not isinstance(value, list):
        raise ConfigError("step must be an array of tables ([[step]])")
    steps = []
    for i, item in enumerate(value):
        at = f"step[{i}]"
        table = check_table(item, at)
        check_keys(table, {"model", "version", "input_map", "output_map"}, at)
        model = _name(table, "model", at)
        if model == name:
            raise ConfigError(f"{at}: an ensemble cannot run itself")
        version = table.get("version")
        steps.append(
            EnsembleStepConfig(
                model=str(model),
                version=None if version is None else check_int(version, f"{at}.version", 1),
                input_map=_tensor_map(table.get("input_map", {}), f"{at}.input_map"),
                output_map=_tensor_map(table.get("output_map", {}), f"{at}.output_map"),
            )
        )
    return tuple(steps)


_TOP_LEVEL_KEYS = {
    "name",
    "backend",
    "max_batch_size",
    "dynamic_batching",
    "instance_count",
    "onnxruntime",
    "openvino",
    "explain",
    "version_policy",
    "inputs",
    "outputs",
    "preprocess",
    "postprocess",
    "scale",
    "execution_timeout_s",
    "python",
    "step",
}


def parse_model_config(name: str, table: Mapping[str, Any]) -> ModelConfig:
    """Build a :class:`ModelConfig` from a parsed ``model.toml`` table; raise ConfigError."""
    check_keys(table, _TOP_LEVEL_KEYS, "model.toml")
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
    preprocess, python_preprocess = _preprocess(table.get("preprocess", []))
    postprocess, python_postprocess = _postprocess(table.get("postprocess", []))
    steps = _ensemble_steps(table.get("step", []), name)
    if (backend == "ensemble") != bool(steps):
        raise ConfigError(
            'model.toml: backend = "ensemble" needs a [[step]] list, and [[step]] needs '
            'backend = "ensemble" (docs/python-models.md)'
        )
    if backend == "ensemble" and (
        preprocess or postprocess or python_preprocess or python_postprocess
    ):
        raise ConfigError(
            "model.toml: an ensemble has no [[preprocess]] or [[postprocess]] of its own; "
            "make them steps of the ensemble"
        )
    return ModelConfig(
        name=name,
        backend=backend,
        max_batch_size=None if max_batch is None else check_int(max_batch, "max_batch_size"),
        dynamic_batching=_batching(table.get("dynamic_batching", {})),
        instance_count=check_int(table.get("instance_count", 1), "instance_count", 1),
        onnxruntime=_onnxruntime(table.get("onnxruntime", {})),
        openvino=_openvino(table.get("openvino", {})),
        explain=_explain(table.get("explain", {})),
        version_policy=_version_policy(table.get("version_policy", {"latest": 1})),
        inputs=_tensor_specs(table.get("inputs", []), "inputs"),
        outputs=_tensor_specs(table.get("outputs", []), "outputs"),
        scale=_scale(table.get("scale", {})),
        preprocess=preprocess,
        postprocess=postprocess,
        execution_timeout_s=check_number(
            table.get("execution_timeout_s", 0.0), "execution_timeout_s"
        ),
        python=python_config(table.get("python", {})),
        python_preprocess=python_preprocess,
        python_postprocess=python_postprocess,
        steps=steps,
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
