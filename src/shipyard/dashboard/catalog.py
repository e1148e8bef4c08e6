"""What the Models page shows: every model with its state, versions, signature, processing,
batching and which versions carry evidence (``report.json``) or a tuning report.

Built from the service (what is loaded, on the event loop) and the repository on disk (which
versions exist and what files they hold, in a worker thread).
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any, Protocol

from shipyard.config import ModelConfig, PostprocessConfig, PreprocessConfig, StepConfig
from shipyard.errors import ConfigError, NotFoundError
from shipyard.processing.image import ImageChain
from shipyard.repository.evidence import REPORT_FILE, read_report
from shipyard.repository.layout import check_model_name, find_model, parse_version
from shipyard.repository.registry import ModelRegistry, ServedVersion
from shipyard.types import DataType, ModelMetadata

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

    def repository_index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        """Every model in the repository with its state and reason."""

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        """The client-facing metadata of a loaded model (version)."""

    def server_metadata(self) -> dict[str, Any]:
        """The server's name, version and extensions."""


async def model_rows(service: Service) -> list[dict[str, Any]]:
    """One entry per model in the repository, loaded or not (see docs/protocol.md)."""
    rows: dict[str, dict[str, Any]] = {}
    for entry in service.repository_index():
        row = rows.setdefault(
            entry["name"],
            {"name": entry["name"], "state": entry["state"], "reason": entry.get("reason", "")},
        )
        row.setdefault("loaded", []).extend([entry["version"]] if "version" in entry else [])
    for name, row in rows.items():
        served = service.registry.versions(name)
        row.update(_served(service, name, served))
    root = service.registry.root
    disk = await asyncio.to_thread(lambda: {name: _on_disk(root, name) for name in rows})
    for name, row in rows.items():
        loaded = {int(v) for v in row.pop("loaded")}
        files = disk[name]
        warnings = row.pop("warnings", {})
        default = row.get("default_version")
        numbers = sorted(loaded | set(files["versions"]), reverse=True)
        row["versions"] = [
            {
                "version": str(n),
                "loaded": n in loaded,
                "default": str(n) == default,
                "report": n in files["reports"],
                "warnings": warnings.get(n, []),
            }
            for n in numbers
        ]
        row["tune_report"] = files["tune_report"]
    return list(rows.values())


def _served(service: Service, name: str, served: list[ServedVersion]) -> dict[str, Any]:
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
        "inputs": [spec.to_dict() for spec in metadata.inputs],
        "outputs": [spec.to_dict() for spec in metadata.outputs],
        "model_inputs": [spec.to_dict() for spec in default.inputs],
        "model_outputs": [spec.to_dict() for spec in default.outputs],
        "processing": _processing(config),
        "batching": _batching(config, default.max_batch_size),
        "predict": _predict_kind(default, metadata.inputs),
        "warnings": {v.version: list(v.warnings) for v in served},
    }


def _processing(config: ModelConfig) -> dict[str, Any] | None:
    if not config.preprocess and not config.postprocess:
        return None
    return {
        "preprocess": [_pre(p) for p in config.preprocess],
        "postprocess": [_post(p) for p in config.postprocess],
    }


def _pre(entry: PreprocessConfig) -> dict[str, Any]:
    return {"input": entry.input, "target": entry.target, "steps": _steps(entry.steps)}


def _post(entry: PostprocessConfig) -> dict[str, Any]:
    return {"output": entry.output, "labels": entry.labels, "steps": _steps(entry.steps)}


def _steps(steps: tuple[StepConfig, ...]) -> list[dict[str, Any]]:
    return [{"op": step.op, **dict(step.options)} for step in steps]


def _batching(config: ModelConfig, max_batch_size: int) -> dict[str, Any]:
    dynamic = config.dynamic_batching
    return {
        "max_batch_size": max_batch_size,
        "dynamic_batching": None if dynamic is None else dataclasses.asdict(dynamic),
        "instance_count": config.instance_count,
    }


def _predict_kind(served: ServedVersion, inputs: tuple[Any, ...]) -> dict[str, Any]:
    """What the playground offers: ``/predict`` with an image or text, and what comes back."""
    pipeline = served.pipeline
    output = pipeline.kind if pipeline is not None else "raw"
    if len(inputs) != 1 or inputs[0].datatype is not DataType.BYTES:
        return {"input": None, "output": output}
    chain = pipeline.pre.get(inputs[0].name) if pipeline is not None else None
    kind = "bytes" if chain is None else "image" if isinstance(chain, ImageChain) else "text"
    return {"input": kind, "output": output}


def _on_disk(root: Path, name: str) -> dict[str, Any]:
    """The versions on disk, which have a report.json, and whether a tuning report exists."""
    try:
        source = find_model(root, name)
        versions = source.versions()
    except (NotFoundError, ConfigError):
        return {"versions": [], "reports": set(), "tune_report": False}
    reports = {v for v in versions if (source.version_dir(v) / REPORT_FILE).is_file()}
    return {
        "versions": versions,
        "reports": reports,
        "tune_report": (source.path / TUNE_REPORT_FILE).is_file(),
    }


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
