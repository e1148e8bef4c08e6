"""What the Models page shows: every model with its state, versions, signature, processing,
batching and which versions carry evidence (``report.json``) or a tuning report.

Built from the service (what is loaded, on the event loop) and the repository on disk (which
versions exist and what files they hold, in a worker thread).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shipyard.config import ModelConfig, PostprocessConfig, PreprocessConfig, StepConfig
from shipyard.errors import ConfigError, NotFoundError
from shipyard.processing.image import ImageChain
from shipyard.repository.evidence import REPORT_FILE, read_report
from shipyard.repository.layout import check_model_name, find_model, parse_version
from shipyard.repository.registry import ModelRegistry, ServedVersion
from shipyard.types import (
    DataType,
    JSONObject,
    JSONValue,
    ModelMetadata,
    RepositoryEntry,
    ServerMetadata,
    TensorSpec,
)

__all__ = [
    "TUNE_REPORT_FILE",
    "Service",
    "model_rows",
    "read_version_report",
    "tune_report_path",
]

#: ``shipyard tune``'s HTML report, in the model folder by default.
TUNE_REPORT_FILE = "tune-report.html"
#: Larger report.json files are refused (the evidence is a few KiB).
MAX_REPORT_BYTES = 16 * 1024 * 1024


class Service(Protocol):
    """What the dashboard reads from the server's ``InferenceService`` (which the dashboard
    does not import: the server imports the dashboard)."""

    registry: ModelRegistry

    def repository_index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        """Every model in the repository with its state and reason."""

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        """The client-facing metadata of a loaded model (version)."""

    def server_metadata(self) -> ServerMetadata:
        """The server's name, version and extensions."""


@dataclass(slots=True)
class _Indexed:
    """What the repository index says about one model."""

    state: str
    reason: str
    loaded: set[int] = field(default_factory=set)
    served: list[ServedVersion] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Files:
    """What the model's folder holds."""

    versions: list[int]
    reports: set[int]
    tune_report: bool


async def model_rows(service: Service) -> list[JSONObject]:
    """One entry per model in the repository, loaded or not (see docs/protocol.md)."""
    index: dict[str, _Indexed] = {}
    for entry in service.repository_index():
        row = index.setdefault(entry.name, _Indexed(entry.state.value, entry.reason))
        if entry.version is not None:
            row.loaded.add(int(entry.version))
    for name, row in index.items():
        row.served = service.registry.versions(name)
    root = service.registry.root
    disk = await asyncio.to_thread(lambda: {name: _on_disk(root, name) for name in index})
    return [_row(service, name, row, disk[name]) for name, row in index.items()]


def _row(service: Service, name: str, row: _Indexed, files: _Files) -> JSONObject:
    warnings = {v.version: v.warnings for v in row.served}
    default = row.served[0].version if row.served else None  # the newest loaded
    versions: list[JSONValue] = [
        {
            "version": str(n),
            "loaded": n in row.loaded,
            "default": n == default,
            "report": n in files.reports,
            "warnings": list(warnings.get(n, ())),
        }
        for n in sorted(row.loaded | set(files.versions), reverse=True)
    ]
    out: JSONObject = {"name": name, "state": row.state, "reason": row.reason}
    out.update(_served(service, name, row.served))
    out["versions"] = versions
    out["tune_report"] = files.tune_report
    return out


def _served(service: Service, name: str, served: list[ServedVersion]) -> JSONObject:
    """What the loaded versions tell: the default one's signature, settings and processing."""
    if not served:
        return {"default_version": None}
    default = served[0]  # newest loaded: what a request without a version gets
    config = default.config
    metadata = service.model_metadata(name)
    return {
        "default_version": str(default.version),
        "platform": default.platform,
        "backend": config.backend,
        "inputs": _specs(metadata.inputs),
        "outputs": _specs(metadata.outputs),
        "model_inputs": _specs(default.inputs),
        "model_outputs": _specs(default.outputs),
        "processing": _processing(config),
        "batching": _batching(config, default.max_batch_size),
        "predict": _predict_kind(default, metadata.inputs),
    }


def _specs(specs: tuple[TensorSpec, ...]) -> list[JSONValue]:
    return [spec.to_dict() for spec in specs]


def _processing(config: ModelConfig) -> JSONObject | None:
    if not config.preprocess and not config.postprocess:
        return None
    pre: list[JSONValue] = [_pre(p) for p in config.preprocess]
    post: list[JSONValue] = [_post(p) for p in config.postprocess]
    return {"preprocess": pre, "postprocess": post}


def _pre(entry: PreprocessConfig) -> JSONObject:
    return {"input": entry.input, "target": entry.target, "steps": _steps(entry.steps)}


def _post(entry: PostprocessConfig) -> JSONObject:
    return {"output": entry.output, "labels": entry.labels, "steps": _steps(entry.steps)}


def _steps(steps: tuple[StepConfig, ...]) -> list[JSONValue]:
    return [{"op": step.op, **{k: _plain(v) for k, v in step.options}} for step in steps]


def _plain(value: object) -> JSONValue:
    """A step option as JSON (tuples from model.toml arrays become lists)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _batching(config: ModelConfig, max_batch_size: int) -> JSONObject:
    dynamic = config.dynamic_batching
    batching: JSONObject | None = None
    if dynamic is not None:
        batching = {
            "max_queue_delay_us": dynamic.max_queue_delay_us,
            "preferred_batch_sizes": list(dynamic.preferred_batch_sizes),
            "max_queue_size": dynamic.max_queue_size,
            "default_timeout_us": dynamic.default_timeout_us,
        }
    return {
        "max_batch_size": max_batch_size,
        "dynamic_batching": batching,
        "instance_count": config.instance_count,
    }


def _predict_kind(served: ServedVersion, inputs: tuple[TensorSpec, ...]) -> JSONObject:
    """What the playground offers: ``/predict`` with an image or text, and what comes back."""
    pipeline = served.pipeline
    output = pipeline.kind if pipeline is not None else "raw"
    if len(inputs) != 1 or inputs[0].datatype is not DataType.BYTES:
        return {"input": None, "output": output}
    chain = pipeline.pre.get(inputs[0].name) if pipeline is not None else None
    kind = "bytes" if chain is None else "image" if isinstance(chain, ImageChain) else "text"
    return {"input": kind, "output": output}


def _on_disk(root: Path, name: str) -> _Files:
    """The versions on disk, which have a report.json, and whether a tuning report exists."""
    try:
        source = find_model(root, name)
        versions = source.versions()
    except (NotFoundError, ConfigError):
        return _Files([], set(), False)
    reports = {v for v in versions if (source.version_dir(v) / REPORT_FILE).is_file()}
    return _Files(versions, reports, (source.path / TUNE_REPORT_FILE).is_file())


def read_version_report(root: Path, name: str, version: str) -> dict[str, Any]:
    """``<root>/<name>/<version>/report.json``; 400 for a bad name, 404 when absent."""
    check_model_name(name)
    number = parse_version(version)
    if number is None:
        raise NotFoundError(
            f"model {name!r} has no version {version!r}: versions are positive integers"
        )
    folder = find_model(root, name).version_dir(number)
    path = folder / REPORT_FILE
    if not path.is_file():
        raise NotFoundError(f"model {name!r} version {number} has no {REPORT_FILE}")
    if path.stat().st_size > MAX_REPORT_BYTES:
        raise NotFoundError(
            f"model {name!r} version {number}: {REPORT_FILE} is over {MAX_REPORT_BYTES} bytes"
        )
    report = read_report(folder)
    if report is None:
        raise NotFoundError(f"model {name!r} version {number}: {REPORT_FILE} is not a JSON object")
    return report


def tune_report_path(root: Path, name: str) -> Path:
    """``<root>/<name>/tune-report.html``; 400 for a bad name, 404 when absent."""
    check_model_name(name)
    path = find_model(root, name).path / TUNE_REPORT_FILE
    if not path.is_file():
        raise NotFoundError(f"model {name!r} has no {TUNE_REPORT_FILE} (run `shipyard tune`)")
    return path
