"""``shipyard optimize``: make a faster or smaller variant of a model version, prove it, publish it.

:func:`optimize` takes ``REPO/NAME`` version V (default: the latest), makes a candidate
(:mod:`~shipyard.optimize.quantize`), runs the accuracy guard against the unoptimized version
and the speed guard against V on this machine (:mod:`~shipyard.optimize.guard`, timed by
:mod:`~shipyard.optimize.benchmark` under the model's own ``model.toml`` session options), and
publishes the candidate as the next version with ``report.json``
(:mod:`~shipyard.optimize.report`) only when both guards pass (``force``: the speed guard's
verdict is recorded but does not block). The speed guard judges the ``objective`` the user
asked for (latency, throughput or size). Int8 weights are chosen for this machine's CPU
(``reduce_range``, :func:`~shipyard.optimize.quantize.choose_int8`). ``model.toml`` keeps every
setting. See ``docs/optimize.md``.
"""

from __future__ import annotations

import datetime
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shipyard.backends.base import Backend
from shipyard.backends.providers import plan_providers
from shipyard.config import ModelConfig
from shipyard.errors import (
    ConversionError,
    InvalidInputError,
)
from shipyard.hardware import HardwareReport, probe
from shipyard.optimize.benchmark import BenchmarkSettings, Measurement, benchmark_rounds
from shipyard.optimize.data import Arrays, Dataset, load_dataset, load_image_folder
from shipyard.optimize.guard import (
    DEFAULT_MAX_DROP,
    DEFAULT_MIN_GAIN,
    Metric,
    Objective,
    speed_guard,
)
from shipyard.optimize.openvino_ir import make_bf16_ir
from shipyard.optimize.quantize import (
    GraphLevel,
    Method,
    ReduceRange,
    choose_int8,
    make_candidate,
)
from shipyard.optimize.versions import (
    baseline_version,
    guard_accuracy,
    load_served,
    onnx_file,
    resolve_engine,
    resolve_version,
    validation_dataset,
)
from shipyard.repository.layout import find_model
from shipyard.repository.publish import publish

__all__ = [
    "BenchmarkSettings",
    "Method",
    "Metric",
    "Objective",
    "OptimizeResult",
    "ReduceRange",
    "Timer",
    "optimize",
]

#: Times model files round by round: :func:`~shipyard.optimize.benchmark.benchmark_rounds`'s
#: signature (tests pass a deterministic one to exercise the decision).
Timer = Callable[
    [Mapping[str, Path], ModelConfig, BenchmarkSettings, Arrays, Callable[[str], None]],
    dict[str, list[Measurement]],
]


@dataclass(frozen=True, slots=True)
class OptimizeResult:
    """The outcome: the report, and the version published (``None`` when a guard rejected)."""

    report: dict[str, Any]
    version: int | None
    path: Path | None

    @property
    def published(self) -> bool:
        """Whether the candidate became a new version."""
        return self.version is not None


def optimize(
    repo: Path,
    name: str,
    *,
    version: int | None = None,
    method: Method = "none",
    calibration: Path | None = None,
    validation: Path | None = None,
    metric: Metric | None = None,
    max_drop: float = DEFAULT_MAX_DROP,
    force: bool = False,
    per_channel: bool = True,
    graph_level: GraphLevel = "extended",
    min_gain: float = DEFAULT_MIN_GAIN,
    benchmark: BenchmarkSettings | None = None,
    progress: Callable[[str], None] | None = None,
    objective: Objective = "latency",
    reduce_range: ReduceRange = "auto",
    hardware: HardwareReport | None = None,
    timer: Timer | None = None,
) -> OptimizeResult:
    """Optimize ``repo/name`` (see the module doc); publish the candidate if the guards pass.

    ``hardware`` replaces this machine's probe (the int8 choice and the report follow it);
    ``timer`` replaces :func:`~shipyard.optimize.benchmark.benchmark_rounds`.

    Raises NotFoundError (model or version), InvalidInputError (data files, flags),
    UnsupportedError and ConversionError (a tool failed); a rejection is not an error: the
    result says so and nothing is published.
    """
    step = progress or (lambda _text: None)
    hardware = hardware or probe()
    int8 = choose_int8(reduce_range, hardware.cpu) if method.startswith("int8") else None
    if method == "int8-static" and calibration is None:
        raise InvalidInputError("--quantize int8-static needs --calibration FILE.npz")
    settings = benchmark or BenchmarkSettings()
    source = find_model(repo, name)
    version = resolve_version(source, version)
    source_file = onnx_file(source, version)
    baseline_v = baseline_version(source, version)
    baseline_file = onnx_file(source, baseline_v)
    config = source.config()
    step(f"loading {name} v{version}")
    original = load_served(source_file, config, "original model")
    baseline = original if baseline_v == version else load_served(baseline_file, config, "baseline")

    def read(path: Path, role: str) -> Dataset:
        if path.is_dir():
            return load_image_folder(
                path, config, source.path, original.inputs, original.outputs, role
            )
        return load_dataset(path, original.inputs, role)

    calibration_data = read(calibration, "calibration") if calibration else None
    dataset, note = validation_dataset(validation, calibration_data, original, read)
    notes = [note] if note else []
    with tempfile.TemporaryDirectory(prefix="shipyard-optimize-") as tmp:
        candidate_file = Path(tmp) / ("model.xml" if method == "bf16" else "model.onnx")
        step(f"making the {method} candidate")
        done = (
            make_bf16_ir(source_file, candidate_file)
            if method == "bf16"
            else make_candidate(
                method,
                source_file,
                candidate_file,
                inputs=original.inputs,
                calibration=calibration_data,
                per_channel=per_channel,
                graph_level=graph_level,
                reduce_range=int8 is not None and int8.reduce_range,
            )
        )
        if int8 is not None:
            done["int8"] = int8.to_dict()
        if "note" in done:
            notes.append(done.pop("note"))
        candidate = load_served(candidate_file, config, f"{method} candidate")
        _check_signature(original, candidate)
        step("checking accuracy")
        accuracy = guard_accuracy(
            baseline,
            candidate,
            dataset,
            model=original,
            config=config,
            model_dir=source.path,
            metric=metric,
            max_drop=max_drop,
        )
        for backend in {id(b): b for b in (original, baseline, candidate)}.values():
            backend.close()
        files = {candidate_file.name: candidate_file.read_bytes()}
        if method == "bf16":  # the IR's weights
            files["model.bin"] = candidate_file.with_suffix(".bin").read_bytes()
        data = sum(len(blob) for blob in files.values())
        report: dict[str, Any] = {
            "shipyard_version": _version(),
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "step": "optimize",
            "model": name,
            "optimization": {
                "source_version": version,
                "baseline_version": baseline_v,
                **done,
            },
            "inputs": [spec.to_dict() for spec in original.inputs],
            "outputs": [spec.to_dict() for spec in original.outputs],
            "accuracy": accuracy,
            "size": {
                "before_bytes": source_file.stat().st_size,
                "after_bytes": data,
                "ratio": data / max(source_file.stat().st_size, 1),
            },
            "hardware": hardware.summary(),
            "notes": notes,
        }
        if accuracy["passed"]:
            step("benchmarking")
            timed = (timer or benchmark_rounds)(
                {f"v{version}": source_file, method: candidate_file},
                config,
                settings,
                dataset.arrays,
                step,
            )
            before, after = timed[f"v{version}"], timed[method]
            report["speed"] = {
                "before": _median_round(before).to_dict(),
                "after": _median_round(after).to_dict(),
                "rounds": [
                    {"before": b.to_dict(), "after": a.to_dict()}
                    for b, a in zip(before, after, strict=True)
                ],
                "settings": asdict(settings),
                "session_options": asdict(config.onnxruntime),
            }
            report["speed_providers"] = _providers(config)
            report["speed_engines"] = {
                "before": resolve_engine(source_file, config),
                "after": resolve_engine(candidate_file, config),
            }
            report["speed_guard"] = speed_guard(
                before, after, source_file.stat().st_size, data, objective, min_gain
            )
    return _decide(repo, name, report, files, config, original, force)


def _decide(
    repo: Path,
    name: str,
    report: dict[str, Any],
    files: dict[str, bytes],
    config: ModelConfig,
    original: Backend,
    force: bool,
) -> OptimizeResult:
    accuracy, speed = report["accuracy"], report.get("speed_guard")
    if not accuracy["passed"]:
        report["decision"] = (
            f"rejected by the accuracy guard: {accuracy['metric']} drop {accuracy['drop']:.4g}"
            f" > {accuracy['max_drop']:g}; nothing was published"
        )
        return OptimizeResult(report, None, None)
    if speed is not None and not speed["passed"] and not force:
        report["decision"] = f"not published: {speed['verdict']}; pass --force to publish it anyway"
        return OptimizeResult(report, None, None)
    report["forced"] = bool(speed is not None and not speed["passed"])
    report["decision"] = "published" + (
        " (forced past the speed guard)" if report["forced"] else ""
    )
    inputs = config.inputs or original.inputs
    outputs = config.outputs or original.outputs
    new_version, path = publish(repo, name, files, inputs, outputs, report)
    report["version"] = new_version
    return OptimizeResult(report, new_version, path)


def _median_round(rounds: list[Measurement]) -> Measurement:
    """The round with the median latency and the round with the median throughput (what the
    report shows as "before"/"after"; the guard itself pairs the rounds)."""
    by_latency = sorted(rounds, key=lambda m: m.latency.p50_ms)
    by_throughput = sorted(rounds, key=lambda m: m.throughput.samples_per_s)
    middle = (len(rounds) - 1) // 2
    return Measurement(by_latency[middle].latency, by_throughput[middle].throughput)


def _check_signature(original: Backend, candidate: Backend) -> None:
    def sig(b: Backend) -> list[tuple[str, str]]:
        return [(s.name, s.datatype.value) for s in (*b.inputs, *b.outputs)]

    if sig(original) != sig(candidate):
        raise ConversionError(
            f"the candidate's signature {sig(candidate)} differs from the model's {sig(original)}",
            step="signature check",
            framework="onnxruntime",
        )


def _providers(config: ModelConfig) -> list[str]:
    import onnxruntime as ort

    opts = config.onnxruntime
    return list(plan_providers(opts.providers, ort.get_available_providers()).names)


def _version() -> str:
    from shipyard import __version__

    return __version__
